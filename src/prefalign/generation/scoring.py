"""Score a method on a generation task's test split by generating its answers (beam search of 3)."""

from __future__ import annotations

from ..data.collator import Collator, PromptFormat
from ..data.examples import Example, TaskDataset
from ..errors import ConfigError, DataError
from ..evaluation.judge import gpt_score
from ..evaluation.metrics import accuracy, answer_polarity, f1_em
from .generate import generate_from_ids

METRICS = ("f1-em", "accuracy", "gpt-score")


def gold_polarity(ex: Example) -> str | None:
    """The yes/no label of a BoolQ-style example.

    Read from ``meta["label"]`` (or ``meta["polarity"]``): a bool, 1/0 in BoolQ's label order
    (["no", "yes"]), or the words yes/no/true/false; without one, the polarity of the reference
    answer (``answer_polarity(ex.answer)``).
    """
    for key in ("polarity", "label"):
        value = ex.meta.get(key)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int) and value in (0, 1):
            return "yes" if value == 1 else "no"
        if isinstance(value, str) and value.strip().lower() in ("yes", "no", "true", "false"):
            return "yes" if value.strip().lower() in ("yes", "true") else "no"
    return answer_polarity(ex.answer or "")


def default_max_new_tokens(tokenizer, data: TaskDataset, slack: int = 8, cap: int = 256) -> int:
    """Room for the longest reference answer plus ``slack`` tokens, at most ``cap``."""
    longest = max(
        len(tokenizer(" " + ref, add_special_tokens=False)["input_ids"])
        for ex in data.examples
        for ref in (ex.references or [ex.answer])
    )
    return min(longest + slack, cap)


def evaluate_generation(
    model,
    backbone,
    data: TaskDataset,
    metric: str,
    *,
    collator: Collator | None = None,
    prompt: PromptFormat | None = None,
    max_length: int = 128,
    num_beams: int = 3,
    max_new_tokens: int | None = None,
    batch_size: int = 8,
    judge=None,
    return_predictions: bool = False,
) -> dict:
    """Generate an answer per example of ``data`` with ``model``'s prefixes and score it by ``metric``.

    * ``"f1-em"`` (ReCoRD): {"f1", "em", "f1_em"}, SQuAD-normalised, max over each example's references;
    * ``"accuracy"`` (BoolQ-PS's styled yes/no answers): {"accuracy"}, the answer's polarity
      (``answer_polarity``) against the example's yes/no label (``gold_polarity``);
    * ``"gpt-score"`` (Alpaca): ``prefalign.evaluation.judge.gpt_score(instructions, references,
      responses, judge)`` -> {"gpt_score" (its mean), "judge" (its name)}; ``judge=None`` uses
      that module's offline stand-in.

    Every result also holds ``n``; ``return_predictions`` adds the generated texts.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown generation metric '{metric}'; choose one of {', '.join(METRICS)}")
    if not data.is_generation:
        raise DataError(f"{data.name}: evaluate_generation needs generation examples (with answer texts)")
    tokenizer = backbone.tokenizer
    collator = collator or Collator(
        tokenizer, backbone.geometry, data.num_classes, prompt or PromptFormat(), max_length
    )
    prompt_ids = collator.prompt_ids(data.examples)
    new_tokens = max_new_tokens or default_max_new_tokens(tokenizer, data)
    predictions = generate_from_ids(
        model, tokenizer, prompt_ids, num_beams=num_beams, max_new_tokens=new_tokens, batch_size=batch_size
    )  # the method's own LM: baselines adapt a copy
    result: dict = {"n": len(data)}
    if metric == "f1-em":
        result.update(f1_em(predictions, [ex.references or [ex.answer] for ex in data.examples]))
    elif metric == "accuracy":
        golds = [gold_polarity(ex) for ex in data.examples]
        missing = [i for i, g in enumerate(golds) if g is None]
        if missing:
            raise DataError(
                f"{data.name}: example {missing[0]} has no yes/no label in meta and its answer "
                f"{data.examples[missing[0]].answer!r} reads as neither yes nor no"
            )
        result["accuracy"] = accuracy([answer_polarity(p) for p in predictions], golds)
    else:
        result.update(_gpt_score(data, predictions, judge))
    if return_predictions:
        result["predictions"] = predictions
    return result


def _gpt_score(data: TaskDataset, predictions: list[str], judge) -> dict:
    instructions = [ex.text if ex.text_pair is None else f"{ex.text}\n{ex.text_pair}" for ex in data.examples]
    references = [ex.answer for ex in data.examples]
    score = gpt_score(instructions, references, predictions, judge)  # {"mean", "n", "judge"}
    if not isinstance(score, dict):
        return {"gpt_score": float(score)}
    out = {"gpt_score": float(score.get("gpt_score", score.get("mean")))}
    if isinstance(score.get("judge"), str):
        out["judge"] = score["judge"]  # who scored (the offline stand-in says so)
    return out
