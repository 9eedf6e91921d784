"""Check prefalign's Le-Wi-Di 2023 scores against the organisers' scoring recipe on the full test sets.

    python benchmarks/lewidi2023_scorer_check.py [--data ../shared/data/lewidi]
        [--out benchmarks/results/lewidi2023_scorer_check.json]

For each Le-Wi-Di set (MD-Agreement, ConvAbuse, ArMIS) it writes the test split as the organisers' truth
file (per line: released hard_label, soft_label "0", soft_label "1", tab-separated) and two result files
in the same format: random predictions (Dirichlet(1, 1), seed 0, the first five items set to a hard
1.0 / 0.0 so the clip is exercised), the starting kit's majority baseline (every line "0  1.0  0.0") and
the label prior (every line the mean annotator distribution of the training split: what a model that
ignores the text can reach), on the full test split and on its first 100 items (the annotator-models grid's).
Each pair is scored three ways:

* ``recipe``: the organisers' snippets 4-6 as their participants ran them, spelled out here: read field 0
  as text and fields 1-2 as floats, ``-sum(q * log(clip(p, 1e-12, 1 - 1e-12) + 1e-9)) / N`` and
  scikit-learn's ``f1_score(..., average="micro")`` on the text labels;
* ``files``: prefalign's ``parse_lewidi_results`` + ``lewidi2023_cross_entropy`` / ``lewidi2023_micro_f1``;
* ``pipeline``: the split read by ``read_lewidi`` into a TaskDataset and scored by ``dataset_metrics``
  (what training and ``prefalign eval`` report as ``lewidi_ce`` and ``micro_f1``).

The record keeps every score and whether the three agree exactly. No model is trained (seconds of CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np

from prefalign.annotations import AnnotationWarning
from prefalign.annotations.dataset import to_task_dataset
from prefalign.annotations.metrics import dataset_metrics
from prefalign.annotations.readers import read_lewidi
from prefalign.annotations.targets import label_distribution
from prefalign.evaluation.disagreement import lewidi2023_cross_entropy, lewidi2023_micro_f1, parse_lewidi_results
from prefalign.utils.atomic_files import write_text_atomically

SETS = ("MD-Agreement", "ConvAbuse", "ArMIS")


def truth_file(records: dict) -> str:
    return "".join(f"{r['hard_label']}\t{r['soft_label']['0']}\t{r['soft_label']['1']}\n" for r in records.values())


def result_file(probs: np.ndarray) -> str:
    return "".join(f"{int(np.argmax(p))}\t{p[0]}\t{p[1]}\n" for p in probs)


def recipe(truth: str, result: str) -> tuple[float, float]:
    """The organisers' recipe, written out: text hard labels, two float columns, clip, + 1e-9, micro F1."""
    from sklearn.metrics import f1_score

    def columns(text: str) -> tuple[np.ndarray, list[str]]:
        rows = [line.replace("\n", "").split("\t") for line in text.splitlines(keepends=True)]
        return np.array([[float(r[1]), float(r[2])] for r in rows]), [r[0] for r in rows]

    q, hard_ref = columns(truth)
    p, hard_pred = columns(result)
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return float(-np.sum(q * np.log(p + 1e-9)) / p.shape[0]), float(f1_score(hard_ref, hard_pred, average="micro"))


def check(path: Path, dataset: str, probs: np.ndarray) -> dict:
    """The three scorings of ``probs`` against the first len(probs) items of the test file."""
    n = len(probs)
    records = dict(list(json.loads(path.read_text(encoding="utf-8")).items())[:n])
    truth, result = truth_file(records), result_file(probs)
    hard_ref, soft_ref = parse_lewidi_results(truth)
    hard_pred, soft_pred = parse_lewidi_results(result)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        data = to_task_dataset(read_lewidi(path, dataset).subset(range(n)), "soft")
    scores = dataset_metrics(probs, data)
    out = {
        "recipe": recipe(truth, result),
        "files": (lewidi2023_cross_entropy(soft_ref, soft_pred), lewidi2023_micro_f1(hard_ref, hard_pred)),
        "pipeline": (scores["lewidi_ce"], scores["micro_f1"]),
        "pipeline_soft_ce": scores["soft_ce"],
        "pipeline_accuracy_vs_our_majority": scores["accuracy"],
    }
    out["identical"] = out["recipe"] == out["files"] == out["pipeline"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/lewidi", help="folder with <SET>/<SET>_test.json")
    parser.add_argument("--out", default="benchmarks/results/lewidi2023_scorer_check.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for dataset in SETS:
        path = Path(args.data) / dataset / f"{dataset}_test.json"
        n = len(json.loads(path.read_text(encoding="utf-8")))
        random = rng.dirichlet([1.0, 1.0], size=n)
        random[:5] = [1.0, 0.0]
        majority = np.tile([1.0, 0.0], (n, 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnnotationWarning)
            train = read_lewidi(Path(args.data) / dataset / f"{dataset}_train.json", dataset)
        prior = np.tile(label_distribution(train.counts).mean(0), (n, 1))
        for predictor, probs in (
            ("random Dirichlet(1,1), seed 0", random),
            ("starting-kit majority baseline", majority),
            ("label prior (training mean)", prior),
            ("label prior, first 100 test items (as our grid)", prior[:100]),
        ):
            row = {"dataset": dataset, "test_items": len(probs), "predictor": predictor, **check(path, dataset, probs)}
            rows.append(row)
            print(f"{dataset:13s} {predictor:32s} recipe {row['recipe']} identical={row['identical']}")
    record = {
        "command": "python benchmarks/lewidi2023_scorer_check.py --data " + args.data,
        "data": "Le-Wi-Di 2023 test splits as released (shared/data/lewidi, see its SOURCE.md)",
        "machine": "2 shared CPU cores",
        "python": platform.python_version(),
        "rows": rows,
    }
    write_text_atomically(args.out, json.dumps(record, indent=1) + "\n")
    return 0 if all(r["identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
