"""Van Westendorp report section: the classic four-curve chart, NMS revenue curve, tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wtp.report import PALETTE, money_digits, new_figure, provenance, render, svg
from wtp.schema import ALL
from wtp.vanwestendorp import DEFAULT_CALIBRATION, VanWestendorpResult

CURVE_STYLE = {
    "too_cheap": ("Too cheap", PALETTE[2], "--"),
    "not_cheap": ("Not cheap", PALETTE[2], "-"),
    "not_expensive": ("Not expensive", PALETTE[1], "-"),
    "too_expensive": ("Too expensive", PALETTE[1], "--"),
}


# the x-axis ends where this share of respondents call a price too expensive (or at the last
# price point or entry price if that is higher): a few answers of 900 for a 20–55 product would
# otherwise squash every curve into the left tenth of the chart
AXIS_QUANTILE = 0.95
# … but never beyond this multiple of the point of marginal expensiveness: past it almost
# everyone finds the price expensive and the curves are flat
AXIS_PME_MULTIPLE = 2.5
LABEL_GAP_PT = 4.0  # between two labels on one line
LABEL_LINE_PT = 11.0  # from one line of labels to the next
# browsers may substitute a wider font than the one matplotlib measured with: keep a margin
LABEL_WIDTH_MARGIN = 1.15


def price_axis(
    curves, points: list[float], pme: float | None = None, quantile: float = AXIS_QUANTILE
) -> tuple[float, float, float | None]:
    """``(low, high, cut_at)`` of a chart's price axis; ``cut_at`` is the highest answer when the
    axis stops short of it (the chart says so), else ``None``.

    high = max(min(the price at which ``quantile`` of respondents find it too expensive,
    AXIS_PME_MULTIPLE × PME), every price point and mark + 10%) + 5%; low = 0 unless the (1 − quantile) "too cheap" price is above 40% of
    high (a product priced 900–1,100 starts near 900, not at 0).
    """
    c = curves.sort_values("price")
    price = c["price"].to_numpy(dtype=float)
    if not len(price):
        return 0.0, 1.0, None
    marks = [p for p in points if p is not None and np.isfinite(p)]
    reached = np.flatnonzero(c["too_expensive"].to_numpy() >= quantile)
    q_hi = price[reached[0]] if len(reached) else price[-1]
    if pme is not None and np.isfinite(pme) and pme > 0:
        q_hi = min(q_hi, AXIS_PME_MULTIPLE * pme)
    high = min(max([q_hi, *(1.10 * m for m in marks)]) * 1.05, price[-1] * 1.05)
    below = np.flatnonzero(c["too_cheap"].to_numpy() <= quantile)
    q_lo = price[below[0]] if len(below) else price[0]
    low = 0.0
    if q_lo > 0.4 * high:
        low = min([q_lo, *marks]) * 0.95
    cut_at = float(price[-1]) if price[-1] > high else None
    return float(low), float(high), cut_at


def place_labels(fig, ax, labels) -> None:
    """Lift point labels (annotations above the axes) onto as many lines as needed so that no two
    overlap: each goes on the lowest line where it clears every label already there, after the
    labels to its left (a greedy interval colouring, optimal for intervals)."""
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ann in labels:
        bb = ann.get_window_extent(renderer)
        centre, half = (bb.x0 + bb.x1) / 2, bb.width * LABEL_WIDTH_MARGIN / 2
        boxes.append((centre - half, centre + half, ann))
    lines: list[float] = []  # right edge (pixels) of the last label on each line
    gap = LABEL_GAP_PT * fig.dpi / 72
    for x0, x1, ann in sorted(boxes, key=lambda b: b[0]):
        line = next((i for i, right in enumerate(lines) if x0 >= right + gap), len(lines))
        if line == len(lines):
            lines.append(x1)
        lines[line] = x1
        ann.xyann = (0, 3 + LABEL_LINE_PT * line)


def curves_chart(
    result: VanWestendorpResult,
    segment: str,
    currency: str = "",
    marks: dict[str, float] | None = None,
):
    """Four curves with PMC, OPP, IPP, PME marked and the acceptable range shaded."""
    c = result.curves[result.curves["segment"] == segment]
    pp = result.price_points.set_index("segment").loc[segment]
    fig, ax = new_figure(7.2, 3.6)
    if not np.isnan(pp["pmc"]) and not np.isnan(pp["pme"]):
        ax.axvspan(pp["pmc"], pp["pme"], color=PALETTE[0], alpha=0.08, label="Acceptable range")
    for key, (label, colour, style) in CURVE_STYLE.items():
        ax.step(
            c["price"],
            100 * c[key],
            where="post",
            color=colour,
            linestyle=style,
            linewidth=1.6,
            label=label,
        )
    labels = []
    for name in ("pmc", "opp", "ipp", "pme"):
        v = pp[name]
        if not np.isnan(v):
            ax.axvline(v, color="#5b6b7a", linewidth=0.7, linestyle=":")
            labels.append(
                ax.annotate(
                    f"{name.upper()} {v:,.2f}",
                    (v, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="#1d2733",
                    annotation_clip=False,
                    gid=f"price-point-{name}",
                )
            )
    for label, v in (marks or {}).items():
        if v is not None and not np.isnan(v):
            ax.axvline(v, color=PALETTE[3], linewidth=1.4)
            ax.annotate(
                label, (v, 50), rotation=90, ha="right", va="center", fontsize=7, color=PALETTE[3]
            )
    ax.set_ylim(0, 100)
    low, high, cut_at = price_axis(
        c,
        [pp[n] for n in ("pmc", "opp", "ipp", "pme")] + list((marks or {}).values()),
        pme=pp["pme"],
    )
    ax.set_xlim(low, high)
    _axis_note(ax, cut_at)
    ax.set_xlabel(f"Price ({currency})" if currency else "Price")
    ax.set_ylabel("Respondents (%)")
    ax.legend(loc="center right", fontsize=7, frameon=False)
    place_labels(fig, ax, labels)
    return svg(fig)


def _axis_note(ax, cut_at: float | None) -> None:
    if cut_at is not None:
        ax.text(
            1.0,
            -0.2,
            f"Axis cut where {AXIS_QUANTILE:.0%} find the price too expensive (at most {AXIS_PME_MULTIPLE:g} × PME); highest answer {cut_at:,.0f}.",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=6.5,
            color="#5b6b7a",
        )


def nms_chart(result: VanWestendorpResult, segment: str, currency: str = ""):
    """Trial (purchase probability) and revenue index against price, optima marked."""
    c = result.nms[result.nms["segment"] == segment]
    pp = result.price_points.set_index("segment").loc[segment]
    fig, ax = new_figure(7.2, 3.0)
    ax.plot(c["price"], 100 * c["trial"], color=PALETTE[0], label="Trial (purchase probability, %)")
    ax.plot(c["price"], c["revenue_index"], color=PALETTE[3], label="Revenue index (peak = 100)")
    labels = []
    for name, label in (
        ("trial_optimal_price", "trial-optimal"),
        ("revenue_optimal_price", "revenue-optimal"),
    ):
        v = pp.get(name, np.nan)
        if not np.isnan(v):
            ax.axvline(v, color="#5b6b7a", linewidth=0.8, linestyle=":")
            labels.append(
                ax.annotate(
                    f"{label} {v:,.2f}",
                    (v, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    annotation_clip=False,
                    gid=f"price-point-{name}",
                )
            )
    ax.set_ylim(0, 100)
    curves = result.curves[result.curves["segment"] == segment]
    low, high, cut_at = price_axis(
        curves,
        [pp.get(n, np.nan) for n in ("pmc", "pme", "trial_optimal_price", "revenue_optimal_price")],
        pme=pp["pme"],
    )
    ax.set_xlim(low, high)
    _axis_note(ax, cut_at)
    ax.set_xlabel(f"Price ({currency})" if currency else "Price")
    ax.legend(loc="upper right", fontsize=7, frameon=False)
    place_labels(fig, ax, labels)
    return svg(fig)


def section_context(
    result: VanWestendorpResult, currency: str = "", segments: list[str] | None = None
) -> dict:
    """What the VW section template needs: per-segment rows, charts and the method notes."""
    segs = segments or result.segments
    pp = result.price_points.set_index("segment")
    rows = []
    for s in segs:
        if s not in pp.index:
            continue
        r = pp.loc[s].to_dict()
        r["segment"] = s
        r["curves_svg"] = (
            curves_chart(result, s, currency) if (result.curves["segment"] == s).any() else None
        )
        r["nms_svg"] = (
            nms_chart(result, s, currency)
            if result.has_nms and (result.nms["segment"] == s).any()
            else None
        )
        rows.append(r)
    return {
        "vw_rows": rows,
        "vw_has_nms": result.has_nms,
        "vw_has_intervals": "pmc_lower" in result.price_points.columns,
        "vw_methods": result.settings.describe(),
        "vw_calibration": ", ".join(
            f"{k}→{v:g}" for k, v in sorted(result.settings.nms_calibration.items(), reverse=True)
        )
        + (
            " (pricesensitivitymeter's default)"
            if result.settings.nms_calibration == DEFAULT_CALIBRATION
            else " (set for this study)"
        ),
        "vw_warnings": list(result.warnings),
        "vw_excluded": result.excluded.head(200).to_dict("records"),
        "vw_n_excluded_total": len(result.excluded),
    }


def write_report(
    result: VanWestendorpResult,
    path: str | Path,
    *,
    meta: dict,
    seed: int | None = None,
    inputs: dict | None = None,
) -> Path:
    ctx = section_context(result, meta.get("currency", ""))
    pooled = result.price_points[result.price_points["segment"] == ALL]
    meta = {
        "money_digits": money_digits(
            pooled[["pmc", "opp", "ipp", "pme"]].to_numpy().ravel().tolist()
        ),
        **meta,
    }
    return render("vw.html.j2", path, meta=meta, provenance=provenance(seed, inputs), **ctx)


def write_outputs(
    result: VanWestendorpResult,
    folder: str | Path,
    *,
    meta: dict,
    seed: int | None = None,
    inputs: dict | None = None,
) -> list[str]:
    """price_points.csv, curves.csv, nms.csv (with NMS answers), excluded.csv and report.html."""
    from wtp.io import write_csv

    folder = Path(folder)
    tables = {
        "price_points.csv": result.price_points,
        "curves.csv": result.curves,
        "excluded.csv": result.excluded,
    }
    if result.has_nms:
        tables["nms.csv"] = result.nms
    for name, frame in tables.items():
        write_csv(frame, folder / name)
    write_report(result, folder / "report.html", meta=meta, seed=seed, inputs=inputs)
    return [*tables, "report.html"]
