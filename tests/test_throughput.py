"""Tokens per second in `prefalign train`'s logs: present, positive, and timed over optimizer steps only."""

from __future__ import annotations

import json
from types import SimpleNamespace

from helpers_cli import run_main, save_tiny_model, toy_rows, write_csv
from prefalign.training import throughput as tp


def test_prefalign_train_logs_tokens_per_second(vocab_file, tmp_path):
    model_dir = save_tiny_model("bert", vocab_file, tmp_path / "tiny-bert")
    train_file = write_csv(tmp_path / "train.csv", toy_rows(48))
    out = tmp_path / "run"
    sets = [
        f"model.name={model_dir}",
        f"data.train={train_file}",
        "method.name=dcpc",
        f"training.output_dir={out}",
        "training.max_steps=4",
        "training.eval_steps=2",
        "training.logging_steps=2",
        "training.batch_size=8",
        "training.progress=false",
        "training.device=cpu",
    ]
    rc, _, err = run_main(["train"] + [a for s in sets for a in ("--set", s)])
    assert rc == 0, err
    train_logs = [h for h in json.loads((out / "log_history.json").read_text()) if "loss" in h]
    assert [h["step"] for h in train_logs] == [2, 4]
    assert all(h["tokens_per_second"] > 0 for h in train_logs)
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["tokens_per_second"] > 0


def test_time_between_steps_does_not_count(monkeypatch):
    """Two steps of 0.5 s with 100 tokens each, and 10 s of evaluation between them: 200 tokens/s."""
    clock = iter([0.0, 0.5, 10.5, 11.0])
    monkeypatch.setattr(tp.time, "perf_counter", lambda: next(clock))
    cb = tp.Throughput()
    state = SimpleNamespace(num_input_tokens_seen=40, global_step=0, log_history=[])  # resumed after 40 tokens
    cb.on_train_begin(None, state, None)
    for _ in range(2):
        cb.on_step_begin(None, state, None)
        state.num_input_tokens_seen += 100
        state.global_step += 1
        cb.on_step_end(None, state, None)
    state.log_history.append({"loss": 1.0, "step": 2})
    logs = {"loss": 1.0}
    cb.on_log(None, state, None, logs=logs)
    assert logs["tokens_per_second"] == state.log_history[-1]["tokens_per_second"] == 200.0
    assert cb.overall() == 200.0
    eval_logs = {"eval_loss": 1.0}
    cb.on_log(None, state, None, logs=eval_logs)  # evaluation logs get no rate
    assert "tokens_per_second" not in eval_logs
