"""One `prefalign reward` run: read the sources, estimate the prior, run Algorithm 1 with checkpoints,
score held-out pairs, and write the adapter, the weights and their curves (JSON and PNG)."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..methods.checkpoint import check_state_matches, read_checkpoint, write_checkpoint
from ..models.loading import LoadedModel, load_backbone
from ..utils.atomic_files import write_folder_atomically, write_text_atomically
from ..utils.environment import versions
from .bilevel import Bilevel
from .config import RewardConfig, RewardModelConfig
from .data import PreferenceExample, read_sources
from .losses import example_losses
from .model import RewardModel, predictions
from .plots import plot_weight_curves
from .prior import mc_dropout_statistics, prior_weights, standardise

STATE_FILE = "state.pt"
ADAPTER_KIND = "prefalign-reward"


@dataclass
class RewardResult:
    model: RewardModel
    metrics: dict
    weights: torch.Tensor  # the final w, one per training example
    prior: torch.Tensor  # w0
    curves: list[dict]
    output_dir: Path
    auxiliary: dict[str, torch.Tensor]  # u, the proxy of theta*(w) (eq. 3.10)


def train_reward(
    cfg: RewardConfig,
    *,
    backbone: LoadedModel | None = None,
    resume: bool = False,
    on_step: Callable[[int], None] | None = None,
) -> RewardResult:
    """Train a reward model with ``cfg.dorm.variant``'s weights; ``resume`` continues from the last checkpoint
    in ``<output_dir>/checkpoints`` (same config) and ends where the uninterrupted run would.
    ``on_step(step)`` is called after every step (and after its checkpoint, if one falls there)."""
    t0 = time.time()
    tc = cfg.training
    out = Path(tc.output_dir)
    ckpt_dir = out / "checkpoints"
    attributes = cfg.model.head_attributes
    train = read_sources(cfg.sources, attributes)  # bad rows fail before a model loads
    validation = read_sources(cfg.validation, attributes)
    test = read_sources(cfg.test, attributes) if cfg.test else []
    saved = latest_checkpoint(ckpt_dir, cfg) if resume else None
    if not resume:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    backbone = backbone or load_backbone(cfg.model.name)
    model = RewardModel(backbone, cfg.model, seed=tc.seed)
    metrics: dict = {}
    stats: dict = {}
    if saved is not None:
        w0 = saved["w0"]
        stats = {"u": saved["prior_u"], "q": saved["prior_q"]}
    elif cfg.dorm.variant in ("prior", "dorm"):
        w0, stats = estimate_prior(model, cfg, train, validation)
    else:
        w0 = torch.ones(len(train))
    torch.manual_seed(tc.seed)
    run = Bilevel(model, cfg, train, validation, w0)
    curves: list[dict] = []
    if saved is not None:
        run.load_state(saved)
        curves = list(saved["curves"])
    else:
        curves.append(curve_point(0, run.w, train, len(cfg.sources)))
    losses: dict[str, float] = {}
    while run.step < tc.steps:
        losses = run.one_step()
        if run.step % tc.log_every == 0 or run.step == tc.steps:
            point = curve_point(run.step, run.w, train, len(cfg.sources))
            curves.append({**point, **losses, "signal": run.take_signal()} if run.moves_w else {**point, **losses})
        if tc.checkpoint_every and run.step % tc.checkpoint_every == 0 and run.step < tc.steps:
            save_checkpoint(ckpt_dir, cfg, run, curves, stats)
        if on_step is not None:
            on_step(run.step)
    model.eval()
    metrics.update({f"validation_{k}": v for k, v in evaluate(model, validation, tc.eval_batch_size).items()})
    if test:
        metrics.update({f"test_{k}": v for k, v in evaluate(model, test, tc.eval_batch_size).items()})
    names = [s.name for s in cfg.sources]
    metrics["final_mean_weight"] = {names[s]: v for s, v in enumerate(source_means(run.w, train, len(names)))}
    metrics["prior_mean_weight"] = {names[s]: v for s, v in enumerate(source_means(run.w0, train, len(names)))}
    if len(stats.get("u", [])):  # eq. 3.6's two terms as they enter it (standardised, clipped), per source
        for key in ("u", "q"):
            z = standardise(stats[key], cfg.dorm.clip).float()
            metrics[f"prior_z{key}_mean"] = {names[s]: v for s, v in enumerate(source_means(z, train, len(names)))}
    metrics["steps"] = run.step
    metrics["seconds"] = round(time.time() - t0, 2)
    write_outputs(out, cfg, model, backbone, train, run, curves, stats, metrics)
    u = {n: t.detach().clone() for n, t in run.u.items()}
    return RewardResult(model, metrics, run.w.clone(), run.w0.clone(), curves, out, u)


def brief_training(model: RewardModel, cfg: RewardConfig, examples: list[PreferenceExample]) -> None:
    """``dorm.prior_steps`` unweighted Adam steps of ``model`` on ``examples`` (seeded by training.seed + 1)."""
    d, tc = cfg.dorm, cfg.training
    params = list(model.trainable_parameters().values())
    opt = torch.optim.AdamW(params, lr=tc.learning_rate, weight_decay=tc.weight_decay)
    rng = random.Random(tc.seed + 1)
    torch.manual_seed(tc.seed + 1)
    model.train()
    for _ in range(d.prior_steps):
        batch = [examples[i] for i in rng.sample(range(len(examples)), min(tc.batch_size, len(examples)))]
        opt.zero_grad(set_to_none=True)
        example_losses(model, batch).mean().backward()
        opt.step()


def estimate_prior(
    model: RewardModel,
    cfg: RewardConfig,
    train: list[PreferenceExample],
    validation: list[PreferenceExample] | None = None,
) -> tuple[torch.Tensor, dict]:
    """w0 (eq. 3.6) from a brief unweighted training of ``model`` (on ``train``, or on ``validation`` when
    ``dorm.prior_data`` says so), whose trained parts are then put back."""
    d, tc = cfg.dorm, cfg.training
    start = model.trainable_state_dict()
    brief_training(model, cfg, validation if d.prior_data == "validation" and validation else train)
    u, q = mc_dropout_statistics(model, train, d.mc_passes, tc.eval_batch_size, tc.seed + 2, d.q_form)
    model.load_state_dict(start, strict=False)
    w0 = prior_weights(u, q, d.gamma, d.clip, u_coefficient=d.u_coefficient, scaling=d.prior_scaling)
    return w0, {"u": u, "q": q}


@torch.no_grad()
def evaluate(model: RewardModel, examples: list[PreferenceExample], batch_size: int) -> dict[str, float]:
    """Pairwise accuracy (share of pairs with r(chosen) > r(rejected)) and ratings' mean squared error."""
    was = model.training
    model.eval()
    right, pairs, sq, rated = 0, 0, 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        margins, preds = predictions(model, batch)
        if margins is not None:
            right += int((margins > 0).sum())
            pairs += len(margins)
        if preds is not None:
            r = [ex for ex in batch if not ex.is_pair]
            target, mask = torch.tensor([ex.ratings for ex in r]), torch.tensor([ex.mask for ex in r])
            sq += float((((preds.cpu() - target) ** 2) * mask).sum())
            rated += int(mask.sum())
    model.train(was)
    out = {}
    if pairs:
        out["pairwise_accuracy"] = right / pairs
    if rated:
        out["rating_mse"] = sq / rated
    return out


def source_means(w: torch.Tensor, train: list[PreferenceExample], n_sources: int) -> list[float]:
    """Each source's mean weight."""
    src = torch.tensor([ex.source for ex in train])
    return [float(w[src == s].mean()) for s in range(n_sources)]


def curve_point(step: int, w: torch.Tensor, train: list[PreferenceExample], n_sources: int) -> dict:
    """One point of Figure 3.4: per source the mean weight and its share of the sum of the means."""
    means = source_means(w, train, n_sources)
    total = sum(means) or 1.0
    return {"step": step, "mean_weight": means, "share": [m / total for m in means]}


# -- checkpoints -------------------------------------------------------------------------------------
def _fingerprint(cfg: RewardConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def save_checkpoint(folder: Path, cfg: RewardConfig, run: Bilevel, curves: list[dict], stats: dict) -> None:
    """theta, u, w, w0, both optimisers, the sampler and dropout generators, the curves: one file, written
    to a temporary folder renamed into place (a kill mid-save leaves the previous checkpoint whole)."""
    state = {
        **run.state(),
        "curves": curves,
        "config": _fingerprint(cfg),
        "prior_u": stats.get("u", torch.zeros(0)),
        "prior_q": stats.get("q", torch.zeros(0)),
    }
    write_folder_atomically(folder / f"step-{run.step:07d}", lambda tmp: torch.save(state, tmp / STATE_FILE))


def latest_checkpoint(folder: Path, cfg: RewardConfig) -> dict | None:
    """The newest complete checkpoint's state, or None when the run has none yet."""
    done = sorted(p for p in folder.glob("step-*") if (p / STATE_FILE).is_file()) if folder.is_dir() else []
    if not done:
        return None
    path = done[-1] / STATE_FILE
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise CheckpointError(
            f"cannot read {path} ({str(exc).splitlines()[0][:120]}); start without --resume"
        ) from None
    if state.get("config") != _fingerprint(cfg):
        raise CheckpointError(f"{folder} belongs to a run with another config; use that config or drop --resume")
    return state


# -- outputs -----------------------------------------------------------------------------------------
def write_outputs(
    out: Path,
    cfg: RewardConfig,
    model: RewardModel,
    backbone: LoadedModel,
    train: list[PreferenceExample],
    run: Bilevel,
    curves: list[dict],
    stats: dict,
    metrics: dict,
) -> None:
    """adapter/, weights.json, weight_curves.json and .png, metrics.json, config.json."""
    meta = {
        "kind": ADAPTER_KIND,
        "base_model": backbone.name,
        "model_config": cfg.model.to_dict(),
        "variant": cfg.dorm.variant,
        "versions": versions(),
    }
    write_checkpoint(out / "adapter", model.trainable_state_dict(), meta)
    names = [s.name for s in cfg.sources]
    rows = []
    for i, ex in enumerate(train):
        row = {"source": names[ex.source], "row": ex.row, "w0": float(run.w0[i]), "w": float(run.w[i])}
        if len(stats.get("u", [])):
            row.update(u=float(stats["u"][i]), q=float(stats["q"][i]))
        rows.append(row)
    write_text_atomically(out / "weights.json", json.dumps(rows))
    write_text_atomically(out / "weight_curves.json", json.dumps({"sources": names, "points": curves}, indent=1))
    plot_weight_curves(names, curves, out / "weight_curves.png", title=f"{cfg.dorm.variant}: mean weight per source")
    write_text_atomically(out / "metrics.json", json.dumps({"metrics": metrics, "versions": versions()}, indent=2))
    write_text_atomically(out / "config.json", cfg.to_json())


def load_reward_model(folder: str | Path, *, backbone: LoadedModel | None = None) -> RewardModel:
    """A trained reward adapter (``<output_dir>/adapter``) on its base model, in eval mode."""
    state, meta = read_checkpoint(folder)
    if meta.get("kind") != ADAPTER_KIND:
        raise CheckpointError(f"{folder} is not a reward adapter (written by `prefalign reward`)")
    cfg = RewardModelConfig.from_dict(meta["model_config"], where="model")
    backbone = backbone or load_backbone(meta["base_model"])
    model = RewardModel(backbone, cfg)
    check_state_matches(state, model.trainable_state_dict(), str(folder))
    model.load_state_dict(state, strict=False)
    return model.eval()


@torch.no_grad()
def score_pairs(model: RewardModel, examples: list[PreferenceExample], batch_size: int = 32) -> list[dict]:
    """Each pair's rewards and margin, in order."""
    out = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        n = len(batch)
        r = model.rewards([ex.chosen for ex in batch] + [ex.rejected for ex in batch]).mean(-1).cpu()
        for i, ex in enumerate(batch):
            c, j = float(r[i]), float(r[n + i])
            out.append({"row": ex.row, "reward_chosen": c, "reward_rejected": j, "margin": c - j})
    return out
