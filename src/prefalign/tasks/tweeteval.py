"""TweetEval (emotion, hate) in the cardiffnlp/tweeteval layout.

{train,val,test}_text.txt (one tweet a line), {split}_labels.txt (one integer a line, aligned) and
mapping.txt ("id<TAB>name"). Single-label; blank tweets are skipped. The decoder prompts follow the
bias-aware PEFT paper's appendix H with instruction (its main setting, Table 2); its no-instruction
template is "Review: {text}\\nEmotion:" (set data.template).
"""

from __future__ import annotations

from pathlib import Path

from ..data.examples import Example, TaskDataset
from ..errors import DataError
from .registry import Splits, TaskDefinition, find_file, register


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

register(
    TaskDefinition(
        name="tweeteval-emotion",
        kind="classification",
        metric="accuracy",
        description="TweetEval emotion (SemEval-2018 Task 1, 4 labels: anger, joy, optimism, sadness); the bias-aware "
        "PEFT paper's TweetEmotion at four labels; weighted F1 is reported beside accuracy",
        files=_TWEETEVAL_FILES,
        load=_tweeteval_loader("tweeteval-emotion"),
        decoder_template="Instruction: Select the right emotion word for the given Review from Choices.\n"
        "Choices: anger, joy, optimism, sadness\nReview: {text}\nEmotion:",
        verbalizers=[" anger", " joy", " optimism", " sadness"],
    )
)

register(
    TaskDefinition(
        name="tweeteval-hate",
        kind="classification",
        metric="accuracy",
        description="TweetEval hate (SemEval-2019 Task 5 HatEval, 2 labels: not-hate, hate); weighted F1 is "
        "reported beside accuracy",
        files=_TWEETEVAL_FILES,
        load=_tweeteval_loader("tweeteval-hate"),
        decoder_template="Instruction: Select the right label for the given Review from Choices.\n"
        "Choices: neutral, hate\nReview: {text}\nAnswer:",
        verbalizers=[" neutral", " hate"],
    )
)
