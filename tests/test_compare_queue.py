"""The grid's queue: workers in real processes take runs one at a time, each run runs once, a killed
worker's run is taken over, and the reports hold every run once."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from helpers_cli import run_main, save_tiny_model, toy_rows, write_csv
from prefalign.compare import load_compare_config
from prefalign.compare.grid import config_digest, grid_status
from prefalign.compare.queue import RunQueue, claims

RUN_IDS = [f"tiny/{column}/PTv2/seed{seed}" for column in ("toy", "toy-P") for seed in (0, 1, 2)]


def grid_config(root: Path, model: Path, output_dir: Path) -> Path:
    cfg = {
        "title": "queue grid",
        "output_dir": str(output_dir),
        "seeds": [0, 1, 2],
        "keep": "adapter",
        "models": [{"name": str(model), "label": "tiny"}],
        "base": {
            "data": {"max_length": 16},
            "training": {"batch_size": 8, "max_steps": 3, "eval_steps": 1, "logging_steps": 1, "learning_rate": 1e-2},
        },
        "methods": [{"name": "ptuning-v2", "label": "PTv2", "method": {"prefix_length": 2}}],
        "datasets": [
            {
                "name": "toy",
                "data": {"train": str(root / "train.csv"), "test": str(root / "test.csv")},
                "shifted": {"name": "sst2-p"},
                "shifted_name": "toy-P",
            }
        ],
    }
    path = output_dir.parent / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def grid(tmp_path_factory, vocab_file):
    """The tiny grid's files, and the records of the grid run by one process: the reference."""
    root = tmp_path_factory.mktemp("queue")
    model = save_tiny_model("bert", vocab_file, root / "tiny-bert")
    write_csv(root / "train.csv", toy_rows(48, seed=0))
    write_csv(root / "test.csv", toy_rows(24, seed=1))
    rc, out, err = run_main(["compare", "--config", str(grid_config(root, model, root / "single"))])
    assert rc == 0, err
    return root, model, runs_of(root / "single")


def runs_of(output_dir: Path) -> dict[str, dict]:
    runs = json.loads((output_dir / "results.json").read_text())["runs"]
    assert len(runs) == len({r["run_id"] for r in runs}), "a run appears twice"
    return {r["run_id"]: r for r in runs}


def same_numbers(record: dict) -> tuple:
    """What a run computed, without the wall-clock fields."""
    timing = ("seconds", "runtime", "per_second")
    metrics = {k: v for k, v in record["metrics"].items() if not any(t in k for t in timing)}
    return record["status"], metrics, record["curve"], record["tunable_params"], record["config_digest"]


def start(args: list[str], *, wrapper: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **(env or {}))
    head = [sys.executable, str(wrapper)] if wrapper else [sys.executable, "-m", "prefalign"]
    return subprocess.Popen(head + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# `prefalign compare --workers 2`, with the first worker held back until the second has started (a
# spawned interpreter takes seconds to import torch on a busy machine): both then take runs from the start.
START_TOGETHER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    import prefalign.compare.queue as queue

    READY = Path(os.environ["QUEUE_TEST_READY"])
    real_helper, real_run_grid = queue._helper, queue.run_grid

    def helper(*args):  # the spawned worker: imports done, about to take runs
        READY.touch()
        real_helper(*args)

    def run_grid_once_both_are_up(*args, **kwargs):
        while not READY.exists():
            time.sleep(0.01)
        return real_run_grid(*args, **kwargs)

    if __name__ == "__main__":
        queue._helper = helper
        queue.run_grid = run_grid_once_both_are_up
        from prefalign.cli import main

        sys.exit(main(sys.argv[1:]))
    """
)


def test_two_workers_share_one_grid_each_run_once_and_none_idles(grid, tmp_path):
    root, model, single = grid
    out = tmp_path / "two"
    wrapper = tmp_path / "together.py"
    wrapper.write_text(START_TOGETHER)
    args = ["compare", "--config", str(grid_config(root, model, out)), "--workers", "2"]
    proc = start(args, wrapper=wrapper, env={"QUEUE_TEST_READY": str(tmp_path / "ready")})
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    runs = runs_of(out)
    assert sorted(runs) == sorted(RUN_IDS)
    assert {run_id: same_numbers(r) for run_id, r in runs.items()} == {k: same_numbers(v) for k, v in single.items()}
    assert "6 of 6 runs finished" in (out / "table.md").read_text()
    # Each run was claimed once (one claim, finished ok), and both workers ran some.
    history = {run_id: claims(out, run_id) for run_id in RUN_IDS}
    assert all(len(h) == 1 and h[0]["status"] == "ok" for h in history.values()), history
    by_worker: dict[int, list[dict]] = {}
    for (claim,) in history.values():
        by_worker.setdefault(claim["pid"], []).append(claim)
    assert len(by_worker) == 2 and proc.pid in by_worker, stdout
    # No worker idled while a run was left: each took its next run as soon as it finished one, and none
    # finished its last run before the last run of the grid was taken.
    last_taken = max(c["started_at"] for (c,) in history.values())
    for own in by_worker.values():
        own.sort(key=lambda c: c["started_at"])
        gaps = [b["started_at"] - a["finished"] for a, b in zip(own, own[1:])]
        assert all(gap < 3.0 for gap in gaps), gaps
        assert own[-1]["finished"] >= last_taken
    lines = stdout.splitlines()
    for pid, own in by_worker.items():
        number = 1 if pid == proc.pid else 2
        assert sorted(line.split()[3] for line in lines if line.startswith(f"[worker {number}] [")) == sorted(
            c["run_id"] for c in own
        )


# Worker A: trains its first run for real, then hangs before the grid records the result, so that it is
# killed mid-run with the run's folder half done (checkpoints, adapter, no result.json).
HANG_AFTER_TRAINING = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import prefalign.compare.grid as grid
    from prefalign.cli import main

    real_train, marker = grid.train, Path(sys.argv[1])

    def train_then_hang(exp, **kwargs):
        real_train(exp, **kwargs)
        marker.write_text(exp.training.output_dir)
        time.sleep(600)

    grid.train = train_then_hang
    sys.exit(main(sys.argv[2:]))
    """
)


def test_a_worker_killed_mid_run_leaves_a_claim_the_other_takes_over(grid, tmp_path):
    root, model, single = grid
    out = tmp_path / "killed"
    config = str(grid_config(root, model, out))
    wrapper, marker = tmp_path / "hang.py", tmp_path / "trained"
    wrapper.write_text(HANG_AFTER_TRAINING)
    first = start([str(marker), "compare", "--config", config], wrapper=wrapper)
    try:
        deadline = time.time() + 300
        while not marker.exists():
            assert first.poll() is None and time.time() < deadline, first.communicate()
            time.sleep(0.1)
        stuck = RUN_IDS[0]  # grid order: the first worker takes the first run
        assert Path(marker.read_text()) == out / "runs" / stuck
        second = start(["compare", "--config", config])
        # The second worker runs the five other runs, then waits for the first worker's.
        while not all(claims(out, r) and claims(out, r)[-1]["status"] == "ok" for r in RUN_IDS[1:]):
            assert second.poll() is None and time.time() < deadline, second.communicate()
            time.sleep(0.1)
        assert not (out / "runs" / stuck / "result.json").exists()
        assert (out / "runs" / stuck / "checkpoints").is_dir()  # the killed worker's half-done run
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    host = socket.gethostname()
    assert f"waiting: 1 run(s) held by other workers: {stuck} ({host} pid {first.pid})" in stdout
    assert f"taking over {stuck} from {host} pid {first.pid}: its worker is gone" in stdout
    history = claims(out, stuck)
    assert [(c["pid"], c["status"]) for c in history] == [(first.pid, None), (second.pid, "ok")]
    assert all([(c["pid"], c["status"]) for c in claims(out, r)] == [(second.pid, "ok")] for r in RUN_IDS[1:])
    runs = runs_of(out)
    assert {run_id: same_numbers(r) for run_id, r in runs.items()} == {k: same_numbers(v) for k, v in single.items()}
    assert "6 of 6 runs finished" in (out / "table.md").read_text()


def test_claims_of_other_machines_go_stale_and_failed_runs_wait_for_the_next_sitting(grid, tmp_path):
    root, model, _ = grid
    cfg = load_compare_config(grid_config(root, model, tmp_path / "out"), [])
    items = [(i, spec, exp, run_dir) for i, (spec, exp, run_dir, _) in enumerate(grid_status(cfg))]
    queue = RunQueue(cfg.output_dir, stale_after=60, poll=0.01, log=lambda line: None)
    item = items[0]
    folder = tmp_path / "out" / "queue" / item[1].run_id
    folder.mkdir(parents=True)
    assert queue._state(item)[0] == "free"
    # Another machine's claim: held while it is refreshed, free once it is older than stale_after.
    claim = {"host": "elsewhere", "pid": 1, "config_digest": config_digest(item[2])}
    (folder / "claim-0001.json").write_text(json.dumps({**claim, "finished": None, "status": None}))
    assert queue._state(item)[:2] == ("held", 1)
    old = queue.now() - 61
    os.utime(folder / "claim-0001.json", (old, old))
    assert queue._state(item)[:2] == ("free", 1)
    # This machine's claim is judged by its process: a live one holds, a gone one frees at once.
    me = {**claim, "host": queue.host, "boot_id": queue.boot_id, "finished": None, "status": None}
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / "claim-0002.json").write_text(json.dumps({**me, "pid": sleeper.pid, "pid_start": None}))
        assert queue._state(item)[:2] == ("held", 2)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert queue._state(item)[:2] == ("free", 2)
    # A run that failed in this sitting is not retried; one that failed before this worker started is.
    record = {"status": "failed", "config": item[2].to_dict(), "run_id": item[1].run_id}
    item[3].mkdir(parents=True)
    (item[3] / "result.json").write_text(json.dumps(record))
    (folder / "claim-0003.json").write_text(json.dumps({**me, "pid": 1, "finished": time.time(), "status": "failed"}))
    assert queue._state(item)[:2] == ("done", 3)
    before = queue.since - 10
    os.utime(folder / "claim-0003.json", (before, before))
    assert queue._state(item)[:2] == ("free", 3)
    # A claim for settings that have since changed is no claim at all.
    (folder / "claim-0004.json").write_text(json.dumps({**me, "pid": os.getppid(), "config_digest": "0" * 16}))
    assert queue._state(item)[:2] == ("free", 4)


def test_a_run_given_back_goes_to_the_next_worker_from_scratch(grid, tmp_path):
    root, model, _ = grid
    cfg = load_compare_config(grid_config(root, model, tmp_path / "out"), [])
    items = [(i, spec, exp, run_dir) for i, (spec, exp, run_dir, _) in enumerate(grid_status(cfg))]
    logged = []
    queue = RunQueue(cfg.output_dir, stale_after=60, poll=0.01, log=logged.append)
    taking = queue.take(items[:2])
    item = next(taking)
    run_id = item[1].run_id
    assert item is items[0] and queue.holds(run_id) and not queue.holds(items[1][1].run_id)
    (item[3] / "checkpoints" / "checkpoint-1").mkdir(parents=True)  # half-way when the user pressed Ctrl-C
    taking.close()
    assert not queue.holds(run_id)
    assert [(c["pid"], c["status"]) for c in claims(cfg.output_dir, run_id)] == [(os.getpid(), "released")]
    assert queue._state(item)[:2] == ("free", 1)
    again = RunQueue(cfg.output_dir, stale_after=60, poll=0.01, log=logged.append).take(items[:1])
    assert next(again) is item and len(claims(cfg.output_dir, run_id)) == 2
    assert not (item[3] / "checkpoints").exists() and logged == []  # given back, not taken over
    again.close()


@pytest.mark.parametrize("flag, bad", [("--workers", "0"), ("--workers", "two"), ("--stale-after", "-5")])
def test_workers_and_stale_after_must_be_positive(flag, bad, tmp_path):
    with pytest.raises(SystemExit) as stop:  # argparse's usage line and one error line, exit status 2
        run_main(["compare", "--config", str(tmp_path / "grid.yaml"), flag, bad])
    assert stop.value.code == 2
    from prefalign.cli.compare import _positive

    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive number, got '0'"):
        _positive(int)("0")
    assert _positive(float)("2.5") == 2.5
