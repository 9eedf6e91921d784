"""The proxy teacher (thesis eq. 4.17-4.19) and the quality score Q (eq. 4.20).

For one example with teacher distribution t and coefficients eps, the proxy teacher is the student
distribution that minimises l_PT-M(t, .): KL(p || .) is minimised at p, so a KL student distilled
from this proxy and a PTLoss student distilled from t share their minimiser, which is how eq. 4.19
reads once it is taken per example (docs/methods/ptloss.md explains the reading). It is found in
logit space (the last logit fixed at 0, so the C - 1 free logits have a non-singular Jacobian) by
solving grad_z l_PT-M = 0 with ``scipy.optimize.fsolve`` and the analytic Jacobian (the Hessian),
started from the teacher's logits. A root that is not a minimum (the perturbation can make the loss
non-convex) or no root at all falls back to minimising l_PT-M directly (L-BFGS with the analytic
gradient), from the same start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TINY = 1e-12
GRAD_TOL = 1e-8  # a root counts when every free gradient component is below this


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _h(s: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h_c = -sum_m m eps_cm (1 - s_c)^(m-1) and its derivative in s_c, for eps (C, M)."""
    m = np.arange(1, eps.shape[-1] + 1, dtype=float)
    u = (1 - s)[..., None]
    h = -(m * eps * u ** (m - 1)).sum(-1)
    dh = (m * (m - 1) * eps * u ** np.maximum(m - 2, 0)).sum(-1)
    return h, dh


def pt_value(z: np.ndarray, teacher: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """l_PT-M(t, softmax(z)) (eq. 4.7) for one example (C,) or a batch (N, C)."""
    shifted = z - z.max(-1, keepdims=True)
    logs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    s = np.exp(logs)
    m = np.arange(1, eps.shape[-1] + 1, dtype=float)
    kl = np.sum(np.where(teacher > 0, teacher * np.log(np.maximum(teacher, TINY)), 0.0) - teacher * logs, -1)
    return kl + np.sum(teacher * (eps * (1 - s)[..., None] ** m).sum(-1), -1)


def pt_gradient(z: np.ndarray, teacher: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """d l_PT-M / dz: s - t + a - s sum(a), a_c = t_c s_c h_c (the closed form of losses.pt_logit_gradient)."""
    s = _softmax(z)
    h, _ = _h(s, eps)
    a = teacher * s * h
    return s - teacher + a - s * a.sum(-1, keepdims=True)


def pt_hessian(z: np.ndarray, teacher: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """d^2 l_PT-M / dz^2, (C, C) or (N, C, C): the Jacobian of :func:`pt_gradient`."""
    s = _softmax(z)
    h, dh = _h(s, eps)
    a = teacher * s * h
    b = teacher * (h + s * dh)  # d a_j / d s_j
    jac = s[..., :, None] * np.eye(s.shape[-1]) - s[..., :, None] * s[..., None, :]  # d s_j / d z_k
    da = b[..., :, None] * jac  # d a_j / d z_k
    return jac + da - jac * a.sum(-1)[..., None, None] - s[..., :, None] * da.sum(-2)[..., None, :]


@dataclass
class ProxyResult:
    proxy: np.ndarray  # (N, C) proxy teacher distributions
    fallback: int  # examples the direct minimiser solved
    max_gradient: float  # largest |grad| left at any solution


def _free(f, teacher, eps, c):
    def fn(x):
        return f(np.append(x, 0.0), teacher, eps)[: c - 1]

    return fn


def solve_one(teacher: np.ndarray, eps: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """The proxy teacher of one example: (distribution, fell back to the direct minimiser, |grad| left)."""
    from scipy.optimize import fsolve, minimize

    c = teacher.shape[0]
    t = _clean(teacher)
    z0 = np.log(t)
    x0 = z0[:-1] - z0[-1]
    if not np.any(eps):
        return t, False, 0.0
    grad = _free(pt_gradient, t, eps, c)

    def jac(x):
        return pt_hessian(np.append(x, 0.0), t, eps)[: c - 1, : c - 1]

    x, _info, ier, _msg = fsolve(grad, x0, fprime=jac, full_output=True)
    residual = float(np.abs(grad(x)).max()) if np.all(np.isfinite(x)) else np.inf
    if ier == 1 and residual < GRAD_TOL and np.linalg.eigvalsh(jac(x)).min() > 0:
        return _softmax(np.append(x, 0.0)), False, residual
    result = minimize(
        lambda v: pt_value(np.append(v, 0.0), t, eps), x0, jac=grad, method="L-BFGS-B", options={"gtol": 1e-10}
    )
    return _softmax(np.append(result.x, 0.0)), True, float(np.abs(grad(result.x)).max())


def _clean(teacher: np.ndarray) -> np.ndarray:
    t = np.maximum(np.asarray(teacher, dtype=float), TINY)
    return t / t.sum(-1, keepdims=True)


def newton_batch(teacher: np.ndarray, eps: np.ndarray, steps: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Damped Newton on grad_z l_PT-M = 0 for every example at once, the same equations and Jacobian as
    :func:`solve_one`: each step halves until the loss decreases, so it ends at a minimum, not a saddle.
    Returns the free logits (N, C-1) and which examples converged to a minimum."""
    n, c = teacher.shape
    x = np.log(teacher[:, :-1]) - np.log(teacher[:, -1:])
    done = np.zeros(n, dtype=bool)

    def full(v):
        return np.concatenate([v, np.zeros((v.shape[0], 1))], 1)

    active = np.arange(n)
    for _ in range(steps):
        xa, ta = x[active], teacher[active]
        z = full(xa)
        g = pt_gradient(z, ta, eps)[:, :-1]
        hess = pt_hessian(z, ta, eps)[:, :-1, :-1]
        lowest = np.linalg.eigvalsh(hess)[:, 0]
        ok = (np.abs(g).max(1) < GRAD_TOL) & (lowest > 0)
        done[active[ok]] = True
        active, xa, ta, g, hess, lowest = (v[~ok] for v in (active, xa, ta, g, hess, lowest))
        if not active.size:
            break
        pd = lowest > 1e-12
        step = -g.copy()  # not positive definite: steepest descent
        step[pd] = -np.linalg.solve(hess[pd], g[pd][..., None])[..., 0]
        value = pt_value(full(xa), ta, eps)
        alpha = np.ones(active.size)
        for _ in range(40):
            worse = pt_value(full(xa + alpha[:, None] * step), ta, eps) > value + 1e-4 * alpha * (g * step).sum(1)
            if not worse.any():
                break
            alpha[worse] *= 0.5
        x[active] = xa + alpha[:, None] * step
    return x, done


def solve_proxy(teacher: np.ndarray, eps, solver: str = "newton") -> ProxyResult:
    """Proxy teachers (N, C) of ``teacher`` (N, C) under coefficients ``eps``: (M,) shared or (C, M) per class.

    ``solver='fsolve'`` solves every example with :func:`solve_one` (the thesis's fsolve, then the direct
    minimiser); ``'newton'`` runs :func:`newton_batch` over all examples at once (about a hundred times
    faster) and hands the examples it leaves unconverged to :func:`solve_one`.
    """
    teacher = _clean(teacher)
    eps = np.asarray(eps, dtype=float)
    n, c = teacher.shape
    eps = np.broadcast_to(eps, (c, eps.shape[-1])) if eps.ndim == 1 else eps
    if not np.any(eps):  # l_KL: the proxy is the teacher
        return ProxyResult(teacher.copy(), 0, 0.0)
    out = np.empty_like(teacher)
    todo = np.arange(n)
    if solver == "newton":
        x, done = newton_batch(teacher, eps)
        out[done] = _softmax(np.concatenate([x[done], np.zeros((int(done.sum()), 1))], 1))
        todo = np.flatnonzero(~done)
    elif solver != "fsolve":
        raise ValueError(f"solver must be 'newton' or 'fsolve', not {solver!r}")
    fallback = 0
    for i in todo:
        out[i], fell, _ = solve_one(teacher[i], eps)
        fallback += fell
    z = np.log(np.maximum(out, 1e-300))
    worst = float(np.abs(pt_gradient(z, teacher, eps)).max()) if n else 0.0
    return ProxyResult(out, fallback, worst)


def quality_score(proxy: np.ndarray, labels: np.ndarray, distance: str = "l2", entropy: bool = True) -> float:
    """Eq. 4.20: (mean_n ||p^px_n - y_n||_2)^2 + mean_n (p^px_n . log p^px_n)^2, y_n one-hot (lower is better).

    ``distance='l2'``: ||.||_2 is the L2 norm, as appendix D's bound (Cauchy-Schwarz on the norm) has it.
    ``'squared'``: its square, the reading under which y_n is an unbiased stand-in for p* (the mean of
    ||p - y||^2 is ||p - p*||^2 plus a term free of p). ``entropy=False`` drops the second term (the
    teacher-entropy term of Theorem 1, which the student does not move): the distance term alone.
    """
    proxy = np.asarray(proxy, dtype=float)
    onehot = np.eye(proxy.shape[1])[np.asarray(labels)]
    gap = np.linalg.norm(proxy - onehot, axis=1)
    if distance not in ("l2", "squared"):
        raise ValueError(f"distance must be 'l2' or 'squared', not {distance!r}")
    distance = (gap**2 if distance == "squared" else gap).mean()
    if not entropy:
        return float(distance**2)
    neg_entropy = np.where(proxy > 0, proxy * np.log(np.maximum(proxy, TINY)), 0.0).sum(1)
    return float(distance**2 + np.mean(neg_entropy**2))
