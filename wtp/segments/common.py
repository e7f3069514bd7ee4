"""What every segment calculation shares: periods, the as-of date, the MAP metrics and axes, small helpers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.io import validate_customers, validate_segments

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


def churn_from_exposure(
    churned: int, exposure: float, alpha: float = 0.05
) -> tuple[float, float, float, float]:
    """The churn rate customers.csv implies, for every command that reports one (``wtp
    segments``, ``wtp run``, ``wtp explore``): (churn_rate, lower, upper, hazard).

    ============ ===============================================================================
    hazard       λ = churned / exposure: churn events per customer-period at risk (exposure:
                 the periods each customer was observed, start to end date or ``as_of``)
    churn_rate   1 − exp(−λ): the contract's "share lost per period" — of the customers there
                 at a period's start, the share gone by its end under the constant hazard λ
                 (trend.csv reports the same share period by period, counted directly)
    interval     the exact Poisson interval of λ (χ² quantiles), mapped the same way
    ============ ===============================================================================

    Every customer's whole follow-up counts, with no horizon to choose; with no exposure all
    four are NaN.
    """
    from scipy import stats

    if not exposure > 0:
        nan = float("nan")
        return nan, nan, nan, nan
    hazard = churned / exposure
    lo = stats.chi2.ppf(alpha / 2, 2 * churned) / (2 * exposure) if churned > 0 else 0.0
    hi = stats.chi2.ppf(1 - alpha / 2, 2 * churned + 2) / (2 * exposure)
    share = -np.expm1(-np.array([hazard, lo, hi], dtype=float))
    return float(share[0]), float(share[1]), float(share[2]), float(hazard)


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
