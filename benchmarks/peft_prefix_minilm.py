"""PEFT's own prefix tuning on MiniLM, for comparison with prefalign's P-Tuning v2 path.

    python benchmarks/peft_prefix_minilm.py [pooler|mean] [lr]

Trains ``peft.PrefixTuningConfig(task_type=SEQ_CLS, num_virtual_tokens=16)`` on
``BertForSequenceClassification`` built from the embedded MiniLM, with the demo's Rotten Tomatoes
splits (2,000 / 400 / 1,000 reviews, seed 0), 250 steps of batch 16, 64 tokens. ``pooler`` is
PEFT's default path (BERT's pooler on the first token); ``mean`` swaps in a classifier on
mean-pooled tokens to isolate the pooling. Prints one JSON line and appends it to
benchmarks/results/peft_prefix_minilm.jsonl.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from peft import PrefixTuningConfig, TaskType, get_peft_model
from transformers import AutoTokenizer, BertForSequenceClassification, Trainer, TrainingArguments, set_seed

from prefalign.demo import demo_splits
from prefalign.models.loading import resolve_model_path
from prefalign.runner import versions


class MeanPooledBert(BertForSequenceClassification):
    """BertForSequenceClassification whose classifier reads the mean of the real tokens."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        mask = attention_mask[:, -input_ids.shape[1]:].unsqueeze(-1).float()
        pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
        logits = self.classifier(self.dropout(pooled))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(loss=loss, logits=logits)


def main(pooling: str = "pooler", lr: float = 1e-2) -> None:
    set_seed(0)
    path = resolve_model_path("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    cls = MeanPooledBert if pooling == "mean" else BertForSequenceClassification
    model = cls.from_pretrained(path, num_labels=2, use_safetensors=True)
    model = get_peft_model(model, PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=16))
    train, validation, test = demo_splits(0, quick=False)

    def encode(data):
        enc = tok([e.text for e in data.examples], truncation=True, max_length=64)
        return [{"input_ids": i, "attention_mask": m, "labels": e.label}
                for i, m, e in zip(enc["input_ids"], enc["attention_mask"], data.examples)]

    def collate(rows):
        batch = tok.pad([{k: r[k] for k in ("input_ids", "attention_mask")} for r in rows], return_tensors="pt")
        batch["labels"] = torch.tensor([r["labels"] for r in rows])
        return batch

    args = TrainingArguments(output_dir="runs/peft_prefix_minilm", learning_rate=lr, per_device_train_batch_size=16,
                             per_device_eval_batch_size=64, max_steps=250, warmup_steps=0.06, lr_scheduler_type="linear",
                             eval_strategy="no", save_strategy="no", report_to=[], use_cpu=True, seed=0,
                             remove_unused_columns=False, disable_tqdm=True, logging_steps=50)
    t0 = time.time()
    trainer = Trainer(model=model, args=args, train_dataset=encode(train), data_collator=collate)
    trainer.train()
    pred = trainer.predict(encode(test))
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    majority = max(np.mean(pred.label_ids), 1 - np.mean(pred.label_ids))
    row = {"pooling": pooling, "learning_rate": lr, "test_accuracy": round(acc, 4), "majority_rate": round(float(majority), 4),
           "seconds": round(time.time() - t0, 1), "machine": platform.platform(), "versions": versions()}
    print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    with open(out / "peft_prefix_minilm.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pooler", float(sys.argv[2]) if len(sys.argv) > 2 else 1e-2)
