"""Algorithm 1 of the thesis (eq. 3.7-3.10): first-order bilevel optimisation of per-example weights.

Each step draws a training mini-batch B and a validation mini-batch V, computes l_i(theta) and l_i(u) on B
(u: the auxiliary copy of the trained parameters, the proxy of theta*(w)), then, all from the step's
starting values (w_t, theta_t, u_t):

    u     <- Adam step on  alpha * L_tr(w, u; B)                               (line 3)
    theta <- Adam step on  L_val(theta; V) + alpha * L_tr(w, theta; B)          (line 4)
    w     <- max(0, w - eta_w * dL_alpha/dw)                                     (line 5)
    w     <- w / mean(w)                               (only with dorm.w_normalise: mean)

The w-gradient (eq. 3.10) has two readings of the training loss's scale (``dorm.w_gradient``):
'per-example' (default) takes eq. 3.7 as written, a sum over the examples, so dL_tr/dw_i = l_i and the
step moves the batch's weights by their whole partial derivative,
    dL_alpha/dw_i = 2 beta (w_i - w0_i) + alpha (l_i(theta) - l_i(u))           for i in B,
leaving the others (whose data term this step does not compute) where they are; 'batch-mean' takes
L_tr(w, theta; B) = (1/|B|) sum_i w_i l_i(theta), so the data term is alpha/|B| (l_i(theta) - l_i(u))
while the prior's pull 2 beta (w - w0) moves every weight every step. L_val does not depend on w
explicitly, so its w-gradient is zero in the first-order method. The theta and u steps use the batch
mean in both readings (with Adam only the ratio of L_val to alpha L_tr matters there).

The variants share the theta step (so every variant sees the validation pairs equally) and differ only
in w: 'unweighted' keeps w = 1, 'prior' keeps w = w0,
'dorm' starts at w0 and moves, 'bilevel-no-prior' starts at 1 with beta = 0.
"""

from __future__ import annotations

import random

import torch

from .config import RewardConfig
from .data import PreferenceExample
from .losses import example_losses, weighted_loss
from .model import RewardModel


def w_gradient(
    w: torch.Tensor,
    w0: torch.Tensor,
    index: torch.Tensor,
    loss_theta: torch.Tensor,
    loss_u: torch.Tensor,
    alpha: float,
    beta: float,
    scale: str = "per-example",
) -> torch.Tensor:
    """dL_alpha/dw of eq. 3.10 for the whole weight vector under ``scale`` ('per-example' or 'batch-mean',
    see the module's docstring); ``index`` holds the batch's example ids (an id drawn twice collects both
    data terms). Under 'per-example' the weights outside the batch get 0."""
    delta = (loss_theta.detach() - loss_u.detach()).to(w.dtype)
    if scale == "batch-mean":
        return (2.0 * beta * (w - w0)).index_add(0, index, alpha / len(index) * delta)
    grad = torch.zeros_like(w).index_add(0, index, alpha * delta)
    batch = torch.unique(index)
    grad[batch] += 2.0 * beta * (w[batch] - w0[batch])
    return grad


def _rng_state(device: torch.device) -> tuple:
    return torch.get_rng_state(), (torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


class Bilevel:
    """The state of one run (theta inside ``model``, u, w, both optimisers, the sampler) and its step."""

    def __init__(
        self,
        model: RewardModel,
        cfg: RewardConfig,
        train: list[PreferenceExample],
        validation: list[PreferenceExample],
        w0: torch.Tensor,
    ) -> None:
        self.model, self.cfg, self.train, self.validation = model, cfg, train, validation
        d, tc = cfg.dorm, cfg.training
        self.variant = d.variant
        self.moves_w = d.variant in ("dorm", "bilevel-no-prior")
        self.beta = 0.0 if d.variant == "bilevel-no-prior" else d.beta
        self.w0 = torch.ones(len(train)) if d.variant in ("unweighted", "bilevel-no-prior") else w0.float().clone()
        self.w = self.w0.clone()
        theta = list(model.trainable_parameters().values())
        self.opt_theta = torch.optim.AdamW(theta, lr=tc.learning_rate, weight_decay=tc.weight_decay)
        self.u = {n: p.detach().clone().requires_grad_(True) for n, p in model.trainable_parameters().items()}
        self.opt_u = torch.optim.AdamW(list(self.u.values()), lr=tc.learning_rate, weight_decay=tc.weight_decay)
        self.rng = random.Random(tc.seed)  # draws the mini-batches
        self.step = 0
        self.sources = torch.tensor([ex.source for ex in train])
        n_sources = len(cfg.sources)
        # alpha (l_i(theta) - l_i(u)) summed per source since the last curve point: what pushes w (eq. 3.10)
        self.signal_sum, self.signal_n = torch.zeros(n_sources, dtype=torch.float64), torch.zeros(n_sources)

    def sample(self, n: int) -> list[int]:
        b = min(self.cfg.training.batch_size, n)
        return self.rng.sample(range(n), b)

    def one_step(self) -> dict[str, float]:
        """Algorithm 1's lines 2-5; returns the step's losses."""
        alpha = self.cfg.dorm.alpha
        tr = self.sample(len(self.train))
        va = self.sample(len(self.validation))
        index = torch.tensor(tr)
        batch = [self.train[i] for i in tr]
        w_batch = self.w[index].to(self.model.device)
        self.model.train()
        out = {}
        masks = _rng_state(self.model.device)
        if self.moves_w:  # line 3: u follows the weighted training loss alone
            loss_u = example_losses(self.model, batch, params=self.u)
            self.opt_u.zero_grad(set_to_none=True)
            (alpha * weighted_loss(loss_u, w_batch)).backward()
            self.opt_u.step()
            out["loss_tr_u"] = float(weighted_loss(loss_u.detach(), w_batch))
            # l_i(theta) under the same dropout masks as l_i(u): their difference (eq. 3.10) then carries no
            # dropout noise, only the difference between theta and u (common random numbers)
            _set_rng_state(self.model.device, masks)
        loss_theta = example_losses(self.model, batch)
        loss_val = example_losses(self.model, [self.validation[i] for i in va]).mean()
        self.opt_theta.zero_grad(set_to_none=True)
        (loss_val + alpha * weighted_loss(loss_theta, w_batch)).backward()  # line 4
        self.opt_theta.step()
        if self.moves_w:  # line 5, with the projection onto w >= 0
            grad = w_gradient(
                self.w, self.w0, index, loss_theta.cpu(), loss_u.cpu(), alpha, self.beta, self.cfg.dorm.w_gradient
            )
            self.w = (self.w - self.cfg.dorm.eta_w * grad).clamp(min=0.0)
            if self.cfg.dorm.w_normalise == "mean" and self.w.sum() > 0:  # keep the weights' mean at 1
                self.w = self.w * (len(self.w) / self.w.sum())
            delta = alpha * (loss_theta.detach() - loss_u.detach()).cpu().double()
            src = self.sources[index]
            self.signal_sum.index_add_(0, src, delta)
            self.signal_n.index_add_(0, src, torch.ones(len(src)))
        self.step += 1
        out.update(loss_tr=float(weighted_loss(loss_theta.detach(), w_batch)), loss_val=float(loss_val.detach()))
        return out

    def take_signal(self) -> list[float | None]:
        """Per source, the mean of alpha (l_i(theta) - l_i(u)) over its draws since the last call (None: no
        draw, or w does not move in this variant); positive pushes the source's weights down."""
        out = [float(s / n) if n else None for s, n in zip(self.signal_sum, self.signal_n)]
        self.signal_sum.zero_()
        self.signal_n.zero_()
        return out

    # -- checkpoints ---------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "step": self.step,
            "theta": self.model.trainable_state_dict(),
            "u": {n: t.detach().clone() for n, t in self.u.items()},
            "w": self.w.clone(),
            "w0": self.w0.clone(),
            "opt_theta": self.opt_theta.state_dict(),
            "opt_u": self.opt_u.state_dict(),
            "sampler": list(self.rng.getstate()[1]),
            "sampler_version": self.rng.getstate()[0],
            "sampler_gauss": self.rng.getstate()[2],
            "torch_rng": torch.get_rng_state(),
            "signal_sum": self.signal_sum.clone(),
            "signal_n": self.signal_n.clone(),
        }

    def load_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["theta"], strict=False)
        with torch.no_grad():
            for n, t in self.u.items():
                t.copy_(state["u"][n])
        self.w, self.w0 = state["w"].clone(), state["w0"].clone()
        self.opt_theta.load_state_dict(state["opt_theta"])
        self.opt_u.load_state_dict(state["opt_u"])
        self.rng.setstate((state["sampler_version"], tuple(state["sampler"]), state["sampler_gauss"]))
        torch.set_rng_state(state["torch_rng"])
        self.signal_sum, self.signal_n = state["signal_sum"].clone(), state["signal_n"].clone()
