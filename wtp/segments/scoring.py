"""MAP scoring: volume, performance and potential per segment, and where to focus."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.segments.common import (
    AXES,
    CONTRACT_COLUMNS,
    DEFAULT_WEIGHTS,
    LOWER_IS_BETTER,
    METRIC_AXIS,
    METRIC_LABELS,
    _ensure_customers,
    _ensure_segments,
)
from wtp.segments.metrics import average_customer, segment_metrics
from wtp.segments.retention import CohortResult, cohorts
from wtp.segments.trends import TrendResult
from wtp.settings import Segments as SegmentSettings

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
