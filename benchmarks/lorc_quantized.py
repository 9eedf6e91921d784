"""LoRC beside transformers' QuantizedCache: cache bytes and perplexity scored token by token while decoding.

    OMP_NUM_THREADS=1 python benchmarks/lorc_quantized.py          # the committed CPU run (needs .[kv])

Why token by token: ``QuantizedCache`` hands back the unquantised states of the forward that writes them,
so a prefill's own logits never see the quantisation (and a one-forward perplexity would flatter it).
Here every arm prefills the same --prefill tokens of WikiText-2 test (tests/benchmarks data only), then
is fed the next --score tokens one at a time (teacher forcing); only the predictions made by those
decoding steps are scored, each against a cache that holds every earlier token. LoRC arms use their
``LoRCCache`` (the prefill is already compressed there); quantized arms use ``QuantizedCache`` with the
transformers defaults (per-channel groups of 64, axis 0, a full-precision residual of the 128 newest
tokens, flushed into the quantized store when it fills); the "full" arm uses ``DynamicCache``. Bytes are
``prefalign.kv.cache_nbytes`` after the last step (packed codes, scales, zero points and the residual).
Per-token differences from the full cache are paired; their 95% interval is a percentile bootstrap of the
mean over --block-token blocks of consecutive tokens (tokens within a block are not independent).
Backends that are not installed are recorded as skipped, with the import error. Writes
benchmarks/results/lorc_quantized.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from shared_data import SHARED_DATA
from transformers import DynamicCache
from transformers.cache_utils import QuantizedCache

from prefalign.kv import LoRCCache, cache_nbytes, compress_model, compressed_layers, progressive_schedule
from prefalign.models.loading import load_backbone

DATA = SHARED_DATA / "wikitext2_raw" / "wiki.test.raw"
RESULTS = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def decode_nll(model, make_cache, ids: torch.Tensor, prefill: int) -> tuple[list[float], dict, float]:
    """Per-token NLL of ids[prefill + 1:], each predicted by a one-token decoding step; bytes; seconds."""
    cache = make_cache()
    t = time.perf_counter()
    model(input_ids=ids[:, :prefill], past_key_values=cache, use_cache=True)
    nll = []
    for i in range(prefill, ids.shape[1] - 1):
        logits = model(input_ids=ids[:, i : i + 1], past_key_values=cache, use_cache=True).logits[0, -1].float()
        nll.append(float(torch.nn.functional.cross_entropy(logits[None], ids[0, i + 1 : i + 2])))
    return nll, cache_nbytes(cache), time.perf_counter() - t


def block_interval(diffs: list[float], block: int, seed: int = 0, samples: int = 2000) -> list[float]:
    """Percentile bootstrap 95% interval of the mean per-token difference, resampling blocks of tokens."""
    blocks = np.asarray([np.mean(diffs[i : i + block]) for i in range(0, len(diffs), block)])
    rng = np.random.default_rng(seed)
    means = blocks[rng.integers(0, len(blocks), size=(samples, len(blocks)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return [float(low), float(high)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefill", type=int, default=256)
    p.add_argument("--score", type=int, default=256)
    p.add_argument("--block-tokens", type=int, default=16)
    p.add_argument("--lorc", type=float, nargs="*", default=[0.8, 0.6], help="progressive per-head target ratios")
    p.add_argument("--lorc-layer", type=float, nargs="*", default=[0.6], help="the same with one SVD per layer")
    p.add_argument("--skip-threshold", type=float, default=145.0, help="as in benchmarks/lorc_smollm2.py")
    p.add_argument("--quantized", nargs="*", default=["quanto:4", "quanto:2", "hqq:4", "hqq:2", "fp8"])
    p.add_argument("--out", default=str(RESULTS / "lorc_quantized.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    loaded = load_backbone("smollm2-135m")
    base = loaded.model.eval()
    text = DATA.read_text(encoding="utf-8")
    ids = loaded.tokenizer(text[:200_000], add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = ids[:, : args.prefill + args.score + 1]
    arms = [("full", "DynamicCache", base, DynamicCache, None)]
    for granularity, ratios in (("head", args.lorc), ("layer", args.lorc_layer)):
        for ratio in ratios:
            schedule = progressive_schedule(base, ratio, granularity=granularity, skip_threshold=args.skip_threshold)
            model = copy.deepcopy(base)
            compress_model(model, schedule.ranks, granularity)
            layout = compressed_layers(model)
            arms.append(
                (f"lorc-{granularity}@{ratio:g}", "LoRCCache", model, lambda layout=layout: LoRCCache(layout), schedule)
            )
    skipped = {}
    for spec in args.quantized:
        backend, _, bits = spec.partition(":")
        kwargs = {"nbits": int(bits)} if bits else {}
        try:
            QuantizedCache(backend, base.config, **kwargs)
        except (ImportError, ValueError) as err:
            skipped[spec] = f"{type(err).__name__}: {err}"
            print(f"skip {spec}: {skipped[spec]}", flush=True)
            continue
        arms.append((f"{backend}-int{bits}" if bits else backend, "QuantizedCache", base, None, (backend, kwargs)))
    records = []
    for name, kind, model, make, extra in arms:
        if kind == "QuantizedCache":
            backend, kwargs = extra
            make = lambda backend=backend, kwargs=kwargs: QuantizedCache(backend, base.config, **kwargs)  # noqa: E731
        nll, nbytes, seconds = decode_nll(model, make, ids, args.prefill)
        rec = {
            "arm": name,
            "cache": kind,
            "cache_bytes": nbytes,
            "seconds": seconds,
            "mean_nll": statistics.fmean(nll),
            "perplexity": math.exp(statistics.fmean(nll)),
            "token_nll": nll,
        }
        if kind == "QuantizedCache":
            rec["backend"], rec["options"] = extra
        if kind == "LoRCCache":
            rec["schedule"] = extra.to_dict()
        records.append(rec)
        print(
            f"{name}: ppl {rec['perplexity']:.2f}, cache {nbytes['total']} B, {seconds:.0f} s "
            f"[{time.perf_counter() - started:.0f} s]",
            flush=True,
        )
    full = records[0]
    for rec in records:
        rec["cache_bytes_ratio"] = rec["cache_bytes"]["total"] / full["cache_bytes"]["total"]
        if rec is not full:
            diffs = [a - b for a, b in zip(rec["token_nll"], full["token_nll"])]
            rec["nll_diff_mean"] = statistics.fmean(diffs)
            rec["nll_diff_interval"] = block_interval(diffs, args.block_tokens)
    out = {
        "command": f"python benchmarks/lorc_quantized.py --prefill {args.prefill} --score {args.score} "
        f"--block-tokens {args.block_tokens} --lorc {' '.join(map(str, args.lorc))} "
        f"--lorc-layer {' '.join(map(str, args.lorc_layer))} --skip-threshold {args.skip_threshold} "
        f"--quantized {' '.join(args.quantized)}",
        "model": "smollm2-135m (float32)",
        "data": f"wiki.test.raw, first {ids.shape[1]} tokens of its first 200k characters: {args.prefill} "
        f"prefilled, {args.score} scored one decoding step each",
        "machine": f"2 shared CPU cores, 1 torch thread, torch {torch.__version__}, {platform.machine()}",
        "packages": _versions(),
        "wall_seconds": time.perf_counter() - started,
        "skipped": skipped,
        "records": records,
    }
    tmp = Path(args.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("transformers", "optimum-quanto", "hqq"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


if __name__ == "__main__":
    main()
