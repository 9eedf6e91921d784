"""Tables and charts from a comparison's results: CSV/JSON, Markdown in the layout of Tables 1-3, a PNG."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from ..utils.atomic_files import save_figure_atomically, write_text_atomically
from .config import CompareConfig, refusal
from .curves import curves_chart
from .pairs import method_differences_table, pairs_table
from .records import compact, dumps


def metric_value(metrics: dict, metric: str) -> float | None:
    """A run's ``test_<metric>``, else its ``<metric>`` (perplexity is not a test-split metric)."""
    value = metrics.get(f"test_{metric}")
    return metrics.get(metric) if value is None else value


def median_table(results: list[dict], metric: str | None = None) -> dict[tuple[str, str, str], dict]:
    """(model, method, column) -> {median, values, n, tunable_params, seconds} over finished seeds.

    ``metric`` replaces each run's own (its dataset's) metric, for the extra columns of ``also``.
    """
    cells: dict[tuple[str, str, str], dict] = {}
    for r in results:
        if r is None:
            continue
        key = (r["model"], r["method"], r["column"])
        cell = cells.setdefault(key, {"values": [], "tunable_params": None, "seconds": 0.0, "failed": 0})
        cell["seconds"] += r.get("seconds") or 0.0
        value = metric_value(r["metrics"], metric or r["metric"]) if r["status"] == "ok" else None
        if value is None:
            cell["failed"] += 1
            continue
        cell["values"].append(float(value))
        cell["tunable_params"] = r.get("tunable_params")
    for cell in cells.values():
        cell["n"] = len(cell["values"])
        cell["median"] = statistics.median(cell["values"]) if cell["values"] else None
    return cells


def format_params(n: int | None) -> str:
    """12345678 -> '12.3M', 49152 -> '49.2K'."""
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


UNSCALED = (
    "gpt_score",
    "perplexity",
    "target_layer",
    "soft_ce",
    "lewidi_ce",
    "worst_group_ce",
)  # shown as they are, not x100


def _score(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    if metric == "target_layer":
        return f"{value:g}"
    return f"{value:.2f}" if metric in UNSCALED else f"{100 * value:.1f}"


def markdown_tables(cfg: CompareConfig, results: list[dict]) -> str:
    """One table per backbone: rows are methods, columns each dataset, its shifted twin and the drop;
    a dataset's ``also`` metrics follow its score, and its shifted twin's."""
    cells = median_table(results)
    extra = {x: median_table(results, x) for d in cfg.datasets for x in d.also}
    refused = {(m.label, d.name): refusal(m, d) for m in cfg.methods for d in cfg.datasets}  # not run: n/a
    blocks = []
    for model in cfg.models:
        header = ["Method", "Tunable params"]
        for d in cfg.datasets:
            header.append(f"{d.name} ({d.metric})")
            header += [f"{d.name} ({m})" for m in d.also]
            if d.shifted:
                header += [f"{d.shifted_name} ({d.metric})"] + [f"{d.shifted_name} ({m})" for m in d.also] + ["drop"]
        rows = []
        for m in cfg.methods:
            seeds = len(m.seeds or cfg.seeds)
            row_cells = [cells.get((model.label, m.label, c)) for c in _columns(cfg)]
            params = next((c["tunable_params"] for c in row_cells if c and c["tunable_params"] is not None), None)
            row = [m.label, format_params(params)]
            for d in cfg.datasets:
                if refused[(m.label, d.name)]:  # every cell of this dataset (and its twin, and the drop) is n/a
                    row += ["n/a"] * (1 + len(d.also) + (2 + len(d.also) if d.shifted else 0))
                    continue
                orig = cells.get((model.label, m.label, d.name), {})
                row.append(_with_n(orig, d.metric, seeds))
                row += [_extra(extra[x].get((model.label, m.label, d.name), {}), x, seeds) for x in d.also]
                if d.shifted:
                    shifted = cells.get((model.label, m.label, d.shifted_name), {})
                    row.append(_with_n(shifted, d.metric, seeds))
                    row += [_extra(extra[x].get((model.label, m.label, d.shifted_name), {}), x, seeds) for x in d.also]
                    a, b = orig.get("median"), shifted.get("median")
                    row.append(_score(a - b, d.metric) if a is not None and b is not None else "–")
            rows.append(row)
        _bold_best(rows, cfg)
        lines = [
            f"**{model.label}** — median of test {', '.join(sorted({d.metric for d in cfg.datasets}))} over "
            f"seeds {', '.join(map(str, cfg.seeds))} (x100 for accuracy and f1-em); 'drop' is original minus "
            "shifted; a cell with fewer finished seeds says how many." + _own_seeds(cfg),
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines += [""] + [f"n/a: {m} cannot train {d}: {why}" for (m, d), why in refused.items() if why]
        blocks.append("\n".join(lines).rstrip("\n"))
    return "\n\n".join(blocks)


def _own_seeds(cfg: CompareConfig) -> str:
    own = [f"{m.label} seeds {', '.join(map(str, m.seeds))}" for m in cfg.methods if m.seeds]
    return f" Rows with their own seeds: {'; '.join(own)}." if own else ""


def _columns(cfg: CompareConfig) -> list[str]:
    cols = []
    for d in cfg.datasets:
        cols.append(d.name)
        if d.shifted:
            cols.append(d.shifted_name)
    return cols


def _with_n(cell: dict, metric: str, seeds: int) -> str:
    text = _score(cell.get("median"), metric)
    n = cell.get("n", 0)
    if cell and n < seeds:
        text += f" ({n}/{seeds} seeds)"
    return text


def _extra(cell: dict, metric: str, seeds: int) -> str:
    """An ``also`` column: '–' without a seed count where no run reports it (target_layer of other methods)."""
    return _with_n(cell, metric, seeds) if cell.get("n") else "–"


def _bold_best(rows: list[list[str]], cfg: CompareConfig) -> None:
    """Bold the best median of each score column (not the drop columns)."""
    col = 2
    for d in cfg.datasets:
        spans = [col] + ([col + 1 + len(d.also)] if d.shifted else [])
        for c in spans:
            values = []
            for row in rows:
                try:
                    values.append(float(row[c].split(" ")[0]))
                except ValueError:
                    values.append(None)
            finite = [v for v in values if v is not None]
            if len(finite) > 1:
                best = max(finite)
                for row, v in zip(rows, values):
                    if v == best:
                        row[c] = f"**{row[c]}**"
        col += (1 + len(d.also)) * (2 if d.shifted else 1) + bool(d.shifted)  # extra and drop columns: not bolded


def results_csv(results: list[dict]) -> str:
    """One line per run: ids, status, test metric, tunable parameters, seconds."""
    buf = io.StringIO()
    fields = [
        "model",
        "dataset",
        "variant",
        "column",
        "method",
        "method_name",
        "seed",
        "status",
        "metric",
        "test_score",
        "validation_accuracy",
        "train_steps",
        "tunable_params",
        "seconds",
        "error",
    ]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in results:
        if r is None:
            continue
        m = r["metrics"]
        writer.writerow(
            {
                **{k: r.get(k) for k in fields if k in r},
                "test_score": m.get(f"test_{r['metric']}"),
                "validation_accuracy": m.get("validation_accuracy"),
                "train_steps": m.get("train_steps"),
            }
        )
    return buf.getvalue()


def chart(cfg: CompareConfig, results: list[dict], path: Path) -> Path | None:
    """Grouped bars per dataset: each method's median on the original and on the shifted data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = median_table(results)
    panels = [(model, d) for model in cfg.models for d in cfg.datasets]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(4.5, 1.1 * len(cfg.methods)) * len(panels), 3.8), squeeze=False
    )
    width = 0.38
    for ax, (model, d) in zip(axes[0], panels):
        xs = range(len(cfg.methods))
        scale = 1 if d.metric == "gpt_score" else 100
        for offset, column, name in ((-width / 2, d.name, "original"), (width / 2, d.shifted_name, "shifted")):
            if column is None:
                continue
            values = [cells.get((model.label, m.label, column), {}).get("median") for m in cfg.methods]
            ax.bar(
                [x + offset for x in xs],
                [scale * v if v is not None else 0 for v in values],
                width,
                label=f"{name} ({column})",
            )
        ax.set_xticks(list(xs), [m.label for m in cfg.methods], rotation=30, ha="right")
        ax.set_title(f"{model.label}: {d.name}")
        ax.set_ylabel(f"test {d.metric}" + (" x100" if scale == 100 else ""))
        ax.legend(fontsize=8, loc="lower right")
        finite = [
            scale * c["median"]
            for (mo, _, col), c in cells.items()
            if mo == model.label and col in (d.name, d.shifted_name) and c.get("median") is not None
        ]
        if finite:
            ax.set_ylim(max(0, min(finite) - 10), min(100 if scale == 100 else 10, max(finite) + 5))
    fig.suptitle(f"{cfg.title}: median over seeds {', '.join(map(str, cfg.seeds))}", fontsize=10)
    fig.tight_layout()
    return save_figure_atomically(fig, path)


def write_reports(cfg: CompareConfig, results: list[dict], command: str) -> dict[str, Path]:
    """results.json, results.csv, records.jsonl (one compact record per run), table.md and chart.png
    in the output folder."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    finished = [r for r in results if r is not None]
    total = sum(r.get("seconds") or 0 for r in finished)
    machine = (finished[0].get("machine") if finished else None) or "n/a"  # records converted from a CSV have none
    hardware = sorted({r["hardware"] for r in finished if r.get("hardware")})
    if hardware:
        machine += " (" + "; ".join(hardware) + ")"
    versions = (finished[0].get("versions") if finished else None) or {}
    paths = {
        "json": out / "results.json",
        "csv": out / "results.csv",
        "records": out / "records.jsonl",
        "table": out / "table.md",
        "chart": out / "chart.png",
        "curves": out / "validation_loss.png",
    }
    write_text_atomically(
        paths["json"],
        json.dumps(
            {"title": cfg.title, "command": command, "config": cfg.to_dict(), "runs": finished}, indent=2, default=str
        ),
    )
    write_text_atomically(paths["csv"], results_csv(finished))
    write_text_atomically(paths["records"], dumps([compact(r) for r in finished]))
    head = [
        f"## {cfg.title}",
        "",
        f"Command: `{command}`",
        "",
        f"{len(finished)} of {len(results)} runs finished, {total / 60:.1f} min of training and evaluation in all; "
        f"machine: {machine}; " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
        "",
    ]
    tables = markdown_tables(cfg, results)
    if cfg.pairs:
        tables += "\n\n" + pairs_table(results, *cfg.pairs)
    for a, b in cfg.differences or []:
        for metric in dict.fromkeys(d.metric for d in cfg.datasets):
            tables += "\n\n" + method_differences_table(results, a, b, metric)
    write_text_atomically(paths["table"], "\n".join(head) + tables + "\n")
    chart(cfg, results, paths["chart"])
    if curves_chart(cfg, finished, paths["curves"]) is None:
        paths.pop("curves")
    return paths
