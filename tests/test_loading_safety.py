"""Loading an adapter: safetensors only, never a pickle; refused on another base model (by name and by
shapes); no code from a checkpoint folder runs; trust_remote_code stays off unless a user turns it on."""

from __future__ import annotations

import dataclasses
import inspect
import json
import pickle

import pytest

from conftest import build_tiny, toy_sentiment
from prefalign.data import PromptFormat, build_task_spec
from prefalign.errors import CheckpointError, UserError
from prefalign.inference import load_for_inference
from prefalign.methods import registry
from prefalign.models.loading import load_backbone
from prefalign.training.config import ModelConfig, load_config


class _Evil:
    """Unpickling this creates ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_pickle(path) -> bytes:
    return pickle.dumps(_Evil(path))


def save_adapter(backbone, folder, method="ptuning-v2"):
    spec = build_task_spec(toy_sentiment(8), backbone.geometry, backbone.tokenizer, PromptFormat())
    model = registry.build_method(registry.method_config(method, {"prefix_length": 4}), backbone, spec)
    registry.save_method(model, folder, backbone=backbone, extra={"label_names": ["negative", "positive"]})
    return folder


def test_refuses_another_base_model_of_the_same_shapes(vocab_file, tmp_path):
    trained_on = build_tiny("bert", vocab_file, seed=0)
    other = dataclasses.replace(build_tiny("bert", vocab_file, seed=1), name="another-bert")
    ckpt = save_adapter(trained_on, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="trained on base model 'tiny-bert', not 'another-bert'"):
        registry.load_method(ckpt, backbone=other)
    # The same weights under another name (an alias and its folder) load.
    renamed = dataclasses.replace(trained_on, name="/models/tiny-bert")
    model, meta = registry.load_method(ckpt, backbone=renamed)
    assert meta["base_model"] == "tiny-bert"


def test_refuses_another_name_when_the_checkpoint_has_no_fingerprint(vocab_file, tmp_path):
    backbone = build_tiny("bert", vocab_file)
    ckpt = save_adapter(backbone, tmp_path / "ckpt")
    meta = json.loads((ckpt / "prefalign_config.json").read_text())
    del meta["base_fingerprint"]  # as written before fingerprints existed
    (ckpt / "prefalign_config.json").write_text(json.dumps(meta))
    registry.load_method(ckpt, backbone=backbone)  # same name: fine
    with pytest.raises(CheckpointError, match="trained on base model"):
        registry.load_method(ckpt, backbone=dataclasses.replace(backbone, name="x"))


def test_refuses_another_base_model_by_shapes(vocab_file, tmp_path):
    ckpt = save_adapter(build_tiny("bert", vocab_file), tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="was trained on"):
        registry.load_method(ckpt, backbone=build_tiny("bert", vocab_file, num_hidden_layers=3))


def test_pickles_in_an_adapter_folder_are_never_unpickled(vocab_file, tmp_path):
    backbone = build_tiny("bert", vocab_file)
    ckpt = save_adapter(backbone, tmp_path / "ckpt")
    marker = tmp_path / "code-ran"
    for name in ("pytorch_model.bin", "adapter_model.bin", "optimizer.pt", "training_args.bin", "model.pkl"):
        (ckpt / name).write_bytes(evil_pickle(marker))
    registry.load_method(ckpt, backbone=backbone)
    (ckpt / "prefalign_weights.safetensors").unlink()  # only pickles left: refused, still not unpickled
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        registry.load_method(ckpt, backbone=backbone)
    assert not marker.exists()


def test_no_code_from_a_checkpoint_folder_runs(vocab_file, tmp_path):
    """An adapter naming a base-model folder that ships remote code (auto_map + a .py that leaves a
    marker when imported): loading it either refuses or loads the built-in class; the .py never runs."""
    base = tmp_path / "base"
    tiny = build_tiny("bert", vocab_file)
    tiny.model.save_pretrained(base, safe_serialization=True)
    tiny.tokenizer.save_pretrained(base)
    marker = tmp_path / "code-ran"
    (base / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom transformers import BertModel as "
        "EvilModel, BertConfig as EvilConfig\n"
    )
    config = json.loads((base / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (base / "config.json").write_text(json.dumps(config))
    ckpt = save_adapter(tiny, tmp_path / "adapter")
    meta = json.loads((ckpt / "prefalign_config.json").read_text())
    meta["base_model"] = str(base)
    (ckpt / "prefalign_config.json").write_text(json.dumps(meta))
    try:
        load_for_inference(str(ckpt))
    except UserError:
        pass
    assert not marker.exists()


def test_trust_remote_code_is_off_unless_turned_on():
    assert ModelConfig().trust_remote_code is False
    assert load_config(None, []).model.trust_remote_code is False
    assert inspect.signature(load_backbone).parameters["trust_remote_code"].default is False
    assert load_config(None, ["model.trust_remote_code=true"]).model.trust_remote_code is True
