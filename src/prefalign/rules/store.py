"""The rules file: plain JSON a person can read and edit, written atomically after every change.

    {"format": "prefalign-rules/1", "labels": [...], "matching": {...},
     "rules": [
       {"id": "seed-0", "kind": "keyword", "pattern": "football", "label": "Sports", "round": 0,
        "accepted_by": "seed", "dev_coverage": 0.12, "dev_accuracy": 0.9},
       {"id": "r1-i17", "kind": "prompt", "label": "Business", "round": 1, "source_text": "...",
        "prompt": "... This news is about [MASK]", "accepted_by": "simulated (3 oracles, error 0.1, majority)",
        "candidates": [{"word": "business", "decision": "accept", "votes": [1, 1, 1]},
                       {"word": "monday", "decision": "reject", "votes": [0, 0, 1]}, ...],
        "dev_coverage": 0.04, "dev_accuracy": 0.75}]}

A keyword or regex rule fires where its pattern does. A prompt rule's words are its candidates whose
decision is "accept"; "pending" and "skip" are not decided yet (a review continues with them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from ..errors import DataError
from ..utils.atomic_files import write_text_atomically

FORMAT = "prefalign-rules/1"
DECISIONS = ("pending", "accept", "reject", "skip")
KINDS = ("keyword", "regex", "prompt")


def new_document(labels: list[str], matching: dict) -> dict:
    """An empty rules document for ``labels`` with the matching settings ``apply`` needs."""
    return {"format": FORMAT, "labels": list(labels), "matching": dict(matching), "rules": []}


def load_rules(path: str | Path) -> dict:
    """Read and check a rules file; a DataError names the file and the first problem."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"rules file not found: {path}")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix it by hand") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(f'{path} is not a prefalign rules file (expected "format": "{FORMAT}")')
    labels = doc.get("labels")
    if not isinstance(labels, list) or len(labels) < 2:
        raise DataError(f"{path}: 'labels' must list at least two label names")
    if not isinstance(doc.get("rules"), list):
        raise DataError(f"{path}: 'rules' must be a list")
    doc.setdefault("matching", {})
    for i, rule in enumerate(doc["rules"]):
        where = f"{path} rule {i + 1} ({rule.get('id', 'no id') if isinstance(rule, dict) else rule!r})"
        if not isinstance(rule, dict) or rule.get("kind") not in KINDS:
            raise DataError(f"{where}: 'kind' must be one of {', '.join(KINDS)}")
        if rule.get("label") not in labels:
            raise DataError(f"{where}: label {rule.get('label')!r} is not one of {labels}")
        if rule["kind"] == "prompt":
            if not isinstance(rule.get("source_text"), str) or not rule["source_text"].strip():
                raise DataError(f"{where}: a prompt rule needs its 'source_text' (the instance it came from)")
            if not isinstance(rule.get("candidates", []), list):
                raise DataError(f"{where}: 'candidates' must be a list of {{word, decision}}")
            for c in rule.get("candidates", []):
                if not isinstance(c, dict) or not isinstance(c.get("word"), str):
                    raise DataError(f"{where}: every candidate needs a 'word'")
                if c.get("decision", "pending") not in DECISIONS:
                    raise DataError(f"{where}: decision {c.get('decision')!r} is not one of {', '.join(DECISIONS)}")
        elif not isinstance(rule.get("pattern"), str) or not rule["pattern"].strip():
            raise DataError(f"{where}: a {rule['kind']} rule needs a non-empty 'pattern'")
    return doc


def save_rules(path: str | Path, doc: dict) -> Path:
    """Write the document atomically (a crash leaves the previous file, never half of this one)."""
    return write_text_atomically(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def accepted_words(rule: dict) -> list[str]:
    """A prompt rule's vocabulary V_rj: its accepted candidate words."""
    return [c["word"] for c in rule.get("candidates", []) if c.get("decision") == "accept"]


def pattern_rules(doc: dict) -> list[dict]:
    """The keyword and regex rules."""
    return [r for r in doc["rules"] if r["kind"] in ("keyword", "regex")]


def accepted_prompt_rules(doc: dict) -> list[dict]:
    """The prompt rules with at least one accepted word."""
    return [r for r in doc["rules"] if r["kind"] == "prompt" and accepted_words(r)]


def undecided(doc: dict, round_: int | None = None) -> Iterator[tuple[dict, dict]]:
    """(rule, candidate) for every candidate still 'pending' or 'skip' (of one round, if given)."""
    for rule in doc["rules"]:
        if rule["kind"] != "prompt" or (round_ is not None and rule.get("round") != round_):
            continue
        for cand in rule.get("candidates", []):
            if cand.get("decision", "pending") in ("pending", "skip"):
                yield rule, cand
