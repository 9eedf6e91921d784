"""SuperGLUE tasks in their JSON-lines layouts: BoolQ, COPA and ReCoRD (RTE lives in glue.py)."""

from __future__ import annotations

from pathlib import Path

from ..data.examples import Example, TaskDataset
from ..data.readers import read_records, record_field
from ..errors import DataError
from .registry import SPLIT_SEED, Splits, TaskDefinition, find_file, held_out, register, split_off, train_and_test

# -- BoolQ ----------------------------------------------------------------------------------------------------
BOOLQ_LABELS = ["no", "yes"]


def _read_boolq(path: Path, name: str) -> TaskDataset:
    # HF export: {"question", "answer": bool, "passage"}; SuperGLUE: {"question", "passage", "label": bool, "idx"}.
    examples = []
    for n, r in enumerate(read_records(path), 1):
        key = "answer" if "answer" in r else "label"
        value = r.get(key)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "0", "1"):
            value = value.strip().lower() in ("true", "yes", "1")
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            value = bool(value)
        if not isinstance(value, bool):
            raise DataError(
                f"{path} record {n}: field 'answer' (HF export) or 'label' (SuperGLUE) must be "
                f"true or false, got {value!r}"
            )
        examples.append(
            Example(
                text=record_field(r, "passage", path, n),
                text_pair=record_field(r, "question", path, n),
                label=int(value),
                meta={"row": n, **({"idx": r["idx"]} if "idx" in r else {})},
            )
        )
    return TaskDataset(examples, list(BOOLQ_LABELS), name)


def _load_boolq(folder: Path, seed: int) -> Splits:
    val = _read_boolq(
        find_file(folder, ("val.jsonl", "boolq_validation.json", "validation.json", "dev.jsonl"), "boolq"), "boolq/val"
    )
    train_file = find_file(folder, ("train.jsonl", "boolq_train.json", "train.json"), "boolq", required=False)
    if train_file is not None:
        return _read_boolq(train_file, "boolq/train"), None, val
    # Only the validation set: hold out a fixed test set, train on the rest.
    train, test = split_off(val, held_out(len(val), 1000, 0.5), SPLIT_SEED, ("boolq/train", "boolq/test"))
    return train, None, test


register(
    TaskDefinition(
        name="boolq",
        kind="classification",
        metric="accuracy",
        description="SuperGLUE BoolQ yes/no questions on a passage; val is the test set. With only the validation "
        "file, 1,000 of it (half of a set of 2,000 or fewer) are held out as test with a fixed seed and "
        "the rest is train",
        files="SuperGLUE's train.jsonl and val.jsonl (question, passage, label) or the HF export "
        "boolq_validation.json / boolq_train.json (question, answer, passage)",
        load=_load_boolq,
        decoder_template="Passage: {text}\nQuestion: {text_pair}?\nAnswer:",
        verbalizers=[" no", " yes"],
        shift="boolq-ps",
    )
)


# -- COPA -------------------------------------------------------------------------------------------------------
COPA_LABELS = ["choice1", "choice2"]
COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _read_copa(path: Path, name: str) -> TaskDataset:
    examples = []
    for n, r in enumerate(read_records(path), 1):
        question = record_field(r, "question", path, n)
        if question not in COPA_QUESTIONS:
            raise DataError(f"{path} record {n}: field 'question' is {question!r}, expected 'cause' or 'effect'")
        label = record_field(r, "label", path, n, int)
        if label not in (0, 1):
            raise DataError(f"{path} record {n}: field 'label' is {label!r}, expected 0 or 1")
        premise = record_field(r, "premise", path, n)
        examples.append(
            Example(
                text=f"{premise} {COPA_QUESTIONS[question]}",
                label=label,
                choices=[record_field(r, "choice1", path, n), record_field(r, "choice2", path, n)],
                meta={"row": n, "premise": premise, "question": question, **({"idx": r["idx"]} if "idx" in r else {})},
            )
        )
    return TaskDataset(examples, list(COPA_LABELS), name)


_load_copa = train_and_test(_read_copa, "copa", ("train.jsonl",), ("val.jsonl", "validation.jsonl", "dev.jsonl"))


register(
    TaskDefinition(
        name="copa",
        kind="multiple_choice",
        metric="accuracy",
        description="SuperGLUE COPA: pick the cause or effect of a premise from two choices; val is the test set "
        "(test has no labels), validation is held out of train",
        files="SuperGLUE's train.jsonl and val.jsonl (premise, choice1, choice2, question, label)",
        load=_load_copa,
        decoder_template="{text}",
        shift="copa-bs",
    )
)


# -- ReCoRD -----------------------------------------------------------------------------------------------------
def _read_record(path: Path, name: str) -> TaskDataset:
    """One example per query: the passage (``@highlight`` lines as bullets) and the query with @placeholder."""
    examples = []
    for n, r in enumerate(read_records(path), 1):
        passage = record_field(r, "passage", path, n, dict)
        raw = record_field(passage, "text", path, n)
        entities = []
        for span in passage.get("entities") or []:
            start, end = (span.get("start"), span.get("end")) if isinstance(span, dict) else (None, None)
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(raw)):
                raise DataError(
                    f"{path} record {n}: field 'passage.entities' has span {span!r} outside the passage "
                    "(ReCoRD spans are inclusive character offsets)"
                )
            entities.append(raw[start : end + 1])
        text = raw.replace("@highlight\n", "- ")
        qas = record_field(r, "qas", path, n, list)
        for k, qa in enumerate(qas):
            if not isinstance(qa, dict):
                raise DataError(f"{path} record {n}: field 'qas[{k}]' is not an object")
            query = record_field(qa, "query", path, n)
            answers = [a.get("text") for a in qa.get("answers") or [] if isinstance(a, dict)]
            answers = list(dict.fromkeys(a for a in answers if isinstance(a, str) and a.strip()))
            if not answers:
                raise DataError(
                    f"{path} record {n}: field 'qas[{k}].answers' is missing or empty; ReCoRD's test "
                    "split is unlabelled, use train.jsonl and val.jsonl"
                )
            examples.append(
                Example(
                    text=text,
                    text_pair=query,
                    answer=answers[0],
                    references=answers,
                    meta={
                        "row": n,
                        "entities": list(dict.fromkeys(entities)),
                        **({"idx": qa["idx"]} if "idx" in qa else {}),
                    },
                )
            )
    return TaskDataset(examples, [], name)


_load_record = train_and_test(_read_record, "record", ("train.jsonl",), ("val.jsonl", "dev.jsonl", "validation.jsonl"))


register(
    TaskDefinition(
        name="record",
        kind="generation",
        metric="f1-em",
        description="SuperGLUE ReCoRD cloze QA: name the passage entity that fills @placeholder; one example per "
        "query, answer = the first gold text, references = all; val is the test set",
        files="SuperGLUE's train.jsonl and val.jsonl ({passage: {text, entities}, qas: [{query, answers}]})",
        load=_load_record,
        decoder_template="Passage: {text}\nQuery: {text_pair}\nWhich entity fills @placeholder?\nAnswer:",
        shift="record-r",
    )
)
