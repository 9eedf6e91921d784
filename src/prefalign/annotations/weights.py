"""Example weights from cleanlab's CROWDLAB: how likely each item's consensus label is correct.

CROWDLAB (Goh et al., 2022) scores an item's consensus label from the annotators' agreement, each
annotator's estimated quality and a classifier's out-of-sample predicted probabilities. The
classifier here is the one cleanlab's own multi-annotator tutorial uses: TF-IDF features and a
logistic regression, cross-validated so no item is scored by a model that saw its labels.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from .formats import AnnotatedItems
from .targets import majority_vote


def labels_matrix(items: AnnotatedItems) -> np.ndarray:
    """cleanlab's ``(N, M)`` labels_multiannotator: annotator m's label of item n, NaN where none."""
    if not items.has_annotators:
        raise DataError(f"{items.name}: CROWDLAB weights need annotator ids; this data gives per-class counts only")
    workers = {w: j for j, w in enumerate(dict.fromkeys(items.long["worker"]))}
    out = np.full((len(items), len(workers)), np.nan)
    out[items.long["task"].to_numpy(), items.long["worker"].map(workers).to_numpy()] = items.long["label"].to_numpy()
    return out


def out_of_fold_probs(
    texts: list[str], labels: np.ndarray, n_classes: int, *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Predicted class probabilities ``(N, C)`` of a TF-IDF logistic regression, each from the fold that
    held the item out (scikit-learn's cross_val_predict)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    smallest = np.bincount(labels, minlength=n_classes)
    k = int(min(folds, smallest[smallest > 0].min()))
    if k < 2 or (smallest > 0).sum() < 2:
        raise DataError("CROWDLAB weights need at least two examples of at least two classes")
    model = make_pipeline(TfidfVectorizer(min_df=1, sublinear_tf=True), LogisticRegression(max_iter=1000))
    probs = cross_val_predict(
        model, texts, labels, cv=StratifiedKFold(k, shuffle=True, random_state=seed), method="predict_proba"
    )
    full = np.zeros((len(texts), n_classes))
    full[:, np.unique(labels)] = probs  # classes nobody chose get probability 0
    return full


def crowdlab_weights(items: AnnotatedItems, *, seed: int = 0) -> np.ndarray:
    """Each item's CROWDLAB consensus quality score in [0, 1] (majority-vote consensus)."""
    try:
        from cleanlab.multiannotator import get_label_quality_multiannotator
    except ImportError:
        raise ConfigError("data.annotations.weights: crowdlab needs cleanlab: pip install 'prefalign[crowd]'") from None
    matrix = labels_matrix(items)
    texts = [t if p is None else f"{t}\n{p}" for t, p in zip(items.texts, items.text_pairs or [None] * len(items))]
    probs = out_of_fold_probs(texts, majority_vote(items.counts, seed=seed), len(items.label_names), seed=seed)
    probs = np.clip(probs, 1e-6, None)
    probs /= probs.sum(1, keepdims=True)
    result = get_label_quality_multiannotator(
        matrix,
        probs,
        consensus_method="majority_vote",
        return_detailed_quality=False,
        return_annotator_stats=False,
        verbose=False,
    )
    return result["label_quality"]["consensus_quality_score"].to_numpy(dtype=float)
