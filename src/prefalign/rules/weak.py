"""The weak model m_t: a small head on frozen sentence embeddings, trained on the weakly labelled set
(eq. 2.8) and self-trained on the unmatched texts (eq. 2.9-2.10)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from .config import WeakModelConfig
from .core import self_training_targets


def build_head(dim: int, num_classes: int, cfg: WeakModelConfig, seed: int) -> torch.nn.Module:
    """A linear softmax head or a one-hidden-layer MLP, initialised from ``seed``."""
    torch.manual_seed(seed)
    if cfg.head == "mlp":
        return torch.nn.Sequential(
            torch.nn.Linear(dim, cfg.hidden), torch.nn.ReLU(), torch.nn.Linear(cfg.hidden, num_classes)
        )
    return torch.nn.Linear(dim, num_classes)


def _standardise(x: np.ndarray, stats: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    return torch.as_tensor((x - stats[0]) / stats[1], dtype=torch.float32)


def feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (floored) the head's inputs are standardised with."""
    return x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)


class WeakModel:
    """m_t: a head with the feature statistics it was trained with."""

    def __init__(self, head: torch.nn.Module, stats: tuple[np.ndarray, np.ndarray]):
        self.head = head
        self.stats = stats

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.head.eval()
        return F.softmax(self.head(_standardise(x, self.stats)), dim=-1).numpy().astype(np.float64)

    def save(self, path) -> None:
        tensors = {f"head.{k}": v.detach().contiguous() for k, v in self.head.state_dict().items()}
        tensors["stats.mean"] = torch.as_tensor(self.stats[0], dtype=torch.float32)
        tensors["stats.std"] = torch.as_tensor(self.stats[1], dtype=torch.float32)
        save_file(tensors, str(path))

    @classmethod
    def load(cls, path, dim: int, num_classes: int, cfg: WeakModelConfig) -> WeakModel:
        try:
            tensors = load_file(str(path))
            head = build_head(dim, num_classes, cfg, 0)
            head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        except Exception as exc:  # a truncated file or a head of another shape
            raise CheckpointError(f"cannot read the weak model {path} ({str(exc).splitlines()[0][:120]})") from None
        return cls(head, (tensors["stats.mean"].numpy().astype(np.float64), tensors["stats.std"].numpy()))


def train_weak_model(
    x_train: np.ndarray,
    targets: np.ndarray,
    x_unmatched: np.ndarray,
    num_classes: int,
    cfg: WeakModelConfig,
    seed: int,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> WeakModel:
    """Fit m_t on (x_train, targets) with cross-entropy (eq. 2.8; ``targets`` are label indices or rows of
    probabilities), then, if enabled, self-train on ``x_unmatched``: the targets of eq. 2.9 recomputed
    ``self_training_rounds`` times, each followed by steps on eq. 2.8 + weight * eq. 2.10 (KL)."""
    stats = stats if stats is not None else feature_stats(np.concatenate([x_train, x_unmatched]))
    head = build_head(x_train.shape[1], num_classes, cfg, seed)
    opt = torch.optim.Adam(head.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    xt = _standardise(x_train, stats)
    t = torch.as_tensor(targets)
    soft = t.dim() == 2
    t = t.float() if soft else t.long()

    def supervised() -> torch.Tensor:
        logits = head(xt)
        if soft:
            return -(t * F.log_softmax(logits, dim=-1)).sum(-1).mean()
        return F.cross_entropy(logits, t)

    head.train()
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = supervised()
        loss.backward()
        opt.step()
    if cfg.self_training and len(x_unmatched) and cfg.self_training_rounds > 0:
        xu = _standardise(x_unmatched, stats)
        for _ in range(cfg.self_training_rounds):
            with torch.no_grad():
                q = F.softmax(head(xu), dim=-1).numpy().astype(np.float64)
            y_tilde = torch.as_tensor(self_training_targets(q), dtype=torch.float32)
            for _ in range(cfg.self_training_epochs):
                opt.zero_grad()
                log_q = F.log_softmax(head(xu), dim=-1)
                kl = F.kl_div(log_q, y_tilde, reduction="batchmean")  # eq. 2.10: KL(y~ || m_t(x))
                loss = supervised() + cfg.self_training_weight * kl
                loss.backward()
                opt.step()
    head.eval()
    return WeakModel(head, stats)
