"""Label bias layer by layer through early exit (bias-aware PEFT paper, section 3, Figure 2, appendix G).

Every layer's last-token state goes through the decoder's final norm and LM head (early exit, the
logit lens of ``layers``). For each label c and layer l:

* ``contain``: the mean raw LM-head logit of c's label word over the samples whose gold labels
  include c (the paper's *Contain_c*);
* ``not_contain``: the same mean over the samples whose gold labels do not include c
  (*NOT Contain_c*);
* ``gap`` = contain - not_contain: how well layer l tells c apart (Figure 2b's distance).

A label's word is its verbalizer's first token, as the classifier scores it. Decoders only: an
encoder has no LM head to exit through. Samples may carry several labels (TweetEmotion style).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from ..utils.atomic_files import write_text_atomically
from .layers import Subject, csv_text, format_number, read_layers
from .plots import bias_compare_figure, bias_figure, safe_name
from .probe_data import ProbeRow

COLUMNS = ("model", "layer", "label", "contain", "not_contain", "gap", "n_contain", "n_not_contain")


@dataclass
class BiasResult:
    subject: str
    label_names: list[str]
    contain: torch.Tensor  # (L, C), layers 1..L; NaN where no sample (does not) contain the label
    not_contain: torch.Tensor  # (L, C)
    n_contain: list[int]
    n_not_contain: list[int]

    @property
    def num_layers(self) -> int:
        return self.contain.shape[0]

    def rows(self) -> list[dict]:
        out = []
        for layer in range(self.num_layers):
            for c, name in enumerate(self.label_names):
                con, nco = float(self.contain[layer, c]), float(self.not_contain[layer, c])
                out.append(
                    {
                        "model": self.subject,
                        "layer": layer + 1,
                        "label": name,
                        "contain": con,
                        "not_contain": nco,
                        "gap": con - nco,
                        "n_contain": self.n_contain[c],
                        "n_not_contain": self.n_not_contain[c],
                    }
                )
        return out


def label_map(subject: Subject, data_names: Sequence[str]) -> list[int]:
    """For each data label, the subject's class index (by name); a ConfigError if one is missing."""
    own = [str(n) for n in subject.label_names]
    missing = [n for n in data_names if str(n) not in own]
    if missing:
        raise ConfigError(
            f"{subject.name} knows the labels {own}, but the data has {missing}; probe data "
            "labelled with the checkpoint's own label names"
        )
    return [own.index(str(n)) for n in data_names]


def contain_means(label_logits: torch.Tensor, contains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(contain, not_contain), each (L, C): means of ``label_logits`` (L, N, C) over the samples where
    ``contains`` (N, C, bool) is true / false; NaN where the set is empty."""
    m = contains.to(label_logits.dtype).unsqueeze(0)  # (1, N, C)

    def mean(weights):
        total = weights.sum(1)
        return torch.where(total > 0, (label_logits * weights).sum(1) / total.clamp(min=1), torch.nan)

    return mean(m), mean(1 - m)


def probe_bias(
    subject: Subject, rows: Sequence[ProbeRow], data_names: Sequence[str], *, batch_size: int = 16
) -> BiasResult:
    """Contain / NOT Contain per label and layer for ``subject`` on ``rows`` (labels index ``data_names``)."""
    if not subject.is_decoder:
        raise ConfigError(
            f"probe bias exits early through an LM head, and {subject.name} is an encoder (no LM head); "
            "use a decoder (LLaMA, Mistral, Qwen2, GPT-2 ...)"
        )
    mapping = label_map(subject, data_names)
    readout = read_layers(subject, [r.example() for r in rows], top_k=0, batch_size=batch_size)
    logits = readout.label_logits[1:, :, mapping].double()  # (L, N, C) in the data's label order
    contains = torch.zeros(len(rows), len(data_names), dtype=torch.bool)
    for i, r in enumerate(rows):
        for c in r.labels:
            contains[i, c] = True
    contain, not_contain = contain_means(logits, contains)
    n_in = contains.sum(0).tolist()
    return BiasResult(
        subject.name, [str(n) for n in data_names], contain, not_contain, n_in, [len(rows) - k for k in n_in]
    )


def bias_csv(results: Sequence[BiasResult]) -> str:
    return csv_text((row for r in results for row in r.rows()), COLUMNS)


def summary(results: Sequence[BiasResult], n_samples: int) -> str:
    """Per subject, at the last layer: each label's Contain, NOT Contain and gap, and the spread of Contain."""
    lines = [f"label bias by early exit over {n_samples} samples (mean raw LM-head logit of each label word)"]
    for r in results:
        last = r.num_layers - 1
        lines.append(f"{r.subject}: layer {r.num_layers} (last)")
        for c, name in enumerate(r.label_names):
            con, nco = float(r.contain[last, c]), float(r.not_contain[last, c])
            lines.append(
                f"  {name:16s} Contain {format_number(con):>9s}  NOT Contain {format_number(nco):>9s}  "
                f"gap {format_number(con - nco):>9s}"
                f"  (n {r.n_contain[c]} / {r.n_not_contain[c]})"
            )
        finite = [float(v) for v in r.contain[last] if not math.isnan(float(v))]
        if len(finite) > 1:
            lines.append(f"  spread of Contain across labels (max - min): {format_number(max(finite) - min(finite))}")
    return "\n".join(lines)


def write_outputs(output: Path, results: Sequence[BiasResult], n_samples: int, *, title: str = "") -> dict[str, Path]:
    """bias.csv, bias_summary.txt, bias_<model>.png per subject and, for 2+ subjects, bias_compare.png."""
    output.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"csv": output / "bias.csv", "summary": output / "bias_summary.txt"}
    write_text_atomically(paths["csv"], bias_csv(results))
    write_text_atomically(paths["summary"], summary(results, n_samples) + "\n")
    for r in results:
        paths[f"png:{r.subject}"] = bias_figure(r, output / f"bias_{safe_name(r.subject)}.png", title=title)
    if len(results) > 1:
        paths["compare"] = bias_compare_figure(results, output / "bias_compare.png", title=title)
    return paths
