"""The package's layer order, enforced: every import points down, and function-level imports are for heavy
optional dependencies only (or the CLI, which imports lazily so that --help answers fast).

    __main__ -> cli -> compare / analysis / demo -> inference -> training, reward, rules -> generation -> methods, kv
        -> tasks, shifts -> annotations -> evaluation -> data -> models -> utils, errors
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A module may import its own top-level package and any package of a lower rank; packages
# that share a rank (compare, analysis, demo) may not import each other.
LAYERS = [
    ("errors",),
    ("utils",),
    ("models",),
    ("data",),
    ("evaluation",),
    ("annotations",),
    ("tasks", "shifts"),
    ("methods", "kv"),
    ("generation",),
    ("training", "reward", "rules"),
    ("inference",),
    ("compare", "analysis", "demo"),
    ("cli",),
    ("__main__",),
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}
# Imported inside functions on purpose: slow to import and needed by few paths, or optional extras.
LAZY_OK = {
    "matplotlib",
    "crowdkit",
    "cleanlab",
    "sklearn",
    "scipy",
    "datasets",
    "gguf",
    "peft",
    "huggingface_hub",
    "torch.distributed.nn",
    "snorkel",  # Snorkel's LabelModel, a baseline of `prefalign rules` (the [rules] extra)
    "pandas",  # only multi-annotator readers need it; `prefalign tasks` would wait for it otherwise
    # only checking training.trainer_args needs TrainingArguments' fields; a config error answers without it
    "transformers.training_args",
}


def modules():
    for path in sorted((SRC / "prefalign").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield path, name, path.name == "__init__.py"


def unit_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "prefalign" else None


def imports(path: Path, name: str, is_package: bool):
    """(imported module, line, inside a function) for every import in the file, relative ones resolved."""
    package = name if is_package else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(node) if n is not node}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in inside
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno, id(node) in inside


def violations():
    out = []
    for path, name, is_package in modules():
        own = unit_of(name)
        if own is None:  # prefalign/__init__.py: the public API re-exports from every layer
            continue
        assert own in RANK, f"{name}: its package '{own}' is in no layer of tests/test_layers.py"
        for target, line, lazy in imports(path, name, is_package):
            where = f"{path.relative_to(SRC)}:{line}"
            unit = unit_of(target)
            if unit is not None and unit != own:
                assert unit in RANK, f"{where}: imports {target}, in no layer"
                if RANK[unit] > RANK[own]:
                    out.append(f"{where}: {own} imports {target} (upward)")
                elif RANK[unit] == RANK[own]:
                    out.append(f"{where}: {own} imports its sibling {target}")
            if lazy and own != "cli" and target != "__future__":
                if not any(target == ok or target.startswith(ok + ".") for ok in LAZY_OK):
                    out.append(f"{where}: function-level import of {target}")
    return out


def test_every_import_points_down_and_function_level_imports_are_for_heavy_optional_dependencies():
    found = violations()
    assert not found, "\n".join(found)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The check fails when a lower layer imports a higher one (a copy of the tree with one bad line)."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(SRC / "prefalign", copy / "prefalign")
    target = copy / "prefalign" / "models" / "introspect.py"
    target.write_text(target.read_text() + "\nfrom ..training.run import train  # upward\n")
    monkeypatch.setattr(__import__(__name__), "SRC", copy)
    found = violations()
    assert any("models imports prefalign.training.run (upward)" in v for v in found), found


@pytest.mark.parametrize("units", LAYERS)
def test_every_layer_names_existing_packages(units):
    for unit in units:
        assert (SRC / "prefalign" / unit).is_dir() or (SRC / "prefalign" / f"{unit}.py").is_file(), unit
