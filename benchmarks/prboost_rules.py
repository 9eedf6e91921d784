"""PRBoost (`prefalign rules discover`) on AG News and TREC with simulated reviewers: the records behind
docs/results.md "PRBoost" (Table 2.2's layout at our scale) and the rule coverage / accuracy chart.

    python benchmarks/prboost_rules.py run --dataset agnews --seeds 0 1 2
    python benchmarks/prboost_rules.py run --dataset trec --seeds 0 1 2
    python benchmarks/prboost_rules.py report        # tables (markdown) and the PNG from the records

The splits, cut from ../shared/data (benchmarks only; nothing in the product reads it):
* AG News: train_subset_10k.tsv (10,001 descriptions) is the training set. A fixed draw (numpy seed 12345)
  of --pool texts is the unlabelled pool; each seed draws its clean set (0.5% of the 10k: 50) and a dev set
  of the same size (sec. 2.5.1: |D_v| = |D_l|) from the rest. Test: a fixed draw of --test texts of test.csv
  (description only, as in the training file).
* TREC: train.txt (5,452 questions, coarse labels): a fixed pool draw, per-seed clean and dev sets of
  --clean each; test.txt (500) whole.
The config (seed rules, template, rounds, reviewers) is configs/rules/<dataset>.yaml; this script only fills
in the paths, the seed and the output folder. Records: benchmarks/results/prboost/<dataset>_seed<N>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from shared_data import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA
OUT = ROOT / "benchmarks" / "results" / "prboost"


def _data_root() -> Path:
    for candidate in (Path(os.environ.get("PREFALIGN_SHARED_DATA", "")), DATA):
        if str(candidate) and (candidate / "agnews").is_dir():
            return candidate
    sys.exit("cannot find the shared data folder; set PREFALIGN_SHARED_DATA")


def load_dataset(name: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train rows, test rows) as (text, label name)."""
    root = _data_root()
    if name == "agnews":
        train = []
        for line in (root / "agnews" / "train_subset_10k.tsv").read_text(encoding="utf-8").splitlines():
            text, _, label = line.rpartition("\t")
            if text.strip():
                train.append((text.strip(), label.strip()))
        names = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}
        with open(root / "agnews" / "test.csv", encoding="utf-8", newline="") as f:
            test = [(r["Description"].strip(), names[r["Class Index"]]) for r in csv.DictReader(f)]
        return train, test

    def read(path: Path):
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            head, _, text = line.partition(" ")
            rows.append((text.strip(), head.split(":")[0]))
        return rows

    return read(root / "trec" / "train.txt"), read(root / "trec" / "test.txt")


def write(path: Path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return str(path)


def splits(name: str, seed: int, pool_size: int, clean_size: int, test_size: int, work: Path) -> dict:
    train, test = load_dataset(name)
    fixed = np.random.default_rng(12345)
    order = fixed.permutation(len(train))
    pool_idx, rest = order[:pool_size], order[pool_size:]
    if test_size and test_size < len(test):
        test = [test[i] for i in sorted(fixed.permutation(len(test))[:test_size])]
    rng = np.random.default_rng(seed)
    pick = rng.permutation(rest)[: 2 * clean_size]
    d = work / name
    return {
        "unlabelled": write(d / "pool.csv", [train[i] for i in pool_idx]),
        "clean": write(d / f"clean_seed{seed}.csv", [train[i] for i in pick[:clean_size]]),
        "dev": write(d / f"dev_seed{seed}.csv", [train[i] for i in pick[clean_size:]]),
        "test": write(d / "test.csv", test),
        "sizes": {"train": len(train), "pool": pool_size, "clean": clean_size, "dev": clean_size, "test": len(test)},
    }


def dump(record: dict) -> str:
    """JSON with one key a line but every list of numbers on one line (the test predictions are long)."""
    text = json.dumps(record, indent=1)
    return (
        re.sub(
            r"\[\s*([-0-9.eE+, \n]+?)\s*\]",
            lambda m: "[" + ", ".join(m.group(1).split()).replace(",,", ",") + "]",
            text,
        )
        + "\n"
    )


def run(args) -> None:
    import torch

    torch.set_num_threads(1)
    from prefalign.rules import discover, load_rules_config

    work = Path(args.work)
    for seed in args.seeds:
        s = splits(args.dataset, seed, args.pool, args.clean, args.test, work)
        overrides = [
            f"unlabelled.path={s['unlabelled']}",
            f"clean.path={s['clean']}",
            f"dev.path={s['dev']}",
            f"test.path={s['test']}",
            f"output_dir={work / 'runs' / f'{args.dataset}{args.name}_seed{seed}'}",
            f"cache_dir={work / 'cache'}",
            f"seed={seed}",
            *([f"boost.rounds={args.rounds}"] if args.rounds is not None else []),
            *args.set,
        ]
        cfg = load_rules_config(str(ROOT / "configs" / "rules" / f"{args.dataset}.yaml"), overrides)
        start = time.perf_counter()
        result = discover(cfg, log=lambda m, s=seed: print(f"[{args.dataset} seed {s}] {m}", flush=True))
        record = {
            "dataset": args.dataset,
            "variant": args.name.lstrip("-") or "default",
            "seed": seed,
            "sizes": s["sizes"],
            "command": f"python benchmarks/prboost_rules.py run --dataset {args.dataset} --seeds {seed}"
            + (f" --rounds {args.rounds}" if args.rounds is not None else "")
            + f" --pool {args.pool} --clean {args.clean} --test {args.test}"
            + "".join(f" --set {o}" for o in args.set)
            + (f" --name={args.name}" if args.name else ""),
            "machine": "2 shared CPU cores, one torch thread",
            "wall_seconds": time.perf_counter() - start,
            **result.record,
        }
        OUT.mkdir(parents=True, exist_ok=True)
        if not args.name:  # the default variant's rules file, for reading the reviewed rules
            (OUT / "rules").mkdir(exist_ok=True)
            (OUT / "rules" / f"{args.dataset}_seed{seed}.json").write_text(
                (Path(cfg.output_dir) / "rules.json").read_text()
            )
        (OUT / f"{args.dataset}{args.name}_seed{seed}.json").write_text(dump(record))
        print(f"[{args.dataset} seed {seed}] done in {record['wall_seconds']:.0f} s", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# report

ROWS = [
    ("Supervised", "pool_gold_labels", "head on the pool's gold labels (upper bound)"),
    ("Supervised", "clean_only", "head on the clean set only"),
    ("Weakly supervised", "rule_matching", "rule matching (seed rules, abstain = wrong)"),
    ("Weakly supervised", "majority_vote", "majority vote of seed rules + head"),
    ("Weakly supervised", "label_model", "Snorkel LabelModel + head"),
    ("Weakly supervised", "label_model_argmax", "Snorkel LabelModel (its argmax labels) + head"),
    ("Weakly supervised", "majority_vote+clean", "majority vote + head, with the clean set"),
    ("Weakly supervised", "label_model+clean", "Snorkel LabelModel + head, with the clean set"),
    ("PRBoost", "round0_model", "round 0: seed rules + self-training (m_0)"),
    ("PRBoost", "prboost", "PRBoost ensemble of all rounds (eq. 2.11, equal weights)"),
    ("PRBoost", "-clean:round0_model", "round 0, clean set added to D_t (weak_model.train_on_clean)"),
    ("PRBoost", "-clean:prboost", "PRBoost ensemble, clean set added to every D_t"),
    ("PRBoost", "-ruleacc:prboost", "PRBoost ensemble, sigma by the rules' own dev accuracy (match.tune)"),
]


def _records(dataset: str) -> list[dict]:
    return sorted((json.loads(p.read_text()) for p in OUT.glob(f"{dataset}_seed*.json")), key=lambda r: r["seed"])


def _predictions(rec: dict, key: str) -> np.ndarray | None:
    if key in rec.get("test_predictions", {}):
        return np.asarray(rec["test_predictions"][key])
    b = rec.get("baselines", {}).get(key, {})
    return np.asarray(b["predictions"]) if "predictions" in b else None


def _item_bootstrap(a: np.ndarray, b: np.ndarray, y: np.ndarray, seed: int = 0, samples: int = 2000):
    """Paired bootstrap over test items of accuracy(b) - accuracy(a): (difference, 2.5%, 97.5%)."""
    da = (a == y).astype(float)
    db = (b == y).astype(float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(samples, len(y)))
    diffs = (db[idx] - da[idx]).mean(1)
    return float(db.mean() - da.mean()), float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def report(args) -> None:
    from prefalign.compare.pairs import bootstrap_interval

    lines = []
    for dataset in ("agnews", "trec"):
        recs = _records(dataset)
        if not recs:
            continue
        seeds = [r["seed"] for r in recs]
        lines.append(f"### {dataset}: test accuracy x100, median over seeds {seeds} (per seed in brackets)\n")
        lines.append("| group | method | median | per seed |")
        lines.append("|---|---|---|---|")
        variants = {"": recs, "-clean": _records(dataset + "-clean"), "-ruleacc": _records(dataset + "-ruleacc")}
        for group, key, label in ROWS:
            variant, _, key = key.rpartition(":")
            vals = []
            for r in variants[variant]:
                p = _predictions(r, key)
                vals.append(None if p is None else float((p == np.asarray(r["test_labels"])).mean()))
            if not vals:
                continue
            if all(v is None for v in vals):
                lines.append(f"| {group} | {label} | n/a | {recs[0]['baselines'].get(key, {}).get('skipped', '')} |")
                continue
            got = [v for v in vals if v is not None]
            per = " / ".join("-" if v is None else f"{100 * v:.1f}" for v in vals)
            lines.append(f"| {group} | {label} | {100 * np.median(got):.1f} | {per} |")
        lines.append("")
        comparisons = [("", "clean_only"), ("", "majority_vote+clean"), ("", "round0_model")]
        comparisons += [("-clean", "clean_only"), ("-clean", "round0_model")] if variants["-clean"] else []
        comparisons += [("-ruleacc", "round0_model")] if variants["-ruleacc"] else []
        for variant, ref in comparisons:
            per_seed, cells = [], []
            for r in variants[variant]:
                a, b = _predictions(r, ref), _predictions(r, "prboost")
                if a is None or b is None:
                    continue
                d, lo, hi = _item_bootstrap(a, b, np.asarray(r["test_labels"]), seed=r["seed"])
                per_seed.append(d)
                cells.append(f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
            if per_seed:
                lo, hi = bootstrap_interval(per_seed)
                name = (
                    "PRBoost"
                    + {"": "", "-clean": " (clean set in D_t)", "-ruleacc": " (sigma by rule accuracy)"}[variant]
                )
                lines.append(
                    f"* {name} minus {ref}: median {100 * np.median(per_seed):+.1f} points over seeds "
                    f"(bootstrap 95% over seeds [{100 * lo:+.1f}, {100 * hi:+.1f}]); per seed, with a paired "
                    f"bootstrap over test items: {'; '.join(cells)}"
                )
        lines.append("")
        lines.append(
            "Per round (median over seeds): pool rule coverage, pool rule accuracy, accepted prompt rules, "
            "test accuracy of the ensemble, Fleiss' kappa of the simulated reviewers.\n"
        )
        lines.append("| round | coverage | rule accuracy | prompt rules | ensemble test acc. | kappa |")
        lines.append("|---|---|---|---|---|---|")
        rounds = min(len(r["rounds"]) for r in recs)
        for t in range(rounds):

            def med(key, t=t, recs=recs):
                vals = [r["rounds"][t].get(key) for r in recs if r["rounds"][t].get(key) is not None]
                return float(np.median(vals)) if vals else float("nan")

            kap = [k["kappa"] for r in recs for k in r["kappa"] if k["round"] == t and k["kappa"] is not None]
            lines.append(
                f"| {t} | {100 * med('pool_coverage'):.1f} | {100 * med('pool_rule_accuracy'):.1f} | "
                f"{med('accepted_prompt_rules'):.0f} | {100 * med('test_accuracy_ensemble'):.1f} | "
                f"{np.median(kap):.2f} |"
                if kap
                else f"| {t} | {100 * med('pool_coverage'):.1f} | {100 * med('pool_rule_accuracy'):.1f} | "
                f"{med('accepted_prompt_rules'):.0f} | {100 * med('test_accuracy_ensemble'):.1f} | - |"
            )
        rates, p_bar, p_e = [], [], []
        for r in recs:
            path = OUT / "rules" / f"{dataset}_seed{r['seed']}.json"
            if path.is_file():
                decided = [
                    c["decision"]
                    for rule in json.loads(path.read_text())["rules"]
                    if rule["kind"] == "prompt"
                    for c in rule["candidates"]
                ]
                rates.append(decided.count("accept") / max(1, len(decided)))
            p_bar += [k["P_bar"] for k in r["kappa"] if k["P_bar"] is not None]
            p_e += [k["P_e"] for k in r["kappa"] if k["P_e"] is not None]
        if rates:
            lines.append(
                f"\nCandidate words accepted by the simulated majority: {', '.join(f'{100 * x:.1f}%' for x in rates)} "
                f"(seed order); over all rounds and seeds, median P_bar {np.median(p_bar):.2f}, median P_e "
                f"{np.median(p_e):.2f} (eq. B.1)."
            )
        wall = [r["wall_seconds"] for r in recs]
        lines.append(
            f"\nWall time per seed: {', '.join(f'{w / 60:.1f}' for w in wall)} min (seed order), reading the "
            "prompted words and embeddings from the cache (`--work`/cache) a first pass wrote.\n"
        )
    text = "\n".join(lines)
    (OUT / "summary.md").write_text(text + "\n")
    print(text)
    plot()


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in ("agnews", "trec") if _records(d)]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for r in _records(dataset):
            t = [e["round"] for e in r["rounds"]]
            ax.plot(
                t,
                [100 * e["pool_coverage"] for e in r["rounds"]],
                "o-",
                color="tab:blue",
                alpha=0.7,
                label="rule coverage" if r["seed"] == 0 else None,
            )
            ax.plot(
                t,
                [100 * (e["pool_rule_accuracy"] or 0) for e in r["rounds"]],
                "s-",
                color="tab:orange",
                alpha=0.7,
                label="rule accuracy" if r["seed"] == 0 else None,
            )
            ax.plot(
                t,
                [100 * e["test_accuracy_ensemble"] for e in r["rounds"]],
                "^-",
                color="tab:green",
                alpha=0.7,
                label="ensemble test accuracy" if r["seed"] == 0 else None,
            )
        ax.set_title(f"PRBoost on {dataset} (each line a seed)")
        ax.set_xlabel("round")
        ax.set_ylabel("%")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(OUT / "rule_quality.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", choices=("agnews", "trec"), required=True)
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--rounds", type=int, default=None, help="override boost.rounds of the config")
    r.add_argument("--pool", type=int, default=600, help="unlabelled pool size (a fixed draw)")
    r.add_argument("--clean", type=int, default=50, help="clean set size (and dev set size)")
    r.add_argument("--test", type=int, default=1000, help="test texts (a fixed draw; 0: all)")
    r.add_argument("--work", default="runs/prboost", help="splits, runs and the encoding cache")
    r.add_argument("--set", action="append", default=[], help="a config override, e.g. weak_model.train_on_clean=true")
    r.add_argument("--name", default="", help="a suffix of the record's name for a variant, e.g. -clean")
    sub.add_parser("report")
    args = p.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
