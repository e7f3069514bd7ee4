"""Packages and price books: hand-checked revenue and package rules, a simulated world with known
revenue-optimal prices, and studies with only some instruments."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest

from wtp.errors import InputError
from wtp.pricing import (
    ADD_ON,
    PricingSettings,
    build_price_books,
    candidate_prices,
    draft_packages,
    feature_values,
    nice_price,
    resolve_settings,
    tier_prices,
    write_price_books,
)
from wtp.vanwestendorp import VanWestendorpResult, VanWestendorpSettings

# --------------------------------------------------------------------------------------------
# nice prices


def test_nice_price_bands():
    assert nice_price(7.3) == 7.5
    assert nice_price(37.4) == 37.0
    assert nice_price(99.6) == 100.0
    assert nice_price(133.0) == 135.0
    assert nice_price(1234.0) == 1230.0
    assert nice_price(0.1) == 0.5  # never rounds to nothing


def test_candidate_prices_lie_on_one_lattice():
    c = candidate_prices(20.7, 38.9)
    assert c[0] == 21 and c[-1] == 38 and np.all(np.diff(c) == 1)
    wide = candidate_prices(88.1, 160.0)
    assert list(wide[:3]) == [89.0, 90.0, 91.0] and 99.0 in wide and 101.0 not in wide and 105.0 in wide and wide[-1] == 160.0
    # a range narrower than a step and holding no nice price: its middle
    assert list(candidate_prices(101.0, 104.0)) == [102.5]
    assert len(candidate_prices(np.nan, 10.0)) == 0


# --------------------------------------------------------------------------------------------
# a hand-made world: linear NMS demand, so every number can be worked out on paper


def linear_vw(segments: dict[str, tuple[float, float, float]]) -> VanWestendorpResult:
    """VW result whose NMS trial is 1 − p/top on [0, top]; acceptable range (pmc, pme)."""
    pp, nms, curves = [], [], []
    for seg, (top, pmc, pme) in segments.items():
        pp.append({"segment": seg, "n": 100, "n_excluded": 0, "pmc": pmc, "opp": np.nan, "ipp": np.nan, "pme": pme, "pmc_narrow": pmc, "pme_narrow": pme})
        grid = np.linspace(0, top, 5)
        nms.append(pd.DataFrame({"segment": seg, "price": grid, "trial": 1 - grid / top, "revenue": grid * (1 - grid / top), "revenue_index": np.nan}))
        curves.append(pd.DataFrame({"segment": seg, "price": grid, "too_cheap": 0.0, "cheap": 0.0, "not_cheap": 1.0, "expensive": 0.0, "not_expensive": 1.0, "too_expensive": 0.0}))
    return VanWestendorpResult(
        price_points=pd.DataFrame(pp), curves=pd.concat(curves, ignore_index=True), nms=pd.concat(nms, ignore_index=True),
        excluded=pd.DataFrame(columns=["respondent_id", "segment", "row", "reason"]), settings=VanWestendorpSettings(),
    )


HAND_VW = {"A": (100.0, 20.0, 80.0), "B": (200.0, 40.0, 160.0)}
HAND_SEGMENTS = pd.DataFrame({"segment": ["A", "B"], "customers": [1000, 500], "churn_rate": [0.05, 0.0], "gross_margin": [0.8, np.nan]})


@pytest.fixture(scope="module")
def hand():
    return build_price_books(vw=linear_vw(HAND_VW), segments=HAND_SEGMENTS)


def test_hand_multiple_scenario_revenue_arithmetic(hand):
    s = hand.scenarios.set_index(["scenario", "segment"])
    # A: revenue p(1 − p/100) peaks at 50 (inside 20–80): conversion 0.5, 1000 prospects
    a = s.loc[("multiple", "A")]
    assert a.entry_price == 50 and a.conversion == pytest.approx(0.5)
    assert a.customers == pytest.approx(500) and a.revenue == pytest.approx(25_000)
    assert a.price_book == "A"
    # B: p(1 − p/200) peaks at 100; 500 prospects × 0.5 × 100
    b = s.loc[("multiple", "B")]
    assert b.entry_price == 100 and b.customers == pytest.approx(250) and b.revenue == pytest.approx(25_000)
    t = s.loc[("multiple", "total")]
    assert t.customers == pytest.approx(750) and t.revenue == pytest.approx(50_000) and t.conversion == pytest.approx(0.5)
    assert t.prospects == 1500


def test_hand_single_price_maximises_volume_weighted_revenue(hand):
    s = hand.scenarios.set_index(["scenario", "segment"])
    # 1000·p(1 − p/100) + 500·p(1 − p/200) = 1500p − 12.5p² peaks at p = 60
    assert s.loc[("single", "A"), "entry_price"] == 60 and s.loc[("single", "B"), "entry_price"] == 60
    assert s.loc[("single", "A"), "price_book"] == "all"
    assert s.loc[("single", "A"), "revenue"] == pytest.approx(1000 * 0.4 * 60)
    assert s.loc[("single", "B"), "revenue"] == pytest.approx(500 * 0.7 * 60)
    assert s.loc[("single", "total"), "revenue"] == pytest.approx(45_000)
    assert s.loc[("single", "total"), "customers"] == pytest.approx(750)


def test_hand_ltv(hand):
    s = hand.scenarios.set_index(["scenario", "segment"])
    # A: 50 × margin 0.8 / churn 0.05 = 800 per customer; B: churn 0 → 60 periods, margin missing → 1
    assert s.loc[("multiple", "A"), "ltv"] == pytest.approx(800)
    assert s.loc[("multiple", "A"), "lifetime_value"] == pytest.approx(500 * 800)
    assert s.loc[("multiple", "B"), "ltv"] == pytest.approx(100 * 60)


def test_hand_comparison_sensitivity_and_arbitrage(hand):
    c = hand.comparison.set_index("segment")
    assert c.loc["A", "price_change"] == pytest.approx(50 / 60 - 1) and bool(c.loc["A", "customers_gain"])
    assert c.loc["B", "price_change"] == pytest.approx(100 / 60 - 1) and not c.loc["B", "customers_gain"]
    assert c.loc["total", "revenue_change"] == pytest.approx(5_000)
    assert c.loc["total", "revenue_change_pct"] == pytest.approx(5_000 / 45_000)
    sens = hand.sensitivity.set_index(["scenario", "segment", "price_change"])
    # A at 55: 1000 × 0.45 × 55
    assert sens.loc[("multiple", "A", 0.1), "revenue"] == pytest.approx(24_750)
    assert sens.loc[("multiple", "A", 0.1), "revenue_change"] == pytest.approx(-0.01)
    assert sens.loc[("multiple", "total", 0.0), "revenue"] == pytest.approx(50_000)
    arb = hand.arbitrage
    assert len(arb) == 1
    r = arb.iloc[0]
    # B (100) could buy A's book (50): 500 × (1 − 50/200) × 50 = 18,750 instead of 25,000
    assert (r.segment, r.cheaper_segment, r.gap, r.risk) == ("B", "A", 0.5, "high")
    assert r.revenue_if_switched == pytest.approx(18_750) and r.revenue_at_risk == pytest.approx(6_250)
    assert "eligibility fence" in r.fence


def test_hand_price_books_and_missing_inputs(hand):
    pb = hand.price_books
    # no MaxDiff: one package per segment; one row per scenario × segment × package
    assert len(pb) == 4 and set(pb["package"]) == {"Starter"}
    single = pb[pb["scenario"] == "single"]
    assert single["price"].nunique() == 1
    assert set(hand.packages["segment"]) >= {"A", "B"} and (hand.packages["feature"] == "").all()
    missing = set(hand.missing["input"])
    assert {"maxdiff", "conjoint"} <= missing
    assert "customers" in hand.volume_source
    assert "Use one price book per segment" in hand.recommendation and "+11.1%" in hand.recommendation


def test_hand_single_segment_is_one_book():
    r = build_price_books(vw=linear_vw({"all": (100.0, 20.0, 80.0)}))
    assert r.segments == ("all",)
    assert r.entry_prices("multiple") == {"all": 50.0} and r.entry_prices("single") == {"all": 50.0}
    assert r.recommendation.startswith("One segment")
    # no segments.csv: the survey mix, per one prospect
    assert r.total("multiple") == pytest.approx(25.0)


def test_unrounded_prices_find_the_exact_optimum():
    r = build_price_books(vw=linear_vw({"A": (90.0, 10.0, 80.0)}), round_prices=False)
    assert r.entry_prices()["A"] == pytest.approx(45.0, abs=0.2)


# --------------------------------------------------------------------------------------------
# package rules on a hand-made MaxDiff

SHARES = pd.DataFrame({"segment": "S", "item": list("abcdef"), "share": [30.0, 25.0, 15.0, 15.0, 12.0, 3.0]})
# above own mean (0): r1 a b c; r2 a b d; r3 a c e; r4 a b d → appeal a 1, b .75, c .5, d .5, e .25, f 0
UTILS = np.array([[3, 2, 1, 0, -1, -5], [3, 2, -1, 1, 0, -5], [3, -1, 2, 0, 1, -5], [3, 2, 0, 1, -1, -5]], dtype=float)
IND = pd.DataFrame(
    {"respondent_id": np.repeat([f"r{i}" for i in range(4)], 6), "segment": "S", "item": list("abcdef") * 4, "utility": UTILS.ravel()}
)


def tiers_of(packages: pd.DataFrame) -> dict[str, list[str]]:
    return {k: g["feature"].tolist() for k, g in packages.groupby("package", sort=False)}


def test_packages_by_hand_cumulative_tiers_and_add_ons():
    pk, warn = draft_packages(SHARES, IND, settings=PricingSettings(reach_top_n=1))
    assert not warn
    t = tiers_of(pk)
    # entry: appeal ≥ 0.75 → a, b. Pro: favourite among c–f: r1 c, r2 d, r3 c, r4 d → c (tie, higher
    # share first) reaches 50%, d the other 50%, e adds nothing → stop. Enterprise: e. f: low value.
    assert t == {"Starter": ["a", "b"], "Pro": ["c", "d"], "Enterprise": ["e"], ADD_ON: ["f"]}
    # each feature once, at the lowest tier that has it
    assert pk["feature"].is_unique
    row = pk.set_index("feature")
    assert row.loc["a", "appeal"] == 1.0 and row.loc["b", "appeal"] == 0.75 and row.loc["e", "appeal"] == 0.25
    assert row.loc["c", "reach"] == 0.5 and row.loc["d", "reach"] == 1.0
    assert "table stakes" in row.loc["a", "reason"] and "low value" in row.loc["f", "reason"]
    assert "reach 50% → 100%" in row.loc["d", "reason"]


def test_packages_caps_push_the_rest_to_add_ons():
    pk, _ = draft_packages(SHARES, IND, settings=PricingSettings(reach_top_n=1, caps={"Starter": 1, "Pro": 1, "Enterprise": 1}))
    t = tiers_of(pk)
    # entry: a (cap 1). Pro: favourites among b–f: b for r1, r2, r4 → b. Enterprise: c or d (2 each) → c
    assert t["Starter"] == ["a"] and t["Pro"] == ["b"] and t["Enterprise"] == ["c"]
    assert sorted(t[ADD_ON]) == ["d", "e", "f"]
    assert "at its cap" in pk.set_index("feature").loc["d", "reason"]


def test_packages_pins_win_and_are_reported():
    s = resolve_settings(pins={"a": "enterprise", "f": "Pro"}, options={"reach_top_n": 1})
    assert s.pins == {"a": "Enterprise", "f": "Pro"}
    pk, _ = draft_packages(SHARES, IND, settings=s)
    t = tiers_of(pk)
    assert "a" in t["Enterprise"] and "f" in t["Pro"] and t["Starter"] == ["b"]
    assert pk.set_index("feature").loc["a", "reason"] == "pinned to Enterprise in study.toml"
    # a pin beyond the cap is kept, with a warning
    pk, warn = draft_packages(SHARES, IND, settings=resolve_settings(pins={"a": "Pro", "b": "Pro"}, caps={"Pro": 1}))
    assert tiers_of(pk)["Pro"][:2] == ["a", "b"] and any("more than its cap" in w for w in warn)


def test_bad_pins_and_caps_name_study_toml():
    with pytest.raises(InputError) as e:
        resolve_settings(pins={"sso": "Platinum"})
    p = e.value.problems[0]
    assert p.column == "packages.pins.sso" and "Starter" in p.expected and p.file.endswith("study.toml")
    with pytest.raises(InputError) as e:
        resolve_settings(caps=-1)
    assert e.value.problems[0].column == "packages.max_features_per_tier"
    with pytest.raises(InputError):
        resolve_settings(options={"no_such_option": 1})


def test_packages_without_individual_utilities_follow_shares():
    pk, _ = draft_packages(SHARES, None)
    t = tiers_of(pk)
    # mean share 16.7: table stakes ≥ 1.4 × 16.7 = 23.3 → a, b; f < 8.3 is low; c, d, e split over two tiers
    assert t["Starter"] == ["a", "b"] and t["Pro"] == ["c", "d"] and t["Enterprise"] == ["e"] and t[ADD_ON] == ["f"]
    assert pk["appeal"].isna().all()


def test_high_value_respondents_target_the_upper_tiers():
    ind = IND.assign(value=np.repeat([10.0, 20.0, 30.0, 40.0], 6))
    pk, _ = draft_packages(SHARES, ind, settings=PricingSettings(reach_top_n=1))
    reasons = pk.set_index("feature")["reason"]
    # Pro targets the top two thirds (value ≥ 20: r2, r3, r4), Enterprise the top third (≥ 30)
    assert "top 67%" in reasons["c"] or "top 67%" in reasons["d"]
    assert "(≥ 20)" in reasons["d"]


def test_feature_values_and_tier_steps_by_hand():
    pk, _ = draft_packages(SHARES, IND, settings=PricingSettings(reach_top_n=1))
    # value share: entry a + b = 55 share points carry the entry price 110 → 2 per point
    v = feature_values(pk, 110.0)
    assert v["c"][0] == pytest.approx(30.0) and v["e"][0] == pytest.approx(24.0)
    # conjoint anchor: c worth 60 at share 15 → 4 per point; d (15) → 60, e (12) → 48
    v2 = feature_values(pk, 110.0, conjoint_wtp={"c": 60.0})
    assert v2["c"] == (60.0, "conjoint WTP") and v2["e"][0] == pytest.approx(48.0)
    rows = tier_prices(110.0, pk, v)
    # Pro adds c + d = 60: 1 + 0.5 × 60 / 110 = 1.27 → 140; Enterprise adds e = 24: 1 + 12/140 → held to 1.25 → 175
    assert [r["price"] for r in rows] == [110.0, 140.0, 175.0]
    assert "held to 1.25" in rows[2]["note"]


# --------------------------------------------------------------------------------------------
# the simulated world: true revenue-optimal prices are known


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from wtp.conjoint import estimate_conjoint
    from wtp.segments import score_segments
    from wtp.simulate import simulate_study
    from wtp.study import load_study
    from wtp.vanwestendorp import van_westendorp

    sim = simulate_study(tmp_path_factory.mktemp("study"), n_respondents=600, seed=20260)
    study = load_study(sim.folder)
    vw = van_westendorp(study.vw)
    try:
        from wtp.maxdiff import estimate_maxdiff
    except ImportError:  # the pricing stage falls back to best − worst counts on its own
        md = None
    else:
        md = estimate_maxdiff(study.maxdiff, method="logit", rng=np.random.default_rng(0), labels=study.item_labels, progress=False)
    cj = estimate_conjoint(study.conjoint, levels=study.attribute_levels, method="mnl")
    seg = score_segments(study.segments, study.customers, period=study.period, as_of=study.as_of)
    start = time.perf_counter()
    result = build_price_books(vw=vw, maxdiff=md, conjoint=cj, segments=seg, study=study, rng=np.random.default_rng(1))
    return sim, study, result, time.perf_counter() - start


def test_world_entry_prices_recover_the_true_optimum(world):
    sim, _, r, seconds = world
    truth = sim.revenue_optimal_prices.set_index("segment")["revenue_optimal_price"]
    entry = pd.Series(r.entry_prices("multiple"))
    err = (entry[truth.index] / truth - 1).abs()
    assert (err < 0.20).all(), err.to_dict()
    # the same order as the truth
    assert list(entry[truth.index].sort_values().index) == list(truth.sort_values().index)
    assert seconds < 10


def test_world_single_price_between_the_optima_and_multiple_earns_more(world):
    _, _, r, _ = world
    entry = r.entry_prices("multiple")
    single = set(r.entry_prices("single").values())
    assert len(single) == 1
    p = single.pop()
    assert min(entry.values()) < p < max(entry.values())
    assert r.total("multiple") >= r.total("single")
    c = r.comparison.set_index("segment")
    # each segment earns at least as much at its own optimum as at the single price
    assert (c.drop("total")["revenue_multiple"] >= c.drop("total")["revenue_single"] - 1e-6).all()


def test_world_outputs_follow_the_contract(world, tmp_path):
    _, study, r, _ = world
    segs = set(study.segments["segment"])
    pb = r.price_books
    assert list(pb.columns[:4]) == ["scenario", "segment", "package", "price"]
    assert set(pb["scenario"]) == {"single", "multiple"} and set(pb["segment"]) == segs
    assert not pb.duplicated(["scenario", "segment", "package"]).any()
    single = pb[pb["scenario"] == "single"].pivot(index="segment", columns="package", values="price")
    assert (single.nunique() == 1).all()  # the same prices on every segment's rows
    # tiers rise
    for _, g in pb.groupby(["scenario", "segment"]):
        assert g["price"].is_monotonic_increasing
    sc = r.scenarios
    assert list(sc.columns[:6]) == ["scenario", "segment", "price_book", "customers", "conversion", "revenue"]
    assert set(sc["segment"]) == segs | {"total"}
    m = sc[(sc["scenario"] == "multiple") & (sc["segment"] != "total")]
    assert (m["price_book"] == m["segment"]).all()
    assert (sc[sc["scenario"] == "single"]["price_book"] == "all").all()
    assert np.allclose(m["customers"], m["prospects"] * m["conversion"])
    assert np.allclose(m["revenue"], m["customers"] * m["entry_price"])
    # prospects are market sizes
    assert m.set_index("segment")["prospects"].to_dict() == study.segments.set_index("segment")["market_size"].astype(float).to_dict()
    pk = r.packages
    assert list(pk.columns[:3]) == ["segment", "package", "feature"]
    assert not pk.duplicated(["segment", "feature"]).any()
    assert set(pk["package"]) <= {*r.settings.tiers, ADD_ON}
    # study.toml pins sso and audit_log to Enterprise; caps: at most 5 features a tier adds
    pins = pk[pk["feature"].isin(["sso", "audit_log"])]
    assert (pins["package"] == "Enterprise").all()
    assert pk[pk["package"] != ADD_ON].groupby(["segment", "package"]).size().max() <= 5
    assert pk["reason"].str.len().gt(0).all()
    # logit MaxDiff has no individual utilities: appeal and reach come from each respondent's counts
    assert any("best − worst counts" in n for n in r.notes)
    assert pk[pk["package"] != ADD_ON]["appeal"].notna().all()
    # the logit shares put each segment's clear favourites in its entry tier
    starter = pk[pk["package"] == "Starter"].groupby("segment")["feature"].agg(set)
    assert {"integrations", "ai_insights"} <= starter["Startups"] and "sla" in starter["Enterprise"]
    paths = write_price_books(r, tmp_path)
    assert {p.name for p in paths} >= {"packages.csv", "price_books.csv", "scenarios.csv", "comparison.csv"}
    assert (tmp_path / "packages.csv").exists() and (tmp_path / "pricing" / "arbitrage.csv").exists()
    back = pd.read_csv(tmp_path / "scenarios.csv")
    assert back["revenue"].sum() == pytest.approx(sc["revenue"].sum())


def test_world_demand_shows_both_curves_and_reconciles(world):
    _, _, r, _ = world
    ds = r.demand_summary.set_index("segment")
    assert (ds["demand_source"] == "nms+conjoint").all()
    d = r.demand
    assert d["nms"].notna().all() and d["conjoint"].notna().all()
    # the reconciled curve lies between NMS and the calibrated conjoint (log-scale blend)
    lo = np.minimum(d["nms"], d["conjoint_calibrated"]) - 1e-12
    hi = np.maximum(d["nms"], d["conjoint_calibrated"]) + 1e-12
    assert ((d["reconciled"] >= lo) & (d["reconciled"] <= hi)).all()
    # at the calibration price the conjoint is brought to the NMS level
    for m in r.models.values():
        assert m.scale * m.conjoint([m.reference_price])[0] == pytest.approx(m.nms([m.reference_price])[0])
    assert r.recommendation.startswith("Use one price book per segment")
    assert r.missing.empty


# --------------------------------------------------------------------------------------------
# studies with only some instruments


def test_vw_only_study(world):
    _, study, _, _ = world
    partial = dataclasses.replace(study, maxdiff=None, conjoint=None, segments=None, customers=None)
    r = build_price_books(study=partial)
    assert r.has_prices
    assert set(r.missing["input"]) >= {"maxdiff", "conjoint", "segments"}
    assert (r.packages["package"] == "Starter").all() and (r.packages["feature"] == "").all()
    assert "per one prospect" in r.volume_source
    assert (r.demand_summary["demand_source"] == "nms").all()


def test_maxdiff_only_study_has_packages_but_no_prices(world):
    _, study, _, _ = world
    partial = dataclasses.replace(study, vw=None, conjoint=None)
    r = build_price_books(study=partial)
    assert not r.has_prices
    assert "prices" in set(r.missing["input"])
    assert {"Starter", "Pro", "Enterprise"} <= set(r.packages["package"])
    assert r.scenarios["revenue"].isna().all() or r.scenarios.empty
    assert r.recommendation.startswith("No price book")


def test_conjoint_without_vw_prices_within_the_tested_range(world):
    _, study, _, _ = world
    partial = dataclasses.replace(study, vw=None)
    r = build_price_books(study=partial)
    assert r.has_prices
    tested = r.demand_summary["conjoint_tested"].iloc[0]
    lo, hi = (float(x) for x in tested.split("–"))
    entry = pd.Series(r.entry_prices())
    assert entry.between(lo, hi).all()
    assert "van_westendorp" in set(r.missing["input"])
    assert (r.demand_summary["range_source"].str.contains("tested")).all()


# --------------------------------------------------------------------------------------------
# report sections


def test_report_sections_render_and_escape(world, tmp_path):
    from wtp.report import environment
    from wtp.report.pricing import render_pricing_report, section_context

    _, study, r, _ = world
    evil = r.packages.copy()
    evil.loc[evil["feature"] == "sso", "label"] = "<script>alert(1)</script>"
    r2 = dataclasses.replace(r, packages=evil)
    path = render_pricing_report(r2, tmp_path / "pricing.html", title="Acme <b>books</b>", currency="USD")
    html = path.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Acme &lt;b&gt;books&lt;/b&gt;" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    from wtp.schema import slug

    for s in study.segments["segment"]:
        assert f'<h2 id="segment-{slug(s)}"' in html and f'href="#segment-{slug(s)}"' in html, s
    assert r.recommendation.split(":")[0] in html
    assert html.count("<svg") == 1 + len(r.segments)  # the comparison chart and one demand chart per segment
    # the sections the pipeline includes, with one variable each
    env = environment()
    overview = env.from_string('{% include "pricing_overview.html.j2" %}').render(pricing=section_context(r, "USD"))
    assert "One price book or one per segment" in overview and "Why each feature sits where it does" in overview
    page = env.from_string('{% include "pricing_segment.html.j2" %}').render(pricing=section_context(r, "USD", segments=["SMB"]))
    assert "Proposed price book" in page and "SMB" in page and page.count("<svg") == 1
    # without a pricing result the sections render nothing
    assert env.from_string('{% include "pricing_overview.html.j2" %}').render().strip() == ""


def test_report_renders_a_study_without_prices(world, tmp_path):
    from wtp.report.pricing import render_pricing_report

    _, study, _, _ = world
    r = build_price_books(study=dataclasses.replace(study, vw=None, conjoint=None))
    html = render_pricing_report(r, tmp_path / "p.html", currency="USD").read_text(encoding="utf-8")
    assert "No prices" in html and "Inputs missing" in html


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_recovery_across_worlds(tmp_path, seed):
    from wtp.conjoint import estimate_conjoint
    from wtp.simulate import simulate_study
    from wtp.study import load_study
    from wtp.vanwestendorp import van_westendorp

    sim = simulate_study(tmp_path, n_respondents=600, seed=seed)
    study = load_study(sim.folder)
    r = build_price_books(vw=van_westendorp(study.vw), conjoint=estimate_conjoint(study.conjoint, levels=study.attribute_levels), study=study)
    truth = sim.revenue_optimal_prices.set_index("segment")["revenue_optimal_price"]
    entry = pd.Series(r.entry_prices())[truth.index]
    assert ((entry / truth - 1).abs() < 0.20).all()
    assert list(entry.sort_values().index) == list(truth.sort_values().index)
    single = next(iter(r.entry_prices("single").values()))
    assert entry.min() < single < entry.max()
    assert r.total("multiple") >= r.total("single")


def test_vw_without_nms_and_no_conjoint_uses_the_acceptance_share(world):
    _, study, _, _ = world
    vw = study.vw.drop(columns=["buy_cheap", "buy_expensive"])
    r = build_price_books(study=dataclasses.replace(study, vw=vw, conjoint=None, maxdiff=None))
    assert (r.demand_summary["demand_source"] == "acceptance").all()
    assert r.has_prices and any("upper bound" in n for n in r.notes)
    assert "van_westendorp NMS (buy_cheap, buy_expensive)" in set(r.missing["input"])
    # acceptance = 1 − too expensive − too cheap, read off the VW curves
    m = r.models["SMB"]
    p = r.entry_prices()["SMB"]
    c = m.acceptance_prices, m.acceptance
    assert 0 < m([p])[0] <= 1 and m([p])[0] == pytest.approx(np.interp(p, *c))


def test_world_packages_from_true_utilities_follow_the_truth(world):
    """With the simulator's own individual utilities (what a well-converged HB recovers), the
    entry tiers hold each segment's most valued features and the least valued become add-ons."""
    import types

    sim, study, _, _ = world
    md = types.SimpleNamespace(item_scores=sim.maxdiff.segment_shares, individual_utilities=sim.maxdiff.individual_utilities)
    r = build_price_books(study=dataclasses.replace(study, conjoint=None), maxdiff=md)
    pk = r.packages
    truth = sim.maxdiff.segment_shares
    for seg in study.segments["segment"]:
        p = pk[pk["segment"] == seg].set_index("feature")["package"]
        top5 = truth[truth["segment"] == seg].nlargest(5, "share")["item"]
        starter = set(p[p == "Starter"].index)
        assert starter and starter <= set(top5), (seg, starter)
        assert p["white_label"] == ADD_ON and p["sso"] == "Enterprise" and p["audit_log"] == "Enterprise"
    startups = pk[(pk["segment"] == "Startups") & (pk["package"] == "Starter")]["feature"]
    assert {"integrations", "ai_insights"} <= set(startups)


def test_seats_per_account_multiply_revenue_not_conversion(tmp_path):
    """Contract §5: prices are per seat when segments.csv has seats_per_account."""
    import numpy as np

    from wtp.pricing import build_price_books
    from wtp.simulate import simulate_study
    from wtp.study import load_study
    from wtp.vanwestendorp import van_westendorp

    sim = simulate_study(tmp_path / "s", n_respondents=240, seed=7, customers_per_segment=40)
    study = load_study(sim.folder)
    vw = van_westendorp(study.vw)
    plain = build_price_books(vw=vw, segments=study.segments, study=study, rng=np.random.default_rng(0))
    seats = study.segments.assign(seats_per_account=[1.0, 2.0, 3.0, 4.0])
    per_seat = build_price_books(vw=vw, segments=seats, study=study, rng=np.random.default_rng(0))
    a = plain.scenarios[plain.scenarios.scenario == "multiple"].set_index("segment")
    b = per_seat.scenarios[per_seat.scenarios.scenario == "multiple"].set_index("segment")
    for s, n in zip(seats.segment, seats.seats_per_account, strict=True):
        assert b.loc[s, "conversion"] == a.loc[s, "conversion"]
        assert b.loc[s, "revenue"] == pytest.approx(a.loc[s, "revenue"] * n)
        assert b.loc[s, "revenue"] == pytest.approx(b.loc[s, "customers"] * b.loc[s, "entry_price"] * n)
