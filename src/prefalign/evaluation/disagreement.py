"""Scores that respect annotator disagreement, as small functions over arrays (inputs checked first).

* ``soft_cross_entropy``: -1/N sum_i sum_c q_ic log p_ic against the annotators' distribution q
  (Le-Wi-Di 2023's measure; natural log, p clipped at 1e-12).
* ``jensen_shannon_divergence``: mean JSD(p_i, q_i) in bits, so each term lies in [0, 1].
* ``expected_calibration_error``: top-label ECE with equal-width confidence bins (Guo et al., 2017).
* ``macro_f1``: unweighted mean over classes of per-class F1 (a class absent from both the labels
  and the predictions is skipped).
* ``group_scores``: the cross-entropy against each annotator group's own distribution, over the
  items that group labelled, and the worst group.
* ``lewidi2023_cross_entropy`` and ``lewidi2023_micro_f1``: the two scores of Le-Wi-Di 2023 (SemEval-2023
  Task 11) as the organisers' published scoring snippets compute them (predictions clipped to
  [1e-12, 1 - 1e-12], then -sum q log(p + 1e-9) / N; scikit-learn's micro-averaged F1 of the hard
  labels, which for one label per item is the share of items predicted right; labels compare as text, so
  "1.0" is not "1"); ``parse_lewidi_results`` reads their result files (one line per item: hard label, then
  one probability per class, tab-separated). Their reference is the data's released ``soft_label`` (rounded:
  ArMIS gives 0.33 / 0.67) and ``hard_label`` (ties drawn by the organisers): ``disagreement_metrics`` takes
  them as ``reference_dist`` and ``reference_labels``.
* ``perspectivist_error_rate``: Le-Wi-Di 2025's perspectivist score for categorical labels: per item the
  share of its annotators whose own label is mispredicted, averaged over items.

Written by hand (a few lines each) so prefalign's core needs no scikit-learn or scipy; the tests check
them against worked values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = 1e-12


def _probs(p, name: str) -> np.ndarray:
    arr = np.asarray(p, dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{name} must be (examples, classes) with at least two classes, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    if not np.allclose(arr.sum(1), 1.0, atol=1e-4):
        raise ValueError(f"{name} rows must sum to 1 (row 0 sums to {arr[0].sum():.6f})")
    return arr


def _labels(y, n: int, c: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any() or (arr >= c).any():
        raise ValueError(f"labels must be {n} class indices in [0, {c})")
    return arr


def _pair(probs, targets) -> tuple[np.ndarray, np.ndarray]:
    p, q = _probs(probs, "probs"), _probs(targets, "targets")
    if p.shape != q.shape:
        raise ValueError(f"probs {p.shape} and targets {q.shape} differ in shape")
    return p, q


def soft_cross_entropy(probs, targets) -> float:
    """Mean cross-entropy of predicted ``probs`` (N, C) against target distributions (N, C), in nats."""
    p, q = _pair(probs, targets)
    return float(-(q * np.log(np.clip(p, EPS, None))).sum(1).mean())


def jensen_shannon_divergence(probs, targets) -> float:
    """Mean Jensen-Shannon divergence (base 2, in [0, 1]) between predicted and target distributions."""
    p, q = _pair(probs, targets)
    m = (p + q) / 2

    def kl(a, b):
        return np.where(a > 0, a * (np.log2(np.clip(a, EPS, None)) - np.log2(np.clip(b, EPS, None))), 0.0).sum(1)

    return float(((kl(p, m) + kl(q, m)) / 2).mean())


def expected_calibration_error(probs, labels, n_bins: int = 10) -> float:
    """Top-label ECE: sum over bins of |bin| / N * |accuracy - mean confidence|; bins (k/n, (k+1)/n]."""
    p = _probs(probs, "probs")
    y = _labels(labels, len(p), p.shape[1])
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    conf, pred = p.max(1), p.argmax(1)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs((pred[mask] == y[mask]).mean() - conf[mask].mean())
    return float(ece)


def macro_f1(predictions, labels, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions."""
    y = _labels(labels, len(np.asarray(labels)), num_classes)
    pred = _labels(predictions, len(y), num_classes)
    scores = []
    for c in range(num_classes):
        tp = int(((pred == c) & (y == c)).sum())
        fp, fn = int(((pred == c) & (y != c)).sum()), int(((pred != c) & (y == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def group_scores(probs, group_dist, groups: Sequence[str]) -> dict[str, float]:
    """Cross-entropy per annotator group over the items it labelled (``group_dist`` (N, G, C), rows of
    zeros where a group gave no label); groups that labelled none of these items are left out."""
    p = _probs(probs, "probs")
    g = np.asarray(group_dist, dtype=float)
    if g.ndim != 3 or g.shape[0] != len(p) or g.shape[2] != p.shape[1] or g.shape[1] != len(groups):
        raise ValueError(f"group_dist must be (N, {len(groups)}, {p.shape[1]}), got {g.shape}")
    out = {}
    log_p = np.log(np.clip(p, EPS, None))
    for j, name in enumerate(groups):
        seen = g[:, j].sum(1) > 0
        if seen.any():
            out[name] = float(-(g[seen, j] * log_p[seen]).sum(1).mean())
    return out


def lewidi2023_cross_entropy(targets_soft, predictions_soft) -> float:
    """Le-Wi-Di 2023's soft score: predictions clipped to [1e-12, 1 - 1e-12], -sum q log(p + 1e-9) / N (nats)."""
    q = np.asarray(targets_soft, dtype=float)
    p = np.asarray(predictions_soft, dtype=float)
    if q.shape != p.shape or q.ndim != 2:
        raise ValueError(f"targets {q.shape} and predictions {p.shape} must be the same (items, classes) shape")
    p = np.clip(p, EPS, 1.0 - EPS)
    return float(-np.sum(q * np.log(p + 1e-9)) / p.shape[0])


def lewidi2023_micro_f1(targets_hard, predictions_hard) -> float:
    """Le-Wi-Di 2023's hard score: micro-averaged F1 over the classes (scikit-learn's average='micro'):
    2 TP / (2 TP + FP + FN) summed over classes; with one label per item, the share predicted right."""
    y, pred = [str(v) for v in targets_hard], [str(v) for v in predictions_hard]
    if len(y) != len(pred) or not y:
        raise ValueError(f"{len(y)} targets but {len(pred)} predictions; give one hard label per item each")
    tp = sum(a == b for a, b in zip(y, pred))
    fp = fn = len(y) - tp  # each wrong item is a false positive of one class and a false negative of another
    return float(2 * tp / (2 * tp + fp + fn))


def parse_lewidi_results(text: str, num_classes: int | None = None) -> tuple[list[str], np.ndarray]:
    """(hard labels, soft predictions (N, C)) of a Le-Wi-Di 2023 result file's text: per line the hard
    label, then the probability of each class, separated by tabs."""
    hard, soft = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        try:
            probs = [float(x) for x in parts[1:]]
        except ValueError:
            raise ValueError(f"line {n}: {line!r} is not 'hard<TAB>p0<TAB>p1...'") from None
        if len(probs) < 2 or (num_classes is not None and len(probs) != num_classes):
            raise ValueError(f"line {n}: expected a hard label and {num_classes or 'two or more'} probabilities")
        hard.append(parts[0])  # as the organisers' get_data keeps it: compared as text, unstripped
        soft.append(probs)
    if len({len(r) for r in soft}) > 1:
        raise ValueError("result lines give different numbers of probabilities")
    return hard, np.asarray(soft, dtype=float)


def perspectivist_error_rate(annotator_labels: Sequence[Sequence[int]], predicted: Sequence[Sequence[int]]) -> float:
    """Le-Wi-Di 2025's error rate: mean over items of the share of the item's annotators whose label the
    model's prediction for that annotator gets wrong (for 0/1 labels, sum |t - p| / K as the task writes it)."""
    if len(annotator_labels) != len(predicted) or not len(annotator_labels):
        raise ValueError("give one list of annotator labels and one of predictions per item")
    rates = []
    for i, (t, p) in enumerate(zip(annotator_labels, predicted)):
        if len(t) != len(p) or not len(t):
            raise ValueError(f"item {i}: {len(t)} annotator labels but {len(p)} predictions")
        rates.append(sum(int(a != b) for a, b in zip(t, p)) / len(t))
    return float(np.mean(rates))


def disagreement_metrics(
    probs,
    labels,
    annotation_dist,
    group_dist=None,
    groups: Sequence[str] = (),
    n_bins: int = 10,
    *,
    reference_dist=None,
    reference_labels=None,
) -> dict[str, float | str]:
    """Every score of this module: accuracy and macro F1 against ``labels`` (the majority vote),
    Le-Wi-Di 2023's ``micro_f1`` and ``lewidi_ce``, ``soft_ce``, ``jsd`` against the annotators'
    distribution, ``ece``, and with groups ``group_ce/<group>``, ``worst_group_ce`` and ``worst_group``.

    ``reference_dist`` (N, C) and ``reference_labels`` (N,), when the data releases its own soft and hard
    labels (Le-Wi-Di's ``soft_label``, rounded as released, and ``hard_label``, whose ties the organisers
    drew), replace the annotators' distribution and the majority vote in ``lewidi_ce`` and ``micro_f1``
    only, as the organisers' scorer reads them; every other score keeps the annotations."""
    p, q = _pair(probs, annotation_dist)
    y = _labels(labels, len(p), p.shape[1])
    pred = p.argmax(1)
    q_ref = q if reference_dist is None else np.asarray(reference_dist, dtype=float)
    if q_ref.shape != p.shape:
        raise ValueError(f"reference_dist {q_ref.shape} and probs {p.shape} differ in shape")
    y_ref = y if reference_labels is None else _labels(np.asarray(reference_labels), len(p), p.shape[1])
    out: dict[str, float | str] = {
        "accuracy": float((pred == y).mean()),
        "f1": macro_f1(pred, y, p.shape[1]),
        "soft_ce": soft_cross_entropy(p, q),
        "lewidi_ce": lewidi2023_cross_entropy(q_ref, p),
        "micro_f1": lewidi2023_micro_f1(y_ref, pred),
        "jsd": jensen_shannon_divergence(p, q),
        "ece": expected_calibration_error(p, y, n_bins),
    }
    if group_dist is not None and len(groups):
        per_group = group_scores(p, group_dist, groups)
        out.update({f"group_ce/{k}": v for k, v in per_group.items()})
        if per_group:
            worst = max(per_group, key=per_group.get)
            out["worst_group_ce"], out["worst_group"] = per_group[worst], worst
    return out
