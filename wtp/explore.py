"""Explore: find segment hypotheses in customer data before scoring them (MAP step 1 and 2).

The MAP method starts by merging current customers, trialers and churned customers into one
dataset and slicing it by every profile column (company size, industry, country, plan,
lifecycle, adoption …) to find 3–5 segment hypotheses, then validating them on performance.
:func:`explore` does both for ``customers.csv``:

1. :func:`prepare_customers` validates the file (a column map renames the file's headers to
   the contract's; repeated ``customer_id`` rows — invoice or subscription lines — are
   collapsed into one customer) and returns a :class:`CustomerBase`.
2. :func:`candidate_dimensions` turns each profile column into groups: text columns keep
   their values (groups under ``min_customers`` pooled as ``other``), numeric columns are cut
   into analyst bands (quartile cut points rounded to 1–2–2.5–5 × 10ᵏ), an **at risk** bucket
   comes from adoption / utilisation / usage columns, and pairs of the strongest dimensions
   when asked.
3. :func:`group_performance` measures each group; :func:`separation` tests how strongly a
   dimension separates performance; :func:`explore` ranks the dimensions and words the 3–5
   hypotheses.

Definitions (``period`` is the study's period, ``month`` by default; H the horizon)

=============== ===========================================================================
quantity        definition
=============== ===========================================================================
customers       paying customers of the group (a start date on or before ``as_of``)
active          of them, still customers at ``as_of``
share           customers / all paying customers
conversion      converted trialers / trialers (trialer: ``trial_start`` or ``converted``
                given); 95% Wilson interval
S(t)            Kaplan–Meier survival of the group's paying customers (statsmodels
                ``SurvfuncRight``), time in periods since start, censored at ``as_of``;
                interval on log(−log S)
churn_rate      1 − exp(−hazard): the share lost per period, with the exact Poisson
                interval of the hazard mapped the same way — the one definition ``wtp
                segments`` and ``wtp run`` use too (:func:`wtp.segments.churn_from_exposure`),
                so the same customers give the same churn in every command
hazard          churned / customer-periods at risk
retention       S(H), the Kaplan–Meier share still customers H periods after their start
                (H = one year, or the base's 90th percentile follow-up when shorter);
                interval on log(−log S) (no churn by H: the exact bound for 0 losses among
                those followed to H)
arpa            mean ``mrr`` of active accounts at ``as_of``, per period; t interval
ltv             arpa / churn_rate (revenue; churn 0 → capped at 60 periods);
                lower = arpa_lower / churn_upper, upper = arpa_upper / churn_lower
retention_p     log-rank test of equal survival across the groups (statsmodels ``survdiff``)
conversion_p    χ² test of independence groups × converted; Fisher's exact test for a
                2 × 2 table with an expected count under 5
arpa_p          Kruskal–Wallis test of equal ``mrr`` of active accounts across groups
effect sizes    churn_ratio = highest / lowest group churn; conversion_v = Cramér's V;
                arpa_ratio = highest / lowest group ARPA
score           Σ over the tests available of −log10 p (capped at 300): the evidence that
                the dimension separates performance; rank 1 = most
=============== ===========================================================================

Each test is one per dimension; ranking many dimensions by evidence is a screen, not a
confirmation — the report says so, and ``wtp segments`` validates the chosen one.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from wtp.columns import apply_column_map, compact_name, parse_column_map
from wtp.errors import InputError, Problem
from wtp.schema import ALL, RESERVED, segment_key
from wtp.segments import (
    LIFETIME_CAP,
    MONTH_DAYS,
    _km,
    _loglog_ci,
    _step,
    churn_from_exposure,
    period_days,
)

__all__ = [
    "CONTRACT_COLUMNS",
    "HYPOTHESIS_COLUMNS",
    "CustomerBase",
    "Dimension",
    "ExploreResult",
    "apply_column_map",
    "parse_columns",
    "prepare_customers",
    "candidate_dimensions",
    "group_performance",
    "separation",
    "explore",
    "analyst_bands",
]

#: dimensions.csv, in the contract's order
CONTRACT_COLUMNS = ["dimension", "groups", "score", "retention_p", "conversion_p", "rank"]
#: hypotheses.csv: the contract's columns in its order, then their intervals
HYPOTHESIS_COLUMNS = [
    "dimension", "group", "customers", "share", "conversion", "churn_rate", "arpa", "ltv",
    "conversion_lower", "conversion_upper", "churn_rate_lower", "churn_rate_upper",
    "arpa_lower", "arpa_upper", "ltv_lower", "ltv_upper",
]  # fmt: skip

#: contract columns of customers.csv (and ``amount``: revenue of an invoice line over its dates)
KNOWN = (
    "customer_id",
    "segment",
    "start_date",
    "end_date",
    "mrr",
    "amount",
    "trial_start",
    "converted",
    "cac",
)
#: profile columns whose low values mark customers at risk
AT_RISK_PATTERN = re.compile(
    r"adoption|utili[sz]ation|usage|engagement|active.?users|logins|health", re.I
)
MISSING_GROUP = "(missing)"
OTHER_GROUP = "other"
MAX_SCORE = 300.0


# --------------------------------------------------------------------------------------------
# 1. Reading: a column map, validation, invoice lines collapsed into customers


def parse_columns(spec: str | Sequence[str] | None, *, source: str = "--columns") -> dict[str, str]:
    """``"customer_id=CustOrgID,start_date=ValidFrom"`` → ``{"customer_id": "CustOrgID", ...}``
    (:func:`wtp.columns.parse_column_map`)."""
    return {k: str(v) for k, v in parse_column_map(spec, option=source).items()}


@dataclass(frozen=True)
class CustomerBase:
    """Customers and trialers in one table, ready to slice.

    Attributes
    ----------
    customers : DataFrame
        One row per customer or trialer: ``customer_id, start_date, end_date, mrr,
        trial_start, converted`` (``converted`` NaN for a paying customer without trial
        information), ``row`` (1-based file row of the customer's first line), the profile
        columns, and derived ``paying`` (started by ``as_of``), ``trialer``, ``churned``,
        ``active``, ``time`` (periods from start to end or ``as_of``).
    profile : list of str
        The profile columns (candidate dimensions).
    as_of : Timestamp
        Censoring date.
    period : str
        Unit of ``time``, churn and ARPA.
    source : str
        File name for messages.
    n_rows : int
        Rows read (lines, when several rows share a customer_id).
    lines_collapsed : bool
        Whether repeated ``customer_id`` rows were collapsed into customers.
    notes : list of str
        How the file was read (collapsing rules, as_of).
    """

    customers: pd.DataFrame
    profile: list[str]
    as_of: pd.Timestamp
    period: str
    source: str
    n_rows: int
    lines_collapsed: bool
    has_mrr: bool
    has_trials: bool
    notes: list[str] = field(default_factory=list)

    @property
    def n_paying(self) -> int:
        return int(self.customers["paying"].sum())


def _dates(
    frame: pd.DataFrame, column: str, problems: list, source: str, rows: np.ndarray
) -> pd.Series:
    values = frame[column]
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values).astype("datetime64[ns]")
    text = values.astype("string").str.strip()
    parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    bad = parsed.isna() & text.notna() & (text != "")
    for r, v in zip(rows[bad.to_numpy()], values[bad], strict=True):
        problems.append(Problem(source, int(r), column, "a date (YYYY-MM-DD)", v))
    return pd.to_datetime(parsed).astype("datetime64[ns]")


def _numbers(
    frame: pd.DataFrame,
    column: str,
    problems: list,
    source: str,
    rows: np.ndarray,
    *,
    lo=None,
    hi=None,
    expected="a number",
) -> pd.Series:
    values = frame[column]
    text = values.astype("string").str.strip()
    if frame.attrs.get("decimal") == ",":
        text = text.str.replace(",", ".", regex=False)
    out = pd.to_numeric(text, errors="coerce").astype(float)
    bad = (out.isna() & text.notna() & (text != "")) | np.isinf(out)
    if lo is not None:
        bad |= out < lo
    if hi is not None:
        bad |= out > hi
    for r, v in zip(rows[bad.to_numpy()], values[bad], strict=True):
        problems.append(Problem(source, int(r), column, expected, v))
    return out.where(~bad)


def _validate(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[str]]:
    """Typed columns, every problem of the file collected before raising."""
    from wtp.io import _row_offset  # the one owner of how file rows are counted

    problems: list[Problem] = []
    if len(frame) == 0:
        raise InputError(Problem(source, None, None, "at least one customer row"))
    missing = [c for c in ("customer_id", "start_date") if c not in frame.columns]
    for c in missing:
        problems.append(
            Problem(
                source,
                1,
                c,
                f"a column named '{c}' (the header has: "
                + ", ".join(map(str, frame.columns))
                + ")",
            )
        )
    if missing:
        raise InputError(problems)
    rows = np.arange(len(frame)) + _row_offset(frame)
    out = pd.DataFrame(index=frame.index)
    ids = frame["customer_id"].astype("string").str.strip()
    for r in rows[(ids.isna() | (ids == "")).to_numpy()]:
        problems.append(Problem(source, int(r), "customer_id", "a customer id"))
    out["customer_id"] = ids.astype(object)
    out["start_date"] = _dates(frame, "start_date", problems, source, rows)
    out["end_date"] = (
        _dates(frame, "end_date", problems, source, rows)
        if "end_date" in frame.columns
        else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    )
    out["trial_start"] = (
        _dates(frame, "trial_start", problems, source, rows)
        if "trial_start" in frame.columns
        else pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    )
    for c, lo, hi, expected in (
        ("mrr", 0, None, "monthly recurring revenue of 0 or more"),
        # negative lines are credit notes: they net off the customer's revenue
        ("amount", None, None, "an invoiced amount (a number)"),
        ("converted", 0, 1, "0 or 1 (did the trial convert to paid)"),
        ("cac", 0, None, "an acquisition cost of 0 or more"),
    ):
        out[c] = (
            _numbers(frame, c, problems, source, rows, lo=lo, hi=hi, expected=expected)
            if c in frame.columns
            else np.nan
        )
    if "converted" in frame.columns:
        conv = out["converted"]
        odd = conv.notna() & ~conv.isin([0.0, 1.0])
        for r, v in zip(rows[odd.to_numpy()], frame["converted"][odd], strict=True):
            problems.append(
                Problem(source, int(r), "converted", "0 or 1 (did the trial convert to paid)", v)
            )
    # a trialer who never paid has no start date; anyone else needs one
    never_paid = out["converted"].eq(0) | (
        out["trial_start"].notna() & ("converted" not in frame.columns)
    )
    no_start = (
        out["start_date"].isna()
        & ~never_paid
        & frame["start_date"].astype("string").str.strip().fillna("").eq("")
    )
    for r in rows[no_start.to_numpy()]:
        problems.append(
            Problem(
                source,
                int(r),
                "start_date",
                "a start date (or trial_start with converted = 0 for a trialer who never paid)",
            )
        )
    paid_but_not = out["converted"].eq(0) & out["start_date"].notna()
    for r in rows[paid_but_not.to_numpy()]:
        problems.append(
            Problem(source, int(r), "converted", "1 for a trialer with a start date (they paid)", 0)
        )
    before = (
        out["end_date"].notna() & out["start_date"].notna() & (out["end_date"] < out["start_date"])
    )
    for r, v in zip(rows[before.to_numpy()], frame.loc[before, "end_date"], strict=True):
        problems.append(
            Problem(source, int(r), "end_date", "an end date on or after the start date", v)
        )
    if "segment" in frame.columns:
        seg = frame["segment"].astype("string").str.strip()
        out["segment"] = seg.astype(object)
    if problems:
        raise InputError(problems)
    profile = [c for c in frame.columns if c not in KNOWN and c != "row"]
    for c in profile:
        col = frame[c]
        out[c] = (
            col.astype("string").str.strip().replace("", pd.NA).astype(object)
            if not pd.api.types.is_numeric_dtype(col)
            else col
        )
    if "segment" in frame.columns:
        profile = ["segment", *profile]
    out["row"] = rows
    return out, profile


def _collapse_lines(lines: pd.DataFrame, profile: list[str]) -> pd.DataFrame:
    """One customer from its lines: first start, last end (open if any line is open), revenue.

    mrr = Σ amount / months from the first start to the last end when ``amount`` is given,
    else the ``mrr`` of the latest line; profile columns and ``converted`` come from the
    latest line (the customer as they are now).
    """
    lines = lines.sort_values(
        ["customer_id", "start_date", "end_date"], kind="stable", na_position="first"
    )
    g = lines.groupby("customer_id", sort=False)
    latest = g.tail(1).set_index("customer_id")
    out = pd.DataFrame({"customer_id": latest.index.to_numpy(dtype=object)})
    out["start_date"] = g["start_date"].min().reindex(out["customer_id"]).to_numpy()
    open_line = lines["end_date"].isna() & lines["start_date"].notna()
    any_open = (
        open_line.groupby(lines["customer_id"], sort=False)
        .any()
        .reindex(out["customer_id"])
        .to_numpy()
    )
    last_end = g["end_date"].max().reindex(out["customer_id"]).to_numpy()
    out["end_date"] = np.where(any_open, np.datetime64("NaT"), last_end).astype("datetime64[ns]")
    out["trial_start"] = g["trial_start"].min().reindex(out["customer_id"]).to_numpy()
    if lines["amount"].notna().any():
        total = g["amount"].sum(min_count=1).reindex(out["customer_id"]).to_numpy(dtype=float)
        months = (
            (pd.Series(last_end) - pd.Series(out["start_date"])).dt.total_seconds().to_numpy()
            / 86400.0
            / MONTH_DAYS
        )
        out["mrr"] = np.clip(total, 0.0, None) / np.clip(np.nan_to_num(months, nan=1.0), 1.0, None)
    else:
        out["mrr"] = latest["mrr"].reindex(out["customer_id"]).to_numpy(dtype=float)
    for c in ("converted", "cac", "amount", "row", *profile):
        if c in latest.columns:
            src = g["row"].min() if c == "row" else latest[c]
            out[c] = src.reindex(out["customer_id"]).to_numpy()
    return out


def prepare_customers(
    frame: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    period: str = "month",
    as_of=None,
    source: str | None = None,
) -> CustomerBase:
    """Validate customers.csv (or invoice lines) into a :class:`CustomerBase`.

    Parameters
    ----------
    frame : DataFrame
        As read by :func:`wtp.io.read_table`; not modified.

        ============ ====================================================================
        customer_id  identifier; repeated ids are lines of one customer (collapsed)
        start_date   first day as a paying customer (empty for a trialer who never paid)
        end_date     last day (empty = still a customer); optional column
        mrr          optional: monthly recurring revenue
        amount       optional, for lines: revenue of the line over its dates
        trial_start  optional: trial start date
        converted    optional: 0/1, did the trial convert
        cac          optional: acquisition cost of the customer
        segment      optional: the segment the analyst has today (also a dimension)
        anything     profile columns: the candidate dimensions
        ============ ====================================================================
    columns : mapping, optional
        Name → file header (see :func:`apply_column_map`).
    period : str
        Study period (``month`` by default).
    as_of : date-like, optional
        Censoring date. Default: the latest date in the file (contract §5); for invoice lines,
        whose end dates run into paid-up future, the latest line start.
    """
    name = source or str(frame.attrs.get("source", "customers.csv"))
    days = period_days(period)
    mapped = apply_column_map(frame, columns, source=name)
    typed, profile = _validate(mapped, name)
    notes: list[str] = []
    lines = bool(typed["customer_id"].duplicated().any())
    if lines:
        n_ids = typed["customer_id"].nunique()
        cust = _collapse_lines(typed, profile)
        notes.append(
            f"{len(typed):,} rows for {n_ids:,} customer ids: read as lines and collapsed (first start, last end, "
            + (
                "mrr = Σ amount / months covered"
                if typed["amount"].notna().any()
                else "mrr of the latest line"
            )
            + ", profile of the latest line)."
        )
    else:
        cust = typed.reset_index(drop=True)
    if as_of is None or (isinstance(as_of, str) and not as_of.strip()):
        if lines:
            when = pd.Timestamp(typed["start_date"].max())
            notes.append(
                f"as_of {when.date()}: the latest line start (line end dates are paid-up periods)."
            )
        else:
            when = pd.Timestamp(
                pd.concat([cust["start_date"], cust["end_date"], cust["trial_start"]])
                .dropna()
                .max()
            )
            notes.append(f"as_of {when.date()}: the latest date in the file.")
    else:
        try:
            when = pd.Timestamp(str(as_of))
        except (TypeError, ValueError) as exc:
            raise InputError(
                Problem("study.toml", None, "study.as_of", "a date YYYY-MM-DD", as_of)
            ) from exc
    if pd.isna(when):
        raise InputError(Problem(name, None, "start_date", "at least one date"))
    start, end = cust["start_date"], cust["end_date"]
    cust["paying"] = start.notna() & (start <= when)
    cust["churned"] = cust["paying"] & end.notna() & (end <= when)
    cust["active"] = cust["paying"] & ~cust["churned"]
    stop = end.where(cust["churned"], when)
    cust["time"] = np.where(
        cust["paying"], (stop - start).dt.total_seconds() / 86400.0 / days, np.nan
    )
    conv = cust["converted"].to_numpy(dtype=float)
    trialer = np.isfinite(conv) | cust["trial_start"].notna().to_numpy()
    # a trial without a converted flag converted when the trialer became a customer
    cust["converted"] = np.where(
        np.isfinite(conv), conv, np.where(trialer, start.notna().astype(float), np.nan)
    )
    cust["trialer"] = trialer
    if not cust["paying"].any():
        raise InputError(
            Problem(
                name,
                None,
                "start_date",
                f"at least one paying customer starting on or before {when.date()}",
            )
        )
    late = int((start.notna() & (start > when)).sum())
    if late:
        notes.append(f"{late:,} customers start after as_of and are left out of churn and ARPA.")
    profile = [c for c in profile if c in cust.columns]
    return CustomerBase(
        customers=cust,
        profile=profile,
        as_of=when,
        period=str(period),
        source=name,
        n_rows=len(frame),
        lines_collapsed=lines,
        has_mrr=bool(cust.loc[cust["paying"], "mrr"].notna().any()),
        has_trials=bool(trialer.any()),
        notes=notes,
    )


# --------------------------------------------------------------------------------------------
# 2. Candidate dimensions


@dataclass(frozen=True)
class Dimension:
    """One way to slice the base: a label per customer and the groups in display order."""

    name: str
    kind: str  # "column", "bands", "at risk", "pair"
    labels: np.ndarray  # object array, one label per row of CustomerBase.customers
    groups: list[str]
    rule: str  # how the groups were made, in words


def _nice(x: float) -> float:
    """Round to the nearest 1, 2, 2.5 or 5 × 10ᵏ (the numbers an analyst cuts at)."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    k = math.floor(math.log10(abs(x)))
    steps = np.array([1.0, 2.0, 2.5, 5.0, 10.0]) * 10.0**k
    return float(math.copysign(steps[np.argmin(np.abs(steps - abs(x)))], x))


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.4g}"


def analyst_bands(values: pd.Series, n_bands: int = 4) -> tuple[np.ndarray, list[str], list[float]]:
    """Cut a numeric column at its quantiles rounded to nice numbers.

    Returns (label per value, band labels in order, cut points). Band i holds
    ``cut[i-1] <= x < cut[i]``; missing values are labelled ``(missing)``.
    """
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(x)
    qs = np.quantile(x[ok], np.linspace(0, 1, n_bands + 1)[1:-1]) if ok.any() else []
    lo, hi = (x[ok].min(), x[ok].max()) if ok.any() else (0.0, 0.0)
    cuts = sorted({c for c in (_nice(q) for q in qs) if lo < c <= hi})
    integer = ok.any() and np.all(np.mod(x[ok], 1) == 0)
    names = []
    edges = [-np.inf, *cuts, np.inf]
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if a == -np.inf:
            names.append(f"under {_fmt(b)}")
        elif b == np.inf:
            names.append(f"{_fmt(a)} and over")
        else:
            names.append(
                (f"{_fmt(a)}–{_fmt(b - 1)}" if b - 1 > a else _fmt(a))
                if integer and b - a >= 1
                else f"{_fmt(a)}–{_fmt(b)}"
            )
    idx = np.searchsorted(np.asarray(cuts, dtype=float), x, side="right")
    labels = np.where(
        ok, np.asarray(names, dtype=object)[np.clip(idx, 0, len(names) - 1)], MISSING_GROUP
    ).astype(object)
    order = [n for n in names if (labels == n).any()] + ([MISSING_GROUP] if (~ok).any() else [])
    return labels, order, [float(c) for c in cuts]


def _pool_small(
    labels: np.ndarray, counted: np.ndarray, min_customers: int
) -> tuple[np.ndarray, list[str]]:
    """Groups with under ``min_customers`` paying customers are pooled as ``other``."""
    vals, counts = np.unique(labels[counted].astype(str), return_counts=True)
    size = dict(zip(vals, counts, strict=True))
    keep = [v for v in dict.fromkeys(labels.astype(str)) if size.get(v, 0) >= min_customers]
    out = np.where(np.isin(labels.astype(str), keep), labels.astype(str), OTHER_GROUP).astype(
        object
    )
    order = sorted(keep, key=lambda v: -size.get(v, 0))
    if (out == OTHER_GROUP).any() and OTHER_GROUP not in order:
        order.append(OTHER_GROUP)
    return out, order


def _column_dimension(
    base: CustomerBase, column: str, min_customers: int, n_bands: int, asked: bool = False
) -> Dimension | str:
    """A column's groups, or the reason it is not a dimension (``asked``: named with --by, so a
    column that looks like an identifier is used anyway)."""
    cust = base.customers
    raw = cust[column]
    counted = cust["paying"].to_numpy()
    if pd.api.types.is_datetime64_any_dtype(raw):
        return "a date column"
    numeric = pd.to_numeric(raw, errors="coerce")
    is_numeric = pd.api.types.is_numeric_dtype(raw) or (
        numeric.notna().sum() == raw.notna().sum() and raw.notna().any()
    )
    distinct = raw.dropna().nunique()
    if distinct < 2:
        return "one value only"
    if is_numeric and not asked and _looks_like_an_identifier(column, numeric, distinct):
        return (
            f"{distinct:,} distinct numbers named like an identifier, or nearly one per customer: "
            "a record number, whose bands would only sort customers by when they were entered "
            "(give it with --by to use it anyway)"
        )
    if is_numeric and distinct > 6:
        labels, order, cuts = analyst_bands(numeric, n_bands)
        rule = (
            f"bands cut at {', '.join(_fmt(c) for c in cuts)} (quartiles rounded to nice numbers)"
        )
        labels, pooled = _pool_small(labels, counted, min_customers)
        order = [g for g in order if g in pooled] + [g for g in pooled if g not in order]
        kind = "bands"
    else:
        if not is_numeric and distinct > max(50, 0.5 * raw.notna().sum()):
            return f"{distinct:,} distinct values (looks like an identifier or free text)"
        text = raw.astype(object).where(raw.notna(), MISSING_GROUP)
        text = np.asarray(
            [
                _fmt(v)
                if isinstance(v, int | float | np.number) and not isinstance(v, bool)
                else str(v)
                for v in text
            ],
            dtype=object,
        )
        labels, order = _pool_small(text, counted, min_customers)
        rule = f"values of {column}" + (
            f"; groups under {min_customers} customers pooled as '{OTHER_GROUP}'"
            if OTHER_GROUP in order
            else ""
        )
        kind = "column"
    if len(order) < 2:
        return f"fewer than two groups with {min_customers}+ customers"

    # 'all' and 'total' are the study's reserved names (wtp.schema): a group may not be one
    # in any case, as names are matched after trimming and case-folding ('All' is 'all')
    def rename(v):
        return f"{v} ({column})" if isinstance(v, str) and segment_key(v) in RESERVED else v

    labels = np.array([rename(v) for v in labels], dtype=object)
    order = [rename(g) for g in order]
    return Dimension(column, kind, labels, order, rule)


#: a column name that says "identifier": ``id``, ``customer_id``, ``Invoice ID``; and camel case
#: ``InvoiceLineID`` (not words that end in "id", such as ``paid`` or ``valid``)
IDENTIFIER_NAME = re.compile(r"(?:^|[\s_.\-])id$", re.IGNORECASE)
IDENTIFIER_CAMEL = re.compile(r"[a-z0-9]ID$")


def _looks_like_an_identifier(column: str, numeric: pd.Series, distinct: int) -> bool:
    """A numeric column that is a record number rather than a measure: named like an identifier,
    or whole numbers nearly all different (19 in 20 or more of the customers)."""
    name = str(column).strip()
    named = bool(IDENTIFIER_NAME.search(name) or IDENTIFIER_CAMEL.search(name))
    x = numeric.dropna().to_numpy(dtype=float)
    whole = bool(len(x)) and bool(np.all(np.isclose(x, np.round(x))))
    return named or (whole and len(x) >= 50 and distinct >= 0.95 * len(x))


def _at_risk_dimension(base: CustomerBase, column: str) -> Dimension | None:
    """Customers in the lowest quartile of an adoption / utilisation column are at risk."""
    x = pd.to_numeric(base.customers[column], errors="coerce").to_numpy(dtype=float)
    active = base.customers["active"].to_numpy() & np.isfinite(x)
    if active.sum() < 8:
        return None
    cut = float(np.quantile(x[active], 0.25))
    risk = f"at risk ({column} ≤ {_fmt(round(cut, 4))})"
    labels = np.where(np.isfinite(x), np.where(x <= cut, risk, "healthy"), MISSING_GROUP).astype(
        object
    )
    groups = [risk, "healthy"] + ([MISSING_GROUP] if (~np.isfinite(x)).any() else [])
    return Dimension(
        f"at risk: {column}",
        "at risk",
        labels,
        groups,
        f"{column} at or below its lower quartile among active accounts ({_fmt(round(cut, 4))})",
    )


def candidate_dimensions(
    base: CustomerBase,
    by: Sequence[str] | None = None,
    *,
    min_customers: int = 30,
    n_bands: int = 4,
) -> tuple[list[Dimension], dict[str, str]]:
    """Every profile column (or those in ``by``) as a dimension, plus at-risk buckets.

    Returns (dimensions, skipped: column → why not).
    """
    columns = list(base.profile)
    if by:
        problems = []
        chosen = []
        lookup = {compact_name(c): c for c in columns}
        for b in by:
            c = lookup.get(compact_name(b))
            if c is None:
                close = difflib.get_close_matches(str(b), columns, n=3)
                problems.append(
                    Problem(
                        "--by",
                        None,
                        str(b),
                        "a profile column of "
                        + base.source
                        + " ("
                        + ", ".join(columns)
                        + ")"
                        + (f"; did you mean {', '.join(close)}?" if close else ""),
                    )
                )
            else:
                chosen.append(c)
        if problems:
            raise InputError(problems)
        columns = chosen
    dims: list[Dimension] = []
    skipped: dict[str, str] = {}
    for c in columns:
        d = _column_dimension(base, c, min_customers, n_bands, asked=bool(by))
        if isinstance(d, str):
            skipped[c] = d
            continue
        dims.append(d)
        if AT_RISK_PATTERN.search(c) and d.kind == "bands":
            risk = _at_risk_dimension(base, c)
            if risk is not None:
                dims.append(risk)
    return dims, skipped


def pair_dimensions(
    dims: Sequence[Dimension], base: CustomerBase, min_customers: int = 30
) -> list[Dimension]:
    """Every pair of ``dims``: groups are the combinations (small cells pooled as ``other``)."""
    counted = base.customers["paying"].to_numpy()
    out = []
    for i in range(len(dims)):
        for j in range(i + 1, len(dims)):
            a, b = dims[i], dims[j]
            labels = np.char.add(
                np.char.add(a.labels.astype(str), " × "), b.labels.astype(str)
            ).astype(object)
            labels, order = _pool_small(labels, counted, min_customers)
            if len(order) >= 2:
                out.append(
                    Dimension(
                        f"{a.name} × {b.name}",
                        "pair",
                        labels,
                        order,
                        f"combinations of {a.name} and {b.name}; cells under {min_customers} customers pooled as '{OTHER_GROUP}'",
                    )
                )
    return out


# --------------------------------------------------------------------------------------------
# 3. Performance per group and separation per dimension


def horizon_periods(base: CustomerBase) -> float:
    """One year in periods, or the 90th percentile follow-up when the data are shorter."""
    year = 365.25 / period_days(base.period)
    t = base.customers.loc[base.customers["paying"], "time"].to_numpy(dtype=float)
    follow = float(np.quantile(t, 0.9)) if len(t) else year
    return float(min(year, max(follow, 1.0)))


def _km_at(t: np.ndarray, e: np.ndarray, h: float, z: float) -> tuple[float, float, float, tuple]:
    """Kaplan–Meier S(h) with its log-log interval; also the curve."""
    times, s, se, n_risk, n_events, _fit = _km(t, e)
    curve = (times, s, se, n_risk, n_events)
    if len(times) == 0 or times[0] > h:
        # no churn by h: the log-log interval collapses to a point, so use the exact
        # (Clopper–Pearson) bound for 0 losses among those followed to h
        followed = max(int((t >= h).sum()), 1)
        alpha = 2 * float(stats.norm.sf(z))
        return 1.0, float((alpha / 2) ** (1 / followed)), 1.0, curve
    sh = float(_step(times, s, [h])[0])
    seh = float(_step(times, se, [h])[0])
    lo, hi = _loglog_ci(np.array([sh]), np.array([seh]), z)
    return sh, float(lo[0]), float(hi[0]), curve


def group_performance(
    base: CustomerBase, dim: Dimension, *, horizon: float, alpha: float = 0.05
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Volume and performance of each group of ``dim`` (see the module table).

    Returns (groups, survival): one row per group in ``dim.groups`` order, and the
    Kaplan–Meier curve of each group (``dimension, group, time, at_risk, events, survival,
    lower, upper``).
    """
    from statsmodels.stats.proportion import proportion_confint

    cust = base.customers
    z = float(stats.norm.ppf(1 - alpha / 2))
    paying = cust["paying"].to_numpy()
    active = cust["active"].to_numpy()
    trialer = cust["trialer"].to_numpy()
    conv = cust["converted"].to_numpy(dtype=float)
    t = cust["time"].to_numpy(dtype=float)
    e = cust["churned"].to_numpy()
    per = period_days(base.period) / MONTH_DAYS
    mrr = cust["mrr"].to_numpy(dtype=float) * per
    n_total = int(paying.sum())
    rows, curves = [], []
    for g in dim.groups:
        m = dim.labels == g
        mp = m & paying
        n = int(mp.sum())
        trials = int((m & trialer).sum())
        wins = int(np.nansum(conv[m & trialer]))
        if trials:
            c_lo, c_hi = proportion_confint(wins, trials, alpha=alpha, method="wilson")
            c = wins / trials
        else:
            c = c_lo = c_hi = float("nan")
        sh, s_lo, s_hi, curve = (
            _km_at(t[mp], e[mp], horizon, z) if n else (float("nan"),) * 3 + ((np.array([]),) * 5,)
        )
        exposure = float(t[mp].sum())
        churned = int(e[mp].sum())
        churn, churn_lo, churn_hi, hazard = churn_from_exposure(churned, exposure, alpha)
        ma = mrr[m & active]
        ma = ma[np.isfinite(ma)]
        if len(ma) >= 2:
            arpa = float(ma.mean())
            half = float(
                stats.t.ppf(1 - alpha / 2, len(ma) - 1) * ma.std(ddof=1) / math.sqrt(len(ma))
            )
            a_lo, a_hi = max(arpa - half, 0.0), arpa + half
        elif len(ma) == 1:
            arpa, a_lo, a_hi = float(ma[0]), float("nan"), float("nan")
        else:
            arpa = a_lo = a_hi = float("nan")
        ltv, ltv_lo, ltv_hi = _ltv(arpa, churn), _ltv(a_lo, churn_hi), _ltv(a_hi, churn_lo)
        rows.append(
            {
                "dimension": dim.name, "group": g, "customers": n, "share": n / n_total if n_total else float("nan"),
                "conversion": c, "conversion_lower": c_lo, "conversion_upper": c_hi,
                "churn_rate": churn, "churn_rate_lower": churn_lo, "churn_rate_upper": churn_hi,
                "arpa": arpa, "arpa_lower": a_lo, "arpa_upper": a_hi,
                "ltv": ltv, "ltv_lower": ltv_lo, "ltv_upper": ltv_hi,
                "active": int((m & active).sum()), "churned": churned, "exposure": exposure,
                "hazard": hazard,
                "retention": sh, "retention_lower": s_lo, "retention_upper": s_hi,
                "trials": trials, "conversions": wins,
                "cac": float(np.nanmean(cust.loc[mp, "cac"])) if n and cust.loc[mp, "cac"].notna().any() else float("nan"),
                "ltv_capped": bool(churn == 0),
            }
        )  # fmt: skip
        times, s, se, n_risk, n_events = curve
        lo, hi = _loglog_ci(s, se, z) if len(s) else (s, s)
        curves.append(
            pd.DataFrame(
                {
                    "dimension": dim.name,
                    "group": g,
                    "time": np.concatenate([[0.0], times]),
                    "at_risk": np.concatenate([[float(n)], n_risk]),
                    "events": np.concatenate([[0.0], n_events]),
                    "survival": np.concatenate([[1.0], s]),
                    "lower": np.concatenate([[1.0], lo]),
                    "upper": np.concatenate([[1.0], hi]),
                }
            )
        )
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)


def _ltv(arpa: float, churn: float) -> float:
    if not (np.isfinite(arpa) and np.isfinite(churn)):
        return float("nan")
    return arpa * LIFETIME_CAP if churn <= 0 else arpa / churn


def _neglog(p: float) -> float:
    if not np.isfinite(p):
        return 0.0
    return float(min(-math.log10(max(p, 1e-300)), MAX_SCORE))


def separation(base: CustomerBase, dim: Dimension, groups: pd.DataFrame) -> dict:
    """Tests and effect sizes of how strongly ``dim`` separates retention, conversion, ARPA."""
    from statsmodels.duration.survfunc import survdiff

    cust = base.customers
    paying = cust["paying"].to_numpy()
    out: dict = {
        "dimension": dim.name,
        "kind": dim.kind,
        "groups": len(dim.groups),
        "rule": dim.rule,
    }
    # retention: log-rank over the groups with paying customers
    lab = dim.labels[paying].astype(str)
    t = cust["time"].to_numpy(dtype=float)[paying]
    e = cust["churned"].to_numpy()[paying].astype(float)
    present = np.unique(lab)
    if len(present) >= 2 and e.sum() > 0:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            chisq, _p = survdiff(t, e, lab)
        # statsmodels returns 1 − cdf, which underflows to 0 for strong separations; the
        # survival function of χ²(k − 1) keeps the evidence comparable between dimensions
        out["retention_chisq"], out["retention_p"] = (
            float(chisq),
            float(stats.chi2.sf(chisq, len(present) - 1)),
        )
    else:
        out["retention_chisq"] = out["retention_p"] = float("nan")
    # conversion: groups × converted among trialers
    tr = cust["trialer"].to_numpy()
    out["conversion_p"] = out["conversion_v"] = float("nan")
    out["conversion_test"] = ""
    if tr.sum() > 0:
        ct = pd.crosstab(dim.labels[tr].astype(str), cust["converted"].to_numpy()[tr])
        ct = ct.loc[ct.sum(axis=1) > 0]
        if ct.shape[0] >= 2 and ct.shape[1] == 2:
            chi2, p, _dof, expected = stats.chi2_contingency(ct.to_numpy(), correction=False)
            if ct.shape == (2, 2) and expected.min() < 5:
                p = float(stats.fisher_exact(ct.to_numpy())[1])
                out["conversion_test"] = "Fisher exact"
            else:
                out["conversion_test"] = "chi-square"
            out["conversion_p"] = float(p)
            out["conversion_v"] = float(
                math.sqrt(chi2 / (ct.to_numpy().sum() * (min(ct.shape) - 1)))
            )
    # ARPA: Kruskal–Wallis on active accounts' mrr
    act = cust["active"].to_numpy() & np.isfinite(cust["mrr"].to_numpy(dtype=float))
    samples = [cust["mrr"].to_numpy(dtype=float)[act & (dim.labels == g)] for g in dim.groups]
    samples = [s for s in samples if len(s) >= 2]
    out["arpa_p"] = float("nan")
    if len(samples) >= 2 and len(np.unique(np.concatenate(samples))) > 1:
        out["arpa_p"] = float(stats.kruskal(*samples).pvalue)
    g = groups[groups["customers"] > 0]
    out["churn_ratio"] = _ratio(g["churn_rate"])
    out["arpa_ratio"] = _ratio(g["arpa"])
    out["conversion_ratio"] = _ratio(g["conversion"])
    out["score"] = sum(_neglog(out[k]) for k in ("retention_p", "conversion_p", "arpa_p"))
    return out


def _ratio(values: pd.Series) -> float:
    v = values.to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2 or v.min() <= 0:
        return float("nan")
    return float(v.max() / v.min())


# --------------------------------------------------------------------------------------------
# 4. The whole exploration


@dataclass(frozen=True)
class ExploreResult:
    """Segment hypotheses from a customer base.

    Attributes
    ----------
    dimensions : DataFrame
        ``dimensions.csv``: ``dimension, groups, score, retention_p, conversion_p, rank`` then
        ``kind, rule, arpa_p, churn_ratio, conversion_v, conversion_ratio, arpa_ratio,
        conversion_test, hypothesis, reason``; best first.
    groups : DataFrame
        Every group of every dimension: :data:`HYPOTHESIS_COLUMNS` then ``active, churned,
        exposure, hazard, retention(_lower/_upper), trials, conversions, cac, ltv_capped,
        reason``.
    hypotheses : DataFrame
        ``hypotheses.csv``: the groups of the 3–5 hypotheses (``hypothesis`` = its rank).
    survival : DataFrame
        Kaplan–Meier curves of every group (``dimension, group, time, at_risk, events,
        survival, lower, upper``).
    assignments : DataFrame
        ``customer_id`` and one column per dimension: each customer's group.
    overall : dict
        The whole base: customers, conversion, churn_rate, arpa, ltv.
    chosen : str
        The dimension written as ``segments.csv``.
    """

    base: CustomerBase
    dimensions: pd.DataFrame
    groups: pd.DataFrame
    hypotheses: pd.DataFrame
    survival: pd.DataFrame
    assignments: pd.DataFrame
    overall: dict
    chosen: str
    horizon: float
    skipped: dict[str, str]
    alpha: float = 0.05

    def summary(self) -> pd.DataFrame:
        """The ranked dimensions with their evidence and reason."""
        return self.dimensions[[*CONTRACT_COLUMNS, "hypothesis", "reason"]].copy()

    def to_frame(self) -> pd.DataFrame:
        """``hypotheses.csv``."""
        return self.hypotheses.copy()

    def segments_table(self, dimension: str | None = None) -> pd.DataFrame:
        """``segments.csv`` for a dimension, in the layout ``wtp segments`` reads.

        ``customers`` = active accounts at ``as_of``; ``arpa``, ``churn_rate`` as in
        hypotheses.csv; ``trials, conversions`` where there were trials; ``cac`` = mean
        acquisition cost of the group's customers when customers.csv has ``cac`` (empty
        otherwise: nothing here knows what a customer cost).
        """
        dim = dimension or self.chosen
        g = self.groups[self.groups["dimension"] == dim]
        out = pd.DataFrame(
            {
                "segment": g["group"].to_numpy(dtype=object),
                "customers": g["active"].to_numpy(dtype=int),
                "arpa": g["arpa"].to_numpy(dtype=float),
                "churn_rate": g["churn_rate"].to_numpy(dtype=float),
                "cac": g["cac"].to_numpy(dtype=float),
            }
        )
        if self.base.has_trials:
            out["trials"] = g["trials"].to_numpy(dtype=int)
            out["conversions"] = g["conversions"].to_numpy(dtype=int)
        return out

    def customers_table(self, dimension: str | None = None) -> pd.DataFrame:
        """customers.csv of the paying customers with ``segment`` = their group of a dimension."""
        dim = dimension or self.chosen
        c = self.base.customers
        paying = c["paying"].to_numpy()
        out = pd.DataFrame(
            {
                "customer_id": c["customer_id"].to_numpy(dtype=object)[paying],
                "segment": self.assignments[dim].to_numpy(dtype=object)[paying],
                "start_date": c["start_date"][paying].dt.strftime("%Y-%m-%d").to_numpy(),
                "end_date": c["end_date"]
                .where(c["churned"])[paying]
                .dt.strftime("%Y-%m-%d")
                .fillna("")
                .to_numpy(),
            }
        )
        if self.base.has_mrr:
            out["mrr"] = c["mrr"].to_numpy(dtype=float)[paying]
        return out


def _overall(base: CustomerBase, horizon: float, alpha: float) -> dict:
    everyone = Dimension(
        "all",
        "column",
        np.full(len(base.customers), ALL, dtype=object),
        [ALL],
        "every customer",
    )
    g, _ = group_performance(base, everyone, horizon=horizon, alpha=alpha)
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in g.iloc[0].items()}


def _group_reason(row: pd.Series, overall: dict) -> str:
    parts = []
    for m, word, lower_better in (
        ("churn_rate", "churn", True),
        ("conversion", "conversion", False),
        ("arpa", "ARPA", False),
        ("ltv", "LTV", False),
    ):
        v, a = row.get(m), overall.get(m)
        if (
            not (
                isinstance(v, float | int)
                and np.isfinite(v)
                and isinstance(a, float | int)
                and np.isfinite(a)
            )
            or a == 0
        ):
            continue
        r = v / a
        if r > 1.15 or r < 0.87:
            better = (r < 1) == lower_better
            parts.append(f"{word} {r:.2f}× the average ({'better' if better else 'worse'})")
    return "; ".join(parts) if parts else "close to the average customer"


def _dimension_reason(d: dict, g: pd.DataFrame) -> str:
    parts = []
    have = g[g["customers"] > 0]
    if np.isfinite(d["retention_p"]) and have["churn_rate"].notna().sum() >= 2:
        hi, lo = have.loc[have["churn_rate"].idxmax()], have.loc[have["churn_rate"].idxmin()]
        parts.append(
            f"churn from {lo['churn_rate']:.1%} ({lo['group']}) to {hi['churn_rate']:.1%} ({hi['group']}) per period, log-rank p = {d['retention_p']:.2g}"
        )
    if np.isfinite(d["conversion_p"]):
        c = g[g["trials"] > 0]
        hi, lo = c.loc[c["conversion"].idxmax()], c.loc[c["conversion"].idxmin()]
        parts.append(
            f"conversion from {lo['conversion']:.0%} ({lo['group']}) to {hi['conversion']:.0%} ({hi['group']}), {d['conversion_test']} p = {d['conversion_p']:.2g}"
        )
    if np.isfinite(d["arpa_p"]) and have["arpa"].notna().sum() >= 2:
        hi, lo = have.loc[have["arpa"].idxmax()], have.loc[have["arpa"].idxmin()]
        parts.append(
            f"ARPA from {lo['arpa']:,.0f} ({lo['group']}) to {hi['arpa']:,.0f} ({hi['group']}), Kruskal–Wallis p = {d['arpa_p']:.2g}"
        )
    return "; ".join(parts) if parts else "no performance test possible"


def explore(
    base: CustomerBase,
    by: Sequence[str] | None = None,
    *,
    pairs: bool = False,
    choose: str | None = None,
    min_customers: int = 30,
    n_bands: int = 4,
    max_hypotheses: int = 5,
    alpha: float = 0.05,
    pair_top: int = 4,
) -> ExploreResult:
    """Rank every candidate dimension of ``base`` by how strongly it separates performance.

    Parameters
    ----------
    base : CustomerBase
        From :func:`prepare_customers`.
    by : list of str, optional
        Profile columns to consider (default: all).
    pairs : bool
        Also slice by pairs of the ``pair_top`` strongest single dimensions.
    choose : str, optional
        The dimension written as segments.csv (default: the top-ranked).
    min_customers : int
        Groups with fewer paying customers are pooled as ``other``.
    n_bands : int
        Bands per numeric column (before rounding merges any).
    max_hypotheses : int
        At most this many hypotheses (at least 3 where there are 3 dimensions): the
        top-ranked dimensions with a test under ``alpha`` after a Bonferroni correction over
        every test of the screen.
    """
    dims, skipped = candidate_dimensions(base, by, min_customers=min_customers, n_bands=n_bands)
    if not dims:
        why = (
            "; ".join(f"{k}: {v}" for k, v in skipped.items())
            or "no profile columns besides the contract's"
        )
        raise InputError(
            Problem(
                base.source,
                None,
                None,
                f"at least one profile column that splits customers into two or more groups of {min_customers}+ ({why})",
            )
        )
    horizon = horizon_periods(base)
    overall = _overall(base, horizon, alpha)

    def measure(ds):
        out = []
        for d in ds:
            g, s = group_performance(base, d, horizon=horizon, alpha=alpha)
            g["reason"] = [_group_reason(r, overall) for _, r in g.iterrows()]
            sep = separation(base, d, g)
            sep["reason"] = _dimension_reason(sep, g)
            out.append((d, g, s, sep))
        return out

    measured = measure(dims)
    if pairs and len(dims) >= 2:
        top = [
            m[0] for m in sorted(measured, key=lambda m: -m[3]["score"]) if m[0].kind != "at risk"
        ][:pair_top]
        measured += measure(pair_dimensions(top, base, min_customers))
    table = _rank_dimensions(pd.DataFrame([m[3] for m in measured]), alpha, max_hypotheses)
    groups = pd.concat([m[1] for m in measured], ignore_index=True)
    groups = groups[
        [*HYPOTHESIS_COLUMNS, *(c for c in groups.columns if c not in HYPOTHESIS_COLUMNS)]
    ]
    rank = dict(zip(table["dimension"], table["rank"], strict=True))
    groups = (
        groups.assign(_r=groups["dimension"].map(rank))
        .sort_values("_r", kind="stable")
        .drop(columns="_r")
        .reset_index(drop=True)
    )
    hyp = dict(zip(table["dimension"], table["hypothesis"], strict=True))
    hypotheses = groups[groups["dimension"].map(hyp) > 0].copy()
    hypotheses.insert(0, "hypothesis", hypotheses["dimension"].map(hyp).to_numpy())
    hypotheses = hypotheses[
        [*HYPOTHESIS_COLUMNS, "hypothesis", "active", "churned", "trials", "conversions", "reason"]
    ].reset_index(drop=True)
    chosen = _chosen_dimension(table, choose)
    assignments = pd.DataFrame(
        {"customer_id": base.customers["customer_id"].to_numpy(dtype=object)}
    )
    for d, *_ in measured:
        assignments[d.name] = d.labels
    return ExploreResult(
        base=base,
        dimensions=table,
        groups=groups,
        hypotheses=hypotheses,
        survival=pd.concat([m[2] for m in measured], ignore_index=True),
        assignments=assignments,
        overall=overall,
        chosen=chosen,
        horizon=horizon,
        skipped=skipped,
        alpha=alpha,
    )


def _rank_dimensions(table: pd.DataFrame, alpha: float, max_hypotheses: int) -> pd.DataFrame:
    """Rank by evidence, mark the hypotheses, word weak evidence; dimensions.csv's columns."""
    # ties (e.g. every test at the cap) are broken by the larger churn spread
    table = table.sort_values(
        ["score", "churn_ratio"], ascending=[False, False], kind="stable", na_position="last"
    ).reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    # Bonferroni over every test run: a screen of many dimensions finds "effects" by chance
    n_tests = int(table[["retention_p", "conversion_p", "arpa_p"]].notna().to_numpy().sum())
    evident = (
        table[["retention_p", "conversion_p", "arpa_p"]].min(axis=1, skipna=True) * max(n_tests, 1)
        < alpha
    ).to_numpy()
    table["hypothesis"] = _hypotheses(table, evident, max_hypotheses)
    table["reason"] = [
        r
        if ev
        else f"weak evidence (no test under {alpha:g} after Bonferroni over {n_tests} tests): " + r
        for r, ev in zip(table["reason"], evident, strict=True)
    ]
    lead = [
        *CONTRACT_COLUMNS,
        "kind",
        "rule",
        "arpa_p",
        "churn_ratio",
        "conversion_v",
        "conversion_ratio",
        "arpa_ratio",
        "conversion_test",
        "retention_chisq",
        "hypothesis",
        "reason",
    ]
    table = table[lead]
    return table


def _chosen_dimension(table: pd.DataFrame, choose: str | None) -> str:
    """The dimension written as segments.csv: ``choose`` (matched loosely) or the top one."""
    if choose is None:
        return str(table["dimension"].iloc[0])
    names = {compact_name(n): n for n in table["dimension"]}
    if compact_name(choose) not in names:
        close = difflib.get_close_matches(choose, list(table["dimension"]), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InputError(
            Problem(
                "--choose",
                None,
                None,
                "a dimension explored (" + ", ".join(table["dimension"]) + ")" + hint,
                choose,
            )
        )
    return names[compact_name(choose)]


def _hypotheses(table: pd.DataFrame, evident: np.ndarray, max_hypotheses: int) -> np.ndarray:
    """Hypothesis numbers (0 = not one): the best-ranked evident dimensions, at least 3 where
    there are 3; a pair only when it adds evidence (score 3 above each of its parts, i.e. a
    thousandfold smaller p) — otherwise it repeats its stronger part."""
    score = dict(zip(table["dimension"], table["score"], strict=True))
    out = np.zeros(len(table), dtype=int)
    n = 0
    for i, (name, kind) in enumerate(zip(table["dimension"], table["kind"], strict=True)):
        if n >= max_hypotheses or (n >= 3 and not evident[i]):
            break
        if kind == "pair" and any(
            table["score"].iloc[i] < score.get(part, 0) + 3 for part in name.split(" × ")
        ):
            continue
        n += 1
        out[i] = n
    return out


def split_by(spec: str | Iterable[str] | None) -> list[str] | None:
    """``--by size,country`` → ``["size", "country"]``."""
    if not spec:
        return None
    parts = [spec] if isinstance(spec, str) else list(spec)
    return [p.strip() for chunk in parts for p in str(chunk).split(",") if p.strip()] or None
