"""The segments section: MAP table and chart, a one-pager per segment, cohorts, what-if.

:func:`write_report` renders ``report.html`` for ``wtp segments``; :func:`report_context` and
:func:`segment_profile` give the same content to other pages (the pipeline's per-segment
proposal pages can include ``segments_profile.j2`` with one profile).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wtp.report import PALETTE, money_digits, new_figure, plain, records, render, svg
from wtp.schema import ALL

# metric → (how to show it, which direction is better); None = neutral
PROFILE_METRICS: list[tuple[str, str, str | None]] = [
    ("customers", "int", None),
    ("share", "pct", None),
    ("conversion_rate", "pct", "higher"),
    ("churn_rate", "pct", "lower"),
    ("arpa", "money", "higher"),
    ("gross_margin", "pct", "higher"),
    ("lifetime", "num", "higher"),
    ("ltv", "money", "higher"),
    ("cac", "money", "lower"),
    ("ltv_cac", "num", "higher"),
    ("cac_payback", "num", "lower"),
    ("market_size", "int", None),
    ("penetration", "pct", None),
    ("headroom", "int", "higher"),
    ("market_growth", "pct", "higher"),
]

MAX_CURVES = 8


def segment_profile(scores, segment: str) -> dict[str, Any]:
    """The quantitative buyer profile of one segment: metrics vs average, rank, axes, flags."""
    from wtp.segments import METRIC_LABELS

    row = scores.scores.set_index("segment").loc[segment]
    avg = scores.average
    metrics = []
    for m, kind, better in PROFILE_METRICS:
        value = plain(row.get(m, np.nan))
        mean = plain(avg.get(m, np.nan))
        ratio = plain(row.get(f"{m}_vs_avg", np.nan))
        if (
            ratio is None
            and value is not None
            and mean not in (None, 0)
            and m not in ("customers", "share", "market_size", "headroom")
        ):
            ratio = value / mean
        verdict = ""
        if better and ratio is not None and value is not None:
            good = ratio > 1.05 if better == "higher" else ratio < 0.95
            bad = ratio < 0.95 if better == "higher" else ratio > 1.05
            verdict = "good" if good else "bad" if bad else ""
        label = (
            METRIC_LABELS.get(m, m)
            .replace("(periods)", f"({scores.period}s)")
            .replace("per period", f"per {scores.period}")
        )
        metrics.append(
            {
                "name": m,
                "label": label,
                "kind": kind,
                "value": value,
                "average": mean,
                "ratio": ratio,
                "verdict": verdict,
                "better": better or "",
            }
        )
    flags = scores.flags[scores.flags["segment"] == segment]
    focus = scores.focus[scores.focus["segment"] == segment]
    notes = [n for n in str(row.get("notes", "") or "").split("; ") if n]
    sources = {
        k: row.get(f"{k}_source")
        for k in ("churn", "arpa", "conversion")
        if f"{k}_source" in row.index
    }
    return {
        "segment": segment,
        "rank": int(row["rank"]),
        "n_segments": len(scores.scores),
        "score": plain(row["score"]),
        "axes": {a: plain(row[a]) for a in ("volume", "performance", "potential")},
        "metrics": metrics,
        "flags": records(flags[["flag", "reason"]]),
        "focus": focus["reason"].iloc[0] if len(focus) else None,
        "notes": notes,
        "sources": sources,
        "retention_1y": plain(row.get("retention_1y", np.nan)),
    }


def map_chart(scores):
    """Volume (x) against performance (y); bubble area = potential; focus segments filled."""
    fig, ax = new_figure(6.5, 4.0)
    s = scores.scores
    pot = s["potential"].fillna(50).to_numpy(dtype=float)
    # with many segments only the best-ranked and the focus ones get a label, or labels pile up
    labelled = (
        set(s["segment"]) if len(s) <= 12 else set(s.loc[(s["rank"] <= 8) | s["focus"], "segment"])
    )
    for i, (_, r) in enumerate(s.iterrows()):
        colour = PALETTE[i % len(PALETTE)]
        ax.scatter(
            r["volume"], r["performance"], s=40 + 6 * pot[i], color=colour,
            alpha=0.85 if r["focus"] else 0.25, edgecolor=colour, linewidth=1.2,
        )  # fmt: skip
        if r["segment"] in labelled:
            ax.annotate(
                str(r["segment"]),
                (r["volume"], r["performance"]),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=8,
            )
    ax.set_xlim(-8, 112)
    ax.set_ylim(-8, 112)
    ax.set_xlabel("Volume score (share of customers)")
    ax.set_ylabel("Performance score")
    ax.set_title("MAP: bubble size = potential, filled = focus", fontsize=9)
    return svg(fig)


def _curve_names(frame: pd.DataFrame, order: list[str] | None) -> tuple[list[str], list[str]]:
    """Segments of a curve table in ``order`` first, and the ones drawn (not 'all', at most MAX_CURVES)."""
    names = list(dict.fromkeys(frame["segment"]))
    if order:
        names = [n for n in order if n in names] + [n for n in names if n not in order]
    return names, [n for n in names if n != ALL][:MAX_CURVES]


def survival_chart(cohort_result, order: list[str] | None = None):
    """Kaplan–Meier curves with pointwise confidence bands, largest segments first."""
    surv = cohort_result.survival
    names, shown = _curve_names(surv, order)
    fig, ax = new_figure(7.0, 3.8)
    for i, name in enumerate(shown):
        d = surv[surv["segment"] == name]
        colour = PALETTE[i % len(PALETTE)]
        ax.step(
            d["time"], d["survival"], where="post", color=colour, linewidth=1.4, label=str(name)
        )
        ax.fill_between(
            d["time"], d["lower"], d["upper"], step="post", color=colour, alpha=0.15, linewidth=0
        )
    if ALL in names:
        d = surv[surv["segment"] == ALL]
        ax.step(
            d["time"],
            d["survival"],
            where="post",
            color="#333333",
            linewidth=1.0,
            linestyle="--",
            label=ALL,
        )
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"{cohort_result.period}s since start")
    ax.set_ylabel("Share still a customer")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return svg(fig)


def ltv_chart(cohort_result, order: list[str] | None = None):
    """Revenue per acquired customer over time (LTV curve)."""
    curve = cohort_result.ltv_curve
    names, shown = _curve_names(curve, order)
    fig, ax = new_figure(7.0, 3.4)
    for i, name in enumerate(shown):
        d = curve[curve["segment"] == name]
        ax.plot(
            d["time"], d["ltv"], color=PALETTE[i % len(PALETTE)], linewidth=1.4, label=str(name)
        )
    ax.set_xlabel(f"{cohort_result.period}s since start")
    ax.set_ylabel("Revenue per acquired customer")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return svg(fig)


def _retention_grid(
    cohort_result, segment: str = ALL, ages=(1, 3, 6, 12, 24, 36), max_cohorts: int = 18
):
    ret = cohort_result.retention
    d = ret[ret["segment"] == segment]
    if d.empty:
        names = list(dict.fromkeys(ret["segment"]))
        if not names:
            return None
        segment = names[0]
        d = ret[ret["segment"] == segment]
    ages = [a for a in ages if a <= d["age"].max()]
    if not ages:
        return None
    wide = d[d["age"].isin(ages)].pivot_table(
        index="cohort", columns="age", values="retention", aggfunc="first"
    )
    size = d.groupby("cohort")["customers"].first()
    cohorts_shown = sorted(size.index)[-max_cohorts:]
    rows = []
    for c in cohorts_shown:
        rows.append(
            {
                "cohort": c,
                "customers": int(size[c]),
                "cells": [
                    plain(wide.loc[c, a]) if c in wide.index and a in wide.columns else None
                    for a in ages
                ],
            }
        )
    return {"segment": segment, "ages": ages, "rows": rows, "n_cohorts": int(len(size))}


def trend_chart(trend_result, segments: list[str] | None = None):
    """Churn per period of each segment (or of ``segments``), flagged periods ringed."""
    t = trend_result.table
    t = t[t["complete"] & (t["segment"] != ALL)]
    names = [n for n in dict.fromkeys(t["segment"]) if segments is None or n in segments][
        :MAX_CURVES
    ]
    fig, ax = new_figure(7.0, 3.2)
    for i, name in enumerate(names):
        d = t[t["segment"] == name]
        x = pd.to_datetime(d["period_start"])
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(
            x,
            d["churn_rate"],
            color=colour,
            linewidth=1.3,
            marker="o",
            markersize=2.5,
            label=str(name),
        )
        f = d[d["flag"] != ""]
        ax.scatter(
            pd.to_datetime(f["period_start"]),
            f["churn_rate"],
            s=90,
            facecolors="none",
            edgecolors="#d9534f",
            linewidths=1.6,
            zorder=3,
        )
    ax.set_ylabel(f"Churn per {trend_result.every}")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Churn by period; red rings: changes beyond noise", fontsize=9)
    return svg(fig)


def trend_context(trend_result, segment: str | None = None) -> dict[str, Any] | None:
    """Chart, flags and the latest periods (of one segment, or all) for the templates."""
    if trend_result is None:
        return None
    t = trend_result.table
    rows = t[t["segment"] == segment] if segment is not None else t[t["segment"] != ALL]
    if rows.empty:
        return None
    flags = (
        trend_result.flags
        if segment is None
        else trend_result.flags[trend_result.flags["segment"] == segment]
    )
    from wtp.segments import TREND_COLUMNS

    latest = rows.groupby("segment", sort=False).tail(6)
    return {
        "every": trend_result.every,
        "test": trend_result.test,
        "chart": trend_chart(trend_result, None if segment is None else [segment]),
        "flags": records(flags),
        "rows": records(latest[[*TREND_COLUMNS, "complete", "flag"]]),
    }


def _with_stated(rows: list[dict], metrics: pd.DataFrame) -> list[dict]:
    """Add what segments.csv states next to what customers.csv implies (None when not stated)."""
    m = metrics.set_index("segment")
    for r in rows:
        for col, src in (("churn_rate", "churn_source"), ("arpa", "arpa_source")):
            stated = None
            if r["segment"] in m.index and m.loc[r["segment"], src] != "customers.csv":
                stated = plain(m.loc[r["segment"], col])
            r[f"stated_{col}"] = stated
    return rows


def report_context(
    scores, cohort_result=None, what_if=None, *, meta: dict | None = None
) -> dict[str, Any]:
    """Everything the segments templates need, as plain Python values."""
    meta = dict(meta or {})
    meta.setdefault("name", "wtp study")
    meta.setdefault("currency", "")
    meta.setdefault("period", scores.period)
    # a study report passes its own; alone, the segments' ARPA sets the money decimals
    meta.setdefault(
        "money_digits",
        money_digits(scores.scores["arpa"].tolist() if "arpa" in scores.scores.columns else []),
    )
    order = scores.scores["segment"].tolist()
    # curves: the biggest segments first (only the first few are drawn)
    by_size = scores.scores.sort_values("customers", ascending=False, kind="stable")[
        "segment"
    ].tolist()
    table_cols = [
        "segment",
        "rank",
        "score",
        "volume",
        "performance",
        "potential",
        "customers",
        "share",
        "conversion_rate",
        "churn_rate",
        "arpa",
        "ltv",
        "ltv_cac",
        "cac_payback",
        "focus",
        "flags",
    ]
    ctx: dict[str, Any] = {
        "meta": meta,
        "map_table": records(scores.scores[[c for c in table_cols if c in scores.scores.columns]]),
        "has_conversion": bool(scores.scores["conversion_rate"].notna().any()),
        "map_chart": map_chart(scores),
        "focus": records(scores.focus),
        "flags": records(scores.flags),
        "weights": records(scores.weight_table),
        "axis_weights": {a: scores.weights[a] for a in ("volume", "performance", "potential")},
        "settings": scores.settings,
        "notes": list(scores.notes),
        "average": {k: plain(v) for k, v in scores.average.items()},
        "profiles": [segment_profile(scores, s) for s in order],
        "cohorts": None,
        "what_if": None,
        "trend": trend_context(scores.trend),
    }
    if cohort_result is not None:
        ctx["cohorts"] = {
            "as_of": str(cohort_result.as_of.date()),
            "as_of_warnings": list(cohort_result.warnings),
            "as_of_notes": list(cohort_result.notes),
            "n_customers": cohort_result.n_customers,
            "n_used": cohort_result.n_used,
            "excluded": records(cohort_result.excluded.head(20)),
            "n_excluded": len(cohort_result.excluded),
            "has_mrr": cohort_result.has_mrr,
            "alpha": cohort_result.alpha,
            "summary": _with_stated(records(cohort_result.summary()), scores.metrics),
            "survival_chart": survival_chart(cohort_result, by_size),
            "ltv_chart": ltv_chart(cohort_result, by_size) if cohort_result.has_mrr else None,
            "grid": _retention_grid(cohort_result),
            "period": cohort_result.period,
        }
    if what_if is not None:
        ctx["what_if"] = {
            "grow": what_if.grow,
            "table": records(what_if.table),
            "arithmetic": records(what_if.arithmetic),
        }
    return ctx


def write_report(
    path: str | Path,
    scores,
    cohort_result=None,
    what_if=None,
    *,
    meta: dict | None = None,
    provenance: dict | None = None,
) -> Path:
    """Render the segments ``report.html``."""
    ctx = report_context(scores, cohort_result, what_if, meta=meta)
    if provenance is not None:
        ctx["provenance"] = provenance
    return render("segments.html.j2", path, **ctx)


__all__ = [
    "write_report",
    "report_context",
    "segment_profile",
    "map_chart",
    "survival_chart",
    "ltv_chart",
    "trend_chart",
    "trend_context",
]


def write_outputs(
    folder: str | Path,
    scores,
    cohort_result=None,
    what_if=None,
    *,
    meta: dict | None = None,
    provenance: dict | None = None,
) -> list[str]:
    """Every table of ``wtp segments`` plus ``report.html`` into ``folder``; returns the names.

    ``segment_scores.csv`` (contract columns first), ``flags.csv``, ``focus.csv``,
    ``weights.csv``; with cohorts ``survival.csv``, ``cohort_retention.csv``, ``ltv_curve.csv``,
    ``cohort_summary.csv`` (and ``excluded_customers.csv`` when any were left out); with a
    what-if ``what_if.csv`` and ``what_if_arithmetic.csv``.
    """
    from wtp.io import write_csv

    folder = Path(folder)
    tables = {
        "segment_scores.csv": scores.to_frame(),
        "flags.csv": scores.flags,
        "focus.csv": scores.focus,
        "weights.csv": scores.weight_table,
    }
    if cohort_result is not None:
        tables.update(
            {
                "survival.csv": cohort_result.survival,
                "cohort_retention.csv": cohort_result.retention,
                "ltv_curve.csv": cohort_result.ltv_curve,
                "cohort_summary.csv": cohort_result.implied,
            }
        )
        if len(cohort_result.excluded):
            tables["excluded_customers.csv"] = cohort_result.excluded
    if scores.trend is not None:
        tables["trend.csv"] = scores.trend.to_frame()
        tables["trend_flags.csv"] = scores.trend.flags
    if what_if is not None:
        tables["what_if.csv"] = what_if.to_frame()
        tables["what_if_arithmetic.csv"] = what_if.arithmetic
    for name, frame in tables.items():
        write_csv(frame, folder / name)
    write_report(
        folder / "report.html", scores, cohort_result, what_if, meta=meta, provenance=provenance
    )
    return [*tables, "report.html"]


__all__ += ["write_outputs"]
