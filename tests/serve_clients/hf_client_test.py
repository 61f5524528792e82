#!/usr/bin/env python3
"""The real HF client against `sentiment serve` (issue 30): huggingface_hub's
InferenceClient and AsyncInferenceClient call text_classification on the
server's root URL unchanged, as they would call TEI; and prometheus_client's
classic text parser reads /metrics.

    python3 tests/serve_clients/hf_client_test.py target/release/sentiment

It makes (or reuses) a venv under target/ with huggingface_hub from PyPI,
starts the server on a free port, and runs the client there. Prints
"N passed, 0 failed" and exits 0 when every check holds.
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = ROOT / "target" / "hf-client-venv"
HUB = "huggingface_hub==2.4.0"
PROMETHEUS = "prometheus_client==0.23.1"

CLIENT = r'''
import asyncio, json, sys
from huggingface_hub import AsyncInferenceClient, InferenceClient
url = sys.argv[1]
first = lambda answer: answer[0] if isinstance(answer, list) else answer
checks = []
best = first(InferenceClient(model=url).text_classification("I love this movie"))
checks.append(best.label == "POSITIVE" and best.score > 0.9)
worst = first(InferenceClient(model=url).text_classification("The plot was a mess", top_k=1))
checks.append(worst.label == "NEGATIVE")
async def main():
    return await AsyncInferenceClient(model=url).text_classification("I love this movie")
checks.append(first(asyncio.run(main())).label == "POSITIVE")
# /metrics through the Prometheus project's classic text parser: every
# family parses, with its help text, and the request counter counts.
import urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(url + "/metrics").read().decode()
families = {f.name: f for f in text_string_to_metric_families(text)}
checks.append(all(f.documentation for f in families.values()))
requests = families.get("sentiment_requests")
checks.append(requests is not None and requests.type == "counter"
              and sum(s.value for s in requests.samples if s.name == "sentiment_requests_total") >= 3)
print(json.dumps(checks))
'''


def venv_python():
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import huggingface_hub, prometheus_client"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", HUB, PROMETHEUS], check=True)
    return python


def main():
    binary = Path(sys.argv[1]).resolve()
    python = venv_python()
    server = subprocess.Popen(
        [str(binary), "serve", "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    try:
        line = server.stderr.readline()
        if "listening on " not in line:
            sys.exit(f"the server did not start: {line!r}")
        url = line.split("listening on ")[1].split()[0]
        started = time.time()
        result = subprocess.run(
            [str(python), "-c", CLIENT, url], capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            print(result.stdout, result.stderr)
            print("0 passed, 1 failed")
            sys.exit(1)
        checks = [bool(c) for c in __import__("json").loads(result.stdout.strip().splitlines()[-1])]
        passed = sum(checks)
        print(f"HF client against {url} in {time.time() - started:.1f} s: {checks}")
        print(f"{passed} passed, {len(checks) - passed} failed")
        sys.exit(0 if all(checks) else 1)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
