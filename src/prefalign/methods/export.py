"""Adapters the rest of the Hugging Face world can use.

* PEFT's own files (``adapter_config.json`` + ``adapter_model.safetensors``) beside prefalign's, for
  every method PEFT has: LoRA, AdaLoRA, (IA)^3, prompt tuning, and P-Tuning v2's static prefix as PEFT
  prefix tuning (not DCPC with its PCM: that prefix depends on the input);
* the base model's identity: a loadable id or path (an alias is resolved to the folder it loaded
  from, and kept too), the revision when the hub gave one, and a digest of its weight files;
* a model card (``README.md``): method, base model, data, metrics, config and the command;
* which methods can be merged into the base weights (merge.py does it);
* uploading an adapter folder to the Hub.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shlex
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import CheckpointError, UserError
from ..models.loading import ALIASES, LoadedModel
from .base import Method
from .checkpoint import CONFIG_FILE, WEIGHTS_FILE
from .dcpc import DCPCModel

PEFT_CONFIG_FILE = "adapter_config.json"
PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
CARD_FILE = "README.md"
PEFT_TUNED = ("lora", "adalora", "ia3")  # injected into the backbone by PEFT's tuners


# -- the base model's identity -------------------------------------------------------------------------
def base_model_record(backbone: LoadedModel) -> dict:
    """Where the base model can be loaded from, and what exactly it was.

    ``base_model_path`` is loadable by transformers anywhere on this machine (an alias resolved to its
    folder, a folder made absolute) or a hub id; ``base_model_alias`` keeps the alias;
    ``base_model_revision`` is the hub commit when the model came from the hub; ``base_model_digest`` is
    a SHA-256 over the model's safetensors files (None when they are not on disk, e.g. a model built in
    memory).
    """
    alias = backbone.name if backbone.name in ALIASES else None
    loadable = backbone.path if alias else backbone.name
    if Path(loadable).expanduser().exists():
        loadable = str(Path(loadable).expanduser().resolve())
    revision = getattr(getattr(backbone.model, "config", None), "_commit_hash", None)
    return {
        "base_model_path": loadable,
        "base_model_alias": alias,
        "base_model_revision": revision,
        "base_model_digest": weights_digest(loadable, revision),
    }


_DIGESTS: dict[tuple, str] = {}


def weights_digest(path_or_id: str, revision: str | None = None) -> str | None:
    """``sha256:<hex>`` over the names and contents of a model's ``*.safetensors`` files, in name order;
    for a hub id, the files of its cached snapshot; None when no such files are on disk."""
    folder = Path(path_or_id).expanduser()
    if not folder.is_dir():
        folder = _cached_snapshot(path_or_id, revision)
        if folder is None:
            return None
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _DIGESTS:
        outer = hashlib.sha256()
        for f in files:
            inner = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    inner.update(chunk)
            outer.update(f"{f.name}\0{inner.hexdigest()}\n".encode())
        _DIGESTS[key] = "sha256:" + outer.hexdigest()
    return _DIGESTS[key]


def _cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The local snapshot folder of a hub model, if the hub cache holds one (never downloads)."""
    if repo_id.startswith((".", "/", "~")) or repo_id.count("/") > 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not cached, or not a hub id at all
        return None


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def invocation() -> str:
    """The command line that is running, as a user would type it (`prefalign ...` for the CLI)."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if prog in {"prefalign", "__main__.py"}:
        return shlex.join(["prefalign", *sys.argv[1:]])
    return shlex.join(["python", *sys.argv])


# -- PEFT's format -------------------------------------------------------------------------------------
class _AsPeftModel(torch.nn.Module):
    """A PEFT tuner under PeftModel's attribute name ``base_model``, so its state dict has PeftModel's keys."""

    def __init__(self, tuner: torch.nn.Module, config) -> None:
        super().__init__()
        self.base_model = tuner
        self.peft_config = {"default": config}

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # PeftModel forwards the tuner's methods (AdaLoRA's resize_state_dict_by_rank_pattern)
            return getattr(self.base_model, name)


def peft_export(model: Method, base_path: str, revision: str | None = None):
    """``(PEFT config, PEFT state dict)`` for ``model``, or a one-line reason PEFT cannot represent it.

    The state dict uses PEFT's key layout (``base_model.model.<module>.lora_A.weight``, or
    ``prompt_embeddings``), so ``PeftModel.from_pretrained(AutoModel[ForCausalLM].from_pretrained(base),
    folder)`` rebuilds the adapted backbone. An encoder's task head is not part of it: PEFT's model is the
    backbone; the head stays in prefalign's weights file.
    """
    from peft import PrefixTuningConfig
    from peft import PromptTuningConfig as PeftPromptTuningConfig
    from peft.utils import get_peft_model_state_dict

    geo = model.geo
    task_type = "CAUSAL_LM" if geo.is_decoder else "FEATURE_EXTRACTION"
    if model.name == "adalora":
        # AdaLoRA's tuner holds the config; once pruning has set its rank pattern, PEFT cuts each tensor to its
        # kept ranks by PeftModel's key names ('base_model.model.<module>'), so the tuner is read as a PeftModel
        # would hold it. PEFT rewrites the pattern's keys while it reads them: a copy of the config takes that.
        config = copy.deepcopy(model.tuner.peft_config["default"])
        pruned = {k.split(".lora_E")[0] for k, kept in (config.rank_pattern or {}).items() if not any(kept)}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state = get_peft_model_state_dict(_AsPeftModel(model.tuner, config), adapter_name="default")
        for w in caught:  # PEFT reads a module pruned to rank 0 as an ungathered DeepSpeed/FSDP shard
            if not (_INVALID_SHAPE in str(w.message) and empty_tensors_are_pruned(state, pruned)):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    elif model.name in PEFT_TUNED:  # the others record their config on the model and sit under 'base_model.model.'
        holder = model.classifier.model
        config = copy.deepcopy(holder.peft_config["default"])
        state = get_peft_model_state_dict(holder, adapter_name="default")
        state = {"base_model.model." + k: v for k, v in state.items()}
    elif model.name == "prompt-tuning":
        weight = model.prompt.embedding.weight
        config = PeftPromptTuningConfig(
            task_type=task_type,
            num_virtual_tokens=weight.shape[0],
            token_dim=geo.hidden_size,
            num_transformer_submodules=1,
            num_layers=geo.num_layers,
            num_attention_heads=geo.num_attention_heads,
        )
        state = {"prompt_embeddings": weight}
    elif isinstance(model, DCPCModel):
        if model.pcm is not None:
            return (
                f"{model.name} has a Preference Correction Module: its prefix depends on each input, which PEFT's "
                "prefix tuning (one fixed prefix) cannot represent; an ablation without it (use_pcm=false) exports"
            )
        if not model.config.position_offset:
            return (
                "method.position_offset=false starts real tokens' positions at 0, PEFT's prefix tuning continues "
                "them after the prefix; this adapter loads only with prefalign"
            )
        kv = model.prefix().detach()  # (L, 2, m, kv_dim)
        layers, _, m, kv_dim = kv.shape
        config = PrefixTuningConfig(
            task_type=task_type,
            num_virtual_tokens=m,
            num_layers=layers,
            token_dim=kv_dim,
            num_attention_heads=geo.num_key_value_heads,
            encoder_hidden_size=kv_dim,
            prefix_projection=False,
        )
        # PEFT reads row j as (layer 0 key, layer 0 value, layer 1 key, ...), each kv_heads x head_dim wide.
        state = {"prompt_embeddings": kv.permute(2, 0, 1, 3).reshape(m, layers * 2 * kv_dim)}
    else:
        return f"PEFT has no {model.name} method; this adapter loads with prefalign (prefalign.Adapter)"
    config.base_model_name_or_path = base_path
    config.revision = revision
    config.inference_mode = True
    if model.name in PEFT_TUNED:
        config.task_type = task_type
    return config, {k: v.detach().contiguous().cpu() for k, v in state.items()}


_INVALID_SHAPE = "LoRA tensor(s) have invalid shape"  # PEFT's warning about empty lora_A / lora_B tensors


def empty_tensors_are_pruned(state: dict, pruned: set[str]) -> bool:
    """Every empty lora_A / lora_B tensor of ``state`` belongs to a module AdaLoRA pruned to rank 0."""
    empty = [k for k, v in state.items() if (".lora_A" in k or ".lora_B" in k) and 0 in v.shape]
    return all(any(f".{module}.lora_" in k for module in pruned) for k in empty)


def write_peft_files(folder: Path, exported) -> None:
    config, state = exported
    config.save_pretrained(str(folder))
    save_file(state, str(folder / PEFT_WEIGHTS_FILE), metadata={"format": "pt"})


# -- the model card --------------------------------------------------------------------------------------
def model_card(meta: dict, folder: Path, peft_note: str | None) -> str:
    """README.md for an adapter folder: method, base model, data, metrics, config and the command."""
    card = meta.get("card") or {}
    base = meta.get("base_model_path") or meta["base_model"]
    hub_id = base if not base.startswith((".", "/", "~")) and base.count("/") == 1 else None
    labels = meta.get("label_names") or []
    front = ["---", f"library_name: {'peft' if peft_note is None else 'prefalign'}"]
    if hub_id:
        front.append(f"base_model: {hub_id}")
    front += ["tags:", "- prefalign", f"- {meta['method']}", "---", ""]
    lines = [f"# {meta['method']} adapter for {meta.get('base_model_alias') or base}", ""]
    lines += [
        f"Trained with [prefalign](https://pypi.org/project/prefalign/) (method `{meta['method']}`).",
        "",
        "## Base model",
        "",
        f"- loadable id or path: `{base}`",
    ]
    if meta.get("base_model_alias"):
        lines.append(f"- prefalign alias: `{meta['base_model_alias']}`")
    lines.append(f"- revision: `{meta.get('base_model_revision') or 'not recorded (not loaded from the hub)'}`")
    lines.append(
        f"- weights digest: `{meta.get('base_model_digest') or 'not recorded (no safetensors files on disk)'}`"
    )
    lines += ["", "## Files", ""]
    for name in sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != CARD_FILE):
        lines.append(f"- `{name}`: `{file_digest(folder / name)}`")
    data = (card.get("config") or {}).get("data") or {}
    lines += ["", "## Data", ""]
    shown = {k: v for k, v in data.items() if k in {"task", "path", "train", "validation", "test", "shift", "target"}}
    shown = {k: v for k, v in shown.items() if v not in (None, [], {})}
    lines += [f"- {k}: `{json.dumps(v) if not isinstance(v, str) else v}`" for k, v in shown.items()] or [
        "- not recorded (saved outside `prefalign train`)"
    ]
    if labels:
        lines.append(f"- labels: {', '.join(f'`{n}`' for n in labels)}")
    lines += ["", "## Metrics", ""]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    else:
        lines.append("Not recorded (saved outside `prefalign train`).")
    lines += ["", "## Method and config", "", "```json", json.dumps(meta["method_config"], indent=2), "```"]
    if card.get("config"):
        lines += ["", "Full experiment config:", "", "```json", json.dumps(card["config"], indent=2), "```"]
    lines += ["", "## Command", "", "```bash", card.get("command") or "(not recorded)", "```", "", "## Use", ""]
    lines += ["```python", "import prefalign", "", 'adapter = prefalign.Adapter.from_pretrained("PATH_OR_REPO")']
    lines += ['adapter.predict(["a quietly devastating film"])', "```", ""]
    if peft_note is None:
        auto = "AutoModelForCausalLM" if meta["geometry"]["is_decoder"] else "AutoModel"
        lines += [
            "With PEFT alone (the adapted backbone; an encoder's classification head is in "
            f"`{WEIGHTS_FILE}`, keys `classifier.head.*`, applied to the mean of the last hidden states):",
            "",
            "```python",
            f"from transformers import {auto}",
            "from peft import PeftModel",
            "",
            f'base = {auto}.from_pretrained("{base}")',
            'model = PeftModel.from_pretrained(base, "PATH_OR_REPO")',
            "```",
            "",
        ]
    else:
        lines += [f"No PEFT files: {peft_note}.", ""]
    return "\n".join(front + lines)


def write_adapter_extras(folder: Path, model: Method, meta: dict) -> None:
    """PEFT's files where PEFT has the method, then the model card (which lists every file's digest)."""
    exported = peft_export(model, meta["base_model_path"], meta.get("base_model_revision"))
    note = exported if isinstance(exported, str) else None
    if note is None:
        write_peft_files(folder, exported)
    (folder / CARD_FILE).write_text(model_card(meta, folder, note), encoding="utf-8")


# -- merging ---------------------------------------------------------------------------------------------
def merge_refusal(model: Method, pristine: torch.nn.Module) -> str | None:
    """Why ``model`` cannot be folded into its base weights (one line), or None when it can.

    ``pristine`` is the base model as loaded, before the method touched it.
    """
    name = model.name
    if model.feeds_prefix:
        return f"{name} adds prefix keys and values to every attention layer, which no base weight can hold"
    if model.soft_prompt(1) is not None:
        return f"{name} adds soft prompt tokens before the input, which no base weight can hold"
    outside = sorted(
        k for k in model.trainable_state_dict() if not k.startswith(("classifier.model.", "classifier.head."))
    )
    if outside:
        return f"{name} keeps trained state outside the base model ({outside[0]}, ...), which no base weight can hold"
    inner = model.classifier.model
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in inner.modules())
    base_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pristine.modules())
    if hooks > base_hooks:
        return f"{name} changes layer outputs through forward hooks, which a plain transformers model cannot hold"
    return None


def fold_tuner_layers(inner: torch.nn.Module) -> int:
    """Merge every PEFT tuner layer of ``inner`` into its base layer and put the base layer in its place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    found = [(n, m) for n, m in inner.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in found:
        module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        parent = inner.get_submodule(parent_name) if parent_name else inner
        setattr(parent, child, module.get_base_layer())
    return len(found)


# -- the Hub ---------------------------------------------------------------------------------------------
def upload_files(folder: Path) -> list[str]:
    """The files of an adapter or merged folder that belong on the Hub, in name order (no hidden files,
    no sub-folders)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str | None = None,
) -> str:
    """Upload an adapter (or merged) folder to the Hub repository ``repo_id`` (created if missing) in one
    commit; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    if not (folder / CONFIG_FILE).exists() and not (folder / "config.json").exists():
        raise CheckpointError(f"{folder} is neither an adapter folder nor a merged model folder; nothing to upload")
    names = upload_files(folder)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id,
            operations=[CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(folder / n)) for n in names],
            commit_message=commit_message or f"Upload {folder.name} with prefalign",
        )
    except (OSError, ValueError) as exc:  # huggingface_hub's HTTP and validation errors derive from these
        raise UserError(f"cannot upload to {repo_id}: {str(exc).splitlines()[0][:200]}") from None
    return str(getattr(info, "commit_url", info))
