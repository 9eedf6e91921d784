"""benchmarks/adapter_update_size.py: the weight update it reports is LoRA's scaling x B A, by hand."""

from __future__ import annotations

import statistics

import pytest
import torch

from conftest import build_tiny, load_benchmark
from helpers_models import sentiment_setup
from prefalign.methods import registry


def test_lora_update_is_scaling_times_b_a_and_zero_before_training(vocab_file):
    bench = load_benchmark("adapter_update_size")
    torch.manual_seed(0)
    lm = build_tiny("llama", vocab_file)
    _, spec, _ = sentiment_setup(lm, n=4)
    model = registry.build_method(registry.method_config("lora", {"r": 4, "lora_alpha": 8.0}), lm, spec)
    assert bench.update_sizes(model)["delta_norm_median"] == 0.0  # B starts at zero
    by_hand, relative = [], []
    for _, module in model.named_modules():
        if hasattr(module, "lora_B") and hasattr(module, "base_layer"):
            torch.nn.init.normal_(module.lora_B["default"].weight)
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            by_hand.append(float((2.0 * b @ a).norm()))  # scaling = lora_alpha / r = 2
            relative.append(by_hand[-1] / float(module.base_layer.weight.norm()))
    got = bench.update_sizes(model)
    assert got["modules"] == len(by_hand) > 0
    assert got["delta_norm_median"] == pytest.approx(statistics.median(by_hand), rel=1e-5)
    assert got["delta_relative_median"] == pytest.approx(statistics.median(relative), rel=1e-5)


def test_a_method_without_low_rank_modules_is_refused(vocab_file):
    bench = load_benchmark("adapter_update_size")
    lm = build_tiny("llama", vocab_file)
    _, spec, _ = sentiment_setup(lm, n=4)
    model = registry.build_method(registry.method_config("ptuning-v2", {"prefix_length": 2}), lm, spec)
    with pytest.raises(SystemExit, match="no PEFT low-rank modules"):
        bench.update_sizes(model)
