"""Conjoint speed and recovery.

Run: ``python benchmarks/conjoint.py`` (prints a table; ``--quick`` uses 3 recovery seeds,
``--hb`` adds a hierarchical Bayes run, about 4 minutes on 2 cores).

* Speed: aggregate MNL on 2,000 respondents × 12 tasks × 4 alternatives (+ none), target < 3 s
  for the fit (data preparation + optimisation); validation of the long file timed separately;
  statsmodels ``ConditionalLogit`` (Newton) on the same arrays as the peer.
* Recovery: ``wtp.simulate.simulate_conjoint`` with one segment, 4,000 respondents × 12 tasks ×
  3 alternatives + none (heterogeneous part-worths); worst relative WTP error per seed and
  whether the importances come out in the true order.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from wtp.conjoint import estimate_conjoint, fit_mnl, prepare_choice_data
from wtp.io import attach_segments, validate_conjoint
from wtp.simulate import SegmentSpec, simulate_conjoint


def timed(fn, repeat=3):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def speed_rows() -> list[tuple]:
    sim = simulate_conjoint(
        2000, n_tasks=12, n_alts=4, none=True, segments=[SegmentSpec("Core", 1.0, 60.0)], seed=1
    )
    raw = sim.answers.drop(columns="segment")
    rows = []
    secs, answers = timed(lambda: attach_segments(validate_conjoint(raw)))
    rows.append(("validate 2,000 × 12 × (4 + none) rows", secs, None, f"{len(raw):,} rows"))

    def fit():
        data = prepare_choice_data(answers, levels=sim.attributes)
        return data, fit_mnl(data)

    secs, (data, f) = timed(fit)
    rows.append(
        (
            "aggregate MNL fit 2,000 × 12 × 4 (+ none)",
            secs,
            3.0,
            f"{f.iterations} iterations, LL {f.loglik:,.1f}",
        )
    )
    secs, res = timed(lambda: estimate_conjoint(answers, levels=sim.attributes))
    rows.append(
        (
            "estimate_conjoint (fit + part-worths, WTP)",
            secs,
            3.0,
            f"price {res.fit['price_coef'].iloc[-1]:.4f}/unit",
        )
    )

    from statsmodels.discrete.conditional_models import ConditionalLogit

    flat = data.X[data.available]
    endog = (np.arange(data.X.shape[1])[None, :] == data.chosen[:, None])[data.available].astype(
        float
    )
    groups = np.repeat(np.arange(data.n_choices), data.available.sum(axis=1))
    secs, sm = timed(
        lambda: ConditionalLogit(endog, flat, groups=groups).fit(disp=0, method="newton"), repeat=1
    )
    gap = np.max(np.abs(sm.params - f.beta))
    rows.append(
        ("peer: statsmodels ConditionalLogit (Newton)", secs, None, f"max |Δβ| vs ours {gap:.1e}")
    )
    return rows


def recovery_rows(seeds) -> list[tuple]:
    worst, order_ok, secs = [], [], []
    for seed in seeds:
        sim = simulate_conjoint(
            4000,
            n_tasks=12,
            n_alts=3,
            none=True,
            segments=[SegmentSpec("Core", 1.0, 60.0)],
            seed=seed,
        )
        answers = attach_segments(validate_conjoint(sim.answers))
        t0 = time.perf_counter()
        res = estimate_conjoint(answers, levels=sim.attributes)
        secs.append(time.perf_counter() - t0)
        got = res.wtp[res.wtp.segment == "all"].merge(
            sim.wtp[sim.wtp.segment == "all"], on=["attribute", "level"], suffixes=("", "_true")
        )
        got = got[got["wtp_true"] != 0]
        worst.append(float((got["wtp"] / got["wtp_true"] - 1).abs().max()))
        t = sim.partworths[sim.partworths.segment == "all"]
        ranges = (
            t[~t.attribute.isin(["price", "none"])]
            .groupby("attribute")["utility"]
            .agg(lambda u: u.max() - u.min())
        )
        ranges["price"] = abs(t.loc[t.attribute == "price", "utility"].iloc[0]) * (
            max(sim.prices) - min(sim.prices)
        )
        est = res.importances[res.importances.segment == "all"].set_index("attribute")["importance"]
        order_ok.append(list(est.sort_values().index) == list(ranges.sort_values().index))
    worst = np.array(worst)
    return [
        (
            f"recovery MNL, 4,000 × 12 × 3 + none, seeds {seeds[0]}–{seeds[-1]}",
            float(np.mean(secs)),
            None,
            f"worst-level WTP error median {np.median(worst):.1%}, max {worst.max():.1%}; "
            f"within 15% in {int((worst < 0.15).sum())}/{worst.size}; importance order right in {sum(order_ok)}/{len(order_ok)}",
        ),
    ]


def hb_rows(seed: int = 2020) -> list[tuple]:
    """HB (wtp.hb, nutpie) on 1,000 respondents × 12 tasks × 3 + none, 4 chains × 500 draws."""
    sim = simulate_conjoint(
        1000, n_tasks=12, n_alts=3, none=True, segments=[SegmentSpec("Core", 1.0, 60.0)], seed=seed
    )
    answers = attach_segments(validate_conjoint(sim.answers))
    t0 = time.perf_counter()
    res = estimate_conjoint(
        answers,
        levels=sim.attributes,
        method="hb",
        draws=500,
        chains=4,
        rng=np.random.default_rng(7),
    )
    secs = time.perf_counter() - t0
    got = res.wtp[res.wtp.segment == "all"].merge(
        sim.wtp[sim.wtp.segment == "all"], on=["attribute", "level"], suffixes=("", "_true")
    )
    got = got[got["wtp_true"] != 0]
    worst = float((got["wtp"] / got["wtp_true"] - 1).abs().max())
    d = res.diagnostics.set_index("check")["value"]
    mnl = estimate_conjoint(answers, levels=sim.attributes)
    m = mnl.wtp[mnl.wtp.segment == "all"].merge(
        sim.wtp[sim.wtp.segment == "all"], on=["attribute", "level"], suffixes=("", "_true")
    )
    m = m[m["wtp_true"] != 0]
    return [
        (
            f"HB 1,000 × 12 × 3 + none, 4 × 500 draws, seed {seed}",
            secs,
            None,
            f"worst-level WTP error {worst:.1%} (MNL on the same data {float((m['wtp'] / m['wtp_true'] - 1).abs().max()):.1%}); "
            f"max R-hat {d['max R-hat']:.3f}, min bulk ESS {d['min bulk ESS']:.0f}",
        ),
    ]


def main() -> None:
    quick = "--quick" in sys.argv
    rows = speed_rows() + recovery_rows(list(range(2020, 2023 if quick else 2030)))
    if "--hb" in sys.argv:
        rows += hb_rows()
    table = pd.DataFrame(rows, columns=["case", "seconds", "target_s", "result"])
    table["pass"] = [
        ("yes" if s < t else "NO") if pd.notna(t) else ""
        for s, t in zip(table["seconds"], table["target_s"], strict=True)
    ]
    with pd.option_context("display.width", 200, "display.max_colwidth", 120):
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
