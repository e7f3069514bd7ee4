"""The simulator: reproducible, in the contract's layouts, and its truth is what it says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wtp.io import validate_vw
from wtp.simulate import (
    SegmentSpec,
    probability_shares,
    simulate_customers,
    simulate_study,
    simulate_vw,
    true_demand,
    true_revenue_optimum,
)
from wtp.study import load_study


def test_same_seed_same_data():
    a = simulate_vw(200, seed=9).answers
    b = simulate_vw(200, seed=9).answers
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(simulate_vw(200, seed=10).answers)


def test_vw_answers_validate_and_have_inconsistent_share():
    sim = simulate_vw(5000, seed=1, inconsistent_share=0.05)
    clean = validate_vw(sim.answers)
    assert len(clean) == 5000
    assert 0.03 < sim.respondents.inconsistent.mean() < 0.06
    assert set(np.unique(sim.answers.buy_cheap)) <= {1, 2, 3, 4, 5}


def test_true_demand_matches_monte_carlo():
    # the quadrature in true_demand against brute-force simulation of the same model
    from scipy.special import ndtr

    rng = np.random.default_rng(0)
    spec = SegmentSpec("x", 1.0, 100.0, 0.3, 0.6)
    n = 400_000
    R = 100 * np.exp(0.3 * rng.standard_normal(n))
    L = 0.55 * R * np.exp(0.1 * rng.standard_normal(n))
    prices = np.array([40.0, 70.0, 100.0, 130.0])
    lp = np.log(prices)[None, :]
    mc = 0.6 * (
        ndtr((np.log(R)[:, None] - lp) / 0.12) * ndtr((lp - np.log(L)[:, None]) / 0.12)
    ).mean(axis=0)
    np.testing.assert_allclose(true_demand(100, 0.3, 0.6, prices, 0.12), mc, atol=3e-3)
    p, d = true_revenue_optimum(spec, 0.12)
    grid = np.linspace(30, 200, 2000)
    assert p * d == pytest.approx((grid * true_demand(100, 0.3, 0.6, grid, 0.12)).max(), rel=1e-5)


def test_probability_shares_by_hand():
    # u = (0, log 2) zero-centred, k = 2: p = e^u/(e^u + 1)
    u = np.array([[0.0, np.log(2.0)]])
    uc = u - u.mean()
    p = np.exp(uc) / (np.exp(uc) + 1)
    np.testing.assert_allclose(probability_shares(u, 2), 100 * p / p.sum())
    assert probability_shares(np.zeros((1, 5)), 3).sum() == pytest.approx(100)


def test_customers_churn_at_the_stated_hazard():
    sim = simulate_customers(n_per_segment=20000, months=36, seed=3)
    c = sim.customers
    start = pd.to_datetime(c.start_date)
    end = pd.to_datetime(c.end_date.replace("", None))
    exposure = ((end.fillna(sim.as_of) - start).dt.days / 30.4375).groupby(c.segment).sum()
    events = end.notna().groupby(c.segment).sum()
    hazard = events / exposure
    for seg, h in sim.churn_rate.items():
        assert hazard[seg] == pytest.approx(h, rel=0.08)


def test_segments_csv_churn_rate_is_the_share_lost_per_period():
    from wtp.simulate import DEMO_SEGMENTS, simulate_segments

    seg = simulate_segments().set_index("segment")
    for spec in DEMO_SEGMENTS:  # a hazard h loses 1 − e^(−h) of the customers in a period
        assert seg.loc[spec.name, "churn_rate"] == pytest.approx(
            1 - np.exp(-spec.churn_rate), abs=5e-5
        )
        assert seg.loc[spec.name, "churn_rate"] <= spec.churn_rate


def test_study_folder_loads_and_joins_segments(tmp_path):
    sim = simulate_study(tmp_path / "s", n_respondents=120, seed=1, customers_per_segment=30)
    study = load_study(sim.folder)
    assert study.missing == []
    assert set(study.vw.segment) == {"Startups", "SMB", "Mid-market", "Enterprise"}
    assert study.vw.weight.nunique() > 1  # post-stratification weights
    assert study.item_labels["sso"] == "Single sign-on (SAML)"
    assert list(study.attribute_levels) == ["Support", "SSO", "Users", "History"]
    assert sim.revenue_optimal_prices.revenue_optimal_price.is_monotonic_increasing


def test_the_shipped_demo_is_the_demo_world(tmp_path):
    """wtp/data/demo is exactly what simulate_demo_study writes (so its truth is known), and
    its answers share that truth: each segment's median "expensive" answer sits near its true
    core value, and today's conversion in segments.csv is the true take-up at today's ARPA."""
    from wtp.pipeline import demo_study_path
    from wtp.simulate import DEMO_TIER_SEGMENTS, simulate_demo_study

    w = simulate_demo_study(tmp_path / "demo")
    shipped = demo_study_path()
    for name in ("study.toml", "vw.csv", "maxdiff.csv", "conjoint.csv", "respondents.csv",
                 "segments.csv", "customers.csv"):  # fmt: skip
        assert (shipped / name).read_bytes() == (w.folder / name).read_bytes(), name
    vw = pd.read_csv(shipped / "vw.csv").merge(pd.read_csv(shipped / "respondents.csv"))
    expensive = vw.groupby("segment")["expensive"].median()
    for s in DEMO_TIER_SEGMENTS:
        true = float(np.median(w.respondents[s.name].value))
        assert expensive[s.name] == pytest.approx(true, rel=0.15), s.name
    seg = pd.read_csv(shipped / "segments.csv").set_index("segment")
    assert (seg["conversions"] / seg["trials"]).between(0.05, 0.5).all()
