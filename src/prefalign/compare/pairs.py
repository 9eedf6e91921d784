"""Seed-matched pairs: in how many (method, seed) pairs does the row trained on one target beat the other?

Rows pair by their label, "<method> / <a>" against "<method> / <b>", same dataset column, same seed
(same initialisation and data order). A compare config asks for the table with ``pairs: [a, b]``
(e.g. ``[majority, soft]``); `prefalign compare` (and ``--report-only``) then adds it to table.md.
Metric directions come from prefalign.training.config.LOWER_IS_BETTER, the runner's own; ties count as no win.

Beside each count the table gives the median of the seed-matched differences (b minus a) and a seeded
percentile-bootstrap 95% interval of that median (bootstrap_interval); method_differences does the same
for two rows of any grid (method vs method, same column and seed).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np

from ..training.config import LOWER_IS_BETTER  # the runner's own reading of each metric's direction

METRICS = ("accuracy", "f1", "soft_ce", "jsd", "ece", "worst_group_ce")


def _matched(runs: list[dict | None], a: str, b: str):
    """(column, metric, b run's value, a run's value) for every seed-matched '<method> / a|b' pair of finished
    runs, in a fixed order."""
    by_key = {}
    for run in runs:
        if run is None:
            continue
        method, _, target = run["method"].rpartition(" / ")
        if run.get("status") == "ok" and method:
            by_key[(run["column"], method, target, run["seed"])] = run["metrics"]
    for (column, method, target, seed), scores in sorted(by_key.items(), key=lambda kv: tuple(map(str, kv[0]))):
        other = by_key.get((column, method, a, seed))
        if target != b or other is None:
            continue
        for metric in METRICS:
            key = f"test_{metric}"
            if key in scores and key in other:
                yield column, metric, scores[key], other[key]


def paired_wins(runs: list[dict | None], a: str, b: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(dataset column, metric): (pairs where b beats a, pairs)} over the finished runs."""
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for column, metric, value_b, value_a in _matched(runs, a, b):
        better = value_b < value_a if metric in LOWER_IS_BETTER else value_b > value_a
        out[(column, metric)][0] += int(better)
        out[(column, metric)][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


BOOTSTRAP_SAMPLES = 10_000


def bootstrap_interval(
    differences: list[float], *, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the median of ``differences``: resample them with replacement
    ``samples`` times (numpy's generator seeded with ``seed``), take each resample's median, and return
    the (1 - level) / 2 and (1 + level) / 2 quantiles of those medians. Same input and seed, same interval.

    With 3 seeds the interval can only span the observed differences; it says how little 3 pairs
    establish, not more.
    """
    if not differences:
        raise ValueError("bootstrap_interval needs at least one difference")
    values = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(values[rng.integers(0, len(values), size=(samples, len(values)))], axis=1)
    low, high = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_differences(runs: list[dict | None], a: str, b: str, metric: str) -> dict[str, list[float]]:
    """{dataset column: [b minus a, one per seed]} for two row labels of a grid, same column and seed."""
    scores: dict[tuple[str, str, int], float] = {}
    for run in runs:
        if run is None or run.get("status") != "ok":
            continue
        value = run["metrics"].get(f"test_{metric}")
        if value is not None and run["method"] in (a, b):
            scores[(run["column"], run["method"], run["seed"])] = float(value)
    out: dict[str, list[float]] = defaultdict(list)
    for (column, method, seed), value in sorted(scores.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        if method == b and (column, a, seed) in scores:
            out[column].append(value - scores[(column, a, seed)])
    return dict(out)


def difference_cell(differences: list[float], metric: str, *, seed: int = 0) -> str:
    """'+1.3 [-0.5, +2.4] (3)': median difference, its bootstrap 95% interval and the number of pairs,
    x100 as the tables show the metric (losses and CE in nats as they are)."""
    scale = 1 if metric in ("soft_ce", "lewidi_ce", "worst_group_ce", "perplexity", "gpt_score") else 100
    low, high = bootstrap_interval(differences, seed=seed)
    median = statistics.median(differences)
    digits = 2 if scale == 1 else 1
    return f"{scale * median:+.{digits}f} [{scale * low:+.{digits}f}, {scale * high:+.{digits}f}] ({len(differences)})"


def method_differences_table(runs: list[dict | None], a: str, b: str, metric: str) -> str:
    """Markdown: per dataset column, the median seed-matched difference of row b minus row a in ``metric``,
    with its bootstrap 95% interval; a line when nothing pairs."""
    diffs = paired_differences(runs, a, b, metric)
    heading = (
        f"'{b}' minus '{a}', test {metric}, seed-matched: median difference [bootstrap 95% interval of the "
        "median] (pairs)."
    )
    if not diffs:
        return heading + f"\n\nNo finished '{a}' and '{b}' runs with the same column and seed."
    lines = [heading, "", "| dataset | difference |", "|---|---:|"]
    lines += [f"| {column} | {difference_cell(d, metric)} |" for column, d in diffs.items()]
    return "\n".join(lines)


def target_differences(runs: list[dict | None], a: str, b: str) -> dict[tuple[str, str], list[float]]:
    """{(dataset column, metric): [b run minus a run]} over the seed-matched '<method> / a|b' pairs."""
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for column, metric, value_b, value_a in _matched(runs, a, b):
        out[(column, metric)].append(float(value_b) - float(value_a))
    return dict(out)


def pairs_table(runs: list[dict | None], a: str, b: str) -> str:
    """Markdown: one row per dataset column, one 'wins/pairs' cell per metric; a line when nothing pairs."""
    wins = paired_wins(runs, a, b)
    heading = (
        f"Seed-matched pairs: in how many (method, seed) pairs the '<method> / {b}' run beats the "
        f"'<method> / {a}' run with the same seed (ties are no win)."
    )
    if not wins:
        return heading + f"\n\nNo finished '<method> / {a}' and '<method> / {b}' runs with the same seed yet."
    columns = list(dict.fromkeys(column for column, _ in wins))
    lines = [heading, "", "| dataset | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for column in columns:
        cells = [f"{wins[(column, m)][0]}/{wins[(column, m)][1]}" if (column, m) in wins else "–" for m in METRICS]
        lines.append(f"| {column} | " + " | ".join(cells) + " |")
    diffs = target_differences(runs, a, b)
    lines += [
        "",
        f"Median of the seed-matched differences ('<method> / {b}' minus '<method> / {a}'; x100 but soft_ce and "
        "worst_group_ce, in nats; lower is better for soft_ce, jsd, ece and worst_group_ce) with a seeded "
        "bootstrap 95% interval of the median, and the number of pairs.",
        "",
        "| dataset | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for column in columns:
        cells = [difference_cell(diffs[(column, m)], m) if (column, m) in diffs else "–" for m in METRICS]
        lines.append(f"| {column} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
