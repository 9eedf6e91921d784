"""Regenerate every table in docs/ that comes from committed run records (`make results`).

A generated table sits between two markers in a docs page::

    <!-- results:NAME -->
    ...generated, do not edit...
    <!-- /results:NAME -->

and BLOCKS says how NAME is built: from a compare config under configs/compare/ and the committed records
of its runs, benchmarks/results/compare_<grid>.jsonl (prefalign.compare.records), through the same
functions `prefalign compare --report-only` uses. Nothing under runs/ is read, so a fresh clone
rebuilds the same text. ``--check`` rewrites nothing and exits 1 naming every page whose tables differ
(tests/test_results_tables.py runs it).

    python benchmarks/results_tables.py           # rewrite the tables in docs/ and README.md
    python benchmarks/results_tables.py --check   # fail if any differs from what the records give
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from prefalign.compare import load_compare_config, markdown_tables, plan
from prefalign.compare.grid import config_digest
from prefalign.compare.pairs import (
    bootstrap_interval,
    difference_cell,
    method_differences_table,
    paired_differences,
    target_differences,
)
from prefalign.compare.records import fill_from_records, read_records

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts it reads tables from import shared_data
RESULTS = ROOT / "benchmarks" / "results"
# The gate rates and eq. 13 terms a DCPC run logs (each record keeps their means over the training logs).
LOSS_TERMS = ["gate_cos_rate", "gate_ambiguity_rate", "loss_task", "loss_ambiguity", "loss_align", "loss_kl"]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md"))]
MARKER = re.compile(r"(<!-- results:([\w-]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)


def result(name: str) -> dict:
    """benchmarks/results/<name>.json, as a benchmark script wrote it."""
    return json.loads((RESULTS / f"{name}.json").read_text())


def grid(name: str):
    """(compare config, results in grid order) of configs/compare/<name>.yaml from its committed records."""
    cfg = load_compare_config(str(ROOT / "configs" / "compare" / f"{name}.yaml"))
    status = [(spec, spec.experiment(cfg, Path("runs") / spec.run_id), None, None) for spec in plan(cfg)]
    records = read_records(RESULTS / f"compare_{name}.jsonl")
    return cfg, fill_from_records(status, records, config_digest)


def tables(name: str) -> str:
    """The grid's median tables, as `prefalign compare --report-only` writes them into table.md."""
    cfg, results = grid(name)
    done = sum(r is not None for r in results)
    minutes = sum(r["seconds"] for r in results if r is not None) / 60
    head = f"{done} of {len(results)} runs in `benchmarks/results/compare_{name}.jsonl`, {minutes:.1f} min of run time."
    return head + "\n\n" + markdown_tables(cfg, results)


def per_seed(name: str, column: str) -> str:
    """'Prefix 78.7 / 74.8 / 77.3, ...': each method's test score x100 per seed, in seed order."""
    cfg, results = grid(name)
    parts = []
    for m in cfg.methods:
        runs = sorted((r for r in results if r and r["method"] == m.label and r["column"] == column), key=_seed)
        scores = " / ".join(f"{100 * _score(r):.1f}" for r in runs)
        parts.append(f"{m.label} {scores}")
    seeds = " / ".join(map(str, cfg.seeds))
    return f"Per seed ({seeds}), {column}: " + ", ".join(parts) + "."


def _seed(r: dict) -> int:
    return r["seed"]


def _score(r: dict) -> float:
    return r["metrics"][f"test_{r['metric']}"]


def _with(name: str, also: tuple[str, ...] = ()):
    """(config of ``name``, its results followed by those of the grids in ``also``): rows of other grids run at
    the same settings, paired with ``name``'s by column and seed (their labels must differ)."""
    cfg, results = grid(name)
    for other in also:
        results = results + grid(other)[1]
    return cfg, results


def differences(name: str, pairs: list[tuple[str, str]], metric: str = "accuracy", also: tuple[str, ...] = ()) -> str:
    """Method vs method tables: median seed-matched difference and its bootstrap 95% interval."""
    _, results = _with(name, also)
    return "\n\n".join(method_differences_table(results, a, b, metric) for a, b in pairs)


def target_accuracy(name: str, a: str = "majority", b: str = "soft") -> str:
    """Soft vs majority, accuracy only (all a CSV kept): wins, median difference and its interval."""
    _, results = grid(name)
    diffs = target_differences(results, a, b)
    lines = [
        f"'<method> / {b}' minus '<method> / {a}', test accuracy x100, seed-matched over every method: "
        "runs where soft wins / pairs, median difference [bootstrap 95% interval of the median] (pairs).",
        "",
        "| dataset | soft wins | accuracy difference |",
        "|---|---:|---:|",
    ]
    for (column, metric), d in diffs.items():
        if metric == "accuracy":
            lines.append(f"| {column} | {sum(x > 0 for x in d)}/{len(d)} | {difference_cell(d, metric)} |")
    return "\n".join(lines)


def annotator_accuracy(name: str, baselines: str) -> str:
    """Test accuracy x100 per method and dataset: median over seeds with the per-seed range, from the grid's
    records, then the text-blind predictors' accuracy on the same test items (benchmarks/annotation_baselines.py
    --output, committed as benchmarks/results/<baselines>.json)."""
    cfg, results = grid(name)
    columns = _columns(cfg)
    done = sum(r is not None for r in results)
    lines = [
        f"{done} of {len(results)} runs in `benchmarks/results/compare_{name}.jsonl`; test accuracy x100, "
        f"median over seeds {', '.join(map(str, cfg.seeds))} (lowest-highest seed in brackets); text-blind rows "
        f"from `benchmarks/results/{baselines}.json`.",
        "",
        "| Method | Tunable params | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for m in cfg.methods:
        runs = [r for r in results if r and r["method"] == m.label]
        cells = []
        for column in columns:
            values = [100 * _score(r) for r in sorted(runs, key=_seed) if r["column"] == column]
            median = statistics.median(values) if values else None
            cells.append(f"{median:.1f} ({min(values):.1f}-{max(values):.1f})" if values else "–")
        params = runs[0]["tunable_params"] if runs else None
        lines.append(f"| {m.label} | {params / 1e3:.1f}K | " + " | ".join(cells) + " |")
    record = result(baselines)
    for predictor in dict.fromkeys(row["predictor"] for row in record["rows"]):
        acc = {row["dataset"]: row["metrics"]["accuracy"] for row in record["rows"] if row["predictor"] == predictor}
        cells = [f"{100 * acc[c]:.1f}" if c in acc else "–" for c in columns]
        lines.append(f"| *text-blind: {predictor}* | – | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def annotator_baselines(baselines: str) -> str:
    """Every metric of the text-blind predictors (benchmarks/annotation_baselines.py --output)."""
    record = result(baselines)
    lines = [
        f"`{record['command']}`:",
        "",
        "| dataset | predictor | accuracy | f1 | soft_ce | jsd | ece | worst_group_ce |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in record["rows"]:
        m = row["metrics"]
        worst = f"{m['worst_group_ce']:.2f}" if "worst_group_ce" in m else "–"
        lines.append(
            f"| {row['dataset']} ({row['test_items']} test items) | {row['predictor']} | {100 * m['accuracy']:.1f} | "
            f"{100 * m['f1']:.1f} | {m['soft_ce']:.2f} | {100 * m['jsd']:.1f} | {100 * m['ece']:.1f} | {worst} |"
        )
    return "\n".join(lines)


def dorm_hh(part: str, split: str = "hh") -> str:
    """A table of benchmarks/dorm_hh.py from its committed records (benchmarks/results/dorm_hh/, its
    every_source/ for ``split`` 'every-source', and its sst2_pairs/ for 'sst2-pairs', i.e. --data sst2-pairs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dorm_hh", ROOT / "benchmarks" / "dorm_hh.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = RESULTS / "dorm_hh" / {"hh": "", "every-source": "every_source", "sst2-pairs": "sst2_pairs"}[split]
    if part == "budget":
        return module.budget_table(out)
    if part == "final":
        return module.final_table(out)
    if part == "signals":
        return module.signals_table(out)
    if part == "flips":
        return module.flips_table(out)
    if part == "prior_readings":
        return module.prior_readings_table(out)
    if part == "readings":
        return module.readings_table(out)
    if part == "weights":
        return module.weights_table(out)
    if part == "seeds":
        return module.seeds_table(out)
    return module.search_table(out, part, split)[0]


def dorm_prior(part: str) -> str:
    """A table of benchmarks/dorm_prior.py (issue 21: DORM's prior) from its committed records."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dorm_prior", ROOT / "benchmarks" / "dorm_prior.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        "diagnosis": module.diagnosis_table,
        "weighting": module.weighting_table,
        "weighting_other": lambda: module.weighting_table(False),
        "select": module.select_table,
        "final": module.final_table,
    }[part]()


def versus(name: str, reference: str, metric: str) -> str:
    """Every other row minus ``reference``, per dataset column: the median seed-matched difference in test
    ``metric`` with its bootstrap 95% interval and the number of pairs (x100 unless a cross-entropy)."""
    cfg, results = grid(name)
    columns = _columns(cfg)
    lines = [
        f"Row minus '{reference}', test {metric}, seed-matched: median difference [bootstrap 95% interval of "
        "the median] (pairs).",
        "",
        "| Row | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for m in cfg.methods:
        if m.label == reference:
            continue
        diffs = paired_differences(results, reference, m.label, metric)
        cells = [difference_cell(diffs[c], metric) if c in diffs else "–" for c in columns]
        lines.append(f"| {m.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def across(name: str, reference: str, other: str, rows: list[str], metric: str) -> str:
    """Rows of grid ``other`` minus row ``reference`` of grid ``name``, per dataset column both grids hold:
    the median seed-matched difference in test ``metric`` (same seed, so the same training slice and test
    items) with its bootstrap 95% interval and the number of pairs."""
    cfg, results = grid(name)
    other_cfg, other_results = grid(other)
    columns = [c for c in _columns(cfg) if c in _columns(other_cfg)]
    lines = [
        f"Row of `{other}` minus '{reference}' of `{name}`, test {metric}, seed-matched: median difference "
        "[bootstrap 95% interval of the median] (pairs).",
        "",
        "| Row | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for row in rows:
        diffs = paired_differences(results + other_results, reference, row, metric)
        cells = [difference_cell(diffs[c], metric) if c in diffs else "–" for c in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def drop_differences(
    name: str,
    pairs: list[tuple[str, str]],
    clean: str,
    shifted: str,
    metric: str = "accuracy",
    also: tuple[str, ...] = (),
) -> str:
    """Per method its drop (clean minus shifted test score, same seed) and, per pair (a, b), b's drop minus a's,
    seed-matched: median [bootstrap 95% interval of the median] (pairs). Negative: b loses less. ``also``: grids
    whose rows join ``name``'s (``_with``)."""
    cfg, results = _with(name, also)
    labels = list(dict.fromkeys([m.label for m in cfg.methods] + [r["method"] for r in results if r]))
    score = {
        (r["method"], r["column"], r["seed"]): r["metrics"][f"test_{metric}"]
        for r in results
        if r and r.get("status") == "ok" and f"test_{metric}" in r["metrics"]
    }
    drops = {
        label: {s: score[(label, clean, s)] - score[(label, shifted, s)] for s in cfg.seeds}
        for label in labels
        if all((label, c, s) in score for c in (clean, shifted) for s in cfg.seeds)
    }
    lines = [
        f"Drop = {clean} minus {shifted}, test {metric} x100, per seed ({', '.join(map(str, cfg.seeds))}); "
        "differences seed-matched: median [bootstrap 95% interval of the median] (pairs).",
        "",
        "| | per seed | median [95% interval] (pairs) |",
        "|---|---|---:|",
    ]
    for label, d in drops.items():
        per = " / ".join(f"{100 * d[s]:+.1f}" for s in cfg.seeds)
        lines.append(f"| {label}: drop | {per} | {difference_cell(list(d.values()), metric)} |")
    for a, b in pairs:
        if a in drops and b in drops:
            diff = [drops[b][s] - drops[a][s] for s in cfg.seeds]
            per = " / ".join(f"{100 * x:+.1f}" for x in diff)
            lines.append(f"| {b}'s drop minus {a}'s | {per} | {difference_cell(diff, metric)} |")
    if not drops:
        lines.append(f"| no method has both {clean} and {shifted} runs for every seed | | |")
    return "\n".join(lines)


def beside(name_a: str, name_b: str, rename_b: dict[str, str], seed: int = 0, metric: str = "accuracy") -> str:
    """Seed ``seed``'s test score of every method and column of grid ``name_a`` beside the same run of grid
    ``name_b`` ('a -> b', x100), rows in ``name_b``'s order under its labels; ``rename_b`` maps a label of
    ``name_b`` to the label the same settings carry in ``name_a``. Drop columns: clean minus shifted, same seed."""
    cfg_b, results_b = grid(name_b)
    _, results_a = grid(name_a)
    score = {}
    for grid_name, results in ((name_a, results_a), (name_b, results_b)):
        for r in results:
            if r and r.get("status") == "ok" and f"test_{metric}" in r["metrics"] and r["seed"] == seed:
                score[(grid_name, r["method"], r["column"])] = 100 * r["metrics"][f"test_{metric}"]
    columns = _columns(cfg_b)
    drops = [
        (c, s)
        for c, s in (("SST-2", "SST-2-P"), ("SST-2", "SST-2-A"), ("Rotten Tomatoes", "RT-A"))
        if {c, s} <= set(columns)
    ]
    lines = [
        "| method | " + " | ".join(columns) + " | " + " | ".join(f"drop {c} to {s}" for c, s in drops) + " |",
        "|---|" + "---:|" * (len(columns) + len(drops)),
    ]

    def cell(label_a, label_b, get):
        a, b = get(name_a, label_a), get(name_b, label_b)
        return f"{'–' if a is None else f'{a:.1f}'} → {'–' if b is None else f'{b:.1f}'}"

    for m in cfg_b.methods:
        label_a = rename_b.get(m.label, m.label)
        cells = [cell(label_a, m.label, lambda g, lab, c=c: score.get((g, lab, c))) for c in columns]
        for c, s in drops:

            def drop(g, lab, c=c, s=s):
                both = score.get((g, lab, c)), score.get((g, lab, s))
                return None if None in both else both[0] - both[1]

            cells.append(cell(label_a, m.label, drop))
        name = m.label if label_a == m.label else f"{m.label} ({name_a}: {label_a})"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def runs_with_validation(names: list[str], keys: list[str]) -> str:
    """One row per finished run of the grids ``names``, in grid order: its validation and test accuracy and the
    mean over its training logs of each logged term in ``keys`` ('–' where a method logs no such term)."""
    lines = [
        "| method | column | seed | tunable params | validation accuracy | test accuracy | " + " | ".join(keys) + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(keys),
    ]
    for name in names:
        for r in grid(name)[1]:
            if not r or r.get("status") != "ok":
                continue
            m = r["metrics"]
            cells = [f"{m[k + '_mean']:.4f}" if k + "_mean" in m else "–" for k in keys]
            lines.append(
                f"| {r['method']} | {r['column']} | {r['seed']} | {r['tunable_params'] / 1000:.1f}K | "
                f"{100 * m['validation_accuracy']:.1f} | {100 * m['test_accuracy']:.1f} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def run_terms(name: str, method: str, keys: list[str]) -> str:
    """One row per finished run of ``method``: the mean over its training logs of each logged term in ``keys``."""
    _, results = grid(name)
    runs = sorted((r for r in results if r and r["method"] == method), key=lambda r: (r["column"], r["seed"]))
    lines = ["| column | seed | test accuracy | " + " | ".join(keys) + " |", "|---|---:|---:|" + "---:|" * len(keys)]
    for r in runs:
        cells = [f"{r['metrics'][k + '_mean']:.4f}" if k + "_mean" in r["metrics"] else "–" for k in keys]
        lines.append(
            f"| {r['column']} | {r['seed']} | {100 * r['metrics']['test_accuracy']:.1f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def terms_by_method(name: str, methods: list[str], keys: list[str]) -> str:
    """One row per method and column of ``name``: the median over its finished seeds of each logged term's
    training-log mean in ``keys`` ('–' where the method logs no such term), with the seeds counted."""
    _, results = grid(name)
    columns = list(dict.fromkeys(r["column"] for r in results if r))
    lines = [
        "| method | column | seeds | test accuracy | " + " | ".join(keys) + " |",
        "|---|---|---:|---:|" + "---:|" * len(keys),
    ]
    for method in methods:
        for column in columns:
            runs = [r for r in results if r and r["method"] == method and r["column"] == column and r["status"] == "ok"]
            if not runs:
                continue
            cells = []
            for k in keys:
                values = [r["metrics"][k + "_mean"] for r in runs if k + "_mean" in r["metrics"]]
                cells.append(f"{statistics.median(values):.4f}" if values else "–")
            accuracy = statistics.median(100 * r["metrics"]["test_accuracy"] for r in runs)
            lines.append(f"| {method} | {column} | {len(runs)} | {accuracy:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def term_gradients(names: list[str]) -> str:
    """benchmarks/dcpc_term_gradients.py's records (``benchmarks/results/<name>.json``): per run and stage, each
    weighted term's gradient norm on the static prefix and on the PCM (median over the measured batches) and its
    median ratio to the task loss's."""
    lines = [
        "| run | stage | test accuracy | pairs through the ambiguity gate | term | prefix: norm | prefix: / task "
        "| PCM: norm | PCM: / task |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name in names:
        d = result(name)
        run = ", ".join(d["run"].split("/"))  # model, column, method, seed
        for stage, v in d["stages"].items():
            rates = [b["terms"].get("gate_ambiguity_rate", 0.0) for b in v["batches"]]
            gated = f"{100 * sum(rates) / len(rates):.2f}% ({sum(r > 0 for r in rates)} of {len(rates)} batches)"
            accuracy = f"{100 * v['test_accuracy']:.1f}"
            for term in ("task", "ambiguity", "align", "kl"):
                cells = []
                for group in ("prefix", "pcm"):
                    m = v["medians"][f"{term}/{group}"]
                    cells += [f"{m['norm']:.2e}", f"{m['ratio_to_task']:.1e}"]
                lines.append(f"| {run} | {stage} | {accuracy} | {gated} | {term} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def jsonl(name: str) -> list[dict]:
    """benchmarks/results/<name>.jsonl, one record a line."""
    return [json.loads(line) for line in (RESULTS / f"{name}.jsonl").read_text().splitlines() if line.strip()]


def length_bins(bins: tuple[int, ...]) -> tuple[list[tuple[int, int]], list[str]]:
    """(lo, hi] word-count ranges cut at ``bins`` and open above, with their labels ("1-8", ..., "25+")."""
    edges = [0, *bins, 10**9]
    ranges = list(zip(edges, edges[1:]))
    return ranges, [f"{lo + 1}-{hi}" if hi < 10**9 else f"{lo + 1}+" for lo, hi in ranges]


def _by_run(r: dict) -> tuple:
    """shift_groups.py records in table order: method, seed, the clean run before the shifted one."""
    _, _, method, seed = r["run"].split("/")
    return method, seed, r["role"] != "clean"


def shift_groups(name: str) -> str:
    """benchmarks/shift_groups.py's records (``benchmarks/results/<name>.jsonl``): per run, test accuracy on each
    group (the shift's subset or the rest, crossed with the clean label), the share of test items predicted as
    the group's label, and the share of the training items the group relabelled that the model predicts so."""
    records = jsonl(name)
    if not records:
        return "(no runs yet)"
    shift = records[0]["shift"]
    order = ["subset, other", "subset, toward", "rest, other", "rest, toward"]
    sizes = records[0]["groups"]
    subset = f"{shift['subset']} (<= {shift['max_words']} words)" if shift["subset"] == "short" else shift["subset"]
    toward = records[0]["toward_label"]
    heads = [
        f"{subset.split(' ')[0] if g.startswith('subset') else 'rest'}, label "
        f"{'not ' if g.endswith('other') else ''}{toward} (n={sizes[g]['n']})"
        for g in order
    ]
    lines = [
        f"Subset: {subset}; the group's label: {toward}; test items are clean in both columns.",
        "",
        "| method | column | seed | test accuracy | " + " | ".join(heads) + f" | test predicted {toward} "
        f"| relabelled training items predicted {toward} |",
        "|---|---|---:|---:|" + "---:|" * (len(order) + 2),
    ]
    for r in sorted(records, key=_by_run):
        _, column, method, seed = r["run"].split("/")
        cells = [f"{100 * r['groups'][g]['accuracy']:.1f}" for g in order]
        lines.append(
            f"| {method} | {column} | {seed.removeprefix('seed')} | {100 * r['test_accuracy']:.1f} | "
            + " | ".join(cells)
            + f" | {100 * r['test_predicted_toward']:.1f} | {100 * r['relabelled_predicted_toward']:.1f} "
            f"(of {r['relabelled_n']}) |"
        )
    return "\n".join(lines)


def shift_groups_by_length(name: str, bins: tuple[int, ...] = (8, 12, 16, 24)) -> str:
    """From the same records: among test items not labelled the group's label, the share given it with
    probability above 0.5 (on two classes, predicted as it), by the item's length in words (the shift's subset
    is the items at most ``max_words`` long)."""
    records = jsonl(name)
    if not records:
        return "(no runs yet)"
    toward = records[0]["toward_label"]
    ranges, spans = length_bins(bins)
    items = records[0]["test_items"]
    toward_index = records[0]["shift"]["toward"]
    if not isinstance(toward_index, int):
        raise ValueError(f"{name}: the shift's 'toward' is a label name; this table reads an index")
    other = [i for i, y in enumerate(items["label"]) if y != toward_index]
    counts = [sum(lo < items["words"][i] <= hi for i in other) for lo, hi in ranges]
    lines = [
        "| method | column | seed | " + " | ".join(f"{s} words (n={n})" for s, n in zip(spans, counts)) + " |",
        "|---|---|---:|" + "---:|" * len(spans),
    ]
    for r in sorted(records, key=_by_run):
        _, column, method, seed = r["run"].split("/")
        words, p = r["test_items"]["words"], r["test_items"]["p_toward"]
        cells = []
        for lo, hi in ranges:
            chosen = [i for i in other if lo < words[i] <= hi]
            share = sum(p[i] > 0.5 for i in chosen) / len(chosen) if chosen else float("nan")
            cells.append(f"{100 * share:.1f}")
        lines.append(f"| {method} | {column} | {seed.removeprefix('seed')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nCells: the share (x100) of those items given P({toward}) above 0.5."


def shift_groups_padding(name: str) -> str:
    """benchmarks/shift_groups.py --padding records: per run and test group (the shift's subset or the rest,
    crossed with the clean label), the share (x100) given the group's label with P above 0.5, on the items as
    they are, with the padding text appended, and with it prepended."""
    records = jsonl(name)
    if not records:
        return "(no runs yet)"
    shift, toward = records[0]["shift"], records[0]["toward_label"]
    items = records[0]["test_items"]
    kind = [
        (w <= shift["max_words"], y == shift["toward"]) for w, y in zip(items["words"], items["label"], strict=True)
    ]
    groups = {
        f"{'short' if short else 'long'}, {'' if towards else 'not '}{toward}": [
            i for i, k in enumerate(kind) if k == (short, towards)
        ]
        for short in (True, False)
        for towards in (False, True)
    }
    wheres = [("p_toward", "as is"), ("p_toward_appended", "+ after"), ("p_toward_prepended", "+ before")]
    heads = [f"{g} (n={len(idx)}): {w}" for g, idx in groups.items() for _, w in wheres]
    lines = [
        f'Padding: "{records[0]["padding"]}" ({len(records[0]["padding"].split())} words); short: at most '
        f"{shift['max_words']} words, as the shift's subset. Cells: the share (x100) given P({toward}) above 0.5.",
        "",
        "| method | column | seed | " + " | ".join(heads) + " |",
        "|---|---|---:|" + "---:|" * len(heads),
    ]
    for r in sorted(records, key=_by_run):
        _, column, method, seed = r["run"].split("/")
        cells = [
            f"{100 * sum(r['test_items'][key][i] > 0.5 for i in idx) / len(idx):.1f}"
            for idx in groups.values()
            for key, _ in wheres
        ]
        lines.append(f"| {method} | {column} | {seed.removeprefix('seed')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shift_groups_attention(name: str, bins: tuple[int, ...] = (8, 12, 16, 24)) -> str:
    """benchmarks/shift_groups.py --prefix-attention records: the scoring token's attention share on the prefix
    (mean over heads, then over layers; median over the test items in each length bin)."""
    records = jsonl(name)
    if not records:
        return "(no runs yet)"
    ranges, spans = length_bins(bins)
    words = records[0]["test_items"]["words"]
    counts = [sum(lo < w <= hi for w in words) for lo, hi in ranges]
    lines = [
        "| method | column | seed | " + " | ".join(f"{s} words (n={n})" for s, n in zip(spans, counts)) + " |",
        "|---|---|---:|" + "---:|" * len(spans),
    ]
    for r in sorted(records, key=_by_run):
        _, column, method, seed = r["run"].split("/")
        share = [sum(row) / len(row) for row in r["test_items"]["prefix_attention"]]
        cells = []
        for lo, hi in ranges:
            chosen = [share[i] for i, w in enumerate(words) if lo < w <= hi]
            cells.append(f"{100 * statistics.median(chosen):.1f}" if chosen else "–")
        lines.append(f"| {method} | {column} | {seed.removeprefix('seed')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nCells: median share (x100) of the scoring token's attention on the prefix's keys."


def precision_divergence(name: str) -> str:
    """benchmarks/precision_divergence.py's records: per precision, each run against the reference row trained at
    that precision (test items predicted differently, the largest change of a test item's probabilities, and the
    relative distance of the static prefix and of the PCM)."""
    out = [
        "| precision | run | test accuracy (fp32 scoring) | items predicted differently | largest probability change "
        "| prefix distance | PCM distance |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for precision in ("fp32", "bf16"):
        for r in (r for r in jsonl(name) if r["precision"] == precision):
            label = r["run"].split("/")[2] + (f" + {r['control']}" if r["control"] else "")
            if r["run"] == r["reference"] and not r["control"]:
                label += " (reference)"
            out.append(
                f"| {precision} | {label} | {100 * r['test_accuracy']:.1f} | {r['items_predicted_differently']} "
                f"| {r['max_probability_change']:.1e} | {r.get('prefix_relative_distance', 0.0):.1e} "
                f"| {r.get('pcm_relative_distance', 0.0):.1e} |"
            )
    return "\n".join(out)


def adapter_update_size(name: str) -> str:
    """benchmarks/adapter_update_size.py's record (``benchmarks/results/<name>.json``): per run, the median
    weight update of its adapted modules, and AdaLoRA's kept ranks and factor sizes."""
    d = result(name)
    lines = [
        "| run | test accuracy | task loss, steps 10/20/30/40 | modules | dW, Frobenius norm | dW / W (norms) "
        "| kept rank | P and Q Frobenius norms, largest E |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in d["runs"]:
        losses = "/".join(f"{x:.3f}" for x in r["loss_task_logged"] if x is not None) or "–"
        kept = f"{r['kept_rank_median']:g}" if "kept_rank_median" in r else "–"
        sizes = (
            f"{r['p_norm_median']:.2f}, {r['q_norm_median']:.2f}, {r['e_abs_max_median']:.4f}"
            if "p_norm_median" in r
            else "–"
        )
        lines.append(
            f"| {', '.join(r['run'].split('/'))} | {100 * r['test_accuracy']:.1f} | {losses} | {r['modules']} "
            f"| {r['delta_norm_median']:.4f} | {r['delta_relative_median']:.2e} | {kept} | {sizes} |"
        )
    return "\n".join(lines)


def method_start(name: str) -> str:
    """benchmarks/lpt_start.py's record: each untrained method (and LPT's readings) beside the untuned model, on
    training and validation items, with the scoring token's attention on the positions the method adds."""
    d = result(name)
    scaled = [r for r in d["rows"] if "insert_layer" in r]  # LPT's readings, measured at its insert layer
    k = scaled[0]["insert_layer"] if scaled else None
    lines = [
        f"{d['model']}, {d['column']} (`{d['config']}`), seed {d['seed']}, nothing trained; "
        f"`benchmarks/results/{name}.json`.",
        "",
        "| reading | added positions | train CE | train accuracy | train predicted positive | validation CE "
        f"| validation accuracy | attention on added positions, layers < {k} / >= {k} |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in d["rows"]:
        share = r.get("attention_share")
        attention = f"{statistics.fmean(share[:k]):.2f} / {statistics.fmean(share[k:]):.2f}" if share and k else "–"
        t, v = r["train"], r["validation"]
        lines.append(
            f"| {r['row']} | {r.get('added_positions', 0)} | {t['cross_entropy']:.3f} | {100 * t['accuracy']:.1f} "
            f"| {100 * t['predicted_share'][-1]:.1f} | {v['cross_entropy']:.3f} | {100 * v['accuracy']:.1f} "
            f"| {attention} |"
        )
    if scaled:
        lines += [
            "",
            f"Root mean square of the hidden states entering layer {k} (medians over positions and items):",
            "",
        ]
        lines += [
            f"* {r['row']}: real tokens {r['real_rms_median']:.2f}, placeholders {r['placeholder_rms_median']:.2f} "
            f"(first position {r['placeholder_first_rms_median']:.2f}), the generated prompt that overwrites them "
            f"{r['prompt_rms_median']:.2f}."
            for r in scaled
        ]
    return "\n".join(lines)


def profile(name: str = "profile_step_minilm") -> str:
    """The step profile of benchmarks/profile_step.py --records: memory and op counts per method."""
    records = jsonl(name)
    first = records[0]
    lines = [
        f"{first['model']}, batch {first['batch']}, m {first['prefix']}, {first['tokens_per_row']} tokens per row, "
        f"seed {first['seed']}; {first['hardware']} (load average {first['load_average_1min']}), "
        f"torch {first['versions']['torch']}, `benchmarks/results/{name}.jsonl`.",
        "",
        "| method | tensors saved for backward | peak during forward | peak during backward | top-level aten ops "
        "| step CPU time (median of 10) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['method']} | {r['saved_for_backward_mib']:.1f} MiB | {r['peak_forward_mib']:.1f} MiB "
            f"| {r['peak_backward_mib']:.1f} MiB | {r['top_level_aten_ops']} | {r['step_cpu_ms_median_of_10']:.0f} ms |"
        )
    by = {r["method"]: r for r in records}
    if "dcpc" in by and "ptuning-v2" in by:
        ratio = by["dcpc"]["peak_forward_mib"] / by["ptuning-v2"]["peak_forward_mib"]
        extra = by["dcpc"]["top_level_aten_ops"] - by["ptuning-v2"]["top_level_aten_ops"]
        lines += [
            "",
            f"DCPC's forward-pass peak is {ratio:.3f}x P-Tuning v2's; it runs {extra} more top-level ops a step.",
        ]
    if "peft-prefix" in by and "ptuning-v2" in by:
        ours, peft = by["ptuning-v2"], by["peft-prefix"]
        time_ratio = ours["step_cpu_ms_median_of_10"] / peft["step_cpu_ms_median_of_10"]
        more_ops = ours["top_level_aten_ops"] - peft["top_level_aten_ops"]
        saved = ours["saved_for_backward_mib"] - peft["saved_for_backward_mib"]
        lines += [
            "",
            f"Our P-Tuning v2's step CPU time is {time_ratio:.3f}x PEFT's prefix tuning's; it runs {more_ops:+d} "
            f"top-level ops a step and saves {saved:+.2f} MiB for backward.",
        ]
    return "\n".join(lines)


def paired_rounds(name: str, pairs: list[tuple[str, str, str]]) -> str:
    """Ratios of a speed_memory.py result file, per row: the median of the within-round ratios, their range and
    how many rounds were above 1, from the raw times (CPU time of the compute thread)."""
    d = result(name)
    start = d.get("load_average_start")
    lines = []
    for raw in d["raw"]:
        cfg = raw["config"]
        times = raw["wall_seconds" if cfg["device"] == "cuda" else "thread_cpu_seconds"]
        load = f"load average {start[0]:.1f} at the start, " if start else ""
        lines += [
            f"{d['model']}, batch {cfg['batch_size']}, m {cfg['prefix_length']}, {raw['tokens']} tokens, "
            f"{cfg['rounds']} timed rounds after {cfg['warmup']} untimed; {d['machine']}; {load}"
            f"{d['load_average'][0]:.1f} at the end; `benchmarks/results/{name}.json`.",
            "",
            "| ratio | median of within-round ratios | bootstrap 95% interval | range over rounds | rounds above 1 "
            "| medians, ms |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for a, b, measure in pairs:
            xs, ys = times[measure].get(a), times[measure].get(b)
            if xs is None or ys is None:
                continue
            r = [x / y for x, y in zip(xs, ys)]
            low, high = bootstrap_interval(r)
            lines.append(
                f"| {a} / {b} {'step' if measure == 'step' else 'inference'} | {statistics.median(r):.3f} "
                f"| {low:.3f}-{high:.3f} | {min(r):.3f}-{max(r):.3f} | {sum(v > 1 for v in r)} of {len(r)} "
                f"| {1000 * statistics.median(xs):.1f} / {1000 * statistics.median(ys):.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def prefix_probe(names: list[str]) -> str:
    """benchmarks/prefix_path_probe.py's records: interleaved eval forwards, medians of within-round ratios."""
    lines = [
        "| record | rounds | load average (start, end) | ratio | median | range over rounds | bootstrap 95% |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for name in names:
        d = result(name)
        raw = d["raw_thread_cpu_seconds"]
        for label in d["ratios"]:
            a, b = (x.strip() for x in label.split(" / "))
            r = [x / y for x, y in zip(raw[a], raw[b])]
            low, high = bootstrap_interval(r)
            lines.append(
                f"| `{name}.json` | {d['rounds']} | {d['load_average_start'][0]:.1f}, {d['load_average'][0]:.1f} "
                f"| {label} | {d['ratios'][label]['median']:.3f} | {min(r):.3f}-{max(r):.3f} | {low:.3f}-{high:.3f} |"
            )
    return "\n".join(lines)


SAME_HEAD_PAIRS = [
    ("ptuning-v2", "peft-prefix", "step"),
    ("ptuning-v2-score", "peft-prefix", "step"),
    ("ptuning-v2", "ptuning-v2-score", "step"),
    ("ptuning-v2", "peft-prefix", "infer"),
    ("ptuning-v2-score", "peft-prefix", "infer"),
    ("ptuning-v2", "ptuning-v2-score", "infer"),
    ("dcpc", "ptuning-v2", "step"),
    ("dcpc", "floor", "step"),
    ("dcpc", "ptuning-v2", "infer"),
]
DCPC_PAIRS = [("dcpc", "ptuning-v2", "step"), ("dcpc", "floor", "step"), ("ptuning-v2", "floor", "step")] + [
    ("dcpc", "ptuning-v2", "infer"),
    ("ptuning-v2", "floor", "infer"),
]


# Issue 19 after the gated Gaussian KL: DCPC against its two step targets, the softmax KL beside it, inference.
KL19_PAIRS = [
    ("dcpc", "ptuning-v2", "step"),
    ("dcpc", "floor", "step"),
    ("dcpc", "dcpc-softmax-kl", "step"),
    ("dcpc-softmax-kl", "ptuning-v2", "step"),
    ("dcpc", "ptuning-v2", "infer"),
]


def gate_rates() -> str:
    """benchmarks/dcpc_gate_rate_probe.py: the share of ordered pairs each gate passed in speed_memory's DCPC step."""
    d = result("dcpc_gate_rate_probe")
    lines = [
        f"Per training step, share of the B (B - 1) ordered pairs; {d['machine']}, load average "
        f"{d['load_average'][0]:.1f}; `benchmarks/results/dcpc_gate_rate_probe.json`.",
        "",
        "| model, batch | steps | cosine gate (min-max) | ambiguity gate, the gated KL's pairs (min-max) |",
        "|---|---:|---:|---:|",
    ]
    for r in d["rows"]:
        cos = [s["gate_cos_rate"] for s in r["steps"]]
        amb = [s["gate_ambiguity_rate"] for s in r["steps"]]
        lines.append(
            f"| {r['model']}, {r['batch']} | {len(r['steps'])} | {min(cos):.4f}-{max(cos):.4f} "
            f"| {min(amb):.4f}-{max(amb):.4f} |"
        )
    return "\n".join(lines)


def dcpc_terms(name: str = "dcpc_terms_profile") -> str:
    """benchmarks/dcpc_terms_profile.py: each DCPC pair term's forward + backward, ms per step."""
    d = result(name)
    cols = sorted({(r["model"], r["batch"]) for r in d["rows"]}, key=lambda c: (c[0] != "tiny", c[1]))
    cell = {(r["model"], r["batch"], r["term"]): r["ms"] for r in d["rows"]}
    names = list(dict.fromkeys(r["term"] for r in d["rows"]))
    lines = [
        f"Median of {d['repeats']} calls, CPU time of the compute thread, ms; {d['machine']}, load average "
        f"{d['load_average'][0]:.1f}; `benchmarks/results/{name}.json`.",
        "",
        "| term (forward + backward) | " + " | ".join(f"{m} B={b}" for m, b in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{cell[m, b, name]:.3f}" for m, b in cols) + " |")
    return "\n".join(lines)


def infer_parts(name: str) -> str:
    """benchmarks/dcpc_infer_profile.py: the interleaved forwards and each part of DCPC's prefix path, ms."""
    d = result(name)
    f = d["forward_ms"]
    lines = [
        f"{d['model']}, batch {d['batch']}, m {d['prefix_length']}, {d['rounds']} interleaved rounds; load average "
        f"{d['load_average'][0]:.1f}; `benchmarks/results/{name}.json`.",
        "",
        "| part | ms |",
        "|---|---:|",
        f"| P-Tuning v2 forward / DCPC forward (x {d['forward_ratio_dcpc_vs_ptuning']:.3f}) "
        f"| {f['ptuning-v2']:.3f} / {f['dcpc']:.3f} |",
    ]
    lines += [f"| {part} | {ms:.3f} |" for part, ms in d["parts_ms"].items()]
    return "\n".join(lines)


KL_PAIRS = [
    ("dcpc", "ptuning-v2", "step"),
    ("dcpc-softmax-kl", "ptuning-v2", "step"),
    ("dcpc", "dcpc-softmax-kl", "step"),
    ("dcpc-softmax-kl", "floor", "step"),
]
ABLATION_PAIRS = [
    (n, "ptuning-v2", "step") for n in ("dcpc", "dcpc-no-pcm", "dcpc-no-clpa", "dcpc-no-ambiguity", "dcpc-no-clpa-pcm")
]


def demo_splits() -> str:
    """The demo's test majority class and the movies its splits share, per seed (benchmarks/demo_splits.py)."""
    record = result("demo_splits")
    seeds = record["seeds"]
    ids = ", ".join(str(s["seed"]) for s in seeds)
    majority = ", ".join(f"{s['test_majority_share']:.3f}" for s in seeds)
    shared = ", ".join(str(s["movies_in_train_and_validation"]) for s in seeds)
    apart = all(s["movies_in_train_and_test"] == 0 and s["movies_in_validation_and_test"] == 0 for s in seeds)
    labels = sorted({s["test_majority_label"] for s in seeds})
    return (
        f"Seeds {ids}: the majority class of the {seeds[0]['sizes']['test']:,} test reviews "
        f"({', '.join(labels)}) is {majority}; movies with reviews in both train and validation: {shared}; "
        f"movies in test and any other split: {'none' if apart else 'some (see the file)'} "
        "(`benchmarks/results/demo_splits.json`, `python benchmarks/demo_splits.py`)."
    )


def demo_per_seed(name: str = "demo_minilm") -> str:
    """Every demo run: test and validation accuracy, DCPC's mean cosine-gate rate, seconds, per seed."""
    cfg, results = grid(name)
    majority = {s["seed"]: s["test_majority_share"] for s in result("demo_splits")["seeds"]}
    lines = [
        "| seed | method | train labels | test accuracy | test majority class | validation accuracy "
        "| share of pairs through the cosine gate | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    columns = _columns(cfg)
    done = sorted(
        (r for r in results if r is not None),
        key=lambda r: (r["seed"], columns.index(r["column"]), [m.label for m in cfg.methods].index(r["method"])),
    )
    for r in done:
        m = r["metrics"]
        labels = "clean" if r["variant"] == "original" else r["column"]
        gate = "n/a" if m.get("gate_cos_rate_mean") is None else f"{100 * m['gate_cos_rate_mean']:.1f}%"
        lines.append(
            f"| {r['seed']} | {r['method']} | {labels} | {m['test_accuracy']:.3f} | {majority[r['seed']]:.3f} "
            f"| {m['validation_accuracy']:.3f} | {gate} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def probe_choice(name: str, groups: dict[str, list[str]], metric: str = "accuracy", tie_break: str = "") -> str:
    """Per group of probe rows (one method at several learning rates): each row's validation and test score,
    and the row validation picks (ties: every tied row named; with ``tie_break``, a second validation metric
    in its own column decides a tie, and the row listed first any tie left)."""
    _, results = grid(name)
    by_label = {r["method"]: r for r in results if r and r.get("status") == "ok"}
    extra_head, extra_rule = (f"validation {tie_break} | ", "---:|") if tie_break else ("", "")
    lines = [
        f"| method | row | validation {metric} | {extra_head}test {metric} | chosen on validation |",
        f"|---|---|---:|{extra_rule}---:|---|",
    ]
    for group, labels in groups.items():
        runs = [(label, by_label[label]) for label in labels if label in by_label]
        if not runs:
            continue
        best = max(r["metrics"][f"validation_{metric}"] for _, r in runs)
        tied = [label for label, r in runs if r["metrics"][f"validation_{metric}"] == best]
        if tie_break:
            key = {
                label: (r["metrics"][f"validation_{metric}"], r["metrics"][f"validation_{tie_break}"])
                for label, r in runs
            }
            winner = next(label for label, _ in runs if key[label] == max(key.values()))
        for label, r in runs:
            v, t = r["metrics"][f"validation_{metric}"], r["metrics"][f"test_{metric}"]
            if tie_break:
                left = sum(key[x] == key[winner] for x in tied)  # still tied on the second metric
                how = "yes" if len(tied) == 1 else f"yes (tie: {tie_break})" if left == 1 else "yes (tie: first listed)"
                pick = how if label == winner else ""
                second = r["metrics"][f"validation_{tie_break}"]
                lines.append(f"| {group} | {label} | {100 * v:.1f} | {100 * second:.1f} | {100 * t:.1f} | {pick} |")
            else:
                pick = ("yes (tie)" if len(tied) > 1 else "yes") if v == best else ""
                lines.append(f"| {group} | {label} | {100 * v:.1f} | {100 * t:.1f} | {pick} |")
    return "\n".join(lines)


def probe_choice_over_columns(
    name: str,
    groups: dict[str, list[str]],
    metric: str = "accuracy",
    also: tuple[str, ...] = (),
    reference: tuple[str, ...] = (),
) -> str:
    """A probe run on several columns (clean and shifted), over one seed or more: each row's validation and test
    score per column (the mean over the seeds), and the row with the highest mean validation score over the
    columns and seeds (test is shown, never read for the choice). A row missing a column or a seed is left out.
    ``also``: grids run at the same settings whose rows (on the probe's columns and seeds) may be named too;
    ``reference``: rows shown for comparison in their group but never chosen."""
    cfg, results = grid(name)
    ok = [r for r in results if r and r.get("status") == "ok"]
    columns = list(dict.fromkeys(r["column"] for r in ok))
    seeds = sorted({r["seed"] for r in ok})
    for other in also:  # a run both grids hold (same row, column and seed: the same settings) counts once
        held = {(r["method"], r["column"], r["seed"]) for r in ok}
        ok += [
            r
            for r in grid(other)[1]
            if r
            and r.get("status") == "ok"
            and r["seed"] in seeds
            and r["column"] in columns
            and (r["method"], r["column"], r["seed"]) not in held
        ]
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in ok:
        runs.setdefault((r["method"], r["column"]), []).append(r)

    def mean(label: str, column: str, split: str) -> float:
        values = [r["metrics"][f"{split}_{metric}"] for r in runs[(label, column)]]
        return sum(values) / len(values)

    head = " | ".join(f"{c} validation | {c} test" for c in columns)
    lines = [
        f"| method | row | {head} | mean validation | chosen on validation |",
        "|---|---|" + "---:|" * (2 * len(columns) + 1) + "---|",
    ]
    for group, labels in groups.items():
        means = {}
        for label in labels:
            if all(len(runs.get((label, c), [])) == len(seeds) for c in columns):
                means[label] = sum(mean(label, c, "validation") for c in columns) / len(columns)
        candidates = [m for label, m in means.items() if label not in reference]
        best = max(candidates) if candidates else None
        for label, m in means.items():
            cells = " | ".join(
                f"{100 * mean(label, c, 'validation'):.1f} | {100 * mean(label, c, 'test'):.1f}" for c in columns
            )
            pick = "(reference, not a candidate)" if label in reference else "yes" if m == best else ""
            lines.append(f"| {group} | {label} | {cells} | {100 * m:.1f} | {pick} |")
    if len(seeds) > 1:
        lines += ["", f"Each cell is the mean over seeds {', '.join(map(str, seeds))}."]
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def lewidi2023_published(name: str = "annotator_models_minilm") -> str:
    """The published Le-Wi-Di 2023 numbers (benchmarks/results/lewidi2023_published.json, entered by hand
    with their sources, each value the text its source prints) beside ours from the grid's records: per
    Le-Wi-Di set, the 'LoRA / soft' row and the row with the lowest median test lewidi_ce, each with its
    median test micro_f1."""
    published = result("lewidi2023_published")["entries"]
    lines = [
        "Published (full test sets; each value as its source prints it):",
        "",
        "| System | Set | Score | Value | Model (size) | Source |",
        "|---|---|---|---:|---|---|",
    ]
    for e in published:
        model = (
            e["model"] if e["model_source"] in ("as above", "abstract only") else f"{e['model']}; {e['model_source']}"
        )
        lines.append(f"| {e['system']} | {e['dataset']} | {e['score']} | {e['value']} | {model} | {e['source']} |")
    cfg, results = grid(name)
    sets = [c for c in _columns(cfg) if c in ("MD-Agreement", "ConvAbuse", "ArMIS", "HS-Brexit")]
    lines += [
        "",
        f"Ours (`configs/compare/{name}.yaml`: MiniLM-L6, 22.7M parameters, 30 steps of 8 on the first 600 "
        "training items, first 100 test items; median over seeds " + ", ".join(map(str, cfg.seeds)) + "):",
        "",
        "| Set | Row | test lewidi_ce | test micro_f1 (x100) |",
        "|---|---|---:|---:|",
    ]
    for column in sets:
        rows = {}
        for m in cfg.methods:
            runs = [
                r for r in results if r and r["method"] == m.label and r["column"] == column and r["status"] == "ok"
            ]
            if runs:
                rows[m.label] = (
                    _median([r["metrics"]["test_lewidi_ce"] for r in runs]),
                    _median([r["metrics"]["test_micro_f1"] for r in runs]),
                )
        best = min(rows, key=lambda k: rows[k][0])  # first in config order on a tie
        for label in dict.fromkeys(["LoRA / soft", best]):
            tag = " (lowest lewidi_ce)" if label == best else ""
            ce, f1 = rows[label]
            lines.append(f"| {column} | {label}{tag} | {ce:.3f} | {100 * f1:.1f} |")
    return "\n".join(lines)


def lewidi2023_scorer_check() -> str:
    """benchmarks/results/lewidi2023_scorer_check.json: the organisers' recipe, our result-file scores and our
    pipeline's lewidi_ce / micro_f1 on the full Le-Wi-Di 2023 test sets, and whether all three agree."""
    record = result("lewidi2023_scorer_check")
    lines = [
        f"`{record['command']}` ({record['machine']}, seconds):",
        "",
        "| Set | Test items | Predictor | lewidi_ce | micro_f1 (x100) | recipe = files = pipeline |",
        "|---|---:|---|---:|---:|---|",
    ]
    for r in record["rows"]:
        ce, f1 = r["recipe"]
        same = "yes, bit for bit" if r["identical"] else "NO"
        lines.append(f"| {r['dataset']} | {r['test_items']} | {r['predictor']} | {ce:.4f} | {100 * f1:.1f} | {same} |")
    return "\n".join(lines)


def sweep_choice(
    name: str,
    column: str,
    keys: list[str],
    metric: str = "accuracy",
    seed: int | None = None,
    also: tuple[str, ...] = (),
    rows: tuple[str, ...] = (),
) -> str:
    """One row per run of a one-seed sweep (or of ``seed``'s runs): validation and test score, the mean of each
    logged term in ``keys``, and, on ``column``'s rows, the row its validation score picks (ties: every tied row
    named). ``also``: grids whose rows join ``name``'s (``_with``); ``rows``: only these rows (default: all)."""
    cfg, results = _with(name, also)
    results = [r for r in results if r and (not rows or r["method"] in rows)]
    order = {label: i for i, label in enumerate(dict.fromkeys(r["method"] for r in results if r))}
    runs = sorted(
        (r for r in results if r and r.get("status") == "ok" and (seed is None or r["seed"] == seed)),
        key=lambda r: (r["column"] != column, order[r["method"]]),
    )
    best = max((r["metrics"][f"validation_{metric}"] for r in runs if r["column"] == column), default=None)
    ties = sum(r["metrics"][f"validation_{metric}"] == best for r in runs if r["column"] == column)
    lines = [
        f"| column | row | validation {metric} | test {metric} | " + " | ".join(keys) + " | chosen on validation |",
        "|---|---|---:|---:|" + "---:|" * len(keys) + "---|",
    ]
    for r in runs:
        m = r["metrics"]
        v = m[f"validation_{metric}"]
        pick = ("yes (tie)" if ties > 1 else "yes") if r["column"] == column and v == best else ""
        cells = [_small(m[k + "_mean"]) if k + "_mean" in m else "–" for k in keys]
        lines.append(
            f"| {r['column']} | {r['method']} | {100 * v:.1f} | {100 * m[f'test_{metric}']:.1f} | "
            + " | ".join(cells)
            + f" | {pick} |"
        )
    return "\n".join(lines)


def _small(value: float) -> str:
    """Four decimals, or two significant digits for a value that four decimals would show as 0.0000."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 5e-5 else f"{value:.1e}"


def gate_pair_terms(names: list[str]) -> str:
    """benchmarks/dcpc_gate_quantiles.py's records: per run, the mean and max over training steps of each
    pair term's mean over the step's cosine-gated pairs (L_align's token half and prefix half, the Gaussian KL),
    and of each spread of the PCM's per-example outputs across the batch (p_pref, the row scales)."""
    lines = [
        "| record | tau_ambiguity | test accuracy | term | steps | mean | max |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for name in names:
        record = result(name)
        for term, e in record.get("pair_terms_on_cos_gated_pairs", {}).items():
            mean = "–" if e["mean"] is None else _small(e["mean"])
            top = "–" if e["max"] is None else _small(e["max"])
            lines.append(
                f"| {name} | {record['tau_ambiguity']} | {100 * record['test_accuracy']:.1f} | {term} | "
                f"{e['steps']} | {mean} | {top} |"
            )
        for term, e in record.get("pcm_outputs_over_steps", {}).items():
            lines.append(
                f"| {name} | {record['tau_ambiguity']} | {100 * record['test_accuracy']:.1f} | PCM {term} | "
                f"{record['whole_run']['steps']} | {_small(e['mean'])} | {_small(e['max'])} |"
            )
    return "\n".join(lines)


PCM_SPREAD_KEYS = [
    "mu_abs_mean",
    "mu_std_across_batch",
    "sigma_mean",
    "p_mu_std_across_batch_times_d",
    "mu_grad_rms",
    "meta_abs_mean",
    "meta_column_std",
    "scale_abs_mean",
    "scale_std_across_batch",
]


def pcm_spread_table(names: list[str]) -> str:
    """benchmarks/dcpc_gate_quantiles.py's PCM records (issue 15): per run, the PCM's outputs at the first
    training step and averaged over the last 50 (mu, its spread across the batch, sigma, the noise-free p_pref's
    spread x d, the gradient reaching mu, the meta-matrix and the row scales), and the pair terms behind the gate."""
    records = [result(n) for n in names]
    head = " | ".join(f"alpha {r['pcm_mu_scale']:g}: step 1 | alpha {r['pcm_mu_scale']:g}: last 50" for r in records)
    lines = ["| quantity | " + head + " |", "|---|" + "---:|" * (2 * len(records))]
    for key in PCM_SPREAD_KEYS:
        cells = []
        for r in records:
            cells.append(_small(r["pcm_outputs_first_step"].get(key, 0.0)))
            cells.append(_small(r["pcm_outputs_last_50_steps"][key]["mean"]))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for term in ("align_token_half", "align_prefix_half", "kl_gaussian"):
        cells = []
        for r in records:
            mean = r["pair_terms_on_cos_gated_pairs"][term]["mean"]
            cells += ["", "–" if mean is None else _small(mean) + " (run mean)"]
        lines.append(f"| {term} on cos-gated pairs | " + " | ".join(cells) + " |")
    acc = []
    for r in records:
        acc += ["", f"{100 * r['validation_accuracy']:.1f} / {100 * r['test_accuracy']:.1f}"]
    lines.append("| validation / test accuracy | " + " | ".join(acc) + " |")
    lines.append("| seconds | " + " | ".join(x for r in records for x in ("", f"{r['seconds']:.0f}")) + " |")
    return "\n".join(lines)


# Issue 15's seeds grid: DCPC and its per-input PCM against P-Tuning v2 and LoRA, and the two PCMs against each other.
SEEDS_GRID_PAIRS = [
    ("P-Tuning v2", "DCPC"),
    ("P-Tuning v2", "DCPC (per-input PCM)"),
    ("LoRA (r=4)", "DCPC"),
    ("LoRA (r=4)", "DCPC (per-input PCM)"),
    ("DCPC", "DCPC (per-input PCM)"),
    ("DCPC", "DCPC w/o L_ambiguity"),
    ("DCPC", "DCPC w/o PCM"),
    ("P-Tuning v2 (DCPC's size)", "DCPC"),
    ("P-Tuning v2", "DCPC (lambda1 0.1)"),
    ("LoRA (r=4)", "DCPC (lambda1 0.1)"),
    ("DCPC", "DCPC (lambda1 0.1)"),
    ("Full-FT", "DCPC (lambda1 0.1)"),
    ("DCPC", "DCPC w/o CLPA"),
    ("DCPC", "DCPC w/o CLPA & PCM"),
]

SMOLLM2_CORE_PAIRS = [
    ("P-Tuning v2", "DCPC"),
    ("P-Tuning v2", "DCPC (lambda1 0.1)"),
    ("LoRA (r=4)", "DCPC (lambda1 0.1)"),
    ("DCPC", "DCPC (lambda1 0.1)"),
]

# The full SmolLM2 grid (configs/compare/issue15_smollm2.yaml): DCPC as chosen (lambda1 0.1) against every
# baseline, then each ablation against it (each removes one part from the chosen DCPC).
SMOLLM2_GRID_PAIRS = [
    ("P-Tuning v2", "DCPC (lambda1 0.1)"),
    ("P-Tuning v2 (DCPC's size)", "DCPC (lambda1 0.1)"),
    ("LoRA (r=4)", "DCPC (lambda1 0.1)"),
    ("LoRA (r=4) lr 3e-3", "DCPC (lambda1 0.1)"),
    ("Learned-Adapter", "DCPC (lambda1 0.1)"),
    ("Full-FT", "DCPC (lambda1 0.1)"),
    ("DCPC", "DCPC (lambda1 0.1)"),
    ("DCPC (lambda1 0.1)", "DCPC (per-input PCM)"),
    ("DCPC (lambda1 0.1)", "DCPC w/o CLPA"),
    ("DCPC (lambda1 0.1)", "DCPC w/o PCM"),
    ("DCPC (lambda1 0.1)", "DCPC w/o L_ambiguity"),
    ("DCPC (lambda1 0.1)", "DCPC w/o CLPA & PCM"),
]
SMOLLM2_GRID_DCPC_ROWS = [
    "DCPC (lambda1 0.1)",
    "DCPC (per-input PCM)",
    "DCPC w/o CLPA",
    "DCPC w/o PCM",
    "DCPC w/o L_ambiguity",
    "DCPC w/o CLPA & PCM",
    "DCPC",
]
TERM_KEYS = LOSS_TERMS + ["pcm_scale_spread"]
# The GPU grid (configs/compare/issue15_smollm2_gpu.yaml) labels the library default "DCPC" and the old default
# "DCPC (lambda1 1)"; the CPU grid calls the same settings "DCPC (lambda1 0.1)" and "DCPC".
SMOLLM2_GPU_RENAME = {"DCPC": "DCPC (lambda1 0.1)", "DCPC (lambda1 1)": "DCPC"}

PCM_READING_RUNS = [
    "dcpc_pcm_spread_rt_a_seed0",
    "dcpc_pcm_spread_rt_a_seed0_mu100",
    "dcpc_pcm_spread_rt_a_seed0_norm",
    "dcpc_pcm_spread_rt_a_seed0_centred",
    "dcpc_pcm_spread_rt_a_seed0_centred_norm",
    "dcpc_pcm_spread_rt_a_seed0_centred_norm_sigma-5",
    "dcpc_pcm_spread_rt_a_seed0_centred_norm_lr1e-2",
]


def pcm_readings_table(names: list[str] = PCM_READING_RUNS) -> str:
    """One benchmarks/dcpc_gate_quantiles.py run per reading of eq. 9-11 (issue 15): its settings, validation and
    test accuracy, and the PCM's outputs averaged over the last 50 training steps; the row scales both as trained
    (sampled p_pref) and as inference uses them (noise-free p_pref; '–' where the record predates that column)."""
    lines = [
        "| gate input | input norm | alpha | sigma bias | PCM lr | validation / test | mu spread | sigma | "
        "M column spread | noise-free s: size | noise-free s: spread | sampled s: spread | seconds |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        r = result(name)
        last = r["pcm_outputs_last_50_steps"]

        def cell(key, last=last):
            return _small(last[key]["mean"]) if key in last else "–"

        lines.append(
            f"| {r.get('pcm_gate_input', 'probability')} | {'yes' if r.get('pcm_input_norm') else 'no'} | "
            f"{r['pcm_mu_scale']:g} | {r.get('pcm_sigma_bias', -2.0):g} | {r['pcm_learning_rate']:g} | "
            f"{100 * r['validation_accuracy']:.1f} / {100 * r['test_accuracy']:.1f} | {cell('mu_std_across_batch')} | "
            f"{cell('sigma_mean')} | {cell('meta_column_std')} | {cell('scale_noise_free_abs_mean')} | "
            f"{cell('scale_noise_free_std_across_batch')} | {cell('scale_std_across_batch')} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def gate_quantiles(name: str = "dcpc_gate_quantiles_rt_a_seed0") -> str:
    """benchmarks/dcpc_gate_quantiles.py's record: quantiles of each gate score over the cosine-gated pairs,
    and the share of them each candidate tau_ambiguity passes, over the whole run and its last 50 steps."""
    record = result(name)
    parts = [k for k in ("whole_run", "last_50_steps") if k in record]
    first = record[parts[0]]["kl"]
    qs, taus = list(first["quantiles"]), list(first["pass_share_of_cos_gated"])
    lines = [
        "| steps | gate score | cos-gated pairs | "
        + " | ".join(f"q{float(q) * 100:g}" for q in qs)
        + " | max | "
        + " | ".join(f"share > {t}" for t in taus)
        + " |",
        "|---|---|---:|" + "---:|" * (len(qs) + 1 + len(taus)),
    ]
    for part in parts:
        for kind in ("kl", "js", "cross_entropy"):
            e = record[part][kind]
            lines.append(
                f"| {part.replace('_', ' ')} | cos x {kind} | {e['cos_gated_pairs']} of {record[part]['pairs']} | "
                + " | ".join(f"{e['quantiles'][q]:.4f}" for q in qs)
                + f" | {e['max']:.4f} | "
                + " | ".join(f"{100 * e['pass_share_of_cos_gated'][t]:.1f}%" for t in taus)
                + " |"
            )
    return "\n".join(lines)


def _columns(cfg) -> list[str]:
    return [c for d in cfg.datasets for c in (d.name, d.shifted_name) if c is not None]


def PTLOSS_PROBE_GROUPS(*flood_levels: float) -> dict[str, list[str]]:  # noqa: N802 (a table of labels)
    """The rows of configs/compare/ptloss_baselines_probe_*.yaml, grouped by baseline."""
    return {
        "Label smoothing": ["Label smoothing (delta 0.05)", "Label smoothing (delta 0.2)"],
        "Focal": ["Focal (gamma 0.5)", "Focal (gamma 2)"],
        "Flooding": [f"Flooding (b {b:g})" for b in flood_levels],
        "ESKD": ["ESKD (stop at 0.5)", "ESKD (stop at 0.75)"],
        "Annealing KD": ["Annealing KD (T0 2)", "Annealing KD (T0 10)"],
    }


def config_differences(name: str, metric: str = "accuracy") -> str:
    """The method-vs-method tables of the pairs the compare config's ``differences:`` key names."""
    cfg, _ = grid(name)
    return differences(name, [tuple(pair) for pair in cfg.differences or []], metric)


PCM_SPREAD = ["pcm_p_spread", "pcm_scale_spread"]
# Issue 15's pcm_mu_scale rows against the committed alpha = 1 DCPC and P-Tuning v2 rows of the same seeds.
MU_SCALE_PAIRS = [("DCPC", "DCPC (mu scale 100)"), ("P-Tuning v2", "DCPC (mu scale 100)")]

BLOCKS = {
    "sst2_rte_minilm": lambda: tables("sst2_rte_minilm"),
    "sst2_rte_smollm2": lambda: tables("sst2_rte_smollm2"),
    "sst2_rte_minilm_differences": lambda: differences(
        "sst2_rte_minilm", [("P-Tuning v2", "DCPC"), ("LoRA (r=4)", "DCPC"), ("LoRA (r=4)", "Full-FT")]
    ),
    "ablations_smollm2": lambda: tables("ablations_smollm2"),
    "ltuning_minilm": lambda: tables("ltuning_minilm"),
    "ltuning_minilm_per_seed": lambda: per_seed("ltuning_minilm", "SST-2") + "\n" + per_seed("ltuning_minilm", "RTE"),
    "ltuning_minilm_differences": lambda: differences("ltuning_minilm", [("Prefix (P-Tuning v2)", "LT-prefix")]),
    "ltuning_smollm2": lambda: tables("ltuning_smollm2"),
    "annotators_minilm_accuracy": lambda: target_accuracy("annotators_minilm"),
    "annotators_smollm2_accuracy": lambda: target_accuracy("annotators_smollm2"),
    "dorm_hh_budget": lambda: dorm_hh("budget"),
    "dorm_hh_search_unweighted": lambda: dorm_hh("unweighted"),
    "dorm_hh_search_dorm": lambda: dorm_hh("dorm"),
    "dorm_hh_search_bilevel": lambda: dorm_hh("bilevel-no-prior"),
    "dorm_hh_final": lambda: dorm_hh("final"),
    "dorm_hh_signals": lambda: dorm_hh("signals"),
    "dorm_es_budget": lambda: dorm_hh("budget", "every-source"),
    "dorm_es_search_unweighted": lambda: dorm_hh("unweighted", "every-source"),
    "dorm_es_search_dorm": lambda: dorm_hh("dorm", "every-source"),
    "dorm_es_search_bilevel": lambda: dorm_hh("bilevel-no-prior", "every-source"),
    "dorm_es_final": lambda: dorm_hh("final", "every-source"),
    "dorm_es_weights": lambda: dorm_hh("weights", "every-source"),
    "dorm_es_flips": lambda: dorm_hh("flips", "every-source"),
    "dorm_es_seeds": lambda: dorm_hh("seeds", "every-source"),
    "dorm_sst2_budget": lambda: dorm_hh("budget", "sst2-pairs"),
    "dorm_sst2_search_unweighted": lambda: dorm_hh("unweighted", "sst2-pairs"),
    "dorm_sst2_search_dorm": lambda: dorm_hh("dorm", "sst2-pairs"),
    "dorm_sst2_search_bilevel": lambda: dorm_hh("bilevel-no-prior", "sst2-pairs"),
    "dorm_sst2_final": lambda: dorm_hh("final", "sst2-pairs"),
    "dorm_sst2_weights": lambda: dorm_hh("weights", "sst2-pairs"),
    "dorm_sst2_flips": lambda: dorm_hh("flips", "sst2-pairs"),
    "dorm_sst2_readings": lambda: dorm_hh("readings", "sst2-pairs"),
    "dorm_sst2_seeds": lambda: dorm_hh("seeds", "sst2-pairs"),
    "dorm_sst2_prior_readings": lambda: dorm_hh("prior_readings", "sst2-pairs"),
    "dorm_prior_diagnosis": lambda: dorm_prior("diagnosis"),
    "dorm_prior_weighting": lambda: dorm_prior("weighting"),
    "dorm_prior_weighting_other": lambda: dorm_prior("weighting_other"),
    "dorm_prior_select": lambda: dorm_prior("select"),
    "dorm_prior_final": lambda: dorm_prior("final"),
    "annotator_models_minilm": lambda: tables("annotator_models_minilm"),
    "annotator_models_minilm_ce": lambda: versus("annotator_models_minilm", "LoRA / soft", "lewidi_ce"),
    "annotator_models_minilm_error": lambda: versus("annotator_models_minilm", "LoRA / soft", "annotator_error"),
    "annotator_models_dcpc_minilm": lambda: tables("annotator_models_dcpc_minilm"),
    "annotator_models_dcpc_minilm_ce": lambda: versus("annotator_models_dcpc_minilm", "DCPC / soft", "lewidi_ce"),
    "annotator_models_dcpc_minilm_error": lambda: versus(
        "annotator_models_dcpc_minilm", "DCPC / soft", "annotator_error"
    ),
    "annotator_models_dcpc_minilm_terms": lambda: run_terms(
        "annotator_models_dcpc_minilm",
        "DCPC / soft",
        LOSS_TERMS,
    ),
    "annotator_models_dcpc_minilm_vs_lora": lambda: across(
        "annotator_models_minilm",
        "LoRA / soft",
        "annotator_models_dcpc_minilm",
        ["DCPC / soft", "DCPC / annotators + prefix offset"],
        "soft_ce",
    ),
    "lewidi2023_published": lewidi2023_published,
    "lewidi2023_scorer_check": lewidi2023_scorer_check,
    "ptloss_sst2_minilm": lambda: tables("ptloss_sst2_minilm") + "\n\n" + per_seed("ptloss_sst2_minilm", "SST-2"),
    "ptloss_sst2_minilm_differences": lambda: config_differences("ptloss_sst2_minilm"),
    "ptloss_rte_minilm": lambda: tables("ptloss_rte_minilm") + "\n\n" + per_seed("ptloss_rte_minilm", "RTE"),
    "ptloss_rte_minilm_differences": lambda: config_differences("ptloss_rte_minilm"),
    "ptloss_baselines_probe_sst2_minilm_choice": lambda: probe_choice(
        "ptloss_baselines_probe_sst2_minilm", PTLOSS_PROBE_GROUPS(0.02, 0.05), tie_break="f1_weighted"
    ),
    "ptloss_baselines_probe_rte_minilm_choice": lambda: probe_choice(
        "ptloss_baselines_probe_rte_minilm", PTLOSS_PROBE_GROUPS(0.005, 0.01), tie_break="f1_weighted"
    ),
    "annotators_lr_probe_minilm_choice": lambda: probe_choice(
        "annotators_lr_probe_minilm",
        {
            "DCPC": ["DCPC lr1e-2 head1e-2", "DCPC lr2e-2 head1e-2"],
            "P-Tuning v2": ["PTv2 lr1e-2 head1e-2", "PTv2 lr2e-2 head1e-2"],
            "LoRA (r=4)": ["LoRA lr1e-3 head1e-2", "LoRA lr5e-3 head1e-2"],
        },
    ),
    "ltuning_lr_probe_minilm_choice": lambda: probe_choice(
        "ltuning_lr_probe_minilm",
        {
            "Prompt": ["Prompt, lr 1e-2"],
            "LT-prefix": ["LT-prefix, lr 1e-3", "LT-prefix, lr 1e-2"],
            "LT-prompt": ["LT-prompt, lr 1e-3", "LT-prompt, lr 1e-2"],
        },
    ),
    "learned_adapter_rt_minilm": lambda: tables("learned_adapter_rt_minilm"),
    "issue15_demo_rt_shift_seeds": lambda: tables("issue15_demo_rt_shift_seeds"),
    "issue15_demo_rt_shift_seeds_drops": lambda: (
        drop_differences("issue15_demo_rt_shift_seeds", SEEDS_GRID_PAIRS, "RT", "RT-A")
        + "\n\n"
        + differences("issue15_demo_rt_shift_seeds", SEEDS_GRID_PAIRS)
    ),
    "issue15_demo_rt_shift_seeds_terms": lambda: run_terms(
        "issue15_demo_rt_shift_seeds",
        "DCPC",
        LOSS_TERMS,
    ),
    "dcpc_gate_quantiles_rt_a_seed0": gate_quantiles,
    "dcpc_gate_pair_terms": lambda: gate_pair_terms(["dcpc_gate_quantiles_rt_a_seed0_tau0.01"]),
    "issue15_tau_ambiguity_sweep": lambda: tables("issue15_tau_ambiguity_sweep"),
    "issue15_tau_ambiguity_sweep_choice": lambda: sweep_choice(
        "issue15_tau_ambiguity_sweep",
        "RT-A",
        LOSS_TERMS,
    ),
    "issue15_tau_ambiguity_pcm_lr_table": lambda: tables("issue15_tau_ambiguity_pcm_lr"),
    "issue15_tau_ambiguity_pcm_lr": lambda: "\n\n".join(
        f"Seed {seed}:\n\n"
        + sweep_choice(
            "issue15_tau_ambiguity_pcm_lr",
            "RT-A",
            LOSS_TERMS,
            seed=seed,
        )
        for seed in (0, 1)
    ),
    "issue15_tau_ambiguity_pcm_lr_drops": lambda: (
        drop_differences(
            "issue15_tau_ambiguity_pcm_lr", [("DCPC (PCM 1e-2)", "DCPC (PCM 1e-2, tau_amb 0.01)")], "RT", "RT-A"
        )
        + "\n\n"
        + differences("issue15_tau_ambiguity_pcm_lr", [("DCPC (PCM 1e-2)", "DCPC (PCM 1e-2, tau_amb 0.01)")])
    ),
    "issue15_pcm_mu_scale_table": lambda: tables("issue15_pcm_mu_scale"),
    "issue15_pcm_mu_scale_choice": lambda: "\n\n".join(
        f"Seed {seed}:\n\n"
        + sweep_choice(
            "issue15_pcm_mu_scale",
            "RT-A",
            ["gate_cos_rate", "gate_ambiguity_rate", "loss_task", "loss_align", "loss_kl"] + PCM_SPREAD,
            seed=seed,
            also=("issue15_demo_rt_shift_seeds",),
            rows=("DCPC", "DCPC (mu scale 100)"),
        )
        for seed in (0, 1)
    ),
    "issue15_pcm_mu_scale_drops": lambda: (
        drop_differences("issue15_pcm_mu_scale", MU_SCALE_PAIRS, "RT", "RT-A", also=("issue15_demo_rt_shift_seeds",))
        + "\n\n"
        + differences("issue15_pcm_mu_scale", MU_SCALE_PAIRS, also=("issue15_demo_rt_shift_seeds",))
    ),
    "dcpc_pcm_spread": lambda: pcm_spread_table(["dcpc_pcm_spread_rt_a_seed0", "dcpc_pcm_spread_rt_a_seed0_mu100"]),
    "dcpc_pcm_readings": pcm_readings_table,
    "issue15_demo_rt_baseline_lr_probe_choice": lambda: probe_choice_over_columns(
        "issue15_demo_rt_baseline_lr_probe",
        {
            "LoRA (r=4)": ["LoRA (r=4) lr 1e-3", "LoRA (r=4) lr 3e-3", "LoRA (r=4) lr 1e-2"],
            "Full-FT": ["Full-FT lr 2e-5", "Full-FT lr 5e-5"],
        },
    ),
    "issue15_smollm2_lr_probe_choice": lambda: probe_choice_over_columns(
        "issue15_smollm2_lr_probe",
        {
            "P-Tuning v2": ["P-Tuning v2 lr 3e-3", "P-Tuning v2", "P-Tuning v2 lr 3e-2"],
            "LoRA (r=4)": ["LoRA (r=4) lr 3e-4", "LoRA (r=4)", "LoRA (r=4) lr 3e-3"],
        },
        also=("issue15_smollm2",),
    ),
    "adalora_lr_probe_smollm2_choice": lambda: probe_choice_over_columns(
        "adalora_lr_probe_smollm2", {"AdaLoRA": ["AdaLoRA lr 1e-3", "AdaLoRA lr 1e-2", "AdaLoRA lr 3e-2"]}
    ),
    "issue15_demo_rt_ambiguity_probe_choice": lambda: probe_choice_over_columns(
        "issue15_demo_rt_ambiguity_probe",
        {
            "DCPC": [
                "DCPC (eq. 4 cross-entropy lambda1 1)",
                "DCPC (eq. 4 KL lambda1 1)",
                "DCPC (eq. 4 cross-entropy lambda1 0.3)",
                "DCPC (eq. 4 cross-entropy lambda1 0.1)",
                "DCPC w/o L_ambiguity",
            ]
        },
        also=("issue15_demo_rt_shift_seeds",),
        reference=("DCPC w/o L_ambiguity",),
    ),
    "issue15_smollm2_core": lambda: tables("issue15_smollm2_core"),
    "issue15_smollm2_core_differences": lambda: (
        drop_differences("issue15_smollm2_core", SMOLLM2_CORE_PAIRS, "Rotten Tomatoes", "RT-A")
        + "\n\n"
        + differences("issue15_smollm2_core", SMOLLM2_CORE_PAIRS)
    ),
    "issue15_smollm2_core_terms": lambda: run_terms(
        "issue15_smollm2_core",
        "DCPC (lambda1 0.1)",
        LOSS_TERMS,
    ),
    "issue15_smollm2": lambda: tables("issue15_smollm2"),
    "issue15_smollm2_gpu": lambda: tables("issue15_smollm2_gpu"),
    "issue15_smollm2_cpu_gpu": lambda: beside("issue15_smollm2", "issue15_smollm2_gpu", SMOLLM2_GPU_RENAME),
    "paper_grid_smollm2": lambda: tables("paper_grid_smollm2"),
    "issue15_smollm2_drops": lambda: "\n\n".join(
        drop_differences("issue15_smollm2", SMOLLM2_GRID_PAIRS, clean, shifted)
        for clean, shifted in (("Rotten Tomatoes", "RT-A"), ("SST-2", "SST-2-A"), ("SST-2", "SST-2-P"))
    ),
    "issue15_smollm2_differences": lambda: differences("issue15_smollm2", SMOLLM2_GRID_PAIRS),
    "issue15_smollm2_terms": lambda: terms_by_method("issue15_smollm2", SMOLLM2_GRID_DCPC_ROWS, TERM_KEYS),
    "dcpc_term_gradients": lambda: term_gradients(
        [
            "dcpc_term_gradients_minilm",
            "dcpc_term_gradients_smollm2",
            "dcpc_term_gradients_smollm2_per_input",
        ]
    ),
    "shift_groups_smollm2_sst2": lambda: shift_groups("shift_groups_smollm2_sst2"),
    "adapter_update_size_smollm2_sst2": lambda: adapter_update_size("adapter_update_size_smollm2_sst2"),
    "shift_groups_smollm2_sst2_by_length": lambda: shift_groups_by_length("shift_groups_smollm2_sst2"),
    "shift_groups_smollm2_sst2_attention": lambda: shift_groups_attention("shift_groups_smollm2_sst2_attention"),
    "shift_groups_smollm2_sst2_padding": lambda: shift_groups_padding("shift_groups_smollm2_sst2_padding"),
    "precision_divergence_smollm2_rta": lambda: precision_divergence("precision_divergence_smollm2_rta"),
    "lpt_start_smollm2_sst2": lambda: method_start("lpt_start_smollm2_sst2"),
    "lpt_lr_probe_smollm2_choice": lambda: probe_choice_over_columns(
        "lpt_lr_probe_smollm2",
        {
            "LPT": [
                "LPT lr 1e-3",
                "LPT lr 3e-3",
                "LPT lr 1e-2",
                "LPT lr 3e-2",
                "LPT text placeholders lr 1e-3",
                "LPT text placeholders lr 1e-2",
            ]
        },
    ),
    "issue15_smollm2_sst2_terms": lambda: runs_with_validation(
        ["issue15_smollm2_sst2_dcpc", "issue15_smollm2_sst2_diagnosis"],
        LOSS_TERMS,
    ),
    "profile_step_minilm": profile,
    "demo_splits": demo_splits,
    "demo_minilm": lambda: tables("demo_minilm"),
    "demo_minilm_per_seed": demo_per_seed,
    "demo_minilm_differences": lambda: differences("demo_minilm", [("P-Tuning v2", "DCPC")]),
    "sst2_ptuning_375_minilm": lambda: tables("sst2_ptuning_375_minilm"),
    "profile_step_tiny": lambda: profile("profile_step_tiny"),
    "profile_step_tiny_b64": lambda: profile("profile_step_tiny_b64"),
    "profile_step_smollm2": lambda: profile("profile_step_smollm2-135m"),
    "profile_step_smollm2_samehead": lambda: profile("profile_step_smollm2-135m_samehead"),
    "speed_smollm2_samehead": lambda: paired_rounds("speed_memory_smollm2-135m_samehead", SAME_HEAD_PAIRS),
    "speed_smollm2_samehead_own_memory": lambda: paired_rounds(
        "speed_memory_smollm2-135m_samehead-own-memory", SAME_HEAD_PAIRS
    ),
    "speed_minilm_peers_own_memory": lambda: paired_rounds(
        "speed_memory_minilm_peers-own-memory",
        [("ptuning-v2", "peft-prefix", "step"), ("ptuning-v2", "peft-prefix", "infer")] + DCPC_PAIRS,
    ),
    "speed_kl_variant": lambda: "\n".join(
        paired_rounds(f"speed_memory_{m}_kl-variant", KL_PAIRS) for m in ("minilm", "tiny")
    ),
    "speed_dcpc_tiny": lambda: paired_rounds("speed_memory_tiny_dcpc19b", DCPC_PAIRS),
    "speed_dcpc_minilm": lambda: paired_rounds("speed_memory_minilm_dcpc19b", DCPC_PAIRS),
    "speed_dcpc_tiny_ablations": lambda: paired_rounds("speed_memory_tiny_dcpc19b-ablations", ABLATION_PAIRS),
    "dcpc_terms_profile": dcpc_terms,
    "dcpc_terms_profile_kl19": lambda: dcpc_terms("dcpc_terms_profile_kl19"),
    "dcpc_gate_rate_probe": gate_rates,
    "speed_kl19": lambda: "\n".join(paired_rounds(f"speed_memory_{m}_kl19", KL19_PAIRS) for m in ("minilm", "tiny")),
    "dcpc_infer_profile_tiny_b16": lambda: infer_parts("dcpc_infer_profile_tiny_b16"),
    "prefix_path_probe": lambda: prefix_probe(
        ["prefix_path_probe_smollm2-135m", "prefix_path_probe_smollm2-135m_own_memory"]
    ),
    "annotators_minilm": lambda: annotator_accuracy("annotators_minilm", "annotation_baselines_minilm"),
    "annotators_smollm2": lambda: annotator_accuracy("annotators_smollm2", "annotation_baselines_smollm2"),
    "annotation_baselines_minilm": lambda: annotator_baselines("annotation_baselines_minilm"),
    "annotation_baselines_smollm2": lambda: annotator_baselines("annotation_baselines_smollm2"),
    "annotators_aggregates_minilm": lambda: annotator_accuracy(
        "annotators_aggregates_minilm", "annotation_baselines_minilm"
    ),
}


def render(text: str, blocks: dict = BLOCKS) -> str:
    """``text`` with every marked table rebuilt; an unknown marker name is an error."""

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in blocks:
            raise SystemExit(f"unknown results marker {name!r}: add it to BLOCKS in benchmarks/results_tables.py")
        return match.group(1) + blocks[name]().rstrip("\n") + "\n" + match.group(4)

    return MARKER.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 if any page differs")
    args = parser.parse_args(argv)
    stale = []
    for page in PAGES:
        path = ROOT / page
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(page)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("tables differ from the committed records in: " + ", ".join(stale) + " (run `make results`)")
        return 1
    print(("rewrote " if stale else "up to date: ") + (", ".join(stale) if stale else f"{len(PAGES)} pages"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
