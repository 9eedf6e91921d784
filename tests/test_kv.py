"""LoRC (prefalign.kv): factorisation, the latent cache, the schedule, the folder and `prefalign compress-kv`."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from conftest import build_tiny
from prefalign.cli import main as cli_main
from prefalign.errors import CheckpointError, ConfigError, ModelLoadError
from prefalign.kv import (
    LoRCCache,
    apply_compressed,
    cache_nbytes,
    compress_model,
    compressed_layers,
    progressive_schedule,
    save_compressed,
    sensitivity_profile,
    truncate_model,
    uniform_schedule,
)
from prefalign.kv.factorize import factorize, svd_blocks, truncated_weight
from prefalign.kv.io import fingerprint
from prefalign.kv.schedule import cache_ratio, cumulative_log_condition, progressive_ranks

# tiny llama: 3 layers, 4 query heads, 2 kv heads, head_dim 16 (GQA, RoPE); tiny gpt2: 2 layers, 4 heads of 8.
FULL = {("llama", "head"): 16, ("llama", "layer"): 32, ("gpt2", "head"): 8, ("gpt2", "layer"): 32}
CASES = sorted(FULL)


def tiny(kind, vocab_file, seed=0):
    model = build_tiny(kind, vocab_file, seed).model.eval()
    if kind == "gpt2":  # give the value/key biases something to do
        with torch.no_grad():
            for block in model.transformer.h:
                block.attn.c_attn.bias.normal_(0, 0.1)
                block.attn.c_proj.bias.normal_(0, 0.1)
    return model


def ids(seed=0, batch=2, n=12):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, 50, (batch, n), generator=g)


@pytest.mark.parametrize("kind,granularity", CASES)
def test_full_rank_reproduces_the_models_logits(vocab_file, kind, granularity):
    model = tiny(kind, vocab_file)
    x = ids()
    with torch.no_grad():
        before = model(x).logits
        compress_model(model, [FULL[kind, granularity]] * len(compressed_layers(model)), granularity)
        after = model(x).logits
    assert all(compressed_layers(model))
    torch.testing.assert_close(after, before, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("kind,granularity", CASES)
def test_the_compressed_path_equals_the_truncated_svd_weights(vocab_file, kind, granularity):
    model = tiny(kind, vocab_file)
    layers = len(compressed_layers(model))
    ranks = [None] + [max(1, FULL[kind, granularity] // 2 - i) for i in range(layers - 1)]
    reference, compressed = copy.deepcopy(model), copy.deepcopy(model)
    truncate_model(reference, ranks, granularity)
    compress_model(compressed, ranks, granularity)
    x = ids(1)
    with torch.no_grad():
        want, got, original = reference(x).logits, compressed(x).logits, model(x).logits
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    assert (want - original).abs().max() > 1e-3  # the truncation did change the model


@pytest.mark.parametrize("kind,granularity", CASES)
def test_generate_with_the_latent_cache_equals_the_truncated_model(vocab_file, kind, granularity):
    model = tiny(kind, vocab_file)
    ranks = [max(1, FULL[kind, granularity] // 4)] * len(compressed_layers(model))
    reference, compressed = copy.deepcopy(model), copy.deepcopy(model)
    truncate_model(reference, ranks, granularity)
    compress_model(compressed, ranks, granularity)
    prompt = ids(2, batch=2, n=7)
    kw = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    want = reference.generate(prompt, **kw)
    cache = LoRCCache(compressed_layers(compressed))
    got = compressed.generate(prompt, past_key_values=cache, **kw)
    assert torch.equal(got, want)
    assert torch.equal(compressed.generate(prompt, **kw), want)  # transformers' own default cache works too
    # the cache really holds latents: batch x blocks x tokens x rank, keys and values, 4 bytes each
    groups = 2 if (kind, granularity) == ("llama", "head") else (4 if kind == "gpt2" and granularity == "head" else 1)
    tokens = 7 + 8 - 1
    layers = len(ranks)
    latents = 2 * layers * 2 * groups * tokens * ranks[0] * 4
    positions = layers * 2 * tokens * 4 if kind == "llama" else 0
    assert cache_nbytes(cache) == {
        "keys": latents // 2,
        "values": latents // 2,
        "positions": positions,
        "total": latents + positions,
    }


def test_generate_with_left_padding_matches_the_truncated_model(vocab_file):
    model = tiny("llama", vocab_file)
    ranks = [None, 6, 4]
    reference, compressed = copy.deepcopy(model), copy.deepcopy(model)
    truncate_model(reference, ranks, "head")
    compress_model(compressed, ranks, "head")
    prompt = ids(3, batch=2, n=6)
    mask = torch.ones_like(prompt)
    prompt[0, :2], mask[0, :2] = 0, 0
    kw = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert torch.equal(compressed.generate(prompt, **kw), reference.generate(prompt, **kw))


def test_theorem_2_bound_holds_and_is_attained():
    torch.manual_seed(0)
    w = torch.randn(24, 40, dtype=torch.float64)
    for groups in (1, 3):
        _, s, vh = svd_blocks(w, groups)
        for k in (1, 4, 7):
            approx = truncated_weight(w, groups, k)
            for _ in range(20):
                x = torch.randn(40, dtype=torch.float64)
                for g in range(groups):
                    rows = slice(g * 24 // groups, (g + 1) * 24 // groups)
                    err = torch.linalg.norm(w[rows] @ x - approx[rows] @ x)
                    assert err <= s[g, k] * torch.linalg.norm(x) + 1e-12
            # the bound is tight: x = v_{k+1} of block 0 gives exactly sigma_{k+1}
            x = vh[0, k]
            rows = slice(0, 24 // groups)
            assert torch.isclose(torch.linalg.norm(w[rows] @ x - approx[rows] @ x), s[0, k])


def test_factors_rebuild_the_truncated_weight_and_carry_the_singular_values():
    torch.manual_seed(1)
    w = torch.randn(32, 20, dtype=torch.float64)
    f = factorize(w, 2, 5)
    assert f.down.shape == (2, 5, 20) and f.up.shape == (2, 16, 5)
    torch.testing.assert_close(f.weight(), truncated_weight(w, 2, 5))
    # U is orthonormal, so the latent carries the scale: ||down_g x|| = ||W_g~ x||
    torch.testing.assert_close(f.up[0].T @ f.up[0], torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(f.singular_values[0], torch.linalg.svdvals(w[:16]).float())


def test_eq_5_12_and_5_13_by_hand():
    assert cumulative_log_condition([1.0, 2.0, 0.5], [0.5, 0.0, 0.5]) == [4.5, 3.0, 1.0]
    # shares (max - l)/(max - min): 0, 1.5/3.5, 1 -> 16, 16*(1 - 3/7*0.75) = 10.857 -> 11, 4
    assert progressive_ranks([4.5, 3.0, 1.0], 16, 4) == [16, 11, 4]
    assert progressive_ranks([2.0, 2.0], 16, 4) == [16, 16]  # no spread: nothing to scale
    assert cache_ratio([16, 8, None], 16, 32, 2) == pytest.approx((32 + 16 + 32) / 96)


@pytest.mark.parametrize("granularity", ["head", "layer"])
@pytest.mark.parametrize("target", [1.0, 0.8, 0.6, 0.4, 0.25])
def test_schedules_are_monotone_and_meet_the_target(vocab_file, granularity, target):
    model = build_tiny("llama", vocab_file, num_hidden_layers=6).model
    p = progressive_schedule(model, target, granularity=granularity)
    u = uniform_schedule(model, target, granularity=granularity)
    d_max = FULL["llama", granularity]
    for s in (p, u):
        assert s.ratio <= target + 1e-9
        assert all(b <= a for a, b in zip(s.ranks, s.ranks[1:]))  # never more rank deeper down
        assert all(1 <= r <= d_max for r in s.ranks)
    assert all(b <= a for a, b in zip(p.log_cumulative, p.log_cumulative[1:]))
    assert len(set(u.ranks)) == 1
    # tight: one more step of rank anywhere would break the target (the bisection/search found the edge)
    if target < 1.0:
        assert cache_ratio([u.ranks[0] + 1] * 6, d_max, 32, 2 if granularity == "head" else 1) > target
        if p.d_min < p.d_max:
            bigger = progressive_ranks(p.log_cumulative, p.d_max, min(p.d_max, p.d_min + 1e-6))
            assert cache_ratio(bigger, d_max, 32, 2 if granularity == "head" else 1) > target or bigger == p.ranks
        assert p.ratio > target - 1.5 / d_max  # within a rank step of the target
    else:
        assert p.ranks == [d_max] * 6 and p.ratio == 1.0


def test_skipped_layers_stay_uncompressed(vocab_file):
    model = build_tiny("llama", vocab_file, num_hidden_layers=4).model
    free = progressive_schedule(model, 0.6)
    threshold = (free.log_cumulative[0] + free.log_cumulative[1]) / 2
    s = progressive_schedule(model, 0.6, skip_threshold=threshold)
    u = uniform_schedule(model, 0.6, skip_threshold=threshold)
    assert s.ranks[0] is None and u.ranks[0] is None and None not in s.ranks[1:]
    assert s.ratio <= 0.6 + 1e-9 and u.ratio <= 0.6 + 1e-9
    x = ids(4)
    reference = copy.deepcopy(model)
    compress_model(model, s.ranks, "head")
    assert compressed_layers(model) == [False, True, True, True]
    truncate_model(reference, s.ranks, "head")
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, reference(x).logits, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("ratio", [0.0, -0.2, 1.5, float("nan")])
def test_a_ratio_outside_0_1_is_one_line(vocab_file, ratio):
    model = build_tiny("llama", vocab_file).model
    with pytest.raises(ConfigError, match=r"in \(0, 1\]") as err:
        progressive_schedule(model, ratio)
    assert "\n" not in str(err.value)


def test_an_unsupported_family_and_a_too_large_rank_are_one_line(vocab_file):
    bert = build_tiny("bert", vocab_file).model
    with pytest.raises(ModelLoadError, match="LLaMA-family decoders .* and GPT-2; 'bert'"):
        progressive_schedule(bert, 0.5)
    llama = build_tiny("llama", vocab_file).model
    with pytest.raises(ConfigError, match=r"rank 17 is larger than the head dimension \(16\)"):
        compress_model(llama, [17, 8, 8], "head")
    with pytest.raises(ConfigError, match=r"d_max 40 is larger than kv_heads x head_dim \(32\)"):
        progressive_schedule(llama, 0.5, granularity="layer", d_max=40)


def test_a_cache_holding_full_keys_is_refused(vocab_file):
    from transformers import DynamicCache

    model = tiny("llama", vocab_file)
    compress_model(model, [None, 8, 8], "head")
    cache = DynamicCache()
    cache.update(torch.zeros(1, 2, 3, 16), torch.zeros(1, 2, 3, 16), 1)
    with pytest.raises(ConfigError, match="holds full keys/values"):
        model(ids(5, batch=1, n=2), past_key_values=cache)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_a_saved_folder_loads_back_to_the_same_model(vocab_file, tmp_path, kind):
    model = tiny(kind, vocab_file)
    schedule = progressive_schedule(model, 0.6)
    base_print = fingerprint(model)
    fresh = copy.deepcopy(model)
    factors = compress_model(model, schedule.ranks, "head")
    save_compressed(
        tmp_path / "lorc",
        base_model="tiny",
        model=model,
        schedule=schedule,
        factors=factors,
        base_fingerprint=base_print,
    )
    meta = json.loads((tmp_path / "lorc" / "lorc.json").read_text())
    assert meta["schedule"]["ranks"] == schedule.ranks and meta["family"] == kind
    assert apply_compressed(fresh, tmp_path / "lorc").ranks == schedule.ranks
    x = ids(6)
    with torch.no_grad():
        assert torch.equal(fresh(x).logits, model(x).logits)
    other = tiny(kind, vocab_file, seed=1)
    with pytest.raises(CheckpointError, match="key/value weights differ"):
        apply_compressed(other, tmp_path / "lorc")
    with pytest.raises(CheckpointError, match="not a compressed model folder"):
        apply_compressed(other, tmp_path)


def test_the_sensitivity_profile_restores_the_model(vocab_file):
    model = tiny("llama", vocab_file)
    x = ids(7, batch=1, n=16)

    @torch.no_grad()
    def nll(m) -> float:
        return float(torch.nn.functional.cross_entropy(m(x).logits[0, :-1], x[0, 1:]))

    with torch.no_grad():
        before = model(x).logits
    prof = sensitivity_profile(model, nll, 4)
    with torch.no_grad():
        assert torch.equal(model(x).logits, before)
    assert not any(compressed_layers(model))
    for layer, delta in enumerate(prof["deltas"]):
        one = copy.deepcopy(model)
        truncate_model(one, [4 if i == layer else None for i in range(3)], "head")
        assert delta == pytest.approx(nll(one) - prof["baseline"], abs=1e-5)


def _saved_tiny(vocab_file, tmp_path, kind="llama"):
    loaded = build_tiny(kind, vocab_file)
    folder = tmp_path / f"tiny-{kind}"
    loaded.model.save_pretrained(folder, safe_serialization=True)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def test_compress_kv_cli_writes_a_folder_that_loads(vocab_file, tmp_path, capsys):
    from prefalign.kv import load_compressed

    folder = _saved_tiny(vocab_file, tmp_path)
    text = tmp_path / "text.txt"
    text.write_text(" ".join(f"word{i % 7}" for i in range(200)))
    out = tmp_path / "out"
    argv = ["compress-kv", "--model", str(folder), "--ratio", "0.6", "-o", str(out), "--profile-text", str(text)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "progressive schedule, granularity head: target ratio 0.6" in printed
    assert "measured cache bytes on a" in printed
    for name in ("factors.safetensors", "lorc.json", "schedule.png", "sensitivity.png", "sensitivity.json"):
        assert (out / name).is_file()
    measured = json.loads((out / "cache_bytes.json").read_text())
    meta = json.loads((out / "lorc.json").read_text())
    ranks = meta["schedule"]["ranks"]
    tokens = measured["probe_tokens"]
    assert measured["compressed"]["keys"] == sum(2 * tokens * r * 4 for r in ranks)
    assert measured["full"]["keys"] == 3 * 2 * tokens * 16 * 4
    loaded = load_compressed(out)
    reference = build_tiny("llama", vocab_file).model
    truncate_model(reference, ranks, "head")
    x = ids(8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x).logits, reference(x).logits, atol=2e-5, rtol=1e-5)
    # an existing folder is kept unless --overwrite
    assert cli_main(argv) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--ratio", "1.5"], "must be in (0, 1]"),
        (["--ratio", "0"], "must be in (0, 1]"),
        (["--ratio", "0.5", "--d-max", "99"], "larger than the head dimension (16)"),
    ],
)
def test_compress_kv_cli_bad_input_is_one_line(vocab_file, tmp_path, capsys, extra, message):
    folder = _saved_tiny(vocab_file, tmp_path)
    capsys.readouterr()
    code = cli_main(["compress-kv", "--model", str(folder), "-o", str(tmp_path / "o"), *extra])
    assert code == 2
    assert _error_lines(capsys.readouterr().err) == [message]
    assert not (tmp_path / "o").exists()


def _error_lines(err: str) -> list[str]:
    """The CLI's error lines (progress bars of model loading aside), each cut to its message's known part."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("prefalign: error: ")]
    known = ["must be in (0, 1]", "larger than the head dimension (16)", "supports LLaMA-family decoders"]
    return [next((k for k in known if k in line), line) for line in lines]


def test_compress_kv_cli_refuses_an_encoder(vocab_file, tmp_path, capsys):
    folder = _saved_tiny(vocab_file, tmp_path, "bert")
    capsys.readouterr()
    code = cli_main(["compress-kv", "--model", str(folder), "--ratio", "0.5", "-o", str(tmp_path / "o")])
    assert code == 2
    assert _error_lines(capsys.readouterr().err) == ["supports LLaMA-family decoders"]


def test_perplexity_of_a_compressed_model_is_finite(vocab_file):
    model = tiny("gpt2", vocab_file)
    compress_model(model, [2, 2], "head")
    x = ids(9, batch=1, n=20)
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(model(x, use_cache=False).logits[0, :-1], x[0, 1:])
    assert math.isfinite(float(loss))


def test_eval_and_predict_run_with_a_compressed_cache(vocab_file, tmp_path):
    from helpers_cli import run_main, save_tiny_model, toy_rows, write_csv

    model_dir = save_tiny_model("llama", vocab_file, tmp_path / "tiny-llama")
    train = write_csv(tmp_path / "train.csv", toy_rows(32, seed=0))
    test = write_csv(tmp_path / "test.csv", toy_rows(16, seed=1))
    sets = [
        f"model.name={model_dir}",
        f"data.train={train}",
        "method.name=houlsby",
        f"training.output_dir={tmp_path / 'run'}",
        "training.max_steps=2",
        "training.eval_steps=2",
        "training.progress=false",
        "training.device=cpu",
    ]
    rc, out, err = run_main(["train"] + [a for s in sets for a in ("--set", s)])
    assert rc == 0, err
    adapter = str(tmp_path / "run" / "adapter")
    full_kv, half_kv = tmp_path / "kv100", tmp_path / "kv50"
    assert run_main(["compress-kv", "--model", str(model_dir), "--ratio", "1", "-o", str(full_kv)])[0] == 0
    assert run_main(["compress-kv", "--model", str(model_dir), "--ratio", "0.5", "-o", str(half_kv)])[0] == 0
    scores = {}
    for name, extra in (("plain", []), ("full", ["--kv", str(full_kv)]), ("half", ["--kv", str(half_kv)])):
        rc, out, err = run_main(["eval", "--adapter", adapter, "--data", str(test), *extra])
        assert rc == 0, err
        scores[name] = json.loads(out.strip().splitlines()[-1])
    # full rank: the same model, so the same scores; half the cache: a different model
    assert scores["full"]["cross_entropy"] == pytest.approx(scores["plain"]["cross_entropy"], abs=1e-5)
    assert scores["half"]["cross_entropy"] != pytest.approx(scores["plain"]["cross_entropy"], abs=1e-6)
    rc, out, err = run_main(["predict", "--adapter", adapter, "--text", "a good movie", "--kv", str(half_kv)])
    assert rc == 0, err
    other = save_tiny_model("llama", vocab_file, tmp_path / "other-llama", seed=3)
    assert run_main(["compress-kv", "--model", str(other), "--ratio", "0.5", "-o", str(tmp_path / "kvo")])[0] == 0
    rc, out, err = run_main(["eval", "--adapter", adapter, "--data", str(test), "--kv", str(tmp_path / "kvo")])
    assert rc == 2 and "key/value weights differ" in err
    # BitFit adds biases to k/v through hooks, which a compressed layer cannot keep: refused, one line
    sets[2:4] = ["method.name=bitfit", f"training.output_dir={tmp_path / 'bitfit'}"]
    assert run_main(["train"] + [a for s in sets for a in ("--set", s)])[0] == 0
    rc, out, err = run_main(
        ["eval", "--adapter", str(tmp_path / "bitfit" / "adapter"), "--data", str(test), "--kv", str(half_kv)]
    )
    assert rc == 2 and "carries hooks on" in err


# Real bytes of transformers' QuantizedCache (benchmarks/lorc_quantized.py compares it with LoRC). The
# tiny llama has 3 layers of 2 kv heads of 16: an 8-token prefill writes 1*2*8*16 = 256 values per layer
# and kind, which the integer backends quantize in 256/64 = 4 groups of 64 (one scale and one zero point
# each, float32), and one decoded token then waits in the float32 residual (2*16*4 = 128 bytes).
def _fill(cache, layers=3, prefill=8):
    g = torch.Generator().manual_seed(0)
    for step in (prefill, 1):
        for layer in range(layers):
            k, v = torch.randn(2, 1, 2, step, 16, generator=g)
            cache.update(k, v, layer)


@pytest.mark.parametrize(("bits", "codes"), [(4, 128), (2, 64)])
def test_cache_nbytes_counts_quanto_codes_packed(vocab_file, bits, codes):
    pytest.importorskip("optimum.quanto")
    from transformers.cache_utils import QuantizedCache

    cache = QuantizedCache("quanto", build_tiny("llama", vocab_file).model.config, nbits=bits)
    _fill(cache)
    per_kind = 3 * (codes + 4 * 4 * 2 + 128)  # packed codes + scales and zero points + residual token
    assert cache_nbytes(cache) == {"keys": per_kind, "values": per_kind, "positions": 0, "total": 2 * per_kind}


@pytest.mark.parametrize(("bits", "codes"), [(4, 128), (2, 64)])
def test_cache_nbytes_counts_hqq_codes_and_metadata(vocab_file, bits, codes):
    pytest.importorskip("hqq")
    from transformers.cache_utils import QuantizedCache

    cache = QuantizedCache("hqq", build_tiny("llama", vocab_file).model.config, nbits=bits)
    _fill(cache)
    per_kind = 3 * (codes + 4 * 4 * 2 + 128)
    assert cache_nbytes(cache) == {"keys": per_kind, "values": per_kind, "positions": 0, "total": 2 * per_kind}


def test_cache_nbytes_counts_the_fp8_cache(vocab_file):
    # transformers' fp8 backend needs no package: one byte per value, appended, and one float32 scale
    from transformers.cache_utils import QuantizedCache

    cache = QuantizedCache("fp8", build_tiny("llama", vocab_file).model.config)
    _fill(cache)
    per_kind = 3 * (9 * 2 * 16 + 4)
    assert cache_nbytes(cache) == {"keys": per_kind, "values": per_kind, "positions": 0, "total": 2 * per_kind}


@pytest.mark.parametrize("rank", [3, 16])  # r below the head width (values zero-padded for SDPA) and equal to it
def test_a_prefill_in_chunks_equals_one_forward_of_the_truncated_model(vocab_file, rank):
    model = tiny("llama", vocab_file)
    ranks = [rank] * len(compressed_layers(model))
    reference, compressed = copy.deepcopy(model), copy.deepcopy(model)
    truncate_model(reference, ranks, "head")
    compress_model(compressed, ranks, "head")
    x = ids(4, batch=2, n=12)
    cache = LoRCCache(compressed_layers(compressed))
    with torch.no_grad():
        want = reference(x).logits
        first = compressed(x[:, :5], past_key_values=cache, use_cache=True).logits  # n == total: is_causal
        second = compressed(x[:, 5:], past_key_values=cache, use_cache=True).logits  # n < total: offset mask
    torch.testing.assert_close(torch.cat([first, second], dim=1), want, atol=2e-5, rtol=1e-5)
    assert cache.get_seq_length() == 12
