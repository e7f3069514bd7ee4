"""What if a segment grows: the MAP scores recomputed with its customers scaled."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem, suggestion
from wtp.io import RESERVED_SEGMENT, match_segments
from wtp.segments.common import _div, _weighted_mean
from wtp.segments.metrics import segment_metrics
from wtp.segments.scoring import SegmentScores

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
        if known is not None:
            # matched as every segment name is: after trimming and case-folding (contract §5),
            # and spelled as segments.csv spells it
            spelled, unknown = match_segments([seg], known)
            if unknown:
                problems.append(
                    Problem(
                        source,
                        None,
                        "segment",
                        "a segment in segments.csv ("
                        + ", ".join(map(str, known))
                        + ")"
                        + suggestion(seg, known),
                        seg,
                    )
                )
                continue
            seg = spelled[seg]
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
        spelled, _unknown = match_segments(list(grow), names)
        for seg, g in grow.items():
            if seg not in spelled:
                problems.append(
                    Problem(
                        "grow",
                        None,
                        "segment",
                        "a segment in segments.csv ("
                        + ", ".join(map(str, names))
                        + ")"
                        + suggestion(str(seg), names),
                        seg,
                    )
                )
            elif not (isinstance(g, int | float) and math.isfinite(g) and g > -1):
                problems.append(Problem("grow", None, str(seg), "growth above -1 (0.10 = +10%)", g))
            else:
                growth[spelled[seg]] = growth.get(spelled[seg], 0.0) + float(g)
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
