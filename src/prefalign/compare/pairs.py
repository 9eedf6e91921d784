"""Seed-matched pairs: in how many (method, seed) pairs does the row trained on one target beat the other?

Rows pair by their label, "<method> / <a>" against "<method> / <b>", same dataset column, same seed
(same initialisation and data order). A compare config asks for the table with ``pairs: [a, b]``
(e.g. ``[majority, soft]``); `prefalign compare` (and ``--report-only``) then adds it to table.md.
Metric directions come from prefalign.training.config.LOWER_IS_BETTER, the runner's own; ties count as no win.
"""

from __future__ import annotations

from collections import defaultdict

from ..training.config import LOWER_IS_BETTER  # the runner's own reading of each metric's direction

METRICS = ("accuracy", "f1", "soft_ce", "jsd", "ece", "worst_group_ce")


def paired_wins(runs: list[dict | None], a: str, b: str) -> dict[tuple[str, str], tuple[int, int]]:
    """{(dataset column, metric): (pairs where b beats a, pairs)} over the finished runs."""
    by_key = {}
    for run in runs:
        if run is None:
            continue
        method, _, target = run["method"].rpartition(" / ")
        if run.get("status") == "ok" and method:
            by_key[(run["column"], method, target, run["seed"])] = run["metrics"]
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for (column, method, target, seed), scores in by_key.items():
        other = by_key.get((column, method, a, seed))
        if target != b or other is None:
            continue
        for metric in METRICS:
            key = f"test_{metric}"
            if key in scores and key in other:
                better = scores[key] < other[key] if metric in LOWER_IS_BETTER else scores[key] > other[key]
                out[(column, metric)][0] += int(better)
                out[(column, metric)][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


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
    return "\n".join(lines)
