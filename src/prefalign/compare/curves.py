"""Validation curves of a comparison (L-Tuning appendix A.1, Figure 2): median over seeds per method."""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path

from ..training.run import mean_logged
from ..utils.atomic_files import save_figure_atomically
from .config import CompareConfig

CURVE_KEYS = ("eval_loss", "eval_accuracy")


def validation_curve(log_history: list[dict]) -> list[dict]:
    """The evaluation points of a Trainer log history: [{step, eval_loss, eval_accuracy}, ...], by step."""
    points = {}
    for entry in log_history:
        if "eval_loss" in entry and "step" in entry:
            points[int(entry["step"])] = {
                "step": int(entry["step"]),
                **{k: float(entry[k]) for k in CURVE_KEYS if k in entry},
            }
    return [points[s] for s in sorted(points)]


# Training terms whose mean over a run's logs goes into its record as ``<key>_mean`` (DCPC's share of
# pairs through each gate and its PCM's spread across the batch, Learned-Adapter's softmax weight on the FFN
# place), so a dataset's ``also: [gate_cos_rate_mean]`` can show it. Every logged ``loss_*`` term (and ``loss``
# itself) goes in the same way.
LOGGED_MEANS = ("gate_cos_rate", "gate_ambiguity_rate", "arch_ffn_weight", "pcm_p_spread", "pcm_scale_spread")


def logged_means(logs: list[dict]) -> dict[str, float]:
    """``{gate_cos_rate_mean: ..., loss_align_mean: ..., ...}`` for the terms the run logged (training logs only)."""
    keys = list(LOGGED_MEANS) + sorted(
        {k for entry in logs for k in entry if (k == "loss" or k.startswith("loss_")) and k not in LOGGED_MEANS}
    )
    means = {f"{key}_mean": mean_logged(logs, key) for key in keys}
    return {k: v for k, v in means.items() if v is not None}


def median_curves(results: list[dict], key: str = "eval_loss") -> dict[tuple[str, str, str], list[tuple[int, float]]]:
    """(model, method, column) -> [(step, median of ``key`` over the seeds evaluated at that step)]."""
    by_step: dict[tuple[str, str, str], dict[int, list[float]]] = {}
    for r in results:
        if r is None or r.get("status") != "ok":
            continue
        cell = by_step.setdefault((r["model"], r["method"], r["column"]), {})
        for point in r.get("curve") or []:
            if key in point:
                cell.setdefault(point["step"], []).append(point[key])
    return {k: [(s, statistics.median(v)) for s, v in sorted(steps.items())] for k, steps in by_step.items() if steps}


def curves_chart(cfg: CompareConfig, results: list[dict], path: Path, key: str = "eval_loss") -> Path | None:
    """One panel per (backbone, dataset column): each method's median validation ``key`` against the step."""
    curves = median_curves(results, key)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (model.label, column)
        for model in cfg.models
        for d in cfg.datasets
        for column in (d.name, d.shifted_name)
        if column is not None
    ]
    panels = [p for p in panels if any((p[0], m.label, p[1]) in curves for m in cfg.methods)]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.4, 4.6 * len(panels)), 3.8), squeeze=False)
    for ax, (model, column) in zip(axes[0], panels):
        for m in cfg.methods:
            points = curves.get((model, m.label, column))
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3, label=m.label)
        ax.set_title(f"{model}: {column}")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"validation {key.removeprefix('eval_').replace('_', ' ')} (each method's own)")
        ax.legend(fontsize=7)
    title = f"{cfg.title}: median over seeds {', '.join(map(str, cfg.seeds))}"
    fig.suptitle("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    fig.tight_layout()
    return save_figure_atomically(fig, path)
