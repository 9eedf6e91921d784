"""Launching a test worker under `torchrun` with CPU processes (gloo), for tests/test_ddp.py and test_fsdp.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

# A rank of a gloo launch on a loaded 2-core machine once aborted in native code (SIGABRT, no Python traceback)
# and passed on every rerun: a launch that dies so is started once more.
NATIVE_ABORT = "terminate called without an active exception"


def launch_workers(
    worker: str, args: list[str], nproc: int, env: dict[str, str], prepare: Callable[[], None], timeout: float = 180
) -> None:
    """Run tests/<worker> in ``nproc`` processes with ``args``; fail with the launch's output unless it exits 0.
    ``env`` is added to the environment, with one thread per process, the hub offline and warnings off;
    ``prepare`` makes the launch's output folders (empty) before each attempt."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    argv += [os.path.join(os.path.dirname(__file__), worker), *args]
    quiet = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    full_env = {**os.environ, **quiet, **env}
    full_env.pop("ACCELERATE_USE_FSDP", None)
    for _attempt in range(2):
        prepare()
        proc = subprocess.Popen(
            argv, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )  # its own process group, so a hang is cleaned up whole
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        if proc.returncode == 0 or NATIVE_ABORT not in stdout + stderr:
            break
    assert proc.returncode == 0, stdout[-3000:] + stderr[-6000:]
