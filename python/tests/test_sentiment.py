"""The Python package, installed from its wheel into a fresh venv (see
tests/python_test.py, run by .ci/run): parity with the golden files, the
pipeline's output shapes, exceptions, threads and streams."""

import json
import math
import shutil
import threading
import warnings
from pathlib import Path

import pytest

import sentiment

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
LOGIT_TOLERANCE = 1e-4
TINY = ["tiny", "tiny-bert", "tiny-roberta", "tiny-xlm-roberta"]
FOLDERS = {"tiny": "tiny-distilbert"}


@pytest.fixture(scope="module")
def bundled():
    global CLASSIFIER_FOR_FORK
    CLASSIFIER_FOR_FORK = sentiment.Classifier()
    return CLASSIFIER_FOR_FORK


def golden(name):
    return json.loads((FIXTURES / f"golden_{name}.json").read_text())


def max_diff(a, b):
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", TINY + ["bundled"])
def test_logits_match_the_golden_files_alone_and_in_batches(name):
    data = golden(name)
    clf = sentiment.Classifier() if name == "bundled" else sentiment.Classifier(FIXTURES / FOLDERS.get(name, name))
    texts = [case["text"] for case in data["cases"]]
    for case in data["cases"]:
        got = clf(case["text"], details=True)[0]
        assert max_diff(got["logits"], case["logits"]) <= LOGIT_TOLERANCE, case["text"]
        assert got["truncated"] == case["truncated"]
    for batch in data["batches"]:
        members = [texts[i] for i in batch["members"]]
        got = clf(members, batch_size=len(members), details=True)
        for result, expected in zip(got, batch["logits"]):
            assert max_diff(result["logits"], expected) <= LOGIT_TOLERANCE


@pytest.mark.parametrize("model", ["tiny-distilbert", "tiny-bert", "tiny-roberta", "tiny-xlm-roberta"])
def test_text_pairs_match_the_golden_files_as_pipeline_dicts(model):
    data = json.loads((FIXTURES / f"golden_pairs_{model}.json").read_text())
    clf = sentiment.Classifier(FIXTURES / model)
    pairs = [{"text": case["first"], "text_pair": case["second"]} for case in data["cases"]]
    alone = [clf(pair, details=True) for pair in pairs]
    together = clf(pairs, details=True)
    streamed = list(clf.stream(iter(pairs), details=True, batch_size=3))
    for case, one, many, stream in zip(data["cases"], alone, together, streamed):
        assert max_diff(one[0]["logits"], case["logits"]) <= 1e-4
        assert max_diff(many["logits"], case["logits"]) <= 1e-4
        assert max_diff(stream["logits"], case["logits"]) <= 1e-4
        assert many["truncated"] == case["truncated"]
    # A dict without text_pair is a text; a wrong dict is a TypeError.
    assert clf({"text": "a text"}) == clf("a text")
    for bad in ({"text": "a", "pair": "b"}, {"text_pair": "b"}, {"text": "a", "text_pair": 3}):
        with pytest.raises(TypeError):
            clf(bad)


HUB_REPOS = json.loads((FIXTURES / "hub" / "repos.json").read_text())["repos"]


@pytest.mark.parametrize("repo", HUB_REPOS, ids=[r["name"] for r in HUB_REPOS])
def test_hub_layouts_with_slow_tokenizer_files_match_the_golden_files(repo, tmp_path):
    # The repo's files as a folder (as copied out of the HF cache): slow
    # tokenizer files, no tokenizer.json; pytorch_model.bin for some.
    main = repo["revisions"]["main"]
    for name in main["uses"]:
        shutil.copy(ROOT / main["files"][name], tmp_path / name)
    assert not (tmp_path / "tokenizer.json").exists()
    clf = sentiment.Classifier(tmp_path)
    data = json.loads((FIXTURES / "hub" / f"golden_{repo['name']}.json").read_text())
    got = clf([case["text"] for case in data["cases"]], details=True)
    for case, result in zip(data["cases"], got):
        assert max_diff(result["logits"], case["logits"]) <= LOGIT_TOLERANCE, case["text"]
        assert result["truncated"] == case["truncated"]


def test_scores_are_the_pipelines_softmax_of_the_logits():
    data = golden("tiny")
    clf = sentiment.Classifier(FIXTURES / "tiny-distilbert")
    for case in data["cases"][:10]:
        ranked = clf(case["text"], top_k=None)
        by_label = {entry["label"]: entry["score"] for entry in ranked}
        for label, probability in zip(data["labels"], case["probabilities"]):
            assert abs(by_label[label] - probability) <= LOGIT_TOLERANCE


def test_output_shapes_are_the_pipelines(bundled):
    one = bundled("I love this movie")
    assert isinstance(one, list) and len(one) == 1 and set(one[0]) == {"label", "score"}
    assert one[0]["label"] == "POSITIVE"
    many = bundled(["I love this movie", "The plot was a mess"])
    assert [r["label"] for r in many] == ["POSITIVE", "NEGATIVE"]
    assert all(set(r) == {"label", "score"} for r in many)
    # top_k given: per text a list, best first; for one text, that list.
    every = bundled("I love this movie", top_k=None)
    assert [e["label"] for e in every] == ["POSITIVE", "NEGATIVE"]
    assert abs(sum(e["score"] for e in every) - 1.0) < 1e-5
    assert bundled("I love this movie", top_k=1) == every[:1]
    lists = bundled(["great", "awful"], top_k=None)
    assert len(lists) == 2 and all(len(r) == 2 for r in lists)
    assert lists[1][0]["label"] == "NEGATIVE"
    assert bundled([]) == []
    assert bundled(("great",)) == bundled(["great"])


def test_options_the_pipeline_has_not_got(bundled):
    long_text = "a wonderful , moving film . " * 200
    truncated = bundled(long_text, details=True)[0]
    assert truncated["truncated"] is True and truncated["tokens"] == bundled.max_input_tokens
    windowed = bundled(long_text, long_text="window", stride=64, details=True)[0]
    assert windowed["windows"] > 1 and windowed["truncated"] is False
    assert windowed["label"] == "POSITIVE"
    with pytest.raises(ValueError, match="over the model's limit"):
        bundled(long_text, truncation=False)
    mixed = "a dull , lifeless mess . " * 300 + "a wonderful , moving film . " * 300
    assert bundled(mixed)[0]["label"] == "NEGATIVE"
    assert bundled(mixed, long_text="truncate_start")[0]["label"] == "POSITIVE"
    sigmoid = bundled("great", function_to_apply="sigmoid", details=True)[0]
    assert abs(sigmoid["score"] - 1 / (1 + math.exp(-max(sigmoid["logits"])))) < 1e-6


def test_errors_are_the_python_exceptions_a_user_expects(bundled, tmp_path):
    with pytest.raises(FileNotFoundError):
        sentiment.Classifier(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURES / "tiny-distilbert", broken)
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(sentiment.ModelError, match="config.json"):
        sentiment.Classifier(broken)
    with pytest.raises(ValueError, match="precision"):
        sentiment.Classifier(precision="fp64")
    with pytest.raises(ValueError, match="device"):
        sentiment.Classifier(device="tpu")
    with pytest.raises(ValueError, match="stride"):
        bundled("text", long_text="window", stride=10_000)
    with pytest.raises(ValueError, match="top_k"):
        bundled("text", top_k=0)
    with pytest.raises(ValueError, match="batch_size"):
        bundled(["text"], batch_size=0)
    # Every whole-number option out of range or of another type is the
    # documented ValueError (PyO3's conversion raised OverflowError for -1).
    for options in (
        {"batch_size": -1}, {"batch_size": 2**70}, {"batch_size": 2.0}, {"batch_size": True},
        {"stride": -1, "long_text": "window"}, {"stride": 2**70, "long_text": "window"},
        {"top_k": -1}, {"top_k": 2**70},
    ):
        name = next(iter(options))
        with pytest.raises(ValueError, match=name):
            bundled(["text"], **options)
        with pytest.raises(ValueError, match=name):
            list(bundled.stream(iter(["text"]), **options))
    for threads in (-1, 0, 2**70, 1.5):
        with pytest.raises(ValueError, match="threads"):
            sentiment.Classifier(threads=threads)
    # A lone surrogate is not Unicode text: said so, in its place in a stream.
    for bad in ("\ud800", ["fine", "a \udfff b"], {"text": "a", "text_pair": "\ud83d"}):
        with pytest.raises(ValueError, match="lone surrogate"):
            bundled(bad)
    stream = bundled.stream(iter(["great", "x\ud800"]))
    assert next(stream)["label"] == "POSITIVE"
    with pytest.raises(ValueError, match="lone surrogate"):
        next(stream)
    with pytest.raises(TypeError):
        bundled(["text", 3])
    with pytest.raises(TypeError):
        bundled(3)
    assert issubclass(sentiment.ModelError, Exception)


def test_two_threads_classify_at_once_with_one_classifier(bundled):
    dev = [json.loads(line)["text"] for line in (ROOT / "test_data" / "sst2_dev.jsonl").read_text().splitlines()]
    alone = bundled(dev)
    results = {}
    barrier = threading.Barrier(2)

    def work(name, texts):
        barrier.wait()
        results[name] = bundled(texts, batch_size=16)

    threads = [threading.Thread(target=work, args=(n, t)) for n, t in (("a", dev), ("b", dev[::-1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"] == alone
    assert results["b"] == alone[::-1]


def test_a_stream_is_in_order_and_reads_ahead_at_most_one_window(bundled):
    texts = ["what a great film", "a dull , lifeless mess"]
    pattern = [(i * 7919) % 3 == 0 for i in range(20_000)]
    pulled = 0

    def generate():
        nonlocal pulled
        for good in pattern:
            pulled += 1
            yield texts[0] if good else texts[1]

    batch_size = 8
    window = batch_size * 16
    seen = 0
    for result, good in zip(bundled.stream(generate(), batch_size=batch_size), pattern):
        assert result["label"] == ("POSITIVE" if good else "NEGATIVE")
        seen += 1
        # Memory: the stream holds one window of texts, never the input.
        assert pulled - seen < window
    assert seen == len(pattern) == pulled


def test_a_generator_given_to_the_call_streams(bundled):
    results = bundled(text for text in ["great", "awful"])
    assert not isinstance(results, list)
    assert [r["label"] for r in results] == ["POSITIVE", "NEGATIVE"]


def test_a_bad_text_raises_in_its_turn_in_a_stream(bundled):
    stream = bundled.stream(iter(["great", None]))
    assert next(stream)["label"] == "POSITIVE"
    with pytest.raises(TypeError):
        next(stream)


def test_int8_and_bf16_load_and_agree_with_f32_on_clear_texts():
    for precision in ("int8", "bf16"):
        clf = sentiment.Classifier(precision=precision)
        assert clf.precision in ("int8", "bf16", "f32")
        assert [r["label"] for r in clf(["I love this movie", "The plot was a mess"])] == ["POSITIVE", "NEGATIVE"]


def test_a_forked_child_gets_a_clear_error_not_a_hang(bundled):
    """After a batched call, a child of os.fork() (or of a fork-method
    multiprocessing pool) has none of the model's threads: it gets a
    RuntimeError naming the spawn start method, in place of hanging; the
    parent is warned at the fork; spawn works."""
    import multiprocessing
    import os
    import signal

    bundled(["a good film", "a bad film"] * 40, batch_size=16)
    with pytest.warns(RuntimeWarning, match="spawn"):
        pid = os.fork()
    if pid == 0:
        signal.alarm(20)  # a hang would end the child, not the test run
        code = 3
        try:
            bundled("a good film")
        except RuntimeError as err:
            code = 0 if "spawn" in str(err) else 4
        except BaseException:
            code = 5
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with multiprocessing.get_context("fork").Pool(1) as pool:
            with pytest.raises(RuntimeError, match="spawn"):
                pool.apply(_classify_in_worker, ("a good film",), )
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_label_in_new_process, ("a good film",)) == "POSITIVE"


def _classify_in_worker(text):
    return CLASSIFIER_FOR_FORK(text)[0]["label"]


def _label_in_new_process(text):
    import sentiment as fresh
    return fresh.Classifier()(text)[0]["label"]
