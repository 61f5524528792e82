#!/usr/bin/env python3
"""CI test of the Spark recipe (examples/spark/sentiment_spark.py) on real
Spark in local mode. Run by .ci/run after `cargo test --release`:

    python3 tests/spark/spark_test.py target/release/sentiment

It makes (or reuses) a venv under target/ with pyspark from PyPI, then:
- classifies 5,000 JSONL lines (20 of them bad) with --master local[2] and
  4 partitions, and checks lines out = lines in, every id exactly once,
  labels and scores identical to one `sentiment batch` run over the same
  file, and the bad lines as error records;
- runs again with the first attempt of partition 0 killed halfway, and
  checks Spark retried it and every line is still there exactly once.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYSPARK = "pyspark==4.3.0"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "target" / "spark-venv"
LINES, BAD = 5000, 20


def venv_python():
    """A Python with pyspark: a venv under target/ (made once, reused), or,
    where this Python cannot make venvs, pyspark installed into a folder
    under target/ and put on PYTHONPATH."""
    python = VENV / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(VENV)], capture_output=True)
        if made.returncode != 0:
            folder = ROOT / "target" / "spark-pylib"
            if not (folder / "pyspark").exists():
                subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(folder), PYSPARK], check=True)
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
            return Path(sys.executable)
    check = subprocess.run([str(python), "-c", "import pyspark"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", PYSPARK], check=True)
    return python


def make_input(path):
    dev = [json.loads(l) for l in (ROOT / "test_data" / "sst2_dev.jsonl").read_text().splitlines()]
    bad_every = LINES // BAD
    with open(path, "w") as out:
        for i in range(LINES):
            if i % bad_every == 7:
                out.write(f'{{"id": {i}, "text": "unterminated\n')  # invalid JSON
            else:
                row, after = dev[i % len(dev)], dev[(i + 1) % len(dev)]
                out.write(json.dumps({"id": i, "text": row["text"], "gold": row["label"],
                                      "next": after["text"]}) + "\n")


def read_parts(folder):
    lines = []
    for part in sorted(Path(folder).glob("part-*")):
        lines += [json.loads(l) for l in part.read_text().splitlines()]
    return lines


def run_recipe(python, binary, model, source, output, master, extra=()):
    command = [
        str(python), str(ROOT / "examples" / "spark" / "sentiment_spark.py"), str(source), str(output),
        "--binary", str(binary), "--model", str(model), "--partitions", "4", "--threads", "1",
        "--master", master, *extra,
    ]
    started = time.time()
    subprocess.run(command, check=True, env=dict(os.environ, PYSPARK_PYTHON=str(python)),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.time() - started


def check_output(lines, reference):
    assert len(lines) == LINES, f"{len(lines)} lines out for {LINES} in"
    good = [l for l in lines if "error" not in l]
    errors = [l for l in lines if "error" in l]
    ids = sorted(l["id"] for l in good)
    want_ids = sorted(i for i in range(LINES) if i % (LINES // BAD) != 7)
    assert ids == want_ids, "every good line's id exactly once"
    assert len(errors) == BAD and all("invalid JSON" in e["error"] for e in errors)
    by_id = {l["id"]: l for l in reference if "error" not in l}
    for line in good:
        want = by_id[line["id"]]
        assert (line["label"], line["score"], line["scores"]) == (want["label"], want["score"], want["scores"])


def main():
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target" / "release" / "sentiment").resolve()
    model = ROOT / "tests" / "fixtures" / "tiny-distilbert"
    python = venv_python()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "input.jsonl"
        make_input(source)
        reference = subprocess.run(
            [str(binary), "--model", str(model), "batch", "--errors-ok", str(source)],
            check=True, capture_output=True, text=True,
        ).stdout
        reference = [json.loads(l) for l in reference.splitlines()]

        seconds = run_recipe(python, binary, model, source, tmp / "out", "local[2]")
        check_output(read_parts(tmp / "out"), reference)
        print(f"spark recipe: {LINES} lines, local[2], 4 partitions: ok in {seconds:.1f} s")

        marker = tmp / "killed-once"
        seconds = run_recipe(python, binary, model, source, tmp / "out-retry", "local[2,3]",
                             ["--kill-once-marker", str(marker)])
        assert marker.exists(), "the first attempt of partition 0 was killed"
        check_output(read_parts(tmp / "out-retry"), reference)
        print(f"spark recipe: a killed task retried, every line exactly once: ok in {seconds:.1f} s")

        # Text pairs: each line's (text, next) through a BERT pair model.
        pair_model = ROOT / "tests" / "fixtures" / "tiny-bert"
        def batch(*extra):
            out = subprocess.run([str(binary), "--model", str(pair_model), "batch", "--errors-ok", *extra,
                                  str(source)], check=True, capture_output=True, text=True).stdout
            return [json.loads(l) for l in out.splitlines()]
        pairs, singles = batch("--pair-field", "next"), batch()
        assert all(p["scores"] != s["scores"] for p, s in zip(pairs, singles) if "error" not in p), \
            "the pairs scored as their first texts"
        seconds = run_recipe(python, binary, pair_model, source, tmp / "out-pairs", "local[2]",
                             ["--pair-field", "next"])
        check_output(read_parts(tmp / "out-pairs"), pairs)
        print(f"spark recipe: text pairs (--pair-field): ok in {seconds:.1f} s")


if __name__ == "__main__":
    main()
