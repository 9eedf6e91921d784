"""Dataclass configs that validate themselves and round-trip to JSON/YAML dictionaries."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import typing
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError


def option(default, help: str, **metadata):
    """A config field with a default and help text; ``choices=(...)`` restricts its values."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own error says what is wrong (a nested section's bad key)
            return coerce(value, options[0], where)
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a valid {' or '.join(_type_name(a) for a in args)}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if value is None:
        raise ConfigError(f"{where} must be set (got null)")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return tp.from_dict(value, where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if result != result:
            raise ConfigError(f"{where}: NaN is not allowed")
        return result
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


class ConfigBase:
    """Mixin for config dataclasses: typed fields, ``choices`` metadata, JSON round trip."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            where = f"{self._section()}.{f.name}" if self._section() else f.name
            value = coerce(getattr(self, f.name), hints[f.name], where)
            choices = f.metadata.get("choices")
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
            object.__setattr__(self, f.name, value)
        self.validate()

    def validate(self) -> None:
        """Extra checks beyond types and choices; subclasses override."""

    @classmethod
    def _section(cls) -> str:
        return getattr(cls, "SECTION", cls.__name__)

    def check_range(self, name: str, low: float | None, high: float | None) -> None:
        """Raise ConfigError unless low <= value <= high."""
        value = getattr(self, name)
        if value is None:
            return
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
            raise ConfigError(f"{self._section()}.{name} = {value!r} is outside {bounds}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict | None, where: str | None = None):
        """Build from a mapping; unknown keys raise ConfigError with the closest valid key."""
        data = dict(data or {})
        names = cls.field_names()
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f"; valid keys: {', '.join(names)}"
                prefix = where or cls._section()
                raise ConfigError(f"unknown config key '{prefix + '.' if prefix else ''}{key}'{hint}")
        return cls(**data)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dictionary (nested configs included)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, ConfigBase) else copy.deepcopy(value)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> help text."""
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def parse_overrides(pairs: list[str]) -> dict:
    """``["training.learning_rate=1e-3", ...]`` -> nested dict with YAML-typed values."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got '{pair}'")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set key '{key}' is malformed")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set key '{key}' conflicts with another override")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict, update: dict) -> dict:
    """Recursively merge ``update`` into a copy of ``base``."""
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def read_yaml_mapping(path: str, kind: str, holds: str) -> dict:
    """The mapping in YAML file ``path``; a ConfigError names a missing file, a YAML error's line,
    or a file that is not a mapping (``kind`` names the file, ``holds`` what it should hold)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{kind} not found: {path}")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping with {holds}")
    return loaded
