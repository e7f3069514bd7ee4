"""Tests for wtp.maxdiff: design, counts, logit, hierarchical Bayes wrapper, shares, CLI."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from wtp.errors import InputError
from wtp.maxdiff import d_efficiency, design_balance, design_maxdiff

# --------------------------------------------------------------------------------------------
# design


@pytest.mark.parametrize(
    ("n_items", "per_task", "n_tasks", "n_versions"),
    [(15, 5, 12, 10), (12, 4, 10, 3), (7, 3, 7, 1), (20, 5, 10, 2), (5, 2, 10, 2)],
)
def test_design_is_balanced(n_items, per_task, n_tasks, n_versions):
    d = design_maxdiff(n_items, per_task, n_tasks, n_versions, rng=np.random.default_rng(3))
    assert list(d.columns) == ["version", "task", "position", "item"]
    assert len(d) == n_items * 0 + per_task * n_tasks * n_versions
    assert set(d["item"]) <= {str(i) for i in range(1, n_items + 1)}
    assert d["item"].map(type).eq(str).all()
    # no item twice in a task; positions 1..k
    assert not d.duplicated(["version", "task", "item"]).any()
    assert (d.groupby(["version", "task"])["position"].apply(sorted).map(tuple) == tuple(range(1, per_task + 1))).all()
    # items equally often (±1) within each version
    counts = d.groupby(["version", "item"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=[str(i) for i in range(1, n_items + 1)], fill_value=0)
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1
    b = design_balance(d)
    assert b.d_efficiency > 0.99
    # pooled pairs within 3 of each other; positions within 2
    assert b.pair_counts["together"].max() - b.pair_counts["together"].min() <= 3
    pos = b.position_counts.drop(columns="item").to_numpy()
    assert pos.max() - pos.min() <= 2


def test_design_finds_a_bibd_when_one_exists():
    # (7, 3, 7) is the Fano plane; (13, 4, 13) the projective plane of order 3
    for k, per, t in [(7, 3, 7), (13, 4, 13), (7, 4, 7)]:
        d = design_maxdiff(k, per, t, rng=np.random.default_rng(0))
        b = design_balance(d)
        assert b.pair_counts["together"].nunique() == 1
        assert b.d_efficiency == pytest.approx(1.0)


def test_design_seeded_and_labelled():
    a = design_maxdiff(8, 4, 6, 2, rng=np.random.default_rng(5))
    b = design_maxdiff(8, 4, 6, 2, rng=np.random.default_rng(5))
    pd.testing.assert_frame_equal(a, b)
    labels = list("ABCDEFGH")
    c = design_maxdiff(8, 4, 6, 2, items=labels, rng=np.random.default_rng(5))
    assert set(c["item"]) == set(labels)


def test_design_rejects_bad_arguments():
    with pytest.raises(InputError):
        design_maxdiff(5, 5, 4)
    with pytest.raises(InputError):
        design_maxdiff(5, 3, 4, items=["a", "b"])


def test_d_efficiency_hand_cases():
    # every pair once (BIBD) -> 1; an item never shown -> 0
    fano = [np.array(t) - 1 for t in [(1, 2, 3), (1, 4, 5), (1, 6, 7), (2, 4, 6), (2, 5, 7), (3, 4, 7), (3, 5, 6)]]
    assert d_efficiency(fano, 7) == pytest.approx(1.0)
    assert d_efficiency([np.array([0, 1]), np.array([1, 2])], 4) == 0.0
    # all pairs of 4 items in tasks of 2: complete block -> 1; a lopsided design is below 1
    assert d_efficiency([np.array(p) for p in itertools.combinations(range(4), 2)], 4) == pytest.approx(1.0)
    lop = [np.array([0, 1])] * 3 + [np.array([1, 2]), np.array([2, 3])]
    assert 0 < d_efficiency(lop, 4) < 0.95
    # for pairs the best-worst information at equal utilities is 1/4 (x_a - x_b)(x_a - x_b)'
    # per task (the worst pick is implied); check the trace through the figure's denominator
    from wtp.maxdiff import _bw_information

    info = _bw_information([np.array([0, 1])], 3)
    assert np.allclose(info, np.array([[0.25, -0.25, 0], [-0.25, 0.25, 0], [0, 0, 0]]))


def test_design_report_text():
    d = design_maxdiff(6, 3, 4, 2, rng=np.random.default_rng(1))
    text = design_balance(d).text()
    assert "D-efficiency" in text and "Position balance" in text and "Pairs shown together" in text
