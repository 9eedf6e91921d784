"""`prefalign reward`: train from a YAML config, resume, score pairs with the adapter, and bad input
answered with one line naming the row."""

from __future__ import annotations

import json

import yaml

from helpers_cli import ERROR_PREFIX, run_main, save_tiny_model, write_jsonl
from helpers_reward import reward_config, toy_pairs


def _config(tmp_path, vocab_file, **sections):
    model = save_tiny_model("bert", vocab_file, tmp_path / "tiny-bert")
    cfg = reward_config(tmp_path, model=str(model), **sections)
    path = tmp_path / "reward.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def test_train_then_score_with_the_adapter(tmp_path, vocab_file):
    path, cfg = _config(tmp_path, vocab_file, dorm={"variant": "dorm", "eta_w": 0.05})
    rc, out, err = run_main(["reward", "-c", str(path), "--set", "training.steps=4"])
    assert rc == 0, err
    assert "mean weight of s2-flip100" in out and "test_pairwise_accuracy" in out
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["steps"] == 4 and set(metrics["final_mean_weight"]) == {"s0-flip0", "s1-flip0", "s2-flip100"}
    assert json.loads((run / "config.json").read_text())["training"]["steps"] == 4
    scores = tmp_path / "scores.jsonl"
    rc, out, err = run_main(
        ["reward", "--score", "--adapter", str(run / "adapter"), "--data", cfg["test"][0]["path"], "-o", str(scores)]
    )
    assert rc == 0, err
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) == 16 and [r["row"] for r in rows] == list(range(1, 17))
    accuracy = sum(r["margin"] > 0 for r in rows) / 16
    assert f"pairwise accuracy {accuracy:.4f}" in out
    assert abs(accuracy - metrics["test_pairwise_accuracy"]) < 1e-9  # the adapter is the trained model


def test_resume_continues_from_the_checkpoint(tmp_path, vocab_file):
    path, _ = _config(tmp_path, vocab_file, training={"steps": 4, "checkpoint_every": 2})
    assert run_main(["reward", "-c", str(path)])[0] == 0
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-0000002"]
    rc, out, err = run_main(["reward", "-c", str(path), "--resume", "--set", "dorm.alpha=5"])
    assert rc == 2 and err.startswith(ERROR_PREFIX) and "another config" in err


def test_bad_input_gets_one_line_naming_the_row(tmp_path, vocab_file):
    path, cfg = _config(tmp_path, vocab_file)
    rows = toy_pairs(3)
    rows[1]["rejected"] = rows[1]["chosen"]
    write_jsonl(tmp_path / "src1.jsonl", rows)
    rc, _, err = run_main(["reward", "-c", str(path)])
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith(f"{ERROR_PREFIX} source 's1-flip0' row 2: the chosen and rejected texts are equal")
    (tmp_path / "src1.jsonl").write_text("")
    rc, _, err = run_main(["reward", "-c", str(path)])
    assert rc == 2 and "source 's1-flip0' has no rows" in err and err.count("\n") == 1
    rc, _, err = run_main(["reward", "--score", "--data", "x.jsonl"])
    assert rc == 2 and "needs --adapter DIR and --data FILE" in err


def test_the_shipped_reward_configs_load():
    from pathlib import Path

    from prefalign.reward import load_reward_config

    paths = sorted((Path(__file__).resolve().parents[1] / "configs" / "reward").glob("*.yaml"))
    assert paths
    for path in paths:
        cfg = load_reward_config(str(path))
        assert [s.name for s in cfg.sources] == ["hh-flip0", "hh-flip10", "hh-flip20", "hh-flip40", "dpo-demo"]
        assert cfg.model.tuning == "head" and cfg.dorm.w_gradient == "per-example"
