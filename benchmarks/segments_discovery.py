"""Finding and tracking segments: recovery on simulated worlds, printed as tables.

Run: ``python benchmarks/segments_discovery.py`` (``--quick``: fewer seeds).

* explore: how often the dimension that carries the true differences (company size, or
  industry) ranks first, and how often the 95% intervals of its groups' churn and conversion
  hold the truth (Weibull lifetimes: the churn model's constant-hazard intuition is wrong here).
* trend: how often a one-quarter churn step in one segment is flagged in that quarter and
  segment, and how often any other segment-quarter is flagged (false flags), by step size.
* preference segments: adjusted Rand index of Gaussian-mixture groups of individual utilities
  (true utilities + estimation noise) against the true groups, and the K that BIC picks.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from wtp.explore import explore, prepare_customers
from wtp.preference_segments import preference_segments
from wtp.segments import trend
from wtp.simulate import SegmentSpec, simulate_churn_step, simulate_customer_base, simulate_maxdiff


def explore_table(seeds) -> pd.DataFrame:
    rows = []
    for effect in ("company_size", "industry"):
        first = cover = checks = 0
        t0 = time.perf_counter()
        for seed in seeds:
            sim = simulate_customer_base(seed=seed, effect=effect)
            r = explore(prepare_customers(sim.customers, as_of=sim.as_of))
            first += r.dimensions["dimension"].iloc[0] == effect
            lab = r.assignments[effect].to_numpy()
            tr = r.base.customers["trialer"].to_numpy()
            for _, g in r.groups[r.groups["dimension"] == effect].iterrows():
                m = lab == g["group"]
                conv = sim.truth["conversion_prob"].to_numpy()[m & tr].mean()
                churn = 1 - sim.true_survival(r.horizon, m) ** (1 / r.horizon)
                cover += g["conversion_lower"] <= conv <= g["conversion_upper"]
                cover += g["churn_rate_lower"] <= churn <= g["churn_rate_upper"]
                checks += 2
        rows.append(
            {
                "true dimension": effect,
                "seeds": len(seeds),
                "ranked first": first,
                "interval coverage": cover / checks,
                "s per run": (time.perf_counter() - t0) / len(seeds),
            }
        )
    return pd.DataFrame(rows)


def trend_table(seeds) -> pd.DataFrame:
    rows = []
    for factor in (1.5, 2.0, 2.5):
        hit = other = tests = false = 0
        for seed in seeds:
            sim = simulate_churn_step(seed=seed, factor=factor)
            tr = trend(sim.customers, every="quarter", as_of=sim.as_of)
            f = tr.flags
            target = (f["segment"] == sim.step_segment) & (
                f["period_start"] == str(sim.step_quarter.date())
            )
            hit += bool(target.any())
            other += bool((~target).any())
            false += int((~target).sum())
            tests += int(tr.table["p_value"].notna().sum())
        rows.append(
            {
                "churn step": f"×{factor}",
                "seeds": len(seeds),
                "step flagged": hit,
                "seeds with a false flag": other,
                "false flags / tests": f"{false} / {tests}",
            }
        )
    return pd.DataFrame(rows)


GROUPS = [
    SegmentSpec(
        "Security",
        1 / 3,
        50.0,
        item_shift={"sso": 1.5, "audit_log": 1.5, "sla": 1.2, "ai_insights": -1.0},
    ),
    SegmentSpec(
        "Growth",
        1 / 3,
        50.0,
        item_shift={"ai_insights": 1.5, "integrations": 1.3, "dashboards": 1.0, "sso": -1.0},
    ),
    SegmentSpec(
        "Ops",
        1 / 3,
        50.0,
        item_shift={"exports": 1.5, "api": 1.3, "sandbox": 1.0, "audit_log": -1.0},
    ),
]


def preference_table(seeds) -> pd.DataFrame:
    from sklearn.metrics import adjusted_rand_score

    rows = []
    for het, noise in ((0.5, 0.3), (0.5, 0.5), (0.6, 0.6), (0.8, 0.5), (0.8, 0.7)):
        aris, ks = [], []
        for seed in seeds:
            md = simulate_maxdiff(300, n_items=12, segments=GROUPS, heterogeneity=het, seed=seed)
            ind = md.individual_utilities.copy()
            ind["utility"] += noise * np.random.default_rng(seed + 100).standard_normal(len(ind))
            p = preference_segments(
                ind, "auto", per_task=md.per_task, rng=np.random.default_rng(seed)
            )
            truth = md.respondents.set_index("respondent_id")["segment"].reindex(
                p.respondents["respondent_id"]
            )
            aris.append(adjusted_rand_score(truth, p.respondents["segment"]))
            ks.append(p.k)
        rows.append(
            {
                "heterogeneity": het,
                "estimation noise": noise,
                "ARI min": min(aris),
                "ARI mean": float(np.mean(aris)),
                "K = 3 found": f"{sum(k == 3 for k in ks)}/{len(ks)}",
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    quick = "--quick" in sys.argv
    seeds = range(3 if quick else 10)
    with pd.option_context("display.width", 140, "display.float_format", "{:.3f}".format):
        print(
            "explore: the true dimension and its groups\n",
            explore_table(seeds).to_string(index=False),
            "\n",
        )
        print(
            "trend: a one-quarter churn step in one of three segments (1,500 customers each, 12 quarters)\n",
            trend_table(seeds).to_string(index=False),
            "\n",
        )
        print(
            "preference segments: 3 true groups, 300 respondents, 12 items\n",
            preference_table(range(3 if quick else 5)).to_string(index=False),
        )


if __name__ == "__main__":
    main()
