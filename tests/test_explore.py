"""wtp explore: hand-checked formulas, recovery on simulated bases, real SaaS invoices, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.errors import InputError
from wtp.explore import analyst_bands, apply_column_map, explore, parse_columns, prepare_customers
from wtp.segments import MONTH_DAYS
from wtp.simulate import simulate_customer_base

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
INVOICES = DATASETS / "displayr_q_saas_invoices" / "q_invoice_lines.csv"
runner = CliRunner()


def _product_limit(t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An independent Kaplan–Meier: Π (1 − deaths / at risk) over distinct event times."""
    times = np.unique(t[e])
    at_risk = (t[None, :] >= times[:, None]).sum(axis=1)
    deaths = ((t[None, :] == times[:, None]) & e[None, :]).sum(axis=1)
    return times, np.cumprod(1 - deaths / at_risk)


# --------------------------------------------------------------------------------------------
# By hand

SMALL = pd.DataFrame(
    {
        "customer_id": [f"c{i}" for i in range(8)],
        "trial_start": ["2025-01-01"] * 8,
        "converted": [1, 1, 1, 1, 1, 0, 0, 0],
        "start_date": [
            "2025-01-01",
            "2025-01-01",
            "2025-01-01",
            "2025-01-01",
            "2025-01-01",
            "",
            "",
            "",
        ],
        "end_date": ["2025-04-02", "", "2025-07-02", "", "", "", "", ""],
        "mrr": [10.0, 20.0, 30.0, 40.0, 60.0, None, None, None],
        "size": ["S", "S", "L", "L", "L", "S", "S", "L"],
    }
)


def test_group_performance_by_hand():
    base = prepare_customers(SMALL, as_of="2026-03-01")
    assert base.n_paying == 5 and int(base.customers["trialer"].sum()) == 8
    r = explore(base, ["size"], min_customers=1)
    g = r.groups.set_index("group")
    # conversion: S 2 of 4 trialers, L 3 of 4
    assert g.loc["S", "conversion"] == 0.5 and g.loc["L", "conversion"] == 0.75
    # one year horizon; S: one of two leaves at ~3 months → S(12) = 1/2
    assert r.horizon == pytest.approx(12.0)
    assert g.loc["S", "retention"] == pytest.approx(0.5)
    # churn: the share lost per period as wtp segments defines it, 1 − exp(−churned / exposure)
    # S: c0 91 days (2025-01-01 to 2025-04-02, left), c1 424 days (to as_of 2026-03-01)
    # L: c2 182 days (left), c3 and c4 424 days each; one churn in each group
    for grp, days in (("S", 91 + 424), ("L", 182 + 424 + 424)):
        lam = 1 / (days / MONTH_DAYS)
        assert g.loc[grp, "churned"] == 1 and g.loc[grp, "exposure"] == pytest.approx(1 / lam)
        assert g.loc[grp, "hazard"] == pytest.approx(lam)
        assert g.loc[grp, "churn_rate"] == pytest.approx(1 - math.exp(-lam))
    assert (
        g.loc["S", "churn_rate_lower"] < g.loc["S", "churn_rate"] < g.loc["S", "churn_rate_upper"]
    )
    # ARPA: active accounts only (S: 20; L: 40, 60)
    assert g.loc["S", "arpa"] == 20 and g.loc["L", "arpa"] == 50
    assert g.loc["L", "ltv"] == pytest.approx(50 / g.loc["L", "churn_rate"])
    assert g.loc["S", "customers"] == 2 and g.loc["S", "share"] == pytest.approx(0.4)
    # the written segments.csv: active accounts, trials and conversions
    seg = r.segments_table().set_index("segment")
    assert (
        seg.loc["L", "customers"] == 2
        and seg.loc["L", "trials"] == 4
        and seg.loc["L", "conversions"] == 3
    )


def test_bands_are_nice_numbers():
    labels, order, cuts = analyst_bands(pd.Series(np.arange(1, 1001)))
    assert cuts == [250.0, 500.0, 1000.0]
    assert order[:3] == ["under 250", "250–499", "500–999"]
    labels, order, cuts = analyst_bands(pd.Series([0.1, 0.2, 0.35, 0.5, 0.7, 0.9, None]))
    assert (
        order == ["under 0.25", "0.25–0.5", "0.5 and over", "(missing)"]
        and labels[-1] == "(missing)"
    )


def test_invoice_lines_collapse_into_customers():
    lines = pd.DataFrame(
        {
            "Cust": ["a", "a", "b"],
            "From": ["2024-01-01", "2025-01-01", "2024-06-01"],
            "To": ["2025-01-01", "2026-01-01", "2024-12-01"],
            "Paid": [1200.0, 2400.0, -10.0],
            "Country": ["AU", "US", "UK"],
        }
    )
    base = prepare_customers(
        lines,
        columns={
            "customer_id": "cust",
            "start_date": "FROM",
            "end_date": "to",
            "amount": "paid",
            "country": "Country",
        },
    )
    c = base.customers.set_index("customer_id")
    assert base.lines_collapsed and base.as_of == pd.Timestamp(
        "2025-01-01"
    )  # the latest line start
    assert c.loc["a", "start_date"] == pd.Timestamp("2024-01-01") and c.loc["a", "country"] == "US"
    months = (pd.Timestamp("2026-01-01") - pd.Timestamp("2024-01-01")).days / MONTH_DAYS
    assert c.loc["a", "mrr"] == pytest.approx(3600 / months)
    assert bool(c.loc["b", "churned"]) and not bool(c.loc["a", "churned"])
    assert c.loc["b", "mrr"] == 0  # a credit note nets the revenue to zero, never below


def test_bad_input_names_file_row_column():
    bad = SMALL.copy()
    bad.loc[2, "start_date"] = "soon"
    bad.loc[5, "converted"] = 3
    with pytest.raises(InputError) as err:
        prepare_customers(bad)
    text = str(err.value)
    assert "row 4" in text and "start_date" in text and "row 7" in text and "converted" in text
    with pytest.raises(InputError, match="did you mean"):
        apply_column_map(SMALL, {"customer_id": "customer_idd"}, source="x.csv")
    with pytest.raises(InputError):
        parse_columns("customer_id")
    with pytest.raises(InputError, match="did you mean"):
        explore(prepare_customers(SMALL), ["sizes"], min_customers=1)


# --------------------------------------------------------------------------------------------
# Known truth: performance differs on one dimension only


def _truth_of(sim, result, dimension):
    lab = result.assignments[dimension].to_numpy()
    tr = result.base.customers["trialer"].to_numpy()
    out = {}
    for g in result.groups.loc[result.groups["dimension"] == dimension, "group"]:
        m = lab == g
        s = sim.true_survival(result.horizon, m)
        out[g] = (
            sim.truth["conversion_prob"].to_numpy()[m & tr].mean(),
            1 - s ** (1 / result.horizon),
        )
    return out


def test_true_dimension_ranks_first_and_groups_are_recovered():
    first, covered, checks = 0, 0, 0
    for seed in range(10):
        sim = simulate_customer_base(seed=seed)
        r = explore(prepare_customers(sim.customers, as_of=sim.as_of))
        first += r.dimensions["dimension"].iloc[0] == "company_size"
        g = r.groups[r.groups["dimension"] == "company_size"].set_index("group")
        for group, (conv, churn) in _truth_of(sim, r, "company_size").items():
            covered += g.loc[group, "conversion_lower"] <= conv <= g.loc[group, "conversion_upper"]
            covered += g.loc[group, "churn_rate_lower"] <= churn <= g.loc[group, "churn_rate_upper"]
            checks += 2
    assert first >= 9
    # 95% intervals: in 80 checks, expect about 4 misses
    assert covered / checks >= 0.88, covered / checks


def test_a_different_true_dimension_is_found_too():
    sim = simulate_customer_base(seed=3, effect="industry")
    r = explore(prepare_customers(sim.customers, as_of=sim.as_of), pairs=True)
    assert r.dimensions["dimension"].iloc[0] == "industry"
    hyp = r.dimensions[r.dimensions["hypothesis"] > 0]
    assert 3 <= len(hyp) <= 5 and hyp["dimension"].iloc[0] == "industry"
    # pairs that only repeat the true dimension are not separate hypotheses
    assert not hyp["dimension"].str.contains("industry ×|× industry").any()
    assert "at risk: adoption" in set(r.dimensions["dimension"])


# --------------------------------------------------------------------------------------------
# Real SaaS invoices, read as they are with a column map

MAP = "customer_id=CustOrgID,start_date=ValidFrom,end_date=ValidTo,amount=AUD,country=country_cat,seats=Computers"


@pytest.fixture(scope="module")
def invoices():
    if not INVOICES.exists():
        pytest.skip("displayr_q_saas_invoices not in ../shared/datasets")
    from wtp.io import read_table

    base = prepare_customers(read_table(INVOICES), columns=parse_columns(MAP))
    return base, explore(base, ["country", "seats"])


def test_real_invoices_km_equals_product_limit(invoices):
    base, r = invoices
    assert len(base.customers) == 778 and base.lines_collapsed
    # an independent reading of the lines: first start, last end, lapsed if it ended by as_of
    lines = pd.read_csv(INVOICES, parse_dates=["ValidFrom", "ValidTo"])
    g = lines.groupby("CustOrgID")
    first, last = g["ValidFrom"].min(), g["ValidTo"].max()
    as_of = lines["ValidFrom"].max()
    churned = (last <= as_of).to_numpy()
    months = (
        (last.where(last <= as_of, as_of) - first).dt.total_seconds() / 86400 / MONTH_DAYS
    ).to_numpy()
    country = (
        g.tail(1).set_index("CustOrgID")["country_cat"].str.strip().reindex(first.index).to_numpy()
    )
    for name in ("Australia", "United States", "United Kingdom"):
        m = country == name
        times, surv = _product_limit(months[m], churned[m])
        s = r.survival[
            (r.survival["dimension"] == "country")
            & (r.survival["group"] == name)
            & (r.survival["events"] > 0)
        ]
        assert np.allclose(s["time"], times) and np.allclose(s["survival"], surv, atol=1e-12)
    d = r.dimensions.set_index("dimension")
    assert d.loc["country", "retention_p"] < 1e-6  # countries differ in retention


def test_explore_cli_feeds_segments(tmp_path):
    sim = simulate_customer_base(n_trials=2500, seed=4)
    sim.customers.to_csv(tmp_path / "customers.csv", index=False)
    out = tmp_path / "explore"
    res = runner.invoke(
        app,
        [
            "explore",
            str(tmp_path / "customers.csv"),
            "--out",
            str(out),
            "--by",
            "company_size,industry,plan",
        ],
    )
    assert res.exit_code == 0, res.output
    dims = pd.read_csv(out / "dimensions.csv")
    assert list(dims.columns[:6]) == [
        "dimension",
        "groups",
        "score",
        "retention_p",
        "conversion_p",
        "rank",
    ]
    hyp = pd.read_csv(out / "hypotheses.csv")
    assert list(hyp.columns[:8]) == [
        "dimension",
        "group",
        "customers",
        "share",
        "conversion",
        "churn_rate",
        "arpa",
        "ltv",
    ]
    assert {
        f"{m}_{end}"
        for m in ("conversion", "churn_rate", "arpa", "ltv")
        for end in ("lower", "upper")
    } <= set(hyp.columns)
    seg_out = tmp_path / "segments"
    res = runner.invoke(
        app,
        [
            "segments",
            str(out / "segments.csv"),
            "--customers",
            str(out / "customers.csv"),
            "--out",
            str(seg_out),
        ],
    )
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(seg_out / "segment_scores.csv")
    assert set(scores["segment"]) == set(pd.read_csv(out / "segments.csv")["segment"])
    assert "<script" not in (out / "report.html").read_text(encoding="utf-8").lower()
    bad = runner.invoke(
        app,
        [
            "explore",
            str(tmp_path / "customers.csv"),
            "--out",
            str(tmp_path / "x"),
            "--by",
            "industy",
        ],
    )
    assert bad.exit_code == 2 and "did you mean" in bad.output
    assert not (tmp_path / "x").exists()


def test_explore_output_runs_as_a_study(tmp_path):
    """segments.csv and customers.csv of the chosen dimension are a study's files as they are."""
    from wtp.simulate import simulate_customers

    sim = simulate_customers(n_per_segment=120, seed=2)
    cust = sim.customers.assign(
        plan=np.random.default_rng(2).choice(["Basic", "Plus"], len(sim.customers))
    )
    cust.to_csv(tmp_path / "all_customers.csv", index=False)
    out = tmp_path / "explore"
    res = runner.invoke(
        app,
        ["explore", str(tmp_path / "all_customers.csv"), "--out", str(out), "--choose", "segment"],
    )
    assert res.exit_code == 0, res.output
    study = tmp_path / "study"
    study.mkdir()
    for name in ("segments.csv", "customers.csv"):
        (study / name).write_bytes((out / name).read_bytes())
    (study / "study.toml").write_text(
        f'[study]\nname = "Explored"\nas_of = "{sim.as_of.date()}"\n', encoding="utf-8"
    )
    res = runner.invoke(app, ["run", str(study), "--out", str(tmp_path / "run"), "--fast"])
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(tmp_path / "run" / "segments" / "segment_scores.csv")
    assert set(scores["segment"]) == set(sim.segments["segment"])
    assert (tmp_path / "run" / "segments" / "trend.csv").exists()


def test_explore_and_segments_report_the_same_churn_for_the_same_customers(tmp_path):
    """One definition of churn_rate (wtp.segments.churn_from_exposure): the demo's customers.csv
    gave SMB 0.02841 in wtp explore (12-month Kaplan–Meier) and 0.02978 in wtp segments
    (churned / exposure, not a share). Both now give 1 − exp(−churned / exposure)."""
    from wtp.pipeline import demo_study_path

    demo = demo_study_path()
    res = runner.invoke(
        app,
        [
            "explore",
            str(demo / "customers.csv"),
            "--by",
            "segment",
            "--study",
            str(demo),
            "--out",
            str(tmp_path / "ex"),
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        [
            "segments",
            str(demo / "segments.csv"),
            "--study",
            str(demo),
            "--out",
            str(tmp_path / "seg"),
        ],
    )
    assert res.exit_code == 0, res.output
    ex = pd.read_csv(tmp_path / "ex" / "hypotheses.csv").set_index("group")["churn_rate"]
    seg = pd.read_csv(tmp_path / "seg" / "cohort_summary.csv").set_index("segment")["churn_rate"]
    for name in ("Startups", "SMB", "Mid-market", "Enterprise"):
        assert ex[name] == pytest.approx(seg[name], rel=1e-9), name
    # SMB independently: churn events and customer-months up to as_of (2026-06-30)
    c = pd.read_csv(demo / "customers.csv", parse_dates=["start_date", "end_date"])
    c = c[c["segment"] == "SMB"]
    as_of = pd.Timestamp("2026-06-30")
    gone = c["end_date"].notna() & (c["end_date"] <= as_of)
    months = ((c["end_date"].where(gone, as_of) - c["start_date"]).dt.days / MONTH_DAYS).sum()
    assert seg["SMB"] == pytest.approx(1 - math.exp(-gone.sum() / months), rel=1e-9)


def test_a_group_named_all_in_any_case_is_renamed_so_segments_csv_stays_valid():
    """A profile value `All` would be written to segments.csv as a segment `All`, which wtp
    segments refuses (the reserved name in any case); it is renamed like `all`."""
    small = SMALL.assign(plan=["All", "All", "Pro", "Pro", "Pro", "All", "Pro", "Pro"])
    r = explore(prepare_customers(small, as_of="2026-03-01"), ["plan"], min_customers=1)
    assert set(r.groups["group"]) == {"All (plan)", "Pro"}


def test_record_numbers_are_not_dimensions():
    """A record number (InvoiceLineID on a real export) was banded and ranked first: numbered in
    order of entry, it sorts customers by tenure, which 'separates' retention. Named like an
    identifier, or whole numbers nearly one per customer, it is skipped unless asked for."""
    from wtp.explore import _looks_like_an_identifier

    sim = simulate_customer_base(seed=1)
    customers = sim.customers.copy()
    ids = customers["customer_id"].drop_duplicates()
    number = pd.Series(np.arange(len(ids)) * 7 + 1000, index=ids.to_numpy())
    customers["InvoiceLineID"] = customers["customer_id"].map(number)
    customers["entry_no"] = customers["customer_id"].map(number + 3)
    base = prepare_customers(customers, as_of=sim.as_of)
    r = explore(base)
    assert {"InvoiceLineID", "entry_no"} <= set(r.skipped)
    assert "identifier" in r.skipped["InvoiceLineID"]
    assert r.dimensions["dimension"].iloc[0] == "company_size"  # the world's true dimension
    asked = explore(base, ["InvoiceLineID"])
    assert list(asked.dimensions["dimension"]) == ["InvoiceLineID"]
    # by hand: names and values
    many = pd.Series(np.arange(100.0))
    few = pd.Series(np.arange(100.0) % 10)
    assert _looks_like_an_identifier("customer_id", few, 10)
    assert _looks_like_an_identifier("Invoice ID", few, 10)
    assert _looks_like_an_identifier("InvoiceLineID", few, 10)
    assert not _looks_like_an_identifier("paid", few, 10)
    assert not _looks_like_an_identifier("valid", few, 10)
    assert _looks_like_an_identifier("row", many, 100)  # whole numbers, one per customer
    assert not _looks_like_an_identifier("mrr", many + 0.5, 100)  # a measure, not a number
    assert not _looks_like_an_identifier("seats", few, 10)
