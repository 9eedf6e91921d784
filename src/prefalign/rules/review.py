"""Reviewers of candidate rules (sec. 2.4.2): a person at the terminal, a person with a file, or simulated
oracles for experiments; Fleiss' kappa (eq. B.1) over the simulated votes."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import termios
import tty
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..utils.atomic_files import write_text_atomically
from .core import fleiss_kappa
from .store import DECISIONS, load_rules, save_rules, undecided

KEYS = {"a": "accept", "y": "accept", "r": "reject", "n": "reject", "s": "skip"}


# ---------------------------------------------------------------------------------------------------------------
# Simulated reviewers


def word_label_counts(words: Sequence[Sequence[str]], labels: Sequence[int], num_classes: int) -> dict[str, np.ndarray]:
    """For every word: how many pool texts of each true label have it among their top-k words."""
    counts: dict[str, np.ndarray] = {}
    for ws, y in zip(words, labels):
        for w in set(ws):
            counts.setdefault(w, np.zeros(num_classes, dtype=int))[y] += 1
    return counts


def oracle_decision(word: str, label: int, counts: dict[str, np.ndarray], precision: float, min_support: int) -> bool:
    """The noiseless oracle: accept ``word`` for ``label`` when at least ``min_support`` pool texts have it in
    their top-k and at least ``precision`` of them truly carry ``label``."""
    c = counts.get(word)
    if c is None or c.sum() < min_support:
        return False
    return c[label] / c.sum() >= precision


def simulated_review(
    doc: dict,
    round_: int,
    counts: dict[str, np.ndarray],
    *,
    reviewers: int,
    error_rate: float,
    precision: float,
    min_support: int,
    rng: np.random.Generator,
) -> dict:
    """Decide every undecided candidate of ``round_``: each oracle flips the true decision with probability
    ``error_rate``, the majority decides (a tie rejects). Returns the round's agreement (eq. B.1)."""
    labels = doc["labels"]
    who = f"simulated ({reviewers} oracles, error {error_rate:g}, majority)"
    table = []
    for rule, cand in undecided(doc, round_):
        truth = oracle_decision(cand["word"], labels.index(rule["label"]), counts, precision, min_support)
        flips = rng.random(reviewers) < error_rate
        votes = [int(truth != f) for f in flips]
        cand["votes"] = votes
        cand["decision"] = "accept" if sum(votes) * 2 > reviewers else "reject"
        cand["by"] = who
        if cand["decision"] == "accept":
            rule["accepted_by"] = who
        table.append([reviewers - sum(votes), sum(votes)])
    if not table or reviewers < 2:
        return {"candidates": len(table), "P_bar": None, "P_e": None, "kappa": None}
    k = fleiss_kappa(np.asarray(table))
    return {"candidates": len(table), **k}


# ---------------------------------------------------------------------------------------------------------------
# A person at the terminal


def _read_key(stream) -> str:
    """One keystroke: raw (no Enter) on a terminal, else the next character of the stream."""
    if stream.isatty():
        fd = stream.fileno()
        old = termios.tcgetattr(fd)
        try:
            tty.setcbreak(fd)
            return os.read(fd, 1).decode("utf-8", errors="ignore")
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
    return stream.read(1)


def terminal_review(path: str | Path, stdin=None, stdout=None, reviewer: str = "terminal") -> dict:
    """Review the undecided candidates of the rules file one keystroke each: a/y accept, r/n reject,
    s skip (asked again next time), q quit. The file is saved after every keystroke, so a review
    stopped anywhere continues where it stopped. Returns counts of this session's decisions."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    doc = load_rules(path)
    queue = list(undecided(doc))
    done = {"accept": 0, "reject": 0, "skip": 0, "left": 0, "quit": False}
    total = len(queue)
    for i, (rule, cand) in enumerate(queue, 1):
        stdout.write(
            f"\n[{i}/{total}] round {rule.get('round')}  label: {rule['label']}  rule: {rule.get('id')}\n"
            f"  prompt:    {rule.get('prompt', '')}\n"
            f"  candidate: {cand['word']}\n"
            "  (a)ccept  (r)eject  (s)kip  (q)uit > "
        )
        stdout.flush()
        while True:
            key = _read_key(stdin)
            if key == "":  # end of input: stop as if q
                key = "q"
            key = key.lower()
            if key == "q" or key in KEYS:
                break
        if key == "q":
            done["quit"] = True
            stdout.write("quit\n")
            break
        decision = KEYS[key]
        cand["decision"] = decision
        cand["by"] = reviewer
        if decision == "accept":
            rule["accepted_by"] = reviewer
        done[decision] += 1
        save_rules(path, doc)
        stdout.write(f"{decision}\n")
    done["left"] = sum(1 for _ in undecided(doc))
    stdout.write(
        f"\nreviewed {done['accept'] + done['reject'] + done['skip']}: {done['accept']} accepted, "
        f"{done['reject']} rejected, {done['skip']} skipped; {done['left']} undecided left in {path}\n"
    )
    stdout.flush()
    return done


# ---------------------------------------------------------------------------------------------------------------
# A person with a file

EXPORT_COLUMNS = ("rule_id", "round", "label", "word", "decision", "prompt")


def export_candidates(doc: dict, out: str | Path, only_undecided: bool = True) -> int:
    """Write candidates to CSV or JSONL (by suffix) for review elsewhere; returns how many."""
    rows = []
    for rule in doc["rules"]:
        if rule["kind"] != "prompt":
            continue
        for cand in rule.get("candidates", []):
            decision = cand.get("decision", "pending")
            if only_undecided and decision not in ("pending", "skip"):
                continue
            rows.append(
                {
                    "rule_id": rule.get("id"),
                    "round": rule.get("round"),
                    "label": rule["label"],
                    "word": cand["word"],
                    "decision": decision,
                    "prompt": rule.get("prompt", ""),
                }
            )
    if str(out).endswith(".jsonl"):
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    write_text_atomically(out, text)
    return len(rows)


def import_decisions(doc: dict, src: str | Path, reviewer: str = "file") -> int:
    """Apply the decisions of an exported file (CSV or JSONL with rule_id, word, decision) to ``doc``;
    returns how many candidates changed. Every row must name a rule and a candidate the document has."""
    p = Path(src)
    if not p.is_file():
        raise DataError(f"decisions file not found: {src}")
    with open(p, encoding="utf-8-sig", newline="") as f:
        if p.suffix == ".jsonl":
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        raise DataError(f"{src} line {n} is not valid JSON") from None
        else:
            rows = list(csv.DictReader(f))
    by_id = {r.get("id"): r for r in doc["rules"] if r["kind"] == "prompt"}
    changed = 0
    for n, row in enumerate(rows, 1):
        rule = by_id.get(row.get("rule_id"))
        if rule is None:
            raise DataError(f"{src} row {n}: no prompt rule with id {row.get('rule_id')!r} in the rules file")
        decision = str(row.get("decision", "")).strip().lower()
        decision = {"a": "accept", "y": "accept", "yes": "accept", "r": "reject", "n": "reject", "no": "reject"}.get(
            decision, decision
        )
        if decision not in DECISIONS:
            raise DataError(f"{src} row {n}: decision {row.get('decision')!r} is not one of {', '.join(DECISIONS)}")
        cand = next((c for c in rule["candidates"] if c["word"] == row.get("word")), None)
        if cand is None:
            raise DataError(f"{src} row {n}: rule {rule['id']} has no candidate {row.get('word')!r}")
        if cand.get("decision") != decision:
            cand["decision"] = decision
            cand["by"] = reviewer
            changed += 1
        if decision == "accept":
            rule["accepted_by"] = reviewer
    return changed
