"""LoRC's progressive schedule (thesis 5.4.2, Algorithm 3): ranks per layer from cumulative condition numbers.

* eq. 5.10: kappa(W) = sigma_max / sigma_min of a layer's whole key (value) projection.
* eq. 5.12: ln kappa~_l = sum_{j >= l} (ln kappa(W_k^j) + ln kappa(W_v^j)), summed in log space.
* eq. 5.13: d_l = d_max * (1 - (max ln kappa~ - ln kappa~_l) / (max ln kappa~ - min ln kappa~) * (1 - d_min/d_max)),
  rounded to the nearest integer and kept in 1..d_max; max and min run over all L layers.
* Algorithm 3, line 7: a layer whose ln kappa~_l exceeds ``skip_threshold`` is not compressed.
* d_min is solved by bisection so that the cache ratio meets the target; the uniform baseline gives
  every compressed layer the same rank (the largest that meets the target), skipping the same layers.

The cache ratio counts latent widths: a compressed layer holds ``G * d_l`` numbers per token for keys
(and as many for values) against ``kv_heads * head_dim`` uncompressed; a skipped layer counts 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError
from .factorize import attention_modules, condition_number_log, max_rank, num_groups, projections


@dataclass
class Schedule:
    """Ranks per layer (None: skipped) and how they were chosen."""

    ranks: list[int | None]
    kind: str  # "progressive" or "uniform"
    granularity: str
    target_ratio: float
    ratio: float  # achieved, by latent widths
    d_max: int
    d_min: float | None = None
    skip_threshold: float | None = None
    log_kappa_k: list[float] = field(default_factory=list)
    log_kappa_v: list[float] = field(default_factory=list)
    log_cumulative: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Schedule:
        return cls(**data)


def check_ratio(ratio: float) -> None:
    """One line unless 0 < ratio <= 1."""
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not (0.0 < float(ratio) <= 1.0):
        raise ConfigError(f"the target cache ratio must be in (0, 1], got {ratio!r}; e.g. --ratio 0.6 keeps 60%")


def log_condition_numbers(model) -> tuple[list[float], list[float]]:
    """ln kappa of every layer's key and value projection (eq. 5.10)."""
    ks, vs = [], []
    for layer in range(len(attention_modules(model))):
        proj = projections(model, layer)
        ks.append(condition_number_log(proj.k))
        vs.append(condition_number_log(proj.v))
    return ks, vs


def cumulative_log_condition(log_k: list[float], log_v: list[float]) -> list[float]:
    """ln kappa~_l of eq. 5.12: the sum over layers j >= l of ln kappa(W_k^j) + ln kappa(W_v^j)."""
    out, running = [], 0.0
    for k, v in zip(reversed(log_k), reversed(log_v)):
        running += k + v
        out.append(running)
    return out[::-1]


def progressive_ranks(log_cum: list[float], d_max: int, d_min: float) -> list[int]:
    """eq. 5.13 for every layer: rank d_max for the most sensitive, d_min for the least."""
    hi, lo = max(log_cum), min(log_cum)
    span = hi - lo
    ranks = []
    for value in log_cum:
        share = 0.0 if span == 0 else (hi - value) / span
        ranks.append(min(d_max, max(1, int(math.floor(d_max * (1 - share * (1 - d_min / d_max)) + 0.5)))))
    return ranks


def cache_ratio(ranks: list[int | None], d_max: int, full_width: int, groups: int) -> float:
    """Retained share of the cache: sum of kept widths over the uncompressed widths."""
    kept = sum(full_width if r is None else groups * r for r in ranks)
    return kept / (full_width * len(ranks))


@dataclass
class _Shape:
    d_max: int
    groups: int
    full_width: int


def _shape(model, granularity: str, d_max: int | None) -> _Shape:
    proj = projections(model, 0)
    limit = max_rank(granularity, proj.num_kv_heads, proj.head_dim, proj.q.shape[1])
    d_max = limit if d_max is None else d_max
    if not 1 <= d_max <= limit:
        what = "the head dimension" if granularity == "head" else "kv_heads x head_dim"
        raise ConfigError(f"d_max {d_max} is larger than {what} ({limit}) or below 1; choose 1..{limit}")
    return _Shape(d_max, num_groups(granularity, proj.num_kv_heads), proj.num_kv_heads * proj.head_dim)


def _skipped(log_cum: list[float], skip_threshold: float | None) -> list[bool]:
    return [skip_threshold is not None and value > skip_threshold for value in log_cum]


def _schedule_inputs(model, target_ratio, granularity, skip_threshold, d_max, log_kappas):
    """What both schedules start from: the checked target, the rank shape, ln kappa of keys and values, the
    cumulative ln kappa~ (eq. 5.12) and the layers the skip threshold leaves uncompressed."""
    check_ratio(target_ratio)
    shape = _shape(model, granularity, d_max)
    log_k, log_v = log_kappas or log_condition_numbers(model)
    log_cum = cumulative_log_condition(log_k, log_v)
    return shape, log_k, log_v, log_cum, _skipped(log_cum, skip_threshold)


def progressive_schedule(
    model,
    target_ratio: float,
    *,
    granularity: str = "head",
    skip_threshold: float | None = None,
    d_max: int | None = None,
    log_kappas: tuple[list[float], list[float]] | None = None,
) -> Schedule:
    """Algorithm 3's ranks, with d_min found by bisection: the largest d_min whose cache ratio <= target.

    When even d_min = 1 keeps more than the target (eq. 5.13 is linear in ln kappa~, so it keeps about
    (1 + d_min/d_max)/2 of the cache), d_max is lowered instead, to the largest value that meets the
    target with d_min = 1, unless ``d_max`` was given, which is then kept and the target refused.
    """
    shape, log_k, log_v, log_cum, skip = _schedule_inputs(
        model, target_ratio, granularity, skip_threshold, d_max, log_kappas
    )

    def ranks_for(d_min: float, top: int = shape.d_max) -> list[int | None]:
        base = progressive_ranks(log_cum, top, min(d_min, top))
        return [None if s else r for r, s in zip(base, skip)]

    def ratio_for(d_min: float, top: int = shape.d_max) -> float:
        return cache_ratio(ranks_for(d_min, top), shape.d_max, shape.full_width, shape.groups)

    top = shape.d_max
    if ratio_for(1.0) > target_ratio + 1e-12:
        # eq. 5.13 with d_min = 1 keeps about half the cache; below that, lower d_max as well (d_min = 1).
        if d_max is not None or ratio_for(1.0, 1) > target_ratio + 1e-12:
            raise ConfigError(
                f"target ratio {target_ratio} cannot be met: with d_min = 1 the schedule keeps "
                f"{ratio_for(1.0, top if d_max is not None else 1):.3f}; raise --ratio or --skip-threshold"
                + (" or leave --d-max unset" if d_max is not None else "")
            )
        top = max(t for t in range(1, shape.d_max + 1) if ratio_for(1.0, t) <= target_ratio + 1e-12)
        lo = 1.0
    else:
        lo, hi = 1.0, float(shape.d_max)  # ratio_for(lo) <= target; find the largest such d_min
        if ratio_for(hi) <= target_ratio + 1e-12:
            lo = hi
        for _ in range(60):
            mid = (lo + hi) / 2
            if ratio_for(mid) <= target_ratio + 1e-12:
                lo = mid
            else:
                hi = mid
    ranks = ranks_for(lo, top)
    return Schedule(
        ranks=ranks,
        kind="progressive",
        granularity=granularity,
        target_ratio=float(target_ratio),
        ratio=cache_ratio(ranks, shape.d_max, shape.full_width, shape.groups),
        d_max=top,
        d_min=lo,
        skip_threshold=skip_threshold,
        log_kappa_k=log_k,
        log_kappa_v=log_v,
        log_cumulative=log_cum,
    )


def uniform_schedule(
    model,
    target_ratio: float,
    *,
    granularity: str = "head",
    skip_threshold: float | None = None,
    d_max: int | None = None,
    log_kappas: tuple[list[float], list[float]] | None = None,
) -> Schedule:
    """The baseline: the same skipped layers, one rank for all others (the largest meeting the target)."""
    shape, log_k, log_v, log_cum, skip = _schedule_inputs(
        model, target_ratio, granularity, skip_threshold, d_max, log_kappas
    )
    best = None
    for rank in range(1, shape.d_max + 1):
        ranks = [None if s else rank for s in skip]
        if cache_ratio(ranks, shape.d_max, shape.full_width, shape.groups) <= target_ratio + 1e-12:
            best = ranks
    if best is None:
        raise ConfigError(f"target ratio {target_ratio} cannot be met with rank 1 everywhere; raise --ratio")
    return Schedule(
        ranks=best,
        kind="uniform",
        granularity=granularity,
        target_ratio=float(target_ratio),
        ratio=cache_ratio(best, shape.d_max, shape.full_width, shape.groups),
        d_max=shape.d_max,
        skip_threshold=skip_threshold,
        log_kappa_k=log_k,
        log_kappa_v=log_v,
        log_cumulative=log_cum,
    )
