"""Price books: speed of the take-up simulator and the joint search, and recovery on tier worlds.

Run: ``python benchmarks/pricing.py`` (prints three tables; ``--seeds 3`` for more worlds,
``--coverage-seeds 8`` for the coverage table, ``--speed-only`` for the first table,
``--exhaustive`` for the fourth, which takes minutes per world).

1. Speed: 4 segments × 3 tiers × 2,000 respondents × 500 draws — pricing four own books and the
   single book jointly (search on the first ``search_draws`` draws), then the take-up of both
   scenarios over all 500 draws. Target on 2 cores: < 10 s.
2. Recovery: :func:`wtp.simulate.simulate_tier_world` under each answer process and seed, run
   through ``wtp run --fast``; each book judged by the world's truth — its true revenue over the
   same packages at their true best ordered prices, the predicted against the true uplift of
   multiple over single, and whether the 90% revenue intervals cover the truth. Rows for the
   default ``too_cheap = "ignore"`` and for the setting that matches the world.
3. Coverage: the same runs (``too_cheap`` matching the world) over more seeds, without the
   search for the best prices: how often the 90% intervals of total and per-segment revenue
   cover the truth, and the worst relative error of the predicted uplift.
5. Add-ons (``--add-ons``): each add-on the tool priced in the tier worlds (those drafted, and
   ``sla`` pinned as one), its true revenue at the tool's price against its true best price with
   the same tiers (:meth:`wtp.simulate.SimulatedTierWorld.judge_add_ons`), under
   ``[pricing] add_on_noise = "conjoint"`` (the default) and ``"none"``.
4. Search against exhaustive search (``--exhaustive``): every book the joint search priced in a
   tier world's ``wtp run --fast`` (the agents and nice-price lattice it searched), priced again
   by trying every ordered ladder on the full lattice; the revenue gap between the two is how
   near the search came to the best ladder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from wtp.pricing.inputs import Volumes
from wtp.pricing.scenarios import evaluate, price_book
from wtp.pricing.settings import PricingSettings
from wtp.pricing.valuation import SegmentValues, tier_noise


def _segment(
    name: str,
    n: int,
    draws: int,
    features: int,
    scale: float,
    rng: np.random.Generator,
    tiers: int = 3,
    noisy: bool = False,
) -> SegmentValues:
    base = scale * np.exp(0.4 * rng.standard_normal((n, draws)))
    base[rng.random((n, draws)) < 0.5] = -np.inf
    fv = scale * np.abs(rng.normal(0.15, 0.1, (n, features)))
    # the default (HB) run's shape: noise between tiers of each respondent's price scale
    shock = tier_noise(np.full(n, 0.15 * scale), draws, tiers, seed=1) if noisy else None
    return SegmentValues(
        segment=name, respondent_id=np.arange(n).astype(str), weight=np.ones(n), base=base,
        boot=rng.exponential(size=(draws, n)), features=tuple(f"f{j}" for j in range(features)), feature_values=fv,
        described=np.zeros(features, dtype=bool), reference=np.full(n, scale), too_cheap=0.5 * scale * np.ones(n),
        shock=shock,
    )  # fmt: skip


def speed(
    n_segments: int = 4, n: int = 2000, draws: int = 500, tiers: int = 3, noisy: bool = False
) -> pd.DataFrame:
    """The speed table; ``noisy``: with noise between tiers, as a run with a conjoint and Van
    Westendorp answers has (HB, or ``--fast``'s MNL with price levels)."""
    rng = np.random.default_rng(0)
    settings = PricingSettings(draws=draws)
    values = [
        _segment(f"S{i + 1}", n, draws, 6, 30.0 * 2**i, rng, tiers, noisy)
        for i in range(n_segments)
    ]
    member = np.array([[j < 2 * (k + 1) for j in range(6)] for k in range(tiers)])
    vols = Volumes(
        pd.DataFrame(
            {"prospects": 1000.0, "seats": 1.0},
            index=pd.Index([v.segment for v in values], name="segment"),
        ),
        "benchmark",
    )
    names = [f"T{k + 1}" for k in range(tiers)]
    rows = []
    c0 = time.process_time()
    t0 = time.perf_counter()
    books = {
        v.segment: price_book("multiple", v.segment, names, member, [(v, 1000.0)], settings, rng)
        for v in values
    }
    t1 = time.perf_counter()
    c1 = time.process_time()
    single = price_book(
        "single", "all", names, member, [(v, 1000.0) for v in values], settings, rng
    )
    t2 = time.perf_counter()
    c2 = time.process_time()
    for v in values:
        evaluate(books[v.segment], v, vols, np.ones(draws), settings)
        evaluate(single, v, vols, np.ones(draws), settings)
    t3 = time.perf_counter()
    c3 = time.process_time()
    rows.append(
        {
            "step": f"optimise {n_segments} own books ({tiers} tiers, {n:,} respondents, {settings.search_draws_for(n)} search draws)",
            "seconds": t1 - t0,
            "cpu_seconds": c1 - c0,
        }
    )
    rows.append(
        {
            "step": f"optimise the single book over all {n_segments} segments",
            "seconds": t2 - t1,
            "cpu_seconds": c2 - c1,
        }
    )
    rows.append(
        {
            "step": f"take-up of both scenarios, {n_segments} × {n:,} respondents × {draws} draws",
            "seconds": t3 - t2,
            "cpu_seconds": c3 - c2,
        }
    )
    rows.append(
        {"step": "total (target < 10 s on 2 cores)", "seconds": t3 - t0, "cpu_seconds": c3 - c0}
    )
    return pd.DataFrame(rows)


def recovery(seeds: int = 2, n: int = 600) -> pd.DataFrame:
    from wtp.pipeline import run_study
    from wtp.simulate import ANSWER_PROCESSES, simulate_tier_world

    rows = []
    for process in ANSWER_PROCESSES:
        for seed in range(seeds):
            for setting in dict.fromkeys(
                ["ignore", "exclude" if ANSWER_PROCESSES[process].too_cheap_effect else "ignore"]
            ):
                with tempfile.TemporaryDirectory() as tmp:
                    w = simulate_tier_world(
                        Path(tmp), process=process, n_respondents=n, seed=seed, too_cheap=setting
                    )
                    run = run_study(w.folder, seed=seed, fast=True)
                    j = w.judge(run.price_books).set_index(["scenario", "segment"])
                    m, s = j.loc[("multiple", "total")], j.loc[("single", "total")]
                    rows.append({
                        "world": process, "seed": seed, "too_cheap": setting,
                        "multiple_vs_best": m["ratio"], "single_vs_best": s["ratio"],
                        "uplift_true": m["uplift_true"], "uplift_predicted": m["uplift_predicted"],
                        "uplift_error": m["uplift_predicted"] / m["uplift_true"] - 1,
                        "covered_multiple": bool(m["covered"]), "covered_single": bool(s["covered"]),
                        "covered_segments": float(j.loc["multiple"].drop("total")["covered"].mean()),
                    })  # fmt: skip
    return pd.DataFrame(rows)


def coverage(seeds: int = 8, n: int = 600) -> pd.DataFrame:
    from wtp.pipeline import run_study
    from wtp.simulate import ANSWER_PROCESSES, simulate_tier_world

    rows = []
    for process in ANSWER_PROCESSES:
        setting = "exclude" if ANSWER_PROCESSES[process].too_cheap_effect else "ignore"
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as tmp:
                w = simulate_tier_world(
                    Path(tmp), process=process, n_respondents=n, seed=seed, too_cheap=setting
                )
                run = run_study(w.folder, seed=seed, fast=True)
                rows.append(w.judge(run.price_books, best=False).assign(world=process, seed=seed))
    j = pd.concat(rows, ignore_index=True)
    j["error"] = j["predicted"] / j["true_revenue"] - 1
    j["uplift_error"] = j["uplift_predicted"] / j["uplift_true"] - 1
    out = []
    for world, g in j.groupby("world", sort=False):
        tot, seg = g[g["segment"] == "total"], g[g["segment"] != "total"]
        out.append({
            "world": world, "seeds": seeds, "totals_covered": tot["covered"].mean(), "segments_covered": seg["covered"].mean(),
            "mean_error_totals": tot["error"].mean(), "worst_uplift_error": tot["uplift_error"].abs().max(),
        })  # fmt: skip
    tot, seg = j[j["segment"] == "total"], j[j["segment"] != "total"]
    out.append({
        "world": "all", "seeds": seeds, "totals_covered": tot["covered"].mean(), "segments_covered": seg["covered"].mean(),
        "mean_error_totals": tot["error"].mean(), "worst_uplift_error": tot["uplift_error"].abs().max(),
    })  # fmt: skip
    return pd.DataFrame(out)


def exhaustive(seeds: int = 1, n: int = 600, single: bool = True) -> pd.DataFrame:
    import wtp.pricing.build as build
    import wtp.pricing.scenarios as scenarios
    from wtp.pipeline import run_study
    from wtp.pricing.optimiser import brute_force
    from wtp.simulate import ANSWER_PROCESSES, simulate_tier_world

    searched, book = [], []
    search, price_book = scenarios.optimise_ladder, build.price_book

    def named(scenario, name, *args, **kw):  # which book the next search prices
        book[:] = [scenario, name]
        return price_book(scenario, name, *args, **kw)

    def recorded(agents, grid, **kw):  # keep what each book's search saw, to search it again
        found = search(agents, grid, **kw)
        searched.append((*book, agents, grid, kw.get("min_step", 1.15), found))
        return found

    rows = []
    build.price_book, scenarios.optimise_ladder = named, recorded
    try:
        for process in ANSWER_PROCESSES:
            for seed in range(seeds):
                searched.clear()
                with tempfile.TemporaryDirectory() as tmp:
                    w = simulate_tier_world(Path(tmp), process=process, n_respondents=n, seed=seed)
                    run_study(w.folder, seed=seed, fast=True)
                for scenario, name, agents, grid, min_step, found in searched:
                    if scenario == "single" and not single:
                        continue
                    t0 = time.perf_counter()
                    best = brute_force(agents, grid, min_step=min_step)
                    rows.append({
                        "world": process, "seed": seed, "book": name, "tiers": agents.values.shape[1],
                        "agents": len(agents.weights), "lattice": len(grid), "ladders_searched": found.n_evaluated,
                        "ladders_all": best.n_evaluated, "gap": 1 - found.revenue / best.revenue,
                        "exhaustive_s": time.perf_counter() - t0,
                    })  # fmt: skip
                    print(rows[-1], flush=True)
    finally:
        build.price_book, scenarios.optimise_ladder = price_book, search
    return pd.DataFrame(rows)


def add_ons(seeds: int = 2, n: int = 600) -> pd.DataFrame:
    from wtp.pipeline import run_study
    from wtp.simulate import ANSWER_PROCESSES, simulate_tier_world

    rows = []
    for process in ANSWER_PROCESSES:
        for seed in range(1, seeds + 1):
            with tempfile.TemporaryDirectory() as tmp:
                w = simulate_tier_world(Path(tmp), process=process, n_respondents=n, seed=seed)
                base = (w.folder / "study.toml").read_text()
                for pins in ("", 'pins = { sla = "add-on" }\n'):
                    for noise in ("conjoint", "none"):
                        toml = base.replace("[packages]\n", "[packages]\n" + pins)
                        toml = toml.replace("[pricing]\n", f'[pricing]\nadd_on_noise = "{noise}"\n')
                        (w.folder / "study.toml").write_text(toml)
                        run = run_study(w.folder, seed=seed, fast=True)
                        j = w.judge_add_ons(run.price_books)
                        rows.append(
                            j.assign(world=process, seed=seed, pinned=bool(pins), noise=noise)
                        )
    j = pd.concat(rows, ignore_index=True)
    return (
        j.groupby(["noise", "world"], sort=False)["ratio"]
        .agg(["count", "min", "median", "mean"])
        .reset_index()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--coverage-seeds", type=int, default=8)
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--exhaustive", action="store_true")
    parser.add_argument("--exhaustive-seeds", type=int, default=1)
    parser.add_argument("--add-ons", action="store_true")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(speed().to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print("\nwith noise between tiers (a run's shape with a conjoint and Van Westendorp answers):")
    print(speed(noisy=True).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    if hasattr(os, "getloadavg"):
        print(
            f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (seconds = wall clock; cpu_seconds = this process)"
        )
    if not args.speed_only:
        table = recovery(args.seeds)
        print()
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        cover = table[["covered_multiple", "covered_single"]].to_numpy().mean()
        print(
            f"\ncoverage of the 90% total-revenue intervals: {cover:.0%} ({table.shape[0] * 2} intervals); per segment: {table['covered_segments'].mean():.0%}"
        )
        print()
        print(
            coverage(args.coverage_seeds).to_string(index=False, float_format=lambda x: f"{x:.3f}")
        )
    if args.add_ons:
        print()
        print(add_ons(args.seeds).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.exhaustive:
        table = exhaustive(args.exhaustive_seeds)
        print()
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
        print(
            f"\nbooks whose search found the exhaustive best revenue (gap < 1e-9): {(table['gap'] < 1e-9).sum()} of {len(table)}; worst gap {table['gap'].max():.2%}"
        )


if __name__ == "__main__":
    main()
