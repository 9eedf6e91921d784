"""`prefalign report`: one self-contained HTML page for a run directory, readable offline.

It collects what a run directory holds (``prefalign train`` writes ``config.yaml``,
``metrics.json``, ``log_history.json`` and ``adapter/``):

* the training curves of every logged loss term, gate pass rate, the evaluation accuracy and the
  learning rate (drawn from ``log_history.json``);
* the evaluation metrics and the checkpoint's method settings;
* every probe output found below the directory (``drift.csv``, ``bias.csv``, their summaries and
  PNGs, as ``prefalign probe`` writes them; other PNGs too);
* the dataset cards of ``prefalign shift`` (``*.card.json`` / ``*.card.md``) found below the
  directory or beside the data files the run's config names.

Images are embedded as base64 PNGs and the styles are inline: the page loads nothing.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import os
import tempfile
from pathlib import Path

import yaml

from ..errors import DataError
from ..utils.atomic_files import write_text_atomically
from ..utils.environment import versions
from .plots import training_curves

SKIP_DIRS = {"checkpoints", "__pycache__", ".git"}
MAX_TABLE_ROWS = 400
PROBE_FILES = ("drift.csv", "bias.csv")

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;color:#222;
line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
h3{margin-bottom:.3em}.muted{color:#666;font-size:.9em}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;border:1px solid #e3e3e3;padding:.7em;overflow-x:auto;font-size:.82em}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
nav a{margin-right:1em}.card{border-left:4px solid #9cf;padding-left:1em;margin:1em 0}
details summary{cursor:pointer;color:#036}
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _img(path_or_bytes, alt: str) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _is_num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for v in row:
            num = _is_num(v) or (isinstance(v, str) and _looks_num(v))
            cells.append(f'<td class="num">{_e(_fmt(v))}</td>' if num else f"<td>{_e(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _looks_num(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _csv_table(path: Path) -> str:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return '<p class="muted">(empty)</p>'
    header, body = rows[0], rows[1:]
    note = ""
    if len(body) > MAX_TABLE_ROWS:
        note = f'<p class="muted">first {MAX_TABLE_ROWS} of {len(body)} rows; the full table is {_e(path.name)}</p>'
        body = body[:MAX_TABLE_ROWS]
    return note + _table(header, body, cls="csv")


def _pairs_table(path: Path) -> str:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows.append(
                [
                    r.get("pair", ""),
                    r.get("label_a", ""),
                    r.get("text_a", ""),
                    r.get("label_b", ""),
                    r.get("text_b", ""),
                    "" if r.get("mining_cosine") is None else r["mining_cosine"],
                ]
            )
    note = f'<p class="muted">first {MAX_TABLE_ROWS} of {len(rows)} pairs</p>' if len(rows) > MAX_TABLE_ROWS else ""
    return note + _table(["pair", "label A", "text A", "label B", "text B", "mining cosine"], rows[:MAX_TABLE_ROWS])


def _walk(root: Path):
    """Files below ``root`` in a stable order, skipping checkpoints and hidden folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not readable JSON ({e}); the run directory may be incomplete") from None


def collect(run_dir: Path) -> dict:
    """What the report shows, found in ``run_dir`` (no rendering)."""
    files = list(_walk(run_dir))
    found = {
        "config": run_dir / "config.yaml" if (run_dir / "config.yaml").is_file() else None,
        "metrics": run_dir / "metrics.json" if (run_dir / "metrics.json").is_file() else None,
        "log_history": run_dir / "log_history.json" if (run_dir / "log_history.json").is_file() else None,
        "adapter": run_dir / "adapter" / "prefalign_config.json"
        if (run_dir / "adapter" / "prefalign_config.json").is_file()
        else None,
    }
    probe_dirs: dict[Path, list[Path]] = {}
    for f in files:
        if (
            f.name in PROBE_FILES + ("pairs.jsonl",)
            or f.name.endswith("_summary.txt")
            or (f.suffix == ".png" and f.parent != run_dir)
        ):
            probe_dirs.setdefault(f.parent, []).append(f)
    found["probes"] = probe_dirs
    found["figures"] = [f for f in files if f.suffix == ".png" and f.parent == run_dir]
    cards = [f for f in files if f.name.endswith((".card.json", ".card.md"))]
    cards += _cards_beside_data(found["config"])
    found["cards"] = _unique(cards)
    if not any([found["config"], found["metrics"], found["log_history"], probe_dirs, cards, found["figures"]]):
        raise DataError(
            f"{run_dir} holds no run outputs (config.yaml, metrics.json, log_history.json, probe outputs or "
            "dataset cards); point prefalign report at a folder written by prefalign train or probe"
        )
    return found


def _unique(paths: list[Path]) -> list[Path]:
    seen, out = set(), []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _cards_beside_data(config: Path | None) -> list[Path]:
    """Cards of the data files the run's config names: <dir>/<split>.card.{json,md} beside <dir>/<split>.jsonl."""
    if config is None:
        return []
    try:
        data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return []
    out = []
    for key in ("train", "validation", "test"):
        value = data.get(key)
        if not isinstance(value, str) or value.startswith("builtin:"):
            continue
        path = Path(value)
        if not path.is_absolute() and not path.exists():
            path = config.parent / value
        stem = path.name.split(".")[0]
        for suffix in (".card.json", ".card.md"):
            card = path.with_name(stem + suffix)
            if card.is_file():
                out.append(card)
    return out


def _metrics_section(found: dict) -> str:
    if not found["metrics"]:
        return '<p class="muted">no metrics.json in this run directory.</p>'
    data = _read_json(found["metrics"])
    metrics = data.get("metrics", data) if isinstance(data, dict) else {}
    rows = [[k, v] for k, v in metrics.items() if _is_num(v) or isinstance(v, str)]
    out = _table(["metric", "value"], rows, cls="metrics")
    versions = data.get("versions") if isinstance(data, dict) else None
    if isinstance(versions, dict):
        out += '<p class="muted">' + _e(", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>"
    return out


def _curves_section(found: dict, workdir: Path) -> str:
    if not found["log_history"]:
        return '<p class="muted">no log_history.json in this run directory.</p>'
    history = _read_json(found["log_history"])
    if not isinstance(history, list):
        raise DataError(f"{found['log_history']} should hold a list of log entries")
    png, series = training_curves(history, workdir / "curves.png")
    if png is None:
        return '<p class="muted">log_history.json holds no logged losses or rates.</p>'
    return (
        _img(png, "training curves")
        + f'<p class="muted">series: {_e(", ".join(series))} ({len(history)} log entries)</p>'
    )


def _adapter_section(found: dict) -> str:
    if not found["adapter"]:
        return ""
    meta = _read_json(found["adapter"])
    rows = [[k, meta.get(k)] for k in ("method", "base_model", "label_names", "seed") if k in meta]
    prompt = meta.get("prompt") or {}
    if prompt:
        rows.append(["prompt", json.dumps(prompt, ensure_ascii=False)])
    method = meta.get("method_config") or {}
    out = "<h3>Checkpoint</h3>" + _table(
        ["key", "value"], [[k, json.dumps(v) if isinstance(v, (list, dict)) else v] for k, v in rows]
    )
    if method:
        out += (
            "<details><summary>method settings</summary>"
            + _table(["option", "value"], [[k, json.dumps(v)] for k, v in method.items()])
            + "</details>"
        )
    return out


def _probe_section(found: dict, run_dir: Path) -> str:
    if not found["probes"]:
        return (
            '<p class="muted">no probe outputs below this run directory; write them here with '
            "<code>prefalign probe drift|bias --output RUN_DIR/probes/...</code></p>"
        )
    parts = []
    for folder, files in sorted(found["probes"].items()):
        rel = folder.relative_to(run_dir) if folder != run_dir else Path(".")
        parts.append(f'<h3 id="probe-{_e(rel.as_posix())}">{_e(rel.as_posix())}</h3>')
        for f in sorted(files, key=lambda p: (p.suffix != ".txt", p.suffix != ".png", p.name)):
            if f.suffix == ".txt":
                parts.append(f"<pre>{_e(f.read_text(encoding='utf-8', errors='replace'))}</pre>")
            elif f.suffix == ".png":
                parts.append(f'<p class="muted">{_e(f.name)}</p>' + _img(f, f.name))
            elif f.suffix == ".csv":
                parts.append(f"<details open><summary>{_e(f.name)}</summary>{_csv_table(f)}</details>")
            elif f.name == "pairs.jsonl":
                parts.append(f"<details><summary>{_e(f.name)}: the pairs compared</summary>{_pairs_table(f)}</details>")
    return "".join(parts)


def _card_section(found: dict, run_dir: Path) -> str:
    if not found["cards"]:
        return '<p class="muted">no dataset cards (written by <code>prefalign shift</code>) found for this run.</p>'
    parts = []
    for card in found["cards"]:
        try:
            label = card.relative_to(run_dir).as_posix()
        except ValueError:
            label = str(card)
        parts.append(f'<div class="card"><h3>{_e(label)}</h3>')
        if card.suffix == ".json":
            data = _read_json(card)
            if isinstance(data, dict):
                rows = [
                    [k, v if _is_num(v) or isinstance(v, str) else json.dumps(v, ensure_ascii=False)[:600]]
                    for k, v in data.items()
                ]
                parts.append(_table(["field", "value"], rows))
            else:
                parts.append(f"<pre>{_e(json.dumps(data, indent=2)[:5000])}</pre>")
        else:
            parts.append(f"<pre>{_e(card.read_text(encoding='utf-8', errors='replace'))}</pre>")
        parts.append("</div>")
    return "".join(parts)


def render(run_dir: Path) -> str:
    """The report page of ``run_dir`` as an HTML string."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory not found: {run_dir}")
    found = collect(run_dir)
    title = f"prefalign run: {run_dir.resolve().name}"
    headline = []
    if found["adapter"]:
        meta = _read_json(found["adapter"])
        headline.append(f"{meta.get('method', '?')} on {meta.get('base_model', '?')}")
    if found["metrics"]:
        m = _read_json(found["metrics"]).get("metrics", {})
        headline += [f"{k} {m[k]:.4f}" for k in ("validation_accuracy", "test_accuracy") if _is_num(m.get(k))]
    with tempfile.TemporaryDirectory(prefix="prefalign-report-") as tmp:
        curves = _curves_section(found, Path(tmp))
    config = ""
    if found["config"]:
        config = (
            "<details><summary>config.yaml</summary><pre>"
            + _e(found["config"].read_text(encoding="utf-8", errors="replace"))
            + "</pre></details>"
        )
    figures = "".join(f'<p class="muted">{_e(f.name)}</p>' + _img(f, f.name) for f in found["figures"])
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        ("run", "Run", f"<p>{_e(' · '.join(headline) or str(run_dir))}</p>" + config + _adapter_section(found)),
        ("metrics", "Evaluation metrics", _metrics_section(found)),
        ("training", "Training curves", curves),
        ("probes", "Probes", _probe_section(found, run_dir)),
        ("cards", "Dataset cards", _card_section(found, run_dir)),
    ]
    if figures:
        sections.append(("figures", "Other figures", figures))
    nav = "<nav>" + "".join(f'<a href="#{sid}">{_e(name)}</a>' for sid, name, _ in sections) + "</nav>"
    body = "".join(f'<section id="{sid}"><h2>{_e(name)}</h2>{content}</section>' for sid, name, content in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
        f'<p class="muted">{_e(run_dir.resolve())} · generated {stamp} by prefalign {versions()["prefalign"]}</p>'
        f"{nav}{body}</body></html>\n"
    )


def build_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Write the report of ``run_dir`` to ``output`` (default ``<run_dir>/report.html``), atomically."""
    run_dir = Path(run_dir)
    page = render(run_dir)
    out = Path(output) if output else run_dir / "report.html"
    return write_text_atomically(out, page)
