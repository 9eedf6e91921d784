"""Reviewers of candidate rules: simulated oracles, the file round trip, and the terminal review driven as a
person would drive it (one keystroke each, in tmux)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from prefalign.rules.review import oracle_decision, simulated_review, terminal_review, word_label_counts
from prefalign.rules.store import FORMAT, load_rules, save_rules

SRC = Path(__file__).resolve().parents[1] / "src"


def candidates_doc() -> dict:
    return {
        "format": FORMAT,
        "labels": ["World", "Sports"],
        "matching": {},
        "rules": [
            {
                "id": "seed-0",
                "kind": "keyword",
                "pattern": "goal",
                "label": "Sports",
                "round": 0,
                "accepted_by": "seed",
            },
            {
                "id": "r1-i4",
                "kind": "prompt",
                "label": "Sports",
                "round": 1,
                "source_text": "Liverpool lacks firepower",
                "prompt": "Liverpool lacks firepower News about [MASK]",
                "candidates": [
                    {"word": "football", "decision": "pending"},
                    {"word": "monday", "decision": "pending"},
                    {"word": "team", "decision": "pending"},
                ],
            },
        ],
    }


def test_oracle_knows_the_true_labels_of_the_texts_a_word_would_match():
    counts = word_label_counts(
        [["football", "team"], ["football"], ["team", "election"], ["election"]], [1, 1, 0, 0], 2
    )
    assert counts["team"].tolist() == [1, 1]
    assert oracle_decision("football", 1, counts, precision=0.6, min_support=2)
    assert not oracle_decision("football", 0, counts, precision=0.6, min_support=2)
    assert not oracle_decision("team", 1, counts, precision=0.6, min_support=2)  # half right: below 0.6
    assert not oracle_decision("football", 1, counts, precision=0.6, min_support=3)  # too few texts
    assert not oracle_decision("unseen", 1, counts, precision=0.6, min_support=1)


def test_simulated_reviewers_vote_by_majority_and_report_kappa():
    counts = {"football": np.array([0, 5]), "monday": np.array([3, 3]), "team": np.array([1, 4])}
    doc = candidates_doc()
    agreement = simulated_review(
        doc, 1, counts, reviewers=3, error_rate=0.0, precision=0.6, min_support=3, rng=np.random.default_rng(0)
    )
    cands = doc["rules"][1]["candidates"]
    assert [c["decision"] for c in cands] == ["accept", "reject", "accept"]
    assert [c["votes"] for c in cands] == [[1, 1, 1], [0, 0, 0], [1, 1, 1]]
    # Perfect agreement: P_bar = 1; two of three accepted: P_e = (1/3)^2 + (2/3)^2 = 5/9; kappa = 1.
    assert agreement["candidates"] == 3
    assert agreement["P_bar"] == pytest.approx(1.0) and agreement["P_e"] == pytest.approx(5 / 9)
    assert agreement["kappa"] == pytest.approx(1.0)
    # Noisy oracles disagree sometimes; the decision is still the majority of the recorded votes.
    doc = candidates_doc()
    noisy = simulated_review(
        doc, 1, counts, reviewers=3, error_rate=0.4, precision=0.6, min_support=3, rng=np.random.default_rng(3)
    )
    for c in doc["rules"][1]["candidates"]:
        assert c["decision"] == ("accept" if sum(c["votes"]) >= 2 else "reject")
    assert noisy["kappa"] < 1.0


def test_terminal_review_from_a_stream_saves_after_every_key_and_resumes(tmp_path):
    path = tmp_path / "rules.json"
    save_rules(path, candidates_doc())
    out = io.StringIO()
    done = terminal_review(path, stdin=io.StringIO("xaq"), stdout=out)  # an unknown key is ignored
    assert done["accept"] == 1 and done["quit"] and done["left"] == 2
    assert [c["decision"] for c in load_rules(path)["rules"][1]["candidates"]] == ["accept", "pending", "pending"]
    assert "candidate: football" in out.getvalue() and "[1/3]" in out.getvalue()
    done = terminal_review(path, stdin=io.StringIO("sr"), stdout=io.StringIO())  # ends at end of input
    cands = load_rules(path)["rules"][1]["candidates"]
    assert [c["decision"] for c in cands] == ["accept", "skip", "reject"]
    assert done["left"] == 1  # the skipped one is asked again next time
    out = io.StringIO()
    terminal_review(path, stdin=io.StringIO("r"), stdout=out)
    assert "[1/1]" in out.getvalue() and "candidate: monday" in out.getvalue()
    assert [c["decision"] for c in load_rules(path)["rules"][1]["candidates"]] == ["accept", "reject", "reject"]
    assert [c["by"] for c in load_rules(path)["rules"][1]["candidates"]] == ["terminal"] * 3


def _pane(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def _wait_for(session: str, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        screen = _pane(session)
        if text in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; the screen:\n{_pane(session)}")


@pytest.mark.skipif(
    shutil.which("tmux") is None,
    reason="tmux is not installed: the terminal review is then tested "
    "from a stream only (test_terminal_review_from_a_stream...)",
)
def test_terminal_review_in_tmux_one_keystroke_each_and_resumable(tmp_path):
    path = tmp_path / "rules.json"
    save_rules(path, candidates_doc())
    session = f"prefalign-review-{os.getpid()}"
    command = (
        f"cd {tmp_path} && OMP_NUM_THREADS=1 PYTHONPATH={SRC} {sys.executable} -m prefalign rules review "
        f"--rules rules.json; echo EXITED $?; sleep 60"
    )

    def start():
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "150", "-y", "40", command], check=True)

    try:
        start()
        _wait_for(session, "candidate: football")
        subprocess.run(["tmux", "send-keys", "-t", session, "a"], check=True)  # no Enter: one keystroke
        _wait_for(session, "candidate: monday")
        assert json.loads(path.read_text())["rules"][1]["candidates"][0]["decision"] == "accept"
        subprocess.run(["tmux", "send-keys", "-t", session, "r"], check=True)
        _wait_for(session, "candidate: team")
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        screen = _wait_for(session, "EXITED 0")
        assert "1 accepted, 1 rejected" in screen and "1 undecided left" in screen
        assert [c["decision"] for c in load_rules(path)["rules"][1]["candidates"]] == ["accept", "reject", "pending"]
        subprocess.run(["tmux", "kill-session", "-t", session], check=True)
        # Again: it continues with the one left.
        start()
        screen = _wait_for(session, "candidate: team")
        assert "[1/1]" in screen
        subprocess.run(["tmux", "send-keys", "-t", session, "a"], check=True)
        _wait_for(session, "EXITED 0")
        assert [c["decision"] for c in load_rules(path)["rules"][1]["candidates"]] == ["accept", "reject", "accept"]
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
