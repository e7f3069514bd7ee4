"""The explore report: ranked dimensions, the 3–5 segment hypotheses, each group's performance.

:func:`write_outputs` writes every table of ``wtp explore`` and ``report.html``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wtp.report import PALETTE, new_figure, records, render, svg

MAX_CURVES = 8


def survival_chart(result, dimension: str):
    """Kaplan–Meier curves of one dimension's groups with pointwise intervals."""
    s = result.survival[result.survival["dimension"] == dimension]
    fig, ax = new_figure(7.0, 3.4)
    for i, g in enumerate(list(dict.fromkeys(s["group"]))[:MAX_CURVES]):
        d = s[s["group"] == g]
        colour = PALETTE[i % len(PALETTE)]
        ax.step(d["time"], d["survival"], where="post", color=colour, linewidth=1.4, label=str(g))
        ax.fill_between(
            d["time"], d["lower"], d["upper"], step="post", color=colour, alpha=0.12, linewidth=0
        )
    ax.axvline(result.horizon, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"{result.base.period}s since start")
    ax.set_ylabel("Share still a customer")
    ax.set_title(str(dimension), fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return svg(fig)


def report_context(result, *, meta: dict | None = None) -> dict[str, Any]:
    meta = dict(meta or {})
    meta.setdefault("name", "wtp study")
    meta.setdefault("currency", "")
    meta.setdefault("period", result.base.period)
    dims = result.dimensions
    hyp = dims[dims["hypothesis"] > 0]
    hypotheses = []
    for _, d in hyp.iterrows():
        g = result.groups[result.groups["dimension"] == d["dimension"]]
        hypotheses.append(
            {
                **records(d.to_frame().T)[0],
                "rows": records(g),
                "chart": survival_chart(result, d["dimension"]),
            }
        )
    base = result.base
    return {
        "meta": meta,
        "dimensions": records(dims),
        "hypotheses": hypotheses,
        "chosen": result.chosen,
        "overall": result.overall,
        "horizon": result.horizon,
        "alpha": result.alpha,
        "skipped": result.skipped,
        "notes": list(base.notes),
        "base": {
            "as_of": str(base.as_of.date()),
            "n_rows": base.n_rows,
            "n_customers": len(base.customers),
            "n_paying": base.n_paying,
            "n_trialers": int(base.customers["trialer"].sum()),
            "has_mrr": base.has_mrr,
            "source": base.source,
        },
    }


def write_outputs(
    folder: str | Path, result, *, meta: dict | None = None, provenance: dict | None = None
) -> list[str]:
    """``hypotheses.csv``, ``dimensions.csv``, ``groups.csv``, ``survival.csv``,
    ``segments.csv`` and ``customers.csv`` (the chosen dimension, for ``wtp segments``) and
    ``report.html``; returns the names."""
    from wtp.io import write_csv

    folder = Path(folder)
    tables = {
        "hypotheses.csv": result.hypotheses,
        "dimensions.csv": result.dimensions,
        "groups.csv": result.groups,
        "survival.csv": result.survival,
        "segments.csv": result.segments_table(),
        "customers.csv": result.customers_table(),
    }
    for name, frame in tables.items():
        write_csv(frame, folder / name)
    ctx = report_context(result, meta=meta)
    if provenance is not None:
        ctx["provenance"] = provenance
    render("explore.html.j2", folder / "report.html", **ctx)
    return [*tables, "report.html"]


__all__ = ["write_outputs", "report_context", "survival_chart"]
