"""benchmarks/speed_memory.py's same-head variant: our P-Tuning v2 scoring a decoder through PEFT's head."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import speed_memory as sm  # noqa: E402

from prefalign.models.classifier import TaskSpec  # noqa: E402


def _batch(tok):
    enc = tok(["good movie", "the plot was very dull and boring"], padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def test_same_head_variant_equals_peft_prefix_seq_cls(tiny_llama):
    """Given the same prefix and score weights, ptuning-v2-score's logits are PEFT's prefix-tuned sequence
    classifier's (so the rotation compares the prefix paths with the head the same on both sides)."""
    tok = tiny_llama.tokenizer
    task = TaskSpec(num_classes=2, verbalizer_ids=(tok.convert_tokens_to_ids("good"), tok.convert_tokens_to_ids("bad")))
    torch.manual_seed(0)
    ours, params = sm.build_model("ptuning-v2-score", tiny_llama, task, 3, 2)
    peer = sm.Peer("peft-prefix", tiny_llama, 2, 3)
    assert [p is ours.classifier.score.weight for p in params].count(True) == 1  # trains, once, with the prefix
    geo = tiny_llama.geometry
    kv = ours.prefix()  # (L, 2, m, kv): PEFT's embedding row j is layer-major (L, 2, heads, head_dim)
    with torch.no_grad():
        peer.model.prompt_encoder["default"].embedding.weight.copy_(kv.permute(2, 0, 1, 3).reshape(3, -1))
        peer.model.base_model.score.weight.copy_(ours.classifier.score.weight)
    ids, mask = _batch(tok)
    ours.eval()
    peer.eval()
    with torch.no_grad():
        mine = ours(input_ids=ids, attention_mask=mask).logits
        theirs = peer(input_ids=ids, attention_mask=mask).logits
    assert geo.is_decoder and mine.shape == (2, 2)
    torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)
    # And it is not the verbalizer's score: the default head reads log-probabilities (all negative).
    plain, _ = sm.build_model("ptuning-v2", tiny_llama, task, 3, 2)
    with torch.no_grad():
        assert (plain.eval()(input_ids=ids, attention_mask=mask).logits < 0).all()


def test_same_head_variant_trains_its_score(tiny_llama):
    tok = tiny_llama.tokenizer
    task = TaskSpec(num_classes=2, verbalizer_ids=(5, 6))
    ours, params = sm.build_model("ptuning-v2-score", tiny_llama, task, 3, 2)
    ids, mask = _batch(tok)
    ours.train()
    ours(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1])).loss.backward()
    assert ours.classifier.score.weight.grad.abs().sum() > 0
    assert ours.prefix.kv.grad.abs().sum() > 0


def test_same_head_variant_refuses_encoders(tiny_bert):
    with pytest.raises(SystemExit, match="for decoders"):
        sm.build_model("ptuning-v2-score", tiny_bert, TaskSpec(num_classes=2), 3, 2)


def _mapped_files(ptr: int) -> list[str]:
    """The files mapped at address ``ptr`` in this process (Linux)."""
    found = []
    for line in open("/proc/self/maps"):
        parts = line.split()
        low, high = (int(x, 16) for x in parts[0].split("-"))
        if low <= ptr < high and len(parts) > 5:
            found.append(parts[5])
    return found


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/self/maps")
def test_load_backbone_keeps_weights_in_memory_of_its_own(tiny_llama, tmp_path):
    """transformers leaves safetensors weights in the mapped file (8-byte aligned); load_backbone copies them
    into torch's own aligned memory, with the same values and the tied LM head still tied."""
    from transformers import AutoModelForCausalLM

    from prefalign.models.loading import load_backbone

    tiny_llama.model.save_pretrained(tmp_path)
    tiny_llama.tokenizer.save_pretrained(tmp_path)
    mapped = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    weights = str(tmp_path / "model.safetensors")
    assert any(weights in _mapped_files(p.data_ptr()) for p in mapped.parameters())  # what the copy fixes
    loaded = load_backbone(str(tmp_path)).model.eval()
    for p in loaded.parameters():
        assert p.data_ptr() % 64 == 0 and weights not in _mapped_files(p.data_ptr())
    for (name, a), b in zip(mapped.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.get_output_embeddings().weight is loaded.get_input_embeddings().weight
    ids = torch.tensor([[3, 9, 12, 4]])
    with torch.no_grad():
        assert torch.equal(mapped(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_bootstrap_interval_of_paired_ratios():
    """results_tables' interval of the median of per-round ratios (prefalign.compare.pairs.bootstrap_interval):
    exact for equal ratios, inside the observed range otherwise, and the same on every call (fixed seed)."""
    import results_tables

    assert results_tables.bootstrap_interval([1.02] * 5) == (1.02, 1.02)
    values = [0.98, 1.0, 1.01, 1.03, 1.2]
    low, high = results_tables.bootstrap_interval(values)
    assert 0.98 <= low <= 1.01 <= high <= 1.2
    assert results_tables.bootstrap_interval(values) == (low, high)
