"""LoRC generation speed and cache bytes against the uncompressed cache, at several context lengths, in one run.

    OMP_NUM_THREADS=1 python benchmarks/lorc_generation.py --contexts 1024 2048     # the committed CPU run
    python benchmarks/lorc_generation.py --contexts 1024 4096 8192 --device cuda   # the issue's sizes, on a GPU

For each context length: the first N tokens of WikiText-2 test as the prompt (tests/benchmarks data only),
a prefill into the cache, then --new-tokens greedy decoding steps, for SmolLM2-135M with its own
DynamicCache and with a LoRC progressive schedule at --ratio (LoRCCache). Reports prefill and decode
seconds, decode tokens/s, the real cache bytes at the end (sum of stored tensors' nbytes) and the ratios
compressed / full. Writes benchmarks/results/lorc_generation.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import torch
from transformers import DynamicCache

from prefalign.kv import LoRCCache, cache_nbytes, compress_model, compressed_layers, progressive_schedule
from prefalign.models.loading import load_backbone

# ../shared/data beside the checkout (a worktree under wt/ looks one level further up)
_SHARED = next(
    (p / "shared" / "data" for p in Path(__file__).resolve().parents if (p / "shared" / "data").is_dir()), None
)
DATA = (_SHARED or Path("../shared/data")) / "wikitext2_raw" / "wiki.test.raw"
RESULTS = Path(__file__).resolve().parent / "results"


@torch.no_grad()
def run(model, ids: torch.Tensor, new_tokens: int, device) -> dict:
    layout = compressed_layers(model)
    cache = LoRCCache(layout) if any(layout) else DynamicCache()
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
        "tokens": out,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--contexts", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--ratio", type=float, default=0.6)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(RESULTS / "lorc_generation.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    loaded = load_backbone("smollm2-135m")
    base = loaded.model.eval().to(device)
    schedule = progressive_schedule(base, args.ratio)
    small = copy.deepcopy(base)
    compress_model(small, schedule.ranks, "head")
    text = DATA.read_text(encoding="utf-8")
    all_ids = loaded.tokenizer(text[:400_000], add_special_tokens=False, return_tensors="pt")["input_ids"]
    rows = []
    for n in args.contexts:
        ids = all_ids[:, :n].to(device)
        full = run(base, ids, args.new_tokens, device)
        lorc = run(small, ids, args.new_tokens, device)
        row = {
            "context": n,
            "full": full,
            "lorc": lorc,
            "cache_bytes_ratio": lorc["cache_bytes"]["total"] / full["cache_bytes"]["total"],
            "decode_speed_ratio": lorc["decode_tokens_per_second"] / full["decode_tokens_per_second"],
            "prefill_time_ratio": lorc["prefill_seconds"] / full["prefill_seconds"],
            "same_tokens": full["tokens"] == lorc["tokens"],
        }
        rows.append(row)
        print(
            f"context {n}: cache {lorc['cache_bytes']['total']}/{full['cache_bytes']['total']} B "
            f"({row['cache_bytes_ratio']:.3f}), decode {lorc['decode_tokens_per_second']:.2f} vs "
            f"{full['decode_tokens_per_second']:.2f} tok/s ({row['decode_speed_ratio']:.3f}), "
            f"prefill x{row['prefill_time_ratio']:.3f}",
            flush=True,
        )
    out = {
        "command": f"python benchmarks/lorc_generation.py --contexts {' '.join(map(str, args.contexts))} "
        f"--new-tokens {args.new_tokens} --ratio {args.ratio} --device {args.device}",
        "model": "smollm2-135m (float32)",
        "machine": f"{'2 shared CPU cores, 1 torch thread' if device.type == 'cpu' else args.device}, "
        f"torch {torch.__version__}, {platform.machine()}",
        "schedule": schedule.to_dict(),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
