"""LoRC on SmolLM2-135M: WikiText-2 perplexity and zero-shot BoolQ accuracy against the retained cache ratio,
progressive vs uniform schedule, the single-layer sensitivity profile and the measured cache bytes.

    OMP_NUM_THREADS=1 python benchmarks/lorc_smollm2.py            # the committed run (2 shared CPU cores)
    python benchmarks/lorc_smollm2.py --ppl-tokens 512 --boolq-n 4 --ratios 0.6 --profile-tokens 0  # smoke

Data (tests/benchmarks only): ../shared/data/wikitext2_raw/wiki.test.raw (the first --ppl-tokens
tokens of its first 200k characters, non-overlapping windows of --window) and
../shared/data/boolq/boolq_validation.json (the first --boolq-n items in the official dev order;
prompt "<passage>\\nQuestion: <question>?\\nAnswer:", prediction = the larger next-token logit of
" Yes" vs " No"). Deterministic: no sampling, no seed enters any number except the bootstrap
intervals (seed 0). Writes benchmarks/results/lorc_smollm2.json and one JSONL line per evaluated model.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from shared_data import SHARED_DATA
from transformers import DynamicCache

from prefalign.kv import LoRCCache, cache_nbytes, compress_model, compressed_layers, sensitivity_profile
from prefalign.kv.schedule import log_condition_numbers, progressive_schedule, uniform_schedule
from prefalign.models.loading import load_backbone

DATA = SHARED_DATA
RESULTS = Path(__file__).resolve().parent / "results"


def bootstrap_mean_interval(diffs, seed: int = 0, samples: int = 2000) -> list[float]:
    """Paired percentile bootstrap 95% interval of the mean of ``diffs`` (items resampled)."""
    values = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(samples, len(values)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return [float(low), float(high)]


@torch.no_grad()
def window_nll(model, ids: torch.Tensor, window: int) -> tuple[list[float], list[int], dict]:
    """Summed next-token NLL and token count per window, through the model's cache (LoRCCache when compressed);
    the cache bytes after the first window."""
    sums, counts, first_bytes = [], [], None
    layout = compressed_layers(model)
    for start in range(0, len(ids), window):
        chunk = ids[start : start + window].unsqueeze(0)
        if chunk.shape[1] < 2:
            break
        cache = LoRCCache(layout) if any(layout) else DynamicCache()
        logits = model(input_ids=chunk, past_key_values=cache, use_cache=True).logits[0, :-1].float()
        sums.append(float(torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum")))
        counts.append(chunk.shape[1] - 1)
        if first_bytes is None:
            first_bytes = dict(cache_nbytes(cache), tokens=chunk.shape[1])
    return sums, counts, first_bytes


@torch.no_grad()
def boolq_correct(model, tokenizer, items, max_tokens: int) -> list[int]:
    # " Yes"/" No" rather than " yes"/" no": chosen on items 3100-3139 (disjoint from the scored ones),
    # where the capitalised pair scored 0.575 and the lower-case one 0.45 (it answered "no" 90% of the time).
    yes = tokenizer(" Yes", add_special_tokens=False)["input_ids"][0]
    no = tokenizer(" No", add_special_tokens=False)["input_ids"][0]
    out = []
    for item in items:
        tail = tokenizer(f"\nQuestion: {item['question']}?\nAnswer:", add_special_tokens=False)["input_ids"]
        passage = tokenizer(item["passage"], add_special_tokens=False)["input_ids"][: max_tokens - len(tail)]
        ids = torch.tensor([passage + tail])
        logits = model(input_ids=ids, use_cache=False).logits[0, -1]
        out.append(int((logits[yes] > logits[no]).item() == bool(item["answer"])))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ratios", type=float, nargs="+", default=[0.6, 0.4, 0.8])
    p.add_argument("--noskip-ratios", type=float, nargs="*", default=[0.6])
    p.add_argument("--ppl-tokens", type=int, default=1024)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--boolq-n", type=int, default=40)
    p.add_argument(
        "--skip-threshold",
        type=float,
        default=145.0,
        help="ln kappa~ above which a layer is not compressed; 145 skips layers 0-1 (chosen on the profile slice)",
    )
    p.add_argument("--boolq-max-tokens", type=int, default=320)
    p.add_argument("--profile-tokens", type=int, default=256, help="0 skips the sensitivity profile")
    p.add_argument(
        "--profile-offset",
        type=int,
        default=600_000,
        help="character offset of the profile's text in wiki.test.raw, disjoint from the evaluation slice",
    )
    p.add_argument("--profile-rank", type=int, default=32, help="rank of the one compressed layer (head_dim 64)")
    p.add_argument("--granularity", default="head")
    p.add_argument("--out", default=str(RESULTS / "lorc_smollm2.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    loaded = load_backbone("smollm2-135m")
    base, tok = loaded.model.eval(), loaded.tokenizer
    text = (DATA / "wikitext2_raw" / "wiki.test.raw").read_text(encoding="utf-8")
    ids = tok(text[:200_000], add_special_tokens=False, return_tensors="pt")["input_ids"][0][: args.ppl_tokens]
    items = json.loads((DATA / "boolq" / "boolq_validation.json").read_text(encoding="utf-8"))[: args.boolq_n]
    kappas = log_condition_numbers(base)
    jsonl = Path(args.out).with_suffix(".jsonl")
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    jsonl.write_text("", encoding="utf-8")

    configs = [("full", 1.0, None)]
    for ratio in args.ratios:
        for kind, fn in (("progressive", progressive_schedule), ("uniform", uniform_schedule)):
            schedule = fn(
                base, ratio, granularity=args.granularity, skip_threshold=args.skip_threshold, log_kappas=kappas
            )
            configs.append((kind, ratio, schedule))
    for ratio in args.noskip_ratios:  # eq. 5.13 alone, nothing skipped
        plain = progressive_schedule(base, ratio, granularity=args.granularity, log_kappas=kappas)
        configs.append(("progressive-noskip", ratio, plain))

    def save(profile) -> None:
        """The JSON with every finished model so far (rewritten after each: a cut-short run keeps them)."""
        full = records[0]
        for rec in records[1:]:
            rec["ppl_log_diff_interval"] = bootstrap_mean_interval(
                [a / n - b / n for a, b, n in zip(rec["window_nll"], full["window_nll"], full["window_tokens"])]
            )
            rec["boolq_diff_interval"] = bootstrap_mean_interval(
                [a - b for a, b in zip(rec["boolq_correct"], full["boolq_correct"])]
            )
            rec["cache_bytes_ratio"] = rec["cache_bytes"]["total"] / full["cache_bytes"]["total"]
        out = {
            "command": "OMP_NUM_THREADS=1 python benchmarks/lorc_smollm2.py "
            + " ".join(
                f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items()
                if k != "out"
            ),
            "model": "smollm2-135m (SmolLM2-135M-Instruct, Q4_1 GGUF converted to float32)",
            "machine": f"2 shared CPU cores, torch {torch.__version__}, 1 thread, {platform.machine()}",
            "granularity": args.granularity,
            "log_kappa_k": kappas[0],
            "log_kappa_v": kappas[1],
            "records": records,
            "profile": profile,
            "wall_seconds": time.time() - t0,
        }
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")

    records = []
    for kind, ratio, schedule in configs:
        t = time.time()
        model = base
        if schedule is not None:
            model = copy.deepcopy(base)
            compress_model(model, schedule.ranks, args.granularity)
        sums, counts, nbytes = window_nll(model, ids, args.window)
        correct = boolq_correct(model, tok, items, args.boolq_max_tokens)
        rec = {
            "schedule": kind,
            "target_ratio": ratio,
            "ratio": 1.0 if schedule is None else schedule.ratio,
            "ranks": None if schedule is None else schedule.ranks,
            "d_max": None if schedule is None else schedule.d_max,
            "d_min": None if schedule is None else schedule.d_min,
            "skip_threshold": None if schedule is None else schedule.skip_threshold,
            "perplexity": math.exp(sum(sums) / sum(counts)),
            "ppl_tokens": sum(counts),
            "window_nll": sums,
            "window_tokens": counts,
            "boolq_accuracy": sum(correct) / len(correct),
            "boolq_n": len(correct),
            "boolq_correct": correct,
            "cache_bytes": nbytes,
            "seconds": time.time() - t,
        }
        records.append(rec)
        with jsonl.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        print(
            f"{kind:11s} {ratio:.2f} ppl {rec['perplexity']:.3f} boolq {rec['boolq_accuracy']:.3f} "
            f"cache {nbytes['total']} B  {rec['seconds']:.0f}s",
            flush=True,
        )
        del model
        save(None)
    profile = None
    if args.profile_tokens:  # on a slice disjoint from the evaluation one (it chose --skip-threshold)
        ptext = text[args.profile_offset : args.profile_offset + 100_000]
        pids = tok(ptext, add_special_tokens=False, return_tensors="pt")["input_ids"][0][: args.profile_tokens]

        def score(m) -> float:
            s, c, _ = window_nll(m, pids, args.window)
            return math.exp(sum(s) / sum(c))

        profile = sensitivity_profile(base, score, args.profile_rank, args.granularity)
        profile["tokens"] = int(len(pids))
        profile["text_offset"] = args.profile_offset
        print("profile deltas", [round(d, 3) for d in profile["deltas"]], flush=True)
    save(profile)
    print(f"wrote {args.out} in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
