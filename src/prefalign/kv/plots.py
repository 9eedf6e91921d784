"""PNG charts of a LoRC schedule and a single-layer sensitivity profile (matplotlib, imported lazily)."""

from __future__ import annotations

from pathlib import Path

from ..utils.atomic_files import save_figure_atomically
from .schedule import Schedule


def plot_schedule(schedules: list[Schedule], path: str | Path) -> Path:
    """Rank per layer for each schedule (a skipped layer drawn at d_max, hollow), and ln kappa~ on a 2nd axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    skipped_labelled = False
    for s in schedules:
        xs = list(range(len(s.ranks)))
        ys = [s.d_max if r is None else r for r in s.ranks]
        ax.plot(xs, ys, marker="o", label=f"{s.kind} (ratio {s.ratio:.3f})")
        skipped = [x for x, r in zip(xs, s.ranks) if r is None]
        if skipped:
            label = None if skipped_labelled else "skipped (uncompressed)"
            ax.scatter(skipped, [s.d_max] * len(skipped), facecolors="none", edgecolors="k", s=80, label=label)
            skipped_labelled = True
    ax.set_xlabel("layer")
    ax.set_ylabel("rank d_c per block")
    ax.set_ylim(0, schedules[0].d_max * 1.05)
    if schedules and schedules[0].log_cumulative:
        ax2 = ax.twinx()
        ax2.plot(schedules[0].log_cumulative, color="gray", linestyle="--", label="ln kappa~ (eq. 5.12)")
        ax2.set_ylabel("ln cumulative condition number", color="gray")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"LoRC schedule, target ratio {schedules[0].target_ratio:g}")
    fig.tight_layout()
    return save_figure_atomically(fig, path)


def plot_sensitivity(profile: dict, path: str | Path, metric: str = "perplexity") -> Path:
    """Bar chart of the score change when only that layer is compressed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(range(len(profile["deltas"])), profile["deltas"], color="tab:red")
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xlabel("layer compressed alone")
    ax.set_ylabel(f"{metric} change")
    ax.set_title(f"single-layer sensitivity (rank {profile['rank']}, baseline {profile['baseline']:.3f})")
    fig.tight_layout()
    return save_figure_atomically(fig, path)
