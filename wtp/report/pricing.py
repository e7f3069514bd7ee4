"""Price-book report sections and output tables: packages, books, take-up, single vs multiple.

:func:`section_context` turns a :class:`wtp.pricing.PriceBookResult` into the one template
variable ``pricing`` that every ``pricing_*.html.j2`` section reads; :func:`write_outputs`
writes the contract tables (the pricing stage itself writes nothing).

=============================== =================================================================
template                        shows
=============================== =================================================================
``pricing_recommendation``      the recommendation, headline cards with 90% intervals, missing
                                inputs, warnings
``pricing_comparison``          single vs multiple per segment with intervals and
                                ``p_multiple_better``, the too-cheap check, fences
``pricing_price_book``          the price books: packages × (single book, each segment)
``pricing_packages``            per book: tiers, prices and every feature with its money value
``pricing_demand``              take-up per tier and calibration to today's conversion
``pricing_overview``            all of the above for ``index.html``
``pricing_segment``             one segment's proposal with its take-up chart
``pricing.html``                a standalone page (:func:`render_pricing_report`)
=============================== =================================================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from wtp.pricing.settings import ADD_ON
from wtp.report import PALETTE, new_figure, provenance, records, render, slug, svg

TABLES = ("packages", "price_books", "take_up", "scenarios")
EXTRAS = ("comparison", "calibration", "valuation", "search", "arbitrage", "missing", "add_ons")


def write_outputs(result, folder: str | Path, *, extras: str | None = "pricing") -> list[Path]:
    """The contract tables (``packages.csv``, ``price_books.csv``, ``take_up.csv``,
    ``scenarios.csv``) in ``folder``; the supporting ones (``comparison.csv`` with
    ``p_multiple_better``, ``calibration.csv``, ``valuation.csv``, ``search.csv``,
    ``arbitrage.csv``, ``missing.csv``, ``add_ons.csv``, ``too_cheap.json``) in
    ``folder/extras``."""
    from wtp.io import write_csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = [write_csv(getattr(result, name), folder / f"{name}.csv") for name in TABLES]
    if extras is not None:
        sub = folder / extras
        sub.mkdir(parents=True, exist_ok=True)
        out += [write_csv(getattr(result, name), sub / f"{name}.csv") for name in EXTRAS]
        path = sub / "too_cheap.json"
        path.write_text(
            json.dumps(result.too_cheap_check, indent=2, sort_keys=True, default=float) + "\n",
            encoding="utf-8",
        )
        out.append(path)
    return out


def comparison_chart(result, currency: str = ""):
    """Revenue per segment with one book and with one per segment, with 90% intervals."""
    from matplotlib.ticker import FuncFormatter

    c = result.comparison
    c = c[c["segment"] != "total"]
    fig, ax = new_figure(7.2, 0.55 * max(len(c), 2) + 1.2)
    y = np.arange(len(c))
    h = 0.38
    for off, col, lab, key in (
        (h / 2, PALETTE[5], "One price book (single)", "single"),
        (-h / 2, PALETTE[0], "One per segment (multiple)", "multiple"),
    ):
        mid = c[f"revenue_{key}"].to_numpy(float)
        err = np.vstack(
            [
                mid - c[f"revenue_{key}_lower"].to_numpy(float),
                c[f"revenue_{key}_upper"].to_numpy(float) - mid,
            ]
        )
        ax.barh(
            y + off,
            mid,
            height=h,
            color=col,
            label=lab,
            xerr=np.clip(err, 0, None),
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
    ax.set_yticks(y, c["segment"].astype(str).tolist())
    ax.invert_yaxis()
    # 1,250,000 rather than 1.25 with a "1e6" in the corner, which readers miss
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
    ax.set_xlabel(
        f"Revenue per period ({currency}), 90% intervals"
        if currency
        else "Revenue per period, 90% intervals"
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize=7, frameon=False)
    ax.grid(axis="y", visible=False)
    return svg(fig)


def take_up_chart(result, segment: str):
    """Share of the segment's prospects taking each tier, own book and single book, with 90%
    intervals."""
    t = result.take_up[result.take_up["segment"] == segment]
    if t.empty:
        return None
    tiers = list(dict.fromkeys(t["package"]))
    fig, ax = new_figure(7.2, 2.8)
    x = np.arange(len(tiers))
    w = 0.38
    for off, scen, col, lab in (
        (-w / 2, "multiple", PALETTE[0], "Own book (multiple)"),
        (w / 2, "single", PALETTE[5], "One book for all (single)"),
    ):
        g = t[t["scenario"] == scen].set_index("package").reindex(tiers)
        mid = 100 * g["share"].to_numpy(float)
        err = np.vstack(
            [
                mid - 100 * g["share_lower"].to_numpy(float),
                100 * g["share_upper"].to_numpy(float) - mid,
            ]
        )
        ax.bar(
            x + off,
            np.nan_to_num(mid),
            width=w,
            color=col,
            label=lab,
            yerr=np.clip(np.nan_to_num(err), 0, None),
            error_kw={"elinewidth": 0.8, "capsize": 2},
        )
    ax.set_xticks(x, tiers)
    ax.set_ylabel("Take-up (% of prospects)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=7, frameon=False)
    return svg(fig)


def _tier_blocks(result, book: str, scenario: str) -> list[dict[str, Any]]:
    pb = result.price_books
    # tiers only: add-ons (package = add-on, one row each) get their own block (_add_ons)
    pb = pb[(pb["segment"] == book) & (pb["scenario"] == scenario) & (pb["package"] != ADD_ON)]
    pk = result.packages
    pk = pk[pk["segment"] == book]
    blocks = []
    for r in pb.itertuples(index=False):
        feats = pk[(pk["package"] == r.package) & (pk["feature"].astype(str) != "")]
        blocks.append({
            "tier": r.package, "price": None if not np.isfinite(r.price) else float(r.price), "in_range": bool(r.in_range), "note": str(r.note),
            "step_ratio": None if not np.isfinite(r.step_ratio) else float(r.step_ratio), "value": None if not np.isfinite(r.value) else float(r.value),
            "features": records(feats),
        })  # fmt: skip
    return blocks


def _add_ons(result, book: str, scenario: str) -> list[dict[str, Any]]:
    """packages.csv's add-on rows of a book, each with its price from price_books.csv."""
    pk = result.packages
    rows = records(pk[(pk["segment"] == book) & (pk["package"] == "add-on")])
    pb = result.price_books
    if "feature" in pb.columns:
        pb = pb[
            (pb["scenario"] == scenario) & (pb["segment"] == book) & (pb["package"] == "add-on")
        ]
        price = dict(zip(pb["feature"].astype(str), pb["price"].astype(float), strict=True))
    else:
        price = {}
    for r in rows:
        p = price.get(str(r["feature"]), float("nan"))
        r["price"] = float(p) if np.isfinite(p) else None
    return rows


def _segment_block(result, s: str, charts: bool) -> dict[str, Any]:
    pk = result.packages
    own = pk[pk["segment"] == s]
    book = s if len(own) else "all"
    scenario = "multiple" if len(own) else "single"
    scen = result.scenarios[result.scenarios["segment"] == s].set_index("scenario")
    val = result.valuation[result.valuation["segment"] == s]
    cal = result.calibration[result.calibration["segment"] == s]
    arb = result.arbitrage
    arb = arb[(arb["segment"] == s) | (arb["cheaper_segment"] == s)] if len(arb) else arb
    labels = dict(zip(pk["feature"].astype(str), pk["label"].astype(str), strict=True))
    return {
        "name": s,
        "slug": slug(s),
        "own_book": bool(len(own)),
        "packages": _tier_blocks(result, s, "multiple")
        if len(own)
        else _tier_blocks(result, "all", "single"),
        "add_ons": _add_ons(result, book, scenario),
        "add_on_take_up": [
            {**r, "label": labels.get(str(r["feature"]), r["feature"])}
            for r in records(result.add_ons[result.add_ons["segment"] == s])
        ]
        if len(getattr(result, "add_ons", ()))
        else [],
        "has_features": bool((pk.loc[pk["segment"] == book, "feature"].astype(str) != "").any()),
        "scenario_name": scenario,
        "scenario": {
            k: records(scen.loc[[k]].reset_index())[0]
            for k in ("single", "multiple")
            if k in scen.index
        },
        "take_up": records(result.take_up[result.take_up["segment"] == s]),
        "take_up_svg": take_up_chart(result, s) if charts else None,
        "valuation": records(val)[0] if len(val) else None,
        "calibration": records(cal)[0] if len(cal) else None,
        "arbitrage": records(arb),
    }


def section_context(
    result,
    currency: str = "",
    period: str | None = None,
    segments: list[str] | None = None,
    *,
    charts: bool = True,
) -> dict[str, Any]:
    """Everything the ``pricing_*`` templates read, as one dict (pass it as ``pricing=``).

    ``segments`` limits the per-segment blocks (a segment page passes its own segment); the
    overview parts always cover every segment.
    """
    segs = (
        list(result.segments) if segments is None else [s for s in segments if s in result.segments]
    )
    tiers = list(result.settings.tiers)
    pb = result.price_books
    pk = result.packages
    labels = dict(zip(pk["feature"].astype(str), pk["label"].astype(str), strict=True))
    book_rows = []
    for t in tiers:
        row = pb[pb["package"] == t]
        if row.empty:
            continue
        m = row[row["scenario"] == "multiple"].set_index("segment")
        sg = row[(row["scenario"] == "single") & (row["segment"] == "all")]["price"]
        book_rows.append({
            "package": t,
            "single": float(sg.iloc[0]) if len(sg) and np.isfinite(sg.iloc[0]) else None,
            "prices": {s: (float(m.loc[s, "price"]) if s in m.index and np.isfinite(m.loc[s, "price"]) else None) for s in result.segments},
            "in_range": {s: (bool(m.loc[s, "in_range"]) if s in m.index else True) for s in result.segments},
        })  # fmt: skip
    if "feature" in pb.columns:
        for f in dict.fromkeys(pb.loc[pb["package"] == "add-on", "feature"].astype(str)):
            row = pb[(pb["package"] == "add-on") & (pb["feature"].astype(str) == f)]
            m = row[row["scenario"] == "multiple"].set_index("segment")
            sg = row[(row["scenario"] == "single") & (row["segment"] == "all")]["price"]
            book_rows.append({
                "package": f"add-on: {labels.get(f, f)}", "add_on": True,
                "single": float(sg.iloc[0]) if len(sg) and np.isfinite(sg.iloc[0]) else None,
                "prices": {s: (float(m.loc[s, "price"]) if s in m.index and np.isfinite(m.loc[s, "price"]) else None) for s in result.segments},
                "in_range": dict.fromkeys(result.segments, True),
            })  # fmt: skip
    totals = {}
    cmp_ = result.comparison
    if len(cmp_) and (cmp_["segment"] == "total").any():
        totals = records(cmp_[cmp_["segment"] == "total"])[0]
    per_prospect = "per one prospect" in result.volume_source
    prices = pb["price"].dropna().to_numpy(dtype=float)
    return {
        "price_digits": 0 if len(prices) and np.all(prices == np.round(prices)) else 2,
        "currency": currency,
        "period": result.period if period is None else period,
        "unit": "per prospect"
        if per_prospect
        else f"per {result.period if period is None else period}",
        "per_prospect": per_prospect,
        "price_unit": getattr(result, "price_unit", "")
        or f"per {result.period if period is None else period}",
        "volume_source": result.volume_source,
        "has_prices": result.has_prices,
        "recommendation": result.recommendation,
        "totals": totals,
        "tiers": tiers,
        "all_segments": list(result.segments),
        "book_rows": book_rows,
        "comparison_rows": records(cmp_),
        "comparison_svg": comparison_chart(result, currency) if charts and len(cmp_) > 1 else None,
        "too_cheap": result.too_cheap_check,
        "arbitrage_rows": records(result.arbitrage),
        "calibration_rows": records(result.calibration),
        "valuation_rows": records(result.valuation),
        "search_rows": records(result.search),
        "segments": [_segment_block(result, s, charts) for s in segs],
        "single_book": {
            "packages": _tier_blocks(result, "all", "single"),
            "add_ons": _add_ons(result, "all", "single"),
            "has_features": bool(
                (
                    result.packages.loc[result.packages["segment"] == "all", "feature"].astype(str)
                    != ""
                ).any()
            ),
        },
        "missing": records(result.missing),
        "warnings": list(result.warnings),
        "notes": list(result.notes),
        "methods": result.settings.describe(),
    }


def render_pricing_report(
    result,
    path: str | Path,
    *,
    title: str = "Price books",
    currency: str = "",
    period: str | None = None,
    seed: int | None = None,
    inputs: dict[str, str] | None = None,
) -> Path:
    """A self-contained page with every pricing section (overview and each segment)."""
    ctx = section_context(result, currency, period)
    return render(
        "pricing.html.j2", path, pricing=ctx, title=title, provenance=provenance(seed, inputs)
    )


__all__ = [
    "comparison_chart",
    "render_pricing_report",
    "section_context",
    "take_up_chart",
    "write_outputs",
]


def write_simulation_report(result, folder: str | Path, *, origin: str) -> Path:
    """report.html of ``wtp simulate``: the scenarios and each package's take-up of the books in
    a scenario file (:class:`~wtp.pricing.simulator_inputs.SimulationResult`), and the prices
    that lie outside what the survey tested."""
    meta = result.meta or {}
    notes = []
    if meta.get("name"):
        notes.append(f"Study: {meta['name']}.")
    return render(
        "simulate.html.j2",
        Path(folder) / "report.html",
        sources=", ".join(result.sources) or "the run's proposal",
        origin=origin,
        rule=result.rule,
        draws=result.draws,
        seed=result.seed,
        period=meta.get("period") or "period",
        notes=notes,
        scenarios=records(result.scenarios),
        take_up=records(result.take_up),
        add_ons=records(result.add_ons) if result.add_ons is not None else [],
        outside=[n for n in result.guardrails["note"] if n],
        provenance=provenance(result.seed),
    )
