"""Adapters the Hugging Face world can use: PEFT's own files load with PEFT alone onto the base model's
folder and compute what prefalign computes; the base model is recorded by a loadable path with a digest;
merging writes a plain transformers folder; push_to_hub uploads exactly the adapter's files."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import pytest
import torch

from conftest import build_tiny
from helpers_models import batches, prompt_for, train_steps, train_with_schedule
from prefalign.data.collator import Collator, build_task_spec
from prefalign.errors import CheckpointError
from prefalign.methods import build_method, load_method, method_config, save_method
from prefalign.methods.export import (
    PEFT_CONFIG_FILE,
    PEFT_WEIGHTS_FILE,
    base_model_record,
    empty_tensors_are_pruned,
    peft_export,
    push_to_hub,
)
from prefalign.methods.merge import HEAD_FILE, merge_adapter
from prefalign.models.loading import LoadedModel, load_backbone

PEFT_METHODS = {
    "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
    "adalora": {"init_r": 4, "target_r": 2},
    "ia3": {},
    "prompt-tuning": {"num_virtual_tokens": 3},
    "ptuning-v2": {"prefix_length": 3},
    "dcpc-no-pcm": {"prefix_length": 3},
}


@pytest.fixture(scope="module")
def base_folders(tmp_path_factory, vocab_file):
    """A tiny random BERT and LLaMA (grouped-query attention) saved as transformers folders."""
    out = {}
    for kind in ("bert", "llama"):
        folder = tmp_path_factory.mktemp(f"base-{kind}")
        lm = build_tiny(kind, vocab_file)
        lm.model.save_pretrained(folder)
        lm.tokenizer.save_pretrained(folder)
        out[kind] = folder
    return out


def trained(kind, base_folders, method, params, tmp_path, steps=2, schedule=False):
    """(method, backbone, collator, batch, adapter folder): two training steps, then saved. ``schedule``: the
    steps also drive the method's Trainer callbacks (AdaLoRA's pruning)."""
    from conftest import toy_sentiment

    lm = load_backbone(str(base_folders[kind]))
    ds = toy_sentiment(16)
    prompt = prompt_for(lm)
    spec = build_task_spec(ds, lm.geometry, lm.tokenizer, prompt)
    collator = Collator(lm.tokenizer, lm.geometry, ds.num_classes, prompt)
    torch.manual_seed(0)
    model = build_method(method_config(method, params), lm, spec)
    data = batches(ds, collator, 8)
    if schedule:
        train_with_schedule(model, data, steps=steps, lr=5e-2, output_dir=tmp_path / "trainer")
    else:
        train_steps(model, data, steps=steps, lr=5e-2)
    model.eval()
    extra = {"label_names": ds.label_names, "prompt": {"template": prompt.template, "verbalizers": prompt.verbalizers}}
    save_method(model, tmp_path / "adapter", backbone=lm, extra=extra)
    return model, lm, collator, data[0], tmp_path / "adapter"


def peft_class_scores(peft_model, model, batch) -> torch.Tensor:
    """prefalign's class scores computed from the PEFT model's outputs: an encoder's mean-pooled last
    hidden state through the saved head, a decoder's label-word log-probabilities after the last token."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n_soft = (
        peft_model.peft_config["default"].num_virtual_tokens
        if peft_model.peft_config["default"].peft_type.value in {"PROMPT_TUNING"}
        else 0
    )
    with torch.no_grad():
        out = peft_model(input_ids=ids, attention_mask=mask)
    if not model.geo.is_decoder:
        hidden = out.last_hidden_state[:, n_soft:]
        m = mask.unsqueeze(-1).float()
        pooled = (hidden * m).sum(1) / m.sum(1)
        return model.classifier.head(pooled)
    logits = out.logits[:, n_soft:]
    last = mask.sum(-1) - 1
    logprobs = torch.log_softmax(logits[torch.arange(len(ids)), last].float(), -1)
    return logprobs[:, model.classifier.verbalizer_ids]


@pytest.mark.parametrize("kind", ["bert", "llama"])
@pytest.mark.parametrize("method", list(PEFT_METHODS))
def test_peft_loads_the_adapter_onto_the_base_folder_and_computes_what_prefalign_computes(
    kind, method, base_folders, tmp_path
):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModel, AutoModelForCausalLM

    model, lm, collator, batch, folder = trained(kind, base_folders, method, PEFT_METHODS[method], tmp_path)
    assert {PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE, "prefalign_config.json", "README.md"} <= {
        p.name for p in folder.iterdir()
    }
    config = PeftConfig.from_pretrained(str(folder))
    assert config.base_model_name_or_path == str(base_folders[kind].resolve())
    auto = AutoModelForCausalLM if kind == "llama" else AutoModel
    base = auto.from_pretrained(str(base_folders[kind]))
    with torch.no_grad():
        plain = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    peft_model = PeftModel.from_pretrained(base, str(folder)).eval()
    with torch.no_grad():
        ours = model(**{k: v for k, v in batch.items() if k not in {"labels", "target_dist"}}).logits
    theirs = peft_class_scores(peft_model, model, batch)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)
    # Not trivially equal: the trained adapter moves the backbone's output away from the plain model's.
    plain_scores = peft_class_scores(_Plain(plain), model, batch)
    assert not torch.allclose(plain_scores, ours, atol=1e-4)
    # prefalign's own loader reads the same folder and gives the same scores.
    loaded, _ = load_method(folder)
    with torch.no_grad():
        again = loaded.eval()(**{k: v for k, v in batch.items() if k not in {"labels", "target_dist"}}).logits
    torch.testing.assert_close(again, ours)


class _Plain:
    """The plain base model's output, answering like a PEFT model with no virtual tokens."""

    def __init__(self, out):
        self.out = out
        self.peft_config = {"default": type("C", (), {"num_virtual_tokens": 0, "peft_type": _NoType})()}

    def __call__(self, **_):
        return self.out


class _NoType:
    value = "NONE"


def test_dcpc_with_its_pcm_writes_no_peft_files_and_the_card_says_why(base_folders, tmp_path):
    _, _, _, _, folder = trained("bert", base_folders, "dcpc", {"prefix_length": 2}, tmp_path, steps=1)
    assert not (folder / PEFT_CONFIG_FILE).exists() and not (folder / PEFT_WEIGHTS_FILE).exists()
    card = (folder / "README.md").read_text()
    assert "library_name: prefalign" in card
    assert "No PEFT files: dcpc has a Preference Correction Module: its prefix depends on each input" in card


def test_the_base_model_is_recorded_by_a_loadable_path_with_its_digest_and_the_alias_is_kept(base_folders, vocab_file):
    folder = base_folders["bert"]
    lm = load_backbone(str(folder))
    files = sorted(folder.glob("*.safetensors"))
    outer = hashlib.sha256()
    for f in files:
        outer.update(f"{f.name}\0{hashlib.sha256(f.read_bytes()).hexdigest()}\n".encode())
    record = base_model_record(lm)
    assert record == {
        "base_model_path": str(folder.resolve()),
        "base_model_alias": None,
        "base_model_revision": None,
        "base_model_digest": "sha256:" + outer.hexdigest(),
    }
    # An alias (here a built-in name over the same folder) is resolved to the folder it loaded from.
    aliased = LoadedModel(model=lm.model, tokenizer=lm.tokenizer, geometry=lm.geometry, name="minilm", path=str(folder))
    assert base_model_record(aliased)["base_model_path"] == str(folder.resolve())
    assert base_model_record(aliased)["base_model_alias"] == "minilm"
    # A model built in memory has no files to digest.
    assert base_model_record(build_tiny("bert", vocab_file))["base_model_digest"] is None


def test_the_model_card_holds_metrics_data_method_and_command(base_folders, tmp_path):
    lm = load_backbone(str(base_folders["bert"]))
    from conftest import toy_sentiment

    ds = toy_sentiment(8)
    spec = build_task_spec(ds, lm.geometry, lm.tokenizer, prompt_for(lm))
    model = build_method(method_config("lora", {"r": 2}), lm, spec)
    card_info = {
        "metrics": {"validation_accuracy": 0.8125, "train_steps": 2},
        "config": {"data": {"train": "reviews.csv", "path": None}, "method": {"name": "lora"}},
        "command": "prefalign train -c lora.yaml",
    }
    save_method(model, tmp_path / "a", backbone=lm, extra={"label_names": ds.label_names, "card": card_info})
    card = (tmp_path / "a" / "README.md").read_text()
    assert "library_name: peft" in card
    assert "| validation_accuracy | 0.8125 |" in card and "| train_steps | 2 |" in card
    assert "- train: `reviews.csv`" in card and "- labels: `negative`, `positive`" in card
    assert "prefalign train -c lora.yaml" in card
    assert f"- loadable id or path: `{base_folders['bert'].resolve()}`" in card
    digest = "sha256:" + hashlib.sha256((tmp_path / "a" / PEFT_WEIGHTS_FILE).read_bytes()).hexdigest()
    assert f"- `{PEFT_WEIGHTS_FILE}`: `{digest}`" in card
    meta = json.loads((tmp_path / "a" / "prefalign_config.json").read_text())
    assert meta["card"]["command"] == "prefalign train -c lora.yaml"


@pytest.mark.parametrize(
    ("kind", "method"),
    [(k, m) for k in ("bert", "llama") for m in ("lora", "ia3", "full-ft")] + [("bert", "bitfit")],  # BERT's own biases
)
def test_merge_writes_a_plain_transformers_folder_that_computes_what_the_adapter_computes(
    kind, method, base_folders, tmp_path
):
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForCausalLM

    model, lm, collator, batch, folder = trained(kind, base_folders, method, PEFT_METHODS.get(method, {}), tmp_path)
    merged = merge_adapter(folder, tmp_path / "merged")
    names = {p.name for p in merged.iterdir()}
    assert "model.safetensors" in names and "config.json" in names and "README.md" in names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    auto = AutoModelForCausalLM if kind == "llama" else AutoModel
    plain = auto.from_pretrained(str(merged)).eval()
    assert not any("lora_" in k or "ia3_" in k for k in plain.state_dict())
    assert plain.config.id2label == {0: "negative", 1: "positive"}
    with torch.no_grad():
        out = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        ours = model(**{k: v for k, v in batch.items() if k not in {"labels", "target_dist"}}).logits
    if kind == "bert":
        assert (HEAD_FILE in names) and set(load_file(str(merged / HEAD_FILE))) == {"head.1.weight", "head.1.bias"}
    theirs = peft_class_scores(_Plain(out), model, batch)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "method", "params", "reason"),
    [
        ("bert", "ptuning-v2", {"prefix_length": 2}, "ptuning-v2 adds prefix keys and values to every attention layer"),
        ("bert", "prompt-tuning", {"num_virtual_tokens": 2}, "prompt-tuning adds soft prompt tokens before the input"),
        ("bert", "houlsby", {}, "houlsby changes layer outputs through forward hooks"),
        ("llama", "bitfit", {}, "bitfit changes layer outputs through forward hooks"),  # biases LLaMA lacks
    ],
)
def test_methods_that_cannot_merge_are_refused_with_a_one_line_reason(
    kind, method, params, reason, base_folders, tmp_path
):
    *_, folder = trained(kind, base_folders, method, params, tmp_path, steps=1)
    with pytest.raises(CheckpointError) as err:
        merge_adapter(folder, tmp_path / "merged")
    assert f"cannot merge {folder}: {reason}" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "merged").exists()


def test_push_to_hub_uploads_exactly_the_adapter_files_in_one_commit(base_folders, tmp_path, monkeypatch):
    import huggingface_hub

    *_, folder = trained("bert", base_folders, "lora", PEFT_METHODS["lora"], tmp_path, steps=1)
    (folder / ".hidden").write_text("not uploaded")
    hub = tmp_path / "hub"
    calls = []

    def create_repo(self, repo_id, private=False, exist_ok=False, **_):
        calls.append(("create_repo", repo_id, private, exist_ok))
        (hub / repo_id).mkdir(parents=True, exist_ok=True)

    def create_commit(self, repo_id, operations, commit_message, **_):
        calls.append(("create_commit", repo_id, commit_message))
        for op in operations:
            (hub / repo_id / op.path_in_repo).write_bytes(Path(op.path_or_fileobj).read_bytes())
        return type("Info", (), {"commit_url": f"https://hub.test/{repo_id}/commit/1"})()

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
    url = push_to_hub(folder, "me/tiny-lora", private=True)
    assert url == "https://hub.test/me/tiny-lora/commit/1"
    assert calls == [
        ("create_repo", "me/tiny-lora", True, True),
        ("create_commit", "me/tiny-lora", "Upload adapter with prefalign"),
    ]
    uploaded = sorted(p.name for p in (hub / "me/tiny-lora").iterdir())
    assert uploaded == [
        "README.md",
        PEFT_CONFIG_FILE,
        PEFT_WEIGHTS_FILE,
        "prefalign_config.json",
        "prefalign_weights.safetensors",
    ]
    for name in uploaded:
        assert (hub / "me/tiny-lora" / name).read_bytes() == (folder / name).read_bytes()


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_a_pruned_adalora_exports_its_kept_ranks_and_peft_computes_what_prefalign_computes(
    kind, base_folders, tmp_path
):
    """Once AdaLoRA's budget schedule has pruned (its rank pattern is set), PEFT cuts each tensor to the kept
    ranks when it writes, and resizes the modules by the pattern when it loads."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForCausalLM

    params = {"init_r": 4, "target_r": 2, "tinit_ratio": 0.0, "tfinal_ratio": 0.2}
    model, _, _, batch, folder = trained(kind, base_folders, "adalora", params, tmp_path, steps=10, schedule=True)
    pattern = model.tuner.peft_config["default"].rank_pattern
    assert pattern and any(not all(kept) for kept in pattern.values())  # some ranks were pruned
    assert all(k.endswith(".lora_E.default") for k in pattern)  # writing left the live config's keys alone
    saved = load_file(str(folder / PEFT_WEIGHTS_FILE))
    kept = {name.split(".lora_E")[0]: sum(k) for name, k in pattern.items()}
    for module, rank in kept.items():
        assert saved[f"base_model.model.{module}.lora_E"].shape[0] == rank
    auto = AutoModelForCausalLM if kind == "llama" else AutoModel
    peft_model = PeftModel.from_pretrained(auto.from_pretrained(str(base_folders[kind])), str(folder)).eval()
    with torch.no_grad():
        ours = model(**{k: v for k, v in batch.items() if k not in {"labels", "target_dist"}}).logits
    torch.testing.assert_close(peft_class_scores(peft_model, model, batch), ours, rtol=1e-4, atol=1e-5)


def test_a_module_adalora_pruned_to_rank_zero_exports_without_peft_s_sharding_warning(base_folders, tmp_path):
    """PEFT warns that an empty lora_A / lora_B tensor is an ungathered DeepSpeed/FSDP shard; a module AdaLoRA
    pruned to rank 0 has exactly such tensors, so that warning would mislead; any other empty tensor still warns."""
    params = {"init_r": 4, "target_r": 2, "tinit_ratio": 0.0, "tfinal_ratio": 0.2}
    model, *_ = trained("llama", base_folders, "adalora", params, tmp_path, steps=10, schedule=True)
    pattern = model.tuner.peft_config["default"].rank_pattern
    assert any(not any(kept) for kept in pattern.values())  # the budget pruned a module to rank 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, state = peft_export(model, str(base_folders["llama"]))
    assert any(0 in v.shape for v in state.values())  # its empty tensors are in the file
    assert not [w for w in caught if "invalid shape" in str(w.message)]
    empty, full = torch.zeros(0, 4), torch.zeros(2, 4)
    pruned = {"model.layers.1.self_attn.q_proj"}
    assert empty_tensors_are_pruned({"base_model.model.model.layers.1.self_attn.q_proj.lora_A": empty}, pruned)
    assert not empty_tensors_are_pruned({"base_model.model.model.layers.11.self_attn.q_proj.lora_A": empty}, pruned)
    assert empty_tensors_are_pruned({"base_model.model.model.layers.11.self_attn.q_proj.lora_A": full}, pruned)
