#!/usr/bin/env python3
"""Peer comparison: `sentiment bench` against HF PyTorch, the transformers
pipeline, ONNX Runtime fp32 and int8 (dynamic quantization), and OpenVINO
f32, default precision (bf16 on CPUs with AVX512_BF16) and int8 (NNCF), on
the same model folders, inputs and metrics, at the same thread count, with
tokenization included. Writes one combined report with sentiment/peer
ratios, and the CPU's measured 2-thread GEMM peak per number type.

Tooling only. From a clean checkout:

    pip install torch==2.15.0 transformers==5.23.0 onnxruntime==1.31.1 onnx==1.23.2 \
        safetensors==0.8.0 tokenizers==0.23.3 openvino==2026.4.1 nncf==3.4.0
    cargo build --release
    python3 tools/peer_bench.py                 # ~25 min on 2 cores
    python3 tools/peer_bench.py --quick         # fewer runs, ~8 min
    python3 tools/peer_bench.py --peers ort,ort-int8,ov,ov-default,ov-int8 \
        --precisions f32,int8 --lengths 14,75,400 --batch-sizes 32 --runs 30 \
        --rounds 3 --out goals                 # issue 14's goals, ~15 min
    python3 tools/peer_bench.py --render goals  # re-render a saved report

With OpenVINO in the run, each model's table is followed by issue 14's goal
table, judged on that run's figures.

Models: the bundled model (models/minilm-l6-sst2, dim 384) and a random
model with distilbert-base's exact shape (dim 768, 6 layers, FFN 3072),
written to target/peer-models/ with the same tokenizer. With --real-shapes,
instead: random models with the exact configs of two hub sentiment models
(tests/fixtures/real-shape: a RoBERTa-base and a BERT-base-multilingual),
HF's own initialisation, and a tokenizer of each family from the tiny
fixtures.
Output: bench_results/peers.{md,json}; the tables and charts are
tools/peer_report.py's.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench_results"
T_IMPORT = time.perf_counter()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (AutoModelForSequenceClassification, AutoTokenizer,  # noqa: E402
                          DistilBertConfig, pipeline)
TORCH_IMPORT_S = time.perf_counter() - T_IMPORT
import onnx  # noqa: E402
from peer_report import markdown, plot, render  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: E402


def stats_ms(samples):
    s = sorted(samples)
    n = len(s)
    rank = lambda q: s[min(max(int(np.ceil(q * n)), 1), n) - 1]  # noqa: E731
    return {"mean_ms": statistics.fmean(s), "p5_ms": rank(.05), "p50_ms": rank(.5), "p95_ms": rank(.95),
            "p99_ms": rank(.99), "min_ms": s[0], "max_ms": s[-1],
            "stddev_ms": statistics.pstdev(s)}


def dataset(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    return [r["text"] for r in rows], [r.get("label") for r in rows]


def text_of_length(tok, n):
    text = "hello " * max(n - 2, 1)
    while len(tok(text)["input_ids"]) > n and len(text) > 6:
        text = text[:-6]
    return text


def random_model(model_dir: Path, cfg, tokenizer_dir: Path):
    """A classifier with random weights (HF's init, seed 0) for `cfg`, saved
    with `tokenizer_dir`'s tokenizer; reused if already written."""
    if (model_dir / "model.safetensors").exists():
        return model_dir
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(cfg).eval()
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(model_dir, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model_dir / name).write_bytes((tokenizer_dir / name).read_bytes())
    return model_dir


def distilbert_base_random(model_dir: Path, like: Path):
    cfg = DistilBertConfig(dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                           id2label={0: "NEGATIVE", 1: "POSITIVE"},
                           label2id={"NEGATIVE": 0, "POSITIVE": 1})
    return random_model(model_dir, cfg, like)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def real_shape_random(model_dir: Path, config_file: Path, tokenizer_dir: Path):
    """A random model with a hub model's exact config (HF's init)."""
    from transformers import AutoConfig
    return random_model(model_dir, AutoConfig.from_pretrained(config_file), tokenizer_dir)


def real_shape_models():
    fixtures = ROOT / "tests" / "fixtures"
    work = ROOT / "target" / "peer-models"
    return {
        "RoBERTa-base (twitter-roberta-base-sentiment-latest)": real_shape_random(
            work / "roberta-base-random",
            fixtures / "real-shape" / "twitter-roberta-base-sentiment-latest.json",
            fixtures / "tiny-roberta"),
        "BERT-base multilingual (bert-base-multilingual-uncased-sentiment)": real_shape_random(
            work / "bert-base-multilingual-random",
            fixtures / "real-shape" / "bert-base-multilingual-uncased-sentiment.json",
            fixtures / "tiny-distilbert"),
    }


class Peer:
    """One runtime: load(), encode(texts) -> inputs, run(inputs) -> logits."""
    name = ""

    def __init__(self, model_dir, threads, work_dir):
        self.model_dir, self.threads, self.work_dir = model_dir, threads, work_dir

    def predict(self, texts):
        return self.run(self.encode(texts))


class TorchPeer(Peer):
    name = "PyTorch"

    def load(self):
        torch.set_num_threads(self.threads)
        self.tok = AutoTokenizer.from_pretrained(self.model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.model_dir, dtype=torch.float32).eval()

    def encode(self, texts):
        return self.tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")

    @torch.inference_mode()
    def run(self, enc):
        return self.model(**enc).logits.numpy()


class PipelinePeer(TorchPeer):
    name = "transformers pipeline"

    def load(self):
        super().load()
        self.pipe = pipeline("text-classification", model=self.model, tokenizer=self.tok,
                             device="cpu", top_k=None)

    def predict(self, texts):
        return self.pipe(texts, truncation=True, max_length=512, batch_size=len(texts))


class OrtPeer(Peer):
    name = "ONNX Runtime fp32"
    quantized = False

    def export(self):
        onnx_path = self.work_dir / "model.onnx"
        if not onnx_path.exists():
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model_dir, dtype=torch.float32).eval()

            class Wrapper(torch.nn.Module):
                def __init__(self, m):
                    super().__init__()
                    self.m = m

                def forward(self, input_ids, attention_mask):
                    return self.m(input_ids=input_ids, attention_mask=attention_mask).logits

            ids = torch.ones((2, 16), dtype=torch.long)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            torch.onnx.export(Wrapper(model).eval(), (ids, ids), str(onnx_path),
                              input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_axes={"input_ids": {0: "b", 1: "s"},
                                            "attention_mask": {0: "b", 1: "s"}},
                              opset_version=17, dynamo=False)
        if not self.quantized:
            return onnx_path
        int8_path = self.work_dir / "model.int8.onnx"
        if not int8_path.exists():
            quantize_dynamic(str(onnx_path), str(int8_path), weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        return int8_path

    def load(self):
        path = self.export()
        started = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.load_tokenizer()
        return time.perf_counter() - started

    def load_tokenizer(self):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tok.enable_truncation(512)
        config = json.loads((self.model_dir / "config.json").read_text())
        pad_id = config.get("pad_token_id") or 0
        self.tok.enable_padding(pad_id=pad_id, pad_token=self.tok.id_to_token(pad_id))

    def encode(self, texts):
        enc = self.tok.encode_batch(texts)
        return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}

    def run(self, inputs):
        return self.session.run(["logits"], inputs)[0]


class OrtInt8Peer(OrtPeer):
    name = "ONNX Runtime int8"
    quantized = True


class OpenVinoPeer(OrtPeer):
    """OpenVINO's CPU plugin on the same ONNX export: 2 threads, one stream,
    the LATENCY hint. `precision` None keeps OpenVINO's default, which is
    bf16 on CPUs with AVX512_BF16 (and AMX), f32 elsewhere."""
    name = "OpenVINO f32"
    precision = "f32"
    nncf_int8 = False

    def ov_model(self, core):
        onnx_path = OrtPeer.export(self)
        if not self.nncf_int8:
            return core.read_model(str(onnx_path))
        int8_path = self.work_dir / "model.nncf-int8.xml"
        if not int8_path.exists():
            import nncf
            import openvino as ov
            # Calibration on SST-2 *train* (never dev): 300 sentences, one a step.
            self.load_tokenizer()
            calib = [json.loads(l)["text"] for _, l in zip(range(300), open(self.calibration))]
            dataset = nncf.Dataset(calib, lambda text: self.encode([text]))
            quantized = nncf.quantize(core.read_model(str(onnx_path)), dataset,
                                      model_type=nncf.ModelType.TRANSFORMER, subset_size=300)
            ov.save_model(quantized, str(int8_path))
        return core.read_model(str(int8_path))

    def load(self):
        import openvino as ov
        core = ov.Core()
        model = self.ov_model(core)
        started = time.perf_counter()
        config = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY"}
        if self.precision:
            config["INFERENCE_PRECISION_HINT"] = self.precision
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: f32, bf16...
        self.ran_precision = ran.get_type_name() if hasattr(ran, "get_type_name") else str(ran)
        OrtPeer.load_tokenizer(self)
        return time.perf_counter() - started

    def run(self, inputs):
        self.request.infer(inputs)
        return self.request.get_output_tensor(0).data


class OpenVinoDefaultPeer(OpenVinoPeer):
    name = "OpenVINO default"
    precision = None


class OpenVinoInt8Peer(OpenVinoPeer):
    name = "OpenVINO int8 (NNCF)"
    precision = None
    nncf_int8 = True


def gemm_peak(threads, size=1536, seconds=1.0):
    """This CPU's GEMM peak per number type at `threads` threads, in GFLOP/s
    (int8: GOP/s): the best of a few timed square products in torch (oneDNN
    underneath), the ceiling each precision's throughput is held against."""
    torch.set_num_threads(threads)
    peaks = {}
    for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8)):
        try:
            if dtype == torch.int8:
                a = torch.randint(-100, 100, (size, size), dtype=dtype)
                b = torch.randint(-100, 100, (size, size), dtype=dtype)
                mm = lambda: torch._int_mm(a, b)  # noqa: E731
            else:
                a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
                mm = lambda: a @ b  # noqa: E731
            mm()
            best, started = float("inf"), time.perf_counter()
            while time.perf_counter() - started < seconds:
                t = time.perf_counter()
                mm()
                best = min(best, time.perf_counter() - t)
            peaks[name] = 2 * size ** 3 / best / 1e9
        except Exception as err:  # a dtype this torch build cannot multiply on CPU
            peaks[name] = None
            print(f"gemm peak {name}: {err}", file=sys.stderr)
    return peaks


def measure(peer, texts, labels, args):
    started = time.perf_counter()
    peer.load()
    load_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    peer.predict(["The first inference pays for lazy setup."])
    first_ms = (time.perf_counter() - started) * 1e3
    tok = AutoTokenizer.from_pretrained(peer.model_dir)
    latency = []
    for n in args.lengths:
        text = text_of_length(tok, n)
        samples = []
        for run in range(args.warmup + args.runs):
            started = time.perf_counter()
            peer.predict([text])
            if run >= args.warmup:
                samples.append((time.perf_counter() - started) * 1e3)
        latency.append({"tokens": n, "total": stats_ms(samples)})
    order = sorted(range(len(texts)), key=lambda i: len(tok(texts[i])["input_ids"]))
    throughput = []
    for bs in args.batch_sizes:
        started = time.perf_counter()
        for s in range(0, len(order), bs):
            peer.predict([texts[i] for i in order[s:s + bs]])
        seconds = time.perf_counter() - started
        throughput.append({"batch_size": bs, "sentences": len(texts), "seconds": seconds,
                           "sentences_per_s": len(texts) / seconds})
    result = {"load_ms": load_ms, "first_inference_ms": first_ms,
              "latency": latency, "throughput": throughput}
    if hasattr(peer, "ran_precision"):
        result["precision"] = peer.ran_precision
    return result


def median_of_rounds(reports):
    """One report from the same runtime's reports over several rounds: each
    number is its median over the rounds (the tables read p50s, throughputs
    and load times; fields every round shares, such as batch sizes, stay as
    they are). The round count is kept as `rounds`."""
    def merge(values):
        first = values[0]
        if isinstance(first, dict):
            return {k: merge([v[k] for v in values]) if all(k in v for v in values) else first[k]
                    for k in first}
        if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first)
                                           for v in values):
            return [merge([v[i] for v in values]) for i in range(len(first))]
        if isinstance(first, (int, float)) and not isinstance(first, bool) \
                and all(isinstance(v, (int, float)) for v in values):
            return first if all(v == first for v in values) else statistics.median(values)
        return first
    merged = merge(reports)
    merged["rounds"] = len(reports)
    # Each round's headline figures, to see the spread behind the medians.
    # (A peer's report holds its figures; `sentiment bench`'s, its device's.)
    figures = [r["devices"][0] if "devices" in r else r for r in reports]
    merged["per_round"] = [
        {"p50_ms": [row["total"]["p50_ms"] for row in f["latency"]],
         "sentences_per_s": [row["sentences_per_s"] for row in f["throughput"]]}
        for f in figures]
    return merged


def sentiment_bench(model_dir, args, precision="f32"):
    cmd = [str(ROOT / "target/release/sentiment"), "--model", str(model_dir),
           "--threads", str(args.threads), "bench", "--format", "json",
           "--runs", str(args.runs), "--warmup", str(args.warmup),
           "--lengths", ",".join(map(str, args.lengths)),
           "--batch-sizes", ",".join(map(str, args.batch_sizes))]
    cmd.insert(3, f"--precision={precision}")
    started = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    report = json.loads(out)
    report["wall_s"] = time.perf_counter() - started
    return report


def cold_predict_ms(model_dir, args, runs=10):
    cmd = [str(ROOT / "target/release/sentiment"), "--threads", str(args.threads),
           "predict", "a cold start"]
    if model_dir is not None:
        cmd[1:1] = ["--model", str(model_dir)]
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        samples.append((time.perf_counter() - started) * 1e3)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every runtime this many times, in alternating order, and "
                         "report each figure's median over rounds (this VM drifts by 10-30%% "
                         "over minutes, so one pass favours whoever ran in a fast minute)")
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")],
                    default=[8, 14, 16, 32, 64, 75, 128, 256, 400, 512])
    ap.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                    default=[1, 8, 32])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--precisions", default="f32",
                    help="sentiment's precisions to bench, comma-separated: f32,bf16,int8")
    ap.add_argument("--int8", action="store_true", help="same as --precisions f32,int8")
    ap.add_argument("--calibration", type=Path,
                    default=ROOT.parent / "shared" / "data" / "sst2_train.jsonl",
                    help="SST-2 *train* JSONL: NNCF's 300 calibration sentences")
    ap.add_argument("--real-shapes", action="store_true",
                    help="bench random models of two hub models' shapes instead")
    ap.add_argument("--peers", default="all",
                    help="comma-separated subset: torch,pipeline,ort,ort-int8,ov,ov-default,ov-int8")
    ap.add_argument("--plot", action="store_true",
                    help="also draw bench_results/NAME.svg: latency by length and "
                         "throughput by batch size, sentiment against each peer (matplotlib)")
    ap.add_argument("--only-bundled", action="store_true", help="bench the bundled model only")
    ap.add_argument("--out", default="peers",
                    help="report name: writes bench_results/NAME.{md,json}")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.lengths, args.batch_sizes = 10, [14, 75, 400], [32]
    if args.int8:
        args.precisions = "f32,int8"
    OpenVinoPeer.calibration = args.calibration
    torch.set_num_threads(args.threads)
    texts, labels = dataset(ROOT / "test_data" / "sst2_dev.jsonl")
    bundled = ROOT / "models" / "minilm-l6-sst2"
    base = distilbert_base_random(ROOT / "target" / "peer-models" / "distilbert-base-random", bundled)
    models = {"bundled (dim 384)": bundled, "distilbert-base shape (dim 768)": base}
    if args.real_shapes:
        models = real_shape_models()
    if args.only_bundled:
        models = {"bundled (dim 384)": bundled}
    by_name = {"torch": TorchPeer, "pipeline": PipelinePeer, "ort": OrtPeer,
               "ort-int8": OrtInt8Peer, "ov": OpenVinoPeer, "ov-default": OpenVinoDefaultPeer,
               "ov-int8": OpenVinoInt8Peer}
    peers = list(by_name.values()) if args.peers == "all" else [
        by_name[name] for name in args.peers.split(",")]
    results = {"machine": {"cpu": cpu_model(),
                           "python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__,
                           "onnxruntime": ort.__version__, "openvino": openvino_version(),
                           "threads": args.threads, "torch_import_s": TORCH_IMPORT_S,
                           "gemm_peak": gemm_peak(args.threads)},
               "args": vars(args), "models": {}}
    for label, model_dir in models.items():
        entry = {}
        work = ROOT / "target" / "peer-models" / (model_dir.name + "-onnx")
        runtimes = [(cls.name, lambda cls=cls: measure(cls(model_dir, args.threads, work),
                                                       texts, labels, args))
                    for cls in peers]
        for precision in args.precisions.split(","):
            key = "sentiment" if precision == "f32" else f"sentiment {precision}"
            runtimes.append((key, lambda p=precision: sentiment_bench(model_dir, args, p)))
        rounds = {name: [] for name, _ in runtimes}
        for r in range(args.rounds):
            for name, run in (runtimes if r % 2 == 0 else runtimes[::-1]):
                print(f"[{label}] round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
                rounds[name].append(run())
        for name, reports in rounds.items():
            entry[name] = median_of_rounds(reports)
        entry["sentiment_cold_predict_ms"] = cold_predict_ms(
            None if model_dir == bundled else model_dir, args)
        entry["config"] = json.loads((model_dir / "config.json").read_text())
        results["models"][label] = entry
    OUT.mkdir(exist_ok=True)
    (OUT / f"{args.out}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (OUT / f"{args.out}.md").write_text(markdown(results))
    if args.plot:
        plot(results, OUT / f"{args.out}.svg")
    print(markdown(results))


def openvino_version():
    try:
        import openvino
        return openvino.__version__
    except ImportError:
        return None


if __name__ == "__main__":
    if sys.argv[1:2] == ["--render"]:  # re-render a saved report: --render NAME [--plot]
        render(sys.argv[2], "--plot" in sys.argv)
    else:
        main()
