"""Figures of the probes and the report (matplotlib, Agg backend, PNG files written atomically)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from ..utils.atomic_files import save_figure_atomically


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("the probe figures and the report need matplotlib: pip install matplotlib") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "model"


def save(fig, path: Path, dpi: int = 90) -> Path:
    _plt()  # a clear error when matplotlib is missing
    return save_figure_atomically(fig, path, dpi)


def _int_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _finite(values) -> bool:
    return any(not (isinstance(v, float) and math.isnan(v)) for v in values)


DRIFT_PANELS = (
    ("cosine_similarity", "cosine similarity of pooled states"),
    ("edit_distance", "top-k edit distance (logit lens)"),
    ("kl_divergence", "KL(p_A || p_B) of label distributions"),
    ("label_difference", "share of pairs predicted differently"),
)


def drift_figure(per_subject: Sequence[Sequence[dict]], path: Path, title: str = "") -> Path:
    """Cosine, edit distance and KL per layer (plus the label-difference share), one line per model."""
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.7))
    for ax, (key, label) in zip(axes, DRIFT_PANELS):
        for rows in per_subject:
            values = [r[key] for r in rows]
            if _finite(values):
                ax.plot([r["layer"] for r in rows], values, marker="o", markersize=3, label=rows[0]["model"])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(_int_ticks())
        ax.grid(alpha=0.3)
    axes[3].set_ylim(-0.05, 1.05)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        axes[0].legend(fontsize=8)
    n = per_subject[0][0]["n_pairs"] if per_subject and per_subject[0] else 0
    fig.suptitle(f"{title + ': ' if title else ''}layer-wise preference drift, mean over {n} pairs", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def _colors(n: int):
    plt = _plt()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _bias_panels(result, ax_contain, ax_both, ylim=None) -> None:
    layers = list(range(1, result.num_layers + 1))
    colors = _colors(len(result.label_names))
    for c, name in enumerate(result.label_names):
        con = result.contain[:, c].tolist()
        nco = result.not_contain[:, c].tolist()
        ax_contain.plot(layers, con, color=colors[c], label=f"{name} (n={result.n_contain[c]})")
        ax_both.plot(layers, con, color=colors[c], label=f"Contain {name}")
        ax_both.plot(layers, nco, color=colors[c], linestyle="--", label=f"NOT Contain {name}")
    ax_contain.set_title(f"{result.subject}: Contain of each label", fontsize=9)
    ax_both.set_title(f"{result.subject}: Contain (solid) vs NOT Contain (dashed)", fontsize=9)
    for ax in (ax_contain, ax_both):
        ax.set_xlabel("layer (early exit through the LM head)")
        ax.xaxis.set_major_locator(_int_ticks())
        ax.set_ylabel("mean logit of the label word")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if ylim:
            ax.set_ylim(*ylim)


def bias_figure(result, path: Path, title: str = "") -> Path:
    """Figure 2a (Contain of every label) and 2b (Contain vs NOT Contain) for one model."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    _bias_panels(result, a, b)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def bias_compare_figure(results: Sequence, path: Path, title: str = "") -> Path:
    """Appendix G's Figure 6: one column per model (before / after), shared y-axes."""
    plt = _plt()
    values = torch.cat([torch.cat([r.contain.flatten(), r.not_contain.flatten()]) for r in results])
    values = values[~torch.isnan(values)]
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo or 1.0)
    fig, axes = plt.subplots(2, len(results), figsize=(6 * len(results), 7.5), squeeze=False)
    for col, r in enumerate(results):
        _bias_panels(r, axes[0][col], axes[1][col], ylim=(lo - pad, hi + pad))
    fig.suptitle(f"{title + ': ' if title else ''}" + " vs ".join(r.subject for r in results), fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def training_curves(log_history: list[dict], path: Path) -> tuple[Path | None, list[str]]:
    """Every logged loss term, every gate rate and the evaluation accuracy against the step.

    Returns the PNG (None when nothing was logged) and the names of the plotted series.
    """
    plt = _plt()
    series: dict[str, tuple[list, list]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if (
                key in ("loss", "eval_loss")
                or key.startswith(("loss_", "gate_", "eval_loss_", "eval_gate_"))
                or key in ("eval_accuracy", "learning_rate")
            ):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(step)
                ys.append(float(value))
    if not series:
        return None, []
    groups = [
        ("losses", [k for k in series if "loss" in k]),
        ("gate pass rates", [k for k in series if "gate_" in k]),
        ("evaluation accuracy", [k for k in series if k == "eval_accuracy"]),
        ("learning rate", [k for k in series if k == "learning_rate"]),
    ]
    groups = [(t, keys) for t, keys in groups if keys]
    cols = min(2, len(groups))
    rows = (len(groups) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.6 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(groups) :]:
        ax.set_visible(False)
    for ax, (label, keys) in zip(flat, groups):
        for key in keys:
            xs, ys = series[key]
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(_int_ticks())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path), list(series)
