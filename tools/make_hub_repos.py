#!/usr/bin/env python3
"""Hub repos as they really are: five small random-weight models in the file
layouts of five popular sentiment repos, and goldens from transformers
loading only their slow tokenizer files (no tokenizer.json).

Tooling only: the Rust tests (tests/hub_repos.rs) serve these repos from
their mock hub and never run Python.

    pip install torch==2.15.0 transformers==5.23.0 safetensors==0.8.0 \
        tokenizers==0.23.3 sentencepiece==0.2.3 protobuf==7.36.2
    python3 tools/make_hub_repos.py           # tests/fixtures/hub/
    python3 tools/make_hub_repos.py goldens   # only the goldens, from the repos as they are

The layouts, as the hub lists them (issue 39):
- distilbert/distilbert-base-uncased-finetuned-sst-2-english: both weight
  formats, vocab.txt, a 48-byte tokenizer_config.json, and tokenizer.json
  only under onnx/ beside model.onnx; also tf_model.h5, rust_model.ot and
  flax_model.msgpack, none of which may be fetched. The tiny DistilBERT's
  weights (tests/fixtures/tiny-distilbert{,-pth}).
- cardiffnlp/twitter-roberta-base-sentiment-latest: pytorch_model.bin only
  on main (with the roberta.pooler.* tensors the classifier does not use),
  vocab.json + merges.txt + special_tokens_map.json and no
  tokenizer_config.json; refs/pr/1 adds model.safetensors, as the hub's
  conversion bot does. The BPE is tiny-roberta's (trained on SST-2 train by
  make_fixtures.py), written out as the slow files.
- cardiffnlp/twitter-xlm-roberta-base-sentiment: pytorch_model.bin,
  sentencepiece.bpe.model (a Unigram SentencePiece model trained here on
  SST-2 train, nmt_nfkc normalization, so it carries a precompiled
  charsmap, and one user-defined piece), special_tokens_map.json.
- ProsusAI/finbert: pytorch_model.bin, vocab.txt, a tokenizer_config.json
  as transformers 4's save_pretrained wrote it (added_tokens_decoder,
  tokenizer_class) and special_tokens_map.json. The tiny BERT's weights.
- nlptown/bert-base-multilingual-uncased-sentiment: model.safetensors,
  vocab.txt, a tokenizer_config.json with the legacy `max_len` and accents
  and CJK options off, special_tokens_map.json. The tiny BERT's weights.

The vocabularies are real: the bundled model's WordPiece
(models/minilm-l6-sst2/vocab.txt, bert-base-uncased's), the BPE above and
the SentencePiece model trained here. SentencePiece training is
deterministic for the same input and options.

Writes tests/fixtures/hub/repos.json (each repo's revisions, commits and
files, as paths in this repository, and which files loading it must
download), the new files under tests/fixtures/hub/, and for each repo
golden_<name>.json and golden_pairs_<name>.json.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import AutoModelForSequenceClassification, XLMRobertaConfig, \
    XLMRobertaForSequenceClassification

import make_fixtures as mf

ROOT = mf.ROOT
FIXTURES = mf.FIXTURES
HUB = FIXTURES / "hub"
WORDPIECE = "models/minilm-l6-sst2/vocab.txt"

# Texts beyond make_fixtures' INPUTS that the slow files' options and
# special tokens decide: typed special tokens of each family, the
# user-defined piece, NFKC's compatibility forms, whitespace runs.
EXTRA_INPUTS = [
    "hello <mask> world",
    "hello<mask>world and <mask>",
    "<s> and </s> typed, <pad> and <unk> too",
    "@user said hi to @user",
    "  leading and trailing spaces  ",
    "runs   of    spaces\tand\ttabs\u00a0nbsp",
    "ＦＵＬＬＷＩＤＴＨ ｶﾀｶﾅ ﬁ ligature ① ²",
    "[MASK]ed and [SEP]arated",
    "Ünïcödé ÀÉÎÕÜ ñ ß",
]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def commit(name: str) -> str:
    """A stable 40-hex commit id for a revision."""
    import hashlib
    return hashlib.sha1(name.encode()).hexdigest()


def write(name: str, content) -> str:
    path = HUB / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return rel(path)


def with_unused_tensors(state: dict, prefix: str, dim: int) -> dict:
    """A checkpoint as pre-training leaves it: a pooler and position_ids
    buffer the classifier does not use."""
    torch.manual_seed(mf.SEED + 1)
    state = dict(state)
    state[f"{prefix}.pooler.dense.weight"] = torch.randn(dim, dim)
    state[f"{prefix}.pooler.dense.bias"] = torch.randn(dim)
    state[f"{prefix}.embeddings.position_ids"] = torch.arange(514).unsqueeze(0)
    return state


def bpe_slow_files() -> tuple[str, str]:
    """tiny-roberta's BPE as vocab.json and merges.txt."""
    tok = json.loads((FIXTURES / "tiny-roberta" / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    merges = tok["model"]["merges"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in merges]
    return (write("twitter-roberta/vocab.json", json.dumps(vocab, ensure_ascii=False)),
            write("twitter-roberta/merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n"))


def sentencepiece_model() -> Path:
    import sentencepiece as spm
    out = HUB / "twitter-xlm-roberta"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(t.replace("\n", " ") for t in mf.training_texts()
                                    if t.strip()) + "\n")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "sp"), model_type="unigram",
            vocab_size=2000, character_coverage=1.0, normalization_rule_name="nmt_nfkc",
            user_defined_symbols=["@user"], num_threads=1, max_sentence_length=100000,
            minloglevel=2)
        shutil.copy(Path(tmp) / "sp.model", out / "sentencepiece.bpe.model")
    return out / "sentencepiece.bpe.model"


def xlmr_weights(vocab_size: int) -> dict:
    labels = ["negative", "neutral", "positive"]
    cfg = XLMRobertaConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=40,
                           max_position_embeddings=514, type_vocab_size=1,
                           layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           id2label=dict(enumerate(labels)),
                           label2id={l: i for i, l in enumerate(labels)},
                           architectures=["XLMRobertaForSequenceClassification"])
    model = mf.randomise(XLMRobertaForSequenceClassification(cfg).eval())
    (HUB / "twitter-xlm-roberta").mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(HUB / "twitter-xlm-roberta" / "config.json")
    return model.state_dict()


def bert_bin() -> str:
    """The tiny BERT's safetensors weights as a PyTorch pickle."""
    model = AutoModelForSequenceClassification.from_pretrained(
        FIXTURES / "tiny-bert", dtype=torch.float32)
    path = HUB / "finbert" / "pytorch_model.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(with_unused_tensors(model.state_dict(), "bert", 16), path)
    return rel(path)


ROBERTA_SPECIALS_MAP = {
    "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
    "pad_token": "<pad>", "cls_token": "<s>",
    "mask_token": {"content": "<mask>", "single_word": False, "lstrip": True,
                   "rstrip": False, "normalized": False},
}
BERT_SPECIALS_MAP = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                     "cls_token": "[CLS]", "mask_token": "[MASK]"}


def finbert_tokenizer_config() -> str:
    """As transformers 4's save_pretrained wrote a BertTokenizer's."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ids = [0, 100, 101, 102, 103]
    decoder = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": True} for i, t in zip(ids, specials)}
    return json.dumps({
        "added_tokens_decoder": decoder, "clean_up_tokenization_spaces": True,
        "cls_token": "[CLS]", "do_basic_tokenize": True, "do_lower_case": True,
        "mask_token": "[MASK]", "model_max_length": 512, "never_split": None,
        "pad_token": "[PAD]", "sep_token": "[SEP]", "strip_accents": None,
        "tokenize_chinese_chars": True, "tokenizer_class": "BertTokenizer",
        "unk_token": "[UNK]"}, indent=2) + "\n"


UNUSED = {  # files a repo has that loading it must never fetch
    "tf_model.h5": b"TF weights: never fetched\n",
    "rust_model.ot": b"rust-bert weights: never fetched\n",
    "flax_model.msgpack": b"Flax weights: never fetched\n",
    "onnx/model.onnx": b"ONNX graph: never fetched\n",
}


def build() -> list:
    HUB.mkdir(parents=True, exist_ok=True)
    unused = {name: write(f"unused/{name.replace('/', '_')}", body)
              for name, body in UNUSED.items()}
    repos = []

    # distilbert/distilbert-base-uncased-finetuned-sst-2-english
    files = {
        "config.json": "tests/fixtures/tiny-distilbert/config.json",
        "model.safetensors": "tests/fixtures/tiny-distilbert/model.safetensors",
        "pytorch_model.bin": "tests/fixtures/tiny-distilbert-pth/pytorch_model.bin",
        "vocab.txt": WORDPIECE,
        "tokenizer_config.json": write("distilbert-sst2/tokenizer_config.json",
                                       '{"model_max_length": 512, "do_lower_case": true}'),
        "onnx/tokenizer.json": "tests/fixtures/tiny-distilbert/tokenizer.json",
        **unused,
    }
    repos.append({"id": "distilbert/distilbert-base-uncased-finetuned-sst-2-english",
                  "name": "distilbert-sst2", "kind": "wordpiece",
                  "revisions": {"main": {"files": files, "uses": [
                      "config.json", "vocab.txt", "tokenizer_config.json",
                      "model.safetensors"]}}})

    # cardiffnlp/twitter-roberta-base-sentiment-latest
    vocab, merges = bpe_slow_files()
    model = AutoModelForSequenceClassification.from_pretrained(
        FIXTURES / "tiny-roberta", dtype=torch.float32)
    state = with_unused_tensors(model.state_dict(), "roberta", 16)
    (HUB / "twitter-roberta").mkdir(parents=True, exist_ok=True)
    torch.save(state, HUB / "twitter-roberta" / "pytorch_model.bin")
    save_file({k: v.contiguous() for k, v in state.items()},
              HUB / "twitter-roberta" / "model.safetensors", metadata={"format": "pt"})
    main = {
        "config.json": "tests/fixtures/tiny-roberta/config.json",
        "pytorch_model.bin": rel(HUB / "twitter-roberta" / "pytorch_model.bin"),
        "vocab.json": vocab, "merges.txt": merges,
        "special_tokens_map.json": write("twitter-roberta/special_tokens_map.json",
                                         json.dumps(ROBERTA_SPECIALS_MAP)),
        "tf_model.h5": unused["tf_model.h5"],
    }
    pr = {**main, "model.safetensors": rel(HUB / "twitter-roberta" / "model.safetensors")}
    slow = ["config.json", "vocab.json", "merges.txt", "special_tokens_map.json"]
    repos.append({"id": "cardiffnlp/twitter-roberta-base-sentiment-latest",
                  "name": "twitter-roberta", "kind": "bpe",
                  "revisions": {"main": {"files": main, "uses": slow + ["pytorch_model.bin"]},
                                "refs/pr/1": {"files": pr,
                                              "uses": slow + ["model.safetensors"]}}})

    # cardiffnlp/twitter-xlm-roberta-base-sentiment
    spm_path = sentencepiece_model()
    import sentencepiece as spm
    pieces = spm.SentencePieceProcessor(model_file=str(spm_path)).get_piece_size()
    state = with_unused_tensors(xlmr_weights(pieces + 2), "roberta", 16)
    torch.save(state, HUB / "twitter-xlm-roberta" / "pytorch_model.bin")
    files = {
        "config.json": rel(HUB / "twitter-xlm-roberta" / "config.json"),
        "pytorch_model.bin": rel(HUB / "twitter-xlm-roberta" / "pytorch_model.bin"),
        "sentencepiece.bpe.model": rel(spm_path),
        "special_tokens_map.json": write("twitter-xlm-roberta/special_tokens_map.json",
                                         json.dumps(ROBERTA_SPECIALS_MAP)),
        "tf_model.h5": unused["tf_model.h5"],
    }
    repos.append({"id": "cardiffnlp/twitter-xlm-roberta-base-sentiment",
                  "name": "twitter-xlm-roberta", "kind": "sentencepiece",
                  "revisions": {"main": {"files": files, "uses": [
                      "config.json", "sentencepiece.bpe.model", "special_tokens_map.json",
                      "pytorch_model.bin"]}}})

    # ProsusAI/finbert
    files = {
        "config.json": "tests/fixtures/tiny-bert/config.json",
        "pytorch_model.bin": bert_bin(),
        "vocab.txt": WORDPIECE,
        "tokenizer_config.json": write("finbert/tokenizer_config.json",
                                       finbert_tokenizer_config()),
        "special_tokens_map.json": write("finbert/special_tokens_map.json",
                                         json.dumps(BERT_SPECIALS_MAP)),
        "flax_model.msgpack": unused["flax_model.msgpack"],
        "tf_model.h5": unused["tf_model.h5"],
    }
    repos.append({"id": "ProsusAI/finbert", "name": "finbert", "kind": "wordpiece",
                  "revisions": {"main": {"files": files, "uses": [
                      "config.json", "vocab.txt", "tokenizer_config.json",
                      "special_tokens_map.json", "pytorch_model.bin"]}}})

    # nlptown/bert-base-multilingual-uncased-sentiment
    files = {
        "config.json": "tests/fixtures/tiny-bert/config.json",
        "model.safetensors": "tests/fixtures/tiny-bert/model.safetensors",
        "vocab.txt": WORDPIECE,
        "tokenizer_config.json": write("nlptown/tokenizer_config.json", json.dumps({
            "do_lower_case": True, "strip_accents": False, "tokenize_chinese_chars": False,
            "max_len": 512})),
        "special_tokens_map.json": write("nlptown/special_tokens_map.json",
                                         json.dumps(BERT_SPECIALS_MAP)),
        "tf_model.h5": unused["tf_model.h5"],
        "flax_model.msgpack": unused["flax_model.msgpack"],
    }
    repos.append({"id": "nlptown/bert-base-multilingual-uncased-sentiment",
                  "name": "nlptown", "kind": "wordpiece",
                  "revisions": {"main": {"files": files, "uses": [
                      "config.json", "vocab.txt", "tokenizer_config.json",
                      "special_tokens_map.json", "model.safetensors"]}}})

    for repo in repos:
        for revision, content in repo["revisions"].items():
            content["commit"] = commit(f"{repo['id']}@{revision}")
    return repos


def materialise(files: dict, into: Path):
    """A revision's files in a folder, as a snapshot would hold them."""
    for name, source in files.items():
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, into / name)


def write_goldens(repo: dict):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / repo["name"]
        uses = repo["revisions"]["main"]["uses"]
        materialise({n: s for n, s in repo["revisions"]["main"]["files"].items() if n in uses},
                    folder)
        assert not (folder / "tokenizer.json").exists()
        golden = HUB / f"golden_{repo['name']}.json"
        mf.write_golden(folder, golden, mf.INPUTS + EXTRA_INPUTS, "tools/make_hub_repos.py")
        mf.write_pair_golden(folder, HUB / f"golden_pairs_{repo['name']}.json")
        # The goldens say which tokenizer transformers built, from which files.
        document = json.loads(golden.read_text())
        document["slow_files"] = sorted(p.name for p in folder.iterdir())
        golden.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n")


def main():
    if sys.argv[1:] == ["goldens"]:
        # The goldens again, from the repos as committed (no retraining).
        repos = json.loads((HUB / "repos.json").read_text())["repos"]
        for repo in repos:
            write_goldens(repo)
        return
    repos = build()
    for repo in repos:
        write_goldens(repo)
    (HUB / "repos.json").write_text(json.dumps({
        "generator": "tools/make_hub_repos.py",
        "transformers": __import__("transformers").__version__,
        "repos": repos}, indent=1) + "\n")
    print(f"wrote {HUB / 'repos.json'} ({len(repos)} repos)")


if __name__ == "__main__":
    main()
