"""MaxDiff report section and output files.

:func:`write_outputs` writes the contract's tables (``item_scores.csv``; with hierarchical Bayes
also ``individual_utilities.csv``, ``diagnostics.json`` and the posterior as NetCDF), the
respondent fit, the TURF table and ``report.html``. :func:`section_context` is what the
``maxdiff_section.html.j2`` template needs, so the study report can include the same section.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from wtp.hb import ESS_MIN, RHAT_MAX
from wtp.io import write_csv
from wtp.maxdiff import MaxDiffResult
from wtp.report import PALETTE, new_figure, provenance, render, svg
from wtp.schema import ALL

METHOD_NAMES = {
    "hb": "hierarchical Bayes (sequential best-worst MNL, PyMC)",
    "logit": "aggregate sequential best-worst logit (maximum likelihood)",
    "counts": "best − worst counts",
}


def _label(result: MaxDiffResult, item: str, width: int = 38) -> str:
    text = result.labels.get(item, item)
    return text if len(text) <= width else text[: width - 1] + "…"


def _order(result: MaxDiffResult) -> list[str]:
    s = result.item_scores
    return list(s[s["segment"] == ALL].sort_values("share", ascending=True)["item"])


def share_chart(result: MaxDiffResult):
    """Share with 95% interval per item, one panel per segment (total first)."""
    segs = [ALL] + [s for s in result.segments if s != ALL]
    order = _order(result)
    n = len(segs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, ax0 = new_figure(3.3 * cols + 1.8, 0.26 * len(order) * rows + 1.0 * rows)
    fig.clf()
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
    scores = result.item_scores.set_index(["segment", "item"])
    top = float(result.item_scores["upper"].max())
    y = np.arange(len(order))
    for i, seg in enumerate(segs):
        ax = axes[i // cols][i % cols]
        sc = scores.loc[seg].reindex(order)
        colour = PALETTE[0] if seg == ALL else PALETTE[(i % (len(PALETTE) - 1)) + 1]
        ax.barh(y, sc["share"], color=colour, alpha=0.35, height=0.65)
        ax.errorbar(
            sc["share"],
            y,
            xerr=[sc["share"] - sc["lower"], sc["upper"] - sc["share"]],
            fmt="o",
            color=colour,
            markersize=3,
            capsize=2,
            linewidth=1,
        )
        ax.axvline(100 / len(order), color="#5b6b7a", linestyle=":", linewidth=0.8)
        ax.set_title("All respondents" if seg == ALL else seg, fontsize=9)
        ax.set_xlim(0, top * 1.08)
        ax.set_yticks(y)
        ax.set_yticklabels([_label(result, it) for it in order], fontsize=8)
        ax.set_xlabel("Share (%)")
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.tight_layout()
    return svg(fig)


def segment_chart(result: MaxDiffResult):
    """Segments side by side: each item's share per segment, with intervals."""
    segs = [s for s in result.segments if s != ALL]
    if not segs:
        return None
    order = _order(result)
    fig, ax = new_figure(7.2, 0.3 * len(order) + 1.2)
    scores = result.item_scores.set_index(["segment", "item"])
    y = np.arange(len(order))
    width = 0.8 / len(segs)
    for i, seg in enumerate(segs):
        sc = scores.loc[seg].reindex(order)
        off = (i - (len(segs) - 1) / 2) * width
        colour = PALETTE[((i + 1) % (len(PALETTE) - 1)) + 1]  # same colour as its panel above
        ax.errorbar(
            sc["share"],
            y + off,
            xerr=[sc["share"] - sc["lower"], sc["upper"] - sc["share"]],
            fmt="o",
            color=colour,
            markersize=3.5,
            capsize=1.5,
            linewidth=0.9,
            label=seg,
        )
    allsc = scores.loc[ALL].reindex(order)
    ax.scatter(allsc["share"], y, marker="|", s=120, color="#1d2733", label="Total", zorder=3)
    ax.set_yticks(y)
    ax.set_yticklabels([_label(result, it) for it in order], fontsize=8)
    ax.set_xlabel("Share (%), 95% interval")
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return svg(fig)


def rlh_chart(result: MaxDiffResult):
    """Respondent fit (RLH) with the chance level and the random-answering threshold."""
    fit = result.respondent_fit
    if fit.empty:
        return None
    fig, ax = new_figure(6.0, 2.4)
    ax.hist(fit["rlh"], bins=30, color=PALETTE[0], alpha=0.7)
    d = result.diagnostics
    ax.axvline(
        d["chance_rlh"], color="#5b6b7a", linestyle=":", label=f"chance {d['chance_rlh']:.3f}"
    )
    ax.axvline(
        d["rlh_random_threshold"],
        color=PALETTE[1],
        label=f"random-answering threshold {d['rlh_random_threshold']:.3f}",
    )
    ax.set_xlabel("Root likelihood (RLH)")
    ax.set_ylabel("Respondents")
    ax.legend(fontsize=7, frameon=False)
    return svg(fig)


def ladder_chart(turf_result):
    if turf_result is None:
        return None
    lad = turf_result.ladder
    fig, ax = new_figure(6.0, 2.6)
    ax.plot(lad["step"], 100 * lad["reach"], marker="o", color=PALETTE[0])
    ax.set_xticks(lad["step"])
    ax.set_xlabel("Items in the portfolio (greedy order)")
    ax.set_ylabel("Reach (%)")
    ax.set_ylim(0, 102)
    return svg(fig)


def diagnostics_rows(result: MaxDiffResult) -> list[dict]:
    """Diagnostics next to their thresholds (hierarchical Bayes) or the fit figures."""
    d = result.diagnostics
    rows = []
    if result.method == "hb":
        rows += [
            {
                "check": "max R-hat (population means and SDs, segment shares)",
                "value": f"{d['max_rhat']:.4f}",
                "threshold": f"≤ {RHAT_MAX}",
                "ok": d["max_rhat"] <= RHAT_MAX,
            },
            {
                "check": "min bulk ESS (same set)",
                "value": f"{d['min_ess_bulk']:.0f}",
                "threshold": f"≥ {ESS_MIN}",
                "ok": d["min_ess_bulk"] >= ESS_MIN,
            },
            {
                "check": "min tail ESS (same set)",
                "value": f"{d['min_ess_tail']:.0f}",
                "threshold": f"≥ {ESS_MIN}",
                "ok": d["min_ess_tail"] >= ESS_MIN,
            },
            {
                "check": "divergent transitions",
                "value": str(d["divergences"]),
                "threshold": "0",
                "ok": d["divergences"] == 0,
            },
            {
                "check": "population correlations (nuisance): max R-hat / min bulk ESS",
                "value": f"{d.get('corr_max_rhat', float('nan')):.4f} / {d.get('corr_min_ess_bulk', float('nan')):.0f}",
                "threshold": f"≤ {RHAT_MAX} / ≥ {ESS_MIN}",
                "ok": d.get("covariance_converged"),
            },
            {
                "check": f"individual utilities: max R-hat ({d['individual_checked']} respondents checked)",
                "value": f"{d['individual_max_rhat']:.4f}",
                "threshold": f"≤ {RHAT_MAX}",
                "ok": d["individual_max_rhat"] <= RHAT_MAX,
            },
            {
                "check": "individual utilities: min bulk ESS",
                "value": f"{d['individual_min_ess_bulk']:.0f}",
                "threshold": f"≥ {ESS_MIN}",
                "ok": d["individual_min_ess_bulk"] >= ESS_MIN,
            },
            {
                "check": "individual utilities: min tail ESS",
                "value": f"{d['individual_min_ess_tail']:.0f}",
                "threshold": f"≥ {ESS_MIN}",
                "ok": d["individual_min_ess_tail"] >= ESS_MIN,
            },
        ]
    elif result.method == "logit":
        rows += [
            {
                "check": "optimiser converged",
                "value": str(d["optimizer_converged"]),
                "threshold": "True",
                "ok": bool(d["optimizer_converged"]),
            },
            {
                "check": "McFadden pseudo R² (total)",
                "value": f"{d['pseudo_r2']:.3f}",
                "threshold": "",
                "ok": None,
            },
        ]
    rows += [
        {
            "check": "mean RLH (chance level)",
            "value": f"{d['mean_rlh']:.3f} ({d['chance_rlh']:.3f})",
            "threshold": "> chance",
            "ok": d["mean_rlh"] > d["chance_rlh"],
        },
        {
            "check": "respondents no better than random answering",
            "value": f"{d['n_random_like']} ({100 * d['share_random_like']:.1f}%)",
            "threshold": f"RLH > {d['rlh_random_threshold']:.3f}"
            + (
                f" (catches {100 * d['random_detection_rate']:.0f}% of random answerers, ~5% of honest)"
                if "random_detection_rate" in d
                else ""
            ),
            "ok": None,
        },
    ]
    return rows


def _comparison_rows(result: MaxDiffResult) -> tuple[list[str], list[dict]]:
    segs = [s for s in result.segments if s != ALL]
    wide = result.item_scores.pivot(index="item", columns="segment", values="share")
    order = list(reversed(_order(result)))
    rows = []
    for it in order:
        total = wide.loc[it, ALL]
        cells = []
        for s in segs:
            v = wide.loc[it, s]
            idx = 100 * v / total if total > 0 else float("nan")
            cells.append(
                {
                    "share": v,
                    "index": idx,
                    "cls": "good" if idx >= 120 else ("bad" if idx <= 80 else ""),
                }
            )
        rows.append(
            {"item": it, "label": result.labels.get(it, it), "total": total, "cells": cells}
        )
    return segs, rows


def section_context(result: MaxDiffResult, turf_result=None) -> dict:
    """Template context of the MaxDiff section (``md_`` prefixed)."""
    d = result.diagnostics
    segs, comp = _comparison_rows(result)
    scores = result.item_scores.copy()
    scores["label"] = scores["item"].map(result.labels)
    warnings = []
    if not result.converged:
        if result.method == "hb":
            from wtp.hb import unconverged_advice

            warnings.append(unconverged_advice(d))
        else:
            warnings.append("The estimation did not converge; the numbers below are not reliable.")
    warnings.extend(getattr(result, "warnings", ()))
    notes = []
    if result.method == "hb" and d.get("covariance_converged") is False:
        notes.append(
            "The population correlations mix more slowly than the shares and utilities reported here "
            f"(min bulk ESS {d.get('corr_min_ess_bulk', float('nan')):.0f}); they only set how far individual utilities are pulled towards the population. "
            "More draws (--draws) settle them."
        )
    if "random_detection_rate" in d:
        if d["random_flag_reliable"]:
            notes.append(
                f"{d['n_random_like']} respondents ({100 * d['share_random_like']:.0f}%) fit their answers worse than 95% of simulated honest respondents "
                f"on this design; the flag catches {100 * d['random_detection_rate']:.0f}% of simulated random answerers and marks about 5% of honest ones, "
                "so about 5% flagged is what honest data gives. Inspect respondent_fit.csv before excluding anyone."
            )
        else:
            notes.append(
                f"This design has too few tasks per respondent ({d['tasks_per_respondent']:.0f}) to tell random answering from honest answering: "
                f"a flag that marks 5% of honest respondents catches only {100 * d['random_detection_rate']:.0f}% of random answerers. "
                "The random_like column is shown for reference; do not exclude respondents on it alone."
            )
    elif d.get("share_random_like", 0) > 0.2:
        notes.append(
            f"{100 * d['share_random_like']:.0f}% of respondents fit their own answers no better than the best 5% of simulated random answerers. "
            "With few tasks per respondent the two groups overlap even for honest answers, so inspect respondent_fit.csv before excluding anyone."
        )
    if d.get("n_straight_lining", 0):
        notes.append(
            f"{d['n_straight_lining']} respondents picked the item in the same screen position as best in at least 80% of their tasks "
            "(straight_lining in respondent_fit.csv); designs rotate positions, so honest answers rarely do this."
        )
    return {
        "md_method": result.method,
        "md_method_name": METHOD_NAMES[result.method],
        "md_converged": result.converged,
        "md_warnings": warnings,
        "md_notes": notes,
        "md_k": result.k,
        "md_n_respondents": result.n_respondents,
        "md_n_tasks": result.n_tasks,
        "md_n_items": len(result.items),
        "md_share_svg": share_chart(result),
        "md_segment_svg": segment_chart(result),
        "md_rlh_svg": rlh_chart(result),
        "md_segments": segs,
        "md_comparison": comp,
        "md_diagnostics": diagnostics_rows(result),
        "md_scores": scores.to_dict("records"),
        "md_settings": result.settings,
        "md_sampling": _sampling_summary(d),
        "md_turf": turf_result.summary(10).to_dict("records") if turf_result is not None else None,
        "md_turf_k": turf_result.k if turf_result is not None else None,
        "md_turf_rule": (
            "an item reaches a respondent when its utility is above the respondent's mean"
            if turf_result is not None and turf_result.reach_rule == "above_mean"
            else f"an item reaches a respondent when it is among their top {turf_result.top_n}"
            if turf_result is not None
            else ""
        ),
        "md_turf_method": turf_result.method if turf_result is not None else None,
        "md_ladder_svg": ladder_chart(turf_result),
    }


def _sampling_summary(d: dict) -> dict | None:
    """What the sampler ran, for the report (timings stay in diagnostics.json: reports of the
    same data and seed are byte-identical)."""
    record = d.get("sampling")
    if not record:
        return None
    last = record[-1]
    return {
        "chains": d.get("chains"),
        "draws_per_chain": d.get("draws_per_chain"),
        "tune": last["tune"],
        "rounds": last["round"],
        "checks": len(record),
        "stopped_because": d.get("stopped_because", ""),
    }


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return None if not np.isfinite(obj) else float(obj)
    return obj


def write_outputs(
    result: MaxDiffResult,
    folder: str | Path,
    *,
    meta: dict,
    seed: int | None = None,
    inputs: dict | None = None,
    turf_result=None,
    save_posterior: bool = False,
) -> list[str]:
    """Write tables, diagnostics and report.html into ``folder`` (the posterior, single precision,
    only with ``save_posterior``: it is large); return the names."""
    folder = Path(folder)
    written = []
    cols = ["segment", "item", "utility", "share", "lower", "upper"]
    scores = result.item_scores
    write_csv(
        scores[cols + [c for c in scores.columns if c not in cols]], folder / "item_scores.csv"
    )
    written.append("item_scores.csv")
    write_csv(result.respondent_fit, folder / "respondent_fit.csv")
    written.append("respondent_fit.csv")
    if result.method == "hb":
        iu = result.individual_utilities
        write_csv(
            iu[["respondent_id", "item", "utility", "segment"]], folder / "individual_utilities.csv"
        )
        written.append("individual_utilities.csv")
        if save_posterior and result.hb is not None:
            result.save_posterior(folder / "posterior.nc")
            written.append("posterior.nc")
    diag = dict(result.diagnostics)
    diag["settings"] = result.settings
    (folder / "diagnostics.json").write_text(
        json.dumps(_json_safe(diag), indent=2), encoding="utf-8"
    )
    written.append("diagnostics.json")
    if turf_result is not None:
        write_csv(turf_result.portfolios, folder / "turf.csv")
        write_csv(turf_result.ladder, folder / "turf_ladder.csv")
        written += ["turf.csv", "turf_ladder.csv"]
    render(
        "maxdiff.html.j2",
        folder / "report.html",
        meta=meta,
        provenance=provenance(seed, inputs),
        **section_context(result, turf_result),
    )
    written.append("report.html")
    return written


def write_design_outputs(design: pd.DataFrame, balance, folder: str | Path) -> list[str]:
    folder = Path(folder)
    write_csv(design, folder / "design.csv")
    (folder / "design_report.txt").write_text(balance.text(), encoding="utf-8")
    return ["design.csv", "design_report.txt"]
