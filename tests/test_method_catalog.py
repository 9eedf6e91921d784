"""The catalog of method names -> configs (methods/catalog.py): it agrees with the method classes, and a config
is parsed and validated (errors included) without importing torch, transformers or peft."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefalign.methods import catalog, registry

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.mark.parametrize("name", list(catalog.SPECS))
def test_every_catalog_entry_agrees_with_its_method_class(name):
    spec, cls = catalog.SPECS[name], registry.METHODS[name]
    assert cls.name == name
    assert spec.config_class is cls.config_class
    assert spec.config_defaults == cls.config_defaults
    assert (spec.feeds_prefix, spec.changes_backbone) == (cls.feeds_prefix, cls.changes_backbone)
    assert spec.make_config({"name": name}) == cls.make_config()


def test_the_catalog_lists_every_registered_method_in_order():
    assert list(registry.METHODS) == list(catalog.SPECS)
    assert registry.method_class("ptuning-v2").__name__ == "PTuningV2"


PROBE = """
import json, sys
from prefalign.errors import ConfigError
from prefalign.training.config import load_config
out = {}
for label, overrides in json.loads(sys.argv[1]).items():
    try:
        cfg = load_config(None, overrides)
        out[label] = "ok " + cfg.method.name
    except ConfigError as exc:
        out[label] = str(exc)
out["heavy"] = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
print(json.dumps(out))
"""

CASES = {
    "unknown key": ["training.lerning_rate=1"],
    "wrong type": ["training.batch_size=many"],
    "unknown method": ["method.name=dcpcx"],
    "unknown option": ["method.name=ptuning-v2", "method.pcm_mod=gate"],
    "option type": ["method.name=dcpc", "method.prefix_length=abc"],
    "option range": ["method.name=lora", "method.head_dropout=2"],
    "managed trainer arg": ["training.trainer_args={learning_rate: 1}"],
    "valid": ["method.name=ltuning-prefix", "method.head_dropout=0.2"],
}


def test_validating_a_config_in_a_fresh_process_imports_no_model_library():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(CASES)], capture_output=True, text=True, env=env, check=True
    )
    out = json.loads(done.stdout)
    assert out.pop("heavy") == []
    assert out == {
        "unknown key": "unknown config key 'training.lerning_rate' (did you mean 'learning_rate'?)",
        "wrong type": out["wrong type"],
        "unknown method": out["unknown method"],
        "unknown option": "unknown config key 'method.pcm_mod' (did you mean 'pcm_mode'?)",
        "option type": "method.prefix_length: expected an integer, got 'abc'",
        "option range": out["option range"],
        "managed trainer arg": "training.trainer_args.learning_rate is set by training.learning_rate; set that instead",
        "valid": "ok ltuning-prefix",
    }
    assert out["wrong type"].startswith("training.batch_size: expected an integer")
    assert out["unknown method"].startswith("unknown method 'dcpcx'; choose one of dcpc, dcpc-no-clpa")
    assert out["option range"].startswith("method.head_dropout")
