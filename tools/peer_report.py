#!/usr/bin/env python3
"""The peer comparison's report: a run's results (bench_results/NAME.json,
written by tools/peer_bench.py) as Markdown tables with sentiment/peer
ratios and issue 14's goal table, and as SVG charts. Needs no runtime
installed, so a saved run re-renders anywhere:

    python3 tools/peer_report.py NAME [--plot]
"""
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "bench_results"


def plot(results, path):
    """The same two panels as `sentiment bench --plot`, one series per runtime:
    batch-1 latency (p50, p5-p95 whiskers where known) by length, and
    throughput by batch size. Markers as well as colours, white background."""
    import matplotlib
    matplotlib.use("svg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    plt.rcParams["svg.fonttype"] = "none"  # text stays text
    m = results["machine"]
    lengths = results["args"]["lengths"]
    markers = ["o", "^", "s", "x", "D", "v", "P"]
    colours = ["#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
    for label, entry in results["models"].items():
        fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.6), facecolor="white")
        runtimes = [k for k in entry if isinstance(entry[k], dict)]
        for i, name in enumerate(runtimes):
            data = entry[name]
            if "devices" in data:  # sentiment's own report
                dev = data["devices"][0]
                lat = [(n, r["total"]) for n, r in zip(lengths, dev["latency"])]
                thr = [(r["batch_size"], r["sentences_per_s"]) for r in dev["throughput"]]
            else:
                lat = [(n, r["total"]) for n, r in zip(lengths, data["latency"])]
                thr = [(r["batch_size"], r["sentences_per_s"]) for r in data["throughput"]]
            style = dict(marker=markers[i % len(markers)], color=colours[i % len(colours)],
                         linewidth=2, markersize=7, label=name)
            xs = [n for n, _ in lat]
            p50 = [s["p50_ms"] for _, s in lat]
            low = [s["p50_ms"] - s.get("p5_ms", s["min_ms"]) for _, s in lat]
            high = [s["p95_ms"] - s["p50_ms"] for _, s in lat]
            left.errorbar(xs, p50, yerr=[low, high], capsize=4, **style)
            right.plot([b for b, _ in thr], [t for _, t in thr], **style)
        batch_sizes = sorted({b for name in runtimes for b, _ in (
            [(r["batch_size"], 0) for r in entry[name]["devices"][0]["throughput"]]
            if "devices" in entry[name] else
            [(r["batch_size"], 0) for r in entry[name]["throughput"]])})
        for ax, ticks in ((left, lengths), (right, batch_sizes)):
            ax.set_xscale("log")
            ax.set_facecolor("white")
            ax.grid(True, which="major", color="#dddddd")
            # The measured values as plain numbers, not powers of ten.
            ax.set_xticks(ticks)
            ax.set_xticklabels([str(t) for t in ticks])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        left.set_yscale("log")
        left.set_xlabel("input length (tokens, log scale)")
        left.set_ylabel("batch-1 latency, ms (p50; whiskers p5/min–p95; log scale)")
        left.set_title("Batch-1 latency by input length")
        right.set_xlabel("batch size (texts per forward pass, log scale)")
        right.set_ylabel("throughput, sentences/s (SST-2 dev, length-sorted)")
        right.set_title("Throughput by batch size")
        right.set_ylim(bottom=0)
        left.legend(loc="upper left", framealpha=0.95)
        fig.suptitle(f"{label}: sentiment against peers — {m['cpu']}, {m['threads']} threads; "
                     f"torch {m['torch']}, onnxruntime {m['onnxruntime']}")
        fig.tight_layout()
        name = path if len(results["models"]) == 1 else path.with_name(
            path.stem + "-" + label.split()[0] + path.suffix)
        fig.savefig(name, facecolor="white")
        plt.close(fig)
        print(f"wrote {name}", file=sys.stderr)


def model_params(entry):
    """Multiply-adds per token in the encoder's linears (QKV, output, FFN):
    12 dim^2 per layer, from the model's config saved with the report."""
    cfg = entry.get("config") or {}
    dim = cfg.get("dim") or cfg.get("hidden_size") or 0
    ffn = cfg.get("hidden_dim") or cfg.get("intermediate_size") or 4 * dim
    layers = cfg.get("n_layers") or cfg.get("num_hidden_layers") or 0
    return layers * (4 * dim * dim + 2 * dim * ffn)


def ours(entry, key, lengths):
    dev = entry[key]["devices"][0]
    lat = {n: row["total"]["p50_ms"] for n, row in zip(lengths, dev["latency"])}
    thr = {row["batch_size"]: row["sentences_per_s"] for row in dev["throughput"]}
    return lat, thr


def peer_figures(entry, name, lengths):
    """A peer's batch-1 p50 by length and throughput by batch size, or None."""
    if name not in entry:
        return None
    p = entry[name]
    return ({n: r["total"]["p50_ms"] for n, r in zip(lengths, p["latency"])},
            {r["batch_size"]: r["sentences_per_s"] for r in p["throughput"]})


def goal_table(entry, mine, lengths, batch):
    """Issue 14's goals, judged on this run's figures: one row per goal with
    the ratios it rests on (> 1: sentiment ahead). Empty without OpenVINO."""
    if not any(name.startswith("OpenVINO") for name in entry):
        return []

    def present(peer_names):
        return [f for f in (peer_figures(entry, n, lengths) for n in peer_names) if f]

    def latency_ratios(ours_key, peer_names):
        """Per length: the best peer's p50 / ours (the best peer is the fastest)."""
        peers = present(peer_names)
        if ours_key not in mine or not peers:
            return None
        lat = mine[ours_key][0]
        return [min(f[0][n] for f in peers) / lat[n] for n in lengths]

    def throughput_ratio(ours_key, peer_names):
        peers = present(peer_names)
        if ours_key not in mine or not peers:
            return None
        best = max(f[1][batch] for f in peers)
        return mine[ours_key][1][batch], best

    def verdict(ok):
        return "met" if ok else "**not met**"

    rows = []
    ov_default = entry.get("OpenVINO default", {})
    if "sentiment bf16" in mine and ov_default.get("precision") == "bf16":
        r = latency_ratios("sentiment bf16", ["OpenVINO default"])
        rows.append(("bf16 batch-1 latency <= OpenVINO default (bf16)",
                     f"{verdict(min(r) >= 1)}: " + " / ".join(f"{x:.2f}x" for x in r)))
        ours_t, best = throughput_ratio("sentiment bf16", ["OpenVINO default"])
        rows.append(("bf16 SST-2 throughput >= 1.1x OpenVINO default",
                     f"{verdict(ours_t >= 1.1 * best)}: {ours_t:.0f} vs {best:.0f} sent/s "
                     f"({ours_t / best:.2f}x)"))
    else:
        why = (f"OpenVINO's default ran {ov_default.get('precision', '?')}"
               if ov_default else "no OpenVINO default in this run")
        rows.append(("bf16 latency and throughput vs OpenVINO default (bf16)",
                     f"not measurable in this run: {why}"
                     + ("" if "sentiment bf16" in mine else ", no sentiment bf16 series")))
    int8_peers = ["ONNX Runtime int8", "OpenVINO int8 (NNCF)"]
    r = latency_ratios("sentiment int8", int8_peers)
    if r:
        rows.append(("int8 batch-1 latency <= the better of ORT int8 and OpenVINO int8",
                     f"{verdict(min(r) >= 1)}: " + " / ".join(f"{x:.2f}x" for x in r)))
        ours_t, best = throughput_ratio("sentiment int8", int8_peers)
        rows.append(("int8 SST-2 throughput >= 1.1x the better of the two",
                     f"{verdict(ours_t >= 1.1 * best)}: {ours_t:.0f} vs {best:.0f} sent/s "
                     f"({ours_t / best:.2f}x)"))
    f32_peers = ["ONNX Runtime fp32", "OpenVINO f32"]
    r = latency_ratios("sentiment", f32_peers)
    if r:
        ours_t, best = throughput_ratio("sentiment", f32_peers)
        worst = min(min(r), ours_t / best)
        rows.append(("f32 >= ORT fp32 and OpenVINO f32 everywhere",
                     f"{verdict(worst >= 1)}: latency " + " / ".join(f"{x:.2f}x" for x in r)
                     + f", throughput {ours_t / best:.2f}x"))
    head = ["goal (issue 14; ratios at " + " / ".join(f"{n}" for n in lengths)
            + f" tokens, throughput at batch {batch})", "this run"]
    out = ["| " + " | ".join(head) + " |", "|---|---|"]
    out += [f"| {goal} | {result} |" for goal, result in rows]
    return out + [""]


def markdown(results):
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['threads']} threads; torch {m['torch']}, "
             f"transformers {m['transformers']}, onnxruntime {m['onnxruntime']}"
             + (f", openvino {m['openvino']}" if m.get("openvino") else "") + ". "
             f"Medians (p50), tokenization included. Ratio = peer time / sentiment time "
             f"(> 1 means sentiment is faster)."
             + (f" Every runtime measured in {rounds} rounds, in alternating order; each figure "
                f"is the median over rounds." if (rounds := results["args"].get("rounds", 1)) > 1
                else ""), ""]
    for label, entry in results["models"].items():
        keys = [k for k in ("sentiment", "sentiment bf16", "sentiment int8") if k in entry]
        mine = {k: ours(entry, k, results["args"]["lengths"]) for k in keys}
        # Lengths as asked for: a tokenizer may not reach every exact
        # count, so sentiment's report is matched by position.
        lengths = results["args"]["lengths"]
        batches = [row["batch_size"] for row in entry["sentiment"]["devices"][0]["throughput"]]
        lines.append(f"#### {label}")
        lines.append("")
        head = ["runtime", "load ms"] + [f"{n} tok ms" for n in lengths] + \
               [f"batch {b} sent/s" for b in batches]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for k in keys:
            dev = entry[k]["devices"][0]
            lat, thr = mine[k]
            # Older reports did not record the precision that ran: the one asked for.
            asked = "f32" if k == "sentiment" else k.split()[-1]
            ran_as = dev.get("precision", asked)
            ran = f" (ran {ran_as})" if ran_as != asked else ""
            row = [f"**{k}**{ran}", f"{dev['load_ms']:.0f}"] + [f"{lat[n]:.2f}" for n in lengths] + \
                  [f"{thr[b]:.0f}" for b in batches]
            lines.append("| " + " | ".join(row) + " |")
        lat0, thr0 = mine["sentiment"]
        for name in ["PyTorch", "transformers pipeline", "ONNX Runtime fp32", "ONNX Runtime int8",
                     "OpenVINO f32", "OpenVINO default", "OpenVINO int8 (NNCF)"]:
            if name not in entry:
                continue
            p = entry[name]
            shown = f"{name} ({p['precision']})" if "precision" in p else name
            plat, pthr = peer_figures(entry, name, lengths)
            # Each peer against sentiment in the same kind of number type.
            kind = "int8" if "int8" in name else (
                "bf16" if p.get("precision") == "bf16" else "f32")
            cmp_key = {"int8": "sentiment int8", "bf16": "sentiment bf16"}.get(kind, "sentiment")
            cmp_key = cmp_key if cmp_key in mine else "sentiment"
            lat_s, thr_s = mine[cmp_key]
            row = [f"{shown} vs {cmp_key}", f"{p['load_ms']:.0f}"] + \
                  [f"{plat[n]:.2f} ({plat[n] / lat_s[n]:.2f}x)" for n in lengths] + \
                  [f"{pthr[b]:.0f} ({thr_s[b] / pthr[b]:.2f}x)" for b in batches]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines += goal_table(entry, mine, lengths, batches[-1])
        peaks = m.get("gemm_peak") or {}
        fractions = []
        for k in keys:
            kind = "f32" if k == "sentiment" else k.split()[-1]
            dev = entry[k]["devices"][0]
            kind = dev.get("precision", kind)
            if peaks.get(kind):
                flops = 2 * model_params(entry) * dev["throughput"][-1]["tokens_per_s"] / 1e9
                fractions.append(f"{k}: {flops:.0f} of {peaks[kind]:.0f} G/s "
                                 f"({flops / peaks[kind]:.0%})")
        if fractions:
            lines.append("Distance to the limit (encoder linears' multiply-adds x 2 at the "
                         f"largest batch's tokens/s, against torch's 2-thread {1536}^3 GEMM "
                         "peak per type): " + "; ".join(fractions) + ".")
            lines.append("")
        lines.append(f"Cold `sentiment predict` (process start to result, median of 10): "
                     f"{entry['sentiment_cold_predict_ms']:.0f} ms. "
                     f"Python peers pay {m['torch_import_s']:.1f} s to import torch first.")
        lines.append("")
    return "\n".join(lines) + "\n"


def render(name, with_plot):
    saved = json.loads((OUT / f"{name}.json").read_text())
    (OUT / f"{name}.md").write_text(markdown(saved))
    if with_plot:
        plot(saved, OUT / f"{name}.svg")
    print(markdown(saved))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    render(sys.argv[1], "--plot" in sys.argv)
