"""Issue 21, continued: why DORM's prior (eq. 3.4-3.6) does not find the 40%-flipped source, and whether
another reading of it does. Same split, features and settings as benchmarks/dorm_hh.py (imported).

    python benchmarks/dorm_prior.py --stage diagnose   # u, q, p per source and flipped/unflipped pair
    python benchmarks/dorm_prior.py --stage select     # prior and dorm per reading, selection pairs, seeds 0-1
    python benchmarks/dorm_prior.py --stage final      # the chosen reading's prior and dorm, test, seeds 0-2
    python benchmarks/dorm_prior.py --report           # the tables docs/results.md shows

The diagnosis reads only training pairs (whose flips are known by construction) and the selection pairs;
readings are chosen on the selection pairs; the final stage alone scores test pairs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dorm_hh as hh  # noqa: E402

OUT = hh.OUT
DIAGNOSIS = OUT / "prior_diagnosis.json"
SEEDS = (0, 1, 2)
# the brief model's readings: what it trains on, and for how long (dorm_hh's 250 steps; the budget's 1000)
BRIEF = [
    {"prior_data": "train", "prior_steps": 250},
    {"prior_data": "train", "prior_steps": 1000},
    {"prior_data": "validation", "prior_steps": 250},
    {"prior_data": "validation", "prior_steps": 1000},
]
# eq. 3.6's readings, applied to each brief model's MC samples
WEIGHTING = [
    {"q_form": q, "u_coefficient": c, "prior_scaling": s, "gamma": g}
    for q in ("range", "absolute")
    for c in (1.0, 0.0, -1.0)
    for s in ("standardise", "raw")
    for g in (1.0, 3.0)
]
DEFAULT = {"prior_data": "train", "prior_steps": 250, "q_form": "range", "u_coefficient": 1.0}
DEFAULT |= {"prior_scaling": "standardise", "gamma": 1.0}
# the readings run end to end on the selection pairs (prior and dorm, seeds 0-1): the default first, then
# each single change, then the combinations the diagnosis points to (written before the select stage ran)
SELECT = [
    DEFAULT,
    {**DEFAULT, "prior_steps": 1000},
    {**DEFAULT, "q_form": "absolute"},
    {**DEFAULT, "u_coefficient": 0.0},
    {**DEFAULT, "prior_data": "validation"},
    {**DEFAULT, "prior_data": "validation", "q_form": "absolute"},
    {**DEFAULT, "prior_data": "validation", "q_form": "absolute", "u_coefficient": 0.0},
    {**DEFAULT, "prior_data": "validation", "prior_steps": 1000, "q_form": "absolute", "u_coefficient": 0.0},
    # added after the diagnosis: absolute q without u ranked hh-flip40 lowest in every seed of the briefly
    # trained (250 steps, training pairs) model too
    {**DEFAULT, "q_form": "absolute", "u_coefficient": 0.0},
    # added after the diagnosis too: the same with a third of the spread of w0 (its sd is 1.5 to 1.7 at
    # gamma 1, so a few pairs carry much of the loss)
    {**DEFAULT, "q_form": "absolute", "u_coefficient": 0.0, "gamma": 0.3},
]
SELECT_SEEDS = (0, 1)


flipped_rows = hh.flipped_rows  # per HH source, the 1-based rows dorm_hh.split swapped
auc = hh.auc


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (no ties expected in continuous statistics)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def tag(d: dict) -> str:
    return (
        f"{d['prior_data']}{d['prior_steps']}_q{d['q_form']}_u{d['u_coefficient']:g}_{d['prior_scaling']}"
        f"_g{d['gamma']:g}"
    )


def diagnose(r: hh.Runner) -> None:
    from prefalign.reward import RewardConfig, read_source, read_sources
    from prefalign.reward.model import RewardModel, predictions
    from prefalign.reward.prior import mc_dropout_samples, prior_weights, statistics_of
    from prefalign.reward.run import brief_training

    lr, steps = hh.chosen_budget(OUT)
    flips = flipped_rows()
    out = {"stage": "diagnose", "machine": "2 shared CPU cores, 1 thread", "lr": lr, "runs": []}
    t0 = time.time()
    for seed in SEEDS:
        for brief in BRIEF:
            cfg_dict = hh.config(r.files, r.work / "diagnose", seed, "prior", "selection", lr, steps, brief)
            cfg = RewardConfig.from_dict(cfg_dict)
            names = [s.name for s in cfg.sources]
            train = read_sources(cfg.sources, ["reward"])
            validation = read_sources(cfg.validation, ["reward"])
            model = RewardModel(r.backbone, cfg.model, seed=seed)
            brief_training(model, cfg, validation if brief["prior_data"] == "validation" else train)
            samples = mc_dropout_samples(model, train, cfg.dorm.mc_passes, 256, seed + 2)
            model.eval()
            selection = read_source(cfg.test[0], 0, ["reward"])
            with torch.no_grad():
                sel_margins, _ = predictions(model, selection)
            p = np.array([float(s.mean()) for s in samples])
            rng_ = np.array([float(s.max() - s.min()) for s in samples])
            u_all, q_range = statistics_of(samples, train, "range")
            _, q_abs = statistics_of(samples, train, "absolute")
            src = np.array([names[ex.source] for ex in train])
            flipped = np.array([names[ex.source] in flips and ex.row in flips[names[ex.source]] for ex in train])
            hh_mask = np.char.startswith(src.astype(str), "hh-")
            # what u and the MC range measure: head dropout masks the chosen and the rejected text's features
            # independently, so the margin's variance over the passes is about
            # p/(1-p) sum_j W_j^2 (f_chosen,j^2 + f_rejected,j^2) (p: the dropout rate): the two texts'
            # head-weighted feature energy, and sigmoid' ~ 1/4 near a zero margin carries it into u
            with torch.no_grad():
                fc = model.cached_features([ex.chosen for ex in train])
                fr = model.cached_features([ex.rejected for ex in train])
                energy = ((model.head.weight[0] ** 2) * (fc**2 + fr**2)).sum(-1).numpy()
            groups = {}
            for name in names:
                for label, sel in (("flipped", flipped), ("kept", ~flipped)):
                    m = (src == name) & sel
                    if not m.any():
                        continue
                    groups[f"{name}/{label}"] = {
                        "n": int(m.sum()),
                        "mean_p": float(p[m].mean()),
                        "agrees_with_label": float((p[m] > 0.5).mean()),
                        "mean_u": float(u_all.numpy()[m].mean()),
                        "mean_range": float(rng_[m].mean()),
                        "mean_q_range": float(q_range.numpy()[m].mean()),
                        "mean_q_absolute": float(q_abs.numpy()[m].mean()),
                        "sd_q_absolute": float(q_abs.numpy()[m].std()),
                        "mean_feature_energy": float(energy[m].mean()),
                    }
            # right on the true labels: a flipped pair's model is right when it disagrees with the given label
            truth_right = np.where(flipped, p < 0.5, p > 0.5)[hh_mask]
            f = flipped[hh_mask]
            detect = {
                "q_range": auc(q_range.numpy()[hh_mask], f),
                "q_absolute": auc(q_abs.numpy()[hh_mask], f),
                "u": auc(u_all.numpy()[hh_mask], f),
                "range": auc(rng_[hh_mask], f),
            }
            spearman = {
                "u_vs_feature_energy": spearman_rho(u_all.numpy(), energy),
                "range_vs_feature_energy": spearman_rho(rng_, energy),
                "q_range_vs_inverse_range": spearman_rho(q_range.numpy(), 1.0 / (rng_ + 1e-6)),
            }
            weightings = []
            for wd in WEIGHTING:
                q = q_range if wd["q_form"] == "range" else q_abs
                w0 = prior_weights(
                    u_all, q, wd["gamma"], 3.0, u_coefficient=wd["u_coefficient"], scaling=wd["prior_scaling"]
                ).numpy()
                means = {n: float(w0[src == n].mean()) for n in names}
                weightings.append(
                    {
                        **wd,
                        "auc_low_w0_flipped": auc(-w0[hh_mask], f),
                        "mean_w0": means,
                        "flip40_rank": hh._flip40_rank(means),
                        "w0_std": float(w0.std()),
                    }
                )
            out["runs"].append(
                {
                    "seed": seed,
                    **brief,
                    "selection_accuracy": float((sel_margins > 0).float().mean()),
                    "hh_train_accuracy_true_labels": float(truth_right.mean()),
                    "median_abs_margin_proxy": float(np.median(np.abs(p - 0.5))),
                    "groups": groups,
                    "auc_flipped": detect,
                    "spearman": spearman,
                    "weightings": weightings,
                }
            )
            print(
                f"seed {seed} {brief}: sel acc {out['runs'][-1]['selection_accuracy']:.3f}, "
                f"AUC q_range {detect['q_range']:.3f} q_abs {detect['q_absolute']:.3f} u {detect['u']:.3f}",
                flush=True,
            )
    out["seconds"] = round(time.time() - t0, 1)
    tmp = DIAGNOSIS.with_suffix(".tmp")
    tmp.write_text(json.dumps(hh._portable(out), indent=1))
    tmp.replace(DIAGNOSIS)


def _settings(variant: str) -> dict:
    """dorm_hh's chosen settings: dorm its own, prior unweighted's (w is fixed, so only alpha matters), as in
    dorm_hh's final stage."""
    return hh.search_table(OUT, "dorm" if variant == "dorm" else "unweighted")[1]


def select(r: hh.Runner) -> None:
    lr, steps = hh.chosen_budget(OUT)
    for seed in SELECT_SEEDS:
        for reading in SELECT:
            for variant in ("prior", "dorm"):
                d = {**_settings(variant), **reading}
            record = OUT / f"final_reading/seed{seed}_{variant}.json"
            if record.exists() and json.loads(record.read_text()).get("reading") != reading:
                record.unlink()  # written for a reading the selection no longer chooses
                cfg = hh.config(r.files, r.work / "select", seed, variant, "selection", lr, steps, d)
                extra = {"stage": "select", "seed": seed, "variant": variant, "reading": reading}
                r.run(OUT / f"readings/{variant}_{tag(reading)}_seed{seed}.json", cfg, extra)


def _select_rows() -> list[tuple]:
    recs = [json.loads(p.read_text()) for p in sorted((OUT / "readings").glob("*.json"))]
    rows = []
    for reading in SELECT:
        cells = {}
        for variant in ("prior", "dorm"):
            rs = [x for x in recs if x["variant"] == variant and x["reading"] == reading]
            if rs:
                acc = statistics.mean(x["metrics"]["test_pairwise_accuracy"] for x in rs)
                ranks = [hh._flip40_rank(x["metrics"]["final_mean_weight"]) for x in rs]
                cells[variant] = (acc, ranks, len(rs))
        if cells:
            rows.append((reading, cells))
    return rows


def chosen_reading() -> dict:
    """The reading whose dorm run has the best mean selection accuracy (ties: the earlier row, the default
    first)."""
    rows = [(reading, cells["dorm"][0]) for reading, cells in _select_rows() if "dorm" in cells]
    if not rows:
        sys.exit("run --stage select first")
    return max(rows, key=lambda row: row[1])[0]


def final(r: hh.Runner) -> None:
    lr, steps = hh.chosen_budget(OUT)
    reading = chosen_reading()
    for seed in hh.FINAL_SEEDS:
        for variant in ("prior", "dorm"):
            d = {**_settings(variant), **reading}
            record = OUT / f"final_reading/seed{seed}_{variant}.json"
            if record.exists() and json.loads(record.read_text()).get("reading") != reading:
                record.unlink()  # written for a reading the selection no longer chooses
            cfg = hh.config(
                r.files, r.work / "final_reading" / f"seed{seed}_{variant}", seed, variant, "test", lr, steps, d
            )
            r.run(
                OUT / f"final_reading/seed{seed}_{variant}.json",
                cfg,
                {"stage": "final", "seed": seed, "variant": variant, "reading": reading},
            )


# -- tables ------------------------------------------------------------------------------------------
def _differs(d: dict) -> str:
    keys = ("prior_data", "prior_steps", "q_form", "u_coefficient", "prior_scaling", "gamma")
    diff = [f"{k}={d[k]:g}" if isinstance(d[k], float) else f"{k}={d[k]}" for k in keys if d[k] != DEFAULT[k]]
    return ", ".join(diff) or "default (thesis as implemented)"


def diagnosis_table() -> str:
    """Per brief model: what it predicts on flipped and kept pairs, and how well u and q find the flips."""
    data = json.loads(DIAGNOSIS.read_text())
    lines = [
        "| brief model | seeds | selection acc. | HH train acc. (true labels) | source / pairs | n | mean p | "
        "p > 0.5 | mean u (x1e4) | mean MC range | mean q (eq. 3.5) | mean abs. q | sd abs. q | "
        "feature energy (x100) |",
        "|---" * 14 + "|",
    ]
    for brief in BRIEF:
        runs = [
            x
            for x in data["runs"]
            if x["prior_data"] == brief["prior_data"] and x["prior_steps"] == brief["prior_steps"]
        ]
        first = True
        for g in runs[0]["groups"]:
            if not (g.startswith("hh-flip40") or g.startswith("hh-flip0") or g.startswith("dpo")):
                continue

            stats = {k: statistics.mean(x["groups"][g][k] for x in runs) for k in runs[0]["groups"][g]}
            head = "| |  | | |"
            if first:
                acc = " / ".join(f"{100 * x['selection_accuracy']:.1f}" for x in runs)
                tr = " / ".join(f"{100 * x['hh_train_accuracy_true_labels']:.1f}" for x in runs)
                head = f"| {brief['prior_data']}, {brief['prior_steps']} steps | {len(runs)} | {acc} | {tr} |"
                first = False
            lines.append(
                f"{head} {g} | {runs[0]['groups'][g]['n']} | {stats['mean_p']:.3f} | "
                f"{100 * stats['agrees_with_label']:.0f}% | {1e4 * stats['mean_u']:.2f} | {stats['mean_range']:.3f} | "
                f"{stats['mean_q_range']:.2f} | {stats['mean_q_absolute']:.3f} | {stats['sd_q_absolute']:.3f} | "
                f"{100 * stats['mean_feature_energy']:.2f} |"
            )
    lines += [
        "",
        "| brief model | AUC of q (eq. 3.5) | AUC of abs. q | AUC of u | AUC of the MC range | "
        "Spearman u vs feature energy | Spearman q (eq. 3.5) vs 1 / range |",
        "|---|---|---|---|---|---|---|",
    ]
    for brief in BRIEF:
        runs = [
            x
            for x in data["runs"]
            if x["prior_data"] == brief["prior_data"] and x["prior_steps"] == brief["prior_steps"]
        ]
        cells = [
            " / ".join(f"{x['auc_flipped'][k]:.3f}" for x in runs) for k in ("q_range", "q_absolute", "u", "range")
        ]
        cells += [
            " / ".join(f"{x['spearman'][k]:.2f}" for x in runs)
            for k in ("u_vs_feature_energy", "q_range_vs_inverse_range")
        ]
        lines.append(f"| {brief['prior_data']}, {brief['prior_steps']} steps | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def weighting_table(default_brief: bool = True) -> str:
    """Per brief model and eq. 3.6 reading: how well low w0 finds flipped pairs, hh-flip40's rank.
    ``default_brief``: every reading of eq. 3.6 on the default brief model (training pairs, 250 steps);
    otherwise the other brief models under standardised terms and gamma 1 (every row is in the record)."""
    data = json.loads(DIAGNOSIS.read_text())
    lines = [
        "| brief model | q | c (u) | scaling | gamma | AUC of low w0 on flipped, per seed | "
        "rank of hh-flip40, per seed | mean w0 hh-flip0 / 10 / 20 / 40 / demo (median over seeds) | "
        "sd of w0 (n_eff / n), seed 0 |",
        "|---" * 9 + "|",
    ]
    for brief in BRIEF:
        runs = [
            x
            for x in data["runs"]
            if x["prior_data"] == brief["prior_data"] and x["prior_steps"] == brief["prior_steps"]
        ]
        if (brief == BRIEF[0]) != default_brief:
            continue
        for k, wd in enumerate(WEIGHTING):
            if not default_brief and (wd["prior_scaling"], wd["gamma"]) != ("standardise", 1.0):
                continue
            ws = [x["weightings"][k] for x in runs]
            names = list(ws[0]["mean_w0"])
            med = " / ".join(f"{statistics.median(w['mean_w0'][n] for w in ws):.2f}" for n in names)
            lines.append(
                f"| {brief['prior_data']}, {brief['prior_steps']} | {wd['q_form']} | {wd['u_coefficient']:g} | "
                f"{wd['prior_scaling']} | {wd['gamma']:g} | "
                + " / ".join(f"{w['auc_low_w0_flipped']:.3f}" for w in ws)
                + " | "
                + " / ".join(str(w["flip40_rank"]) for w in ws)
                + f" | {med} | {ws[0]['w0_std']:.2f} ({1 / (1 + ws[0]['w0_std'] ** 2):.2f}) |"
            )
    return "\n".join(lines)


def select_table() -> str:
    rows = _select_rows()
    chosen = chosen_reading()
    lines = [
        "| reading (changes from the default) | prior: selection acc. (mean) | prior: hh-flip40 rank | "
        "dorm: selection acc. (mean) | dorm: hh-flip40 rank |",
        "|---|---|---|---|---|",
    ]
    for reading, cells in rows:
        mark = " **chosen**" if reading == chosen else ""
        out = [f"{_differs(reading)}{mark}"]
        for v in ("prior", "dorm"):
            if v in cells:
                acc, ranks, _ = cells[v]
                out += [f"{100 * acc:.1f}", " / ".join(map(str, ranks))]
            else:
                out += ["-", "-"]
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


def final_table() -> str:
    """The chosen reading's prior and dorm on test, against dorm_hh's unweighted runs (same seeds)."""
    base = {(x["seed"], x["variant"]): x for x in (json.loads(p.read_text()) for p in (OUT / "final").glob("*.json"))}
    new = {
        (x["seed"], x["variant"]): x
        for x in (json.loads(p.read_text()) for p in (OUT / "final_reading").glob("*.json"))
    }
    if not new:
        return ""
    seeds = sorted({s for s, _ in new})
    names = next(iter(new.values()))["weight_curves"]["sources"]
    reading = next(iter(new.values()))["reading"]
    lines = [
        f"Reading: {_differs(reading)}.",
        "",
        "| variant | seeds | clean test accuracy (median) | per seed | "
        + " | ".join(f"w {n}" for n in names)
        + " | lowest w, per seed | rank of hh-flip40 among the hh sources, per seed |",
        "|---" * (6 + len(names)) + "|",
    ]
    for label, recs in (
        ("unweighted (dorm_hh)", {k: v for k, v in base.items() if k[1] == "unweighted"}),
        ("prior, this reading", {k: v for k, v in new.items() if k[1] == "prior"}),
        ("dorm, this reading", {k: v for k, v in new.items() if k[1] == "dorm"}),
    ):
        rs = [recs[k] for k in sorted(recs)]
        accs = [100 * x["metrics"]["test_pairwise_accuracy"] for x in rs]
        w = {n: statistics.median(x["metrics"]["final_mean_weight"][n] for x in rs) for n in names}
        lowest, ranks = "-", "-"
        if not label.startswith("unweighted"):
            lowest = ", ".join(min(x["metrics"]["final_mean_weight"].items(), key=lambda kv: kv[1])[0] for x in rs)
            ranks = " / ".join(str(hh._flip40_rank(x["metrics"]["final_mean_weight"])) for x in rs)
        lines.append(
            f"| {label} | {len(rs)} | {statistics.median(accs):.1f} | {' / '.join(f'{a:.1f}' for a in accs)} | "
            + " | ".join(f"{w[n]:.4f}" for n in names)
            + f" | {lowest} | {ranks} |"
        )
    lines += ["", "| difference (test accuracy, points) | per seed: mean [paired bootstrap 95%] | pooled over seeds |"]
    lines.append("|---|---|---|")
    for v in ("dorm", "prior"):
        both = [s for s in seeds if (s, v) in new and (s, "unweighted") in base]
        a = np.array([[m > 0 for m in new[(s, v)]["margins"]] for s in both], dtype=float)
        b = np.array([[m > 0 for m in base[(s, "unweighted")]["margins"]] for s in both], dtype=float)
        cells = []
        for k, s in enumerate(both):
            d, lo, hi = hh.paired_pair_bootstrap(a[k : k + 1], b[k : k + 1])
            cells.append(f"seed {s}: {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        d, lo, hi = hh.paired_pair_bootstrap(a, b)
        lines.append(f"| {v} - unweighted | {'; '.join(cells)} | {100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("diagnose", "select", "final"))
    p.add_argument("--work", type=Path, default=hh.ROOT / "runs" / "dorm_hh")
    p.add_argument("--report", action="store_true", help="print the tables from the committed records")
    args = p.parse_args(argv)
    if args.report:
        tables = (diagnosis_table(), weighting_table(), weighting_table(False), select_table(), final_table())
        print(*tables, sep="\n\n")
        return
    if not args.stage:
        p.error("give --stage or --report")
    torch.set_num_threads(1)
    runner = hh.Runner(args.work)
    {"diagnose": diagnose, "select": select, "final": final}[args.stage](runner)


if __name__ == "__main__":
    main()
