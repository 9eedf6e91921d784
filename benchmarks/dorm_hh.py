"""DORM on real human preference pairs: HH-RLHF harmless (test split) in four training sources whose labels
are flipped at 0, 10, 20 and 40%, a clean validation set (D_val) and clean held-out pairs.

Each (seed, variant) run trains a MiniLM reward model (LoRA) with `prefalign.reward.train_reward` and
writes one raw record (metrics, per-source weight curves, each held-out pair's margin) to
``--out/seed<S>_<variant>.json``; finished runs are skipped, so the command resumes. ``--report`` prints
the table docs/results.md shows: clean pairwise accuracy per variant, each source's final mean weight,
and DORM minus unweighted with a paired 95% interval (bootstrap over held-out pairs within a seed, and
a t interval over seeds when there are at least two).

    python benchmarks/dorm_hh.py --data ../shared/data/hh_rlhf_harmless/harmless-base_test.jsonl.gz --seeds 0
    python benchmarks/dorm_hh.py --report
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

FLIPS = (0.0, 0.1, 0.2, 0.4)
VARIANTS = ("unweighted", "prior", "bilevel-no-prior", "dorm")
OUT = Path(__file__).resolve().parent / "results" / "dorm_hh"


def split(data: str, per_source: int, n_val: int, n_test: int, work: Path) -> dict:
    """Shuffle the pairs once (seed 0), cut disjoint test, validation and per-source training sets, flip
    the first round(flip * n) pairs of each source (which pairs: a seeded shuffle), write JSONL files."""
    with gzip.open(data, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rng = random.Random(0)
    rng.shuffle(rows)
    need = n_test + n_val + per_source * len(FLIPS)
    if len(rows) < need:
        sys.exit(f"{data} has {len(rows)} pairs; this split needs {need}")
    work.mkdir(parents=True, exist_ok=True)

    def write(name: str, part: list[dict]) -> str:
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
        return str(path)

    files = {"test": write("test", rows[:n_test]), "validation": write("validation", rows[n_test : n_test + n_val])}
    start = n_test + n_val
    sources = []
    for k, flip in enumerate(FLIPS):
        part = [dict(r) for r in rows[start + k * per_source : start + (k + 1) * per_source]]
        order = list(range(len(part)))
        random.Random(100 + k).shuffle(order)
        for i in order[: round(flip * len(part))]:
            part[i] = {"chosen": part[i]["rejected"], "rejected": part[i]["chosen"]}
        sources.append({"name": f"flip{int(flip * 100)}", "path": write(f"flip{int(flip * 100)}", part)})
    return {"sources": sources, **files}


def config(files: dict, args, seed: int, variant: str, out_dir: Path) -> dict:
    return {
        "sources": [{**s, "format": "pairs"} for s in files["sources"]],
        "validation": [{"name": "validation", "path": files["validation"]}],
        "test": [{"name": "test", "path": files["test"]}],
        "model": {"name": args.model, "tuning": "lora", "max_length": args.max_length},
        "dorm": {"variant": variant, "eta_w": args.eta_w, "prior_steps": args.prior_steps, "mc_passes": args.mc_passes},
        "training": {
            "output_dir": str(out_dir),
            "steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "seed": seed,
            "log_every": 10,
            "checkpoint_every": 50,
        },
    }


def run(args) -> None:
    from prefalign.reward import RewardConfig, load_reward_model, read_source, score_pairs, train_reward

    torch.set_num_threads(args.threads)
    files = split(args.data, args.per_source, args.n_val, args.n_test, Path(args.work) / "data")
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for variant in args.variants:
            record_path = args.out / f"seed{seed}_{variant}.json"
            if record_path.exists():
                print(f"skip {record_path.name} (done)", flush=True)
                continue
            out_dir = Path(args.work) / f"seed{seed}_{variant}"
            cfg_dict = config(files, args, seed, variant, out_dir)
            cfg = RewardConfig.from_dict(cfg_dict)
            t0 = time.time()
            result = train_reward(cfg, resume=(out_dir / "checkpoints").is_dir())
            test = read_source(cfg.test[0], 0, cfg.model.head_attributes)
            margins = [s["margin"] for s in score_pairs(load_reward_model(out_dir / "adapter"), test)]
            curves = json.loads((out_dir / "weight_curves.json").read_text())
            record = {
                "seed": seed,
                "variant": variant,
                "config": cfg_dict,
                "metrics": result.metrics,
                "test_margins": margins,
                "weight_curves": curves,
                "seconds": round(time.time() - t0, 1),
            }
            record_path.write_text(json.dumps(record, indent=1))
            m = result.metrics
            print(
                f"seed {seed} {variant}: test acc {m['test_pairwise_accuracy']:.4f}, weights "
                + ", ".join(f"{k} {v:.4f}" for k, v in m["final_mean_weight"].items())
                + f" ({record['seconds']:.0f} s)",
                flush=True,
            )


def bootstrap_interval(a: list[bool], b: list[bool], n: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Accuracy difference mean(a) - mean(b) over the same pairs, with a paired bootstrap 95% interval."""
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    rng = random.Random(seed)
    k = len(diffs)
    means = sorted(sum(diffs[rng.randrange(k)] for _ in range(k)) / k for _ in range(n))
    return sum(diffs) / k, means[int(0.025 * n)], means[int(0.975 * n) - 1]


def report(out: Path) -> None:
    records = [json.loads(p.read_text()) for p in sorted(out.glob("seed*_*.json"))]
    if not records:
        sys.exit(f"no records in {out}")
    by = {(r["seed"], r["variant"]): r for r in records}
    seeds = sorted({r["seed"] for r in records})
    sources = records[0]["weight_curves"]["sources"]
    print("| variant | seeds | clean test accuracy (mean) | per seed | " + " | ".join(f"w {s}" for s in sources) + " |")
    print("|---" * (4 + len(sources)) + "|")
    for variant in VARIANTS:
        rs = [by[(s, variant)] for s in seeds if (s, variant) in by]
        if not rs:
            continue
        accs = [r["metrics"]["test_pairwise_accuracy"] * 100 for r in rs]
        weights = [statistics.mean(r["metrics"]["final_mean_weight"][s] for r in rs) for s in sources]
        print(
            f"| {variant} | {len(rs)} | {statistics.mean(accs):.1f} | {', '.join(f'{a:.1f}' for a in accs)} | "
            + " | ".join(f"{w:.4f}" for w in weights)
            + " |"
        )
    print()
    for variant in ("dorm", "prior", "bilevel-no-prior"):
        diffs = []
        for s in seeds:
            if (s, variant) not in by or (s, "unweighted") not in by:
                continue
            a = [m > 0 for m in by[(s, variant)]["test_margins"]]
            b = [m > 0 for m in by[(s, "unweighted")]["test_margins"]]
            d, lo, hi = bootstrap_interval(a, b)
            diffs.append(d)
            print(
                f"seed {s}: {variant} - unweighted = {100 * d:+.2f} points, "
                f"paired bootstrap 95% [{100 * lo:+.2f}, {100 * hi:+.2f}]"
            )
        if len(diffs) >= 2:
            t975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(len(diffs), 2.0)
            mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
            half = t975 * sd / len(diffs) ** 0.5
            print(
                f"over {len(diffs)} seeds: {variant} - unweighted = {100 * mean:+.2f} points, "
                f"t 95% [{100 * (mean - half):+.2f}, {100 * (mean + half):+.2f}]"
            )
    lowest = []
    for s in seeds:
        if (s, "dorm") in by:
            w = by[(s, "dorm")]["metrics"]["final_mean_weight"]
            lowest.append(min(w, key=w.get))
    print(f"\nsource with the lowest final mean weight under dorm, per seed: {lowest}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/hh_rlhf_harmless/harmless-base_test.jsonl.gz")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--variants", nargs="+", default=["unweighted", "dorm", "prior", "bilevel-no-prior"], choices=VARIANTS
    )
    p.add_argument("--model", default="minilm")
    p.add_argument("--per-source", type=int, default=50)
    p.add_argument("--n-val", type=int, default=50)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--max-length", type=int, default=48)
    p.add_argument("--eta-w", type=float, default=1e-3)
    p.add_argument("--prior-steps", type=int, default=15)
    p.add_argument("--mc-passes", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="runs/dorm_hh")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--report", action="store_true", help="print the table from the records in --out")
    args = p.parse_args()
    if args.report:
        report(args.out)
    else:
        run(args)


if __name__ == "__main__":
    main()
