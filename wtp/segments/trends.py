"""Trend: each segment's performance period by period, with changes flagged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from wtp.errors import InputError, Problem
from wtp.io import RESERVED_SEGMENT
from wtp.segments.common import (
    _PERIOD_ALIASES,
    MONTH_DAYS,
    _div,
    _ensure_customers,
    period_days,
    resolve_as_of,
)

# --------------------------------------------------------------------------------------------
# Trend: performance per segment, period by period

_TREND_FREQ = {"week": "W", "month": "M", "quarter": "Q", "year": "Y"}
TREND_COLUMNS = [
    "segment",
    "period_start",
    "customers_start",
    "new",
    "churned",
    "churn_rate",
    "arpa",
    "mrr",
]


@dataclass(frozen=True)
class TrendResult:
    """Each segment's customers, churn and revenue period by period, with unusual periods flagged.

    Attributes
    ----------
    table : DataFrame
        ``trend.csv``: ``segment, period_start, customers_start, new, churned, churn_rate,
        arpa, mrr`` (contract §5), then ``lost, period_end, complete, exposure, hazard,
        baseline_hazard, rate_ratio, p_value, p_adjusted, flag``. Segment ``all`` pools every
        customer (not tested).
    flags : DataFrame
        The flagged rows: ``segment, period_start, direction, churned, exposure, hazard,
        baseline_hazard, rate_ratio, p_value, p_adjusted``.
    every : str
        The length of a row's period (``month``, ``quarter`` …).
    test : str
        The test and the multiplicity control, in words (for the report).
    """

    table: pd.DataFrame
    flags: pd.DataFrame
    every: str
    period: str
    as_of: pd.Timestamp
    alpha: float
    test: str

    def summary(self) -> pd.DataFrame:
        """The flagged segment-periods (empty when nothing moved beyond noise)."""
        return self.flags.copy()

    def to_frame(self) -> pd.DataFrame:
        """``trend.csv``."""
        return self.table.copy()


def trend(
    customers: pd.DataFrame,
    *,
    period: str = "month",
    every: str | None = None,
    as_of=None,
    alpha: float = 0.05,
    min_history: int = 2,
) -> TrendResult:
    """Customers, churn, ARPA and MRR per segment and calendar period, with changes flagged.

    ================ ==================================================================
    customers_start  customers on the period's first day (started before it, not yet gone)
    new              customers starting in the period
    churned          customers whose end date falls in the period (on or before as_of)
    churn_rate       lost / customers_start: of the customers there on the period's first
                     day, the share gone by its end (contract: "share lost per period"; a
                     customer who joins and leaves within the period is in ``churned`` but
                     not in the rate, whose base never held them)
    lost             of customers_start, those whose end date falls in the period
    arpa             mean ``mrr`` of customers_start, per study period
    mrr              Σ ``mrr`` of customers_start (monthly)
    exposure         customer-periods (study periods) lived in the period
    hazard           churned / exposure; baseline_hazard: the same over all earlier periods
    ================ ==================================================================

    **Flags.** A complete period with at least ``min_history`` earlier periods is tested
    against the segment's earlier periods with the exact conditional Poisson rate test: under
    equal rates, churned_now | (churned_now + churned_before) ~ Binomial(n, E_now / (E_now +
    E_before)) (two-sided). Holm's method over every segment × period tested keeps the chance
    of any false flag at ``alpha``; ``flag`` marks rejections (``up`` or ``down``).

    Parameters
    ----------
    customers : DataFrame
        ``customers.csv`` (validated or raw).
    period : str
        The study's period (unit of ``exposure``, ``hazard`` and ``arpa``).
    every : str, optional
        Row length: ``week``, ``month``, ``quarter`` or ``year`` (default: ``period``).
    as_of : date-like, optional
        As in :func:`cohorts`.
    """
    from statsmodels.stats.multitest import multipletests

    cust = _ensure_customers(customers)
    days = period_days(period)
    every = str(every or period).strip().lower()
    every = _PERIOD_ALIASES.get(every, every)
    if every not in _TREND_FREQ:
        raise InputError(Problem("--every", None, None, "one of " + ", ".join(_TREND_FREQ), every))
    # one owner of the censoring date (as_of, export date, or the latest date)
    when = resolve_as_of(as_of, cust).date
    cust = cust[cust["start_date"] <= when]
    if cust.empty:
        raise InputError(
            Problem(
                str(customers.attrs.get("source", "customers.csv")),
                None,
                "start_date",
                f"customers starting on or before {when.date()}",
            )
        )
    freq = _TREND_FREQ[every]
    periods = pd.period_range(
        cust["start_date"].min().to_period(freq), when.to_period(freq), freq=freq
    )
    p0 = periods.start_time.to_numpy(dtype="datetime64[ns]")
    p1 = (periods + 1).start_time.to_numpy(dtype="datetime64[ns]")
    stop_cap = np.datetime64(when + pd.Timedelta(days=1), "ns")
    start = cust["start_date"].to_numpy(dtype="datetime64[ns]")
    end = cust["end_date"].to_numpy(dtype="datetime64[ns]")
    gone = ~np.isnat(end) & (end <= np.datetime64(when, "ns"))
    # a customer is there through their end date (the last day as a customer)
    leave = np.where(gone, end + np.timedelta64(1, "D"), stop_cap)
    at_start = (start[:, None] < p0[None, :]) & (leave[:, None] > p0[None, :])
    new = (start[:, None] >= p0[None, :]) & (start[:, None] < p1[None, :])
    churned = gone[:, None] & (end[:, None] >= p0[None, :]) & (end[:, None] < p1[None, :])
    lost = at_start & churned
    lo = np.maximum(start[:, None], p0[None, :])
    hi = np.minimum(leave[:, None], np.minimum(p1, stop_cap)[None, :])
    exposure = np.clip((hi - lo) / np.timedelta64(1, "D"), 0, None) / days
    mrr = cust["mrr"].to_numpy(dtype=float) if "mrr" in cust.columns else np.full(len(cust), np.nan)
    has_mrr = np.isfinite(mrr)
    seg = cust["segment"].to_numpy(dtype=object)
    names = list(dict.fromkeys(seg))
    frames = []
    for name, mask in [
        *((n, seg == n) for n in names),
        *([(RESERVED_SEGMENT, np.ones(len(seg), bool))] if len(names) > 1 else []),
    ]:
        n_start = at_start[mask].sum(axis=0)
        paying = at_start[mask] & has_mrr[mask, None]
        mrr_sum = np.where(paying, mrr[mask, None], 0.0).sum(axis=0)
        n_pay = paying.sum(axis=0)
        frames.append(
            pd.DataFrame(
                {
                    "segment": name,
                    "period_start": periods.start_time.strftime("%Y-%m-%d"),
                    "customers_start": n_start,
                    "new": new[mask].sum(axis=0),
                    "churned": churned[mask].sum(axis=0),
                    "churn_rate": _div(lost[mask].sum(axis=0), n_start),
                    "arpa": _div(mrr_sum, n_pay) * days / MONTH_DAYS,
                    "mrr": np.where(n_pay > 0, mrr_sum, np.nan),
                    "lost": lost[mask].sum(axis=0),
                    "period_end": (periods + 1).start_time.strftime("%Y-%m-%d"),
                    "complete": p1 <= stop_cap,
                    "exposure": exposure[mask].sum(axis=0),
                }
            )
        )
    table = pd.concat(frames, ignore_index=True)
    table["hazard"] = _div(table["churned"], table["exposure"])
    table = _flag_changes(table, multipletests, alpha=alpha, min_history=min_history)
    test = (
        f"each complete {every} against the segment's earlier {every}s: exact conditional Poisson rate test of "
        f"churned / customer-{period}s (two-sided), Holm-adjusted over all {int(table['p_value'].notna().sum())} segment × {every} tests, "
        f"flagged where the adjusted p < {alpha:g}"
    )
    cols = [
        "segment",
        "period_start",
        "direction",
        "churned",
        "exposure",
        "hazard",
        "baseline_hazard",
        "rate_ratio",
        "p_value",
        "p_adjusted",
    ]
    flags = table.loc[table["flag"] != "", cols[:2] + cols[3:]].copy()
    flags.insert(2, "direction", table.loc[table["flag"] != "", "flag"].to_numpy())
    return TrendResult(
        table=table,
        flags=flags.reset_index(drop=True),
        every=every,
        period=str(period),
        as_of=when,
        alpha=alpha,
        test=test,
    )


def _flag_changes(
    table: pd.DataFrame, multipletests, *, alpha: float, min_history: int
) -> pd.DataFrame:
    """Baseline, rate ratio, exact test and Holm-adjusted p per tested segment-period."""
    table = table.copy()
    tested = table["segment"] != RESERVED_SEGMENT
    g = table.groupby("segment", sort=False)
    before_c = g["churned"].cumsum() - table["churned"]
    before_e = g["exposure"].cumsum() - table["exposure"]
    history = g["exposure"].transform(lambda e: (e > 0).cumsum().shift(fill_value=0))
    table["baseline_hazard"] = _div(before_c, before_e)
    table["rate_ratio"] = _div(table["hazard"], table["baseline_hazard"])
    ok = (
        tested
        & table["complete"]
        & (history >= min_history)
        & (table["exposure"] > 0)
        & (before_e > 0)
    ).to_numpy()
    p = np.full(len(table), np.nan)
    c_now = table["churned"].to_numpy(dtype=int)
    c_all = c_now + before_c.to_numpy(dtype=int)
    share = _div(table["exposure"], table["exposure"].to_numpy() + before_e.to_numpy())
    for i in np.flatnonzero(ok & (c_all > 0)):
        p[i] = stats.binomtest(int(c_now[i]), int(c_all[i]), float(share[i])).pvalue
    p[ok & (c_all == 0)] = 1.0
    table["p_value"] = p
    adj = np.full(len(table), np.nan)
    has = np.isfinite(p)
    if has.any():
        reject, adj_p, *_ = multipletests(p[has], alpha=alpha, method="holm")
        adj[has] = adj_p
    table["p_adjusted"] = adj
    up = table["hazard"].to_numpy() > table["baseline_hazard"].to_numpy()
    table["flag"] = np.where(np.isfinite(adj) & (adj < alpha), np.where(up, "up", "down"), "")
    return table
