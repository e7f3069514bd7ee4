"""Segments: performance metrics, MAP scoring, customer cohorts and "what if" impact.

The seed method for choosing target segments is MAP: **M**easure volume, **A**nalyze
performance, **P**rioritize potential. This module turns ``segments.csv`` (and, optionally,
``customers.csv``) into

* :func:`segment_metrics` — one row per segment: volume (customers, share of the base),
  performance (conversion, churn, ARPA, gross margin, LTV, LTV/CAC, CAC payback), potential
  (market size, penetration, headroom, growth, CAC), each also relative to the average customer;
* :func:`score_segments` — 0–100 volume, performance and potential scores, an overall score and
  rank, the 1–3 segments to focus on and the segments too small or too costly to pursue;
* :func:`cohorts` — Kaplan–Meier survival per segment (statsmodels ``SurvfuncRight``), monthly
  cohort retention tables, revenue-weighted retention, LTV over time, and the churn and ARPA the
  customers imply;
* :func:`what_if` — overall conversion, churn, ARPA, LTV and revenue before and after growing
  one or more segments' customers, with the arithmetic as a table.

Definitions (``period`` is the study's period, ``month`` by default)

================== ==========================================================================
metric             definition
================== ==========================================================================
share              customers / customers of all segments
conversion_rate    conversions / trials (or ``conversion_rate`` from segments.csv)
churn_rate         share lost per period (segments.csv), or from customers.csv: churned
                   customers / customer-periods at risk (the constant-hazard estimate)
arpa               revenue per account per period (segments.csv), or from customers.csv: the
                   mean ``mrr`` of accounts active at ``as_of``, converted to the period
gross_margin       segments.csv; missing → 1 and flagged (``margin_assumed``)
lifetime           1 / churn_rate periods; churn 0 → capped at 60 periods and flagged
ltv                arpa × gross_margin × lifetime  (= ARPA × margin / churn)
ltv_cac            ltv / cac (empty when cac is 0)
cac_payback        cac / (arpa × gross_margin), in periods
penetration        customers / market_size
headroom           max(market_size − customers, 0): customers still to win
market_growth      growth of the market per year (segments.csv)
``<m>_vs_avg``     the segment's metric / the customer-weighted average over all segments
================== ==========================================================================

The average customer is customer-weighted: for any metric ``m`` it is
``Σ customers_s × m_s / Σ customers_s`` over the segments where ``m`` is known.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from wtp.errors import InputError, Problem
from wtp.io import RESERVED_SEGMENT, validate_customers, validate_segments
from wtp.settings import Segments as SegmentSettings

__all__ = [
    "PERIOD_DAYS",
    "LIFETIME_CAP",
    "DEFAULT_WEIGHTS",
    "METRIC_AXIS",
    "LOWER_IS_BETTER",
    "CohortResult",
    "AsOf",
    "resolve_as_of",
    "SegmentScores",
    "TrendResult",
    "trend",
    "WhatIfResult",
    "cohorts",
    "segment_metrics",
    "average_customer",
    "score_segments",
    "what_if",
    "parse_grow",
    "period_days",
    "score_settings",
]

MONTH_DAYS = 365.25 / 12
PERIOD_DAYS = {"day": 1.0, "week": 7.0, "month": MONTH_DAYS, "quarter": 365.25 / 4, "year": 365.25}
_PERIOD_ALIASES = {
    "daily": "day", "days": "day",
    "weekly": "week", "weeks": "week",
    "monthly": "month", "months": "month", "mo": "month",
    "quarterly": "quarter", "quarters": "quarter",
    "yearly": "year", "annual": "year", "annually": "year", "years": "year", "yr": "year",
}  # fmt: skip

#: LTV of a segment with churn 0 counts this many periods of revenue (contract §5).
LIFETIME_CAP = 60

#: MAP weights. Axis weights combine the three axes into the score; metric weights combine the
#: metrics of an axis. Override any of them with ``score_segments(weights={...})``; a weight of
#: 0 leaves that metric (or axis) out.
DEFAULT_WEIGHTS: dict[str, float] = {
    # axes → overall score
    "volume": 1.0,
    "performance": 1.0,
    "potential": 1.0,
    # volume: how much of the base the segment is
    "share": 1.0,
    # performance: how well its customers convert, stay, pay and pay back
    "conversion_rate": 1.0,
    "churn_rate": 1.0,
    "arpa": 1.0,
    "ltv_cac": 1.0,
    # potential: how much there is still to win, how fast it grows, how cheaply it is won
    "headroom": 1.0,
    "market_growth": 1.0,
    "cac": 1.0,
}
AXES = ("volume", "performance", "potential")
METRIC_AXIS = {
    "share": "volume",
    "conversion_rate": "performance",
    "churn_rate": "performance",
    "arpa": "performance",
    "ltv_cac": "performance",
    "headroom": "potential",
    "market_growth": "potential",
    "cac": "potential",
}
#: metrics where a lower value is the better segment
LOWER_IS_BETTER = frozenset({"churn_rate", "cac", "cac_payback"})

#: metrics compared with the average customer (``<metric>_vs_avg``)
VS_AVERAGE = (
    "conversion_rate",
    "churn_rate",
    "arpa",
    "gross_margin",
    "ltv",
    "ltv_cac",
    "cac",
    "cac_payback",
)

CONTRACT_COLUMNS = ["segment", "volume", "performance", "potential", "score", "rank"]

METRIC_LABELS = {
    "customers": "Customers",
    "share": "Share of customers",
    "conversion_rate": "Conversion (trial → paid)",
    "churn_rate": "Churn per period",
    "arpa": "ARPA",
    "gross_margin": "Gross margin",
    "lifetime": "Expected lifetime (periods)",
    "ltv": "LTV",
    "cac": "CAC",
    "ltv_cac": "LTV / CAC",
    "cac_payback": "CAC payback (periods)",
    "market_size": "Market size",
    "penetration": "Penetration",
    "headroom": "Headroom (customers to win)",
    "market_growth": "Market growth per year",
}


# --------------------------------------------------------------------------------------------
# Small helpers


def period_days(period: str = "month") -> float:
    """Length of a study period in days (``day``, ``week``, ``month``, ``quarter``, ``year``)."""
    key = str(period).strip().lower()
    key = _PERIOD_ALIASES.get(key, key)
    if key not in PERIOD_DAYS:
        raise InputError(
            Problem("study.toml", None, "study.period", "one of " + ", ".join(PERIOD_DAYS), period)
        )
    return PERIOD_DAYS[key]


@dataclass(frozen=True)
class AsOf:
    """The censoring date of a cohort analysis and where it came from.

    ``basis``: ``"given"`` (``[study] as_of``), ``"export_date"`` (``[study] export_date`` or an
    export-date column of customers.csv) or ``"latest_date"`` (the latest date anywhere in
    customers.csv — a guess: active customers carry no date, so the data may have been observed
    for longer). ``column`` names where the date was found.
    """

    date: pd.Timestamp
    basis: str
    column: str | None = None

    @property
    def guessed(self) -> bool:
        return self.basis == "latest_date"


# columns of customers.csv that state when the file was exported (header-normalised)
EXPORT_DATE_COLUMNS = (
    "export_date",
    "exported",
    "exported_at",
    "snapshot_date",
    "extract_date",
    "data_as_of",
)


def _parse_date(value, key: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(str(value) if not isinstance(value, pd.Timestamp) else value)
    except (ValueError, TypeError) as exc:
        raise InputError(Problem("study.toml", None, key, "a date YYYY-MM-DD", value)) from exc


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _date_columns(customers: pd.DataFrame) -> list[str]:
    extra = [
        c
        for c in customers.columns
        if c not in ("start_date", "end_date")
        and pd.api.types.is_datetime64_any_dtype(customers[c])
    ]
    return ["start_date", "end_date", *extra]


def resolve_as_of(value, customers: pd.DataFrame | None, *, export_date=None) -> AsOf | None:
    """The censoring date: ``as_of`` when given; else the export date (``export_date``, or a
    column such as ``export_date``/``snapshot_date`` in customers.csv); else the latest date in
    any date column of customers.csv (start, end, and activity dates such as a last invoice).

    Only the last is a guess, and a poor one when active customers carry no date: their
    follow-up then stops at the last start or churn, which shortens exposure and inflates churn.
    The contract's default (the latest date in customers.csv) is kept, but it is flagged.
    """
    if not _blank(value):
        return AsOf(_parse_date(value, "study.as_of"), "given")
    if not _blank(export_date):
        return AsOf(
            _parse_date(export_date, "study.export_date"), "export_date", "[study] export_date"
        )
    if customers is None or len(customers) == 0:
        return None
    cols = _date_columns(customers)
    export_cols = [
        c for c in cols if re.sub(r"[\s_-]+", "_", str(c).strip().lower()) in EXPORT_DATE_COLUMNS
    ]
    if export_cols:
        c = export_cols[0]
        return AsOf(pd.Timestamp(customers[c].max()), "export_date", c)
    latest = {c: customers[c].max() for c in cols if customers[c].notna().any()}
    c = max(latest, key=lambda k: latest[k])
    return AsOf(pd.Timestamp(latest[c]), "latest_date", c)


def as_of_message(when: AsOf, source: str = "customers.csv") -> str | None:
    """What to tell the analyst about a censoring date that was not given (None when given)."""
    if when.basis == "given":
        return None
    day = when.date.date()
    if when.basis == "export_date":
        return f"as_of not set: censoring at the export date {day} (from {when.column})."
    return (
        f"as_of not set: censoring at {day}, the latest date in {source} (column {when.column}). "
        "Customers still active are followed only until then; if the data were observed later, "
        "exposure is understated and churn overstated. Set [study] as_of (or export_date) to the end of observation."
    )


def _ensure_segments(segments: pd.DataFrame, need_arpa_churn: bool) -> pd.DataFrame:
    # validated frames carry ``row``; a raw frame (e.g. built in a notebook) is validated here
    if "row" in segments.columns and segments.attrs.get("source"):
        return segments
    return validate_segments(segments, need_arpa_churn=need_arpa_churn)


def _ensure_customers(
    customers: pd.DataFrame, segments: Iterable[str] | None = None
) -> pd.DataFrame:
    if "row" in customers.columns and pd.api.types.is_datetime64_any_dtype(customers["start_date"]):
        if segments is not None:
            known = set(segments)
            unknown = ~customers["segment"].isin(known)
            if unknown.any():
                name = customers.attrs.get("source", "customers.csv")
                raise InputError(
                    [
                        Problem(
                            name,
                            int(r),
                            "segment",
                            "a segment listed in segments.csv (" + ", ".join(sorted(known)) + ")",
                            s,
                        )
                        for r, s in zip(
                            customers["row"][unknown], customers["segment"][unknown], strict=True
                        )
                    ]
                )
        return customers
    return validate_customers(customers, segments=segments)


def _weighted_mean(values: pd.Series, weights: pd.Series) -> float:
    v = values.to_numpy(dtype=float)
    w = weights.to_numpy(dtype=float)
    ok = np.isfinite(v) & np.isfinite(w) & (w > 0)
    if not ok.any():
        return float("nan")
    return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok]))


def _mean(x: np.ndarray) -> float:
    """Mean of the finite values; NaN when there are none (no warning)."""
    x = np.asarray(x, dtype=float)
    ok = np.isfinite(x)
    return float(x[ok].mean()) if ok.any() else float("nan")


def _div(a, b):
    """Elementwise a / b with NaN where b is 0 or missing (no warnings)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    out = np.full(np.broadcast(a, b).shape, np.nan)
    ok = np.isfinite(b) & (b != 0)
    np.divide(a, b, out=out, where=ok)
    return out


# --------------------------------------------------------------------------------------------
# Cohorts


@dataclass(frozen=True)
class CohortResult:
    """Survival, retention and lifetime value of customers, per segment.

    Attributes
    ----------
    survival : DataFrame
        ``segment, time, at_risk, events, survival, se, lower, upper, band_lower, band_upper,
        revenue_survival``: the Kaplan–Meier estimate at every time a customer left (``time`` in
        periods since each customer's start; a row at time 0). ``lower``/``upper``: pointwise
        confidence interval (log-log); ``band_lower``/``band_upper``: Hall–Wellner simultaneous
        band from statsmodels (wide at the ends by construction). ``revenue_survival``: the same
        estimate with each customer weighted by ``mrr`` (share of starting revenue still there).
        Segment ``all`` pools every customer.
    retention : DataFrame
        Monthly cohort table, one row per ``segment, cohort, age``: ``customers`` (cohort
        size), ``active`` (still customers ``age`` periods after their own start),
        ``retention`` = active / customers and ``revenue_retention`` (the same with ``mrr``).
        Only complete cells are listed (every member of the cohort was observable that long).
    ltv_curve : DataFrame
        ``segment, time, expected_lifetime, ltv``: expected periods as a customer within the
        first ``time`` periods (area under the revenue-weighted survival curve) and the revenue
        per acquired customer that implies (``arpa_acquired × expected_lifetime``).
    implied : DataFrame
        Per segment: ``customers, churned, exposure`` (customer-periods at risk), ``churn_rate``
        = churned / exposure with an exact Poisson interval ``churn_lower, churn_upper``,
        ``retention_1y`` (Kaplan–Meier one year after start), ``median_lifetime`` (the first
        time the curve is strictly below 0.5 — statsmodels' and SAS's convention; where the curve
        sits exactly at 0.5, lifelines takes the first time it reaches 0.5 and R's survival the
        middle of that flat stretch), ``arpa``
        (mean ``mrr`` of accounts active at ``as_of``, per period), ``arpa_acquired`` (mean over
        all accounts) and ``ltv`` = arpa / churn_rate (revenue, no margin; churn 0 → capped at
        60 periods, ``ltv_capped``).
    excluded : DataFrame
        Customers left out and why (``customer_id, segment, row, reason``).
    """

    survival: pd.DataFrame
    retention: pd.DataFrame
    ltv_curve: pd.DataFrame
    implied: pd.DataFrame
    excluded: pd.DataFrame
    period: str
    as_of: pd.Timestamp
    alpha: float
    n_customers: int
    n_used: int
    has_mrr: bool
    as_of_basis: str = "given"  # see AsOf
    as_of_column: str | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def summary(self) -> pd.DataFrame:
        """Churn, retention, ARPA and LTV each segment's customers imply."""
        cols = [
            "segment",
            "customers",
            "churned",
            "churn_rate",
            "churn_lower",
            "churn_upper",
            "retention_1y",
            "median_lifetime",
            "arpa",
            "ltv",
        ]
        return self.implied[[c for c in cols if c in self.implied.columns]].copy()

    def to_frame(self) -> pd.DataFrame:
        """The survival table (``survival.csv``)."""
        return self.survival.copy()


def _km(time: np.ndarray, event: np.ndarray, weights: np.ndarray | None = None):
    """Kaplan–Meier via statsmodels; returns (times, survival, se, n_risk, n_events, fit)."""
    from statsmodels.duration.survfunc import SurvfuncRight

    if not event.any():
        return np.array([]), np.array([]), np.array([]), np.array([]), np.array([]), None
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = SurvfuncRight(time, event.astype(float), freq_weights=weights)
    return (
        np.asarray(fit.surv_times, dtype=float),
        np.asarray(fit.surv_prob, dtype=float),
        np.asarray(fit.surv_prob_se, dtype=float),
        np.asarray(fit.n_risk, dtype=float),
        np.asarray(fit.n_events, dtype=float),
        fit,
    )


def _step(times: np.ndarray, probs: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Right-continuous step function S(at) from its jump times (S = 1 before the first)."""
    at = np.asarray(at, dtype=float)
    if len(times) == 0:
        return np.ones_like(at)
    idx = np.searchsorted(times, at, side="right") - 1
    return np.where(idx >= 0, probs[np.clip(idx, 0, None)], 1.0)


def _area(times: np.ndarray, probs: np.ndarray, upto: np.ndarray) -> np.ndarray:
    """∫₀ᵗ S(u) du of a step function, exactly, for every t in ``upto``."""
    upto = np.asarray(upto, dtype=float)
    knots = np.concatenate([[0.0], times])
    level = np.concatenate([[1.0], probs])
    # area accumulated up to each knot
    cum = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(knots))])
    idx = np.searchsorted(knots, upto, side="right") - 1
    return cum[idx] + level[idx] * (upto - knots[idx])


def _loglog_ci(s: np.ndarray, se: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    # log(-log S) keeps the interval inside (0, 1) and is the usual default (Kalbfleisch–Prentice)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = (s > 0) & (s < 1) & np.isfinite(se)
        theta = np.where(inner, np.log(-np.log(np.where(inner, s, 0.5))), 0.0)
        se_t = np.where(
            inner, se / (np.where(inner, s, 0.5) * np.abs(np.log(np.where(inner, s, 0.5)))), 0.0
        )
        lower = np.where(inner, np.exp(-np.exp(theta + z * se_t)), s)
        upper = np.where(inner, np.exp(-np.exp(theta - z * se_t)), s)
    return lower, upper


def _durations(
    cust: pd.DataFrame, as_of: pd.Timestamp, days: float
) -> tuple[np.ndarray, np.ndarray]:
    end = cust["end_date"]
    event = (end.notna() & (end <= as_of)).to_numpy()
    stop = end.where(event, as_of)
    d = (stop - cust["start_date"]).dt.total_seconds().to_numpy() / 86400.0 / days
    return d, event


def cohorts(
    customers: pd.DataFrame,
    *,
    period: str = "month",
    as_of=None,
    alpha: float = 0.05,
    export_date=None,
    late_starts: Literal["error", "exclude"] = "error",
) -> CohortResult:
    """Survival, cohort retention, LTV over time and the churn and ARPA customers imply.

    Parameters
    ----------
    customers : DataFrame
        ``customers.csv`` (validated by :func:`wtp.io.validate_customers`, or raw and validated
        here):

        ============ ==================================================
        customer_id  identifier
        segment      the customer's segment
        start_date   first day as a paying customer
        end_date     last day (empty = still a customer)
        mrr          optional: monthly recurring revenue of the account
        ============ ==================================================
    period : str
        Unit of ``time``, ``age``, churn and ARPA (``month`` by default).
    as_of : date-like, optional
        Censoring date: customers still active then (or ending later) count as active.
        Default (see :func:`resolve_as_of`): ``export_date`` when given, else the latest date in
        ``customers`` (contract §5), which is flagged in ``warnings``.
    alpha : float
        1 − confidence level of the intervals and bands.
    export_date : date-like, optional
        When the customer data were exported (``[study] export_date``); used when ``as_of`` is not.
    late_starts : {"error", "exclude"}
        A customer who starts after ``as_of``: an input error naming the rows (default — an
        ``as_of`` before the data usually is a typo), or left out and listed in ``excluded``
        (to look at the base as it stood at an earlier date).

    Returns
    -------
    CohortResult
    """
    cust = _ensure_customers(customers)
    days = period_days(period)
    if late_starts not in ("error", "exclude"):
        raise InputError(
            Problem("options", None, "late_starts", "'error' or 'exclude'", late_starts)
        )
    basis = resolve_as_of(as_of, cust, export_date=export_date)
    when = basis.date
    z = float(stats.norm.ppf(1 - alpha / 2))
    late = (cust["start_date"] > when).to_numpy()
    if late.any() and late_starts == "error":
        key = "[study] as_of" if basis.basis == "given" else str(basis.column)
        raise InputError(
            [
                Problem(
                    cust.attrs.get("source", "customers.csv"),
                    int(r),
                    "start_date",
                    f"a start on or before as_of {when.date()} ({key})",
                    str(v.date()),
                )
                for r, v in zip(cust.loc[late, "row"], cust.loc[late, "start_date"], strict=True)
            ]
        )
    message = as_of_message(basis, cust.attrs.get("source", "customers.csv"))
    excluded = cust.loc[late, ["customer_id", "segment", "row"]].assign(
        reason=f"starts after as_of {when.date()}"
    )
    used = cust.loc[~late].reset_index(drop=True)
    has_mrr = "mrr" in used.columns and used["mrr"].notna().any()
    mrr_raw = used["mrr"].to_numpy(dtype=float) if has_mrr else np.full(len(used), np.nan)
    # an account without mrr weighs nothing in revenue retention and is left out of ARPA
    mrr = np.nan_to_num(mrr_raw)
    d, event = _durations(used, when, days)
    seg = used["segment"].to_numpy(dtype=object)
    names = list(dict.fromkeys(seg))
    groups = [(n, seg == n) for n in names]
    if len(names) > 1:
        # the pooled total, under the contract's reserved name
        groups.append((RESERVED_SEGMENT, np.ones(len(used), dtype=bool)))
    cohort = used["start_date"].dt.to_period("M")
    year = 365.25 / days

    surv_rows, ltv_rows, implied_rows, ret_frames = [], [], [], []
    for name, mask in groups:
        t, e, m, m_raw = d[mask], event[mask], mrr[mask], mrr_raw[mask]
        times, s, se, n_risk, n_events, fit = _km(t, e)
        lower, upper = _loglog_ci(s, se, z)
        band_lo = band_hi = np.full(len(times), np.nan)
        if fit is not None and len(times) > 1:
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore", RuntimeWarning)
                    band_lo, band_hi = (
                        np.asarray(x, dtype=float) for x in fit.simultaneous_cb(alpha=alpha)
                    )
            except (ValueError, np.linalg.LinAlgError, ZeroDivisionError):
                pass  # the band is a bonus; the pointwise interval is always there
        if has_mrr and m.sum() > 0:
            rt, rs, *_ = _km(t, e, weights=m)
            rev = _step(rt, rs, times)
            rev_all = (rt, rs)
        else:
            rev = np.full(len(times), np.nan)
            rev_all = None
        head = pd.DataFrame(
            {
                "segment": [name],
                "time": [0.0],
                "at_risk": [float(mask.sum())],
                "events": [0.0],
                "survival": [1.0],
                "se": [0.0],
                "lower": [1.0],
                "upper": [1.0],
                "band_lower": [np.nan],
                "band_upper": [np.nan],
                "revenue_survival": [1.0 if rev_all is not None else np.nan],
            }
        )
        body = pd.DataFrame(
            {
                "segment": name,
                "time": times,
                "at_risk": n_risk,
                "events": n_events,
                "survival": s,
                "se": se,
                "lower": lower,
                "upper": upper,
                "band_lower": band_lo,
                "band_upper": band_hi,
                "revenue_survival": rev,
            }
        )
        parts = [head, body] if len(times) == 0 or times[0] > 0 else [body]
        last = times[-1] if len(times) else 0.0
        if len(t) and t.max() > last:
            # the curve stays flat until the last follow-up: draw it that far, not to the last churn
            tail = body.iloc[-1:].copy() if len(body) else head.copy()
            tail[["time", "at_risk", "events", "band_lower", "band_upper"]] = [
                float(t.max()),
                float((t >= t.max()).sum()),
                0.0,
                np.nan,
                np.nan,
            ]
            parts.append(tail)
        surv_rows.append(pd.concat(parts, ignore_index=True))

        # LTV over time: area under the (revenue-weighted) survival curve × ARPA of new accounts
        horizon = int(np.floor(t.max())) if len(t) else 0
        grid = np.arange(horizon + 1, dtype=float)
        curve_t, curve_s = rev_all if rev_all is not None else (times, s)
        life = _area(curve_t, curve_s, grid)
        arpa_acq = _mean(m_raw) * days / MONTH_DAYS
        ltv_rows.append(
            pd.DataFrame(
                {"segment": name, "time": grid, "expected_lifetime": life, "ltv": arpa_acq * life}
            )
        )

        churned = int(e.sum())
        exposure = float(t.sum())
        hazard = churned / exposure if exposure > 0 else float("nan")
        lo = (
            stats.chi2.ppf(alpha / 2, 2 * churned) / (2 * exposure)
            if churned > 0 and exposure > 0
            else 0.0
        )
        hi = (
            stats.chi2.ppf(1 - alpha / 2, 2 * churned + 2) / (2 * exposure)
            if exposure > 0
            else float("nan")
        )
        active = ~e
        # ARPA now: the accounts active at as_of (all accounts when none is left)
        arpa = (
            _mean(m_raw[active] if np.isfinite(m_raw[active]).any() else m_raw) * days / MONTH_DAYS
        )
        capped = hazard == 0
        ltv = (
            arpa * LIFETIME_CAP
            if capped
            else arpa / hazard
            if hazard and np.isfinite(hazard)
            else float("nan")
        )
        median = float(fit.quantile(0.5)) if fit is not None else float("nan")
        ret_1y = float(_step(times, s, [year])[0]) if len(t) and t.max() >= year else float("nan")
        implied_rows.append(
            {
                "segment": name,
                "customers": int(mask.sum()),
                "churned": churned,
                "active": int(active.sum()),
                "exposure": exposure,
                "churn_rate": hazard,
                "churn_lower": lo,
                "churn_upper": hi,
                "retention_1y": ret_1y,
                "median_lifetime": median,
                "mean_follow_up": float(t.mean()) if len(t) else float("nan"),
                "arpa": arpa,
                "arpa_acquired": arpa_acq,
                "ltv": ltv,
                "ltv_capped": bool(capped),
            }
        )
        ret_frames.append(
            _retention_table(
                name,
                cohort[mask],
                used["start_date"][mask],
                t,
                e,
                m if has_mrr else None,
                when,
                days,
            )
        )

    survival = pd.concat(surv_rows, ignore_index=True)
    retention = pd.concat(ret_frames, ignore_index=True) if ret_frames else pd.DataFrame()
    return CohortResult(
        survival=survival,
        retention=retention,
        ltv_curve=pd.concat(ltv_rows, ignore_index=True),
        implied=pd.DataFrame(implied_rows),
        excluded=excluded.reset_index(drop=True),
        period=str(period),
        as_of=when,
        alpha=alpha,
        n_customers=len(cust),
        n_used=len(used),
        has_mrr=bool(has_mrr),
        as_of_basis=basis.basis,
        as_of_column=basis.column,
        warnings=(message,) if message and basis.guessed else (),
        notes=(message,) if message and not basis.guessed else (),
    )


def _retention_table(
    name, cohort: pd.Series, start: pd.Series, t, e, m, as_of, days
) -> pd.DataFrame:
    """Complete cells of the monthly cohort × age retention table, vectorised over customers."""
    codes, labels = pd.factorize(cohort.to_numpy(), sort=True)
    n_coh = len(labels)
    if n_coh == 0:
        return pd.DataFrame(
            columns=[
                "segment",
                "cohort",
                "age",
                "customers",
                "active",
                "retention",
                "revenue_retention",
            ]
        )
    last_start = pd.Series(start.to_numpy()).groupby(codes).max().reindex(range(n_coh))
    # a cell is complete when even the cohort's latest starter could be observed that long
    max_age = np.floor((as_of - last_start).dt.total_seconds().to_numpy() / 86400.0 / days).astype(
        int
    )
    top = int(max_age.max())
    # a customer who left after d periods is gone from age floor(d) + 1 on
    gone_at = np.where(e, np.floor(t).astype(int) + 1, top + 1)
    gone_at = np.clip(gone_at, 0, top + 1)
    size = np.bincount(codes, minlength=n_coh).astype(float)
    lost = np.zeros((n_coh, top + 2))
    np.add.at(lost, (codes, gone_at), 1.0)
    active = size[:, None] - np.cumsum(lost, axis=1)[:, : top + 1]
    ages = np.arange(top + 1)
    keep = ages[None, :] <= max_age[:, None]
    ci, ai = np.nonzero(keep)
    out = pd.DataFrame(
        {
            "segment": name,
            "cohort": np.asarray(labels.astype(str))[ci],
            "age": ai,
            "customers": size[ci].astype(int),
            "active": active[ci, ai].astype(int),
        }
    )
    out["retention"] = out["active"] / out["customers"]
    if m is not None:
        rev0 = np.bincount(codes, weights=m, minlength=n_coh)
        rev_lost = np.zeros((n_coh, top + 2))
        np.add.at(rev_lost, (codes, gone_at), m)
        rev_active = rev0[:, None] - np.cumsum(rev_lost, axis=1)[:, : top + 1]
        out["revenue_retention"] = _div(rev_active[ci, ai], rev0[ci])
    else:
        out["revenue_retention"] = np.nan
    return out


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
        arpa, mrr`` (contract §5), then ``period_end, complete, exposure, hazard,
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
    churn_rate       churned / customers_start (share lost in the row's period)
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
                    "churn_rate": _div(churned[mask].sum(axis=0), n_start),
                    "arpa": _div(mrr_sum, n_pay) * days / MONTH_DAYS,
                    "mrr": np.where(n_pay > 0, mrr_sum, np.nan),
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


# --------------------------------------------------------------------------------------------
# Metrics


def segment_metrics(
    segments: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    *,
    period: str = "month",
    as_of=None,
    cohort_result: CohortResult | None = None,
) -> pd.DataFrame:
    """Volume, performance and potential metrics per segment, and each against the average.

    Parameters
    ----------
    segments : DataFrame
        ``segments.csv`` validated by :func:`wtp.io.validate_segments` (a raw frame is
        validated here):

        ================= =====================================================
        segment           name
        customers         current customers
        arpa              revenue per account per period (may be absent when
                          ``customers`` is given)
        churn_rate        share lost per period (likewise)
        cac               acquisition cost per new customer
        trials,           optional: trials and paid conversions, or
        conversions       ``conversion_rate``
        gross_margin      optional, 0–1 (missing → 1, flagged)
        market_size       optional: potential customers
        market_growth     optional: market growth per year
        ================= =====================================================
    customers : DataFrame, optional
        ``customers.csv``; its cohorts supply ``churn_rate`` and ``arpa`` where segments.csv
        lacks them, and add ``churn_rate_cohort``, ``arpa_cohort``, ``retention_1y`` columns.
    period, as_of
        As in :func:`cohorts`.
    cohort_result : CohortResult, optional
        An already computed :func:`cohorts` result (saves recomputing it).

    Returns
    -------
    DataFrame
        One row per segment in input order; see the module docstring for the definitions.
        Boolean flags ``margin_assumed`` and ``ltv_capped``, text ``churn_source``,
        ``arpa_source``, ``conversion_source`` and ``notes`` say where numbers came from.
    """
    period_days(period)
    have_customers = customers is not None or cohort_result is not None
    segs = _ensure_segments(segments, need_arpa_churn=not have_customers)
    source = str(segs.attrs.get("source", "segments.csv"))
    if cohort_result is None and customers is not None:
        cust = _ensure_customers(customers, segs["segment"].tolist())
        cohort_result = cohorts(cust, period=period, as_of=as_of)
    implied = cohort_result.implied.set_index("segment") if cohort_result is not None else None

    out = pd.DataFrame({"segment": segs["segment"].to_numpy(dtype=object)})
    n = segs["customers"].to_numpy(dtype=float)
    out["customers"] = n
    out["share"] = _div(n, n.sum())
    for c in ("trials", "conversions"):
        if c in segs.columns:
            out[c] = segs[c].to_numpy(dtype=float)
    conv = np.full(len(segs), np.nan)
    conv_source = np.full(len(segs), "missing", dtype=object)
    if "conversion_rate" in segs.columns:
        given = segs["conversion_rate"].to_numpy(dtype=float)
        conv = np.where(np.isfinite(given), given, conv)
        conv_source = np.where(np.isfinite(given), "conversion_rate", conv_source)
    if {"trials", "conversions"} <= set(segs.columns):
        ratio = _div(segs["conversions"], segs["trials"])
        conv = np.where(np.isfinite(ratio), ratio, conv)
        conv_source = np.where(np.isfinite(ratio), "conversions / trials", conv_source)
    out["conversion_rate"] = conv
    out["conversion_source"] = conv_source

    problems = []
    for col in ("churn_rate", "arpa"):
        given = (
            segs[col].to_numpy(dtype=float) if col in segs.columns else np.full(len(segs), np.nan)
        )
        # the contract role names, whatever the files are called, so consumers can test them
        src = np.where(np.isfinite(given), "segments.csv", "missing").astype(object)
        values = given.copy()
        from_cust = None
        if implied is not None:
            from_cust = implied[col].reindex(out["segment"]).to_numpy(dtype=float)
            fill = ~np.isfinite(values) & np.isfinite(from_cust)
            values = np.where(fill, from_cust, values)
            src = np.where(fill, "customers.csv", src)
        for i in np.flatnonzero(~np.isfinite(values)):
            what = (
                "a churn rate between 0 and 1"
                if col == "churn_rate"
                else "revenue per account (arpa)"
            )
            hint = (
                " (customers.csv has no customers of this segment)"
                if implied is not None
                else " (or customers.csv to estimate it)"
            )
            if (
                col == "arpa"
                and implied is not None
                and cohort_result is not None
                and not cohort_result.has_mrr
            ):
                hint = " (customers.csv has no mrr column to estimate it)"
            problems.append(Problem(source, int(segs["row"].iloc[i]), col, what + hint, None))
        out[col] = values
        out[f"{col.split('_')[0]}_source"] = src
        if from_cust is not None:
            # what customers.csv says, next to what is used (they differ where segments.csv has it)
            out[f"{col}_cohort"] = from_cust
    if problems:
        raise InputError(problems)

    margin = (
        segs["gross_margin"].to_numpy(dtype=float)
        if "gross_margin" in segs.columns
        else np.full(len(segs), np.nan)
    )
    assumed = ~np.isfinite(margin)
    out["gross_margin"] = np.where(assumed, 1.0, margin)
    out["margin_assumed"] = assumed
    churn = out["churn_rate"].to_numpy(dtype=float)
    capped = churn == 0
    out["lifetime"] = np.where(capped, float(LIFETIME_CAP), _div(1.0, churn))
    out["ltv_capped"] = capped
    arpa = out["arpa"].to_numpy(dtype=float)
    out["ltv"] = arpa * out["gross_margin"].to_numpy() * out["lifetime"].to_numpy()
    cac = segs["cac"].to_numpy(dtype=float)
    out["cac"] = cac
    out["ltv_cac"] = _div(out["ltv"], cac)
    unit_margin = arpa * out["gross_margin"].to_numpy()
    out["cac_payback"] = np.where(cac == 0, 0.0, _div(cac, unit_margin))
    market = (
        segs["market_size"].to_numpy(dtype=float)
        if "market_size" in segs.columns
        else np.full(len(segs), np.nan)
    )
    out["market_size"] = market
    out["penetration"] = _div(n, market)
    out["headroom"] = np.where(np.isfinite(market), np.maximum(market - n, 0.0), np.nan)
    out["market_growth"] = (
        segs["market_growth"].to_numpy(dtype=float) if "market_growth" in segs.columns else np.nan
    )
    if "seats_per_account" in segs.columns:
        out["seats_per_account"] = segs["seats_per_account"].to_numpy(dtype=float)
        out["arpa_per_seat"] = _div(arpa, out["seats_per_account"])
    if implied is not None:
        out["retention_1y"] = implied["retention_1y"].reindex(out["segment"]).to_numpy(dtype=float)
        out["churn_lower"] = implied["churn_lower"].reindex(out["segment"]).to_numpy(dtype=float)
        out["churn_upper"] = implied["churn_upper"].reindex(out["segment"]).to_numpy(dtype=float)

    notes = [[] for _ in range(len(out))]
    for i in range(len(out)):
        if assumed[i]:
            notes[i].append("gross margin missing: assumed 100%")
        if capped[i]:
            notes[i].append(f"churn 0: LTV capped at {LIFETIME_CAP} periods")
        if cac[i] == 0:
            notes[i].append("CAC 0: LTV/CAC undefined")
        if not np.isfinite(conv[i]):
            notes[i].append("no trials/conversions: conversion unknown")
        if out["churn_source"].iloc[i] == "customers.csv":
            notes[i].append("churn estimated from customers.csv")
        if out["arpa_source"].iloc[i] == "customers.csv":
            notes[i].append("ARPA estimated from customers.csv")
        if n[i] == 0:
            notes[i].append("no customers")
    out["notes"] = ["; ".join(x) for x in notes]

    avg = average_customer(out)
    for m in VS_AVERAGE:
        out[f"{m}_vs_avg"] = _div(out[m], avg.get(m, np.nan))
    out["row"] = segs["row"].to_numpy()
    out.attrs.update(kind="segment_metrics", source=source, period=str(period))
    return out


def average_customer(metrics: pd.DataFrame) -> pd.Series:
    """The customer-weighted average customer: ``Σ customers × m / Σ customers`` per metric.

    Totals (``customers``, ``market_size``, ``headroom``) are sums; ``share`` is 1 and
    ``penetration`` is total customers / total market.
    """
    w = metrics["customers"]
    values = {}
    for m in (
        "conversion_rate",
        "churn_rate",
        "arpa",
        "gross_margin",
        "lifetime",
        "ltv",
        "cac",
        "ltv_cac",
        "cac_payback",
        "market_growth",
    ):
        if m in metrics.columns:
            values[m] = _weighted_mean(metrics[m], w)
    values["customers"] = float(w.sum())
    values["share"] = 1.0
    if "market_size" in metrics.columns and metrics["market_size"].notna().any():
        known = metrics["market_size"].notna()
        values["market_size"] = float(metrics.loc[known, "market_size"].sum())
        values["penetration"] = float(_div(w[known].sum(), values["market_size"]))
        values["headroom"] = float(metrics.loc[known, "headroom"].sum())
    else:
        values.update(market_size=np.nan, penetration=np.nan, headroom=np.nan)
    return pd.Series(values, name="average")


# --------------------------------------------------------------------------------------------
# MAP scoring


@dataclass(frozen=True)
class SegmentScores:
    """MAP scores of the segments.

    Attributes
    ----------
    scores : DataFrame
        ``segment_scores.csv``: ``segment, volume, performance, potential, score, rank`` (0–100,
        100 = best segment on that axis; rank 1 = best), then ``focus``, ``flags``, the metrics
        behind the scores (:func:`segment_metrics`) and the 0–100 score of each metric
        (``score_<metric>``). Sorted by rank.
    focus : DataFrame
        ``segment, rank, score, reason``: the 1–3 segments to focus on.
    flags : DataFrame
        ``segment, flag, reason``: segments too small or too costly to pursue.
    metrics : DataFrame
        :func:`segment_metrics` in input order.
    weights : dict
        The weights used (axes and metrics), defaults overridden by the caller's.
    weight_table : DataFrame
        ``axis, metric, weight, better, used``: which metric fed which axis, and why not.
    average : Series
        The customer-weighted average customer.
    notes : list of str
        What could not be scored and why (missing inputs).
    """

    scores: pd.DataFrame
    focus: pd.DataFrame
    flags: pd.DataFrame
    metrics: pd.DataFrame
    weights: dict[str, float]
    weight_table: pd.DataFrame
    average: pd.Series
    notes: list[str] = field(default_factory=list)
    period: str = "month"
    settings: dict[str, float] = field(default_factory=dict)
    cohorts: CohortResult | None = None
    trend: TrendResult | None = None

    def summary(self) -> pd.DataFrame:
        """Rank, the three axes and the score, with focus and flags, best first."""
        cols = [
            *CONTRACT_COLUMNS,
            "focus",
            "flags",
            "customers",
            "share",
            "churn_rate",
            "arpa",
            "ltv",
            "ltv_cac",
        ]
        return self.scores[[c for c in cols if c in self.scores.columns]].copy()

    def to_frame(self) -> pd.DataFrame:
        """``segment_scores.csv``: contract columns first, then everything behind them."""
        return self.scores.copy()


def _resolve_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    out = dict(DEFAULT_WEIGHTS)
    if not weights:
        return out
    problems = []
    for k, v in weights.items():
        if k not in DEFAULT_WEIGHTS:
            problems.append(
                Problem("weights", None, str(k), "one of " + ", ".join(DEFAULT_WEIGHTS), k)
            )
            continue
        try:
            v = float(v)
        except (TypeError, ValueError):
            problems.append(Problem("weights", None, str(k), "a weight of 0 or more", v))
            continue
        if not math.isfinite(v) or v < 0:
            problems.append(Problem("weights", None, str(k), "a weight of 0 or more", v))
            continue
        out[k] = v
    if not any(out[a] > 0 for a in AXES):
        problems.append(
            Problem(
                "weights",
                None,
                "volume, performance, potential",
                "at least one axis weight above 0",
                0,
            )
        )
    if problems:
        raise InputError(problems)
    return out


_SCORE_SETTINGS = {
    "min_share": float,
    "min_ltv_cac": float,
    "focus_min_score": float,
    "max_focus": int,
}


def score_settings(
    settings: Mapping | SegmentSettings | None, *, source: str = "study.toml"
) -> dict:
    """Keyword arguments for :func:`score_segments` from a study's ``[segments]`` table.

    .. code-block:: toml

        [segments]
        min_share = 0.05          # too small below this share of customers
        min_ltv_cac = 1.0         # too costly below this LTV/CAC
        focus_min_score = 70      # focus segments score at least this
        max_focus = 3
        [segments.weights]        # any of DEFAULT_WEIGHTS
        potential = 2

    ``settings`` may be the typed section (:class:`wtp.settings.Segments`, already checked
    against the schema, which holds the defaults): every key is then returned.
    """
    if isinstance(settings, SegmentSettings):
        typed = {k: getattr(settings, k) for k in _SCORE_SETTINGS}
        if settings.weights:
            typed["weights"] = dict(settings.weights)
        settings = typed
    settings = dict(settings or {})
    out: dict = {}
    problems = []
    for key, value in settings.items():
        if key == "weights":
            if not isinstance(value, Mapping):
                problems.append(
                    Problem(
                        source,
                        None,
                        "segments.weights",
                        "a table of weights, e.g. {potential = 2}",
                        value,
                    )
                )
            else:
                out["weights"] = dict(value)
        elif key in _SCORE_SETTINGS:
            try:
                number = _SCORE_SETTINGS[key](value)
            except (TypeError, ValueError):
                problems.append(Problem(source, None, f"segments.{key}", "a number", value))
                continue
            if not math.isfinite(number) or number < 0 or (key == "max_focus" and number < 1):
                problems.append(
                    Problem(source, None, f"segments.{key}", "a positive number", value)
                )
                continue
            out[key] = number
        else:
            problems.append(
                Problem(
                    source,
                    None,
                    f"segments.{key}",
                    "one of weights, " + ", ".join(_SCORE_SETTINGS),
                    key,
                )
            )
    if problems:
        raise InputError(problems)
    if "weights" in out:
        _resolve_weights(out["weights"])
    return out


def _metric_scores(values: pd.Series, lower_better: bool) -> np.ndarray:
    """Min–max to 0–100 across segments: the best segment 100, the worst 0; all equal → 100."""
    x = values.to_numpy(dtype=float)
    ok = np.isfinite(x)
    out = np.full(len(x), np.nan)
    if not ok.any():
        return out
    lo, hi = x[ok].min(), x[ok].max()
    if hi == lo:
        out[ok] = 100.0
        return out
    scaled = (x[ok] - lo) / (hi - lo)
    out[ok] = 100.0 * ((1.0 - scaled) if lower_better else scaled)
    return out


def _best_is_100(raw: np.ndarray) -> np.ndarray:
    ok = np.isfinite(raw)
    if not ok.any():
        return raw
    top = raw[ok].max()
    if top <= 0:
        return np.where(ok, 100.0, np.nan)
    # the best is exactly 100 (x / x can round to 99.99999999999999); the clip keeps others ≤ 100
    return np.where(ok, np.where(raw == top, 100.0, np.clip(100.0 * raw / top, 0.0, 100.0)), np.nan)


def score_segments(
    segments: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    *,
    weights: Mapping[str, float] | None = None,
    period: str = "month",
    as_of=None,
    cohort_result: CohortResult | None = None,
    min_share: float = 0.05,
    min_ltv_cac: float = 1.0,
    focus_min_score: float = 70.0,
    max_focus: int = 3,
) -> SegmentScores:
    """Score segments on volume, performance and potential (MAP) and pick where to focus.

    The scoring, in three simple steps:

    1. **Metric scores.** Each metric is scaled across segments to 0–100 (min–max: the best
       segment 100, the worst 0, all equal → 100). For ``churn_rate`` and ``cac`` lower is
       better. A segment with CAC 0 scores 100 on ``ltv_cac``.
    2. **Axis scores.** An axis is the weighted mean of its metric scores (metrics a segment
       lacks are left out and the weights renormalised), rescaled so the best segment is 100:

       =========== ================================================ ===============
       axis        metrics (default weight 1 each)                  better
       =========== ================================================ ===============
       volume      share of customers                               higher
       performance conversion_rate, churn_rate, arpa, ltv_cac       lower churn
       potential   headroom (market − customers), market_growth,    lower CAC
                   cac
       =========== ================================================ ===============
    3. **Score.** The weighted mean of the three axes (default weights 1, 1, 1), rescaled so
       the best segment is 100. ``rank`` 1 = highest score (ties share a rank).

    Flags: **too small** when a segment holds under ``min_share`` of customers and (where
    market sizes are known) under ``min_share`` of the total market; **too costly** when
    LTV/CAC is under ``min_ltv_cac`` (a new customer costs more to win than the margin they
    bring). **Focus**: the best-ranked unflagged segments scoring at least ``focus_min_score``,
    at most ``max_focus`` of them, and always the best unflagged one.

    Parameters
    ----------
    segments, customers, period, as_of, cohort_result
        As in :func:`segment_metrics`.
    weights : mapping, optional
        Overrides of :data:`DEFAULT_WEIGHTS` by name, e.g. ``{"potential": 2, "cac": 0}``.

    Returns
    -------
    SegmentScores
    """
    w = _resolve_weights(weights)
    if cohort_result is None and customers is not None:
        segs = _ensure_segments(segments, need_arpa_churn=False)
        cust = _ensure_customers(customers, segs["segment"].tolist())
        cohort_result = cohorts(cust, period=period, as_of=as_of)
        segments = segs
    if segments.attrs.get("kind") == "segment_metrics":
        metrics = segments
    else:
        metrics = segment_metrics(segments, period=period, as_of=as_of, cohort_result=cohort_result)
    k = len(metrics)
    notes: list[str] = []

    sub: dict[str, np.ndarray] = {}
    table = []
    for metric, axis in METRIC_AXIS.items():
        values = (
            metrics[metric] if metric in metrics.columns else pd.Series(np.nan, index=metrics.index)
        )
        s = _metric_scores(values, metric in LOWER_IS_BETTER)
        if metric == "ltv_cac":
            s = np.where(metrics["cac"].to_numpy() == 0, 100.0, s)
        used = bool(np.isfinite(s).any()) and w[metric] > 0 and w[axis] > 0
        why = ""
        if not np.isfinite(s).any():
            why = {
                "conversion_rate": "no trials/conversions or conversion_rate in segments.csv",
                "headroom": "no market_size in segments.csv",
                "market_growth": "no market_growth in segments.csv",
            }.get(metric, "not available")
            notes.append(f"{METRIC_LABELS.get(metric, metric)} not scored: {why}.")
        elif w[metric] == 0 or w[axis] == 0:
            why = "weight 0"
        table.append(
            {
                "axis": axis,
                "metric": metric,
                "weight": w[metric],
                "better": "lower" if metric in LOWER_IS_BETTER else "higher",
                "used": used,
                "why_not": why,
            }
        )
        if used:
            sub[metric] = s

    axes: dict[str, np.ndarray] = {}
    for axis in AXES:
        members = [m for m, a in METRIC_AXIS.items() if a == axis and m in sub]
        if not members or w[axis] == 0:
            axes[axis] = np.full(k, np.nan)
            if w[axis] > 0:
                notes.append(
                    f"The {axis} axis has no metric to score and is left out of the score."
                )
            continue
        vals = np.vstack([sub[m] for m in members])
        wt = np.array([w[m] for m in members])[:, None] * np.isfinite(vals)
        raw = np.where(
            wt.sum(axis=0) > 0,
            np.nansum(np.nan_to_num(vals) * wt, axis=0) / np.maximum(wt.sum(axis=0), 1e-300),
            np.nan,
        )
        axes[axis] = _best_is_100(raw)

    A = np.vstack([axes[a] for a in AXES])
    aw = np.array([w[a] for a in AXES])[:, None] * np.isfinite(A)
    raw_score = np.where(
        aw.sum(axis=0) > 0,
        np.nansum(np.nan_to_num(A) * aw, axis=0) / np.maximum(aw.sum(axis=0), 1e-300),
        np.nan,
    )
    score = _best_is_100(raw_score)

    scores = pd.DataFrame({"segment": metrics["segment"].to_numpy(dtype=object)})
    for a in AXES:
        scores[a] = axes[a]
    scores["score"] = score
    # rounding before ranking keeps float noise from splitting true ties
    scores["rank"] = (
        pd.Series(np.round(score, 9)).rank(ascending=False, method="min").astype("Int64").to_numpy()
    )

    # flags
    avg = average_customer(metrics)
    flags = []
    market = metrics["market_size"].to_numpy(dtype=float)
    market_total = np.nansum(market) if np.isfinite(market).any() else np.nan
    for i, row in metrics.reset_index(drop=True).iterrows():
        share = row["share"]
        if np.isfinite(share) and share < min_share:
            mshare = (
                market[i] / market_total if np.isfinite(market[i]) and market_total > 0 else np.nan
            )
            if not (np.isfinite(mshare) and mshare >= min_share):
                reason = f"{share:.1%} of customers (under {min_share:.0%})"
                reason += (
                    f" and {mshare:.1%} of the known market"
                    if np.isfinite(mshare)
                    else "; no market_size to show room to grow"
                )
                flags.append({"segment": row["segment"], "flag": "too small", "reason": reason})
        if np.isfinite(row["ltv_cac"]) and row["ltv_cac"] < min_ltv_cac:
            flags.append(
                {
                    "segment": row["segment"],
                    "flag": "too costly",
                    "reason": f"LTV/CAC {row['ltv_cac']:.2f} (under {min_ltv_cac:g}): winning a customer costs {row['cac']:,.0f}, "
                    f"their lifetime margin is {row['ltv']:,.0f}",
                }
            )
    flags = pd.DataFrame(flags, columns=["segment", "flag", "reason"])
    flag_text = (
        flags.groupby("segment", sort=False)["flag"].agg("; ".join)
        if len(flags)
        else pd.Series(dtype=object)
    )
    scores["flags"] = [flag_text.get(seg, "") for seg in scores["segment"]]

    # focus
    order = scores.assign(_n=metrics["customers"].to_numpy()).sort_values(
        ["rank", "_n"], ascending=[True, False]
    )
    candidates = order[order["flags"] == ""]
    chosen = candidates[candidates["score"] >= focus_min_score].head(max_focus)
    if chosen.empty and not candidates.empty:
        chosen = candidates.head(1)
    if candidates.empty:
        notes.append("Every segment is flagged: no segment to focus on.")
    mi = metrics.set_index("segment")
    focus = pd.DataFrame(
        [
            {
                "segment": s,
                "rank": int(r),
                "score": float(sc),
                "reason": _focus_reason(s, axes, scores, mi, avg),
            }
            for s, r, sc in zip(chosen["segment"], chosen["rank"], chosen["score"], strict=True)
        ],
        columns=["segment", "rank", "score", "reason"],
    )
    scores["focus"] = scores["segment"].isin(set(focus["segment"]))

    for m, s in sub.items():
        scores[f"score_{m}"] = s
    metric_cols = [c for c in metrics.columns if c not in ("segment", "row")]
    full = scores.merge(metrics[["segment", *metric_cols]], on="segment", how="left")
    lead = [*CONTRACT_COLUMNS, "focus", "flags"]
    score_cols = [c for c in full.columns if c.startswith("score_")]
    rest = [c for c in full.columns if c not in lead and c not in score_cols]
    full = full[lead + rest + score_cols]
    full = full.sort_values(
        ["rank", "customers"], ascending=[True, False], kind="stable"
    ).reset_index(drop=True)
    full["rank"] = full["rank"].astype(int)
    return SegmentScores(
        scores=full,
        focus=focus,
        flags=flags,
        metrics=metrics,
        weights=w,
        weight_table=pd.DataFrame(table),
        average=avg,
        notes=notes,
        period=str(metrics.attrs.get("period", period)),
        settings={
            "min_share": min_share,
            "min_ltv_cac": min_ltv_cac,
            "focus_min_score": focus_min_score,
            "max_focus": max_focus,
        },
        cohorts=cohort_result,
    )


def _focus_reason(segment, axes, scores, metrics: pd.DataFrame, avg: pd.Series) -> str:
    i = int(np.flatnonzero(scores["segment"].to_numpy() == segment)[0])
    row = metrics.loc[segment]
    strong = [f"{a} {axes[a][i]:.0f}" for a in AXES if np.isfinite(axes[a][i]) and axes[a][i] >= 80]
    # the metrics where this segment beats the average customer by the widest margin
    edges = []
    for m in ("conversion_rate", "churn_rate", "arpa", "ltv", "ltv_cac", "cac"):
        v, a = row.get(m, np.nan), avg.get(m, np.nan)
        if not (np.isfinite(v) and np.isfinite(a)) or a == 0 or v == 0:
            continue
        gain = (a / v) if m in LOWER_IS_BETTER else (v / a)
        if gain > 1.05:
            edges.append((gain, m, v))
    edges.sort(reverse=True)
    parts = [f"rank {int(scores['rank'].iloc[i])}, score {scores['score'].iloc[i]:.0f}"]
    if strong:
        parts.append("strong on " + ", ".join(strong))
    for gain, m, v in edges[:2]:
        shown = (
            f"{v:.1%}"
            if m in ("conversion_rate", "churn_rate")
            else f"{v:,.2f}"
            if m == "ltv_cac"
            else f"{v:,.0f}"
        )
        word = "lower" if m in LOWER_IS_BETTER else "higher"
        parts.append(
            f"{METRIC_LABELS[m]} {shown} ({gain:.1f}× {word} than average)"
            if m not in LOWER_IS_BETTER
            else f"{METRIC_LABELS[m]} {shown} ({1 / gain:.2f}× the average)"
        )
    if row.get("share", 0) >= 0.2:
        parts.append(f"{row['share']:.0%} of customers")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# What if


@dataclass(frozen=True)
class WhatIfResult:
    """Overall metrics before and after growing some segments' customers.

    Attributes
    ----------
    grow : dict
        Segment → growth (0.10 = +10% customers).
    table : DataFrame
        ``metric, before, after, change, change_pct, formula, working``: customers,
        conversion_rate, churn_rate, arpa, ltv (customer-weighted means) and revenue per period
        (Σ customers × ARPA). ``working`` writes the after-value's arithmetic out in numbers.
    arithmetic : DataFrame
        One row per segment: ``segment, growth, customers_before, customers_after,
        share_before, share_after, conversion_rate, churn_rate, arpa, ltv, revenue_before,
        revenue_after``, and a final ``all`` row with the totals.
    """

    grow: dict[str, float]
    table: pd.DataFrame
    arithmetic: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        return self.table[["metric", "before", "after", "change", "change_pct"]].copy()

    def to_frame(self) -> pd.DataFrame:
        """``what_if.csv``."""
        return self.table.copy()


_GROW = re.compile(
    r"^\s*(?P<seg>.+?)\s*=\s*(?P<num>[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+))\s*(?P<pct>%?)\s*$"
)


def parse_grow(
    specs: Iterable[str] | str, segments: Iterable[str] | None = None, *, source: str = "--grow"
) -> dict[str, float]:
    """Parse ``SEGMENT=10%`` (or ``SEGMENT=0.10``) into ``{"SEGMENT": 0.10}``.

    A bare number must be a fraction between -1 and 1 (``0.1``); write ``10%`` for ten
    percent. Growth must be above -100%. With ``segments``, every name must be one of them.
    """
    if isinstance(specs, str):
        specs = [specs]
    known = None if segments is None else list(dict.fromkeys(segments))
    out: dict[str, float] = {}
    problems = []
    for spec in specs:
        m = _GROW.match(str(spec))
        if not m:
            problems.append(Problem(source, None, None, "SEGMENT=PERCENT, e.g. 'SMB=10%'", spec))
            continue
        seg, pct = m["seg"], bool(m["pct"])
        value = float(m["num"].replace(",", "."))
        if pct:
            value /= 100.0
        elif abs(value) > 1:
            problems.append(
                Problem(
                    source,
                    None,
                    None,
                    f"a percentage like '{seg}={m['num']}%' or a fraction like '{seg}=0.1'",
                    spec,
                )
            )
            continue
        if value <= -1:
            problems.append(Problem(source, None, None, "growth above -100%", spec))
            continue
        if known is not None and seg not in known:
            problems.append(
                Problem(
                    source,
                    None,
                    "segment",
                    "a segment in segments.csv (" + ", ".join(map(str, known)) + ")",
                    seg,
                )
            )
            continue
        out[seg] = out.get(seg, 0.0) + value if seg in out else value
    if problems:
        raise InputError(problems)
    return out


def what_if(
    data: SegmentScores | pd.DataFrame,
    grow: Mapping[str, float] | Iterable[str] | str,
    *,
    customers: pd.DataFrame | None = None,
    period: str = "month",
    as_of=None,
) -> WhatIfResult:
    """Overall conversion, churn, ARPA, LTV and revenue if some segments grew.

    ``grow={"SMB": 0.10}`` multiplies SMB's customers by 1.10 and leaves the others unchanged
    (contract §5). The overall figures are the customer-weighted averages of
    :func:`segment_metrics`, so the mix shift is all that moves them:

    ============== ===========================================
    customers      Σ n
    conversion     Σ n × conversion / Σ n (segments that have it)
    churn          Σ n × churn / Σ n
    arpa           Σ n × arpa / Σ n
    ltv            Σ n × ltv / Σ n
    revenue        Σ n × arpa (per period)
    ============== ===========================================

    Parameters
    ----------
    data : SegmentScores or DataFrame
        Scores, :func:`segment_metrics`, or a segments frame (metrics are computed).
    grow : mapping or ``"SEGMENT=10%"`` strings
        Growth per segment (0.10 = +10%).
    customers, period, as_of
        As in :func:`segment_metrics`, when ``data`` is a segments frame.
    """
    if isinstance(data, SegmentScores):
        metrics = data.metrics
    elif data.attrs.get("kind") == "segment_metrics":
        metrics = data
    else:
        metrics = segment_metrics(data, customers, period=period, as_of=as_of)
    names = metrics["segment"].tolist()
    if isinstance(grow, Mapping):
        growth = {}
        problems = []
        for seg, g in grow.items():
            if seg not in names:
                problems.append(
                    Problem(
                        "grow",
                        None,
                        "segment",
                        "a segment in segments.csv (" + ", ".join(map(str, names)) + ")",
                        seg,
                    )
                )
            elif not (isinstance(g, int | float) and math.isfinite(g) and g > -1):
                problems.append(Problem("grow", None, str(seg), "growth above -1 (0.10 = +10%)", g))
            else:
                growth[seg] = float(g)
        if problems:
            raise InputError(problems)
    else:
        growth = parse_grow(grow, names, source="grow")

    g = metrics["segment"].map(growth).fillna(0.0).to_numpy(dtype=float)
    n0 = metrics["customers"].to_numpy(dtype=float)
    n1 = n0 * (1.0 + g)
    arith = pd.DataFrame(
        {
            "segment": metrics["segment"].to_numpy(dtype=object),
            "growth": g,
            "customers_before": n0,
            "customers_after": n1,
            "share_before": _div(n0, n0.sum()),
            "share_after": _div(n1, n1.sum()),
            "conversion_rate": metrics["conversion_rate"].to_numpy(dtype=float),
            "churn_rate": metrics["churn_rate"].to_numpy(dtype=float),
            "arpa": metrics["arpa"].to_numpy(dtype=float),
            "ltv": metrics["ltv"].to_numpy(dtype=float),
            "revenue_before": n0 * metrics["arpa"].to_numpy(dtype=float),
            "revenue_after": n1 * metrics["arpa"].to_numpy(dtype=float),
        }
    )
    rows = []
    formulas = {
        "conversion_rate": "Σ customers × conversion / Σ customers",
        "churn_rate": "Σ customers × churn / Σ customers",
        "arpa": "Σ customers × ARPA / Σ customers",
        "ltv": "Σ customers × LTV / Σ customers",
    }
    rows.append(
        _what_if_row(
            "customers", n0.sum(), n1.sum(), "Σ customers", " + ".join(_short(x) for x in n1)
        )
    )
    for m, f in formulas.items():
        v = arith[m].to_numpy(dtype=float)
        before, after = (
            _weighted_mean(pd.Series(v), pd.Series(n0)),
            _weighted_mean(pd.Series(v), pd.Series(n1)),
        )
        ok = np.isfinite(v)
        working = (
            "("
            + " + ".join(
                f"{_short(a)} × {_short(b, m)}" for a, b in zip(n1[ok], v[ok], strict=True)
            )
            + f") / {_short(n1[ok].sum())}"
        )
        rows.append(_what_if_row(m, before, after, f, working))
    rows.append(
        _what_if_row(
            "revenue",
            float(np.nansum(arith["revenue_before"])),
            float(np.nansum(arith["revenue_after"])),
            "Σ customers × ARPA",
            " + ".join(
                f"{_short(a)} × {_short(b)}" for a, b in zip(n1, arith["arpa"], strict=True)
            ),
        )
    )
    table = pd.DataFrame(rows)
    total = {
        "segment": RESERVED_SEGMENT,
        "growth": float(_div(n1.sum() - n0.sum(), n0.sum())),
        "customers_before": n0.sum(),
        "customers_after": n1.sum(),
        "share_before": 1.0,
        "share_after": 1.0,
        **{m: float(table.loc[table["metric"] == m, "after"].iloc[0]) for m in formulas},
        "revenue_before": float(np.nansum(arith["revenue_before"])),
        "revenue_after": float(np.nansum(arith["revenue_after"])),
    }
    arith = pd.concat([arith, pd.DataFrame([total])], ignore_index=True)
    return WhatIfResult(grow=growth, table=table, arithmetic=arith)


def _what_if_row(metric, before, after, formula, working):
    change = after - before
    return {
        "metric": metric,
        "before": before,
        "after": after,
        "change": change,
        "change_pct": change / before if before else np.nan,
        "formula": formula,
        "working": working,
    }


def _short(x: float, metric: str | None = None) -> str:
    """A number as the arithmetic shows it (4 significant figures, rates as percentages)."""
    if not np.isfinite(x):
        return "–"
    if metric in ("conversion_rate", "churn_rate"):
        return f"{100 * x:.4g}%"
    if abs(x) >= 1000 or float(x).is_integer():
        return f"{x:.0f}"
    return f"{x:.4g}"
