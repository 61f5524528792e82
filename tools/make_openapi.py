#!/usr/bin/env python3
"""Writes src/serve/openapi.json, the document `sentiment serve` answers at
/api-doc/openapi.json, from TEI's own (tests/serve_clients/tei_openapi.json,
text-embeddings-inference 1.9.3's docs/openapi.json, Apache-2.0): TEI's
paths and schemas for the routes we serve, unchanged, plus ours.

    python3 tools/make_openapi.py
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEI = json.loads((ROOT / "tests" / "serve_clients" / "tei_openapi.json").read_text())
OURS = ["/predict", "/tokenize", "/decode", "/health", "/info", "/metrics"]


def referenced(node, found):
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in found and name in TEI["components"]["schemas"]:
                found.add(name)
                referenced(TEI["components"]["schemas"][name], found)
        for value in node.values():
            referenced(value, found)
    elif isinstance(node, list):
        for value in node:
            referenced(value, found)
    return found


def main():
    paths = {path: TEI["paths"][path] for path in OURS}
    predict = paths["/predict"]["post"]
    for alias in ["/", "/invocations"]:
        paths[alias] = {"post": {**predict, "operationId": f"predict{alias.replace('/', '_')}",
                                 "summary": "Get Predictions (as /predict)"}}
    paths["/"]["post"]["summary"] = (
        "Get Predictions in the HF Inference API's shape, where huggingface_hub's InferenceClient "
        "posts: one list of labels per input (`[[...]]` for one text), cut to `parameters.top_k`")
    paths["/ping"] = {"get": {**paths["/health"]["get"], "operationId": "ping"}}
    paths["/"]["get"] = {**paths["/health"]["get"], "operationId": "health_root"}
    paths["/classify"] = {"post": {
        "tags": ["sentiment"],
        "summary": "Predictions with `sentiment predict --json`'s fields (label, score, scores, truncated, windows)",
        "operationId": "classify",
        "requestBody": predict["requestBody"],
        "responses": {
            "200": {"description": "One object per input (an object for a single string)",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/Classification"},
                        {"type": "array", "items": {"$ref": "#/components/schemas/Classification"}}]}}}},
            **{code: answer for code, answer in predict["responses"].items() if code != "200"},
        },
    }}
    schemas = {name: TEI["components"]["schemas"][name] for name in sorted(referenced(paths, set()))}
    schemas["Classification"] = {
        "type": "object",
        "required": ["label", "score", "scores", "truncated"],
        "properties": {
            "label": {"type": "string"},
            "score": {"type": "number", "format": "float"},
            "scores": {"type": "object", "additionalProperties": {"type": "number", "format": "float"}},
            "truncated": {"type": "boolean"},
            "windows": {"type": "integer", "minimum": 0, "nullable": True},
        },
    }
    document = {
        "openapi": TEI["openapi"],
        "info": {
            "title": "sentiment serve",
            "description": "Sentiment classification, compatible with text-embeddings-inference's "
                           "classification API (paths and schemas from TEI 1.9.3's openapi.json, Apache-2.0)",
            "license": {"name": "Apache-2.0"},
            "version": "0.1.0",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas},
    }
    out = ROOT / "src" / "serve" / "openapi.json"
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{out.relative_to(ROOT)}: {len(paths)} paths, {len(schemas)} schemas")


if __name__ == "__main__":
    main()
