#!/usr/bin/env python3
"""CI test of the Python package's Spark recipe
(examples/spark/sentiment_pandas_udf.py) on real Spark in local mode. Run by
.ci/run after tests/python/python_test.py, which builds the wheel:

    python3 tests/spark/spark_python_test.py

Into the Spark test's venv (tests/spark/spark_test.py) it installs pandas,
pyarrow and the wheel, then classifies 2,000 SST-2 dev lines (some without
a text) over 4 partitions with local[2], and checks every row is there once,
its passthrough columns intact, and its label and score those of the
package run directly on the same texts.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spark_test import ROOT, venv_python  # noqa: E402

LINES = 2000
PANDAS = ["pandas==2.3.3", "pyarrow==22.0.0"]


def main():
    python = venv_python()
    wheels = sorted((ROOT / "target" / "wheels").glob("sentiment-*.whl"))
    assert len(wheels) == 1, "build the wheel first: python3 tests/python/python_test.py"
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PANDAS], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", str(wheels[0])], check=True)
    dev = [json.loads(l) for l in (ROOT / "test_data" / "sst2_dev.jsonl").read_text().splitlines()]
    model = ROOT / "tests" / "fixtures" / "tiny-distilbert"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "input.jsonl"
        rows = []
        for i in range(LINES):
            row = {"id": i, "gold": dev[i % len(dev)]["label"], "text": dev[i % len(dev)]["text"]}
            if i % 100 == 3:
                del row["text"]
            rows.append(row)
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        subprocess.run(
            [str(python), str(ROOT / "examples" / "spark" / "sentiment_pandas_udf.py"), str(source), str(tmp / "out"),
             "--model", str(model), "--partitions", "4", "--master", "local[2]"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYSPARK_PYTHON=str(python)),
        )
        out = []
        for part in sorted((tmp / "out").glob("part-*")):
            out += [json.loads(l) for l in part.read_text().splitlines()]
        assert sorted(r["id"] for r in out) == list(range(LINES)), "every row exactly once"
        texts = [r["text"] for r in rows if "text" in r]
        expected = subprocess.run(
            [str(python), "-c",
             "import json, sys, sentiment; texts = json.load(sys.stdin); "
             f"print(json.dumps(sentiment.Classifier({str(model)!r})(texts)))"],
            input=json.dumps(texts), capture_output=True, text=True, check=True,
        ).stdout
        by_text = dict(zip(texts, json.loads(expected)))
        for row in out:
            source_row = rows[row["id"]]
            assert row["gold"] == source_row["gold"], "passthrough column intact"
            if "text" not in source_row:
                assert row.get("label") is None and row.get("score") is None
                continue
            want = by_text[source_row["text"]]
            assert row["label"] == want["label"] and abs(row["score"] - want["score"]) < 1e-6
        print(f"spark pandas recipe: {LINES} rows, local[2], 4 partitions: ok")


if __name__ == "__main__":
    main()
