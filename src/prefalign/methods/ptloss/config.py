"""Distillation with PTLoss (thesis chapter 4) and the baselines of section 4.6.2: every option."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...utils.config_base import option as _f
from ..options import HeadConfig

LOSSES = ("ptloss", "kl", "temperature", "label-smoothing", "focal", "flooding", "eskd", "annealing")
SOLVERS = ("newton", "fsolve")


@dataclass
class PTLossConfig(HeadConfig):
    """Knowledge distillation from a teacher's class distributions: PTLoss (eq. 4.7) or a baseline loss."""

    teacher: str = _f(
        "",
        "the teacher: a prefalign adapter folder or a Hugging Face sequence-classification model (folder or hub id); "
        "its class distributions on the training split are the targets (section 4.3)",
    )
    teacher_batch_size: int = _f(32, "batch size for computing the teacher's distributions (once, then cached)")
    teacher_cache: str = _f(
        "", "folder of cached teacher distributions (safetensors); default $PREFALIGN_CACHE/teacher-distributions"
    )
    loss: str = _f(
        "ptloss",
        "the distillation loss: 'ptloss' (eq. 4.7) or a baseline of section 4.6.2: 'kl' (eq. 4.3), "
        "'temperature' (eq. 4.12), 'label-smoothing' (eq. 4.15), 'focal' (eq. 4.8), 'flooding', "
        "'eskd' (KL, stopped early), 'annealing' (Annealing KD)",
        choices=LOSSES,
    )
    # PTLoss (section 4.4) and Algorithm 2's search (section 4.5.3, appendix C.0.3)
    eps: list | None = _f(
        None,
        "PTLoss coefficients eps_{c,m}: a list of M numbers shared by every class, or C lists of M (per class); "
        "null: choose them by Algorithm 2's search",
    )
    per_class: bool = _f(False, "the search draws one coefficient set per class (C x M) instead of one shared set")
    search_orders: int = _f(5, "Algorithm 2's largest perturbation order N_M (section 4.6.2: 5)")
    search_trials: int = _f(100, "random coefficient sets per order N_k (appendix C.0.3: 100)")
    search_low: float = _f(-1.0, "lower end of the coefficient search range (appendix C.0.3: -1)")
    search_high: float = _f(10.0, "upper end of the coefficient search range (appendix C.0.3: 10)")
    search_examples: int = _f(
        1000, "labelled examples whose proxy teacher is scored by Q (eq. 4.20; appendix C.0.3: 1,000)"
    )
    search_seed: int = _f(0, "seed of the coefficient draws and of the choice of search examples")
    solver: str = _f(
        "newton",
        "proxy-teacher solver: 'fsolve' per example (the thesis's), or 'newton', the same equations and Jacobian "
        "batched over the examples, with fsolve for any it leaves unconverged",
        choices=SOLVERS,
    )
    q_distance: str = _f(
        "l2",
        "eq. 4.20's ||p^px - y||: 'l2', the norm (as appendix D's bound has it), or 'squared', the reading under "
        "which the one-hot y is an unbiased stand-in for the true distribution",
        choices=("l2", "squared"),
    )
    q_entropy: bool = _f(
        True,
        "keep eq. 4.20's second term, the squared entropy of the proxy (Theorem 1's teacher-entropy term); false "
        "scores a proxy by its distance to the labels alone (with q_distance: squared, an unbiased estimate of its "
        "squared distance to the truth up to a constant; docs/methods/ptloss.md)",
    )
    search_dir: str = _f("", "where search.json / search.png go (resumable); default beside the teacher cache")
    # the baselines (section 4.6.2; ranges of appendix C.0.2)
    temperature: float = _f(2.0, "temperature scaling's tau (appendix C.0.2: 0.1-10)")
    smoothing: float = _f(0.1, "label smoothing's delta (eq. 4.14; appendix C.0.2: 0.02-0.2)")
    focal_gamma: float = _f(1.0, "focal loss's gamma (eq. 4.8; appendix C.0.2: 0.1-5)")
    flood_level: float = _f(0.05, "flooding's level b: the loss becomes |L - b| + b")
    eskd_fraction: float = _f(0.5, "early-stopped KD: training stops after this fraction of its steps")
    annealing_max_temperature: float = _f(10.0, "Annealing KD's starting temperature (falls to 1 over training)")

    def validate(self) -> None:
        super().validate()
        if not self.search_low < self.search_high:
            raise ConfigError(
                f"method.search_low ({self.search_low}) must be below method.search_high ({self.search_high})"
            )
        self.check_range("search_orders", 1, None)
        self.check_range("search_trials", 1, None)
        self.check_range("search_examples", 1, None)
        self.check_range("teacher_batch_size", 1, None)
        self.check_range("temperature", 1e-3, None)
        self.check_range("smoothing", 0.0, 1.0)
        self.check_range("focal_gamma", 0.0, None)
        self.check_range("flood_level", 0.0, None)
        self.check_range("eskd_fraction", 1e-6, 1.0)
        self.check_range("annealing_max_temperature", 1.0, None)
        if self.eps is not None:
            self.eps = check_eps(self.eps, self.search_low, self.search_high)


def check_eps(eps: list, low: float, high: float) -> list:
    """``eps`` as floats, (M,) or (C, M), every value inside [low, high]; ConfigError otherwise."""
    rows = eps if eps and isinstance(eps[0], list) else [eps]
    if not eps or any(not isinstance(r, list) or not r or len(r) != len(rows[0]) for r in rows):
        raise ConfigError(f"method.eps must be M numbers or C lists of M numbers, not {eps!r}")
    try:
        values = [[float(v) for v in r] for r in rows]
    except (TypeError, ValueError):
        raise ConfigError(f"method.eps holds something that is not a number: {eps!r}") from None
    bad = [v for r in values for v in r if not low <= v <= high]
    if bad:
        raise ConfigError(
            f"method.eps value {bad[0]} lies outside the search range [{low}, {high}]; "
            "change the value or method.search_low / method.search_high"
        )
    return values if isinstance(eps[0], list) else values[0]
