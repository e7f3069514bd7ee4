"""Van Westendorp report section: the classic four-curve chart, NMS revenue curve, tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wtp.report import PALETTE, new_figure, provenance, render, svg
from wtp.vanwestendorp import DEFAULT_CALIBRATION, VanWestendorpResult

CURVE_STYLE = {
    "too_cheap": ("Too cheap", PALETTE[2], "--"),
    "not_cheap": ("Not cheap", PALETTE[2], "-"),
    "not_expensive": ("Not expensive", PALETTE[1], "-"),
    "too_expensive": ("Too expensive", PALETTE[1], "--"),
}


def curves_chart(result: VanWestendorpResult, segment: str, currency: str = "", marks: dict[str, float] | None = None):
    """Four curves with PMC, OPP, IPP, PME marked and the acceptable range shaded."""
    c = result.curves[result.curves["segment"] == segment]
    pp = result.price_points.set_index("segment").loc[segment]
    fig, ax = new_figure(7.2, 3.6)
    if not np.isnan(pp["pmc"]) and not np.isnan(pp["pme"]):
        ax.axvspan(pp["pmc"], pp["pme"], color=PALETTE[0], alpha=0.08, label="Acceptable range")
    for key, (label, colour, style) in CURVE_STYLE.items():
        ax.step(c["price"], 100 * c[key], where="post", color=colour, linestyle=style, linewidth=1.6, label=label)
    for k, name in enumerate(("pmc", "opp", "ipp", "pme")):
        v = pp[name]
        if not np.isnan(v):
            ax.axvline(v, color="#5b6b7a", linewidth=0.7, linestyle=":")
            # alternate heights so close points (OPP and IPP often are) stay readable
            ax.annotate(f"{name.upper()} {v:,.2f}", (v, 102 + 7 * (k % 2)), ha="center", va="bottom", fontsize=7, color="#1d2733", annotation_clip=False)
    for label, v in (marks or {}).items():
        if v is not None and not np.isnan(v):
            ax.axvline(v, color=PALETTE[3], linewidth=1.4)
            ax.annotate(label, (v, 50), rotation=90, ha="right", va="center", fontsize=7, color=PALETTE[3])
    ax.set_ylim(0, 100)
    hi = np.nanquantile(c["price"], 0.99) if len(c) else 1
    ax.set_xlim(0, hi * 1.05)
    ax.set_xlabel(f"Price ({currency})" if currency else "Price")
    ax.set_ylabel("Respondents (%)")
    ax.legend(loc="center right", fontsize=7, frameon=False)
    return svg(fig)


def nms_chart(result: VanWestendorpResult, segment: str, currency: str = ""):
    """Trial (purchase probability) and revenue index against price, optima marked."""
    c = result.nms[result.nms["segment"] == segment]
    pp = result.price_points.set_index("segment").loc[segment]
    fig, ax = new_figure(7.2, 3.0)
    ax.plot(c["price"], 100 * c["trial"], color=PALETTE[0], label="Trial (purchase probability, %)")
    ax.plot(c["price"], c["revenue_index"], color=PALETTE[3], label="Revenue index (peak = 100)")
    for k, (name, label) in enumerate((("trial_optimal_price", "trial-optimal"), ("revenue_optimal_price", "revenue-optimal"))):
        v = pp.get(name, np.nan)
        if not np.isnan(v):
            ax.axvline(v, color="#5b6b7a", linewidth=0.8, linestyle=":")
            ax.annotate(f"{label} {v:,.2f}", (v, 102 + 8 * k), ha="center", va="bottom", fontsize=7, annotation_clip=False)
    ax.set_ylim(0, 100)
    ax.set_xlim(0, np.nanquantile(c["price"], 0.99) * 1.05 if len(c) else 1)
    ax.set_xlabel(f"Price ({currency})" if currency else "Price")
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    return svg(fig)


def section_context(result: VanWestendorpResult, currency: str = "", segments: list[str] | None = None) -> dict:
    """What the VW section template needs: per-segment rows, charts and the method notes."""
    segs = segments or result.segments
    pp = result.price_points.set_index("segment")
    rows = []
    for s in segs:
        if s not in pp.index:
            continue
        r = pp.loc[s].to_dict()
        r["segment"] = s
        r["curves_svg"] = curves_chart(result, s, currency) if (result.curves["segment"] == s).any() else None
        r["nms_svg"] = nms_chart(result, s, currency) if result.has_nms and (result.nms["segment"] == s).any() else None
        rows.append(r)
    return {
        "vw_rows": rows,
        "vw_has_nms": result.has_nms,
        "vw_has_intervals": "pmc_lower" in result.price_points.columns,
        "vw_methods": result.settings.describe(),
        "vw_calibration": ", ".join(f"{k}→{v:g}" for k, v in sorted(result.settings.nms_calibration.items(), reverse=True))
        + (" (pricesensitivitymeter's default)" if result.settings.nms_calibration == DEFAULT_CALIBRATION else " (set for this study)"),
        "vw_warnings": list(result.warnings),
        "vw_excluded": result.excluded.head(200).to_dict("records"),
        "vw_n_excluded_total": len(result.excluded),
    }


def write_report(result: VanWestendorpResult, path: str | Path, *, meta: dict, seed: int | None = None, inputs: dict | None = None) -> Path:
    ctx = section_context(result, meta.get("currency", ""))
    return render("vw.html.j2", path, meta=meta, provenance=provenance(seed, inputs), **ctx)


def write_outputs(result: VanWestendorpResult, folder: str | Path, *, meta: dict, seed: int | None = None, inputs: dict | None = None) -> list[str]:
    """price_points.csv, curves.csv, nms.csv (with NMS answers), excluded.csv and report.html."""
    from wtp.io import write_csv

    folder = Path(folder)
    tables = {"price_points.csv": result.price_points, "curves.csv": result.curves, "excluded.csv": result.excluded}
    if result.has_nms:
        tables["nms.csv"] = result.nms
    for name, frame in tables.items():
        write_csv(frame, folder / name)
    write_report(result, folder / "report.html", meta=meta, seed=seed, inputs=inputs)
    return [*tables, "report.html"]
