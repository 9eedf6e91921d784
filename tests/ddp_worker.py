"""Run under `torchrun --nproc_per_node 2` by tests/test_ddp.py: `prefalign train` through the library
API on CPU (gloo), then each rank saves the trainable weights it holds, for the test to compare.

Usage: ddp_worker.py OUT_DIR KEY=VALUE ... [--then OUT_DIR2 KEY=VALUE ...]: one run per group, in one
launch (the second group's overrides apply on top of the first's).
"""

from __future__ import annotations

import os
import sys

import torch
from safetensors.torch import save_file

from prefalign.training.config import load_config
from prefalign.training.run import train


def run(out_dir: str, overrides: list[str]) -> None:
    result = train(load_config(None, overrides))
    rank = int(os.environ["RANK"])
    state = {k: v.detach().contiguous() for k, v in result.model.trainable_state_dict().items()}
    save_file(state, os.path.join(out_dir, f"rank{rank}.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    args = sys.argv[1:]
    first, _, second = (
        (args[: args.index("--then")], None, args[args.index("--then") + 1 :]) if "--then" in args else (args, None, [])
    )
    run(first[0], first[1:])
    if second:
        run(second[0], first[1:] + second[1:])
