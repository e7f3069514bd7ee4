"""Price-book report sections: packages with reasons, the price book, single versus multiple.

:func:`section_context` turns a :class:`wtp.pricing.PriceBookResult` into the one template
variable ``pricing`` that every ``pricing_*.html.j2`` section reads:

=============================== =================================================================
template                        shows
=============================== =================================================================
``pricing_recommendation``      the recommendation paragraph, headline cards, missing inputs,
                                warnings
``pricing_comparison``          single vs multiple: chart, table, who gains and loses, ±10%
                                sensitivity, arbitrage and fences
``pricing_price_book``          the price book table: packages × segments (and the single book)
``pricing_packages``            per segment: tiers, their prices and every feature with its reason
``pricing_demand``              per segment: NMS, conjoint and reconciled demand, the range and
                                the chosen prices
``pricing_overview``            all of the above for ``index.html``
``pricing_segment``             one segment's proposal (packages, prices, demand, its scenario
                                numbers and fences) for ``segment-<slug>.html``
``pricing.html``                a standalone page (:func:`render_pricing_report`)
=============================== =================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wtp.report import PALETTE, new_figure, provenance, records, render, slug, svg


def comparison_chart(result, currency: str = ""):
    """Revenue per segment with one book and with one per segment, entry prices as labels."""
    c = result.comparison
    c = c[c["segment"] != "total"]
    fig, ax = new_figure(7.2, 0.55 * max(len(c), 2) + 1.2)
    y = np.arange(len(c))
    h = 0.38
    ax.barh(y + h / 2, c["revenue_single"], height=h, color=PALETTE[5], label="One price book (single)")
    ax.barh(y - h / 2, c["revenue_multiple"], height=h, color=PALETTE[0], label="One per segment (multiple)")
    top = float(np.nanmax(np.r_[c["revenue_single"].to_numpy(float), c["revenue_multiple"].to_numpy(float), 1.0]))
    for i, r in enumerate(c.itertuples(index=False)):
        ax.annotate(f"at {r.price_single:,.2f}", (r.revenue_single, y[i] + h / 2), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
        ax.annotate(f"at {r.price_multiple:,.2f}", (r.revenue_multiple, y[i] - h / 2), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    ax.set_yticks(y, c["segment"].astype(str).tolist())
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel(f"Revenue per period ({currency})" if currency else "Revenue per period")
    # below the axis: inside, it covers the longest bar
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=7, frameon=False)
    ax.grid(axis="y", visible=False)
    return svg(fig)


def demand_chart(result, segment: str, currency: str = ""):
    """Purchase probability against price: NMS, conjoint (as estimated and calibrated), the
    reconciled curve, the acceptable range, and the entry prices of both scenarios."""
    d = result.demand[result.demand["segment"] == segment]
    if d.empty:
        return None
    m = result.models[segment]
    fig, ax = new_figure(7.2, 3.2)
    if np.isfinite(m.lo) and np.isfinite(m.hi):
        ax.axvspan(m.lo, m.hi, color=PALETTE[0], alpha=0.08, label="Acceptable range")
    if d["nms"].notna().any():
        ax.plot(d["price"], 100 * d["nms"], color=PALETTE[0], linewidth=1.3, label="Van Westendorp NMS")
    if d["conjoint"].notna().any():
        ax.plot(d["price"], 100 * d["conjoint"], color=PALETTE[5], linewidth=1.0, linestyle=":", label="Conjoint share vs none")
        if d["nms"].notna().any():
            ax.plot(d["price"], 100 * d["conjoint_calibrated"], color=PALETTE[3], linewidth=1.0, linestyle="--", label="Conjoint, calibrated to NMS")
    if d["acceptance"].notna().any():
        ax.plot(d["price"], 100 * d["acceptance"], color=PALETTE[4], linewidth=1.0, linestyle="-.", label="Acceptance (no NMS)")
    ax.plot(d["price"], 100 * d["reconciled"], color=PALETTE[2], linewidth=2.2, label="Demand used")
    marks = [("own book", result.entry_prices("multiple").get(segment), PALETTE[2]), ("single book", result.entry_prices("single").get(segment), PALETTE[1])]
    for k, (label, p, colour) in enumerate(marks):
        if p is not None and np.isfinite(p):
            ax.axvline(p, color=colour, linewidth=1.0, linestyle="-" if k == 0 else "--")
            ax.annotate(f"{label} {p:,.2f}", (p, 1.02), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7, color=colour, annotation_clip=False, xytext=(0, 9 * k), textcoords="offset points")
    ax.set_ylim(0, max(5.0, float(np.nanmax(100 * d[["reconciled", "nms"]].to_numpy(float))) * 1.25 if d["nms"].notna().any() else float(np.nanmax(100 * d["reconciled"])) * 1.25))
    ax.set_xlim(float(d["price"].min()), float(d["price"].max()))
    ax.set_xlabel(f"Entry price ({currency})" if currency else "Entry price")
    ax.set_ylabel("Purchase probability (%)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=7, frameon=False)
    return svg(fig)


def _segment_block(result, s: str, currency: str, charts: bool) -> dict[str, Any]:
    tiers = list(result.settings.tiers)
    pk = result.packages[result.packages["segment"] == s]
    pb = result.price_books[result.price_books["segment"] == s]
    price = {(r.scenario, r.package): r for r in pb.itertuples(index=False)}
    packages = []
    for t in tiers:
        multiple = price.get(("multiple", t))
        single = price.get(("single", t))
        feats = pk[(pk["package"] == t) & (pk["feature"].astype(str) != "")]
        if multiple is None and feats.empty and t != tiers[0]:
            continue
        packages.append(
            {
                "tier": t,
                "price": None if multiple is None or not np.isfinite(multiple.price) else float(multiple.price),
                "single_price": None if single is None or not np.isfinite(single.price) else float(single.price),
                "in_range": True if multiple is None else bool(multiple.in_range),
                "note": "" if multiple is None else str(multiple.note),
                "step_ratio": None if multiple is None or not np.isfinite(multiple.step_ratio) else float(multiple.step_ratio),
                "features": records(feats),
            }
        )
    scen = result.scenarios[result.scenarios["segment"] == s].set_index("scenario")
    ds = result.demand_summary[result.demand_summary["segment"] == s]
    arb = result.arbitrage
    arb = arb[(arb["segment"] == s) | (arb["cheaper_segment"] == s)] if len(arb) else arb
    return {
        "name": s,
        "slug": slug(s),
        "packages": packages,
        "add_ons": records(pk[pk["package"] == "add-on"]),
        "has_features": bool((pk["feature"].astype(str) != "").any()),
        "scenario": {k: records(scen.loc[[k]].reset_index())[0] for k in ("single", "multiple") if k in scen.index},
        "demand": records(ds)[0] if len(ds) else None,
        "demand_svg": demand_chart(result, s, currency) if charts and s in result.models else None,
        "arbitrage": records(arb),
    }


def section_context(result, currency: str = "", period: str | None = None, segments: list[str] | None = None, *, charts: bool = True) -> dict[str, Any]:
    """Everything the ``pricing_*`` templates read, as one dict (pass it as ``pricing=``).

    ``segments`` limits the per-segment blocks (a segment page passes its own segment); the
    overview parts (recommendation, comparison, price book) always cover every segment.
    """
    segs = list(result.segments) if segments is None else [s for s in segments if s in result.segments]
    tiers = list(result.settings.tiers)
    pb = result.price_books
    book_rows = []
    for t in tiers:
        row = pb[pb["package"] == t]
        if row.empty:
            continue
        m = row[row["scenario"] == "multiple"].set_index("segment")
        sg = row[row["scenario"] == "single"]["price"]
        book_rows.append(
            {
                "package": t,
                "single": float(sg.iloc[0]) if len(sg) and np.isfinite(sg.iloc[0]) else None,
                "prices": {s: (float(m.loc[s, "price"]) if s in m.index and np.isfinite(m.loc[s, "price"]) else None) for s in result.segments},
                "in_range": {s: (bool(m.loc[s, "in_range"]) if s in m.index else True) for s in result.segments},
            }
        )
    totals = {}
    cmp_ = result.comparison
    if len(cmp_) and (cmp_["segment"] == "total").any():
        t = cmp_[cmp_["segment"] == "total"].iloc[0]
        totals = {
            "revenue_single": float(t["revenue_single"]),
            "revenue_multiple": float(t["revenue_multiple"]),
            "revenue_change": float(t["revenue_change"]),
            "revenue_change_pct": float(t["revenue_change_pct"]),
            "customers_single": float(t["customers_single"]),
            "customers_multiple": float(t["customers_multiple"]),
            "conversion_single": float(t["conversion_single"]),
            "conversion_multiple": float(t["conversion_multiple"]),
        }
    per_prospect = "per one prospect" in result.volume_source
    sens = result.sensitivity
    sens_rows = []
    if len(sens):
        for (scen, seg), g in sens.groupby(["scenario", "segment"], sort=False):
            r = g.set_index("price_change")["revenue"]
            ch = g.set_index("price_change")["revenue_change"]
            lo, hi = min(r.index), max(r.index)
            sens_rows.append({"scenario": scen, "segment": seg, "down": float(ch[lo]), "base": float(r[0.0]), "up": float(ch[hi])})
    single_price = next(iter(result.entry_prices("single").values()), None) if len(result.scenarios) else None
    prices = result.price_books["price"].dropna().to_numpy(dtype=float)
    return {
        "price_digits": 0 if len(prices) and np.all(prices == np.round(prices)) else 2,
        "currency": currency,
        "period": result.period if period is None else period,
        "unit": "per prospect" if per_prospect else f"per {result.period if period is None else period}",
        "per_prospect": per_prospect,
        "volume_source": result.volume_source,
        "has_prices": result.has_prices,
        "recommendation": result.recommendation,
        "totals": totals,
        "single_price": single_price if single_price is not None and np.isfinite(single_price) else None,
        "tiers": tiers,
        "all_segments": list(result.segments),
        "book_rows": book_rows,
        "comparison_rows": records(cmp_),
        "comparison_svg": comparison_chart(result, currency) if charts and len(cmp_) > 1 else None,
        "sensitivity_rows": sens_rows,
        "sensitivity_step": result.settings.sensitivity,
        "arbitrage_rows": records(result.arbitrage),
        "demand_rows": records(result.demand_summary),
        "segments": [_segment_block(result, s, currency, charts) for s in segs],
        "single_packages": _segment_block(result, "all", currency, False) if (result.packages["segment"] == "all").any() else None,
        "missing": records(result.missing),
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "methods": result.settings.describe(),
    }


def render_pricing_report(result, path: str | Path, *, title: str = "Price books", currency: str = "", period: str | None = None, seed: int | None = None, inputs: dict[str, str] | None = None) -> Path:
    """A self-contained page with every pricing section (overview and each segment)."""
    ctx = section_context(result, currency, period)
    return render("pricing.html.j2", path, pricing=ctx, title=title, provenance=provenance(seed, inputs))



__all__ = ["comparison_chart", "demand_chart", "render_pricing_report", "section_context"]
