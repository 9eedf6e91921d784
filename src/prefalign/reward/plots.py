"""Figure 3.4: each source's mean weight over the steps of a run (matplotlib, Agg, PNG written atomically)."""

from __future__ import annotations

from pathlib import Path

from ..utils.atomic_files import save_figure_atomically


def plot_weight_curves(names: list[str], points: list[dict], path: str | Path, title: str = "") -> Path:
    """One line per source: its mean weight at each logged step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    steps = [p["step"] for p in points]
    for s, name in enumerate(names):
        ax.plot(steps, [p["mean_weight"][s] for p in points], marker="o", markersize=2.5, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("mean weight w of the source's examples")
    ax.set_title(title or "mean weight per source")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure_atomically(fig, path)
