"""Run under `torchrun --nproc_per_node 2` by tests/test_fsdp.py (CPU, gloo).

Usage: fsdp_worker.py OUT_DIR VOCAB_FILE. Two things, each written to OUT_DIR for the test to check:

1. accelerate.json: what Accelerate does with an FSDP plugin on CPU (its distributed type, whether it
   kept the plugin, and the class of the model `prepare` returns).
2. For P-Tuning v2 and LoRA on a tiny BERT: torch's FSDP2 (`fully_shard`) on the method, each rank
   training on its half of every batch, then the full weights gathered into
   `<method>_fsdp.safetensors` (rank 0) and the rank's own loss curve into `<method>_losses<rank>.json`.
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))

from fsdp_common import METHODS, STEPS, build, data  # noqa: E402


def accelerate_report(out_dir: str) -> None:
    from accelerate import Accelerator
    from accelerate.utils import FullyShardedDataParallelPlugin

    accelerator = Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))
    prepared = accelerator.prepare(torch.nn.Linear(4, 2))
    report = {
        "distributed_type": str(accelerator.state.distributed_type),
        "fsdp_plugin_kept": getattr(accelerator.state, "fsdp_plugin", None) is not None,
        "prepared_class": type(prepared).__name__,
        "world_size": accelerator.num_processes,
    }
    if accelerator.is_main_process:
        with open(os.path.join(out_dir, "accelerate.json"), "w") as fh:
            json.dump(report, fh)


def fsdp_training(out_dir: str, vocab_file: str, name: str) -> None:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    rank, world = dist.get_rank(), dist.get_world_size()
    model = build(name, vocab_file)
    fully_shard(model)
    assert any(isinstance(p, DTensor) for p in model.parameters()), "fully_shard left no parameter sharded"
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    losses = []
    for step in range(STEPS):
        batch = data(vocab_file, step)
        half = {k: v.chunk(world)[rank] if torch.is_tensor(v) else v for k, v in batch.items()}
        loss = model(**half).loss
        opt.zero_grad()
        loss.backward()  # FSDP2 reduce-scatters the gradients as a mean over the ranks
        opt.step()
        losses.append(float(loss.detach()))
    with open(os.path.join(out_dir, f"{name}_losses{rank}.json"), "w") as fh:
        json.dump(losses, fh)
    full = {}
    for key, value in model.state_dict().items():
        value = value.full_tensor() if isinstance(value, DTensor) else value  # all-gather: every rank takes part
        full[key] = value.detach().contiguous().clone()
    if rank == 0:
        save_file(full, os.path.join(out_dir, f"{name}_fsdp.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    out, vocab = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    accelerate_report(out)
    for method in METHODS:
        fsdp_training(out, vocab, method)
    dist.barrier()
    dist.destroy_process_group()
