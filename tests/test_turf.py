"""Tests for wtp.turf: reach rules, exact enumeration, greedy rule, weights."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from wtp.errors import InputError
from wtp.turf import reach_matrix, turf


def _long(U, items=None):
    U = np.asarray(U, dtype=float)
    items = items or [f"i{j}" for j in range(U.shape[1])]
    return pd.DataFrame(
        {
            "respondent_id": np.repeat([f"r{i}" for i in range(U.shape[0])], U.shape[1]),
            "item": items * U.shape[0],
            "utility": U.ravel(),
        }
    )


HAND = [[2, 1, -1, -2], [-2, 2, 1, -1], [-1, -2, 2, 1], [1, -1, -2, 2]]


def test_reach_rules_hand_case():
    B = reach_matrix(np.array(HAND), "above_mean")
    assert B.astype(int).tolist() == [[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [1, 0, 0, 1]]
    T = reach_matrix(np.array(HAND), "top_n", top_n=1)
    assert T.astype(int).tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_exact_reach_and_frequency_by_hand():
    res = turf(_long(HAND), 2)
    best = res.portfolios.iloc[0]
    # i0 + i2 reach everyone once (complementary halves); adjacent pairs reach 3 of 4
    assert best["items"] == "i0 + i2" or best["items"] == "i1 + i3"
    assert best["reach"] == pytest.approx(1.0) and best["frequency"] == pytest.approx(1.0)
    adj = res.portfolios.set_index("items").loc["i0 + i1"]
    assert adj["reach"] == pytest.approx(0.75) and adj["frequency"] == pytest.approx(1.0)
    assert res.method == "exact" and res.n_evaluated == 6
    assert res.item_reach["reach"].tolist() == [0.5] * 4


def test_exact_matches_brute_force_with_weights():
    rng = np.random.default_rng(4)
    U = rng.normal(size=(60, 7))
    w = rng.uniform(0.5, 2, size=60)
    res = turf(_long(U), 3, weights=w, keep=1000)
    B = U > U.mean(axis=1, keepdims=True)
    best = max(
        itertools.combinations(range(7), 3),
        key=lambda c: ((B[:, c].any(axis=1) * w).sum(), (B[:, c].sum(axis=1) * w).sum()),
    )
    top = res.portfolios.iloc[0]
    assert top["items"] == " + ".join(f"i{j}" for j in best)
    assert top["reach"] == pytest.approx((B[:, best].any(axis=1) * w).sum() / w.sum())
    assert top["frequency"] == pytest.approx((B[:, best].sum(axis=1) * w).sum() / w.sum())
    assert res.portfolios["reach"].is_monotonic_decreasing
    assert len(res.portfolios) == 35


def test_greedy_beyond_max_exact_and_ladder():
    rng = np.random.default_rng(1)
    U = rng.normal(size=(200, 12))
    res = turf(_long(U), 4, max_exact=10)
    assert res.method == "greedy" and len(res.portfolios) == 1
    # the greedy portfolio is the first 4 steps of the ladder
    assert res.portfolios.iloc[0]["items"] == " + ".join(res.ladder["item"].head(4))
    assert res.ladder["reach"].is_monotonic_increasing
    assert res.ladder["reach"].iloc[-1] == pytest.approx(1.0)
    exact = turf(_long(U), 4)
    assert exact.portfolios.iloc[0]["reach"] >= res.portfolios.iloc[0]["reach"] - 1e-12


def test_pool_and_errors():
    res = turf(_long(HAND), 1, items=["i1", "i2"])
    assert set(res.portfolios["items"]) == {"i1", "i2"}
    with pytest.raises(InputError):
        turf(_long(HAND), 5)
    with pytest.raises(InputError):
        turf(_long(HAND), 2, reach="nope")
    with pytest.raises(InputError):
        turf(_long(HAND), 2, items=["zz"])
