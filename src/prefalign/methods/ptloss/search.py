"""Algorithm 2: choose PTLoss's coefficients by the quality score of their proxy teacher.

For each order M = 1..orders, ``trials`` coefficient sets are drawn uniformly from [low, high]
(shape (M,) shared by the classes, or (C, M) per class), each set's proxy teacher is solved on the
validation examples (proxy.py) and scored with Q (eq. 4.20); the set with the lowest Q wins. Every
tried set and its Q is written to ``search.json`` after each trial, atomically, so a stopped search
resumes where it stopped (the same settings and validation data are required; otherwise it starts
over), and ``search.png`` plots Q per trial with the best so far.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ...errors import ConfigError, DataError
from ...utils.atomic_files import save_figure_atomically, write_text_atomically
from .proxy import quality_score, solve_proxy


@dataclass
class SearchSettings:
    orders: int = 5
    trials: int = 100
    low: float = -1.0
    high: float = 10.0
    per_class: bool = False
    seed: int = 0
    solver: str = "newton"
    distance: str = "l2"  # eq. 4.20's ||p - y||: the L2 norm, or its square (proxy.quality_score)
    entropy: bool = True  # eq. 4.20's squared-entropy term; False: the distance term alone

    def check(self) -> None:
        if self.orders < 1 or self.trials < 1:
            raise ConfigError(
                f"the coefficient search needs orders >= 1 and trials >= 1, not {self.orders}, {self.trials}"
            )
        if self.distance not in ("l2", "squared"):
            raise ConfigError(f"the quality score's distance must be 'l2' or 'squared', not {self.distance!r}")
        if not self.low < self.high:
            raise ConfigError(f"the coefficient search range [{self.low}, {self.high}] is empty; set low < high")


def draw(settings: SearchSettings, order: int, trial: int, num_classes: int) -> np.ndarray:
    """The ``trial``-th coefficient set of ``order``: the same numbers whenever it is drawn (resuming)."""
    rng = np.random.default_rng([settings.seed, order, trial])
    shape = (num_classes, order) if settings.per_class else (order,)
    return rng.uniform(settings.low, settings.high, size=shape)


def data_digest(teacher: np.ndarray, labels: np.ndarray) -> str:
    """A short hash of the validation teacher distributions and labels the search scored on."""
    h = hashlib.sha256(np.ascontiguousarray(teacher, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def search_coefficients(
    teacher: np.ndarray,
    labels: np.ndarray,
    settings: SearchSettings,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
) -> dict:
    """Run (or resume) Algorithm 2 on validation ``teacher`` distributions (N, C) and gold ``labels`` (N,).

    Returns the record written to ``<out_dir>/search.json``: settings, ``q_kl`` (Q of the teacher itself,
    eps = 0), every ``tried`` set with its Q, and the ``best`` one.
    """
    settings.check()
    teacher = np.asarray(teacher, dtype=float)
    labels = np.asarray(labels, dtype=int)
    if teacher.ndim != 2 or len(teacher) == 0:
        raise DataError("the coefficient search has an empty validation set; give it labelled examples")
    if len(labels) != len(teacher):
        raise DataError(f"the coefficient search has {len(teacher)} teacher rows but {len(labels)} labels")
    n, c = teacher.shape
    if labels.min() < 0 or labels.max() >= c:
        raise DataError(f"validation labels must lie in 0..{c - 1} for a {c}-class teacher")
    record = {
        "settings": asdict(settings),
        "examples": n,
        "classes": c,
        "data_digest": data_digest(teacher, labels),
        "q_kl": quality_score(
            np.maximum(teacher, 1e-12) / np.maximum(teacher, 1e-12).sum(1, keepdims=True),
            labels,
            settings.distance,
            settings.entropy,
        ),
        "tried": [],
    }
    path = Path(out_dir) / "search.json" if out_dir is not None else None
    if path is not None and path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        if all(old.get(k) == record[k] for k in ("settings", "examples", "classes", "data_digest")):
            record["tried"] = old.get("tried", [])
    done = {(t["order"], t["trial"]) for t in record["tried"]}
    total = settings.orders * settings.trials
    bar = tqdm(total=total, initial=len(done), desc="PTLoss coefficient search", disable=not progress, file=sys.stderr)
    best = min(record["tried"], key=lambda t: t["q"], default=None)
    for order in range(1, settings.orders + 1):
        for trial in range(settings.trials):
            if (order, trial) in done:
                continue
            eps = draw(settings, order, trial, c)
            result = solve_proxy(teacher, eps, settings.solver)
            entry = {
                "order": order,
                "trial": trial,
                "eps": eps.tolist(),
                "q": quality_score(result.proxy, labels, settings.distance, settings.entropy),
                "fallback": result.fallback,
            }
            record["tried"].append(entry)
            if best is None or entry["q"] < best["q"]:
                best = entry
            if path is not None:
                write_text_atomically(path, json.dumps({**record, "best": best}, indent=1))
            bar.update(1)
            bar.set_postfix(order=order, best_q=f"{best['q']:.4f}", q_kl=f"{record['q_kl']:.4f}", refresh=False)
    bar.close()
    record["tried"].sort(key=lambda t: (t["order"], t["trial"]))
    record["best"] = best
    if path is not None:
        write_text_atomically(path, json.dumps(record, indent=1))
        plot_search(record, path.with_suffix(".png"))
    return record


def plot_search(record: dict, path: str | Path) -> Path:
    """Q of every tried set in search order, coloured by order, with the best so far and the KL teacher's Q."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tried = record["tried"]
    q = np.array([t["q"] for t in tried])
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for order in sorted({t["order"] for t in tried}):
        idx = [i for i, t in enumerate(tried) if t["order"] == order]
        ax.scatter(idx, q[idx], s=6, label=f"order {order}")
    ax.plot(np.minimum.accumulate(q), color="k", lw=1.2, label="best so far")
    ax.axhline(record["q_kl"], color="C3", ls="--", lw=1, label="teacher (KL, eps = 0)")
    ax.set_yscale("log")
    ax.set_xlabel("coefficient set tried")
    ax.set_ylabel("Q (eq. 4.20, lower is better)")
    ax.set_title(f"PTLoss coefficient search on {record['examples']} validation examples", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return save_figure_atomically(fig, path)
