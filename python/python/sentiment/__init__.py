"""Sentiment classification with HF sequence-classification models, on the
Rust core of the `sentiment` command line, shaped like the transformers
pipeline::

    import sentiment
    clf = sentiment.Classifier()                  # the bundled model
    clf("I love this movie")                      # [{'label': 'POSITIVE', 'score': 0.99...}]
    clf(["great", "awful"], top_k=None)           # every label, best first, per text
    clf({"text": "A man plays.", "text_pair": "Someone makes music."})  # a pair model's input
    for result in clf.stream(open("reviews.txt")):  # any iterable, in bounded memory
        ...

Every call releases the GIL while it tokenizes and runs the model, so
threads of one program can classify at once with one `Classifier`.
"""

import math
import os
import warnings
from collections.abc import Iterable, Iterator

from ._sentiment import Classifier as _NativeClassifier
from ._sentiment import ModelError, __version__

__all__ = ["Classifier", "ModelError", "__version__"]

_NOT_GIVEN = object()
# Texts per window of `stream` (times the batch size) and the text bytes
# that end a window early: the memory a stream holds at once.
_WINDOW_BATCHES = 16
_WINDOW_BYTES = 4 << 20

# The process whose threads (the model's and the tokenizer's pools) were
# started by loading a model: a child made by os.fork() has none of them,
# and a call there would wait for them forever.
_threads_of = None


def _check_fork():
    if _threads_of is not None and _threads_of != os.getpid():
        raise RuntimeError(
            f"sentiment loaded a model in process {_threads_of} before this process was forked "
            "from it, and a forked child has none of its threads: use multiprocessing's "
            "'spawn' or 'forkserver' start method (or load the first model after forking)"
        )


def _warn_at_fork():
    if _threads_of == os.getpid():
        warnings.warn(
            "the process is forking after sentiment loaded a model: the child cannot use it "
            "(its threads are not copied); use multiprocessing's 'spawn' start method",
            RuntimeWarning,
            stacklevel=2,
        )


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_warn_at_fork)


class Classifier(_NativeClassifier):
    """A loaded model.

    ``Classifier(model=None, *, device="cpu", precision="f32", threads=None,
    revision=None)``: ``model`` is a folder holding config.json,
    tokenizer.json and the weights, or a hub id (``owner/name``, at
    ``revision``); None loads the bundled model. ``precision`` is "f32",
    "bf16" or "int8"; ``threads`` the CPU threads for the whole process
    (default: the physical cores).

    Raises ``OSError`` for a model that cannot be found or read,
    ``sentiment.ModelError`` for a model that cannot be used, and
    ``ValueError`` for a bad option.
    """

    def __new__(cls, *args, **kwargs):
        # Before the native constructor, which would wait for threads a
        # forked child does not have.
        global _threads_of
        _check_fork()
        self = super().__new__(cls, *args, **kwargs)
        _threads_of = os.getpid()
        return self

    def __init__(self, model=None, *, device="cpu", precision="f32", threads=None, revision=None):
        # The native __new__ has loaded the model; say so when the precision
        # asked for is not the one that runs (no bf16 kernel on this CPU, say).
        warning = self.precision_warning(precision)
        if warning:
            warnings.warn(warning, RuntimeWarning, stacklevel=2)

    def __call__(
        self,
        inputs,
        *,
        top_k=_NOT_GIVEN,
        truncation=True,
        batch_size=32,
        function_to_apply=None,
        long_text="truncate",
        stride=128,
        aggregate="mean",
        details=False,
    ):
        """Classifies one text or a list of texts, as
        ``pipeline("sentiment-analysis")`` does. A text pair, for models
        trained on pairs (NLI, paraphrase), is the pipeline's
        ``{"text": ..., "text_pair": ...}`` dict, alone or in the list; its
        longer side is cut first where the two are over the limit.

        Without ``top_k``: a list of ``{"label", "score"}`` dicts, one per
        text (one for a single text). With ``top_k=k`` (or None for every
        label): per text, a list of the k best, best first.

        ``truncation=False`` raises ``ValueError`` for a text over the
        model's limit instead of keeping its first tokens;
        ``long_text="truncate_start"`` keeps a long text's last tokens
        instead (the pipeline's ``truncation_side="left"``);
        ``long_text="window"`` classifies overlapping windows that cover
        the whole text (sharing ``stride`` tokens, combined by
        ``aggregate``: "mean" or "max"). ``details=True`` adds
        ``logits``, ``tokens``, ``truncated`` and ``windows`` to each
        result. ``function_to_apply`` ("softmax", "sigmoid" or "none")
        overrides the model's scoring, as in the pipeline.

        A list or tuple returns a list; any other iterable returns an
        iterator, as from :meth:`stream`.
        """
        single = isinstance(inputs, (str, dict))
        if not single and not isinstance(inputs, (list, tuple)):
            if isinstance(inputs, Iterable):
                return self.stream(
                    inputs,
                    top_k=top_k,
                    truncation=truncation,
                    batch_size=batch_size,
                    function_to_apply=function_to_apply,
                    long_text=long_text,
                    stride=stride,
                    aggregate=aggregate,
                    details=details,
                )
            raise TypeError(
                f"inputs must be a str, a text-pair dict, or a list or iterable of them, not {type(inputs).__name__}"
            )
        texts = [_item(text, "texts") for text in ([inputs] if single else inputs)]
        shaped = self._classify(texts, top_k, truncation, batch_size, function_to_apply, long_text, stride, aggregate, details)
        if single and top_k is not _NOT_GIVEN:
            return shaped[0]
        return shaped

    def stream(
        self,
        texts,
        *,
        top_k=_NOT_GIVEN,
        truncation=True,
        batch_size=32,
        function_to_apply=None,
        long_text="truncate",
        stride=128,
        aggregate="mean",
        details=False,
    ) -> Iterator:
        """Yields one result per text of ``texts`` (any iterable of str or
        text-pair dicts), in
        order, shaped as :meth:`__call__` shapes a list's. Texts are read a
        window at a time (16 batches, or 4 MiB of text), so a stream of any
        length runs in bounded memory; a text that cannot be classified
        raises its exception when its turn comes."""
        # The window size needs it before the native call checks it.
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number from 1, not {batch_size!r}")
        for window in _windows(texts, batch_size * _WINDOW_BATCHES, _WINDOW_BYTES):
            yield from self._classify(window, top_k, truncation, batch_size, function_to_apply, long_text, stride, aggregate, details)

    def _classify(self, texts, top_k, truncation, batch_size, function_to_apply, long_text, stride, aggregate, details):
        """``texts`` as ``_item`` makes them: each a str or a (text, text_pair) tuple."""
        _check_fork()
        legacy = top_k is _NOT_GIVEN
        if not legacy and top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, not {top_k!r}")
        if function_to_apply not in (None, "default", "softmax", "sigmoid", "none"):
            raise ValueError(f'function_to_apply must be "softmax", "sigmoid" or "none", not {function_to_apply!r}')
        rescore = function_to_apply not in (None, "default")
        raw = self.classify_many(
            texts,
            top_k=None if legacy or rescore else top_k,
            long_text=long_text,
            stride=stride,
            aggregate=aggregate,
            batch_size=batch_size,
            details=details or rescore or not truncation,
        )
        out = []
        for text, result in zip(texts, raw):
            if isinstance(result, BaseException):
                raise result
            if not truncation and result["truncated"]:
                raise ValueError(
                    f"a text is over the model's limit of {self.max_input_tokens} tokens; "
                    "pass truncation=True to keep its first tokens, "
                    'or long_text="window" to classify all of it'
                )
            if rescore:
                result["scores"] = _rescore(self.labels, result["logits"], function_to_apply)
                result["label"], result["score"] = result["scores"][0]["label"], result["scores"][0]["score"]
            extra = {k: result[k] for k in ("logits", "tokens", "truncated", "windows")} if details else {}
            if legacy:
                out.append({"label": result["label"], "score": result["score"], **extra})
            else:
                ranked = result["scores"] if top_k is None else result["scores"][:top_k]
                if details:
                    ranked = [{**entry, **extra} for entry in ranked]
                out.append(ranked)
        return out


def _text(text, what):
    """``text``, which must be Unicode text: a lone surrogate (``"\\ud800"``,
    which Python strings may hold and UTF-8 cannot) is a ValueError that
    says so, not the native layer's conversion error."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(
                f"{what}: a text holds a lone surrogate ({text[err.start]!r} at position {err.start}), "
                "which is not Unicode text"
            ) from None
    return text


def _item(item, what):
    """A text as it is, a pipeline pair dict as a (text, text_pair) tuple."""
    if isinstance(item, str):
        return _text(item, what)
    if isinstance(item, dict):
        unknown = set(item) - {"text", "text_pair"}
        if unknown or not isinstance(item.get("text"), str):
            raise TypeError(
                'a text pair is {"text": str, "text_pair": str}, '
                f"not a dict with keys {sorted(map(str, item))}"
            )
        pair = item.get("text_pair")
        if pair is None:
            return _text(item["text"], what)
        if not isinstance(pair, str):
            raise TypeError(f"text_pair must be str, not {type(pair).__name__}")
        return (_text(item["text"], what), _text(pair, what))
    raise TypeError(f"{what} must be str or text-pair dicts, not {type(item).__name__}")


def _windows(texts, items, text_bytes):
    """``texts`` as ``_item`` makes them, in lists of at most ``items``
    texts or about ``text_bytes`` of text. A bad item raises its TypeError
    (or ValueError) once the texts before it have been handed out, as their
    turn came first."""
    window, size = [], 0
    for item in texts:
        try:
            text = _item(item, "stream items")
        except (TypeError, ValueError):
            yield window
            raise
        window.append(text)
        size += len(text) if isinstance(text, str) else len(text[0]) + len(text[1])
        if len(window) >= items or size >= text_bytes:
            yield window
            window, size = [], 0
    if window:
        yield window


def _rescore(labels, logits, function):
    if function == "softmax":
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        scores = [e / total for e in exps]
    elif function == "sigmoid":
        scores = [1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v)) for v in logits]
    else:
        scores = list(logits)
    ranked = [{"label": label, "score": score} for label, score in zip(labels, scores)]
    ranked.sort(key=lambda entry: entry["score"], reverse=True)
    return ranked
