"""FSDP on CPU: what works and what does not, measured rather than assumed.

* Through the Trainer it does not run: Accelerate (1.16) switches to FSDP only for GPU-like distributed
  types (accelerate/state.py, ``elif self.distributed_type in [DistributedType.MULTI_GPU, ...]`` leaves
  out MULTI_CPU), so on CPU it drops the plugin without a word and wraps the model in DDP. The first
  test pins that behaviour (so a newer Accelerate that shards on CPU makes it fail, and the refusal
  below can go), the second that `prefalign train` refuses the setting with a one-line error instead of
  silently running DDP.
* torch's own FSDP2 (``fully_shard``) does run on CPU with gloo: two processes each train P-Tuning v2 and
  LoRA on half of every batch and end with the weights one process gets from the whole batch (within a
  float32 tolerance), the frozen backbone bit-identical, and the gathered weights save and load back to
  the same logits.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import needs_gloo
from fsdp_common import BATCH, METHODS, STEPS, build, data
from helpers_cli import run_main, toy_rows, write_csv
from helpers_torchrun import launch_workers
from prefalign.methods import load_method, save_method

# float32 sums in another order (two half-batch means averaged, then Adam steps); measured <= 6e-8
ATOL = 1e-5

pytestmark = needs_gloo


@pytest.fixture(scope="module")
def sharded(vocab_file, tmp_path_factory):
    """One torchrun launch of tests/fsdp_worker.py with two CPU processes; its output folder."""
    out = tmp_path_factory.mktemp("fsdp")

    def prepare():
        shutil.rmtree(out)
        out.mkdir()

    launch_workers("fsdp_worker.py", [str(out), vocab_file], 2, {}, prepare)
    return out


def test_accelerate_runs_ddp_not_fsdp_on_cpu(sharded):
    report = json.loads((sharded / "accelerate.json").read_text())
    assert report == {
        "distributed_type": "DistributedType.MULTI_CPU",
        "fsdp_plugin_kept": False,
        "prepared_class": "DistributedDataParallel",
        "world_size": 2,
    }


@pytest.mark.parametrize("how", ["trainer_args", "accelerate_env"])
def test_train_refuses_fsdp_on_cpu_with_one_line(vocab_file, tmp_path, monkeypatch, how):
    from conftest import build_tiny

    tiny = build_tiny("bert", vocab_file)
    tiny.model.save_pretrained(tmp_path / "model", safe_serialization=True)
    tiny.tokenizer.save_pretrained(tmp_path / "model")
    train = write_csv(tmp_path / "train.csv", toy_rows(32, seed=0))
    args = [f"model.name={tmp_path / 'model'}", f"data.train={train}", "method.name=ptuning-v2"]
    args += [f"training.output_dir={tmp_path / 'out'}", "training.max_steps=2", "training.device=cpu"]
    if how == "trainer_args":
        args.append("training.trainer_args.fsdp=full_shard")
    else:
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    rc, _, err = run_main(["train"] + [a for s in args for a in ("--set", s)])
    assert rc == 2
    assert err.strip().count("\n") == 0 and "fsdp on CPU is not run by Accelerate" in err
    assert "training.device=cuda" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "adapter").exists()


@pytest.mark.parametrize("name", METHODS)
def test_fsdp2_on_cpu_matches_one_process(sharded, vocab_file, tmp_path, name):
    torch.set_num_threads(1)
    single = build(name, vocab_file)
    start = {k: v.detach().clone() for k, v in single.state_dict().items()}
    trainable = [p for p in single.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.0)
    losses = []
    for step in range(STEPS):
        loss = single(**data(vocab_file, step)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))

    # Each rank's loss is the mean over its half; the two halves' mean is the whole batch's (BATCH even).
    rank0, rank1 = (json.loads((sharded / f"{name}_losses{r}.json").read_text()) for r in (0, 1))
    assert BATCH % 2 == 0 and len(rank0) == len(rank1) == STEPS
    for step, (a, b, whole) in enumerate(zip(rank0, rank1, losses)):
        assert abs((a + b) / 2 - whole) <= ATOL, f"step {step}: ranks {a}, {b}; one process {whole}"
    assert rank0 != rank1  # the ranks really saw different rows

    gathered = load_file(str(sharded / f"{name}_fsdp.safetensors"))
    assert gathered.keys() == start.keys()
    names = {k for k, p in single.named_parameters() if p.requires_grad}
    moved = 0
    for key, value in gathered.items():
        if key in names:
            assert torch.allclose(value, single.state_dict()[key], atol=ATOL, rtol=0), key
            moved += not torch.equal(value, start[key])
        else:  # the frozen backbone: untouched by FSDP's sharding, gathering and optimizer, bit for bit
            assert torch.equal(value, start[key]), key
    assert moved == len(names), "every trainable tensor moved under FSDP"

    # The gathered weights go through the method's own save/load and give the single process's logits.
    restored = build(name, vocab_file)
    restored.load_state_dict(gathered)
    from conftest import build_tiny

    backbone = build_tiny("bert", vocab_file, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    save_method(restored, tmp_path / "adapter", backbone=backbone)
    loaded, _ = load_method(tmp_path / "adapter", backbone)
    batch = data(vocab_file, 0)
    single.eval(), loaded.eval()
    with torch.no_grad():
        want, got = single(**batch).logits, loaded(**batch).logits
    assert torch.allclose(got, want, atol=1e-4, rtol=0), (got - want).abs().max()
