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
churn_rate         share lost per period (segments.csv), or from customers.csv:
                   1 − exp(−churned / customer-periods at risk), the share of the customers
                   at a period's start gone by its end under that constant hazard
                   (:func:`churn_from_exposure`, shared with ``wtp explore``)
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

from wtp.segments.common import (
    DEFAULT_WEIGHTS,
    LIFETIME_CAP,
    LOWER_IS_BETTER,
    METRIC_AXIS,
    PERIOD_DAYS,
    AsOf,
    churn_from_exposure,
    period_days,
    resolve_as_of,
)
from wtp.segments.common import METRIC_LABELS as METRIC_LABELS
from wtp.segments.common import MONTH_DAYS as MONTH_DAYS
from wtp.segments.growth import WhatIfResult, parse_grow, what_if
from wtp.segments.metrics import average_customer, segment_metrics
from wtp.segments.retention import CohortResult, cohorts
from wtp.segments.retention import _km as _km
from wtp.segments.retention import _loglog_ci as _loglog_ci
from wtp.segments.retention import _step as _step
from wtp.segments.scoring import SegmentScores, score_segments, score_settings
from wtp.segments.trends import TREND_COLUMNS as TREND_COLUMNS
from wtp.segments.trends import TrendResult, trend

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
    "churn_from_exposure",
    "score_settings",
]
