"""PEFT's own prefix tuning on MiniLM, for comparison with prefalign's P-Tuning v2 path.

    python benchmarks/peft_prefix_minilm.py rt   [lr]   # the demo's Rotten Tomatoes splits, 250 steps
    python benchmarks/peft_prefix_minilm.py sst2 [lr]   # 2,000 SST-2 train sentences, 3 epochs, GLUE dev

Trains ``peft.PrefixTuningConfig(task_type=SEQ_CLS, num_virtual_tokens=16)`` (random init) on
``BertForSequenceClassification`` built from the embedded MiniLM: PEFT reads BERT's pooler on the
first token. Batch 16, 64 tokens, linear decay with 6% warm-up, seed 0. ``sst2`` reads
../shared/data/sst2 (pass another folder holding train.tsv and dev.tsv as a third argument).
Prints one JSON line and appends it to benchmarks/results/peft_prefix_minilm.jsonl.
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
from shared_data import SHARED_DATA
from transformers import AutoTokenizer, BertForSequenceClassification, Trainer, TrainingArguments, set_seed

from prefalign.data import read_table
from prefalign.demo import demo_splits
from prefalign.models.loading import resolve_model_path
from prefalign.utils.environment import versions

SHARED_SST2 = SHARED_DATA / "sst2"


def load(data: str, folder: Path):
    """(train, test, schedule) for a data name."""
    if data == "rt":
        train, _, test = demo_splits(0, quick=False)
        return train, test, {"max_steps": 250}
    names = ["negative", "positive"]
    train = read_table(folder / "train.tsv", text_column="sentence", label_names=names, limit=2000)
    test = read_table(folder / "dev.tsv", text_column="sentence", label_names=names)
    return train, test, {"num_train_epochs": 3}


def main(data: str = "rt", lr: float = 1e-2, folder: Path = SHARED_SST2) -> None:
    set_seed(0)
    path = resolve_model_path("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    model = BertForSequenceClassification.from_pretrained(path, num_labels=2, use_safetensors=True)
    model = get_peft_model(model, PrefixTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=16))
    train, test, schedule = load(data, folder)

    def encode(dataset):
        enc = tok([e.text for e in dataset.examples], truncation=True, max_length=64)
        return [
            {"input_ids": i, "attention_mask": m, "labels": e.label}
            for i, m, e in zip(enc["input_ids"], enc["attention_mask"], dataset.examples)
        ]

    def collate(rows):
        batch = tok.pad([{k: r[k] for k in ("input_ids", "attention_mask")} for r in rows], return_tensors="pt")
        batch["labels"] = torch.tensor([r["labels"] for r in rows])
        return batch

    args = TrainingArguments(
        output_dir="runs/peft_prefix_minilm",
        learning_rate=lr,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        warmup_steps=0.06,
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        logging_steps=50,
        **schedule,
    )
    t0 = time.time()
    trainer = Trainer(model=model, args=args, train_dataset=encode(train), data_collator=collate)
    trainer.train()
    pred = trainer.predict(encode(test))
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    majority = max(np.mean(pred.label_ids), 1 - np.mean(pred.label_ids))
    row = {
        "data": data,
        "learning_rate": lr,
        "steps": trainer.state.global_step,
        "test_accuracy": round(acc, 4),
        "majority_rate": round(float(majority), 4),
        "seconds": round(time.time() - t0, 1),
        "machine": platform.platform(),
        "versions": versions(),
    }
    print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    with open(out / "peft_prefix_minilm.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "rt",
        float(sys.argv[2]) if len(sys.argv) > 2 else 1e-2,
        Path(sys.argv[3]) if len(sys.argv) > 3 else SHARED_SST2,
    )
