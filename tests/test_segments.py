"""Segments: metrics, MAP scores, cohorts and what-if, checked by hand, on known truth and on
real SaaS invoices."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.errors import InputError
from wtp.io import read_table, validate_customers, validate_segments
from wtp.segments import (
    DEFAULT_WEIGHTS,
    LIFETIME_CAP,
    MONTH_DAYS,
    average_customer,
    cohorts,
    parse_grow,
    period_days,
    score_segments,
    score_settings,
    segment_metrics,
    what_if,
)

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
INVOICES = DATASETS / "displayr_q_saas_invoices" / "q_invoice_lines.csv"
CONTRACT = ["segment", "volume", "performance", "potential", "score", "rank"]
runner = CliRunner()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def segments_frame(tmp_path: Path, text: str, *, need_arpa_churn: bool = True) -> pd.DataFrame:
    return validate_segments(
        read_table(write(tmp_path, "segments.csv", text)), need_arpa_churn=need_arpa_churn
    )


# --------------------------------------------------------------------------------------------
# Metrics, by hand

TWO = """
segment,customers,arpa,churn_rate,cac,trials,conversions,conversion_rate,gross_margin,market_size,market_growth
A,300,100,0.05,400,1000,150,,0.8,3000,0.1
B,100,50,0,200,,,0.25,,,
"""


@pytest.fixture
def two(tmp_path):
    return segments_frame(tmp_path, TWO)


def test_metrics_by_hand(two):
    m = segment_metrics(two).set_index("segment")
    a, b = m.loc["A"], m.loc["B"]
    assert a["share"] == pytest.approx(0.75) and b["share"] == pytest.approx(0.25)
    # conversion: conversions / trials for A, the given conversion_rate for B
    assert a["conversion_rate"] == pytest.approx(150 / 1000)
    assert b["conversion_rate"] == pytest.approx(0.25)
    assert (
        a["conversion_source"] == "conversions / trials"
        and b["conversion_source"] == "conversion_rate"
    )
    # LTV = ARPA × margin / churn
    assert a["ltv"] == pytest.approx(100 * 0.8 / 0.05)
    assert a["lifetime"] == pytest.approx(20)
    assert not a["ltv_capped"] and not a["margin_assumed"]
    # B: churn 0 → 60 periods, flagged; margin missing → 1, flagged
    assert b["ltv_capped"] and b["margin_assumed"]
    assert b["gross_margin"] == 1.0 and b["lifetime"] == LIFETIME_CAP
    assert b["ltv"] == pytest.approx(50 * 1.0 * 60)
    assert "capped at 60" in b["notes"] and "assumed 100%" in b["notes"]
    assert a["ltv_cac"] == pytest.approx(1600 / 400)
    assert b["ltv_cac"] == pytest.approx(3000 / 200)
    # CAC payback = CAC / (ARPA × margin), in periods
    assert a["cac_payback"] == pytest.approx(400 / (100 * 0.8))
    assert b["cac_payback"] == pytest.approx(200 / 50)
    assert a["penetration"] == pytest.approx(300 / 3000)
    assert a["headroom"] == pytest.approx(2700)
    assert a["market_growth"] == pytest.approx(0.1)
    assert math.isnan(b["penetration"]) and math.isnan(b["headroom"])


def test_metrics_relative_to_the_customer_weighted_average(two):
    m = segment_metrics(two)
    avg = average_customer(m)
    assert avg["conversion_rate"] == pytest.approx((300 * 0.15 + 100 * 0.25) / 400)
    assert avg["churn_rate"] == pytest.approx((300 * 0.05 + 100 * 0) / 400)
    assert avg["arpa"] == pytest.approx((300 * 100 + 100 * 50) / 400)
    assert avg["ltv"] == pytest.approx((300 * 1600 + 100 * 3000) / 400)
    assert avg["cac"] == pytest.approx((300 * 400 + 100 * 200) / 400)
    assert avg["gross_margin"] == pytest.approx((300 * 0.8 + 100 * 1.0) / 400)
    assert avg["ltv_cac"] == pytest.approx((300 * 4 + 100 * 15) / 400)
    assert avg["cac_payback"] == pytest.approx((300 * 5 + 100 * 4) / 400)
    assert avg["customers"] == 400 and avg["market_size"] == 3000
    m = m.set_index("segment")
    assert m.loc["A", "conversion_rate_vs_avg"] == pytest.approx(0.15 / 0.175)
    assert m.loc["A", "arpa_vs_avg"] == pytest.approx(100 / 87.5)
    assert m.loc["B", "ltv_vs_avg"] == pytest.approx(3000 / 1950)
    assert m.loc["B", "churn_rate_vs_avg"] == 0
    assert m.loc["A", "cac_vs_avg"] == pytest.approx(400 / 350)


def test_metrics_without_optional_columns(tmp_path):
    segs = segments_frame(
        tmp_path, "segment,customers,arpa,churn_rate,cac\nX,10,5,0.1,0\nY,30,8,0.2,20"
    )
    m = segment_metrics(segs).set_index("segment")
    assert m["conversion_rate"].isna().all() and (m["conversion_source"] == "missing").all()
    assert m["market_size"].isna().all() and m["penetration"].isna().all()
    assert "conversion unknown" in m.loc["X", "notes"]
    # CAC 0: payback 0 periods, LTV/CAC undefined and said so
    assert m.loc["X", "cac_payback"] == 0 and math.isnan(m.loc["X", "ltv_cac"])
    assert "CAC 0" in m.loc["X", "notes"]
    s = score_segments(segs)
    assert any("Conversion" in n for n in s.notes) and any("market_size" in n for n in s.notes)
    # CAC 0 is the best LTV/CAC a segment can have
    assert s.scores.set_index("segment").loc["X", "score_ltv_cac"] == 100


def test_metrics_accept_a_raw_frame():
    raw = pd.DataFrame(
        {
            "segment": ["A", "B"],
            "customers": [1, 3],
            "arpa": [10.0, 20.0],
            "churn_rate": [0.1, 0.2],
            "cac": [5.0, 5.0],
        }
    )
    m = segment_metrics(raw)
    assert m["ltv"].tolist() == pytest.approx([100.0, 100.0])
    with pytest.raises(InputError) as err:
        segment_metrics(raw.assign(churn_rate=[0.1, 1.5]))
    assert err.value.row == 3 and err.value.column == "churn_rate"


# --------------------------------------------------------------------------------------------
# MAP score, by hand

THREE = """
segment,customers,arpa,churn_rate,cac,conversion_rate,gross_margin,market_size,market_growth
X,500,100,0.02,1000,0.2,1,5000,0.1
Y,300,100,0.04,500,0.1,1,1000,0.3
Z,200,50,0.05,2000,0.3,1,10200,0.2
"""


def test_score_by_hand(tmp_path):
    s = score_segments(segments_frame(tmp_path, THREE))
    t = s.scores.set_index("segment")
    # metric scores: min–max, best 100 (lower is better for churn and CAC)
    assert t["score_share"].to_dict() == pytest.approx(
        {"X": 100, "Y": 100 * (0.3 - 0.2) / 0.3, "Z": 0}
    )
    assert t["score_conversion_rate"].to_dict() == pytest.approx({"X": 50, "Y": 0, "Z": 100})
    assert t["score_churn_rate"].to_dict() == pytest.approx({"X": 100, "Y": 100 / 3, "Z": 0})
    assert t["score_arpa"].to_dict() == pytest.approx({"X": 100, "Y": 100, "Z": 0})
    # LTV/CAC: X 5000/1000 = 5, Y 2500/500 = 5, Z 1000/2000 = 0.5
    assert t["ltv_cac"].to_dict() == pytest.approx({"X": 5, "Y": 5, "Z": 0.5})
    assert t["score_ltv_cac"].to_dict() == pytest.approx({"X": 100, "Y": 100, "Z": 0})
    assert t["score_headroom"].to_dict() == pytest.approx(
        {"X": 100 * 3800 / 9300, "Y": 0, "Z": 100}
    )
    assert t["score_market_growth"].to_dict() == pytest.approx({"X": 0, "Y": 100, "Z": 50})
    assert t["score_cac"].to_dict() == pytest.approx({"X": 100 * 1000 / 1500, "Y": 100, "Z": 0})
    # axes: weighted mean of metric scores, best segment = 100
    perf = {"X": (50 + 100 + 100 + 100) / 4, "Y": (0 + 100 / 3 + 100 + 100) / 4, "Z": 100 / 4}
    pot = {"X": (100 * 3800 / 9300 + 0 + 100 * 1000 / 1500) / 3, "Y": 200 / 3, "Z": 150 / 3}
    vol = {"X": 100, "Y": 100 / 3, "Z": 0}
    perf100 = {k: 100 * v / max(perf.values()) for k, v in perf.items()}
    pot100 = {k: 100 * v / max(pot.values()) for k, v in pot.items()}
    assert t["volume"].to_dict() == pytest.approx(vol)
    assert t["performance"].to_dict() == pytest.approx(perf100)
    assert t["potential"].to_dict() == pytest.approx(pot100)
    raw = {k: (vol[k] + perf100[k] + pot100[k]) / 3 for k in vol}
    assert t["score"].to_dict() == pytest.approx(
        {k: 100 * v / max(raw.values()) for k, v in raw.items()}
    )
    assert t["score"].to_dict() == pytest.approx({"X": 100, "Y": 78.8136, "Z": 40.8149}, abs=1e-3)
    assert t["rank"].to_dict() == {"X": 1, "Y": 2, "Z": 3}
    # Z loses money on every customer: flagged too costly, not a focus
    assert s.flags.to_dict("records") == [
        {"segment": "Z", "flag": "too costly", "reason": s.flags["reason"].iloc[0]}
    ]
    assert "LTV/CAC 0.50" in s.flags["reason"].iloc[0]
    assert s.focus["segment"].tolist() == ["X", "Y"]
    assert all(s.focus["reason"].str.len() > 10)
    assert t["focus"].to_dict() == {"X": True, "Y": True, "Z": False}
    assert s.scores.columns[:6].tolist() == CONTRACT
    assert s.scores["segment"].tolist() == ["X", "Y", "Z"]  # best first
    assert set(s.summary().columns) >= set(CONTRACT)
    assert s.to_frame().equals(s.scores)


def test_score_weights_are_overridable(tmp_path):
    segs = segments_frame(tmp_path, THREE)
    only_perf = score_segments(segs, weights={"volume": 0, "potential": 0}).scores.set_index(
        "segment"
    )
    assert only_perf["volume"].isna().all() and only_perf["potential"].isna().all()
    assert only_perf["score"].to_dict() == pytest.approx(only_perf["performance"].to_dict())
    # leaving a metric out changes its axis: volume and potential only through CAC
    s = score_segments(segs, weights={"headroom": 0, "market_growth": 0})
    t = s.scores.set_index("segment")
    assert t["potential"].to_dict() == pytest.approx({"X": 100 * (1000 / 1500), "Y": 100, "Z": 0})
    assert s.weights["headroom"] == 0 and s.weights["cac"] == DEFAULT_WEIGHTS["cac"]
    wt = s.weight_table.set_index("metric")
    assert not wt.loc["headroom", "used"] and wt.loc["headroom", "why_not"] == "weight 0"
    with pytest.raises(InputError, match="one of volume"):
        score_segments(segs, weights={"colour": 1})
    with pytest.raises(InputError, match="0 or more"):
        score_segments(segs, weights={"cac": -1})


def test_score_settings_from_a_study():
    assert score_settings({"min_share": 0.1, "max_focus": 2, "weights": {"potential": 2}}) == {
        "min_share": 0.1,
        "max_focus": 2,
        "weights": {"potential": 2},
    }
    assert score_settings(None) == {}
    for bad, column in [
        ({"min_shar": 0.1}, "segments.min_shar"),
        ({"max_focus": 0}, "segments.max_focus"),
        ({"min_share": "x"}, "segments.min_share"),
    ]:
        with pytest.raises(InputError) as err:
            score_settings(bad)
        assert err.value.column == column and err.value.file == "study.toml"
    with pytest.raises(InputError, match="one of volume"):
        score_settings({"weights": {"size": 1}})


def test_too_small_flag_and_focus_rules(tmp_path):
    text = """
segment,customers,arpa,churn_rate,cac,market_size
Big,960,50,0.03,100,10000
Tiny,20,80,0.01,100,200
Niche,20,80,0.01,100,5000
"""
    s = score_segments(segments_frame(tmp_path, text))
    flags = s.flags.set_index("segment")
    # Tiny: 2% of customers and 1.3% of the market; Niche holds 33% of the market: room to grow
    assert flags.loc["Tiny", "flag"] == "too small"
    assert "2.0% of customers" in flags.loc["Tiny", "reason"]
    assert "Niche" not in flags.index and "Big" not in flags.index
    assert "Tiny" not in set(s.focus["segment"])
    s2 = score_segments(segments_frame(tmp_path, text), min_share=0.01)
    assert s2.flags.empty
    # without market sizes a small segment has nothing to show room to grow
    no_market = score_segments(
        segments_frame(
            tmp_path,
            text.replace(",market_size", "")
            .replace(",10000", "")
            .replace(",200", "")
            .replace(",5000", ""),
        )
    )
    assert set(no_market.flags["segment"]) == {"Tiny", "Niche"}


def test_focus_when_everything_is_flagged(tmp_path):
    s = score_segments(
        segments_frame(
            tmp_path, "segment,customers,arpa,churn_rate,cac\nA,10,1,0.5,100\nB,10,1,0.5,200"
        )
    )
    assert s.focus.empty and set(s.flags["flag"]) == {"too costly"}
    assert any("no segment to focus" in n for n in s.notes)


def test_scores_are_0_to_100_with_the_best_at_100():
    rng = np.random.default_rng(7)
    for _ in range(25):
        k = int(rng.integers(2, 9))
        raw = pd.DataFrame(
            {
                "segment": [f"S{i}" for i in range(k)],
                "customers": rng.integers(0, 500, k),
                "arpa": rng.uniform(5, 500, k).round(2),
                "churn_rate": np.where(rng.random(k) < 0.2, 0.0, rng.uniform(0.001, 0.2, k)).round(
                    4
                ),
                "cac": rng.uniform(0, 3000, k).round(0),
                "conversion_rate": rng.uniform(0, 1, k).round(3),
                "market_size": rng.integers(500, 50000, k),
                "market_growth": rng.uniform(-0.2, 0.5, k).round(3),
            }
        )
        if raw["customers"].sum() == 0:
            continue
        s = score_segments(raw).scores
        for c in CONTRACT[1:5]:
            assert s[c].between(0, 100).all() and s[c].max() == pytest.approx(100), c
        assert s["rank"].min() == 1 and s.loc[s["rank"] == 1, "score"].eq(100).all()
        assert (np.diff(s["score"]) <= 1e-12).all()  # best first
        assert 0 <= s["focus"].sum() <= 3


def test_single_segment_scores_100(tmp_path):
    s = score_segments(
        segments_frame(tmp_path, "segment,customers,arpa,churn_rate,cac\nOnly,10,10,0.1,10")
    )
    assert s.scores[CONTRACT[1:5]].iloc[0].tolist() == [100, 100, 100, 100]
    assert s.scores["rank"].iloc[0] == 1 and s.focus["segment"].tolist() == ["Only"]


# --------------------------------------------------------------------------------------------
# What if, by hand


def test_what_if_by_hand(tmp_path):
    segs = segments_frame(
        tmp_path,
        "segment,customers,arpa,churn_rate,cac,conversion_rate\nA,100,10,0.05,50,0.1\nB,100,30,0.01,50,0.3",
    )
    r = what_if(score_segments(segs), {"B": 0.10})
    t = r.table.set_index("metric")
    assert t.loc["customers", "after"] == pytest.approx(210)
    assert t.loc["conversion_rate", "before"] == pytest.approx(0.2)
    assert t.loc["conversion_rate", "after"] == pytest.approx((100 * 0.1 + 110 * 0.3) / 210)
    assert t.loc["churn_rate", "after"] == pytest.approx((100 * 0.05 + 110 * 0.01) / 210)
    assert t.loc["arpa", "after"] == pytest.approx((100 * 10 + 110 * 30) / 210)
    assert t.loc["ltv", "after"] == pytest.approx((100 * 200 + 110 * 3000) / 210)
    assert t.loc["revenue", "before"] == pytest.approx(4000) and t.loc[
        "revenue", "after"
    ] == pytest.approx(4300)
    assert t.loc["revenue", "change_pct"] == pytest.approx(0.075)
    assert t.loc["conversion_rate", "working"] == "(100 × 10% + 110 × 30%) / 210"
    a = r.arithmetic.set_index("segment")
    assert (
        a.loc["B", "customers_after"] == pytest.approx(110) and a.loc["A", "customers_after"] == 100
    )
    assert a.loc["all", "revenue_after"] == pytest.approx(4300)
    assert a.loc["B", "share_after"] == pytest.approx(110 / 210)
    # the same from a segments frame and from "SEGMENT=10%" text
    r2 = what_if(segs, "B=10%")
    assert r2.table["after"].tolist() == pytest.approx(r.table["after"].tolist())
    assert r.to_frame().columns[:5].tolist() == [
        "metric",
        "before",
        "after",
        "change",
        "change_pct",
    ]
    with pytest.raises(InputError, match="a segment in segments.csv"):
        what_if(segs, {"C": 0.1})
    with pytest.raises(InputError, match="growth above -1"):
        what_if(segs, {"A": -1.0})


def test_parse_grow():
    assert parse_grow(["SMB=10%"]) == {"SMB": pytest.approx(0.10)}
    assert parse_grow("SMB = 0.1") == {"SMB": pytest.approx(0.10)}
    assert parse_grow(["Mid-market=-5.5%"]) == {"Mid-market": pytest.approx(-0.055)}
    assert parse_grow(["a=b=10%"]) == {"a=b": pytest.approx(0.10)}
    assert parse_grow(["SMB=12,5%"]) == {"SMB": pytest.approx(0.125)}
    for bad in ["SMB", "SMB=", "SMB=ten", "=10%", "SMB=10", "SMB=-100%", "SMB=10%%"]:
        with pytest.raises(InputError) as err:
            parse_grow([bad])
        assert err.value.file == "--grow", bad
    with pytest.raises(InputError) as err:
        parse_grow(["Nope=10%"], ["SMB", "Startups"])
    assert err.value.column == "segment" and "SMB, Startups" in str(err.value)


# --------------------------------------------------------------------------------------------
# Cohorts, by hand

CUSTOMERS = """
customer_id,segment,start_date,end_date,mrr
c1,A,2024-01-01,2024-01-11,10
c2,A,2024-01-01,,20
c3,A,2024-01-06,2024-01-26,30
c4,B,2024-02-01,2025-03-01,40
c5,B,2025-01-15,,50
"""


@pytest.fixture
def hand_customers(tmp_path):
    return validate_customers(read_table(write(tmp_path, "customers.csv", CUSTOMERS)))


def test_cohorts_by_hand(hand_customers):
    r = cohorts(hand_customers, period="day", as_of="2024-12-31", late_starts="exclude")
    # c5 starts after as_of: left out, with the reason
    assert r.excluded["customer_id"].tolist() == ["c5"] and r.excluded["row"].tolist() == [6]
    assert r.n_customers == 5 and r.n_used == 4
    s = r.survival[r.survival["segment"] == "A"].set_index("time")
    # Kaplan–Meier: 3 at risk, one leaves at day 10 (2/3), two at risk, one leaves at day 20 (1/3)
    assert s.loc[0.0, "survival"] == 1
    assert s.loc[10.0, "survival"] == pytest.approx(2 / 3) and s.loc[10.0, "at_risk"] == 3
    assert s.loc[20.0, "survival"] == pytest.approx(1 / 3) and s.loc[20.0, "at_risk"] == 2
    # Greenwood: se = S sqrt(Σ d / (n (n − d)))
    assert s.loc[10.0, "se"] == pytest.approx(2 / 3 * math.sqrt(1 / (3 * 2)))
    assert s.loc[20.0, "se"] == pytest.approx(1 / 3 * math.sqrt(1 / 6 + 1 / 2))
    assert (s["lower"] <= s["survival"]).all() and (s["survival"] <= s["upper"]).all()
    # the curve runs flat to the last follow-up (c2, 365 days), one customer still at risk
    assert (
        s.index.max() == 365
        and s.loc[365.0, "survival"] == pytest.approx(1 / 3)
        and s.loc[365.0, "at_risk"] == 1
    )
    # log-log interval at day 10, by hand
    S, se, z = 2 / 3, 2 / 3 * math.sqrt(1 / 6), 1.959963984540054
    se_t = se / (S * abs(math.log(S)))
    assert s.loc[10.0, "lower"] == pytest.approx(
        math.exp(-math.exp(math.log(-math.log(S)) + z * se_t))
    )
    # revenue-weighted: 60 of revenue at risk, 10 leaves → 50/60; then 30 of 50 leaves → 20/60
    assert s.loc[10.0, "revenue_survival"] == pytest.approx(50 / 60)
    assert s.loc[20.0, "revenue_survival"] == pytest.approx(20 / 60)
    imp = r.implied.set_index("segment")
    # hazard = customers lost / customer-periods at risk: 2 / (10 + 365 + 20) days; churn_rate,
    # the share lost per period, = 1 − exp(−hazard), and its interval maps the same way
    assert imp.loc["A", "churned"] == 2 and imp.loc["A", "exposure"] == pytest.approx(395)
    assert imp.loc["A", "hazard"] == pytest.approx(2 / 395)
    assert imp.loc["A", "churn_rate"] == pytest.approx(1 - math.exp(-2 / 395))
    # χ²(0.025, 4) / 2 and χ²(0.975, 6) / 2
    assert imp.loc["A", "churn_lower"] == pytest.approx(1 - math.exp(-0.2422 / 395), rel=1e-3)
    assert imp.loc["A", "churn_upper"] == pytest.approx(1 - math.exp(-7.2247 / 395), rel=1e-3)
    assert imp.loc["A", "median_lifetime"] == pytest.approx(20)
    # ARPA: mean mrr of accounts active at as_of (c2), per day; LTV = ARPA / churn
    assert imp.loc["A", "arpa"] == pytest.approx(20 / MONTH_DAYS)
    assert imp.loc["A", "ltv"] == pytest.approx(20 / MONTH_DAYS / (1 - math.exp(-2 / 395)))
    # B: c4 ends after as_of, so it is still a customer: no churn → LTV capped and flagged
    assert imp.loc["B", "churned"] == 0 and imp.loc["B", "churn_rate"] == 0
    assert imp.loc["B", "ltv_capped"] and imp.loc["B", "ltv"] == pytest.approx(
        40 / MONTH_DAYS * LIFETIME_CAP
    )
    assert imp.loc["all", "customers"] == 4 and imp.loc["all", "churned"] == 2
    # LTV over time: area under the revenue survival curve × ARPA of new accounts
    c = r.ltv_curve[r.ltv_curve["segment"] == "A"].set_index("time")
    assert c.loc[30.0, "expected_lifetime"] == pytest.approx(10 + 10 * 50 / 60 + 10 * 20 / 60)
    assert c.loc[30.0, "ltv"] == pytest.approx(20 / MONTH_DAYS * (10 + 10 * 50 / 60 + 10 * 20 / 60))
    assert c.loc[5.0, "expected_lifetime"] == pytest.approx(5)


def test_cohort_retention_table_by_hand(hand_customers):
    r = cohorts(hand_customers, period="day", as_of="2024-12-31", late_starts="exclude")
    t = r.retention
    a = t[(t["segment"] == "A") & (t["cohort"] == "2024-01")].set_index("age")
    # complete cells only: the cohort's last start (Jan 6) was observable for 360 days
    assert a.index.max() == 360 and a["customers"].eq(3).all()
    # c1 left after 10 days: still a customer at age 10, gone at 11; c3 gone from age 21
    assert a.loc[10, "active"] == 3 and a.loc[11, "active"] == 2 and a.loc[21, "active"] == 1
    assert a.loc[11, "retention"] == pytest.approx(2 / 3)
    assert a.loc[11, "revenue_retention"] == pytest.approx(50 / 60)
    assert a.loc[21, "revenue_retention"] == pytest.approx(20 / 60)
    assert set(t["segment"]) == {"A", "B", "all"}


def test_cohorts_defaults_and_months(hand_customers):
    r = cohorts(hand_customers)
    # as_of defaults to the latest date in customers.csv (c5 starts 2025-01-15, c4 ends 2025-03-01)
    assert r.as_of == pd.Timestamp("2025-03-01") and r.excluded.empty
    imp = r.implied.set_index("segment")
    exposure_days = 10 + (pd.Timestamp("2025-03-01") - pd.Timestamp("2024-01-01")).days + 20
    assert imp.loc["A", "churn_rate"] == pytest.approx(
        1 - math.exp(-2 / (exposure_days / MONTH_DAYS))
    )
    assert imp.loc["B", "churned"] == 1  # c4 ends on as_of: a churn
    assert imp.loc["A", "arpa"] == pytest.approx(20)  # mrr is already monthly
    assert r.summary().columns[0] == "segment" and r.to_frame().equals(r.survival)
    # an account without mrr is left out of ARPA and weighs nothing in revenue retention
    part = hand_customers.assign(
        mrr=hand_customers["mrr"].where(hand_customers["customer_id"] != "c3")
    )
    imp = cohorts(part, as_of="2024-12-31", period="day", late_starts="exclude").implied.set_index(
        "segment"
    )
    assert imp.loc["A", "arpa_acquired"] == pytest.approx(15 / MONTH_DAYS)


def test_cohorts_supply_missing_churn_and_arpa(tmp_path, hand_customers):
    segs = segments_frame(
        tmp_path, "segment,customers,cac,arpa\nA,3,100,\nB,1,100,55", need_arpa_churn=False
    )
    early = cohorts(hand_customers, period="day", as_of="2024-12-31", late_starts="exclude")
    m = segment_metrics(
        segs, hand_customers, period="day", as_of="2024-12-31", cohort_result=early
    ).set_index("segment")
    assert (
        m.loc["A", "churn_rate"] == pytest.approx(1 - math.exp(-2 / 395))
        and m.loc["A", "churn_source"] == "customers.csv"
    )
    assert (
        m.loc["A", "arpa"] == pytest.approx(20 / MONTH_DAYS)
        and m.loc["A", "arpa_source"] == "customers.csv"
    )
    # segments.csv wins where it has the number
    assert m.loc["B", "arpa"] == 55 and m.loc["B", "arpa_source"] == "segments.csv"
    assert m.loc["B", "ltv_capped"]
    assert m.loc["A", "churn_rate_cohort"] == pytest.approx(1 - math.exp(-2 / 395))
    # a segment customers.csv cannot estimate is an input error naming the cell
    segs2 = segments_frame(
        tmp_path, "segment,customers,cac\nA,3,100\nB,1,100\nC,5,100", need_arpa_churn=False
    )
    with pytest.raises(InputError) as err:
        segment_metrics(
            segs2, hand_customers, period="day", as_of="2024-12-31", cohort_result=early
        )
    assert err.value.row == 4 and err.value.column == "churn_rate"
    assert "no customers of this segment" in str(err.value)
    # without customers.csv the columns are required
    with pytest.raises(InputError, match="churn_rate"):
        segment_metrics(
            segments_frame(tmp_path, "segment,customers,cac,arpa\nA,3,100,1", need_arpa_churn=False)
        )


def test_periods(hand_customers):
    r = cohorts(hand_customers, period="year", as_of="2024-12-31", late_starts="exclude")
    # hazard per year = churned / customer-years at risk = 1.85, not a share; churn per year,
    # the share lost in a year, = 1 − exp(−1.85) = 0.84
    imp = r.implied.set_index("segment")
    assert imp.loc["A", "hazard"] == pytest.approx(2 / (395 / 365.25))
    assert imp.loc["A", "churn_rate"] == pytest.approx(1 - math.exp(-2 / (395 / 365.25)))
    assert period_days("monthly") == MONTH_DAYS and period_days("quarter") == pytest.approx(
        365.25 / 4
    )
    with pytest.raises(InputError, match="study.period"):
        period_days("fortnight")


def test_no_mrr_and_no_arpa_is_an_input_error(tmp_path, hand_customers):
    segs = segments_frame(
        tmp_path,
        "segment,customers,cac,churn_rate\nA,3,100,0.1\nB,1,100,0.1",
        need_arpa_churn=False,
    )
    with pytest.raises(InputError) as err:
        segment_metrics(segs, hand_customers.drop(columns="mrr"))
    assert err.value.column == "arpa" and "no mrr column" in str(err.value)


# --------------------------------------------------------------------------------------------
# Known-hazard recovery


@pytest.fixture(scope="module")
def simulated():
    from wtp.simulate import simulate_customers

    return simulate_customers(n_per_segment=2000, seed=11)


def test_survival_recovers_known_hazard(simulated):
    r = cohorts(simulated.customers, as_of=simulated.as_of)
    imp = r.implied.set_index("segment")
    for seg, h in simulated.churn_rate.items():
        est, lo, hi = imp.loc[seg, ["churn_rate", "churn_lower", "churn_upper"]]
        share = -math.expm1(-h)  # churn_rate is the share lost per month, 1 − e^(−hazard)
        se = est / math.sqrt(imp.loc[seg, "churned"])
        # constant-hazard estimate within 3 standard errors and 12% of the truth
        assert abs(est - share) < 3 * se and est == pytest.approx(share, rel=0.12), seg
        assert lo < share < hi, seg
        # Kaplan–Meier after 12 and 24 months against exp(-h t), within 3 of its own se
        s = r.survival[r.survival["segment"] == seg]
        for t in (12, 24):
            i = np.searchsorted(s["time"].to_numpy(), t, side="right") - 1
            km, km_se = s["survival"].iloc[i], s["se"].iloc[i]
            assert abs(km - math.exp(-h * t)) < 3 * km_se + 1e-3, (seg, t)
        # ARPA of active accounts: mrr is lognormal around the segment's ARPA
        assert imp.loc[seg, "arpa"] == pytest.approx(simulated.arpa[seg], rel=0.05), seg
    # revenue retention exists and is a share
    assert r.retention["revenue_retention"].between(0, 1).all()


def test_metrics_from_simulated_cohorts(simulated):
    segs = simulated.segments.drop(columns=["arpa", "churn_rate"])
    s = score_segments(segs, simulated.customers, as_of=simulated.as_of)
    m = s.metrics.set_index("segment")
    for seg, h in simulated.churn_rate.items():
        assert m.loc[seg, "churn_rate"] == pytest.approx(-math.expm1(-h), rel=0.15)
        assert m.loc[seg, "churn_source"] == "customers.csv"
    assert s.cohorts is not None and s.scores["rank"].min() == 1


# --------------------------------------------------------------------------------------------
# Real SaaS invoices (Displayr, flipRevenueMetrics): customers built from invoice lines


def customers_from_invoices(path: Path) -> tuple[pd.DataFrame, pd.Timestamp]:
    """customer = CustOrgID, segment = country_cat, start = first ValidFrom; end = last ValidTo
    when the last invoice was not renewed or was cancelled and ended before the data's end (the
    latest invoice date); mrr = AUD invoiced / months from start to the last ValidTo."""
    lines = pd.read_csv(path, parse_dates=["ValidFrom", "ValidTo"], date_format="%Y-%m-%d")
    lines["country_cat"] = lines["country_cat"].str.strip()
    # one line runs to 2090: no invoice period is longer than three years
    lines["ValidTo"] = lines["ValidTo"].clip(upper=lines["ValidFrom"] + pd.Timedelta(days=3 * 366))
    data_end = lines["ValidFrom"].max()
    lines = lines.sort_values(["CustOrgID", "ValidTo", "ValidFrom"])
    g = lines.groupby("CustOrgID", sort=True)
    last = g.tail(1).set_index("CustOrgID")
    first = g["ValidFrom"].min()
    lapsed = (last["Renewed"] == 0) | (last["cancelled"] == 1)
    ended = lapsed & (last["ValidTo"] < data_end)
    months = (last["ValidTo"] - first).dt.days / MONTH_DAYS
    customers = pd.DataFrame(
        {
            "customer_id": first.index,
            "segment": g["country_cat"].first().to_numpy(),
            "start_date": first.dt.strftime("%Y-%m-%d").to_numpy(),
            "end_date": np.where(ended, last["ValidTo"].dt.strftime("%Y-%m-%d"), ""),
            "mrr": (g["AUD"].sum() / months.clip(lower=1)).round(2).to_numpy(),
        }
    )
    return customers, data_end


@pytest.fixture(scope="module")
def invoices():
    if not INVOICES.exists():
        pytest.skip("displayr_q_saas_invoices not in ../shared/datasets")
    return customers_from_invoices(INVOICES)


def _product_limit(t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An independent Kaplan–Meier: Π (1 − deaths / at risk) over distinct event times."""
    times = np.unique(t[e])
    at_risk = (t[None, :] >= times[:, None]).sum(axis=1)
    deaths = ((t[None, :] == times[:, None]) & e[None, :]).sum(axis=1)
    return times, np.cumprod(1 - deaths / at_risk)


def test_real_invoices_cohorts(invoices):
    customers, data_end = invoices
    r = cohorts(customers, as_of=data_end)
    assert r.n_customers == 778 and r.excluded.empty
    imp = r.implied.set_index("segment")
    valid = validate_customers(customers)
    end = valid["end_date"]
    churned = end.notna() & (end <= data_end)
    stop = end.where(churned, data_end)
    months = ((stop - valid["start_date"]).dt.days / MONTH_DAYS).to_numpy()
    assert imp.loc["all", "churned"] == churned.sum() == 243
    assert imp.loc["all", "hazard"] == pytest.approx(churned.sum() / months.sum())
    assert imp.loc["all", "churn_rate"] == pytest.approx(-math.expm1(-churned.sum() / months.sum()))
    # statsmodels' Kaplan–Meier agrees with an independent product-limit computation
    for seg in ("all", "Australia", "United States"):
        mask = np.ones(len(valid), bool) if seg == "all" else (valid["segment"] == seg).to_numpy()
        times, surv = _product_limit(months[mask], churned.to_numpy()[mask])
        s = r.survival[(r.survival["segment"] == seg) & (r.survival["events"] > 0)]
        assert np.allclose(s["time"], times) and np.allclose(s["survival"], surv, atol=1e-12)
    for _, s in r.survival.groupby("segment"):
        assert (np.diff(s["survival"]) <= 1e-12).all() and s["survival"].between(0, 1).all()
        assert ((s["lower"] <= s["survival"] + 1e-12) & (s["survival"] <= s["upper"] + 1e-12)).all()
    # annual contracts: nine in ten churns fall within a month of an anniversary
    ev = r.survival[(r.survival["segment"] == "all") & (r.survival["events"] > 0)]
    near = (ev["time"] % 12 < 1) | (ev["time"] % 12 > 11)
    assert ev.loc[near, "events"].sum() / ev["events"].sum() > 0.85
    # bigger accounts stay longer: revenue retention above customer retention after 3 years
    s = r.survival[r.survival["segment"] == "all"]
    at36 = s[s["time"] <= 36].iloc[-1]
    assert at36["revenue_survival"] > at36["survival"] + 0.1
    # the cohort table lists complete cells only
    t = r.retention
    assert (t.loc[t["age"] == 0, "retention"] == 1).all()
    # cohorts whose accounts paid nothing have no revenue to retain
    assert t["revenue_retention"].dropna().between(0, 1).all()
    assert imp.loc["all", "churn_rate"] == pytest.approx(0.0105, abs=5e-4)


def test_real_invoices_through_the_cli(invoices, tmp_path):
    customers, data_end = invoices
    customers.to_csv(tmp_path / "customers.csv", index=False)
    names = sorted(customers["segment"].unique())
    active = (
        customers[customers["end_date"] == ""]
        .groupby("segment")
        .size()
        .reindex(names, fill_value=0)
    )
    # segments.csv without arpa/churn_rate: customers.csv supplies them (contract §5)
    segs = pd.DataFrame({"segment": active.index, "customers": active.to_numpy(), "cac": 1500.0})
    segs.to_csv(tmp_path / "segments.csv", index=False)
    (tmp_path / "study.toml").write_text(
        f'[study]\nname = "Q invoices"\ncurrency = "AUD"\nas_of = "{data_end.date()}"\n'
    )
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "segments",
            str(tmp_path / "segments.csv"),
            "--study",
            str(tmp_path),
            "--out",
            str(out),
            "--grow",
            "United Kingdom=10%",
        ],
    )
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(out / "segment_scores.csv")
    assert len(scores) == len(active) and (scores["churn_source"] == "customers.csv").all()
    assert scores.set_index("segment").loc["Australia", "volume"] == 100
    flags = pd.read_csv(out / "flags.csv")
    assert (flags["flag"] == "too small").sum() >= 10  # most countries hold a handful of customers
    assert (out / "survival.csv").exists() and (out / "what_if.csv").exists()


# --------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def sim_files(tmp_path):
    from wtp.simulate import simulate_customers

    sim = simulate_customers(n_per_segment=150, seed=5)
    sim.segments.to_csv(tmp_path / "segments.csv", index=False)
    sim.customers.to_csv(tmp_path / "customers.csv", index=False)
    return tmp_path


def test_cli_writes_every_table_and_the_report(sim_files):
    out = sim_files / "out"
    args = [
        "segments",
        str(sim_files / "segments.csv"),
        "--customers",
        str(sim_files / "customers.csv"),
        "--grow",
        "SMB=10%",
        "--out",
        str(out),
        "--seed",
        "3",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for name in (
        "segment_scores.csv",
        "survival.csv",
        "cohort_retention.csv",
        "ltv_curve.csv",
        "cohort_summary.csv",
        "what_if.csv",
        "what_if_arithmetic.csv",
        "flags.csv",
        "focus.csv",
        "weights.csv",
        "report.html",
    ):
        assert (out / name).exists(), name
    scores = pd.read_csv(out / "segment_scores.csv")
    assert scores.columns[:6].tolist() == CONTRACT
    assert (
        scores["rank"].tolist() == sorted(scores["rank"])
        and scores[CONTRACT[1:5]].max().tolist() == [100] * 4
    )
    assert scores[CONTRACT[1:5]].min().min() >= 0
    wi = pd.read_csv(out / "what_if.csv").set_index("metric")
    assert wi.loc["customers", "after"] == pytest.approx(wi.loc["customers", "before"] + 240)
    html = (out / "report.html").read_text()
    for text in (
        "<svg",
        "What if",
        "Kaplan",
        "too small",
        "Average customer",
        "Σ customers × conversion / Σ customers",
        "Cohort retention",
    ):
        assert text in html, text
    # a one-pager per segment
    for slug in ("startups", "smb", "mid-market", "enterprise"):
        assert f'id="segment-{slug}"' in html, slug
    # same seed and data, same numbers
    res2 = runner.invoke(app, [*args[:-4], "--out", str(sim_files / "again"), "--seed", "3"])
    assert res2.exit_code == 0
    assert (sim_files / "again" / "segment_scores.csv").read_text() == (
        out / "segment_scores.csv"
    ).read_text()


def test_cli_without_customers_and_without_grow(sim_files):
    out = sim_files / "plain"
    res = runner.invoke(app, ["segments", str(sim_files / "segments.csv"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "segment_scores.csv").exists() and not (out / "survival.csv").exists()
    assert not (out / "what_if.csv").exists()


def test_cli_study_supplies_customers_period_as_of_and_weights(sim_files):
    toml = '[study]\nname = "S"\nperiod = "month"\nas_of = "2026-06-30"\n[segments]\nmax_focus = 1\n[segments.weights]\nvolume = 0\n'
    (sim_files / "study.toml").write_text(toml)
    out = sim_files / "study_out"
    res = runner.invoke(
        app,
        ["segments", str(sim_files / "segments.csv"), "--study", str(sim_files), "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert (out / "survival.csv").exists()
    assert "2026-06-30" in (out / "report.html").read_text()
    scores = pd.read_csv(out / "segment_scores.csv")
    assert scores["volume"].isna().all() and scores["focus"].sum() == 1
    (sim_files / "study.toml").write_text(toml.replace("max_focus = 1", "max_focus = 'many'"))
    res = runner.invoke(
        app,
        ["segments", str(sim_files / "segments.csv"), "--study", str(sim_files), "--out", str(out)],
    )
    assert res.exit_code == 2 and "study.toml, column 'segments.max_focus'" in res.output


def _bad(tmp_path, segments_text, *extra, customers_text=None):
    seg = write(tmp_path, "segments.csv", segments_text)
    args = ["segments", str(seg), "--out", str(tmp_path / "out")]
    if customers_text is not None:
        args += ["--customers", str(write(tmp_path, "customers.csv", customers_text))]
    res = runner.invoke(app, [*args, *extra])
    return res, tmp_path / "out"


OK_SEGMENTS = "segment,customers,arpa,churn_rate,cac\nSMB,100,50,0.03,300\nStartups,80,30,0.05,100"


@pytest.mark.parametrize(
    ("text", "row", "column"),
    [
        ("segment,customers,arpa,churn_rate,cac\nSMB,100,50,-0.03,300", 2, "churn_rate"),
        (
            "segment,customers,arpa,churn_rate,cac\nSMB,100,50,0.03,300\nBig,100,50,1.2,300",
            3,
            "churn_rate",
        ),
        ("segment,customers,arpa,churn_rate,cac\nSMB,100,-5,0.03,300", 2, "arpa"),
        ("segment,customers,arpa,cac\nSMB,100,50,300", 1, "churn_rate"),
    ],
)
def test_cli_rejects_bad_segments(tmp_path, text, row, column):
    res, out = _bad(tmp_path, text)
    assert res.exit_code == 2
    assert (
        "segments.csv" in res.output
        and f"row {row}" in res.output
        and f"column '{column}'" in res.output
    )
    assert not out.exists()


def test_cli_rejects_unknown_segment_in_customers(tmp_path):
    customers = "customer_id,segment,start_date,end_date\nc1,SMB,2024-01-01,\nc2,Enterprise,2024-02-01,2024-05-01"
    res, out = _bad(tmp_path, OK_SEGMENTS, customers_text=customers)
    assert res.exit_code == 2
    assert "customers.csv, row 3, column 'segment'" in res.output and "Enterprise" in res.output
    assert not out.exists()


def test_cli_rejects_bad_customers_dates(tmp_path):
    customers = "customer_id,segment,start_date,end_date\nc1,SMB,2024-01-01,2023-01-01"
    res, _ = _bad(tmp_path, OK_SEGMENTS, customers_text=customers)
    assert res.exit_code == 2 and "row 2, column 'end_date'" in res.output


@pytest.mark.parametrize(
    ("grow", "needle"),
    [
        (
            "Enterprise=10%",
            "column 'segment': expected a segment in segments.csv (SMB, Startups), found 'Enterprise'",
        ),
        ("SMB", "expected SEGMENT=PERCENT"),
        ("SMB=lots", "expected SEGMENT=PERCENT"),
        ("SMB=10", "a percentage like 'SMB=10%'"),
        ("SMB=-150%", "growth above -100%"),
    ],
)
def test_cli_rejects_bad_grow(tmp_path, grow, needle):
    res, out = _bad(tmp_path, OK_SEGMENTS, "--grow", grow)
    assert res.exit_code == 2, res.output
    assert "--grow" in res.output and needle in res.output
    assert not out.exists()


def test_cli_reads_xlsx_and_parquet_like_csv(sim_files):
    seg = pd.read_csv(sim_files / "segments.csv")
    seg.to_excel(sim_files / "segments.xlsx", index=False)
    pd.read_csv(sim_files / "customers.csv", parse_dates=["start_date", "end_date"]).to_parquet(
        sim_files / "customers.parquet"
    )
    outs = []
    for s_file, c_file, name in (
        ("segments.csv", "customers.csv", "a"),
        ("segments.xlsx", "customers.parquet", "b"),
    ):
        res = runner.invoke(
            app,
            [
                "segments",
                str(sim_files / s_file),
                "--customers",
                str(sim_files / c_file),
                "--out",
                str(sim_files / name),
            ],
        )
        assert res.exit_code == 0, res.output
        outs.append(pd.read_csv(sim_files / name / "segment_scores.csv"))
    pd.testing.assert_frame_equal(outs[0], outs[1])


# --------------------------------------------------------------------------------------------
# as_of: the censoring date when the study does not give one


def _observed_until(sim, until: str, *, last_activity: bool) -> pd.DataFrame:
    """The simulated base as a purchase history exported at ``until``: active customers carry
    no end date, and (optionally) each customer's last order date, which for active customers
    runs up to the export."""
    frame = sim.customers.copy()
    end = pd.to_datetime(frame["end_date"].replace("", pd.NA))
    if last_activity:
        recent = pd.Series(
            pd.Timestamp(until) - pd.to_timedelta(np.arange(len(frame)) % 20, unit="D"),
            index=frame.index,
        )
        last = end.fillna(recent)
        frame["last_order"] = last.dt.strftime("%Y-%m-%d")
    return frame


def test_as_of_default_warns_and_true_as_of_restores_churn(tmp_path):
    from wtp.simulate import SegmentSpec, simulate_customers

    sim = simulate_customers(
        [SegmentSpec("A", 1.0, 50.0, churn_rate=0.04, customers=800)],
        months=24,
        as_of="2026-06-30",
        seed=4,
    )
    frame = _observed_until(sim, "2026-06-30", last_activity=False)
    # the base was observed until 2026-06-30, but starts and churns stop earlier: drop the last
    # three months of activity so the latest date in the file falls well before the true end
    frame = frame[pd.to_datetime(frame["start_date"]) <= pd.Timestamp("2026-03-31")]
    frame = frame.assign(
        end_date=frame["end_date"].where(
            pd.to_datetime(frame["end_date"].replace("", pd.NA)) <= pd.Timestamp("2026-03-31"), ""
        )
    )
    cust = validate_customers(frame)
    guessed = cohorts(cust)
    assert guessed.as_of_basis == "latest_date" and guessed.as_of < pd.Timestamp("2026-04-01")
    assert (
        len(guessed.warnings) == 1
        and "as_of not set" in guessed.warnings[0]
        and str(guessed.as_of.date()) in guessed.warnings[0]
    )
    true = cohorts(cust, as_of="2026-06-30")
    assert true.as_of_basis == "given" and not true.warnings
    # by hand: churned / customer-months at risk, censored at the true end of observation
    start = cust["start_date"]
    stop = cust["end_date"].fillna(pd.Timestamp("2026-06-30"))
    exposure = ((stop - start).dt.days / MONTH_DAYS).sum()
    a_true = true.implied.set_index("segment").loc["A"]
    assert a_true["hazard"] == pytest.approx(cust["end_date"].notna().sum() / exposure, rel=1e-12)
    assert a_true["churn_rate"] == pytest.approx(
        -math.expm1(-cust["end_date"].notna().sum() / exposure), rel=1e-12
    )
    a_guess = guessed.implied.set_index("segment").loc["A"]
    assert a_guess["churn_rate"] > 1.1 * a_true["churn_rate"]  # the silent default overstated churn
    # the export date, when known, is used and said (a note, not a warning)
    exported = cohorts(cust, export_date="2026-06-30")
    assert exported.as_of == pd.Timestamp("2026-06-30") and not exported.warnings and exported.notes
    assert exported.implied.set_index("segment").loc["A", "churn_rate"] == pytest.approx(
        a_true["churn_rate"]
    )


def test_as_of_prefers_the_latest_activity_date_in_any_column():
    from wtp.simulate import SegmentSpec, simulate_customers

    sim = simulate_customers(
        [SegmentSpec("A", 1.0, 50.0, churn_rate=0.04, customers=500)],
        months=24,
        as_of="2026-06-30",
        seed=5,
    )
    frame = _observed_until(sim, "2026-06-30", last_activity=True)
    frame = frame[pd.to_datetime(frame["start_date"]) <= pd.Timestamp("2026-03-31")]
    frame = frame.assign(
        end_date=frame["end_date"].where(
            pd.to_datetime(frame["end_date"].replace("", pd.NA)) <= pd.Timestamp("2026-03-31"), ""
        )
    )
    cust = validate_customers(frame)
    r = cohorts(cust)
    assert r.as_of == pd.Timestamp("2026-06-30") and r.as_of_column == "last_order"
    assert "last_order" in r.warnings[0]
    given = cohorts(cust, as_of="2026-06-30")
    pd.testing.assert_frame_equal(r.implied, given.implied)
    # an export-date column is the file's own statement of when it was observed
    snap = validate_customers(frame.drop(columns="last_order").assign(snapshot_date="2026-06-30"))
    s = cohorts(snap)
    assert s.as_of_basis == "export_date" and s.as_of_column == "snapshot_date" and not s.warnings


def test_as_of_before_a_start_date_is_a_located_error(hand_customers, tmp_path):
    with pytest.raises(InputError) as err:
        cohorts(hand_customers, as_of="2024-12-31")
    assert (
        err.value.row == 6 and err.value.column == "start_date" and "2024-12-31" in str(err.value)
    )
    # through the CLI: exit 2 with the file, row and column
    segs = write(tmp_path, "segments.csv", "segment,customers,cac\nA,3,100\nB,2,100")
    cust = write(tmp_path, "customers.csv", CUSTOMERS)
    (tmp_path / "study.toml").write_text(
        '[study]\nas_of = "2024-12-31"\n[data]\nsegments = "segments.csv"\ncustomers = "customers.csv"\n'
    )
    res = CliRunner().invoke(
        app, ["segments", str(segs), "--study", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert (
        res.exit_code == 2
        and "customers.csv" in res.output
        and "row 6" in res.output
        and "start_date" in res.output
    )
    assert not (tmp_path / "o").exists()
    # without as_of the terminal warns and names the date
    (tmp_path / "study.toml").write_text(
        '[data]\nsegments = "segments.csv"\ncustomers = "customers.csv"\n'
    )
    _ = cust
    res = CliRunner().invoke(
        app, ["segments", str(segs), "--study", str(tmp_path), "--out", str(tmp_path / "o2")]
    )
    assert res.exit_code == 0, res.output
    assert "as_of not set" in res.output and "2025-03-01" in res.output
    html = (tmp_path / "o2" / "report.html").read_text()
    assert "as_of not set" in html and "strictly below 0.5" in html


def test_run_without_as_of_warns_in_terminal_and_overview(tmp_path):
    from wtp.pipeline import run_study, write_study

    write(tmp_path, "segments.csv", "segment,customers,cac\nA,3,100\nB,2,100")
    write(tmp_path, "customers.csv", CUSTOMERS)
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "cohorts only"\n[data]\nsegments = "segments.csv"\ncustomers = "customers.csv"\n'
    )
    said: list[str] = []
    run = run_study(tmp_path, fast=True, progress=said.append)
    assert any("as_of not set" in s and "2025-03-01" in s for s in said)
    assert any(a.startswith("Cohorts: as_of not set") for a in run.attention)
    write_study(run, tmp_path / "out")
    assert "as_of not set" in (tmp_path / "out" / "index.html").read_text()
    assert "as_of not set" in (tmp_path / "out" / "segments" / "report.html").read_text()


def test_grow_matches_segment_names_after_trimming_and_case_folding(tmp_path):
    """`--grow smb=10%` was exit 2 although every other segment match forgives case and
    surrounding spaces (contract §5); it grows SMB, spelled as segments.csv spells it."""
    assert parse_grow(["smb=10%"], ["SMB", "Startups"]) == {"SMB": pytest.approx(0.10)}
    assert parse_grow([" startups =5%"], ["SMB", "Startups"]) == {"Startups": pytest.approx(0.05)}
    # only case and spaces are forgiven, with the closest name offered
    with pytest.raises(InputError, match="did you mean 'Startups'"):
        parse_grow(["Startup=5%"], ["SMB", "Startups"])
    res, out = _bad(tmp_path, OK_SEGMENTS, "--grow", "smb=10%")
    assert res.exit_code == 0, res.output
    wi = pd.read_csv(out / "what_if.csv").set_index("metric")
    # SMB 100 customers × 1.10 + Startups 80
    assert wi.loc["customers", "before"] == 180 and wi.loc["customers", "after"] == pytest.approx(
        190
    )
    # the API takes the same spellings from a mapping
    segs = segments_frame(tmp_path, OK_SEGMENTS)
    r = what_if(segs, {"smb": 0.10})
    assert r.table.set_index("metric").loc["customers", "after"] == pytest.approx(190)
