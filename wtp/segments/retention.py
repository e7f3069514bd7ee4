"""Cohorts: survival (Kaplan-Meier), retention, LTV over time and the churn and ARPA customers imply."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from wtp.errors import InputError, Problem
from wtp.io import RESERVED_SEGMENT
from wtp.segments.common import (
    LIFETIME_CAP,
    MONTH_DAYS,
    _div,
    _ensure_customers,
    _mean,
    as_of_message,
    churn_from_exposure,
    period_days,
    resolve_as_of,
)

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
        Per segment: ``customers, churned, exposure`` (customer-periods at risk), ``hazard`` =
        churned / exposure and ``churn_rate`` = 1 − exp(−hazard), the share lost per period
        (:func:`wtp.segments.common.churn_from_exposure`, the one definition every command
        uses), with an exact Poisson interval ``churn_lower, churn_upper``,
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
        churn, lo, hi, hazard = churn_from_exposure(churned, exposure, alpha)
        active = ~e
        # ARPA now: the accounts active at as_of (all accounts when none is left)
        arpa = (
            _mean(m_raw[active] if np.isfinite(m_raw[active]).any() else m_raw) * days / MONTH_DAYS
        )
        capped = churn == 0
        ltv = (
            arpa * LIFETIME_CAP
            if capped
            else arpa / churn
            if churn and np.isfinite(churn)
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
                "churn_rate": churn,
                "churn_lower": lo,
                "churn_upper": hi,
                "hazard": hazard,
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
