"""The DCPC model on tiny BERT and tiny LLaMA (grouped-query attention): training, ablations, eq. 13,
checkpoints and the PCM's sampling."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import build_tiny
from helpers_models import batches, build_variant, choice_setup, clone_state, sentiment_setup, train_steps
from prefalign.errors import CheckpointError
from prefalign.methods import method_config, registry
from prefalign.methods.dcpc import DCPCConfig, DCPCModel
from prefalign.methods.dcpc.pcm import PreferenceCorrection
from prefalign.models.introspect import ModelGeometry

# Tiny models: every pair passes. The ambiguity gate reads eq. 4's cross-entropy here (positive for every
# pair); the default KL gate is zero for pairs whose predictions agree exactly (issue 15).
ALL_GATES = dict(tau_cos=0.0, tau_ambiguity=0.0, similarity_center=False, gate_divergence="cross_entropy")


@pytest.fixture(params=["bert", "llama"])
def backbone(request, vocab_file):
    return build_tiny(request.param, vocab_file)


def make_model(lm, config: DCPCConfig, n: int = 32):
    ds, spec, collator = sentiment_setup(lm, n=n)
    model = DCPCModel(lm.model, lm.tokenizer, lm.geometry, spec, config)
    return model, batches(ds, collator)


def assert_trains_only_its_own_parameters(model, lm, data):
    backbone_before = clone_state(lm.model)
    trainable = model.trainable_parameters()
    assert trainable, "nothing to train"
    assert not any(n.startswith("classifier.model.") for n in trainable)
    before = {n: p.detach().clone() for n, p in trainable.items()}
    train_steps(model, data)
    after = lm.model.state_dict()
    assert backbone_before.keys() == after.keys()
    for name, tensor in backbone_before.items():
        assert torch.equal(tensor, after[name]), f"backbone tensor {name} changed"
    for name, p in lm.model.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    unchanged = [n for n, p in trainable.items() if torch.equal(before[n], p.detach())]
    assert not unchanged, f"parameters that never changed: {unchanged}"


# --------------------------------------------------------------------------------------------
# (a) DCPC trains its own parameters only; (b) P-Tuning v2
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pcm_mode", ["elementwise", "gate"])
def test_dcpc_training_changes_every_trainable_parameter_and_no_backbone_weight(backbone, pcm_mode):
    torch.manual_seed(0)
    model, data = make_model(backbone, DCPCConfig(pcm_mode=pcm_mode, **ALL_GATES))
    with torch.no_grad():
        terms = model.eval()(**data[0]).terms
    assert terms["gate_cos_rate"].item() == 1.0 and terms["gate_ambiguity_rate"].item() == 1.0
    assert any(((b["target_dist"] > 0) & (b["target_dist"] < 1)).any() for b in data)  # soft labels present
    names = set(model.trainable_parameters())
    assert any(n.startswith("prefix.") for n in names)
    assert any(n.startswith("pcm.") for n in names)
    assert any(n.startswith("classifier.head.") for n in names) == (not backbone.geometry.is_decoder)
    assert_trains_only_its_own_parameters(model, backbone, data)


def test_dcpc_reparameterized_training(backbone):
    torch.manual_seed(0)
    model, data = make_model(backbone, DCPCConfig(reparameterize=True, reparam_hidden_size=16, **ALL_GATES))
    assert {"prefix.embedding", "prefix.mlp.0.weight", "prefix.mlp.2.weight"} <= set(model.trainable_parameters())
    assert_trains_only_its_own_parameters(model, backbone, data)


def test_ptuning_v2_has_no_pcm_and_loss_is_task_loss(backbone):
    torch.manual_seed(0)
    model, data = make_model(backbone, method_config("ptuning-v2", dict(**ALL_GATES)))
    assert model.pcm is None
    assert not any("pcm" in n for n in model.trainable_parameters())
    assert not any("pcm" in k for k in model.trainable_state_dict())
    model.train()
    out = model(**data[0])
    assert torch.equal(out.loss.detach(), out.terms["loss_task"])
    assert set(out.terms) == {"loss_task"}
    assert_trains_only_its_own_parameters(model, backbone, data)


@pytest.mark.parametrize("variant", ["ptuning-v2", "dcpc-no-ambiguity"])
def test_training_lowers_the_task_loss_on_the_toy_task(tiny_bert, variant):
    """The plumbing learns: a few epochs on the toy task lower the task loss (BERT, whose head is
    trained; a random tiny decoder's frozen LM head leaves prefixes little to work with). With the
    ambiguity term on, the random backbone sees every pair as similar (cos > 0.85) and eq. 5 pulls
    all predictions together, fighting the task loss, so that term is left out here."""
    torch.manual_seed(0)
    model, data = make_model(tiny_bert, method_config(variant, dict(head_dropout=0.0)), n=16)

    def task_loss():
        model.eval()
        with torch.no_grad():
            return sum(model(**b).terms["loss_task"].item() for b in data)

    start = task_loss()
    opt = torch.optim.AdamW(list(model.trainable_parameters().values()), lr=3e-2, weight_decay=0.0)
    for _ in range(10):
        for b in data:
            model.train()
            loss = model(**b).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert task_loss() < 0.8 * start


# --------------------------------------------------------------------------------------------
# (c) ablations log their terms; (d) closed gates; (e) eq. 13
# --------------------------------------------------------------------------------------------
GATES = {"gate_cos_rate", "gate_ambiguity_rate"}
# Table 3 by hand. loss_ambiguity is logged whenever any DCPC part is on (its per-pair values drive
# the CLPA/PCM gates), but only counts in the total when use_ambiguity is on.
PCM_SPREAD = {"pcm_p_spread", "pcm_scale_spread"}  # the 'gate' PCM's spread across the batch (issue 15)
EXPECTED_TERMS = {
    "dcpc": {"loss_task", "loss_ambiguity", "loss_align", "loss_kl"} | GATES | PCM_SPREAD,
    "dcpc-no-clpa": {"loss_task", "loss_ambiguity", "loss_kl"} | GATES | PCM_SPREAD,
    "dcpc-no-pcm": {"loss_task", "loss_ambiguity", "loss_align"} | GATES,
    "dcpc-no-ambiguity": {"loss_task", "loss_ambiguity", "loss_align", "loss_kl"} | GATES | PCM_SPREAD,
    "dcpc-no-clpa-pcm": {"loss_task", "loss_ambiguity"} | GATES,
    "ptuning-v2": {"loss_task"},
}


@pytest.mark.parametrize("variant", list(EXPECTED_TERMS))
def test_ablation_variant_logs_expected_terms(backbone, variant):
    torch.manual_seed(0)
    cfg = method_config(
        variant, dict(lambda_ambiguity=0.7, lambda_align=1.3, lambda_kl=0.4, tau_cos=0.0, tau_ambiguity=0.1)
    )
    model, data = make_model(backbone, cfg)
    model.eval()
    with torch.no_grad():
        out = model(**data[0])
    terms = out.terms
    assert set(terms) == EXPECTED_TERMS[variant]
    assert (model.pcm is not None) == ("loss_kl" in terms)
    for name in GATES & set(terms):
        assert 0.0 <= terms[name].item() <= 1.0
    if GATES <= set(terms):
        assert terms["gate_ambiguity_rate"] <= terms["gate_cos_rate"]
    for value in terms.values():
        assert not value.requires_grad and torch.isfinite(value)
    expected = terms["loss_task"].double()
    if cfg.use_ambiguity:
        expected = expected + 0.7 * terms["loss_ambiguity"].double()
    expected = expected + 1.3 * terms.get("loss_align", torch.tensor(0.0)).double()
    expected = expected + 0.4 * terms.get("loss_kl", torch.tensor(0.0)).double()
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-6)


def test_no_pair_passes_cosine_gate_gives_exactly_the_task_loss(backbone):
    torch.manual_seed(0)
    model, data = make_model(backbone, DCPCConfig(tau_ambiguity=0.0))
    # tau_cos > 1 is refused by the config (cosines live in [-1, 1]); set it after validation to
    # close the gate for every pair, including pairs whose rounded cosine reaches 1.0.
    model.config.tau_cos = 1.01
    model.train()
    out = model(**data[0])
    assert torch.equal(out.loss.detach(), out.terms["loss_task"])
    for name in ("gate_cos_rate", "gate_ambiguity_rate", "loss_ambiguity", "loss_align", "loss_kl"):
        assert out.terms[name].item() == 0.0, name
    out.loss.backward()
    # The PCM's auxiliary classifier only learns through gated terms at initialisation (its
    # projection to the prefixes starts at zero), so a closed gate leaves it without gradient.
    for name, p in model.pcm.aux.named_parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0, name


def test_total_loss_is_eq_13(backbone):
    torch.manual_seed(0)
    l1, l2, l3 = 0.5, 2.0, 0.3
    model, data = make_model(backbone, DCPCConfig(lambda_ambiguity=l1, lambda_align=l2, lambda_kl=l3, **ALL_GATES))
    with torch.no_grad():  # make the KL term sizeable so a missing lambda3 term would show
        torch.nn.init.normal_(model.pcm.aux[0].weight, std=1.0)
        torch.nn.init.normal_(model.pcm.aux[2].weight, std=1.0)
    model.train()
    out = model(**data[0])
    t = {k: v.item() for k, v in out.terms.items()}
    for name in ("loss_ambiguity", "loss_align", "loss_kl"):
        assert t[name] > 1e-3, f"{name} is too small to check eq. 13: {t[name]}"
    assert t["gate_cos_rate"] == 1.0
    expected = t["loss_task"] + l1 * t["loss_ambiguity"] + l2 * t["loss_align"] + l3 * t["loss_kl"]
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)


def test_hard_labels_only_match_one_hot_targets(tiny_bert):
    torch.manual_seed(0)
    model, data = make_model(tiny_bert, DCPCConfig(head_dropout=0.0, **ALL_GATES))
    model.eval()
    batch = dict(data[0])
    with torch.no_grad():
        with_dist = model(**{**batch, "target_dist": torch.nn.functional.one_hot(batch["labels"], 2).float()})
        batch.pop("target_dist")
        from_labels = model(**batch)
        batch.pop("labels")
        bare = model(**batch)
    assert torch.equal(with_dist.loss, from_labels.loss)
    assert bare.loss is None and bare.logits.shape == (8, 2)


# --------------------------------------------------------------------------------------------
# (f) save / load round trip; (g) refusals
# --------------------------------------------------------------------------------------------
def build_registered(lm, name="dcpc", **params):
    ds, spec, collator = sentiment_setup(lm, n=16)
    model = registry.build_method(registry.method_config(name, params), lm, spec)
    return model, batches(ds, collator)


def perturb_trainables(model, seed=0):
    """Move every trained tensor (zero-initialised ones included) away from its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.trainable_parameters().values():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("pcm_mode", ["elementwise", "gate"])
@pytest.mark.parametrize("reparameterize", [False, True])
def test_save_load_round_trip_gives_identical_logits(backbone, tmp_path, pcm_mode, reparameterize):
    torch.manual_seed(0)
    model, data = build_registered(
        backbone, pcm_mode=pcm_mode, reparameterize=reparameterize, reparam_hidden_size=16, prefix_length=4
    )
    perturb_trainables(model)
    model.eval()
    with torch.no_grad():
        expected = [model(**b).logits for b in data]
    ckpt = tmp_path / "ckpt"
    registry.save_method(model, ckpt, backbone=backbone)
    loaded, meta = registry.load_method(ckpt, backbone=backbone)
    assert meta["method"] == "dcpc" and meta["method_config"]["pcm_mode"] == pcm_mode
    assert loaded.config == model.config
    loaded.eval()
    with torch.no_grad():
        got = [loaded(**b).logits for b in data]
    for e, g in zip(expected, got):
        assert torch.equal(e, g)
    state, loaded_state = model.trainable_state_dict(), loaded.trainable_state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)
    # Nothing is left behind beside the checkpoint (atomic write cleans its temporary folder).
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


@pytest.mark.parametrize("variant", ["ptuning-v2", "dcpc-no-pcm"])
def test_save_load_round_trip_for_variants(tiny_llama, tmp_path, variant):
    torch.manual_seed(0)
    model, data = build_registered(tiny_llama, variant, prefix_length=4)
    perturb_trainables(model)
    registry.save_method(model, tmp_path / "ckpt", backbone=tiny_llama)
    loaded, meta = registry.load_method(tmp_path / "ckpt", backbone=tiny_llama)
    assert meta["method"] == variant and loaded.pcm is None
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(**data[0]).logits, loaded(**data[0]).logits)


def test_save_overwrites_an_existing_checkpoint(tiny_bert, tmp_path):
    torch.manual_seed(0)
    model, data = build_registered(tiny_bert, prefix_length=4)
    ckpt = tmp_path / "ckpt"
    registry.save_method(model, ckpt, backbone=tiny_bert)
    perturb_trainables(model, seed=3)
    registry.save_method(model, ckpt, backbone=tiny_bert)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    loaded, _ = registry.load_method(ckpt, backbone=tiny_bert)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(**data[0]).logits, loaded(**data[0]).logits)


def test_checkpoint_holds_only_the_trained_parts(backbone, tmp_path):
    torch.manual_seed(0)
    model, _ = build_registered(backbone)
    ckpt = tmp_path / "ckpt"
    registry.save_method(model, ckpt, backbone=backbone)
    # DCPC with its PCM: prefalign's two files and the model card (PEFT cannot hold an input-dependent prefix)
    assert sorted(os.listdir(ckpt)) == ["README.md", "prefalign_config.json", "prefalign_weights.safetensors"]
    weights = load_file(str(ckpt / "prefalign_weights.safetensors"))
    assert not any(k.startswith("classifier.model.") for k in weights)
    assert set(weights) == set(model.trainable_state_dict())
    backbone_bytes = sum(t.numel() * t.element_size() for t in backbone.model.state_dict().values())
    size = (ckpt / "prefalign_weights.safetensors").stat().st_size
    saved_bytes = sum(t.numel() * t.element_size() for t in weights.values())
    assert size < saved_bytes + 16_384  # header only on top of the trained tensors
    assert saved_bytes < backbone_bytes / 2
    meta = json.loads((ckpt / "prefalign_config.json").read_text())
    assert meta["base_model"] == backbone.name
    assert meta["geometry"]["num_key_value_heads"] == backbone.geometry.num_key_value_heads


def test_load_refuses_a_pickle_only_folder(tiny_bert, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not really a pickle")
    with pytest.raises(CheckpointError, match="pickle"):
        registry.load_method(folder, backbone=tiny_bert)


def test_load_refuses_a_missing_folder(tiny_bert, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        registry.load_method(tmp_path / "nothing-here", backbone=tiny_bert)


@pytest.mark.parametrize("other", ["llama", "bert-3-layers", "bert-wider"])
def test_load_refuses_a_backbone_of_another_geometry(tiny_bert, vocab_file, tmp_path, other):
    torch.manual_seed(0)
    model, _ = build_registered(tiny_bert, prefix_length=4)
    registry.save_method(model, tmp_path / "ckpt", backbone=tiny_bert)
    if other == "llama":
        lm = build_tiny("llama", vocab_file)
    elif other == "bert-3-layers":
        lm = build_variant("bert", vocab_file, num_hidden_layers=3)
    else:
        lm = build_variant("bert", vocab_file, hidden_size=48, num_attention_heads=4)
    with pytest.raises(CheckpointError, match="was trained on"):
        registry.load_method(tmp_path / "ckpt", backbone=lm)


def saved_llama_checkpoint(tiny_llama, tmp_path):
    """A DCPC checkpoint of the tiny llama: (folder, weights path)."""
    torch.manual_seed(0)
    model, _ = build_registered(tiny_llama, prefix_length=4)
    ckpt = tmp_path / "ckpt"
    registry.save_method(model, ckpt, backbone=tiny_llama)
    return ckpt, str(ckpt / "prefalign_weights.safetensors")


def test_load_refuses_a_weights_file_with_a_wrong_shape(tiny_llama, tmp_path):
    ckpt, path = saved_llama_checkpoint(tiny_llama, tmp_path)
    state = load_file(path)
    state["prefix.kv"] = state["prefix.kv"][:, :, :3].contiguous()  # one prefix row short
    save_file(state, path)
    with pytest.raises(CheckpointError, match="prefix.kv"):
        registry.load_method(ckpt, backbone=tiny_llama)


def test_load_refuses_missing_or_extra_tensors(tiny_llama, tmp_path):
    ckpt, path = saved_llama_checkpoint(tiny_llama, tmp_path)
    state = load_file(path)
    state.pop("pcm.meta")
    save_file(state, path)
    with pytest.raises(CheckpointError, match="missing"):
        registry.load_method(ckpt, backbone=tiny_llama)
    state["pcm.meta"] = torch.zeros(4, 32)
    state["classifier.model.lm_head.weight"] = torch.zeros(3, 3)
    save_file(state, path)
    with pytest.raises(CheckpointError, match="unexpected"):
        registry.load_method(ckpt, backbone=tiny_llama)


def test_load_refuses_corrupt_files(tiny_llama, tmp_path):
    ckpt, path = saved_llama_checkpoint(tiny_llama, tmp_path)
    (ckpt / "prefalign_weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        registry.load_method(ckpt, backbone=tiny_llama)
    (ckpt / "prefalign_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        registry.load_method(ckpt, backbone=tiny_llama)


# --------------------------------------------------------------------------------------------
# (h) multiple choice
# --------------------------------------------------------------------------------------------
def test_multiple_choice(backbone):
    torch.manual_seed(0)
    ds, spec, collator = choice_setup(backbone, n=8)
    assert spec.multiple_choice and spec.num_classes == 2
    model = DCPCModel(backbone.model, backbone.tokenizer, backbone.geometry, spec, DCPCConfig(**ALL_GATES))
    batch = collator(ds.examples[:4])
    assert batch["input_ids"].shape[0] == 8  # B * C sequences
    if backbone.geometry.is_decoder:
        assert "score_mask" in batch and batch["score_mask"].sum() > 0
    model.train()
    out = model(**batch)
    assert out.logits.shape == (4, 2)
    assert torch.isfinite(out.loss) and torch.isfinite(out.logits).all()
    assert {"loss_align", "loss_kl"} <= set(out.terms)
    out.loss.backward()
    assert model.prefix.kv.grad is not None and torch.isfinite(model.prefix.kv.grad).all()
    assert model.prefix.kv.grad.abs().sum() > 0
    # The task term is the cross-entropy of the returned option scores against the gold option.
    assert out.terms["loss_task"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(out.logits.detach(), batch["labels"]).item(), rel=1e-5
    )
    model.eval()
    with torch.no_grad():
        bare = model(**{k: v for k, v in batch.items() if k not in ("labels", "target_dist")})
    assert bare.logits.shape == (4, 2) and bare.loss is None
    # Each option is scored on its own: swapping every example's two options swaps its two scores.
    from prefalign.data.examples import Example

    swapped = [Example(text=ex.text, choices=list(reversed(ex.choices)), label=1 - ex.label) for ex in ds.examples[:4]]
    with torch.no_grad():
        flipped = model(**{k: v for k, v in collator(swapped).items() if k not in ("labels", "target_dist")}).logits
    torch.testing.assert_close(flipped, bare.logits.flip(-1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(bare.logits[:, 0], bare.logits[:, 1])  # the two options score differently


def test_multiple_choice_decoder_scores_are_option_log_probabilities(tiny_llama):
    """Each option is scored on its own: swapping the two options swaps the two scores."""
    torch.manual_seed(0)
    ds, spec, collator = choice_setup(tiny_llama, n=8)
    model = DCPCModel(
        tiny_llama.model, tiny_llama.tokenizer, tiny_llama.geometry, spec, method_config("ptuning-v2")
    ).eval()
    ex = ds.examples[0]
    from prefalign.data.examples import Example

    swapped = Example(text=ex.text, choices=list(reversed(ex.choices)), label=1 - ex.label)
    with torch.no_grad():
        a = model(**collator([ex])).logits
        b = model(**collator([swapped])).logits
    assert torch.allclose(a, b.flip(-1), atol=1e-6)
    assert (a <= 0).all()  # mean log-probabilities


# --------------------------------------------------------------------------------------------
# (i) PCM sampling: deterministic in eval, stochastic in training
# --------------------------------------------------------------------------------------------
def test_pcm_is_deterministic_in_eval_and_samples_in_training(tiny_llama):
    # LLaMA has no dropout and no head, so in train mode only the PCM's noise can change the logits.
    lm = tiny_llama
    torch.manual_seed(0)
    model, data = make_model(lm, DCPCConfig(pcm_mode="elementwise", **ALL_GATES))  # the default is 'gate' now
    with torch.no_grad():
        torch.nn.init.normal_(model.pcm.proj[1].weight, std=0.5)  # let p_pref reach the prefixes
        model.pcm.aux[2].bias[lm.geometry.hidden_size :] = 1.0  # sigma = softplus(1) ~ 1.3
        torch.nn.init.normal_(model.pcm.meta, std=1.0)
    batch = {k: v for k, v in data[0].items() if k not in ("labels", "target_dist")}
    model.eval()
    with torch.no_grad():
        e1, e2 = model(**batch).logits, model(**batch).logits
    assert torch.equal(e1, e2)
    model.train()
    with torch.no_grad():
        t1, t2 = model(**batch).logits, model(**batch).logits
    assert not torch.allclose(t1, t2, atol=1e-6)


def test_without_pcm_training_mode_is_deterministic_on_llama(tiny_llama):
    """Control for the test above: the randomness comes from the PCM, not from the backbone.

    The same detector (two train-mode forwards under different RNG states) must first see the full
    DCPC's noise, so that its silence on dcpc-no-pcm means something."""
    lm = tiny_llama

    def two_train_forwards(model, batch):
        model.train()
        with torch.no_grad():
            torch.manual_seed(1)
            a = model(**batch).logits
            torch.manual_seed(2)
            b = model(**batch).logits
        return a, b

    torch.manual_seed(0)
    with_pcm, data = make_model(lm, DCPCConfig(pcm_mode="elementwise", **ALL_GATES))
    with torch.no_grad():  # the test above's PCM, strong enough to move the logits
        torch.nn.init.normal_(with_pcm.pcm.proj[1].weight, std=0.5)
        with_pcm.pcm.aux[2].bias[lm.geometry.hidden_size :] = 1.0
        torch.nn.init.normal_(with_pcm.pcm.meta, std=1.0)
    batch = {k: v for k, v in data[0].items() if k not in ("labels", "target_dist")}
    a, b = two_train_forwards(with_pcm, batch)
    assert not torch.allclose(a, b, atol=1e-6)  # the detector works

    torch.manual_seed(0)
    model, _ = make_model(lm, method_config("dcpc-no-pcm", dict(**ALL_GATES)))
    assert model.pcm is None
    model.load_state_dict({k: v for k, v in with_pcm.state_dict().items() if not k.startswith("pcm.")})
    a, b = two_train_forwards(model, batch)
    assert torch.equal(a, b)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, a)  # training mode changes nothing without the PCM


def test_pcm_starts_as_identity(backbone):
    """Both PCM modes start as P-Tuning v2: the per-example prefix change is exactly zero."""
    for mode in ("elementwise", "gate"):
        torch.manual_seed(0)
        model, data = make_model(backbone, DCPCConfig(pcm_mode=mode, prefix_length=4))
        ptv2 = DCPCModel(
            backbone.model,
            backbone.tokenizer,
            backbone.geometry,
            model.task,
            method_config("ptuning-v2", dict(prefix_length=4)),
        )
        ptv2.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pcm.")})
        model.eval(), ptv2.eval()
        batch = {k: v for k, v in data[0].items() if k not in ("labels", "target_dist")}
        with torch.no_grad():
            assert torch.allclose(model(**batch).logits, ptv2(**batch).logits, atol=1e-6)
        with torch.no_grad():
            delta = model.pcm(torch.randn(3, backbone.geometry.hidden_size), model.prefix(), sample=True).delta
        assert delta.shape == (3, backbone.geometry.num_layers, 2, 4, backbone.geometry.kv_dim)
        assert torch.count_nonzero(delta) == 0


# --------------------------------------------------------------------------------------------
# The PCM's arithmetic (eq. 9-11) on a hand-set module
# --------------------------------------------------------------------------------------------
PCM_GEO = ModelGeometry(
    "llama", True, num_layers=2, hidden_size=4, num_attention_heads=2, num_key_value_heads=1, head_dim=3
)  # d = 4, kv_dim = 3


def hand_set_pcm(mode: str) -> PreferenceCorrection:
    pcm = PreferenceCorrection(PCM_GEO, DCPCConfig(prefix_length=2, pcm_mode=mode, pcm_aux_rank=2, pcm_proj_rank=2))
    with torch.no_grad():
        pcm.aux[2].weight.zero_()
        # mu = (0, ln 2, 0, ln 4) whatever the input -> p_pref = (1, 2, 1, 4) / 8
        pcm.aux[2].bias.copy_(torch.tensor([0.0, math.log(2), 0.0, math.log(4), 0.0, 0.0, 0.0, 0.0]))
        pcm.meta.copy_(torch.tensor([[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 0.5, 0.5]]))
    return pcm


def test_pcm_gate_mode_scales_prefix_rows_by_one_plus_m_p():
    pcm = hand_set_pcm("gate")
    static = torch.arange(2 * 2 * 2 * 3, dtype=torch.float32).view(2, 2, 2, 3)  # (L, 2, m, kv)
    out = pcm(torch.randn(1, 4), static, sample=False)
    p = [1 / 8, 2 / 8, 1 / 8, 4 / 8]
    assert out.p_pref[0].tolist() == pytest.approx(p, abs=1e-6)
    # s_j = sum_k M[j, k] p_k: s_0 = 1/8 - 1/8 + 8/8 = 1 ; s_1 = 0.5 * (8/8) = 0.5
    s = [1.0, 0.5]
    for j in range(2):
        assert torch.allclose(out.delta[0, :, :, j], static[:, :, j] * s[j], atol=1e-6)
    # sigma = softplus(0) + 1e-4
    assert torch.allclose(out.sigma, torch.full((1, 4), math.log(2) + 1e-4), atol=1e-6)


def test_pcm_elementwise_mode_layout_matches_the_prefix_encoder():
    pcm = hand_set_pcm("elementwise")
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in pcm.proj:
            layer.weight.normal_()
        pcm.proj[1].bias.normal_()
    out = pcm(torch.randn(1, 4), torch.zeros(2, 2, 2, 3), sample=False)
    assert out.delta.shape == (1, 2, 2, 2, 3)
    d, p = 4, [1 / 8, 2 / 8, 1 / 8, 4 / 8]
    w0, w1, b1 = pcm.proj[0].weight.tolist(), pcm.proj[1].weight.tolist(), pcm.proj[1].bias.tolist()
    meta = pcm.meta.tolist()
    for j in range(2):
        p_new = [meta[j][k] * d * p[k] for k in range(d)]  # eq. 11, element-wise reading
        hidden = [sum(w0[r][k] * p_new[k] for k in range(d)) for r in range(2)]
        flat = [sum(w1[o][r] * hidden[r] for r in range(2)) + b1[o] for o in range(2 * 2 * 3)]
        for layer in range(2):
            for kv in range(2):  # (layer, key/value) blocks of kv_dim, as in PrefixEncoder
                start = (layer * 2 + kv) * 3
                assert out.delta[0, layer, kv, j].tolist() == pytest.approx(flat[start : start + 3], abs=1e-5)


def test_pcm_samples_only_when_asked():
    pcm = hand_set_pcm("gate")
    e = torch.randn(2, 4)
    static = torch.randn(2, 2, 2, 3)
    a, b = pcm(e, static, sample=False), pcm(e, static, sample=False)
    assert torch.equal(a.p_pref, b.p_pref)
    torch.manual_seed(1)
    c = pcm(e, static, sample=True)
    assert not torch.allclose(c.p_pref, a.p_pref, atol=1e-4)
    assert torch.allclose(c.p_pref.sum(-1), torch.ones(2), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Half-precision backbones
# --------------------------------------------------------------------------------------------
BF16_ATOL = 0.01  # bf16 keeps 8 mantissa bits (relative step 2**-8); measured 7e-4 on these class scores


@pytest.mark.parametrize("variant", ["ptuning-v2", "dcpc"])
def test_bfloat16_backbone_forward_without_autocast(vocab_file, variant):
    """A bf16 backbone (the same weights, rounded) gives the fp32 model's class scores within BF16_ATOL,
    the same predictions, and a backward pass with finite, non-zero gradients on the fp32 prefixes."""
    config = method_config(variant, dict(prefix_length=4))
    lm32, lm16 = build_tiny("llama", vocab_file), build_tiny("llama", vocab_file)
    lm16.model.to(torch.bfloat16)
    torch.manual_seed(0)
    model32, data = make_model(lm32, config, n=8)
    torch.manual_seed(0)
    model16, _ = make_model(lm16, config, n=8)
    # Text-initialised prefixes went through each backbone; start both from the fp32 model's parts
    # (the backbone's own weights load rounded to bf16, as they already are).
    model16.load_state_dict(model32.state_dict())
    assert torch.equal(model16.prefix.kv, model32.prefix.kv) and model16.prefix.kv.dtype == torch.float32
    batch = {k: v for k, v in data[0].items() if k not in ("labels", "target_dist")}
    model32.eval(), model16.eval()
    with torch.no_grad():
        ref, out = model32(**batch).logits, model16(**batch).logits
    diff = (out.float() - ref).abs().max().item()
    assert 0 < diff < BF16_ATOL, diff  # > 0: the backbone really ran in bf16
    assert torch.equal(out.float().argmax(-1), ref.argmax(-1))
    model16.train()
    loss = model16(**data[0]).loss
    assert torch.isfinite(loss)
    loss.backward()
    grad = model16.prefix.kv.grad
    assert grad is not None and grad.dtype == torch.float32
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
