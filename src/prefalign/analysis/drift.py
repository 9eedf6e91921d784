"""Preference drift between two similar inputs, layer by layer (DCPC section 3.1, appendix A.2, Table 5).

For a pair (A, B) and every transformer layer l = 1..L of a subject (see ``layers``):

* ``cosine_similarity``: cos(e_A^l, e_B^l) of the mean-pooled hidden states;
* ``edit_distance``: the Levenshtein distance between the two ordered lists of the k token ids the
  logit lens ranks highest at the last input position of layer l (insertions, deletions and
  substitutions cost 1, so it lies in [0, k]; 0 = the same tokens in the same order). The paper
  reports an edit distance without defining it; this is our reading. Encoders have no LM head,
  so they have none (the column is empty);
* ``kl_divergence``: D_KL(p_A^l || p_B^l) (eq. 23) of the label distributions read out at layer
  l, p^l = softmax over the classes of the label scores (decoders: the label words' log-probs
  under the logit lens, renormalised over the classes; encoders: the trained head on the
  layer's pooled state);
* ``label_difference``: 1 when argmax p_A^l != argmax p_B^l.

``drift.csv`` holds the mean over pairs per subject and layer in Table 5's columns (the label
difference becomes the share of pairs whose predictions differ); ``drift_pairs.csv`` every pair
and layer.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..utils.atomic_files import write_text_atomically
from .layers import LayerReadout, Subject, csv_text, format_number, read_layers
from .plots import drift_figure
from .probe_data import Pair

COLUMNS = ("model", "layer", "cosine_similarity", "edit_distance", "kl_divergence", "label_difference", "n_pairs")
PAIR_COLUMNS = (
    "model",
    "pair",
    "layer",
    "cosine_similarity",
    "edit_distance",
    "kl_divergence",
    "label_difference",
    "label_a",
    "label_b",
    "predicted_a",
    "predicted_b",
)


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance between two sequences: the fewest insertions, deletions and substitutions."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def kl_divergence(scores_a: torch.Tensor, scores_b: torch.Tensor) -> torch.Tensor:
    """D_KL(softmax(a) || softmax(b)) over the last axis."""
    la, lb = torch.log_softmax(scores_a.double(), -1), torch.log_softmax(scores_b.double(), -1)
    return (la.exp() * (la - lb)).sum(-1)


@dataclass
class DriftResult:
    """Per pair and layer (layers 1..L) quantities of one subject; NaN where a quantity does not exist."""

    subject: str
    cosine: torch.Tensor  # (P, L)
    edit: torch.Tensor  # (P, L)
    kl: torch.Tensor  # (P, L)
    label_diff: torch.Tensor  # (P, L)
    predicted_a: torch.Tensor | None  # (P, L) class index per layer
    predicted_b: torch.Tensor | None

    @property
    def num_layers(self) -> int:
        return self.cosine.shape[1]

    def layer_means(self) -> list[dict]:
        rows = []
        for layer in range(self.num_layers):
            rows.append(
                {
                    "model": self.subject,
                    "layer": layer + 1,
                    "cosine_similarity": _mean(self.cosine[:, layer]),
                    "edit_distance": _mean(self.edit[:, layer]),
                    "kl_divergence": _mean(self.kl[:, layer]),
                    "label_difference": _mean(self.label_diff[:, layer]),
                    "n_pairs": self.cosine.shape[0],
                }
            )
        return rows


def _mean(x: torch.Tensor) -> float:
    return float("nan") if torch.isnan(x).all() else float(x[~torch.isnan(x)].mean())


def drift_from_readouts(name: str, ra: LayerReadout, rb: LayerReadout) -> DriftResult:
    """The four per-layer quantities for pairs (A_i, B_i) from the read-outs of the A and B sides."""
    cos = torch.nn.functional.cosine_similarity(ra.pooled[1:].double(), rb.pooled[1:].double(), dim=-1).T  # (P, L)
    p, layers = cos.shape
    nan = torch.full((p, layers), float("nan"), dtype=torch.float64)
    edit = nan.clone()
    if ra.topk is not None and rb.topk is not None:
        for layer in range(layers):
            for i in range(p):
                edit[i, layer] = levenshtein(ra.topk[layer + 1, i].tolist(), rb.topk[layer + 1, i].tolist())
    kl, diff, pred_a, pred_b = nan.clone(), nan.clone(), None, None
    if ra.class_scores is not None and rb.class_scores is not None:
        kl = kl_divergence(ra.class_scores[1:], rb.class_scores[1:]).T
        pred_a, pred_b = ra.class_scores[1:].argmax(-1).T, rb.class_scores[1:].argmax(-1).T
        diff = (pred_a != pred_b).double()
    return DriftResult(name, cos, edit, kl, diff, pred_a, pred_b)


def probe_drift(subject: Subject, pairs: Sequence[Pair], *, top_k: int = 10, batch_size: int = 16) -> DriftResult:
    """Read both sides of every pair through ``subject`` and compare them layer by layer."""
    ra = read_layers(subject, [p.a.example() for p in pairs], top_k=top_k, batch_size=batch_size)
    rb = read_layers(subject, [p.b.example() for p in pairs], top_k=top_k, batch_size=batch_size)
    return drift_from_readouts(subject.name, ra, rb)


def drift_csv(results: Sequence[DriftResult]) -> str:
    return csv_text((row for result in results for row in result.layer_means()), COLUMNS)


def pairs_csv(
    results: Sequence[DriftResult], pairs: Sequence[Pair], data_names: Sequence[str], class_names: dict[str, list[str]]
) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PAIR_COLUMNS, lineterminator="\n")
    writer.writeheader()

    def label(row):
        return "|".join(data_names[i] for i in row.labels)

    for result in results:
        names = class_names.get(result.subject, [])
        for i, pair in enumerate(pairs):
            for layer in range(result.num_layers):
                pa = pb = ""
                if result.predicted_a is not None:
                    pa, pb = (
                        names[int(t[i, layer])] if names else int(t[i, layer])
                        for t in (result.predicted_a, result.predicted_b)
                    )
                writer.writerow(
                    {
                        "model": result.subject,
                        "pair": i,
                        "layer": layer + 1,
                        "cosine_similarity": format_number(float(result.cosine[i, layer])),
                        "edit_distance": format_number(float(result.edit[i, layer])),
                        "kl_divergence": format_number(float(result.kl[i, layer])),
                        "label_difference": format_number(float(result.label_diff[i, layer])),
                        "label_a": label(pair.a),
                        "label_b": label(pair.b),
                        "predicted_a": pa,
                        "predicted_b": pb,
                    }
                )
    return buf.getvalue()


def summary(results: Sequence[DriftResult], n_pairs: int) -> str:
    """A few lines per subject: where the curves start and end, and where predictions first split."""
    lines = [f"preference drift over {n_pairs} pairs (mean over pairs; layers 1..L)"]
    for r in results:
        rows = r.layer_means()
        first, last = rows[0], rows[-1]
        peak = max(rows, key=lambda row: -1 if math.isnan(row["kl_divergence"]) else row["kl_divergence"])
        lines.append(f"{r.subject}: {r.num_layers} layers")
        lines.append(
            f"  cosine similarity  layer 1 {format_number(first['cosine_similarity'])} -> layer {last['layer']} "
            f"{format_number(last['cosine_similarity'])} "
            f"(min {format_number(min(x['cosine_similarity'] for x in rows))})"
        )
        if not math.isnan(first["edit_distance"]):
            lines.append(
                f"  top-k edit distance layer 1 {format_number(first['edit_distance'])} -> layer {last['layer']} "
                f"{format_number(last['edit_distance'])}"
            )
        if not math.isnan(first["kl_divergence"]):
            lines.append(
                f"  KL(p_A || p_B)     layer 1 {format_number(first['kl_divergence'])} -> layer {last['layer']} "
                f"{format_number(last['kl_divergence'])} "
                f"(peak {format_number(peak['kl_divergence'])} at layer {peak['layer']})"
            )
            lines.append(
                f"  predictions differ in {format_number(100 * last['label_difference'])}% of pairs at the last layer "
                f"(mean over layers {format_number(100 * sum(x['label_difference'] for x in rows) / len(rows))}%)"
            )
        else:
            lines.append("  no label read-out (a bare encoder has no trained head): KL and label difference empty")
    return "\n".join(lines)


def write_outputs(
    output: Path,
    results: Sequence[DriftResult],
    pairs: Sequence[Pair],
    data_names: Sequence[str],
    class_names: dict[str, list[str]],
    *,
    title: str = "",
) -> dict[str, Path]:
    """drift.csv, drift_pairs.csv, pairs.jsonl, drift.png and drift_summary.txt in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": output / "drift.csv",
        "pairs_csv": output / "drift_pairs.csv",
        "pairs": output / "pairs.jsonl",
        "png": output / "drift.png",
        "summary": output / "drift_summary.txt",
    }
    write_text_atomically(paths["csv"], drift_csv(results))
    write_text_atomically(paths["pairs_csv"], pairs_csv(results, pairs, data_names, class_names))
    lines = []
    for i, p in enumerate(pairs):
        lines.append(
            json.dumps(
                {
                    "pair": i,
                    "text_a": p.a.text,
                    "text_b": p.b.text,
                    "label_a": "|".join(data_names[c] for c in p.a.labels),
                    "label_b": "|".join(data_names[c] for c in p.b.labels),
                    "mining_cosine": None if p.cosine is None else round(p.cosine, 6),
                },
                ensure_ascii=False,
            )
        )
    write_text_atomically(paths["pairs"], "\n".join(lines) + "\n")
    text = summary(results, len(pairs))
    write_text_atomically(paths["summary"], text + "\n")
    drift_figure([r.layer_means() for r in results], paths["png"], title=title)
    return paths
