"""Segment metrics (LTV, LTV/CAC, payback, share, ...) from segments.csv and cohorts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.segments.common import (
    LIFETIME_CAP,
    VS_AVERAGE,
    _div,
    _ensure_customers,
    _ensure_segments,
    _weighted_mean,
    period_days,
)
from wtp.segments.retention import CohortResult, cohorts

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
