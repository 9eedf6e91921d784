"""Every device and dtype path, exercised on the CPU with the code a GPU run takes (this machine has no GPU;
docs/performance.md says which paths have run only here). bf16 mixed precision and a bf16 backbone train
through the same Trainer set-up as on a GPU; fp16 and a cuda device are refused with one line when the
machine cannot run them; prefix checkpointing runs under bf16 autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import build_tiny
from helpers_cli import assert_one_error, run_main, save_tiny_model, toy_rows, write_csv
from helpers_models import batches, sentiment_setup
from prefalign.methods import build_method, method_config
from prefalign.models.prefix import checkpoint_prefix_layers, uncheckpoint_prefix_layers
from prefalign.training.run import uses_gpu


@pytest.fixture(scope="module")
def model_dir(vocab_file, tmp_path_factory):
    return save_tiny_model("bert", vocab_file, tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("data") / "train.csv", toy_rows(32, seed=0))


def train(model_dir, train_file, out, *extra):
    values = [
        f"model.name={model_dir}",
        f"data.train={train_file}",
        f"training.output_dir={out}",
        "training.max_steps=2",
        "training.eval_steps=2",
        "training.learning_rate=1e-2",
        "training.progress=false",
        *extra,
    ]
    return run_main(["train", *[a for v in values for a in ("--set", v)]])


def weights(out):
    return load_file(out / "adapter" / "prefalign_weights.safetensors")


@pytest.mark.parametrize("method", ["ptuning-v2", "dcpc", "lora"])
def test_bf16_mixed_precision_trains_on_the_cpu_close_to_fp32(model_dir, train_file, tmp_path, method):
    runs = {}
    for name, flag in (("fp32", "false"), ("bf16", "true")):
        out = tmp_path / name
        rc, _, err = train(
            model_dir, train_file, out, f"method.name={method}", "training.device=cpu", f"training.bf16={flag}"
        )
        assert rc == 0, err
        runs[name] = weights(out)
    assert runs["fp32"].keys() == runs["bf16"].keys()
    for key, value in runs["fp32"].items():
        half = runs["bf16"][key]
        assert half.dtype == value.dtype == torch.float32  # master weights stay fp32 under autocast
        assert torch.isfinite(half).all()
        np.testing.assert_allclose(half.numpy(), value.numpy(), atol=0.05)


def test_dcpc_logs_its_loss_terms_and_gate_rates_under_bf16_as_under_fp32(model_dir, train_file, tmp_path):
    """Accelerate's mixed-precision wrapper rebuilds the forward's output from its tensors: the terms must
    still reach the logs (the first GPU grid, bf16, logged none)."""
    import json

    logged = {}
    for name, flag in (("fp32", "false"), ("bf16", "true")):
        out = tmp_path / name
        rc, _, err = train(
            model_dir,
            train_file,
            out,
            "method.name=dcpc",
            "training.device=cpu",
            f"training.bf16={flag}",
            "training.logging_steps=1",
        )
        assert rc == 0, err
        history = json.loads((out / "log_history.json").read_text())
        logged[name] = {k for entry in history if "loss" in entry for k in entry}
    assert {"loss_task", "loss_align", "gate_cos_rate"} <= logged["fp32"]
    assert logged["bf16"] == logged["fp32"]


def test_a_bfloat16_backbone_with_checkpointing_trains_on_the_cpu(model_dir, train_file, tmp_path):
    rc, _, err = train(
        model_dir,
        train_file,
        tmp_path / "run",
        "method.name=dcpc",
        "model.dtype=bfloat16",
        "training.device=cpu",
        "training.gradient_checkpointing=true",
    )
    assert rc == 0, err
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "run").values())


def test_fp16_mixed_precision_runs_its_autocast_path_on_the_cpu(model_dir, train_file, tmp_path):
    """torch autocasts float16 on the CPU too, so training.fp16's path (autocast, and the Trainer's set-up)
    runs here; the GPU-only part, the loss scaler, is documented as untested."""
    rc, _, err = train(model_dir, train_file, tmp_path / "run", "training.device=cpu", "training.fp16=true")
    assert rc == 0, err
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "run").values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_training_device_cuda_without_a_gpu_is_refused_not_ignored(model_dir, train_file, tmp_path):
    rc, _, err = train(model_dir, train_file, tmp_path / "run", "training.device=cuda")
    assert_one_error(rc, err, "training.device is cuda", "no GPU", "use auto or cpu")
    assert not (tmp_path / "run" / "adapter").exists()


def test_which_device_training_asks_for():
    assert uses_gpu("cuda") and not uses_gpu("cpu") and uses_gpu("auto") == torch.cuda.is_available()


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_prefix_checkpointing_under_bf16_autocast_gives_the_plain_gradients(vocab_file, kind):
    lm = build_tiny(kind, vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=8)
    torch.manual_seed(0)
    model = build_method(method_config("dcpc", {"prefix_length": 4}), lm, spec)
    batch = batches(ds, collator)[0]
    grads = []
    for checkpointed in (False, True):
        if checkpointed:
            checkpoint_prefix_layers(lm.model)
        model.train()
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.trainable_parameters().items() if p.grad is not None})
    uncheckpoint_prefix_layers(lm.model)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], rtol=1e-5, atol=1e-7, msg=key)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_predict_in_half_precision_on_the_cpu_agrees_with_float32(model_dir, train_file, tmp_path, dtype):
    """--dtype float16 and bfloat16 take the same cast as on a GPU (every weight, the head included)."""
    import json

    rc, _, err = train(model_dir, train_file, tmp_path / "run", "method.name=dcpc", "training.device=cpu")
    assert rc == 0, err
    adapter = str(tmp_path / "run" / "adapter")
    probs = {}
    for d in ("float32", dtype):
        rc, out, err = run_main(["predict", "--adapter", adapter, "--text", "fine", "--device", "cpu", "--dtype", d])
        assert rc == 0, err
        probs[d] = json.loads(out)["probabilities"]
    assert probs["float32"].keys() == probs[dtype].keys()
    assert all(abs(probs["float32"][k] - probs[dtype][k]) < 0.05 for k in probs["float32"])
