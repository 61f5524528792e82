#!/usr/bin/env python3
"""Issue 32's goals: the Python package's throughput on SST-2 dev against
`sentiment batch` and the transformers pipeline, same model, same texts,
batch 32, 2 threads, in alternating rounds (medians quoted).

Tooling only; needs a Python with the wheel installed, and torch and
transformers for the pipeline (skipped without them):

    python3 tests/python/python_test.py          # builds target/wheels/
    pip install target/wheels/sentiment-*.whl torch==2.15.0 transformers==5.23.0
    cargo build --release
    python tools/python_bench.py [--rounds 5] [--repeat 5]

Each round classifies SST-2 dev `--repeat` times over (872 × repeat
texts): the package in-process (model loaded before the clock starts),
`sentiment batch` end to end (process start and model load included, a
small share at this size), the pipeline in-process.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "minilm-l6-sst2"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="f32", help="the package's and the binary's (the pipeline runs f32)")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "sentiment"))
    args = ap.parse_args()

    import sentiment

    dev = [json.loads(l)["text"] for l in (ROOT / "test_data" / "sst2_dev.jsonl").read_text().splitlines()]
    texts = dev * args.repeat
    clf = sentiment.Classifier(threads=args.threads, precision=args.precision)
    runners = {"python package": lambda: clf(texts, batch_size=32)}

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(t.replace("\n", " ") + "\n" for t in texts))
        plain = f.name

    def batch():
        subprocess.run(
            [args.binary, "--threads", str(args.threads), "--precision", args.precision, "batch", "--input", "text", "--batch-size", "32", plain],
            check=True, stdout=subprocess.DEVNULL,
        )

    runners["sentiment batch"] = batch
    try:
        import torch
        from transformers import pipeline

        torch.set_num_threads(args.threads)
        pipe = pipeline("text-classification", model=str(MODEL), device="cpu", dtype=torch.float32)
        runners["transformers pipeline"] = lambda: pipe(texts, batch_size=32, truncation=True)
    except ImportError as err:
        print(f"transformers pipeline skipped: {err}", file=sys.stderr)

    # The same answers first: the package and the pipeline agree on labels.
    ours = [r["label"] for r in clf(dev[:64])]
    if "transformers pipeline" in runners:
        theirs = [r["label"] for r in pipe(dev[:64], truncation=True)]
        agree = sum(a == b for a, b in zip(ours, theirs))
        print(f"labels agreeing with the pipeline on 64 dev texts: {agree}/64", file=sys.stderr)

    seconds = {name: [] for name in runners}
    for round_ in range(args.rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
        print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr)

    medians = {name: statistics.median(s) for name, s in seconds.items()}
    package = len(texts) / medians["python package"]
    print(f"{len(texts)} SST-2 dev texts per round, batch 32, {args.threads} threads, {args.rounds} rounds (median), "
          f"package and binary in {clf.precision}")
    print("| runner | texts/s | package / runner |")
    print("|---|---:|---:|")
    for name, median in medians.items():
        rate = len(texts) / median
        print(f"| {name} | {rate:.0f} | {package / rate:.2f} |")


if __name__ == "__main__":
    main()
