"""Verbalizers and the collator that turns Examples into model inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError, DataError
from ..models.classifier import TaskSpec
from ..models.introspect import ModelGeometry
from .examples import Example, TaskDataset
from .prompts import PromptFormat


def build_task_spec(dataset: TaskDataset, geo: ModelGeometry, tokenizer, prompt: PromptFormat) -> TaskSpec:
    """The classifier's view of a task; for decoders, the verbalizer's first token per class."""
    mc = dataset.is_multiple_choice
    if dataset.is_generation:
        require_decoder(geo)
        return TaskSpec(num_classes=dataset.num_classes, generation=True)
    if not geo.is_decoder or mc:
        return TaskSpec(num_classes=dataset.num_classes, multiple_choice=mc, label_names=tuple(dataset.label_names))
    words = prompt.verbalizers or [" " + name for name in dataset.label_names]
    if len(words) != dataset.num_classes:
        raise ConfigError(f"data.verbalizers has {len(words)} entries for {dataset.num_classes} classes")
    ids = []
    for word in words:
        toks = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not toks:
            raise ConfigError(f"verbalizer {word!r} tokenises to nothing")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        raise ConfigError(f"verbalizers {words} share a first token; choose label words that start differently")
    return TaskSpec(
        num_classes=dataset.num_classes,
        multiple_choice=False,
        verbalizer_ids=tuple(ids),
        label_names=tuple(dataset.label_names),
    )


def require_decoder(geo: ModelGeometry) -> None:
    """Generation tasks train and generate through an LM head: encoders cannot run them."""
    if not geo.is_decoder:
        raise ConfigError(
            f"this is a generation task (examples carry answer texts), and generation needs a decoder; "
            f"'{geo.model_type}' is an encoder. Use a decoder such as LLaMA, Mistral, Qwen2 or GPT-2"
        )


class Collator:
    """Tokenise a list of Examples into a batch for any prefalign method.

    Output keys: ``input_ids``, ``attention_mask`` (right-padded), ``labels`` (B,), ``target_dist``
    (B, C) and, for decoder multiple choice, ``score_mask`` marking each option's tokens. Examples
    of multi-annotator data add ``annotation_dist`` (B, C) and ``group_dist`` (B, G, C) from meta, and
    ``reference_dist`` (B, C) and ``reference_label`` (B,) where the data releases its own labels. Multiple
    choice batches hold B*C sequences, example-major.

    Generation examples (``answer`` set; decoders only) give ``input_ids`` = prompt + " " + answer
    + eos, right-padded, and token ``labels`` (B, T) holding the answer ids (eos included) and
    -100 on prompt and padding positions; the prompt, never the answer, is cut to ``max_length``.
    ``prompt_batch`` collates the prompts alone (left-padded) for generation.

    With ``annotators`` (annotator id -> index, an annotator-conditioned model's vocabulary) examples
    whose meta lists ``annotators`` add ``annotators`` (B, K): each example's annotators' indices, -2
    for an id outside the vocabulary, -1 padding; with ``attribute_values`` ('col=value' -> index)
    also ``annotator_attributes`` (B, K, A), -1 where none.
    """

    def __init__(
        self,
        tokenizer,
        geo: ModelGeometry,
        num_classes: int,
        prompt: PromptFormat | None = None,
        max_length: int = 128,
        *,
        annotators: dict[str, int] | None = None,
        attribute_values: dict[str, int] | None = None,
    ) -> None:
        self.tokenizer, self.geo, self.num_classes = tokenizer, geo, num_classes
        self.prompt, self.max_length = prompt or PromptFormat(), max_length
        self.annotators, self.attribute_values = annotators, attribute_values or {}

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        if not examples:
            raise DataError("empty batch")
        if examples[0].answer is not None:
            return self._generation(examples)
        if examples[0].choices is not None:
            batch = self._multiple_choice(examples)
        elif self.geo.is_decoder:
            batch = self._pad([self._prompt_ids(ex) for ex in examples])
        else:
            batch = self._encode_pairs(
                [self.prompt.render(ex, False) for ex in examples],
                [ex.text_pair for ex in examples] if examples[0].text_pair is not None else None,
            )
        batch["labels"] = torch.tensor([ex.hard_label() for ex in examples])
        batch["target_dist"] = torch.tensor([ex.target(self.num_classes) for ex in examples], dtype=torch.float)
        for key in ("annotation_dist", "group_dist", "reference_dist"):  # multi-annotator data: what metrics read
            if all(key in ex.meta for ex in examples):
                batch[key] = torch.tensor([ex.meta[key] for ex in examples], dtype=torch.float)
        if all("reference_label" in ex.meta for ex in examples):  # a shared task's released hard labels
            batch["reference_label"] = torch.tensor([ex.meta["reference_label"] for ex in examples])
        if self.annotators is not None and all(ex.meta.get("annotators") for ex in examples):
            batch.update(self._annotator_slots(examples))
        return batch

    def _annotator_slots(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """``annotators`` (B, K) and, when the vocabulary has attributes, ``annotator_attributes`` (B, K, A)."""
        k = max(len(ex.meta["annotators"]) for ex in examples)
        ids = torch.full((len(examples), k), -1, dtype=torch.long)
        out = {"annotators": ids}
        width = 0
        if self.attribute_values:
            width = max([len(a or {}) for ex in examples for a in ex.meta.get("annotator_attributes") or ()] or [0])
        attrs = torch.full((len(examples), k, max(width, 1)), -1, dtype=torch.long)
        for i, ex in enumerate(examples):
            given = ex.meta.get("annotator_attributes") or [{}] * len(ex.meta["annotators"])
            for j, worker in enumerate(ex.meta["annotators"]):
                ids[i, j] = self.annotators.get(str(worker), -2)
                for n, (col, value) in enumerate(sorted((given[j] or {}).items())):
                    attrs[i, j, n] = self.attribute_values.get(f"{col}={value}", -1)
        if width:
            out["annotator_attributes"] = attrs
        return out

    # -- encoders -------------------------------------------------------------------------------
    def _encode_pairs(self, texts: list[str], pairs: list[str] | None) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            texts, pairs, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    # -- decoders -------------------------------------------------------------------------------
    def _encode_prompt(self, text: str) -> list[int]:
        """Prompt ids with the tokenizer's start tokens, but no end-of-sequence token after them:
        the label word must be predicted right after the prompt."""
        ids = self.tokenizer(text)["input_ids"]
        eos, bos = self.tokenizer.eos_token_id, self.tokenizer.bos_token_id
        if ids and eos is not None and ids[-1] == eos and eos != bos:
            ids = ids[:-1]
        return ids

    def _prompt_ids(self, ex: Example, budget: int | None = None) -> list[int]:
        """Token ids of the rendered prompt, cutting the text (not the template) to fit."""
        budget = budget or self.max_length
        ids = self._encode_prompt(self.prompt.render(ex, True))
        if len(ids) <= budget:
            return ids
        text_ids = self.tokenizer(ex.text, add_special_tokens=False)["input_ids"]
        keep = max(len(text_ids) - (len(ids) - budget) - 1, 1)
        short = Example(
            text=self.tokenizer.decode(text_ids[:keep]),
            text_pair=ex.text_pair,
            label=ex.label,
            choices=ex.choices,
            soft_label=ex.soft_label,
        )
        return self._encode_prompt(self.prompt.render(short, True))[-budget:]

    def _pad(self, seqs: list[list[int]], score_from: list[int] | None = None) -> dict[str, torch.Tensor]:
        batch = pad_ids(seqs, self.tokenizer.pad_token_id, padding_side="right")
        if score_from is not None:
            score = torch.zeros_like(batch["attention_mask"])
            for i, (s, start) in enumerate(zip(seqs, score_from)):
                score[i, start : len(s)] = 1
            batch["score_mask"] = score
        return batch

    def _multiple_choice(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        if not self.geo.is_decoder:
            texts = [self.prompt.render(ex, False) for ex in examples for _ in ex.choices]
            options = [choice for ex in examples for choice in ex.choices]
            return self._encode_pairs(texts, options)
        seqs, starts = [], []
        for ex in examples:
            for choice in ex.choices:
                option = self.tokenizer(self.prompt.choice_prefix + choice, add_special_tokens=False)["input_ids"]
                prompt = self._prompt_ids(ex, budget=max(self.max_length - len(option), 8))
                seqs.append(prompt + option)
                starts.append(len(prompt))
        return self._pad(seqs, score_from=starts)

    # -- generation tasks (decoders) ------------------------------------------------------------------
    def _answer_ids(self, ex: Example) -> list[int]:
        """The answer's ids after the prompt (leading space), then eos; cut to leave 8 prompt tokens."""
        text = ex.answer if ex.answer[:1].isspace() else " " + ex.answer
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        ids = ids[: max(self.max_length - 8 - (eos is not None), 1)]
        return ids + ([eos] if eos is not None else [])

    def _generation(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        require_decoder(self.geo)
        seqs, starts = [], []
        for ex in examples:
            if ex.answer is None:
                raise DataError("a batch mixes generation examples (with answers) and examples without")
            answer = self._answer_ids(ex)
            prompt = self._prompt_ids(ex, budget=self.max_length - len(answer))
            seqs.append(prompt + answer)
            starts.append(len(prompt))
        batch = self._pad(seqs)
        labels = torch.full_like(batch["input_ids"], -100)
        for i, (s, start) in enumerate(zip(seqs, starts)):
            labels[i, start : len(s)] = torch.tensor(s[start:])
        batch["labels"] = labels
        return batch

    def prompt_ids(self, examples: Sequence[Example]) -> list[list[int]]:
        """Each example's prompt ids as a generation example's batch holds them (no answer, no padding)."""
        require_decoder(self.geo)
        budget = self.max_length - 8 if any(ex.answer is not None for ex in examples) else self.max_length
        return [self._prompt_ids(ex, budget=max(budget, 8)) for ex in examples]

    def prompt_batch(self, examples: Sequence[Example], padding_side: str = "left") -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` of the prompts alone, padded on ``padding_side``
        (left by default, so every prompt ends at the last column and generation continues it)."""
        return pad_ids(self.prompt_ids(examples), self.tokenizer.pad_token_id, padding_side)


def pad_ids(seqs: list[list[int]], pad_id: int | None, padding_side: str = "left") -> dict[str, torch.Tensor]:
    """Pad id lists to one width on ``padding_side`` ('left' or 'right')."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id if pad_id is not None else 0, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        span = slice(width - len(s), width) if padding_side == "left" else slice(0, len(s))
        ids[i, span] = torch.tensor(s, dtype=torch.long)
        mask[i, span] = 1
    return {"input_ids": ids, "attention_mask": mask}
