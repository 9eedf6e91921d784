"""The README's Layout section names every package and top-level module that exists, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_entries() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    lines = block.splitlines()
    start = lines.index("src/prefalign/")
    entries = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        match = re.match(r"  (\S+)", line)
        if match:
            entries.append(match.group(1))
    return entries


def test_the_layout_lists_exactly_what_src_holds():
    package = ROOT / "src" / "prefalign"
    there = {p.name + "/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    there |= {p.name for p in package.glob("*.py")}
    listed = layout_entries()
    assert len(listed) == len(set(listed)), "an entry is listed twice"
    missing, gone = sorted(there - set(listed)), sorted(set(listed) - there)
    assert not missing and not gone, f"missing from README: {missing}; listed but gone: {gone}"


def test_the_layout_follows_the_layer_order():
    from test_layers import RANK

    ranks = [RANK.get(entry.rstrip("/").removesuffix(".py")) for entry in layout_entries()]
    known = [r for r in ranks if r is not None]
    assert known == sorted(known, reverse=True), "README lists packages top layer first"
