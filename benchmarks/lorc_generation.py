"""LoRC generation speed and cache bytes against the uncompressed cache, at several context lengths, in one run.

    OMP_NUM_THREADS=1 python benchmarks/lorc_generation.py                            # the committed CPU run
    python benchmarks/lorc_generation.py --device cuda                                # the same sizes on a GPU

For each context length N (default 1024, 4096, 8192): the first N tokens of WikiText-2 test as the prompt
(tests/benchmarks data only; shortened so prompt + --new-tokens stays within the model's
max_position_embeddings, 8192 for SmolLM2), a prefill into the cache, then --new-tokens greedy decoding
steps, for SmolLM2-135M with its own DynamicCache and with a LoRC progressive schedule at --ratio
(LoRCCache). --repeats rounds, each visiting every context with both arms back to back, the arm that goes
first alternating between rounds, so that the machine's load falls on both arms alike. Reports prefill and
decode seconds, decode tokens/s, the real cache bytes at the end (sum of stored tensors' nbytes), per-round
ratios compressed / full and the ratio of the medians over rounds.

With --profile-context N (0 skips it) it then runs torch.profiler over --profile-steps decoding steps of
each arm at that context and records the operators' self CPU time, with LoRC's key rebuild (latent times
U_k, RoPE at every cached position) labelled "lorc.rebuild_keys". Writes
benchmarks/results/lorc_generation.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from shared_data import SHARED_DATA
from transformers import DynamicCache

from prefalign.kv import LoRCCache, cache_nbytes, compress_model, compressed_layers, progressive_schedule
from prefalign.kv.attention import LoRCAttention
from prefalign.models.loading import load_backbone

DATA = SHARED_DATA / "wikitext2_raw" / "wiki.test.raw"
RESULTS = Path(__file__).resolve().parent / "results"


def _cache(model):
    layout = compressed_layers(model)
    return LoRCCache(layout) if any(layout) else DynamicCache()


@torch.no_grad()
def run(model, ids: torch.Tensor, new_tokens: int, device) -> dict:
    cache = _cache(model)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t = time.perf_counter()
    logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]
    sync()
    prefill = time.perf_counter() - t
    out = []
    t = time.perf_counter()
    for _ in range(new_tokens):
        token = logits.argmax(-1, keepdim=True)
        out.append(int(token))
        logits = model(input_ids=token, past_key_values=cache, use_cache=True).logits[:, -1]
    sync()
    decode = time.perf_counter() - t
    return {
        "prefill_seconds": prefill,
        "decode_seconds": decode,
        "decode_tokens_per_second": new_tokens / decode,
        "cache_bytes": cache_nbytes(cache),
        "cache_tokens": cache.get_seq_length(),
        "tokens": out,
    }


@torch.no_grad()
def profile_decode(model, ids: torch.Tensor, steps: int, top: int = 15) -> dict:
    """Self CPU time per operator over ``steps`` decoding steps after a prefill of ``ids`` (not profiled)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    original = LoRCAttention._keys

    def labelled(self, latent, positions):
        with record_function("lorc.rebuild_keys"):
            return original(self, latent, positions)

    LoRCAttention._keys = labelled
    try:
        cache = _cache(model)
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                token = logits.argmax(-1, keepdim=True)
                logits = model(input_ids=token, past_key_values=cache, use_cache=True).logits[:, -1]
    finally:
        LoRCAttention._keys = original
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    labelled_total = {e.key: e.cpu_time_total for e in events if e.key == "lorc.rebuild_keys"}
    return {
        "steps": steps,
        "context": ids.shape[1],
        "self_cpu_ms_total": total / 1000,
        "self_cpu_ms_per_step": total / 1000 / steps,
        "rebuild_keys_ms_per_step": labelled_total.get("lorc.rebuild_keys", 0.0) / 1000 / steps,
        "top_ops": [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1000, "calls": e.count} for e in ops],
    }


@torch.no_grad()
def sdpa_value_width(n: int, heads: int, head_dim: int, ranks: list[int], repeats: int = 3) -> list[dict]:
    """Seconds of one causal scaled_dot_product_attention over n tokens (random inputs, CPU, the fastest of
    ``repeats``), values head_dim wide as in the full model or r wide as in LoRC's value latents, with the
    causal pattern given as a boolean mask (what LoRCAttention passes) or as is_causal."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, heads, n, head_dim, generator=gen)
    k = torch.randn(1, heads, n, head_dim, generator=gen)
    mask = torch.ones(n, n, dtype=torch.bool).tril()
    out = []
    for width in [head_dim, *ranks]:
        v = torch.randn(1, heads, n, width, generator=gen)
        for how, kw in (("bool mask", {"attn_mask": mask}), ("is_causal", {"is_causal": True})):
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)
                best = min(best, time.perf_counter() - t)
            out.append({"tokens": n, "value_width": width, "causal": how, "seconds": best})
    return out


def summarise(n: int, rounds: list[dict]) -> dict:
    """One context's rounds: medians per arm and the ratio of the medians, plus every round's paired ratio."""

    def med(arm: str, key: str) -> float:
        return statistics.median(r[arm][key] for r in rounds)

    full_bytes = rounds[0]["full"]["cache_bytes"]["total"]
    lorc_bytes = rounds[0]["lorc"]["cache_bytes"]["total"]
    return {
        "context": n,
        "prompt_tokens": rounds[0]["prompt_tokens"],
        "cache_tokens": rounds[0]["full"]["cache_tokens"],
        "full_cache_bytes": full_bytes,
        "lorc_cache_bytes": lorc_bytes,
        "cache_bytes_ratio": lorc_bytes / full_bytes,
        "full_decode_tokens_per_second": med("full", "decode_tokens_per_second"),
        "lorc_decode_tokens_per_second": med("lorc", "decode_tokens_per_second"),
        "decode_speed_ratio": med("lorc", "decode_tokens_per_second") / med("full", "decode_tokens_per_second"),
        "decode_speed_ratio_per_round": [
            r["lorc"]["decode_tokens_per_second"] / r["full"]["decode_tokens_per_second"] for r in rounds
        ],
        "full_prefill_seconds": med("full", "prefill_seconds"),
        "lorc_prefill_seconds": med("lorc", "prefill_seconds"),
        "prefill_time_ratio": med("lorc", "prefill_seconds") / med("full", "prefill_seconds"),
        "same_tokens": all(r["full"]["tokens"] == r["lorc"]["tokens"] for r in rounds),
        "rounds": rounds,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096, 8192])
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ratio", type=float, default=0.6)
    p.add_argument("--device", default="cpu")
    p.add_argument("--profile-context", type=int, default=4096)
    p.add_argument("--profile-steps", type=int, default=4)
    p.add_argument("--out", default=str(RESULTS / "lorc_generation.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    started = time.perf_counter()
    loaded = load_backbone("smollm2-135m")
    base = loaded.model.eval().to(device)
    limit = int(base.config.max_position_embeddings)
    schedule = progressive_schedule(base, args.ratio)
    small = copy.deepcopy(base)
    compress_model(small, schedule.ranks, "head")
    text = DATA.read_text(encoding="utf-8")
    all_ids = loaded.tokenizer(text[:400_000], add_special_tokens=False, return_tensors="pt")["input_ids"]
    arms = {"full": base, "lorc": small}
    per_context: dict[int, list[dict]] = {n: [] for n in args.contexts}
    for rnd in range(args.repeats):
        order = ["full", "lorc"] if rnd % 2 == 0 else ["lorc", "full"]
        for n in args.contexts:
            prompt = min(n, limit - args.new_tokens)
            ids = all_ids[:, :prompt].to(device)
            row = {"round": rnd, "order": order, "prompt_tokens": prompt}
            for arm in order:
                row[arm] = run(arms[arm], ids, args.new_tokens, device)
            per_context[n].append(row)
            f, c = row["full"], row["lorc"]
            print(
                f"round {rnd} context {n} (prompt {prompt}): cache {c['cache_bytes']['total']}/"
                f"{f['cache_bytes']['total']} B, decode {c['decode_tokens_per_second']:.2f} vs "
                f"{f['decode_tokens_per_second']:.2f} tok/s, prefill {c['prefill_seconds']:.1f} vs "
                f"{f['prefill_seconds']:.1f} s [{time.perf_counter() - started:.0f} s]",
                flush=True,
            )
    rows = [summarise(n, per_context[n]) for n in args.contexts]
    profiles = None
    if args.profile_context:
        prompt = min(args.profile_context, limit - args.profile_steps)
        ids = all_ids[:, :prompt].to(device)
        profiles = {arm: profile_decode(arms[arm], ids, args.profile_steps) for arm in ("full", "lorc")}
        print(
            f"profile at {prompt}: full {profiles['full']['self_cpu_ms_per_step']:.0f} ms/step, lorc "
            f"{profiles['lorc']['self_cpu_ms_per_step']:.0f} ms/step of which rebuild_keys "
            f"{profiles['lorc']['rebuild_keys_ms_per_step']:.0f}",
            flush=True,
        )
    geo = base.config
    ranks = sorted({r for r in schedule.ranks if r is not None})
    sdpa = sdpa_value_width(
        2048, geo.num_attention_heads, geo.hidden_size // geo.num_attention_heads, ranks[:1] + ranks[-1:]
    )
    for r in sdpa:
        print(
            f"sdpa {r['tokens']} tokens, values {r['value_width']} wide, {r['causal']}: {r['seconds']:.3f} s",
            flush=True,
        )
    out = {
        "command": f"python benchmarks/lorc_generation.py --contexts {' '.join(map(str, args.contexts))} "
        f"--new-tokens {args.new_tokens} --repeats {args.repeats} --ratio {args.ratio} --device {args.device} "
        f"--profile-context {args.profile_context} --profile-steps {args.profile_steps}",
        "model": "smollm2-135m (float32)",
        "machine": f"{'2 shared CPU cores, 1 torch thread' if device.type == 'cpu' else args.device}, "
        f"torch {torch.__version__}, {platform.machine()}",
        "wall_seconds": time.perf_counter() - started,
        "schedule": schedule.to_dict(),
        "rows": rows,
        "profile": profiles,
        "sdpa_value_width": sdpa,
    }
    tmp = Path(args.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
