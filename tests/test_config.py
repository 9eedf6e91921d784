"""Experiment and DCPC configs: round trips, YAML + --set, and every kind of bad value."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from prefalign.errors import ConfigError, UserError
from prefalign.methods import registry
from prefalign.methods.dcpc import VARIANTS, DCPCConfig
from prefalign.training.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TrainingConfig,
    dump_config,
    load_config,
    parse_overrides,
)

CONFIG_CLASSES = [ModelConfig, DataConfig, TrainingConfig, DCPCConfig]


def custom_experiment() -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "model": {"name": "some/folder", "dtype": "bfloat16"},
            "data": {
                "train": "train.csv",
                "label_names": ["neg", "pos"],
                "template": "Review: {text}\nSentiment:",
                "verbalizers": [" bad", " good"],
                "max_length": 64,
                "max_train_examples": 100,
            },
            "method": {"name": "dcpc-no-pcm", "tau_cos": 0.7, "prefix_length": 8, "pcm_mode": "gate"},
            "training": {"learning_rate": 3e-4, "batch_size": 8, "bf16": True, "device": "cpu", "max_steps": 50},
        }
    )


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------
def test_experiment_defaults_round_trip():
    cfg = ExperimentConfig()
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.method_name == "dcpc" and cfg.method == registry.method_config("dcpc")


def test_experiment_custom_round_trip_dict_json_yaml(tmp_path):
    cfg = custom_experiment()
    d = cfg.to_dict()
    assert isinstance(d["model"], dict) and isinstance(d["training"], dict)
    assert ExperimentConfig.from_dict(d) == cfg
    assert ExperimentConfig.from_dict(json.loads(cfg.to_json())) == cfg
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    again = load_config(str(path))
    assert again == cfg
    assert again.method_name == "dcpc-no-pcm"
    assert again.method == registry.method_config(
        "dcpc-no-pcm", {"tau_cos": 0.7, "prefix_length": 8, "pcm_mode": "gate"}
    )
    assert again.data.template == "Review: {text}\nSentiment:"


def test_dcpc_config_round_trip():
    cfg = DCPCConfig(
        prefix_length=4,
        reparameterize=True,
        tau_cos=0.5,
        pcm_mode="gate",
        pcm_kl="softmax",
        lambda_kl=0.25,
        similarity_layer=0,
        prefix_init="random",
    )
    assert DCPCConfig.from_dict(cfg.to_dict()) == cfg
    assert DCPCConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert DCPCConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    assert DCPCConfig.from_dict(cfg.to_dict()) != DCPCConfig()


def test_paper_defaults():
    """Section 4.1 of the DCPC paper."""
    m, t = DCPCConfig(), TrainingConfig()
    assert m.prefix_length == 16 and m.tau_cos == 0.3 and m.tau_ambiguity == 0.3
    assert m.use_ambiguity and m.use_alignment and m.use_pcm
    assert t.learning_rate == 1e-4 and t.batch_size == 16 and t.epochs == 10
    assert t.warmup_ratio == 0.06 and t.eval_steps == 200 and t.early_stopping_patience == 10


# --------------------------------------------------------------------------------------------
# YAML + --set
# --------------------------------------------------------------------------------------------
YAML_TEXT = """\
model:
  name: ./my-model
data:
  train: train.csv
  label_names: [neg, pos]
method:
  name: dcpc-no-pcm
  tau_cos: 0.7
training:
  learning_rate: 1e-3   # PyYAML reads this as the string '1e-3'
  batch_size: 8
"""


def test_load_config_yaml_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(YAML_TEXT)
    cfg = load_config(
        str(path),
        [
            "training.batch_size=4",
            "method.lambda_align=0.5",
            "training.bf16=true",
            "data.verbalizers=[' bad', ' good']",
            "model.dtype=null",
        ],
    )
    assert cfg.model.name == "./my-model" and cfg.model.dtype is None
    assert cfg.data.label_names == ["neg", "pos"] and cfg.data.verbalizers == [" bad", " good"]
    assert cfg.training.learning_rate == 1e-3 and isinstance(cfg.training.learning_rate, float)
    assert cfg.training.batch_size == 4 and isinstance(cfg.training.batch_size, int)
    assert cfg.training.bf16 is True
    assert cfg.method == registry.method_config("dcpc-no-pcm", {"tau_cos": 0.7, "lambda_align": 0.5})
    # Untouched fields keep their defaults.
    assert cfg.training.eval_steps == 200 and cfg.data.text_column == "text"
    built = cfg.method  # resolved once, when the config was loaded
    assert (built.use_pcm, built.use_alignment, built.tau_cos, built.lambda_align) == (False, True, 0.7, 0.5)


def test_load_config_without_file_and_method_as_string(tmp_path):
    assert load_config() == ExperimentConfig()
    assert load_config(None, ["method=ptuning-v2"]).method == registry.method_config("ptuning-v2")
    path = tmp_path / "m.yaml"
    path.write_text("method: dcpc-no-clpa\n")
    assert load_config(str(path)).method == registry.method_config("dcpc-no-clpa")
    assert load_config(str(path), ["method.name=dcpc"]).method_name == "dcpc"


def test_parse_overrides_nests_and_types_values():
    assert parse_overrides(["a.b.c=3", "a.b.d=x", "e=[1, 2]", "f=", "g=true"]) == {
        "a": {"b": {"c": 3, "d": "x"}},
        "e": [1, 2],
        "f": "",
        "g": True,
    }


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["training.batch_size"], "key=value"),
        (["training..batch_size=3"], "malformed"),
        (["training=1", "training.batch_size=3"], "conflicts"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    "text, message",
    [
        ("model: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_bad_yaml_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(path))


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "absent.yaml"))


# --------------------------------------------------------------------------------------------
# Unknown keys
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, hint",
    [
        ({"trainig": {}}, "did you mean 'training'"),
        ({"training": {"learning_rat": 1e-3}}, "did you mean 'learning_rate'"),
        ({"model": {"nme": "x"}}, "did you mean 'name'"),
        ({"data": {"label_column_": "y"}}, "did you mean 'label_column'"),
        ({"method": {"name": "dcpc", "tau_coss": 0.5}}, "did you mean 'tau_cos'"),
        ({"method": {"name": "dcpc", "lambda_algn": 0.5}}, "did you mean 'lambda_align'"),
    ],
)
def test_unknown_keys_get_a_did_you_mean_hint(data, hint):
    with pytest.raises(ConfigError, match=hint) as info:
        ExperimentConfig.from_dict(data)
    assert "unknown config key" in str(info.value)


def test_unknown_key_in_override_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="training.bach_size.*did you mean 'batch_size'"):
        load_config(None, ["training.bach_size=3"])
    path = tmp_path / "exp.yaml"
    path.write_text("method:\n  name: dcpc\n  prefix_lenght: 4\n")
    with pytest.raises(ConfigError, match="method.prefix_lenght.*did you mean 'prefix_length'"):
        load_config(str(path))


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys: .*prefix_length"):
        DCPCConfig.from_dict({"zzzzzz": 1})


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, UserError)


# --------------------------------------------------------------------------------------------
# Bad types
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        {"training": {"batch_size": "sixteen"}},
        {"training": {"batch_size": 16.5}},
        {"training": {"batch_size": True}},
        {"training": {"learning_rate": "fast"}},
        {"training": {"learning_rate": float("nan")}},
        {"training": {"bf16": "maybe"}},
        {"training": {"bf16": 1}},
        {"training": []},
        {"model": "minilm"},
        {"data": {"label_names": "neg,pos"}},
        {"data": {"max_train_examples": 2.5}},
        {"data": {"text_column": ["a"]}},
        {"method": ["dcpc"]},
        {"method": {"name": "dcpc", "tau_cos": "high"}},
        {"method": {"name": "dcpc", "prefix_length": "long"}},
        {"method": {"name": "dcpc", "use_pcm": "sometimes"}},
        {"method": {"name": "dcpc", "prefix_init_text": {"a": 1}}},
    ],
)
def test_bad_types_raise_config_error(data):
    with pytest.raises(ConfigError):
        ExperimentConfig.from_dict(data)


def test_lenient_coercions_give_the_annotated_type():
    cfg = ExperimentConfig.from_dict(
        {"training": {"batch_size": "8", "learning_rate": "2e-4", "bf16": "yes", "epochs": 3}}
    )
    assert cfg.training.batch_size == 8 and isinstance(cfg.training.batch_size, int)
    assert cfg.training.learning_rate == 2e-4
    assert cfg.training.bf16 is True
    assert cfg.training.epochs == 3.0 and isinstance(cfg.training.epochs, float)
    assert DCPCConfig(prefix_length=8.0).prefix_length == 8


@pytest.mark.parametrize(
    "data",
    [
        {"model": {"name": None}},
        {"data": {"text_column": None}},
        {"training": {"output_dir": None}},
        {"method": {"name": "dcpc", "prefix_init_text": None}},
    ],
)
def test_null_for_a_required_string_is_a_config_error(data):
    with pytest.raises(ConfigError):
        ExperimentConfig.from_dict(data)


# --------------------------------------------------------------------------------------------
# Out-of-range values
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, field, value",
    [
        (DCPCConfig, "prefix_length", 0),
        (DCPCConfig, "prefix_length", 5000),
        (DCPCConfig, "tau_cos", 1.01),
        (DCPCConfig, "tau_cos", -0.1),
        (DCPCConfig, "tau_ambiguity", -0.1),
        (DCPCConfig, "lambda_ambiguity", -1.0),
        (DCPCConfig, "lambda_align", -1.0),
        (DCPCConfig, "lambda_kl", -0.01),
        (DCPCConfig, "head_dropout", -0.1),
        (DCPCConfig, "pcm_aux_rank", 0),
        (DCPCConfig, "pcm_proj_rank", 0),
        (TrainingConfig, "learning_rate", -1e-4),
        (TrainingConfig, "learning_rate", 11.0),
        (TrainingConfig, "batch_size", 0),
        (TrainingConfig, "eval_batch_size", 0),
        (TrainingConfig, "warmup_ratio", 1.5),
        (TrainingConfig, "eval_steps", 0),
        (TrainingConfig, "early_stopping_patience", 0),
        (TrainingConfig, "logging_steps", 0),
        (TrainingConfig, "save_total_limit", 0),
        (DataConfig, "max_length", 4),
        (DataConfig, "validation_fraction", 0.95),
        (DataConfig, "validation_fraction", -0.1),
    ],
)
def test_out_of_range_values_raise_config_error(cls, field, value):
    with pytest.raises(ConfigError, match=field):
        cls(**{field: value})


@pytest.mark.parametrize(
    "cls, field, value",
    [
        (DCPCConfig, "tau_cos", 1.0),
        (DCPCConfig, "tau_cos", 0.0),
        (DCPCConfig, "tau_ambiguity", 0.0),
        (DCPCConfig, "prefix_length", 1),
        (DCPCConfig, "head_dropout", 0.0),
        (TrainingConfig, "warmup_ratio", 0.0),
        (DataConfig, "validation_fraction", 0.9),
    ],
)
def test_range_bounds_are_inclusive(cls, field, value):
    assert getattr(cls(**{field: value}), field) == value


@pytest.mark.parametrize(
    "cls, field, value",
    [
        (DCPCConfig, "head_dropout", 1.5),  # a probability; nn.Dropout(1.5) raises ValueError at model build
        (DCPCConfig, "reparam_hidden_size", 0),  # an empty MLP: the reparameterised prefix can never move
        (DCPCConfig, "reparam_hidden_size", -8),  # nn.Linear(d, -8) raises RuntimeError at model build
        (TrainingConfig, "weight_decay", -0.1),  # torch.optim.AdamW raises ValueError
        (TrainingConfig, "head_learning_rate", -1e-3),  # learning_rate is checked, the head's rate is not
        (DataConfig, "max_train_examples", -5),
        (DataConfig, "max_eval_examples", -5),
        (ModelConfig, "dtype", "float33"),  # load_backbone's getattr(torch, dtype) raises a bare AttributeError
    ],
)
def test_more_out_of_range_values_raise_config_error(cls, field, value):
    with pytest.raises(ConfigError, match=field):
        cls(**{field: value})


def test_out_of_range_method_value_is_caught_at_experiment_level():
    with pytest.raises(ConfigError, match="tau_cos"):
        ExperimentConfig.from_dict({"method": {"name": "dcpc", "tau_cos": 2.0}})
    with pytest.raises(ConfigError, match="tau_cos"):
        load_config(None, ["method.tau_cos=-3"])


# --------------------------------------------------------------------------------------------
# Choices
# --------------------------------------------------------------------------------------------
def choice_fields():
    out = []
    for cls in CONFIG_CLASSES:
        for f in dataclasses.fields(cls):
            if f.metadata.get("choices"):
                out.append((cls, f.name, tuple(f.metadata["choices"])))
    return out


def test_the_expected_fields_are_choice_restricted():
    names = {(cls.__name__, name) for cls, name, _ in choice_fields()}
    assert names >= {
        ("TrainingConfig", "device"),
        ("DCPCConfig", "prefix_init"),
        ("DCPCConfig", "ambiguity_divergence"),
        ("DCPCConfig", "pair_reduction"),
        ("DCPCConfig", "align_reduction"),
        ("DCPCConfig", "pcm_mode"),
        ("DCPCConfig", "pcm_kl"),
    }


@pytest.mark.parametrize("cls, name, choices", choice_fields(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_choice_field_rejects_a_bad_value_and_accepts_each_choice(cls, name, choices):
    with pytest.raises(ConfigError, match=f"{name}.*not one of"):
        cls(**{name: "bogus"})
    with pytest.raises(ConfigError):
        cls(**{name: choices[0].upper() + "x"})
    for value in choices:
        assert getattr(cls(**{name: value}), name) == value


def test_bad_choice_in_experiment_method_section():
    with pytest.raises(ConfigError, match="pcm_mode"):
        ExperimentConfig.from_dict({"method": {"name": "dcpc", "pcm_mode": "matrix"}})
    with pytest.raises(ConfigError, match="device"):
        load_config(None, ["training.device=tpu"])


# --------------------------------------------------------------------------------------------
# Method variants (Table 3)
# --------------------------------------------------------------------------------------------
# (use_ambiguity, use_alignment, use_pcm), written from Table 3 of the paper.
TABLE_3 = {
    "dcpc": (True, True, True),
    "dcpc-no-clpa": (True, False, True),
    "dcpc-no-pcm": (True, True, False),
    "dcpc-no-ambiguity": (False, True, True),
    "dcpc-no-clpa-pcm": (True, False, False),
    "ptuning-v2": (False, False, False),
}


@pytest.mark.parametrize("name", list(TABLE_3))
def test_variant_sets_table_3_switches(name):
    cfg = registry.method_config(name)
    assert (cfg.use_ambiguity, cfg.use_alignment, cfg.use_pcm) == TABLE_3[name]
    # Everything else stays at its default.
    default = DCPCConfig(name=name).to_dict()
    changed = {k for k, v in cfg.to_dict().items() if default[k] != v}
    assert changed <= {"use_ambiguity", "use_alignment", "use_pcm"}
    via_registry = registry.method_config(name, {"tau_cos": 0.5})
    assert (via_registry.use_ambiguity, via_registry.use_alignment, via_registry.use_pcm) == TABLE_3[name]
    assert via_registry.tau_cos == 0.5


def test_variants_cover_table_3_exactly():
    names = {cls.name for cls in VARIANTS}
    assert names == set(TABLE_3) == {name for name, cls in registry.METHODS.items() if issubclass(cls, VARIANTS[0])}
    assert all(registry.METHODS[cls.name] is cls and cls.feeds_prefix for cls in VARIANTS)


def test_variant_overrides_and_validation():
    cfg = registry.method_config("dcpc-no-pcm", {"tau_cos": 0.5, "use_pcm": True})
    assert cfg.tau_cos == 0.5 and cfg.use_pcm  # explicit overrides win
    with pytest.raises(ConfigError, match="unknown method"):
        registry.method_config("dcpc-no-everything")
    with pytest.raises(ConfigError, match="tau_cos"):
        registry.method_config("ptuning-v2", {"tau_cos": 3.0})
    with pytest.raises(ConfigError, match="unknown method"):
        registry.method_config("lora-xl")
    with pytest.raises(ConfigError, match="did you mean 'tau_cos'"):
        registry.method_config("dcpc", {"tau_coss": 0.5})


def test_experiment_requires_a_known_method_name():
    with pytest.raises(ConfigError, match="method.name is required"):
        ExperimentConfig.from_dict({"method": {"tau_cos": 0.5}})
    with pytest.raises(ConfigError, match="unknown method"):
        ExperimentConfig.from_dict({"method": {"name": "dcpc-v3"}})


# --------------------------------------------------------------------------------------------
# Help metadata
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_field_has_help(cls):
    helps = cls.help()
    assert set(helps) == set(cls.field_names())
    for name, text in helps.items():
        assert isinstance(text, str) and len(text.strip()) >= 10, f"{cls.__name__}.{name} has no help"


def test_dcpc_help_names_the_paper_sections():
    helps = DCPCConfig.help()
    assert "3.3" in helps["use_ambiguity"] and "3.4" in helps["use_alignment"] and "3.5" in helps["use_pcm"]


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_config_loads(path):
    cfg = load_config(str(path))
    assert cfg.method_name and cfg.model.name and cfg.training.output_dir
