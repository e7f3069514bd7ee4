"""Conjoint report section: part-worth charts, importances, WTP table with intervals, demand curve.

:func:`write_outputs` writes the machine tables of ``wtp conjoint`` (partworths.csv,
importances.csv, wtp.csv, simulation.csv, demand.csv) and report.html, so the CLI and the
study pipeline write the same files the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from wtp.conjoint import ConjointResult, SimulatorTables
from wtp.report import PALETTE, new_figure, provenance, render, svg
from wtp.schema import ALL


def partworth_chart(result: ConjointResult, segment: str):
    """Horizontal bars of every level's part-worth with its 95% interval, grouped by attribute."""
    pw = result.partworths[
        (result.partworths["segment"] == segment) & ~result.partworths["attribute"].isin(["none"])
    ]
    if result.coding.price == "linear":
        pw = pw[pw["attribute"] != "price"]
    # utilities per unit are on another scale than level part-worths: they stay in the table
    pw = pw[~pw["attribute"].isin(list(result.coding.numeric))]
    labels, values, errors, colours, ypos = [], [], [], [], []
    y = 0.0
    for k, (attr, rows) in enumerate(pw.groupby("attribute", sort=False)):
        for r in rows.itertuples(index=False):
            labels.append(f"{attr}: {r.level}")
            values.append(r.utility)
            errors.append(1.959964 * r.se if np.isfinite(r.se) else 0.0)
            colours.append(PALETTE[k % len(PALETTE)])
            ypos.append(y)
            y += 1
        y += 0.6  # a gap between attributes
    fig, ax = new_figure(7.2, max(2.0, 0.26 * y + 0.8))
    ax.barh(
        ypos,
        values,
        xerr=errors,
        color=colours,
        alpha=0.85,
        error_kw={"elinewidth": 0.8, "capsize": 2},
    )
    ax.set_yticks(ypos, labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="#1d2733", linewidth=0.8)
    ax.set_xlabel("Part-worth utility (95% interval)")
    return svg(fig)


def importance_chart(result: ConjointResult):
    """Grouped bars: importance of each attribute per segment (sums to 100 in a segment)."""
    imp = result.importances
    attrs = list(dict.fromkeys(imp["attribute"]))
    segs = list(result.segments)
    width = 0.8 / len(segs)
    fig, ax = new_figure(7.2, max(2.2, 0.35 * len(attrs) * max(1, len(segs) / 2) + 0.8))
    base = np.arange(len(attrs))
    for i, s in enumerate(segs):
        v = imp[imp["segment"] == s].set_index("attribute").reindex(attrs)["importance"]
        ax.barh(base + i * width, v, height=width, color=PALETTE[i % len(PALETTE)], label=s)
    ax.set_yticks(base + width * (len(segs) - 1) / 2, attrs)
    ax.invert_yaxis()
    ax.set_xlabel("Importance (% of the utility range)")
    if len(segs) > 1:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return svg(fig)


def demand_chart(curve: pd.DataFrame, currency: str = ""):
    """Share of the product against none as its price moves, one line per segment."""
    fig, ax = new_figure(7.2, 3.2)
    for i, (s, rows) in enumerate(curve.groupby("segment", sort=False)):
        colour = "#1d2733" if s == ALL else PALETTE[i % len(PALETTE)]
        ax.plot(
            rows["price"],
            100 * rows["share"],
            color=colour,
            linewidth=2.0 if s == ALL else 1.3,
            label=s,
        )
        if rows["lower"].notna().all():
            ax.fill_between(
                rows["price"],
                100 * rows["lower"],
                100 * rows["upper"],
                color=colour,
                alpha=0.10,
                linewidth=0,
            )
    ax.set_ylim(0, 100)
    ax.set_xlabel(f"Price ({currency})" if currency else "Price")
    ax.set_ylabel("Choose the product (%)")
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    return svg(fig)


def _methods(result: ConjointResult) -> list[str]:
    c = result.coding
    out = [result.method_reason] if result.method_reason else []
    if result.method == "mnl":
        se = (
            "standard errors clustered by respondent (sandwich with the G/(G−1) correction), because each respondent "
            "answers several tasks and those answers are not independent"
            if result.se_type == "cluster"
            else "plain standard errors from the inverse Hessian (every task treated as independent: too narrow when "
            "respondents answer several tasks)"
        )
        out.append(
            "Aggregate multinomial logit per segment and for all respondents pooled, survey weights in the "
            f"likelihood (rescaled to average 1); {se}."
        )
    else:
        out.append(
            "Hierarchical Bayes multinomial logit: individual part-worths drawn around segment means; "
            "segment part-worths and importances are weighted means over the segment's respondents per posterior draw."
        )
        out.append(
            "Willingness to pay (HB): each respondent's money value −Δβ / β_price per posterior draw, summarised by the "
            "weighted median over the segment's respondents — the value of the median respondent. The mean of such "
            "ratios is dominated by respondents whose price coefficient is near zero, and the ratio of mean part-worths "
            "describes an average respondent nobody is; the 25%–75% range across respondents is in wtp.csv."
        )
    if c.numeric:
        parts = [
            f"{a} ({'linear' if not k else 'piecewise linear, knots ' + ', '.join(f'{x:g}' for x in k)}; tested {c.levels[a][0]}–{c.levels[a][-1]})"
            for a, k in c.numeric.items()
        ]
        out.append(
            "Numeric attributes, one utility per unit (money value per unit = −β_unit / β_price; importance = "
            "|β| × the tested range): "
            + "; ".join(parts)
            + ". Between tested values the simulator interpolates; "
            "outside them it extrapolates and says so."
        )
    out.append(
        f"{'Dummy' if c.coding == 'dummy' else 'Effects'} coding with the first level of each attribute as reference; "
        + (
            "price as one linear term (utility per currency unit)."
            if c.price == "linear"
            else "price as part-worths per tested price."
        )
        + (
            " The no-choice option has its own constant."
            if c.none
            else " Forced choice (no none option)."
        )
    )
    out.append(
        "Importance: range of an attribute's part-worths (price: |β_price| × the tested price range "
        f"{min(c.prices):g}–{max(c.prices):g}), normalised to 100 within a segment."
    )
    out.append(
        "Willingness to pay of a level: −(β_level − β_first level) / β_price"
        + (
            " (β_price: slope between the lowest and highest tested price)"
            if c.price == "partworth"
            else ""
        )
        + (
            f"; 95% interval by the delta method from the {'respondent-clustered' if result.se_type == 'cluster' else 'plain'} covariance."
            if result.method == "mnl"
            else "; 95% interval from posterior draws."
        )
    )
    return out


def section_context(
    result: ConjointResult,
    currency: str = "",
    segments: list[str] | None = None,
    *,
    demand: pd.DataFrame | None = None,
    demand_product: dict | None = None,
    simulation: pd.DataFrame | None = None,
    extrapolated: pd.DataFrame | None = None,
) -> dict:
    """What the conjoint section template needs (keys start with ``cj_``)."""
    segs = [s for s in (segments or result.segments) if s in result.segments]
    ok = result.price_ok
    fit = result.fit.set_index("segment")
    rows = []
    for s in segs:
        w = result.wtp[(result.wtp["segment"] == s)]
        rows.append(
            {
                "segment": s,
                "fit": fit.loc[s].to_dict(),
                "price_ok": ok[s],
                "partworth_svg": partworth_chart(result, s),
                "partworths": result.partworths[result.partworths["segment"] == s].to_dict(
                    "records"
                ),
                "wtp": w.to_dict("records"),
            }
        )
    wide = result.wtp.set_index(["segment", "attribute", "level"])
    wtp_rows = []
    for attr, levels in result.attributes.items():
        units = (
            [label for label, _ in result.coding.unit_rows(attr)]
            if attr in result.coding.numeric
            else []
        )
        for lv in units:
            cells = [
                wide.loc[(s, attr, lv)].to_dict() if (s, attr, lv) in wide.index else None
                for s in segs
            ]
            wtp_rows.append(
                {
                    "attribute": attr,
                    "level": lv.replace("per_unit", "per unit"),
                    "reference": "",
                    "cells": cells,
                }
            )
        for lv in levels[1:]:
            cells = []
            for s in segs:
                key = (s, attr, lv)
                cells.append(wide.loc[key].to_dict() if key in wide.index else None)
            wtp_rows.append(
                {"attribute": attr, "level": lv, "reference": levels[0], "cells": cells}
            )
    imp = result.importances[result.importances["segment"].isin(segs)]
    table = imp.pivot(index="attribute", columns="segment", values="importance").reindex(
        index=list(dict.fromkeys(imp["attribute"])), columns=segs
    )
    return {
        "cj_rows": rows,
        "cj_wtp_rows": wtp_rows,
        "cj_invalid_segments": [s for s in segs if not ok[s]],
        "cj_segments": segs,
        "cj_importance_svg": importance_chart(result),
        "cj_importances": [
            {"attribute": a, "values": [table.loc[a, s] for s in segs]} for a in table.index
        ],
        "cj_demand_svg": demand_chart(demand, currency) if demand is not None else None,
        "cj_demand_product": demand_product or {},
        "cj_simulation": simulation.to_dict("records") if simulation is not None else [],
        "cj_extrapolated": extrapolated.to_dict("records") if extrapolated is not None else [],
        "cj_warnings": list(result.warnings),
        "cj_notes": list(result.notes),
        "cj_methods": _methods(result),
        "cj_method": result.method,
        "cj_diagnostics": result.diagnostics.to_dict("records")
        if result.diagnostics is not None
        else [],
        "cj_n": result.n_used,
        "cj_price_linear": result.coding.price == "linear",
    }


def write_report(
    result: ConjointResult,
    path: str | Path,
    *,
    meta: dict,
    seed: int | None = None,
    inputs: dict | None = None,
    demand: pd.DataFrame | None = None,
    demand_product: dict | None = None,
    simulation: pd.DataFrame | None = None,
    extrapolated: pd.DataFrame | None = None,
) -> Path:
    meta = {"name": "wtp study", "currency": "", "price_unit": "", **meta}
    ctx = section_context(
        result,
        meta.get("currency", ""),
        demand=demand,
        demand_product=demand_product,
        simulation=simulation,
        extrapolated=extrapolated,
    )
    return render("conjoint.html.j2", path, meta=meta, provenance=provenance(seed, inputs), **ctx)


def write_outputs(
    result: ConjointResult,
    folder: str | Path,
    *,
    meta: dict,
    seed: int | None = None,
    inputs: dict | None = None,
    tables: SimulatorTables | None = None,
) -> dict[str, pd.DataFrame]:
    """Write partworths.csv, importances.csv, wtp.csv, demand.csv, simulation.csv (with a
    scenario), fit.csv, level_noise.csv where the MNL has it, with HB individual_partworths.csv and diagnostics.json, and report.html
    into ``folder``; returns the simulation and demand frames.

    ``tables`` (:func:`wtp.conjoint.simulator_tables`) are computed before writing: nothing here
    draws random numbers, so the same seed writes the same bytes.
    """
    from wtp.io import write_csv

    folder = Path(folder)
    tables = tables or SimulatorTables(None, None, None)
    write_csv(result.partworths, folder / "partworths.csv")
    write_csv(result.importances, folder / "importances.csv")
    write_csv(result.wtp, folder / "wtp.csv")
    write_csv(result.summary(), folder / "fit.csv")
    if result.level_noise:
        write_csv(result.level_noise_frame(), folder / "level_noise.csv")
    if result.individual is not None:
        import json

        write_csv(result.individual_partworths(), folder / "individual_partworths.csv")
        d = result.diagnostics
        diag: dict = {}
        if d is not None:
            # "max R-hat" → max_rhat, "min bulk ESS" → min_ess_bulk, as MaxDiff's diagnostics.json
            names = {
                "max R-hat": "max_rhat",
                "min bulk ESS": "min_ess_bulk",
                "min tail ESS": "min_ess_tail",
                "divergences": "divergences",
                "individual max R-hat": "individual_max_rhat",
                "individual min bulk ESS": "individual_min_ess_bulk",
                "individual min tail ESS": "individual_min_ess_tail",
            }
            diag = {
                names.get(str(r.check), str(r.check)): float(r.value)
                for r in d.itertuples(index=False)
            }
            diag["converged"] = bool(d["ok"].all())
            if "sampler" in d.columns:
                diag["sampler"] = str(d["sampler"].iloc[0])
            # the sampler's own record: rounds, checks, why it stopped, timings
            diag.update({k: v for k, v in d.attrs.get("hb", {}).items() if k not in diag})
        diag["mean_rlh"] = float(result.fit.set_index("segment").loc[ALL, "mean_rlh"])
        (folder / "diagnostics.json").write_text(
            json.dumps(diag, indent=2, default=_plain), encoding="utf-8"
        )
    out: dict[str, pd.DataFrame] = {}
    if tables.simulation is not None:
        write_csv(tables.simulation, folder / "simulation.csv")
        out["simulation"] = tables.simulation
    if tables.extrapolation is not None and len(tables.extrapolation):
        write_csv(tables.extrapolation, folder / "extrapolation.csv")
        out["extrapolation"] = tables.extrapolation
    if tables.demand is not None:
        write_csv(tables.demand, folder / "demand.csv")
        out["demand"] = tables.demand
    write_report(
        result,
        folder / "report.html",
        meta=meta,
        seed=seed,
        inputs=inputs,
        demand=tables.demand,
        demand_product=tables.demand_product,
        simulation=tables.simulation,
        extrapolated=tables.extrapolation,
    )
    return out


def _plain(value):
    """numpy scalars in the sampler's record as plain JSON numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
