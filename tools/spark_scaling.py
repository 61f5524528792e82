#!/usr/bin/env python3
"""Spark scaling of the recipe on this machine: N SST-2 train phrases with
the bundled model, `--master local[1]` against `local[2]`, one thread per
task, same number of partitions (4). Prints both wall times and the
speed-up. Needs the venv tests/spark/spark_test.py makes (run it first).

    python3 tools/spark_scaling.py [N] [BINARY]
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / "target" / "spark-venv" / "bin" / "python"


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    binary = Path(sys.argv[2] if len(sys.argv) > 2 else ROOT / "target" / "release" / "sentiment").resolve()
    train = Path("/work/shared/data/sst2_train.jsonl")
    if not train.exists():
        train = ROOT.parent / "shared" / "data" / "sst2_train.jsonl"
    rows = [json.loads(l) for l in train.read_text().splitlines()][:n]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "input.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": r["text"]}) + "\n" for i, r in enumerate(rows)))
        times = {}
        for master in ["local[1]", "local[2]"]:
            out = Path(tmp) / master.replace("[", "").replace("]", "")
            started = time.time()
            subprocess.run(
                [str(PYTHON), str(ROOT / "examples/spark/sentiment_spark.py"), str(source), str(out),
                 "--binary", str(binary), "--partitions", "4", "--threads", "1", "--master", master],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", "PYSPARK_PYTHON": str(PYTHON), "HOME": tmp},
            )
            times[master] = time.time() - started
            lines = sum(len(p.read_text().splitlines()) for p in out.glob("part-*"))
            assert lines == len(rows), (lines, len(rows))
            print(f"{master}: {len(rows)} lines in {times[master]:.1f} s ({len(rows) / times[master]:.0f} lines/s)")
        print(f"speed-up local[2] / local[1]: {times['local[1]'] / times['local[2]']:.2f}x")


if __name__ == "__main__":
    main()
