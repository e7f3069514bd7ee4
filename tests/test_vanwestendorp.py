"""Van Westendorp: hand-computed cases for every point, real survey files, simulated recovery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wtp.errors import InputError
from wtp.io import attach_segments, read_table, validate_vw
from wtp.simulate import simulate_vw
from wtp.vanwestendorp import crossing_price, nms_curve, nms_probabilities, van_westendorp

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def frame(rows, **extra):
    df = pd.DataFrame(rows, columns=["too_cheap", "cheap", "expensive", "too_expensive"])
    df.insert(0, "respondent_id", [f"r{i}" for i in range(len(df))])
    for k, v in extra.items():
        df[k] = v
    return df


# --------------------------------------------------------------------------------------------
# crossing rule


def test_crossing_interpolates_between_neighbouring_prices():
    # d = +0.5 at 10, −0.5 at 20: crosses half-way
    assert crossing_price(np.array([10.0, 20.0, 30.0]), np.array([0.5, -0.5, -1.0]))[
        0
    ] == pytest.approx(15.0)
    # d = +0.2 at 10, −0.6 at 20: a quarter of the way
    assert crossing_price(np.array([10.0, 20.0]), np.array([0.2, -0.6]))[0] == pytest.approx(12.5)


def test_crossing_exact_zero_and_plateau_rules():
    prices = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    d = np.array([0.4, 0.0, 0.0, 0.0, -0.3])
    assert crossing_price(prices, d, "lowest")[0] == 20.0
    assert crossing_price(prices, d, "highest")[0] == 40.0
    assert crossing_price(prices, d, "middle")[0] == 30.0
    assert crossing_price(prices, np.array([0.4, 0.0, -0.1, -0.2, -0.3]))[0] == 20.0


def test_no_crossing_is_nan_and_rows_are_independent():
    prices = np.array([1.0, 2.0, 3.0])
    d = np.array([[0.5, 0.3, 0.1], [0.5, -0.5, -0.7]])
    out = crossing_price(prices, d)
    assert np.isnan(out[0]) and out[1] == pytest.approx(1.5)


# --------------------------------------------------------------------------------------------
# hand-computed survey

# Four respondents. Grid = distinct answers = 5, 10, 15, 20, 25, 30, 40.
HAND = [[5, 10, 20, 30], [10, 15, 25, 40], [5, 15, 20, 30], [10, 20, 30, 40]]


def test_curves_by_hand():
    r = van_westendorp(frame(HAND))
    c = r.curves[r.curves.segment == "all"].set_index("price")
    assert list(c.index) == [5, 10, 15, 20, 25, 30, 40]
    # too cheap(P) = share with too_cheap >= P: at 10 → two of four
    assert (
        c.loc[10, "too_cheap"] == 0.5
        and c.loc[5, "too_cheap"] == 1.0
        and c.loc[15, "too_cheap"] == 0.0
    )
    # cheap(15) = share with cheap >= 15 = 3/4
    assert c.loc[15, "cheap"] == 0.75 and c.loc[15, "not_cheap"] == 0.25
    # expensive(25) = share with expensive <= 25 = 3/4; too expensive(30) = 2/4
    assert c.loc[25, "expensive"] == 0.75 and c.loc[30, "too_expensive"] == 0.5


def test_price_points_by_hand():
    r = van_westendorp(frame(HAND))
    p = r.price_points.set_index("segment").loc["all"]
    # PMC: too cheap − not cheap: at 5: 1 − 0 = 1; at 10: 0.5 − 0 = 0.5; at 15: 0 − 0.25 < 0
    # → between 10 (0.5) and 15 (−0.25): 10 + 5 · 0.5/0.75
    assert p.pmc == pytest.approx(10 + 5 * 0.5 / 0.75)
    # OPP: too cheap − too expensive: 10: 0.5 − 0 ; 15: 0 − 0 = 0 exactly → 15
    assert p.opp == pytest.approx(15.0)
    # IPP: cheap − expensive: 15: 0.75 − 0 ; 20: 0.25 − 0.5 = −0.25 → 15 + 5 · 0.75/1.0
    assert p.ipp == pytest.approx(18.75)
    # PME: not expensive − too expensive: 25: 0.25 − 0 ; 30: 0 − 0.5 → 25 + 5 · 0.25/0.75
    assert p.pme == pytest.approx(25 + 5 * 0.25 / 0.75)
    # narrower: too cheap − expensive: 10: 0.5 − 0; 15: 0 − 0 = 0 → 15
    assert p.pmc_narrow == pytest.approx(15.0)
    # cheap − too expensive: 20: 0.25 − 0; 25: 0 − 0 → 25
    assert p.pme_narrow == pytest.approx(25.0)
    assert p.n == 4 and p.n_excluded == 0


def test_strict_cheap_rule_as_pricesensitivitymeter():
    r = van_westendorp(frame(HAND), cheap_rule="gt")
    c = r.curves.set_index("price")
    # too cheap(10) with > : only answers above 10 → none
    assert c.loc[10, "too_cheap"] == 0.0 and c.loc[5, "too_cheap"] == 0.5
    assert r.settings.cheap_rule == "gt"


def test_weights_count_as_respondents():
    # a weight of 2 is the same as answering twice
    w = van_westendorp(frame(HAND, weight=[2.0, 1.0, 1.0, 1.0]))
    dup = van_westendorp(frame([HAND[0], *HAND]))
    cols = ["pmc", "opp", "ipp", "pme", "pmc_narrow", "pme_narrow"]
    np.testing.assert_allclose(w.price_points[cols].to_numpy(), dup.price_points[cols].to_numpy())


def test_inconsistent_rows_are_excluded_counted_and_named():
    rows = [*HAND, [20, 10, 30, 40]]
    r = van_westendorp(frame(rows))
    p = r.price_points.set_index("segment").loc["all"]
    assert p.n == 4 and p.n_excluded == 1 and p.n_in == 5
    assert r.excluded.respondent_id.tolist() == ["r4"]
    assert r.excluded.row.tolist() == [6]  # header is row 1
    assert any("left out" in w for w in r.warnings)
    repaired = van_westendorp(frame(rows), inconsistent="repair")
    q = repaired.price_points.set_index("segment").loc["all"]
    assert q.n == 5 and q.n_excluded == 0 and q.n_repaired == 1


def test_ties_can_be_dropped():
    rows = [*HAND, [10, 10, 20, 30]]
    assert van_westendorp(frame(rows)).price_points.n.iloc[-1] == 5
    r = van_westendorp(frame(rows), ties="drop")
    assert r.price_points.n.iloc[-1] == 4 and r.price_points.n_excluded.iloc[-1] == 1


def test_segments_and_all_row():
    df = frame(HAND + HAND, segment=["a"] * 4 + ["b"] * 4)
    r = van_westendorp(df)
    assert r.price_points.segment.tolist() == ["a", "b", "all"]
    pp = r.price_points.set_index("segment")
    assert pp.loc["a", "pmc"] == pytest.approx(pp.loc["all", "pmc"])
    assert pp.loc["all", "n"] == 8


def test_no_crossing_leaves_empty_cell_and_warns():
    # everyone answers 10 to all four: at the only price too cheap = 1 and not cheap = 0 (PMC),
    # not expensive = 0 and too expensive = 1 (PME) — no sign change, so empty cells and a
    # warning each; too cheap = too expensive = 1 and cheap = expensive = 1 touch exactly (OPP, IPP)
    r = van_westendorp(frame([[10, 10, 10, 10]]))
    pp = r.price_points.iloc[0]
    assert np.isnan(pp.pmc) and np.isnan(pp.pme)
    assert pp.opp == 10 and pp.ipp == 10
    assert any("PMC" in w and "do not cross" in w for w in r.warnings)
    assert any("PME" in w and "do not cross" in w for w in r.warnings)
    one = van_westendorp(frame([[1, 2, 3, 4]]))
    assert one.price_points.opp.iloc[0] == pytest.approx(
        2.0
    )  # too cheap 0 at 2, too exp 0 → exact 0


# --------------------------------------------------------------------------------------------
# NMS


def test_nms_curve_by_hand():
    # one respondent: 0 at 10, 0.7 at 20, 0.3 at 30, 0 at 40
    x = np.array([[10.0, 20.0, 30.0, 40.0]])
    grid = np.array([10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0])
    trial, _, _ = nms_curve(grid, x, np.ones(1), np.array([0.7]), np.array([0.3]))
    np.testing.assert_allclose(trial, [0, 0.35, 0.7, 0.5, 0.3, 0.15, 0, 0])


def test_nms_optimum_is_exact_inside_a_piece():
    # demand 1 − p/100 between 0 and 100 (one respondent, too cheap = cheap = 0 with p=1):
    # revenue p(1 − p/100) peaks at 50, not at an answered price
    df = frame([[0, 0, 0.0001, 100]], buy_cheap=[1.0], buy_expensive=[0.999999])
    r = van_westendorp(df, nms_scale="probability")
    assert r.price_points.revenue_optimal_price.iloc[0] == pytest.approx(50.0, rel=1e-3)


def test_nms_scale_detection_and_labels():
    assert np.allclose(nms_probabilities(pd.Series([5, 4, 3, 2, 1])), [0.7, 0.5, 0.3, 0.1, 0.0])
    assert np.allclose(
        nms_probabilities(pd.Series(["Very likely", "unlikely", None])),
        [0.7, 0.1, np.nan],
        equal_nan=True,
    )
    assert np.allclose(nms_probabilities(pd.Series([0.25, 1.0, 0.0])), [0.25, 1.0, 0.0])
    with pytest.raises(InputError, match="nms-scale"):
        nms_probabilities(pd.Series([0, 1, 1, 0]))
    assert np.allclose(nms_probabilities(pd.Series([0, 1]), scale="probability"), [0, 1])
    with pytest.raises(InputError, match="row 3"):
        nms_probabilities(pd.Series(["Very likely", "maybe?"]))
    custom = nms_probabilities(
        pd.Series([5, 1]), calibration={5: 0.9, 4: 0.6, 3: 0.3, 2: 0.1, 1: 0.05}
    )
    assert np.allclose(custom, [0.9, 0.05])


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    sim = simulate_vw(600, segments=2, seed=4)
    a = van_westendorp(sim.answers, bootstrap=200, rng=np.random.default_rng(7))
    b = van_westendorp(sim.answers, bootstrap=200, rng=np.random.default_rng(7))
    pd.testing.assert_frame_equal(a.price_points, b.price_points)
    for point in ("pmc", "opp", "ipp", "pme", "revenue_optimal_price"):
        lo, est, hi = a.price_points[[f"{point}_lower", point, f"{point}_upper"]].to_numpy().T
        assert (lo <= est + 1e-9).all() and (est <= hi + 1e-9).all(), point
        assert (hi - lo > 0).all()


def test_bootstrap_curves_match_direct_computation():
    # a replicate that draws every respondent once is the original sample
    from wtp.vanwestendorp import _bootstrap_curves, price_curves

    x = np.array(HAND, dtype=float)
    grid = np.unique(x)
    w = np.array([1.0, 2.0, 1.0, 0.5])
    direct = price_curves(x, w, grid)
    boot = _bootstrap_curves(x, grid, w[None, :], "ge")
    for k in direct:
        np.testing.assert_allclose(boot[k][0], direct[k])


# --------------------------------------------------------------------------------------------
# recovery on simulated worlds


def test_nms_recovers_true_revenue_optimal_price():
    sim = simulate_vw(4000, seed=11)
    r = van_westendorp(sim.answers)
    m = r.price_points.merge(sim.optimal_prices, on="segment", suffixes=("", "_true"))
    rel = (
        m.revenue_optimal_price - m.revenue_optimal_price_true
    ).abs() / m.revenue_optimal_price_true
    # stated tolerance: 10% (5-point scale, rounded prices and 4% inconsistent answers)
    assert (rel < 0.10).all(), m[["segment", "revenue_optimal_price", "revenue_optimal_price_true"]]
    # and the order of segments is right
    assert list(m.sort_values("revenue_optimal_price").segment) == list(
        m.sort_values("revenue_optimal_price_true").segment
    )


def test_acceptable_range_contains_revenue_optimum_and_points_are_ordered():
    sim = simulate_vw(3000, seed=5)
    r = van_westendorp(sim.answers)
    pp = r.price_points
    assert (pp.pmc < pp.pme).all() and (pp.pmc_narrow <= pp.pme_narrow).all()
    assert ((pp.opp > pp.pmc) & (pp.opp < pp.pme)).all()
    assert r.price_points.n_excluded.iloc[-1] == sim.respondents.inconsistent.sum()


# --------------------------------------------------------------------------------------------
# real survey files, checked against an independent computation


def independent_points(df: pd.DataFrame) -> dict[str, float]:
    """A deliberately plain re-implementation of the contract's definitions (loops, no tricks)."""
    ok = (
        (df.too_cheap <= df.cheap) & (df.cheap <= df.expensive) & (df.expensive <= df.too_expensive)
    )
    d = df[ok]
    prices = sorted(set(d.too_cheap) | set(d.cheap) | set(d.expensive) | set(d.too_expensive))
    n = len(d)
    curve = {
        "too_cheap": [sum(v >= p for v in d.too_cheap) / n for p in prices],
        "not_cheap": [1 - sum(v >= p for v in d.cheap) / n for p in prices],
        "cheap": [sum(v >= p for v in d.cheap) / n for p in prices],
        "expensive": [sum(v <= p for v in d.expensive) / n for p in prices],
        "not_expensive": [1 - sum(v <= p for v in d.expensive) / n for p in prices],
        "too_expensive": [sum(v <= p for v in d.too_expensive) / n for p in prices],
    }

    def cross(a, b):
        diff = [x - y for x, y in zip(curve[a], curve[b], strict=True)]
        for i, v in enumerate(diff):
            if v == 0:
                return prices[i]
            if i + 1 < len(diff) and v * diff[i + 1] < 0:
                return prices[i] + (prices[i + 1] - prices[i]) * v / (v - diff[i + 1])
        return float("nan")

    return {
        "pmc": cross("too_cheap", "not_cheap"),
        "opp": cross("too_cheap", "too_expensive"),
        "ipp": cross("cheap", "expensive"),
        "pme": cross("not_expensive", "too_expensive"),
        "n": n,
    }


REAL = [
    ("vw_rational_designer_smartphone/vw_responses.csv", {"respondent": "respondent_id"}),
    ("vw_arnelienemann112/vw_responses.csv", {"respondent": "respondent_id"}),
    ("vw_psm_japan36/vw_responses.csv", {"respondent": "respondent_id"}),
    # the two middle columns are swapped against their labels (see the datasets README)
    (
        "vw_hoekstra_pricesensitivity/example_data.csv",
        {"resp_id": "respondent_id", "getting_expensive": "cheap", "bargain": "expensive"},
    ),
]


@pytest.mark.parametrize(("path", "rename"), REAL, ids=[p.split("/")[0] for p, _ in REAL])
def test_real_surveys_match_independent_computation(tmp_path, path, rename):
    src = DATASETS / path
    if not src.exists():
        pytest.skip("shared datasets not available")
    raw = pd.read_csv(src).rename(columns=rename)
    keep = ["respondent_id", "too_cheap", "cheap", "expensive", "too_expensive"]
    copy = tmp_path / "vw.csv"
    raw[keep].to_csv(copy, index=False)
    answers = attach_segments(validate_vw(read_table(copy)))
    r = van_westendorp(answers)
    ours = r.price_points.set_index("segment").loc["all"]
    ref = independent_points(raw[keep])
    assert ours.n == ref["n"]
    for k in ("pmc", "opp", "ipp", "pme"):
        assert ours[k] == pytest.approx(ref[k], rel=1e-9, nan_ok=True), k


def test_real_nms_text_labels():
    src = DATASETS / "vw_rational_designer_smartphone/vw_responses.csv"
    if not src.exists():
        pytest.skip("shared datasets not available")
    raw = pd.read_csv(src).rename(
        columns={
            "respondent": "respondent_id",
            "pi_cheap": "buy_cheap",
            "pi_expensive": "buy_expensive",
        }
    )
    by_label = van_westendorp(raw.drop(columns=["pi_cheap_num", "pi_expensive_num"]))
    by_number = van_westendorp(
        raw.drop(columns=["buy_cheap", "buy_expensive"]).rename(
            columns={"pi_cheap_num": "buy_cheap", "pi_expensive_num": "buy_expensive"}
        )
    )
    a = by_label.price_points.iloc[0]
    b = by_number.price_points.iloc[0]
    assert a.revenue_optimal_price == pytest.approx(b.revenue_optimal_price)
    assert a.pmc < a.revenue_optimal_price < 2 * a.pme
    # 1000 respondents, all ordered, 991 strictly: ties are consistent unless dropped by option
    assert by_label.price_points.n_excluded.iloc[0] == 0
    assert (
        van_westendorp(
            raw.drop(columns=["pi_cheap_num", "pi_expensive_num"]), ties="drop"
        ).price_points.n_excluded.iloc[0]
        == 9
    )


def test_weighted_ties_are_found_despite_rounding():
    # equal non-round weights: shares are sums of floats, yet equal curves must count as equal
    # found by search: with exact float comparison the weighted OPP moved from 25 to 30
    rows = [
        [5, 25, 25, 25],
        [5, 5, 10, 35],
        [15, 30, 35, 35],
        [20, 25, 40, 50],
        [20, 35, 45, 50],
        [35, 35, 45, 50],
    ]
    plain = van_westendorp(frame(rows))
    weighted = van_westendorp(frame(rows, weight=[0.2757] * len(rows)))
    cols = ["pmc", "opp", "ipp", "pme", "pmc_narrow", "pme_narrow"]
    np.testing.assert_allclose(
        weighted.price_points[cols].to_numpy(), plain.price_points[cols].to_numpy()
    )
    assert weighted.price_points.opp.iloc[0] == 25.0


def test_respondent_price_levels_hand_checked():
    """A respondent's price level is √(expensive × too expensive), over the answers the result
    analysed: 100 and 400 give 200; an out-of-order row is repaired first (sorted) or left out."""
    from wtp.vanwestendorp import price_level, respondent_price_levels

    assert price_level([100.0, 20.0], [400.0, 45.0]) == pytest.approx([200.0, 30.0])
    answers = attach_segments(
        validate_vw(
            pd.DataFrame(
                {
                    "respondent_id": ["a", "b", "c"],
                    "too_cheap": [10, 5, 10],
                    "cheap": [20, 10, 20],
                    "expensive": [100, 20, 400],  # c: expensive above too expensive
                    "too_expensive": [400, 45, 100],
                }
            )
        )
    )
    repaired = respondent_price_levels(van_westendorp(answers, inconsistent="repair"), answers)
    assert repaired.to_dict() == pytest.approx({"a": 200.0, "b": 30.0, "c": 200.0})
    excluded = respondent_price_levels(van_westendorp(answers), answers)
    assert excluded.to_dict() == pytest.approx({"a": 200.0, "b": 30.0})
