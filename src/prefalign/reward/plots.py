"""Figure 3.4: each source's mean weight over the steps of a run, and its share of the sum of the sources'
means (the figure's numbers sum to 1 across its five datasets); matplotlib, Agg, PNG written atomically."""

from __future__ import annotations

from pathlib import Path

from ..utils.atomic_files import save_figure_atomically


def plot_weight_curves(names: list[str], points: list[dict], path: str | Path, title: str = "") -> Path:
    """One line per source in two panels: its mean weight, and its share of the sum of the means, per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0))
    steps = [p["step"] for p in points]
    for ax, key, label in (
        (axes[0], "mean_weight", "mean weight w of the source's examples"),
        (axes[1], "share", "share of the sum of the sources' means"),
    ):
        for s, name in enumerate(names):
            ax.plot(steps, [p[key][s] for p in points], marker="o", markersize=2.0, label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "mean weight per source")
    fig.tight_layout()
    return save_figure_atomically(fig, path)
