#!/usr/bin/env python3
"""The real HF client against `sentiment serve` (issue 30): huggingface_hub's
InferenceClient and AsyncInferenceClient call text_classification on the
server's root URL unchanged, as they would call TEI; prometheus_client's
classic text parser reads /metrics; and every TEI request form gets an
answer that validates against TEI's own OpenAPI schema.

    python3 tests/serve_clients/hf_client_test.py target/release/sentiment

It makes (or reuses) a venv under target/ for each huggingface_hub
version in HUBS, from PyPI, starts the server on a free port, and runs the
client from each: text_classification must return its documented list of
elements. Prints
"N passed, 0 failed" and exits 0 when every check holds.
"""

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
# The client CI pinned first, and the newest when this was written: the
# answer must be each one's documented type.
HUBS = ["2.4.0", "2.5.0"]
PROMETHEUS = "prometheus_client==0.23.1"
SCHEMAS = "openapi-schema-validator==0.6.3"
TEI_OPENAPI = ROOT / "tests" / "serve_clients" / "tei_openapi.json"

CLIENT = r'''
import asyncio, json, sys
from huggingface_hub import AsyncInferenceClient, InferenceClient
url = sys.argv[1]
from huggingface_hub import TextClassificationOutputElement as Element
checks = []
# text_classification returns a list of elements, best first: every label,
# or the top_k best (the client takes the first list of the HF Inference
# API's one-list-per-input answer).
def labels(answer, count):
    return (isinstance(answer, list) and len(answer) == count
            and all(isinstance(e, Element) for e in answer)
            and [e.score for e in answer] == sorted((e.score for e in answer), reverse=True))
best = InferenceClient(model=url).text_classification("I love this movie")
checks.append(labels(best, 2) and best[0].label == "POSITIVE" and best[0].score > 0.9)
worst = InferenceClient(model=url).text_classification("The plot was a mess", top_k=1)
checks.append(labels(worst, 1) and worst[0].label == "NEGATIVE")
async def main():
    return await AsyncInferenceClient(model=url).text_classification("I love this movie", top_k=1)
answer = asyncio.run(main())
checks.append(labels(answer, 1) and answer[0].label == "POSITIVE")
async def every_label():
    return await AsyncInferenceClient(model=url).text_classification("I love this movie")
checks.append(labels(asyncio.run(every_label()), 2))
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
# Every TEI request form, and each answer validated against TEI's own
# OpenAPI schema (its docs/openapi.json, committed as tei_openapi.json).
from openapi_schema_validator import OAS30Validator
spec = json.load(open(sys.argv[2]))
def resolve(node):
    if isinstance(node, dict):
        if "$ref" in node:
            return resolve(spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
        return {k: resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v) for v in node]
    return node
def call(method, path, body=None):
    request = urllib.request.Request(url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")
def valid(path, method, status, answer):
    responses = spec["paths"][path][method]["responses"]
    schema = resolve(responses[str(status)]["content"]["application/json"]["schema"]) if str(status) in responses \
        else resolve({"$ref": "#/components/schemas/ErrorResponse"})
    errors = list(OAS30Validator(schema).iter_errors(answer))
    if errors:
        print(path, status, answer, errors[0].message, file=sys.stderr)
    return not errors
cases = [
    ("post", "/predict", {"inputs": "What is Deep Learning?"}, 200),
    ("post", "/predict", {"inputs": [["I like you."], ["I hate pineapples"]]}, 200),
    ("post", "/predict", {"inputs": ["I like you.", "I hate pineapples"], "raw_scores": True}, 200),
    ("post", "/predict", {"inputs": ["I like you."]}, 200),
    ("post", "/predict", {"inputs": [["I like you.", "You like me."], ["I hate pineapples"]]}, 200),
    ("post", "/predict", {"inputs": ["a", "b", "c"]}, 422),
    ("post", "/predict", {"inputs": "What is Deep Learning?", "truncate": True, "truncation_direction": "Right"}, 200),
    ("post", "/predict", {"inputs": ""}, 400),
    ("post", "/predict", {"inputs": []}, 422),
    ("post", "/predict", {"inputs": 42}, 422),
    ("post", "/tokenize", {"inputs": "test"}, 200),
    ("post", "/tokenize", {"inputs": ["test", "two words"], "add_special_tokens": False}, 200),
    ("post", "/decode", {"ids": [101, 3231, 102]}, 200),
    ("post", "/decode", {"ids": [[101, 3231, 102], [3231]], "skip_special_tokens": False}, 200),
    ("get", "/info", None, 200),
]
for method, path, body, status in cases:
    got, answer = call(method.upper(), path, body)
    checks.append(got == status and valid(path, method, got, answer))
    if got != status:
        print(path, body, got, answer, file=sys.stderr)
print(json.dumps(checks))
'''


def venv_python(version):
    venv = ROOT / "target" / f"hf-client-venv-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(python), "-c", f"import huggingface_hub, prometheus_client, openapi_schema_validator; "
                            f"assert huggingface_hub.__version__ == {version!r}"], capture_output=True
    )
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"huggingface_hub=={version}", PROMETHEUS,
                        SCHEMAS], check=True)
    return python


def main():
    binary = Path(sys.argv[1]).resolve()
    pythons = [(version, venv_python(version)) for version in HUBS]
    server = subprocess.Popen(
        [str(binary), "serve", "--port", "0"], stderr=subprocess.PIPE, text=True
    )
    try:
        line = server.stderr.readline()
        if "listening on " not in line:
            sys.exit(f"the server did not start: {line!r}")
        url = line.split("listening on ")[1].split()[0]
        failed = 0
        for version, python in pythons:
            started = time.time()
            result = subprocess.run(
                [str(python), "-c", CLIENT, url, str(TEI_OPENAPI)], capture_output=True, text=True, timeout=300
            )
            if result.returncode != 0:
                print(result.stdout, result.stderr)
                print(f"huggingface_hub {version}: 0 passed, 1 failed")
                failed += 1
                continue
            checks = [bool(c) for c in __import__("json").loads(result.stdout.strip().splitlines()[-1])]
            passed = sum(checks)
            print(f"huggingface_hub {version} against {url} in {time.time() - started:.1f} s: {checks}")
            print(f"{passed} passed, {len(checks) - passed} failed")
            failed += len(checks) - passed
        sys.exit(0 if failed == 0 else 1)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
