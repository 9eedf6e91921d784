"""Tables and charts for docs/results.md (section "LoRC") from the committed LoRC records.

    python benchmarks/lorc_report.py            # prints the markdown tables, writes docs/figures/lorc_*.png

Reads benchmarks/results/lorc_smollm2.json (benchmarks/lorc_smollm2.py) and, when present,
benchmarks/results/lorc_smollm2_layer.json (the same with --granularity layer),
benchmarks/results/lorc_generation.json (benchmarks/lorc_generation.py), lorc_generation_unpadded.json
(the same before the prefill fix) and benchmarks/results/lorc_quantized.json (benchmarks/lorc_quantized.py).
With --reconstruction it also loads SmolLM2-135M and writes
benchmarks/results/lorc_smollm2_reconstruction.json: the relative Frobenius reconstruction error
(appendix G.1) of every layer's key and value projection at the ranks of each recorded schedule.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def reconstruction(records: list[dict]) -> dict:
    import torch

    from prefalign.kv.factorize import projections, svd_blocks
    from prefalign.models.loading import load_backbone

    model = load_backbone("smollm2-135m").model
    spectra = []
    for layer in range(model.config.num_hidden_layers):
        proj = projections(model, layer)
        spectra.append({k: svd_blocks(w, proj.num_kv_heads)[1] for k, w in (("key", proj.k), ("value", proj.v))})
    out = {}
    for rec in records:
        if rec["ranks"] is None:
            continue
        rows = []
        for layer, rank in enumerate(rec["ranks"]):
            row = {}
            for kind, s in spectra[layer].items():  # s: (kv_heads, head_dim) singular values
                kept = s.shape[-1] if rank is None else rank
                tail = (s[:, kept:] ** 2).sum()
                row[kind] = float(torch.sqrt(tail / (s**2).sum()))
            rows.append(row)
        out[f"{rec['schedule']}@{rec['target_ratio']}"] = rows
    return out


def log_ppl_diff(r: dict, base: dict) -> float:
    """Mean over windows of the per-token NLL difference (r minus base)."""
    pairs = zip(r["window_nll"], base["window_nll"], base["window_tokens"])
    return sum(a / n - b / n for a, b, n in pairs) / len(base["window_nll"])


def paired_table(records: list[dict]) -> None:
    """Progressive minus uniform at each target ratio, paired over windows and BoolQ items."""
    from lorc_smollm2 import bootstrap_mean_interval

    print("| target | log-ppl diff, progressive - uniform [95%] | BoolQ diff, progressive - uniform [95%] |")
    print("| --- | --- | --- |")
    by = {(r["schedule"], r["target_ratio"]): r for r in records}
    for (kind, ratio), prog in sorted(by.items()):
        uni = by.get(("uniform", ratio))
        if kind != "progressive" or uni is None:
            continue
        lp = bootstrap_mean_interval(
            [a / n - b / n for a, b, n in zip(prog["window_nll"], uni["window_nll"], uni["window_tokens"])]
        )
        bq = bootstrap_mean_interval([a - b for a, b in zip(prog["boolq_correct"], uni["boolq_correct"])])
        print(
            f"| {ratio:g} | {log_ppl_diff(prog, uni):+.2f} [{lp[0]:+.2f}, {lp[1]:+.2f}] | "
            f"{prog['boolq_accuracy'] - uni['boolq_accuracy']:+.3f} [{bq[0]:+.3f}, {bq[1]:+.3f}] |"
        )


def generation_tables(g: dict) -> None:
    """benchmarks/lorc_generation.py: bytes and speed per context, the decode profile, the SDPA check."""
    print()
    print(
        "| context | prompt | cache bytes full | cache bytes LoRC | bytes ratio | decode tok/s full | LoRC "
        "| speed ratio (per round) | prefill s full | LoRC | prefill time ratio | same tokens |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in g["rows"]:
        rounds = ", ".join(f"{x:.2f}" for x in r["decode_speed_ratio_per_round"])
        print(
            f"| {r['context']} | {r['prompt_tokens']} | {r['full_cache_bytes']} | {r['lorc_cache_bytes']} | "
            f"{r['cache_bytes_ratio']:.3f} | {r['full_decode_tokens_per_second']:.2f} | "
            f"{r['lorc_decode_tokens_per_second']:.2f} | {r['decode_speed_ratio']:.2f} ({rounds}) | "
            f"{r['full_prefill_seconds']:.1f} | {r['lorc_prefill_seconds']:.1f} | {r['prefill_time_ratio']:.2f} | "
            f"{r['same_tokens']} |"
        )
    prof = g.get("profile")
    if prof:
        full, lorc = prof["full"], prof["lorc"]
        steps = full["steps"]
        print()
        print(
            f"Profile, {steps} decoding steps at {full['context']} cached tokens: full "
            f"{full['self_cpu_ms_per_step']:.0f} ms/step, LoRC {lorc['self_cpu_ms_per_step']:.0f} ms/step, of which "
            f"the key rebuild (inclusive) {lorc['rebuild_keys_ms_per_step']:.0f} ms/step."
        )
        print()
        print("| operator | full, self ms/step | LoRC, self ms/step |")
        print("| --- | --- | --- |")
        by = {arm: {o["op"]: o["self_cpu_ms"] / steps for o in p["top_ops"]} for arm, p in prof.items()}
        names = sorted(
            set(by["full"]) | set(by["lorc"]), key=lambda n: -max(by["full"].get(n, 0), by["lorc"].get(n, 0))
        )
        for name in names[:12]:
            cells = [f"{by[arm][name]:.1f}" if name in by[arm] else "(not in top 15)" for arm in ("full", "lorc")]
            print(f"| `{name}` | {cells[0]} | {cells[1]} |")
    sdpa = g.get("sdpa_value_width")
    if sdpa:
        print()
        print("| SDPA over | values wide | causal pattern | seconds |")
        print("| --- | --- | --- | --- |")
        seen = set()
        for r in sdpa:
            if (r["tokens"], r["value_width"], r["causal"]) in seen:
                continue
            seen.add((r["tokens"], r["value_width"], r["causal"]))
            print(f"| {r['tokens']} tokens | {r['value_width']} | {r['causal']} | {r['seconds']:.3f} |")


def quantized_table(q: dict) -> None:
    """benchmarks/lorc_quantized.py: LoRC beside QuantizedCache, bytes and perplexity scored while decoding."""
    print()
    print("| arm | cache | bytes | bytes ratio | perplexity | NLL diff vs full, per token [95%] | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in q["records"]:
        lo_hi = r.get("nll_diff_interval")
        diff = "" if lo_hi is None else f"{r['nll_diff_mean']:+.3f} [{lo_hi[0]:+.3f}, {lo_hi[1]:+.3f}]"
        print(
            f"| {r['arm']} | {r['cache']} | {r['cache_bytes']['total']} | {r['cache_bytes_ratio']:.3f} | "
            f"{r['perplexity']:.2f} | {diff} | {r['seconds']:.0f} |"
        )
    for spec, why in q.get("skipped", {}).items():
        print(f"\nskipped {spec}: {why}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reconstruction", action="store_true")
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((RESULTS / "lorc_smollm2.json").read_text())
    records = data["records"]
    full = records[0]
    print(
        "| schedule | target | kept (widths) | kept (bytes) | perplexity | mean log-ppl diff [95%] | BoolQ acc "
        "| BoolQ diff [95%] |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in records:
        lp = r.get("ppl_log_diff_interval")
        bq = r.get("boolq_diff_interval")
        diff_lp = "" if lp is None else f"{log_ppl_diff(r, full):+.2f} [{lp[0]:+.2f}, {lp[1]:+.2f}]"
        diff_bq = (
            "" if bq is None else f"{r['boolq_accuracy'] - full['boolq_accuracy']:+.3f} [{bq[0]:+.3f}, {bq[1]:+.3f}]"
        )
        print(
            f"| {r['schedule']} | {r['target_ratio']:g} | {r['ratio']:.3f} | {r.get('cache_bytes_ratio', 1.0):.3f} | "
            f"{r['perplexity']:.1f} | {diff_lp} | {r['boolq_accuracy']:.3f} | {diff_bq} |"
        )
    print()
    paired_table(records)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for kind, style in (("progressive", "o-"), ("uniform", "s--"), ("progressive-noskip", "^:")):
        rows = sorted((r for r in records if r["schedule"] == kind), key=lambda r: r["ratio"])
        if not rows:
            continue
        xs = [r["ratio"] for r in rows] + [1.0]
        axes[0].plot(xs, [r["perplexity"] for r in rows] + [full["perplexity"]], style, label=kind)
        axes[1].plot(xs, [r["boolq_accuracy"] for r in rows] + [full["boolq_accuracy"]], style, label=kind)
    axes[0].set_yscale("log")
    axes[0].set_ylabel(f"WikiText-2 perplexity ({full['ppl_tokens']} tokens)")
    axes[1].set_ylabel(f"BoolQ accuracy (first {full['boolq_n']} items)")
    for ax in axes:
        ax.set_xlabel("retained cache (latent widths)")
        ax.axvline(1.0, color="gray", linewidth=0.5)
    axes[1].legend(fontsize=8)
    fig.suptitle("LoRC on SmolLM2-135M (2 shared CPU cores)")
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "lorc_smollm2_ratio.png", dpi=110)
    plt.close(fig)
    prof = data.get("profile")
    if prof:
        fig, ax = plt.subplots(figsize=(8, 3))
        rel = [d / prof["baseline"] for d in prof["deltas"]]
        ax.bar(range(len(rel)), rel, color="tab:red")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_xlabel("layer compressed alone")
        ax.set_ylabel("relative perplexity change")
        ax.set_title(f"single-layer sensitivity, rank {prof['rank']} of 64 per head ({prof['tokens']} tokens)")
        fig.tight_layout()
        fig.savefig(FIGURES / "lorc_smollm2_profile.png", dpi=110)
        plt.close(fig)
        print()
        print("| layer | " + " | ".join(str(i) for i in range(len(rel))) + " |")
        print("| --- " * (len(rel) + 1) + "|")
        print("| ppl change | " + " | ".join(f"{x:+.0%}" for x in rel) + " |")
    layer_file = RESULTS / "lorc_smollm2_layer.json"
    if layer_file.is_file():  # the same benchmark with --granularity layer: paired against the per-head rows
        from lorc_smollm2 import bootstrap_mean_interval

        by_head = {(r["schedule"], r["target_ratio"]): r for r in records}
        print()
        print(
            "| schedule | target | kept (bytes) | perplexity, one SVD per layer | per head "
            "| log-ppl diff, layer - head "
            "[95%] | BoolQ, per layer | per head | BoolQ diff [95%] |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in json.loads(layer_file.read_text())["records"][1:]:
            h = by_head.get((r["schedule"], r["target_ratio"]))
            if h is None:
                continue
            lp = bootstrap_mean_interval(
                [a / n - b / n for a, b, n in zip(r["window_nll"], h["window_nll"], h["window_tokens"])]
            )
            bq = bootstrap_mean_interval([a - b for a, b in zip(r["boolq_correct"], h["boolq_correct"])])
            print(
                f"| {r['schedule']} | {r['target_ratio']:g} | {r['cache_bytes_ratio']:.3f} | {r['perplexity']:.1f} | "
                f"{h['perplexity']:.1f} | {log_ppl_diff(r, h):+.2f} [{lp[0]:+.2f}, {lp[1]:+.2f}] | "
                f"{r['boolq_accuracy']:.3f} | {h['boolq_accuracy']:.3f} | "
                f"{r['boolq_accuracy'] - h['boolq_accuracy']:+.3f} [{bq[0]:+.3f}, {bq[1]:+.3f}] |"
            )
    gen = RESULTS / "lorc_generation.json"
    if gen.is_file():
        generation_tables(json.loads(gen.read_text()))
    before = RESULTS / "lorc_generation_unpadded.json"
    if before.is_file():  # the same benchmark before value latents were padded for SDPA's fused kernel
        g = json.loads(before.read_text())
        print()
        print("| context | prompt | prefill s full | prefill s LoRC, unpadded | prefill time ratio |")
        print("| --- | --- | --- | --- | --- |")
        for r in g["rows"]:
            print(
                f"| {r['context']} | {r['prompt_tokens']} | {r['full_prefill_seconds']:.1f} | "
                f"{r['lorc_prefill_seconds']:.1f} | {r['prefill_time_ratio']:.2f} |"
            )
    quant = RESULTS / "lorc_quantized.json"
    if quant.is_file():
        quantized_table(json.loads(quant.read_text()))
    if args.reconstruction:
        rec = reconstruction(records)
        (RESULTS / "lorc_smollm2_reconstruction.json").write_text(json.dumps(rec, indent=1) + "\n")
        print()
        for name, rows in rec.items():
            ks = [r["key"] for r in rows]
            vs = [r["value"] for r in rows]
            print(
                f"{name}: key error mean {sum(ks) / len(ks):.3f} max {max(ks):.3f}; "
                f"value error mean {sum(vs) / len(vs):.3f} max {max(vs):.3f}; layer 1 value {rows[1]['value']:.3f}"
            )


if __name__ == "__main__":
    main()
