"""Segment trend (trend.csv): counts by hand, a churn step found in simulated bases, CLI and report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.errors import InputError
from wtp.segments import MONTH_DAYS, trend
from wtp.simulate import simulate_churn_step

runner = CliRunner()

HAND = pd.DataFrame(
    {
        "customer_id": ["A", "B", "C"],
        "segment": ["S", "S", "S"],
        "start_date": ["2025-01-15", "2024-12-01", "2025-02-01"],
        "end_date": ["2025-03-10", "", "2025-02-20"],
        "mrr": [10.0, 20.0, 30.0],
    }
)


def test_trend_by_hand():
    t = trend(HAND, as_of="2025-03-31").table.set_index("period_start")
    assert list(t.index) == ["2024-12-01", "2025-01-01", "2025-02-01", "2025-03-01"]
    assert t["customers_start"].tolist() == [0, 1, 2, 2]
    assert t["new"].tolist() == [1, 1, 1, 0]
    assert t["churned"].tolist() == [0, 0, 1, 1]
    # churn_rate is the share of the customers there on the first day gone by the end: C joins
    # and leaves in February (churned, but never in February's starting base: rate 0 of 2);
    # in March A leaves, 1 of the 2 there on 1 March
    assert t["lost"].tolist() == [0, 0, 0, 1]
    assert t.loc["2025-02-01", "churn_rate"] == 0.0 and t.loc["2025-03-01", "churn_rate"] == 0.5
    assert np.isnan(t.loc["2024-12-01", "churn_rate"])
    # February: A and B all 28 days, C 1–20 February (the end date is its last day)
    assert t.loc["2025-02-01", "exposure"] == pytest.approx((28 + 28 + 20) / MONTH_DAYS)
    assert t.loc["2025-02-01", "arpa"] == pytest.approx(15.0) and t.loc["2025-02-01", "mrr"] == 30.0
    q = trend(HAND, every="quarter", as_of="2025-03-31").table
    assert q["period_start"].tolist() == ["2024-10-01", "2025-01-01"] and q["churned"].tolist() == [
        0,
        2,
    ]
    # the first quarter of 2025: only B was there on 1 January; A and C joined and left in it
    assert q["customers_start"].tolist() == [0, 1] and q["lost"].tolist() == [0, 0]
    assert q["churn_rate"].iloc[1] == 0.0
    with pytest.raises(InputError, match="every"):
        trend(HAND, every="fortnight")


def test_trend_churn_rate_is_the_share_of_the_starting_customers_lost():
    """The audit's case: Startups, the quarter from 2023-10-01 in the demo base. 143 customers
    there on 1 October; 34 end dates fall in the quarter, but 14 of them belong to customers who
    joined in it, so 20 of the 143 left: 20/143 = 13.99% (the old rate, 34/143 = 23.8%, mixed
    the two bases)."""
    from wtp.io import read_table, validate_customers
    from wtp.pipeline import demo_study_path

    cust = validate_customers(read_table(demo_study_path() / "customers.csv"))
    t = trend(cust, every="quarter", as_of="2026-06-30").table
    row = t[(t["segment"] == "Startups") & (t["period_start"] == "2023-10-01")].iloc[0]
    assert (row["customers_start"], row["churned"], row["lost"]) == (143, 34, 20)
    assert row["churn_rate"] == pytest.approx(20 / 143)
    # independently: of the Startups customers who started before 1 October 2023 and were still
    # there on it, those whose end date is in October–December 2023
    s = cust[cust["segment"] == "Startups"]
    q0, q1 = pd.Timestamp("2023-10-01"), pd.Timestamp("2024-01-01")
    base = s[(s["start_date"] < q0) & ~(s["end_date"] < q0)]
    gone = base[(base["end_date"] >= q0) & (base["end_date"] < q1)]
    assert (len(base), len(gone)) == (143, 20)


def test_exact_rate_test_by_hand():
    """Two flat segments and one whose fourth month loses 12 of 20: only that one is flagged."""
    rows = []
    for seg in ("flat", "spike"):
        for i in range(40):
            end = ""
            if seg == "spike" and i < 12:
                end = "2025-04-15"
            rows.append(
                {
                    "customer_id": f"{seg}{i}",
                    "segment": seg,
                    "start_date": "2024-12-01",
                    "end_date": end,
                }
            )
    tr = trend(pd.DataFrame(rows), as_of="2025-05-31")
    assert tr.flags[["segment", "period_start", "direction"]].values.tolist() == [
        ["spike", "2025-04-01", "up"]
    ]
    row = tr.table[
        (tr.table["segment"] == "spike") & (tr.table["period_start"] == "2025-04-01")
    ].iloc[0]
    # nobody left before: 12 of 12 churns in April, binomial(12, E_april / E_total) two-sided
    from scipy import stats

    share = (
        row["exposure"]
        / tr.table[(tr.table["segment"] == "spike") & (tr.table["period_start"] <= "2025-04-01")][
            "exposure"
        ].sum()
    )
    assert row["p_value"] == pytest.approx(stats.binomtest(12, 12, share).pvalue)
    assert "Holm" in tr.test


def test_churn_step_is_flagged_in_its_quarter_and_segment():
    hits = other = 0
    seeds = range(10)
    for seed in seeds:
        sim = simulate_churn_step(seed=seed)
        f = trend(sim.customers, every="quarter", as_of=sim.as_of).flags
        target = (f["segment"] == sim.step_segment) & (
            f["period_start"] == str(sim.step_quarter.date())
        )
        hits += bool(target.any())
        other += bool((~target).any())
    # measured: found in 10/10 seeds, a false flag somewhere in 1 of 10 (Holm keeps it near 5%)
    assert hits >= 9 and other <= 2


def test_segments_cli_writes_trend(tmp_path):
    sim = simulate_churn_step(n_per_segment=400, seed=1)
    sim.customers.to_csv(tmp_path / "customers.csv", index=False)
    sim.segments.to_csv(tmp_path / "segments.csv", index=False)
    out = tmp_path / "out"
    res = runner.invoke(
        app,
        [
            "segments",
            str(tmp_path / "segments.csv"),
            "--customers",
            str(tmp_path / "customers.csv"),
            "--every",
            "quarter",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out / "trend.csv")
    assert list(t.columns[:8]) == [
        "segment",
        "period_start",
        "customers_start",
        "new",
        "churned",
        "churn_rate",
        "arpa",
        "mrr",
    ]
    assert set(t["segment"]) == {"Startups", "SMB", "Mid-market", "all"}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="trend"' in html and "Holm" in html
