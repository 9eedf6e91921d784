"""GLUE tasks: SST-2 and RTE (RTE also in its SuperGLUE JSON-lines layout)."""

from __future__ import annotations

from pathlib import Path

from ..data.examples import TaskDataset
from ..data.readers import read_table
from .registry import SENTIMENT, Splits, TaskDefinition, find_file, register, train_and_test

# -- SST-2 -----------------------------------------------------------------------------------------------
SST2_LABELS = ["negative", "positive"]


def _load_sst2(folder: Path, seed: int) -> Splits:
    # GLUE's test.tsv has no labels, so its dev.tsv serves as the test set (as in the paper's
    # tables) and the runner carves validation out of train.
    train = read_table(
        find_file(folder, ("train.tsv",), "sst2"), text_column="sentence", label_names=SST2_LABELS, name="sst2/train"
    )
    test = read_table(
        find_file(folder, ("dev.tsv", "validation.tsv"), "sst2"),
        text_column="sentence",
        label_names=SST2_LABELS,
        name="sst2/dev",
    )
    return train, None, test


register(
    TaskDefinition(
        name="sst2",
        description="GLUE SST-2 binary sentiment; dev.tsv is the test set, validation is held out of train",
        files="GLUE's train.tsv and dev.tsv (columns sentence, label)",
        load=_load_sst2,
        **SENTIMENT,
    )
)


# -- RTE (GLUE / SuperGLUE) --------------------------------------------------------------------------------
# Index 1 is entailment, as in the paper's eq. 19-21 (y = 1 entailment).
RTE_LABELS = ["not_entailment", "entailment"]


def _read_rte(path: Path, name: str) -> TaskDataset:
    if path.suffix == ".tsv":  # GLUE layout: index, sentence1, sentence2, label (names)
        data = read_table(
            path, text_column="sentence1", text_pair_column="sentence2", label_names=RTE_LABELS, name=name
        )
    else:  # SuperGLUE layout: {"premise", "hypothesis", "label": "entailment" | "not_entailment"}
        data = read_table(path, text_column="premise", text_pair_column="hypothesis", label_names=RTE_LABELS, name=name)
    return data


_load_rte = train_and_test(_read_rte, "rte", ("train.jsonl", "train.tsv"), ("val.jsonl", "dev.tsv", "validation.jsonl"))


register(
    TaskDefinition(
        name="rte",
        kind="classification",
        metric="accuracy",
        description="RTE textual entailment; val is the test set, validation is held out of train",
        files="SuperGLUE's train.jsonl and val.jsonl (premise, hypothesis, label) or GLUE's train.tsv and dev.tsv",
        load=_load_rte,
        decoder_template='{text}\nQuestion: does this mean that "{text_pair}"? Answer yes or no.\nAnswer:',
        verbalizers=[" no", " yes"],
        shift="rte-e",
    )
)
