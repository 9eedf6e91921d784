"""`prefalign compress-kv`: LoRC low-rank KV-cache compression of a decoder (thesis chapter 5)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

COMMAND = "compress-kv"
PROBE = "The quick brown fox jumps over the lazy dog while the cache keeps every key and value. "


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="compress a decoder's KV cache with LoRC: truncated-SVD key/value factors, ranks per layer from "
        "cumulative condition numbers (progressive) or one rank (uniform); writes factors + JSON schedule",
    )
    p.add_argument("--model", required=True, help="a LLaMA-family or GPT-2 decoder: alias, local folder or hub id")
    p.add_argument("--ratio", type=float, required=True, help="target share of the KV cache kept, in (0, 1]")
    p.add_argument("-o", "--output", required=True, help="folder to write (factors.safetensors, lorc.json, PNGs)")
    p.add_argument(
        "--schedule",
        choices=("progressive", "uniform"),
        default="progressive",
        help="progressive: eq. 5.13 ranks from cumulative condition numbers (5.4.2); uniform: one rank (baseline)",
    )
    p.add_argument(
        "--granularity",
        choices=("head", "layer"),
        default="head",
        help="one SVD per key/value head (rank <= head_dim; default) or one over the whole projection (eq. 5.6)",
    )
    p.add_argument(
        "--skip-threshold",
        type=float,
        help="leave layers whose ln cumulative condition number exceeds this uncompressed (Algorithm 3, line 7)",
    )
    p.add_argument("--d-max", type=int, help="largest rank (default: head_dim, or kv_heads*head_dim per layer)")
    p.add_argument("--profile-text", help="a plain-text file: also measure the single-layer sensitivity profile")
    p.add_argument("--profile-tokens", type=int, default=512, help="tokens of --profile-text scored (default 512)")
    p.add_argument("--profile-rank", type=int, help="rank of the one compressed layer (default: d_max // 2)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="load the model in this dtype")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def run(args) -> int:
    from ..kv.schedule import check_ratio

    check_ratio(args.ratio)
    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it or choose another -o")
    if args.profile_text and not Path(args.profile_text).is_file():
        raise ConfigError(f"--profile-text {args.profile_text} is not a file")
    if args.profile_tokens < 2:
        raise ConfigError(f"--profile-tokens must be at least 2, not {args.profile_tokens}")

    import json
    import math

    import torch
    from transformers import DynamicCache

    from ..kv import LoRCCache, cache_nbytes, compress_model, compressed_layers, sensitivity_profile
    from ..kv.compress import check_rank
    from ..kv.factorize import family
    from ..kv.io import fingerprint, save_compressed
    from ..kv.plots import plot_schedule, plot_sensitivity
    from ..kv.schedule import log_condition_numbers, progressive_schedule, uniform_schedule
    from ..models.loading import load_backbone

    loaded = load_backbone(args.model, dtype=args.dtype)
    model, tok = loaded.model.eval(), loaded.tokenizer
    family(model)  # one line for an unsupported family, before any SVD
    if args.d_max is not None:
        check_rank(model, args.d_max, args.granularity)
    kappas = log_condition_numbers(model)
    options = dict(granularity=args.granularity, skip_threshold=args.skip_threshold, d_max=args.d_max)
    chosen = (progressive_schedule if args.schedule == "progressive" else uniform_schedule)(
        model, args.ratio, log_kappas=kappas, **options
    )
    shown = [chosen]
    if args.schedule == "progressive":  # the baseline beside it in the plot
        try:
            shown.append(uniform_schedule(model, args.ratio, log_kappas=kappas, **options))
        except ConfigError:
            pass
    profile = None
    if args.profile_text:
        text = Path(args.profile_text).read_text(encoding="utf-8", errors="replace")
        ids = tok(text[: 40 * args.profile_tokens], add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = ids[:, : args.profile_tokens]
        if ids.shape[1] < 2:
            raise ConfigError(f"--profile-text {args.profile_text} has fewer than two tokens")
        rank = args.profile_rank or max(1, chosen.d_max // 2)
        check_rank(model, rank, args.granularity)

        @torch.no_grad()
        def score(m) -> float:
            logits = m(input_ids=ids, use_cache=False).logits[0, :-1].float()
            return math.exp(float(torch.nn.functional.cross_entropy(logits, ids[0, 1:])))

        profile = sensitivity_profile(model, score, rank, args.granularity)
        profile["tokens"] = int(ids.shape[1])
    base_print = fingerprint(model)
    probe = tok(PROBE * 8, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :64]
    with torch.no_grad():
        full_cache = DynamicCache()
        model(input_ids=probe, past_key_values=full_cache, use_cache=True)
        factors = compress_model(model, chosen.ranks, args.granularity)
        small_cache = LoRCCache(compressed_layers(model))
        model(input_ids=probe, past_key_values=small_cache, use_cache=True)
    full_bytes, small_bytes = cache_nbytes(full_cache), cache_nbytes(small_cache)
    measured = {
        "probe_tokens": int(probe.shape[1]),
        "full": full_bytes,
        "compressed": small_bytes,
        "ratio": small_bytes["total"] / full_bytes["total"],
    }

    def write_schedule_png(path: Path) -> None:
        plot_schedule(shown, path)

    def write_profile_png(path: Path) -> None:
        plot_sensitivity(profile, path)

    extra = {
        "schedule.png": write_schedule_png,
        "cache_bytes.json": json.dumps(measured, indent=2) + "\n",
    }
    if profile is not None:
        extra["sensitivity.json"] = json.dumps(profile, indent=2) + "\n"
        extra["sensitivity.png"] = write_profile_png
    save_compressed(
        out,
        base_model=loaded.name,
        model=model,
        schedule=chosen,
        factors=factors,
        base_fingerprint=base_print,
        extra_files=extra,
    )
    print(f"{'layer':>5} {'ln kappa~':>10} {'rank':>5} {'kept':>6}" + ("  d_ppl(single)" if profile else ""))
    block = loaded.geometry.head_dim if chosen.granularity == "head" else loaded.geometry.kv_dim
    for layer, rank in enumerate(chosen.ranks):
        kept = "skip" if rank is None else str(rank)
        line = f"{layer:>5} {chosen.log_cumulative[layer]:>10.2f} {kept:>5}"
        line += f" {('1.000' if rank is None else f'{rank / block:.3f}'):>6}"
        if profile:
            line += f"  {profile['deltas'][layer]:+.3f}"
        print(line)
    print(
        f"{chosen.kind} schedule, granularity {chosen.granularity}: target ratio {chosen.target_ratio:g}, "
        f"schedule ratio {chosen.ratio:.4f}, d_max {chosen.d_max}, d_min "
        f"{'-' if chosen.d_min is None else f'{chosen.d_min:.2f}'}"
    )
    print(
        f"measured cache bytes on a {measured['probe_tokens']}-token probe: {small_bytes['total']} of "
        f"{full_bytes['total']} ({measured['ratio']:.4f}; latents {small_bytes['keys'] + small_bytes['values']}, "
        f"RoPE position ids {small_bytes['positions']})"
    )
    if profile:
        print(
            f"sensitivity: baseline perplexity {profile['baseline']:.3f} on {profile['tokens']} tokens, rank "
            f"{profile['rank']} per layer"
        )
    print(f"wrote {out}")
    return 0
