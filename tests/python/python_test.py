#!/usr/bin/env python3
"""CI test of the Python package (python/). Run by .ci/run:

    python3 tests/python/python_test.py

It builds the wheel with maturin (from PyPI, in a venv under target/),
installs it into a fresh venv with pytest and nothing else (no torch, no
numpy), checks the package imports there, and runs python/tests with it.
"""

import shutil
import subprocess
import sys
from pathlib import Path

MATURIN = "maturin==1.16.0"
PYTEST = "pytest==9.2.0"
ROOT = Path(__file__).resolve().parents[2]
BUILD_VENV = ROOT / "target" / "python-build-venv"
TEST_VENV = ROOT / "target" / "python-test-venv"
WHEELS = ROOT / "target" / "wheels"


def run(*args, **kwargs):
    print("+", " ".join(str(a) for a in args), file=sys.stderr, flush=True)
    subprocess.run([str(a) for a in args], check=True, **kwargs)


def main():
    if not (BUILD_VENV / "bin" / "maturin").exists():
        run(sys.executable, "-m", "venv", BUILD_VENV)
        run(BUILD_VENV / "bin" / "pip", "install", "-q", MATURIN)
    shutil.rmtree(WHEELS, ignore_errors=True)
    run(BUILD_VENV / "bin" / "maturin", "build", "--release", "-m", ROOT / "python" / "Cargo.toml", "-o", WHEELS)
    wheels = sorted(WHEELS.glob("sentiment-*.whl"))
    assert len(wheels) == 1, wheels
    print(f"wheel: {wheels[0].name}, {wheels[0].stat().st_size / 1e6:.1f} MB", file=sys.stderr)
    # A fresh venv each time: the wheel must install with nothing else.
    shutil.rmtree(TEST_VENV, ignore_errors=True)
    run(sys.executable, "-m", "venv", TEST_VENV)
    python = TEST_VENV / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", wheels[0])
    run(python, "-c", "import sentiment; print(sentiment.Classifier()('a fine, moving film'))")
    run(python, "-m", "pip", "install", "-q", PYTEST)
    run(python, "-m", "pytest", "-q", ROOT / "python" / "tests", cwd=ROOT / "python" / "tests")


if __name__ == "__main__":
    main()
