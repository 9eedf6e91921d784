"""PRBoost's arithmetic over arrays (thesis ch. 2): boosting weights, hard examples, rule matching,
self-training targets, the ensemble and Fleiss' kappa. Pure functions, no models."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

ABSTAIN = -1
_EPS = 1e-10


# ---------------------------------------------------------------------------------------------------------------
# Boosting on the clean set (eq. 2.1-2.3, SAMME)


def weighted_error(weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """err_t of eq. 2.3: the weighted share of clean examples the model gets wrong."""
    w = np.asarray(weights, dtype=float)
    wrong = np.asarray(y_true) != np.asarray(y_pred)
    return float((w * wrong).sum() / w.sum())


def model_weight(err: float, num_classes: int, eps: float = 1e-6) -> float:
    """alpha_t of eq. 2.2: log((1 - err) / err) + log(K - 1); err is clipped to [eps, 1 - eps]."""
    err = min(max(float(err), eps), 1.0 - eps)
    return float(np.log((1.0 - err) / err) + np.log(num_classes - 1))


def update_weights(weights: np.ndarray, alpha: float, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Eq. 2.1: w_i <- w_i * exp(alpha_t * I(y_i != m_t(x_i))), then renormalised to sum to 1."""
    w = np.asarray(weights, dtype=float) * np.exp(alpha * (np.asarray(y_true) != np.asarray(y_pred)))
    return w / w.sum()


def boosting_step(
    weights: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, num_classes: int
) -> tuple[np.ndarray, float, float]:
    """One SAMME step: (new weights, alpha_t, err_t) from a model's predictions on the clean set."""
    err = weighted_error(weights, y_true, y_pred)
    alpha = model_weight(err, num_classes)
    return update_weights(weights, alpha, y_true, y_pred), alpha, err


def top_hard(weights: np.ndarray, n: int, exclude: Sequence[int] = ()) -> list[int]:
    """The indices of the n largest weights (the large-error instances X_e), ties to the lower index;
    indices in ``exclude`` (already used for proposals) are skipped."""
    skip = set(int(i) for i in exclude)
    order = sorted(range(len(weights)), key=lambda i: (-float(weights[i]), i))
    return [i for i in order if i not in skip][:n]


# ---------------------------------------------------------------------------------------------------------------
# Keyword and regular-expression rules


def compile_rule(kind: str, pattern: str) -> re.Pattern:
    """A keyword rule matches the word or phrase case-insensitively at word boundaries; a regex rule
    is a Python regular expression searched case-insensitively."""
    if kind == "keyword":
        return re.compile(r"(?<!\w)" + re.escape(pattern.strip()) + r"(?!\w)", re.IGNORECASE)
    if kind == "regex":
        return re.compile(pattern, re.IGNORECASE)
    raise ValueError(f"unknown rule kind {kind!r}")


def match_matrix(texts: Sequence[str], patterns: Sequence[re.Pattern]) -> np.ndarray:
    """Boolean (texts x rules) matrix: rule j fires on text i."""
    out = np.zeros((len(texts), len(patterns)), dtype=bool)
    for j, pat in enumerate(patterns):
        for i, text in enumerate(texts):
            out[i, j] = pat.search(text) is not None
    return out


def vote_matrix(fires: np.ndarray, rule_labels: Sequence[int]) -> np.ndarray:
    """The label-function matrix Lambda (texts x rules): rule j's label where it fires, ABSTAIN elsewhere."""
    labels = np.asarray(rule_labels, dtype=int)[None, :]
    return np.where(fires, labels, ABSTAIN)


def majority_vote(votes: np.ndarray, num_classes: int, scores: np.ndarray | None = None) -> np.ndarray:
    """Each row's most frequent non-abstaining label; ABSTAIN where no rule fired.

    Ties go to the label whose votes have the larger summed ``scores`` (default 1 per vote), then to the
    lower label index.
    """
    votes = np.asarray(votes)
    scores = np.ones_like(votes, dtype=float) if scores is None else np.asarray(scores, dtype=float)
    out = np.full(len(votes), ABSTAIN, dtype=int)
    for i in range(len(votes)):
        counts = np.zeros(num_classes)
        mass = np.zeros(num_classes)
        for v, s in zip(votes[i], scores[i]):
            if v != ABSTAIN:
                counts[v] += 1
                mass[v] += s
        if counts.sum() == 0:
            continue
        best = np.flatnonzero(counts == counts.max())
        out[i] = int(best[np.argmax(mass[best])])
    return out


# ---------------------------------------------------------------------------------------------------------------
# Soft matching of accepted prompt rules (eq. 2.5-2.7)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Eq. 2.5 for every pair: s^a[u, j] = e_u . e_rj / (|e_u| |e_rj|)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), _EPS)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), _EPS)
    return a @ b.T


def overlap_matrix(instance_words: Sequence[Sequence[str]], rule_words: Sequence[Sequence[str]], k: int) -> np.ndarray:
    """Eq. 2.6 for every pair: s^b[u, j] = |V_u intersect V_rj| / k."""
    sets = [set(w) for w in rule_words]
    out = np.zeros((len(instance_words), len(sets)))
    for u, words in enumerate(instance_words):
        vu = set(words)
        for j, vr in enumerate(sets):
            out[u, j] = len(vu & vr) / k
    return out


def matching_scores(sim_a: np.ndarray, sim_b: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 2.7: s_j = alpha * s^a_j + (1 - alpha) * s^b_j."""
    return alpha * np.asarray(sim_a) + (1.0 - alpha) * np.asarray(sim_b)


def soft_match(scores: np.ndarray, rule_labels: Sequence[int], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(label, score) per instance: the label of its highest-scoring rule if that score exceeds the
    threshold sigma, else ABSTAIN (sec. 2.4.2: conflicting rules -> the highest matching score)."""
    scores = np.asarray(scores, dtype=float)
    n = scores.shape[0]
    if scores.shape[1] == 0:
        return np.full(n, ABSTAIN, dtype=int), np.zeros(n)
    best = scores.argmax(axis=1)
    top = scores[np.arange(n), best]
    labels = np.asarray(rule_labels, dtype=int)[best]
    return np.where(top > threshold, labels, ABSTAIN), top


def tune_threshold(
    scores: np.ndarray, rule_labels: Sequence[int], y_dev: np.ndarray, fallback: np.ndarray, grid: Sequence[float]
) -> tuple[float, float]:
    """sigma on the dev set: the grid value whose labelling (rule label where matched, the current model's
    prediction ``fallback`` elsewhere) is most accurate; ties to the higher (stricter) threshold.
    Returns (sigma, that dev accuracy)."""
    best = (-1.0, 0.0)
    for sigma in sorted(grid):
        labels, _ = soft_match(scores, rule_labels, sigma)
        combined = np.where(labels == ABSTAIN, fallback, labels)
        acc = float((combined == np.asarray(y_dev)).mean()) if len(y_dev) else 0.0
        if acc >= best[0]:
            best = (acc, float(sigma))
    return best[1], best[0]


def coverage_accuracy(labels: np.ndarray, y_true: np.ndarray | None) -> tuple[float, float | None]:
    """(share of instances labelled, accuracy on the labelled ones or None without gold / matches)."""
    labels = np.asarray(labels)
    covered = labels != ABSTAIN
    coverage = float(covered.mean()) if len(labels) else 0.0
    if y_true is None or not covered.any():
        return coverage, None
    return coverage, float((labels[covered] == np.asarray(y_true)[covered]).mean())


# ---------------------------------------------------------------------------------------------------------------
# Self-training (eq. 2.9) and the ensemble (eq. 2.11)


def self_training_targets(q: np.ndarray) -> np.ndarray:
    """Eq. 2.9: y~_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j'), f_j = sum_i q_ij."""
    q = np.asarray(q, dtype=float)
    f = np.maximum(q.sum(axis=0, keepdims=True), _EPS)
    t = q**2 / f
    return t / np.maximum(t.sum(axis=1, keepdims=True), _EPS)


def ensemble(probabilities: Sequence[np.ndarray], alphas: Sequence[float] | None = None) -> np.ndarray:
    """Eq. 2.11: f(x) = sum_t alpha_t m_t(x), normalised to a distribution; ``alphas`` None gives every
    model the same weight (appendix A.4's practice)."""
    probs = np.stack([np.asarray(p, dtype=float) for p in probabilities])
    a = np.ones(len(probs)) if alphas is None else np.asarray(alphas, dtype=float)
    mixed = np.tensordot(a, probs, axes=1)
    return mixed / np.maximum(mixed.sum(axis=1, keepdims=True), _EPS)


# ---------------------------------------------------------------------------------------------------------------
# Agreement (eq. B.1)


def fleiss_kappa(counts: np.ndarray) -> dict:
    """Fleiss' kappa (eq. B.1) from an (items x categories) table of how many raters chose each category.

    Every row must sum to the same number of raters n >= 2. Returns {"P_bar", "P_e", "kappa"}; kappa is
    nan when P_e = 1 (every rating in one category).
    """
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=1)
    if len(counts) == 0 or not np.allclose(n, n[0]) or n[0] < 2:
        raise ValueError("every item needs the same number (>= 2) of ratings")
    raters = n[0]
    p_i = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    p_bar = float(p_i.mean())
    p_j = counts.sum(axis=0) / counts.sum()
    p_e = float((p_j**2).sum())
    kappa = float("nan") if np.isclose(p_e, 1.0) else (p_bar - p_e) / (1.0 - p_e)
    return {"P_bar": p_bar, "P_e": p_e, "kappa": kappa}
