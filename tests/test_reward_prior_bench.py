"""benchmarks/dorm_prior.py's measuring helpers (issue 21) on hand-computed values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    module = load_benchmark("dorm_prior")
    return module


def test_auc_counts_pairs_and_half_ties(bench):
    # positives {0.35, 0.8} against negatives {0.1, 0.4}: 0.35 > 0.1, 0.8 > both, 0.35 < 0.4 -> 3 of 4
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert bench.auc(scores, np.array([False, False, True, True])) == pytest.approx(0.75)
    # a tie counts half: positive 0.4 against negatives {0.4, 0.1} -> (0.5 + 1) / 2
    assert bench.auc(np.array([0.4, 0.4, 0.1]), np.array([True, False, False])) == pytest.approx(0.75)


def test_spearman_is_rank_correlation(bench):
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert bench.spearman_rho(a, a**3) == pytest.approx(1.0)  # monotone, not linear
    assert bench.spearman_rho(a, -a) == pytest.approx(-1.0)
    # ranks [0, 1, 2, 3] against [1, 0, 3, 2]: 1 - 6 * 4 / (4 * 15) = 0.6
    assert bench.spearman_rho(a, np.array([2.0, 1.0, 4.0, 3.0])) == pytest.approx(0.6)


def test_flipped_rows_follow_the_split(bench):
    rows = bench.flipped_rows()
    assert {k: len(v) for k, v in rows.items()} == {"hh-flip0": 0, "hh-flip10": 38, "hh-flip20": 75, "hh-flip40": 150}
    assert all(1 <= r <= 375 for v in rows.values() for r in v)  # 1-based, as PreferenceExample.row
    assert bench.flipped_rows() == rows  # seeded


def test_the_readings_named_in_the_tables(bench):
    assert bench._differs(bench.DEFAULT) == "default (thesis as implemented)"
    chosen = {**bench.DEFAULT, "q_form": "absolute", "u_coefficient": 0.0}
    assert bench._differs(chosen) == "q_form=absolute, u_coefficient=0"
    assert bench.tag(chosen) == "train250_qabsolute_u0_standardise_g1"
