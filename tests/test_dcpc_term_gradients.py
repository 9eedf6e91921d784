"""benchmarks/dcpc_term_gradients.py: per-term gradients of eq. 13, on a tiny LLaMA with every pair gated in."""

from __future__ import annotations

import pytest
import torch

from conftest import build_tiny, load_benchmark
from helpers_models import batches, sentiment_setup, train_steps
from prefalign.methods.dcpc import DCPCConfig, DCPCModel

ALL_GATES = dict(tau_cos=0.0, tau_ambiguity=0.0, similarity_center=False, gate_divergence="cross_entropy")
LAMBDAS = {"lambda_ambiguity": 0.1, "lambda_align": 0.5, "lambda_kl": 0.1}


@pytest.fixture(scope="module")
def setup(vocab_file):
    torch.manual_seed(0)
    lm = build_tiny("llama", vocab_file)
    ds, spec, collator = sentiment_setup(lm, n=16)
    model = DCPCModel(lm.model, lm.tokenizer, lm.geometry, spec, DCPCConfig(**ALL_GATES, **LAMBDAS))
    return model, batches(ds, collator, batch_size=8)


def test_every_trainable_parameter_has_a_group_and_the_pcm_is_one(setup):
    bench = load_benchmark("dcpc_term_gradients")
    model, _ = setup
    groups = {bench.group_of(n) for n, p in model.named_parameters() if p.requires_grad}
    assert groups == {"prefix", "pcm"}  # a decoder scores classes with its LM head: no head of ours


def test_terms_add_up_to_the_full_gradient_and_clpa_reaches_only_the_pcm_once_it_has_moved(setup):
    bench = load_benchmark("dcpc_term_gradients")
    model, data = setup
    model.eval()
    batch = {k: v for k, v in data[0].items() if k in ("input_ids", "attention_mask", "labels", "target_dist")}
    norms, logged = bench.term_gradients(model, batch, LAMBDAS)
    # Zero-initialised projection: every example's prefix difference is 0, so is |P_A - P_B|^2's gradient (eq. 27).
    assert norms["align"]["pcm"] == 0.0 and norms["align"]["prefix"] == 0.0
    assert norms["task"]["prefix"] > 0 and logged["gate_ambiguity_rate"] > 0
    assert all(getattr(model.config, k) == v for k, v in LAMBDAS.items())  # the run's weights are back

    train_steps(model, data, steps=3)  # the task loss moves the projection; now CLPA has a gradient
    model.eval()
    norms, _ = bench.term_gradients(model, batch, LAMBDAS)
    assert norms["align"]["pcm"] > 0
    assert norms["align"]["prefix"] == 0.0 and norms["align"].get("head", 0.0) == 0.0  # token states carry no gradient

    # Linearity: the per-term gradients (each lambda-weighted) sum to eq. 13's gradient at the run's weights.
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def gradient(weights: dict) -> dict:
        for k in LAMBDAS:
            setattr(model.config, k, weights.get(k, 0.0))
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in params.items()}

    full = gradient(LAMBDAS)
    task = gradient({})
    summed = dict(task)
    for k, v in LAMBDAS.items():
        alone = gradient({k: v})
        summed = {n: summed[n] + alone[n] - task[n] for n in summed}
    for k, v in LAMBDAS.items():
        setattr(model.config, k, v)
    for n in full:
        torch.testing.assert_close(summed[n], full[n], rtol=1e-4, atol=1e-7)
