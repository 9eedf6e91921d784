"""Run under `torchrun --nproc_per_node 2` by tests/test_ddp.py: `prefalign train` through the library
API on CPU (gloo), then each rank saves the trainable weights it holds, for the test to compare."""

from __future__ import annotations

import os
import sys

import torch
from safetensors.torch import save_file

from prefalign.config import load_config
from prefalign.runner import train


def main(out_dir: str, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    result = train(load_config(None, overrides))
    rank = int(os.environ["RANK"])
    state = {k: v.detach().contiguous() for k, v in result.model.trainable_state_dict().items()}
    save_file(state, os.path.join(out_dir, f"rank{rank}.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
