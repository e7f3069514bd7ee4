"""The study report: ``index.html`` (overview) and one price-book proposal page per segment.

Each instrument's section module builds its own context (``vw_*``, ``cj_*``, ``md_*``, the
segments context, ``pricing``); this module only decides which sections go on which page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wtp.report import money_digits, provenance, render, slug
from wtp.schema import ALL, segment_order


def study_meta(run) -> dict:
    """What every page of a study shows in its header and formats money with."""
    study = run.study
    return {
        "name": study.name,
        "currency": study.currency,
        "price_unit": study.price_unit,
        "period": study.period,
        "money_digits": money_digits_for(run),
    }


def money_digits_for(run) -> int:
    """One number of decimals for every money figure of a study's pages and workbook, fitted to
    its price level (:func:`wtp.report.money_digits`): the pooled Van Westendorp range, else the
    entry prices, else the segments' ARPA."""
    prices: list = []
    if run.vw is not None:
        pp = run.vw.price_points
        prices = (
            pp.loc[pp["segment"] == ALL, ["pmc", "opp", "ipp", "pme"]].to_numpy().ravel().tolist()
        )
    if (
        not prices
        and run.price_books is not None
        and "entry_price" in run.price_books.scenarios.columns
    ):
        prices = run.price_books.scenarios["entry_price"].tolist()
    if not prices and run.segments is not None and "arpa" in run.segments.scores.columns:
        prices = run.segments.scores["arpa"].tolist()
    return money_digits(prices)


def segment_names(run) -> list[str]:
    """The study's segments in its one order (:func:`wtp.schema.segment_order`), never the
    reserved 'all' — unless the study has no segments, when 'all' is the only page."""
    study = run.study
    order = study.segment_order or segment_order(
        study.segments, study.respondents, [study.vw, study.maxdiff, study.conjoint]
    )
    return list(order) or [ALL]


def segment_pages(segments: list[str]) -> list[dict[str, str]]:
    """``segment-<slug>.html`` per segment; names that share a slug get ``-2``, ``-3`` … so no
    page overwrites another."""
    pages, used = [], set()
    for s in segments:
        base = f"segment-{slug(s)}"
        href, k = f"{base}.html", 1
        while href in used:
            k += 1
            href = f"{base}-{k}.html"
        used.add(href)
        pages.append({"segment": s, "href": href})
    return pages


def _entry_prices(run, segment: str) -> dict[str, float]:
    """Entry prices of both scenarios for a segment, to mark on its Van Westendorp chart."""
    pb = run.price_books
    if pb is None or pb.scenarios.empty:
        return {}
    sc = pb.scenarios
    out = {}
    for scenario, label in (("multiple", "own price book"), ("single", "one price book")):
        row = sc[(sc["scenario"] == scenario) & (sc["segment"] == segment)]
        if len(row) and "entry_price" in row.columns:
            out[f"entry, {label}"] = float(row["entry_price"].iloc[0])
    return out


def _segment_risks(run, segment: str) -> list[str]:
    risks = []
    pb = run.price_books
    if pb is not None:
        risks += [w for w in pb.warnings if w.startswith(f"{segment}:")]
        arb = pb.arbitrage
        if arb is not None and len(arb):
            for rec in arb[arb["segment"] == segment].to_dict("records"):
                risks.append(
                    f"Arbitrage ({rec['risk']}): {segment} pays {rec['own_price']:,.2f} while {rec['cheaper_segment']} pays "
                    f"{rec['cheaper_price']:,.2f}; {rec['fence']}"
                )
    if run.segments is not None:
        flags = run.segments.flags
        for rec in flags[flags["segment"] == segment].to_dict("records"):
            risks.append(f"Segment flagged {rec['flag']}: {rec['reason']}")
    if run.vw is not None and segment in run.vw.segments:
        pp = run.vw.price_points.set_index("segment").loc[segment]
        if pp["n"] < 30:
            risks.append(
                f"Only {int(pp['n'])} usable Van Westendorp answers: the price points are fragile."
            )
    md = run.maxdiff
    if md is not None and getattr(md, "converged", True) is False:
        risks.append("The MaxDiff sampler did not converge: feature shares are provisional.")
    return risks


def write_pages(run, out: Path) -> list[Path]:
    study = run.study
    meta = study_meta(run)
    prov = provenance(run.seed, study.checksums())
    segments = segment_names(run)
    pages = segment_pages(segments)
    base: dict[str, Any] = {
        "meta": meta,
        "provenance": prov,
        "pages": pages,
        "page_of": {p["segment"]: p["href"] for p in pages},
        "run": run,
        "skipped": run.skipped,
        "attention": run.attention,
        "subfolders": [
            name
            for name in ("vw", "maxdiff", "conjoint", "segments")
            if (Path(out) / name / "report.html").exists()
        ],
    }
    written = [
        render("index.html.j2", Path(out) / "index.html", **base, **_index_sections(run, meta))
    ]
    for page in pages:
        s = page["segment"]
        ctx = (
            base | _segment_sections(run, meta, s) | {"segment": s, "risks": _segment_risks(run, s)}
        )
        written.append(render("segment.html.j2", Path(out) / page["href"], **ctx))
    return written


def _index_sections(run, meta) -> dict[str, Any]:
    ctx: dict[str, Any] = {"vw": None, "pricing": None, "seg": None, "md": None}
    if run.vw is not None:
        from wtp.report.vw import section_context

        ctx["vw"] = section_context(run.vw, meta["currency"], [ALL])
    if run.price_books is not None:
        from wtp.report.pricing import section_context

        ctx["pricing"] = section_context(run.price_books, meta["currency"], meta["period"])
    if run.segments is not None:
        from wtp.report.segments import report_context

        ctx["seg"] = report_context(run.segments, None, None, meta=dict(meta))
    if run.maxdiff is not None:
        ctx["md"] = _maxdiff_context(run.maxdiff, meta, None)
    return ctx


def _segment_sections(run, meta, segment: str) -> dict[str, Any]:
    ctx: dict[str, Any] = {"vw": None, "pricing": None, "profile": None, "md": None, "trend": None}
    if run.vw is not None and segment in run.vw.segments:
        from wtp.report.vw import curves_chart, section_context

        ctx["vw"] = section_context(run.vw, meta["currency"], [segment])
        marks = _entry_prices(run, segment)
        if marks and ctx["vw"]["vw_rows"]:
            ctx["vw"]["vw_rows"][0]["curves_svg"] = curves_chart(
                run.vw, segment, meta["currency"], marks=marks
            )
    if run.price_books is not None:
        from wtp.report.pricing import section_context

        ctx["pricing"] = section_context(
            run.price_books, meta["currency"], meta["period"], segments=[segment]
        )
    if run.segments is not None and segment in run.segments.scores["segment"].tolist():
        from wtp.report.segments import segment_profile

        ctx["profile"] = segment_profile(run.segments, segment)
    if run.segments is not None and run.segments.trend is not None:
        from wtp.report.segments import trend_context

        ctx["trend"] = trend_context(run.segments.trend, segment)
    if run.maxdiff is not None:
        ctx["md"] = _maxdiff_context(run.maxdiff, meta, segment)
    return ctx


def _maxdiff_context(result, meta, segment: str | None) -> dict[str, Any]:
    """Diagnostics for the index; the segment's item shares with intervals for a segment page."""
    from wtp.report.maxdiff import diagnostics_rows

    ctx: dict[str, Any] = {
        "method": result.method,
        "converged": bool(result.converged),
        "diagnostics": diagnostics_rows(result),
        "k": result.k,
        "n_respondents": result.n_respondents,
        "chart": None,
        "rows": [],
    }
    if segment is not None:
        scores = result.item_scores[result.item_scores["segment"] == segment].sort_values(
            "share", ascending=False
        )
        if scores.empty:
            return ctx | {"segment_missing": True}
        scores = scores.assign(label=scores["item"].map(lambda c: result.labels.get(c, c)))
        ctx["rows"] = scores.to_dict("records")
        ctx["chart"] = segment_share_chart(scores, result.k)
    return ctx


def segment_share_chart(scores, k: int):
    """One segment's probability-scaled shares with their 95% intervals, largest first."""
    import numpy as np

    from wtp.report import PALETTE, new_figure, svg

    rows = scores.iloc[::-1]
    fig, ax = new_figure(7.2, 0.32 * len(rows) + 0.8)
    y = np.arange(len(rows))
    ax.barh(y, rows["share"], color=PALETTE[0], alpha=0.85)
    err = np.vstack([rows["share"] - rows["lower"], rows["upper"] - rows["share"]]).clip(min=0)
    ax.errorbar(rows["share"], y, xerr=err, fmt="none", ecolor="#1d2733", capsize=2, linewidth=0.8)
    ax.axvline(100 / len(rows), color="#5b6b7a", linestyle=":", linewidth=0.8)
    ax.set_yticks(y, [str(t)[:42] for t in rows["label"]])
    ax.set_xlabel(f"Share of preference (probability-scaled, k = {k}; dotted line = equal share)")
    ax.grid(axis="y", visible=False)
    return svg(fig)
