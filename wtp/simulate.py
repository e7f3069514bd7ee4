"""Synthetic pricing studies with known truth, for tests, the demo study and benchmarks.

The world is a set of customer segments. Each respondent has

* a reservation price ``R`` (lognormal within the segment) and a purchase propensity ``pi``;
  the probability of buying at price ``p`` is ``pi * Phi((log R - log p) / tau)``, so the true
  demand and revenue curves of a segment, and its revenue-optimal price, are known;
* Van Westendorp answers around ``R`` (rounded like people round, a share of them out of order)
  and Newton–Miller–Smith purchase likelihoods on a 1–5 scale at their own cheap and expensive
  prices;
* MaxDiff item utilities drawn around the segment's mean utilities;
* conjoint part-worths and a (negative) price coefficient drawn around the segment's means, and a
  constant for the no-choice option;
* and the segment's customers churn at a known constant monthly hazard.

Every function takes a seed or a ``numpy.random.Generator`` and returns both the data (in the
contract's file layouts) and the truth it was generated from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr

# the truth uses the very share formula the estimators report (contract §3)
from wtp.maxdiff import probability_shares
from wtp.schema import ALL

NMS_CALIBRATION = {5: 0.7, 4: 0.5, 3: 0.3, 2: 0.1, 1: 0.0}


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------
# The world


@dataclass(frozen=True)
class SegmentSpec:
    """One customer segment of a simulated world."""

    name: str
    share: float  # share of survey respondents
    median_wtp: float  # median reservation price per account per period
    wtp_sigma: float = 0.35  # lognormal spread of reservation prices
    propensity: float = 0.6  # mean purchase propensity at an acceptable price
    customers: int = 1000
    arpa: float | None = None  # defaults to about the median WTP
    churn_rate: float = 0.03  # true monthly hazard
    cac: float = 500.0
    trials: int = 2000
    conversion_rate: float = 0.2
    gross_margin: float = 0.8
    market_size: int = 10000
    market_growth: float = 0.1
    item_shift: dict[str, float] = field(default_factory=dict)  # MaxDiff utility shifts
    partworth_shift: dict[str, float] = field(default_factory=dict)  # "attr=level" → shift
    price_sensitivity: float = 1.0  # multiplies the price coefficient

    @property
    def today_arpa(self) -> float:
        """Today's ARPA: ``arpa``, else about 0.9 × the median WTP."""
        return self.arpa if self.arpa is not None else round(self.median_wtp * 0.9, 2)


DEMO_SEGMENTS = (
    SegmentSpec(
        "Startups",
        0.30,
        39.0,
        0.40,
        0.55,
        customers=1800,
        churn_rate=0.045,
        cac=180.0,
        trials=9000,
        conversion_rate=0.14,
        gross_margin=0.82,
        market_size=60000,
        market_growth=0.22,
        item_shift={
            "ai_insights": 0.8,
            "integrations": 0.6,
            "sso": -1.0,
            "audit_log": -1.0,
            "sla": -0.8,
        },
        partworth_shift={"Support=Phone 24/7": -0.4},
        price_sensitivity=1.7,
    ),
    SegmentSpec(
        "SMB",
        0.30,
        79.0,
        0.35,
        0.60,
        customers=2400,
        churn_rate=0.03,
        cac=420.0,
        trials=7000,
        conversion_rate=0.19,
        gross_margin=0.80,
        market_size=35000,
        market_growth=0.12,
        item_shift={"exports": 0.5, "dashboards": 0.4, "mobile_app": 0.3},
        price_sensitivity=1.0,
    ),
    SegmentSpec(
        "Mid-market",
        0.25,
        149.0,
        0.32,
        0.62,
        customers=900,
        churn_rate=0.018,
        cac=1500.0,
        trials=2200,
        conversion_rate=0.24,
        gross_margin=0.78,
        market_size=9000,
        market_growth=0.09,
        item_shift={"sso": 0.9, "custom_roles": 0.7, "api": 0.5, "sandbox": 0.3},
        partworth_shift={"SSO=Included": 0.5},
        price_sensitivity=0.6,
    ),
    SegmentSpec(
        "Enterprise",
        0.15,
        299.0,
        0.30,
        0.65,
        customers=220,
        churn_rate=0.008,
        cac=9000.0,
        trials=400,
        conversion_rate=0.30,
        gross_margin=0.75,
        market_size=2500,
        market_growth=0.05,
        item_shift={
            "sso": 1.6,
            "audit_log": 1.4,
            "sla": 1.3,
            "custom_roles": 0.8,
            "ai_insights": -0.5,
        },
        partworth_shift={"SSO=Included": 1.0, "Support=Phone 24/7": 0.8},
        price_sensitivity=0.35,
    ),
)

DEMO_ITEMS = {
    "sso": "Single sign-on (SAML)",
    "audit_log": "Audit log",
    "sla": "99.9% uptime SLA",
    "custom_roles": "Custom roles and permissions",
    "api": "Full API access",
    "integrations": "Slack, HubSpot and Salesforce integrations",
    "dashboards": "Custom dashboards",
    "exports": "Scheduled exports",
    "ai_insights": "AI insights",
    "mobile_app": "Mobile app",
    "sandbox": "Sandbox workspace",
    "white_label": "White-label reports",
    "priority_support": "Priority support",
    "data_retention": "Unlimited data history",
}
# population mean utilities (before segment shifts)
DEMO_ITEM_MEANS = {
    "sso": 0.2,
    "audit_log": -0.2,
    "sla": 0.1,
    "custom_roles": 0.0,
    "api": 0.6,
    "integrations": 1.1,
    "dashboards": 0.9,
    "exports": 0.4,
    "ai_insights": 0.5,
    "mobile_app": -0.6,
    "sandbox": -0.9,
    "white_label": -1.2,
    "priority_support": 0.3,
    "data_retention": -0.1,
}

DEMO_ATTRIBUTES = {
    "Support": ["Email", "Chat", "Phone 24/7"],
    "SSO": ["Not included", "Included"],
    "Users": ["5 users", "25 users", "Unlimited"],
    "History": ["90 days", "1 year", "Unlimited"],
}
# part-worths per attribute level (first level 0), in utility per choice
DEMO_PARTWORTHS = {
    "Support=Chat": 0.45,
    "Support=Phone 24/7": 0.8,
    "SSO=Included": 0.5,
    "Users=25 users": 0.7,
    "Users=Unlimited": 1.2,
    "History=1 year": 0.35,
    "History=Unlimited": 0.55,
}


def _segment_names(segments) -> list[SegmentSpec]:
    if segments is None:
        return list(DEMO_SEGMENTS)
    if isinstance(segments, int):
        return (
            list(DEMO_SEGMENTS[:segments])
            if segments <= len(DEMO_SEGMENTS)
            else [
                SegmentSpec(f"Segment {i + 1}", 1 / segments, 50.0 * (1 + i))
                for i in range(segments)
            ]
        )
    return list(segments)


def _assign_segments(n: int, specs: list[SegmentSpec], rng: np.random.Generator) -> np.ndarray:
    shares = np.array([s.share for s in specs], dtype=float)
    shares /= shares.sum()
    counts = np.floor(shares * n).astype(int)
    counts[: n - counts.sum()] += 1
    labels = np.repeat(np.arange(len(specs)), counts)
    return rng.permutation(labels)


def _ids(n: int, prefix: str = "R") -> np.ndarray:
    width = max(4, len(str(n)))
    return np.array([f"{prefix}{i + 1:0{width}d}" for i in range(n)], dtype=object)


# --------------------------------------------------------------------------------------------
# Van Westendorp


@dataclass(frozen=True)
class SimulatedVW:
    """Van Westendorp answers with the true demand behind them."""

    answers: pd.DataFrame  # respondent_id, segment, too_cheap, cheap, expensive, too_expensive, buy_cheap, buy_expensive
    respondents: pd.DataFrame  # respondent_id, segment, reservation_price, propensity, inconsistent
    demand: pd.DataFrame  # segment, price, purchase_probability, revenue (population truth)
    optimal_prices: pd.DataFrame  # segment, revenue_optimal_price, demand_at_optimum
    tau: float


QUALITY_RATIO = 0.55  # median price below which a respondent starts to doubt quality, relative to R


def _quadrature(n: int):
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / w.sum()


def true_demand(
    median_wtp: float,
    wtp_sigma: float,
    propensity: float,
    prices: np.ndarray,
    tau: float,
    quality_sigma: float = 0.1,
) -> np.ndarray:
    """Population purchase probability at each price.

    A respondent with reservation price R and quality threshold L buys at price p with
    probability pi · Phi((log R − log p)/tau) · Phi((log p − log L)/tau): too expensive above R,
    too cheap to trust below L (the premise of Van Westendorp's "too cheap" question). The
    population curve integrates log R ~ N(log m, s²) and log(L/R) ~ N(log 0.55, q²) by
    Gauss–Hermite quadrature.
    """
    prices = np.asarray(prices, dtype=float)
    zr, wr = _quadrature(60)
    zq, wq = _quadrature(20)
    log_r = np.log(median_wtp) + wtp_sigma * zr[:, None, None]
    log_l = log_r + np.log(QUALITY_RATIO) + quality_sigma * zq[None, :, None]
    lp = np.log(prices)[None, None, :]
    q = ndtr((log_r - lp) / tau) * ndtr((lp - log_l) / tau)
    return propensity * np.einsum("i,j,ijk->k", wr, wq, q)


def true_revenue_optimum(spec: SegmentSpec, tau: float) -> tuple[float, float]:
    """Revenue-optimal price and the purchase probability there, found on a fine grid."""
    grid = np.exp(np.linspace(np.log(spec.median_wtp) - 2, np.log(spec.median_wtp) + 1.5, 3501))
    d = true_demand(spec.median_wtp, spec.wtp_sigma, spec.propensity, grid, tau)
    i = int(np.argmax(grid * d))
    return float(grid[i]), float(d[i])


def _round_prices(x: np.ndarray, median: float, rng: np.random.Generator) -> np.ndarray:
    """Round like people do: to 1, 5 or 10 units depending on the price level, some to x9."""
    step = np.where(median < 60, 1.0, np.where(median < 200, 5.0, 10.0))
    r = np.round(x / step) * step
    charm = rng.random(x.shape) < 0.3
    r = np.where(charm & (r > step), r - 1, r)
    return np.maximum(r, 0.0)


def _misread(answers: np.ndarray, share: float, rng: np.random.Generator) -> None:
    """People who misread a question swap two neighbouring answers (in place)."""
    bad = rng.random(len(answers)) < share
    if bad.any():
        j = rng.integers(0, 3, size=bad.sum())
        rows = np.flatnonzero(bad)
        a = answers[rows, j].copy()
        answers[rows, j] = answers[rows, j + 1]
        answers[rows, j + 1] = a


def simulate_vw(
    n_respondents: int = 1000,
    segments=None,
    *,
    inconsistent_share: float = 0.04,
    tau: float = 0.12,
    nms: bool = True,
    round_prices: bool = True,
    seed: int | np.random.Generator | None = 0,
    respondent_ids: np.ndarray | None = None,
    segment_index: np.ndarray | None = None,
) -> SimulatedVW:
    """Simulate Van Westendorp (and NMS) answers from lognormal reservation prices.

    A respondent buys at price p with probability pi · Phi((log R − log p)/tau) ·
    Phi((log p − log L)/tau) (see :func:`true_demand`). Answers sit where that probability has a
    recognisable level: too cheap ≈ L·e^(−2 tau), cheap ≈ L·e^(2 tau), expensive ≈ R·e^(−1.2 tau),
    too expensive ≈ R·e^(2 tau), with answer noise and rounding. Purchase likelihood at the own
    cheap and expensive price is the true probability (plus noise) mapped to the nearest level of
    the standard NMS calibration (5→0.7 … 1→0).
    """
    rng = _rng(seed)
    specs = _segment_names(segments)
    seg = _assign_segments(n_respondents, specs, rng) if segment_index is None else segment_index
    n = len(seg)
    med = np.array([s.median_wtp for s in specs])[seg]
    sig = np.array([s.wtp_sigma for s in specs])[seg]
    prop = np.array([s.propensity for s in specs])[seg]
    R = med * np.exp(sig * rng.standard_normal(n))
    L = QUALITY_RATIO * R * np.exp(0.1 * rng.standard_normal(n))
    pi = np.clip(rng.beta(8 * prop, 8 * (1 - prop)), 0.02, 0.98)
    # each answer sits where the respondent's own purchase probability has a recognisable level
    centre = np.column_stack(
        [L * np.exp(-2 * tau), L * np.exp(2 * tau), R * np.exp(-1.2 * tau), R * np.exp(2 * tau)]
    )
    answers = np.sort(centre * np.exp(0.04 * rng.standard_normal((n, 4))), axis=1)
    if round_prices:
        answers = _round_prices(answers, med[:, None], rng)
        answers = np.sort(answers, axis=1)
    _misread(answers, inconsistent_share, rng)
    ids = _ids(n) if respondent_ids is None else np.asarray(respondent_ids, dtype=object)
    frame = pd.DataFrame(
        {
            "respondent_id": ids,
            "segment": [specs[i].name for i in seg],
            "too_cheap": answers[:, 0],
            "cheap": answers[:, 1],
            "expensive": answers[:, 2],
            "too_expensive": answers[:, 3],
        }
    )
    if nms:
        levels = np.array(sorted(NMS_CALIBRATION))
        probs = np.array([NMS_CALIBRATION[k] for k in levels])

        def stated(price):
            lp = np.log(np.maximum(price, 1e-9))
            q = pi * ndtr((np.log(R) - lp) / tau) * ndtr((lp - np.log(L)) / tau)
            q = np.clip(q + 0.05 * rng.standard_normal(n), 0, 1)
            return levels[np.argmin(np.abs(q[:, None] - probs[None, :]), axis=1)]

        frame["buy_cheap"] = stated(answers[:, 1])
        frame["buy_expensive"] = stated(answers[:, 2])
    truth_rows, opt_rows = [], []
    for s in specs:
        grid = np.linspace(0.2 * s.median_wtp, 3 * s.median_wtp, 400)
        d = true_demand(s.median_wtp, s.wtp_sigma, s.propensity, grid, tau)
        truth_rows.append(
            pd.DataFrame(
                {"segment": s.name, "price": grid, "purchase_probability": d, "revenue": grid * d}
            )
        )
        p_opt, d_opt = true_revenue_optimum(s, tau)
        opt_rows.append(
            {"segment": s.name, "revenue_optimal_price": p_opt, "demand_at_optimum": d_opt}
        )
    people = pd.DataFrame(
        {
            "respondent_id": ids,
            "segment": frame["segment"],
            "reservation_price": R,
            "propensity": pi,
            "inconsistent": ~(np.diff(answers, axis=1) >= 0).all(axis=1),
        }
    )
    return SimulatedVW(
        frame, people, pd.concat(truth_rows, ignore_index=True), pd.DataFrame(opt_rows), tau
    )


# --------------------------------------------------------------------------------------------
# MaxDiff


@dataclass(frozen=True)
class SimulatedMaxDiff:
    """MaxDiff answers with the utilities behind them."""

    answers: pd.DataFrame  # long layout: respondent_id, task, item, best, worst, segment
    design: pd.DataFrame  # version, task, position, item
    respondents: pd.DataFrame  # respondent_id, segment, version
    individual_utilities: pd.DataFrame  # respondent_id, segment, item, utility (zero-centred)
    segment_means: pd.DataFrame  # segment, item, utility (zero-centred)
    segment_shares: (
        pd.DataFrame
    )  # segment, item, share (0–100, mean of individual shares; includes 'all')
    items: list[str]
    labels: dict[str, str]
    per_task: int


def simulate_maxdiff(
    n_respondents: int = 300,
    n_items: int = 12,
    per_task: int = 4,
    n_tasks: int = 10,
    n_versions: int = 10,
    segments=3,
    *,
    heterogeneity: float = 0.8,
    seed: int | np.random.Generator | None = 0,
    design: pd.DataFrame | None = None,
    respondent_ids: np.ndarray | None = None,
    segment_index: np.ndarray | None = None,
    utilities: np.ndarray | None = None,
) -> SimulatedMaxDiff:
    """Simulate best-worst answers from individual utilities on a balanced design.

    Individual utilities are the segment mean plus N(0, heterogeneity²) noise (or ``utilities``,
    respondents × items, from a world with its own truth); a respondent picks
    best = argmax(u + Gumbel) and worst = argmin(u − Gumbel) among the remaining items (the
    sequential best-worst model that the estimators assume).
    """
    rng = _rng(seed)
    specs = _segment_names(segments)
    codes = (
        list(DEMO_ITEMS)[:n_items]
        if n_items <= len(DEMO_ITEMS)
        else [f"item{i + 1:02d}" for i in range(n_items)]
    )
    labels = {c: DEMO_ITEMS.get(c, c) for c in codes}
    if design is None:
        from wtp.maxdiff import design_maxdiff

        design = design_maxdiff(n_items, per_task, n_tasks, n_versions, items=codes, rng=rng)
    design = design.copy()
    design["item"] = design["item"].astype(str)
    seg = _assign_segments(n_respondents, specs, rng) if segment_index is None else segment_index
    n = len(seg)
    base = np.array([DEMO_ITEM_MEANS.get(c, rng.normal(0, 0.8)) for c in codes])
    means = np.array(
        [
            [base[j] + getattr(s, "item_shift", {}).get(c, 0.0) for j, c in enumerate(codes)]
            for s in specs
        ]
    )
    means -= means.mean(axis=1, keepdims=True)
    U = means[seg] + heterogeneity * rng.standard_normal((n, len(codes)))
    if utilities is not None:
        # utilities given by a world with its own truth (respondents × items)
        U = np.asarray(utilities, dtype=float).copy()
    U -= U.mean(axis=1, keepdims=True)
    ids = _ids(n) if respondent_ids is None else np.asarray(respondent_ids, dtype=object)
    versions = design["version"].unique()
    version_of = versions[np.arange(n) % len(versions)]
    # respondents × tasks × positions item index array, vectorised choices
    design = design.sort_values(["version", "task", "position"])
    item_index = {c: j for j, c in enumerate(codes)}
    d_items = design["item"].map(item_index).to_numpy()
    tasks_per_version = design.groupby("version")["task"].nunique().iloc[0]
    k = int(design.groupby(["version", "task"]).size().mode().iloc[0])
    shown = d_items.reshape(len(versions), tasks_per_version, k)
    vpos = {v: i for i, v in enumerate(versions)}
    S = shown[[vpos[v] for v in version_of]]  # n × T × k
    u_shown = np.take_along_axis(U[:, None, :].repeat(tasks_per_version, axis=1), S, axis=2)
    g1 = rng.gumbel(size=u_shown.shape)
    best_pos = np.argmax(u_shown + g1, axis=2)
    g2 = rng.gumbel(size=u_shown.shape)
    worst_score = -u_shown + g2
    np.put_along_axis(worst_score, best_pos[..., None], -np.inf, axis=2)
    worst_pos = np.argmax(worst_score, axis=2)
    task_labels = np.sort(design["task"].unique())
    rows = pd.DataFrame(
        {
            "respondent_id": np.repeat(ids, tasks_per_version * k),
            "task": np.tile(np.repeat(task_labels[:tasks_per_version], k), n),
            "item": np.array(codes, dtype=object)[S.reshape(-1)],
            "best": (np.arange(k)[None, None, :] == best_pos[..., None]).astype(int).reshape(-1),
            "worst": (np.arange(k)[None, None, :] == worst_pos[..., None]).astype(int).reshape(-1),
            "segment": np.repeat(
                np.array([s.name for s in specs], dtype=object)[seg], tasks_per_version * k
            ),
        }
    )
    ind = pd.DataFrame(
        {
            "respondent_id": np.repeat(ids, len(codes)),
            "segment": np.repeat(np.array([s.name for s in specs], dtype=object)[seg], len(codes)),
            "item": np.tile(codes, n),
            "utility": U.reshape(-1),
        }
    )
    seg_means = pd.DataFrame(
        [
            {"segment": s.name, "item": c, "utility": means[i, j]}
            for i, s in enumerate(specs)
            for j, c in enumerate(codes)
        ]
    )
    shares = probability_shares(U, k)
    sh = pd.DataFrame(shares, columns=codes)
    sh["segment"] = [specs[i].name for i in seg]
    seg_shares = (
        sh.groupby("segment", sort=False)
        .mean()
        .reset_index()
        .melt("segment", var_name="item", value_name="share")
    )
    all_shares = pd.DataFrame({"segment": ALL, "item": codes, "share": shares.mean(axis=0)})
    people = pd.DataFrame(
        {"respondent_id": ids, "segment": [specs[i].name for i in seg], "version": version_of}
    )
    return SimulatedMaxDiff(
        rows,
        design.reset_index(drop=True),
        people,
        ind,
        seg_means,
        pd.concat([seg_shares, all_shares], ignore_index=True),
        codes,
        labels,
        k,
    )


# --------------------------------------------------------------------------------------------
# Conjoint


@dataclass(frozen=True)
class SimulatedConjoint:
    """Choice-based conjoint answers with the part-worths behind them."""

    answers: pd.DataFrame  # respondent_id, task, alt, <attributes>, price, none, chosen, segment
    design: pd.DataFrame
    attributes: dict[str, list[str]]
    prices: list[float]
    partworths: (
        pd.DataFrame
    )  # segment, attribute, level, utility (population means; includes 'all')
    wtp: pd.DataFrame  # segment, attribute, level, wtp
    individual_betas: pd.DataFrame  # respondent_id, segment, parameter, value
    none_utility: float


def simulate_conjoint(
    n_respondents: int = 500,
    n_tasks: int = 12,
    n_alts: int = 3,
    none: bool = True,
    segments=3,
    *,
    prices: list[float] | None = None,
    attributes: dict[str, list[str]] | None = None,
    heterogeneity: float = 0.4,
    seed: int | np.random.Generator | None = 0,
    design: pd.DataFrame | None = None,
    respondent_ids: np.ndarray | None = None,
    segment_index: np.ndarray | None = None,
    numeric: dict[str, float] | None = None,
    unit_spread: float = 0.5,
) -> SimulatedConjoint:
    """Simulate choice-based conjoint answers with heterogeneous part-worths and a none option.

    Individual part-worths are the segment means plus N(0, heterogeneity²); the price
    coefficient is ``-exp(N(log b_s, 0.15²))`` so it is negative for everyone; the no-choice
    alternative has a constant utility. Choices maximise utility plus Gumbel noise.

    ``numeric`` maps attributes whose levels are numbers (seats, GB) to their mean utility per
    unit; each respondent's is that times a lognormal factor (sd ``unit_spread`` on the log
    scale, mean 1) — skewed, not the normal heterogeneity an HB model assumes. Their true money
    value per unit appears in ``wtp`` as ``level = per_unit``.
    """
    rng = _rng(seed)
    specs = _segment_names(segments)
    attributes = {k: list(v) for k, v in (attributes or DEMO_ATTRIBUTES).items()}
    median = float(np.median([s.median_wtp for s in specs]))
    if prices is None:
        prices = [round(median * f) for f in (0.5, 0.75, 1.0, 1.25, 1.5)]
    prices = [float(p) for p in prices]
    if design is None:
        from wtp.conjoint import design_conjoint

        design = design_conjoint(
            attributes, prices, n_tasks=n_tasks, n_alts=n_alts, n_versions=10, none=False, rng=rng
        )
    design = design.copy()
    if "none" in design.columns:
        design = design[design["none"].fillna(0).astype(int) == 0].drop(columns="none")
    seg = _assign_segments(n_respondents, specs, rng) if segment_index is None else segment_index
    n = len(seg)
    numeric = dict(numeric or {})
    params = [
        a if a in numeric else f"{a}={lv}"
        for a, levels in attributes.items()
        for lv in (levels[:1] if a in numeric else levels[1:])
    ]
    # price coefficient scaled so that a level worth ~0.5 utils is worth ~10–20% of the median price
    base_price_coef = 2.5 / median
    mean_betas = np.array(
        [
            [
                numeric[p]
                if p in numeric
                else DEMO_PARTWORTHS.get(p, rng.normal(0.4, 0.3)) + s.partworth_shift.get(p, 0.0)
                for p in params
            ]
            for s in specs
        ]
    )
    price_means = np.array([base_price_coef * s.price_sensitivity for s in specs])
    B = mean_betas[seg] + heterogeneity * rng.standard_normal((n, len(params)))
    for j, p in enumerate(params):
        if p in numeric:
            B[:, j] = mean_betas[seg, j] * np.exp(
                unit_spread * rng.standard_normal(n) - unit_spread**2 / 2
            )
    bp = -price_means[seg] * np.exp(0.15 * rng.standard_normal(n) - 0.5 * 0.15**2)
    none_utility = float(
        -base_price_coef * median * 0.4 + 0.5
    )  # a typical product is chosen over none ~2:1
    ids = _ids(n) if respondent_ids is None else np.asarray(respondent_ids, dtype=object)
    versions = design["version"].unique()
    version_of = versions[np.arange(n) % len(versions)]
    design = design.sort_values(["version", "task", "alt"])
    X_rows = np.zeros((len(design), len(params)))
    for j, p in enumerate(params):
        if p in numeric:
            X_rows[:, j] = design[p].astype(float).to_numpy()
            continue
        a, lv = p.split("=", 1)
        X_rows[:, j] = (design[a].astype(str).to_numpy() == lv).astype(float)
    price_rows = design["price"].to_numpy(dtype=float)
    T = design.groupby("version")["task"].nunique().iloc[0]
    A = design.groupby(["version", "task"]).size().iloc[0]
    X = X_rows.reshape(len(versions), T, A, len(params))
    P = price_rows.reshape(len(versions), T, A)
    vpos = np.array([list(versions).index(v) for v in version_of])
    util = np.einsum("ntap,np->nta", X[vpos], B) + P[vpos] * bp[:, None, None]
    if none:
        util = np.concatenate([util, np.full((n, T, 1), none_utility)], axis=2)
    choice = np.argmax(util + rng.gumbel(size=util.shape), axis=2)
    n_alt_all = A + (1 if none else 0)
    d_rep = design.reset_index(drop=True)
    blocks = []
    task_labels = np.sort(design["task"].unique())[:T]
    for v_i, v in enumerate(versions):
        who = np.flatnonzero(vpos == v_i)
        if len(who) == 0:
            continue
        block = d_rep[d_rep["version"] == v].drop(columns="version")
        if none:
            nr = pd.DataFrame({"task": task_labels, "alt": A + 1})
            block = pd.concat(
                [block.assign(none=0), nr.assign(none=1)], ignore_index=True
            ).sort_values(["task", "alt"], kind="stable")
        block = block.reset_index(drop=True)
        big = block.loc[np.tile(np.arange(len(block)), len(who))].reset_index(drop=True)
        big.insert(0, "respondent_id", np.repeat(ids[who], len(block)))
        chosen_pos = choice[who].reshape(-1)  # per respondent per task
        alt_pos = np.tile(np.arange(n_alt_all), len(who) * T)
        big["chosen"] = (alt_pos == np.repeat(chosen_pos, n_alt_all)).astype(int)
        big["segment"] = np.repeat(
            np.array([specs[i].name for i in seg], dtype=object)[who], len(block)
        )
        blocks.append(big)
    answers = pd.concat(blocks, ignore_index=True)
    order = {rid: i for i, rid in enumerate(ids)}
    answers = answers.sort_values(
        ["respondent_id", "task", "alt"],
        key=lambda s: s.map(order) if s.name == "respondent_id" else s,
        kind="stable",
    ).reset_index(drop=True)
    if none:
        for a in attributes:
            answers[a] = answers[a].where(answers["none"] == 0, None)
    pw_rows, wtp_rows = [], []
    group_means = {s.name: (mean_betas[i], price_means[i]) for i, s in enumerate(specs)}
    counts = np.bincount(seg, minlength=len(specs))
    group_means[ALL] = (
        (mean_betas * counts[:, None]).sum(0) / counts.sum(),
        float((price_means * counts).sum() / counts.sum()),
    )
    for name, (mb, pm) in group_means.items():
        for a, levels in attributes.items():
            if a in numeric:
                b = mb[params.index(a)]
                pw_rows.append({"segment": name, "attribute": a, "level": "per_unit", "utility": b})
                wtp_rows.append(
                    {"segment": name, "attribute": a, "level": "per_unit", "wtp": b / pm}
                )
                x0 = float(levels[0])
                wtp_rows += [
                    {"segment": name, "attribute": a, "level": lv, "wtp": b * (float(lv) - x0) / pm}
                    for lv in levels
                ]
                continue
            pw_rows.append({"segment": name, "attribute": a, "level": levels[0], "utility": 0.0})
            wtp_rows.append({"segment": name, "attribute": a, "level": levels[0], "wtp": 0.0})
            for lv in levels[1:]:
                b = mb[params.index(f"{a}={lv}")]
                pw_rows.append({"segment": name, "attribute": a, "level": lv, "utility": b})
                wtp_rows.append({"segment": name, "attribute": a, "level": lv, "wtp": b / pm})
        pw_rows.append({"segment": name, "attribute": "price", "level": "per_unit", "utility": -pm})
        if none:
            pw_rows.append(
                {"segment": name, "attribute": "none", "level": "none", "utility": none_utility}
            )
    betas = pd.DataFrame(B, columns=params)
    betas["price"] = bp
    betas.insert(0, "segment", [specs[i].name for i in seg])
    betas.insert(0, "respondent_id", ids)
    betas = betas.melt(["respondent_id", "segment"], var_name="parameter", value_name="value")
    return SimulatedConjoint(
        answers,
        design.reset_index(drop=True),
        attributes,
        prices,
        pd.DataFrame(pw_rows),
        pd.DataFrame(wtp_rows),
        betas,
        none_utility,
    )


# --------------------------------------------------------------------------------------------
# Segments and customers


@dataclass(frozen=True)
class SimulatedCustomers:
    """Customers with known constant monthly churn per segment."""

    customers: pd.DataFrame  # customer_id, segment, start_date, end_date, mrr
    segments: pd.DataFrame  # the segments.csv layout
    churn_rate: dict[str, float]  # true monthly hazard
    arpa: dict[str, float]
    as_of: pd.Timestamp


def simulate_customers(
    segments=None,
    *,
    n_per_segment: int | dict[str, int] | None = None,
    months: int = 36,
    as_of: str = "2026-06-30",
    seed: int | np.random.Generator | None = 0,
) -> SimulatedCustomers:
    """Customers who start uniformly over ``months`` and leave after an exponential lifetime.

    Monthly churn (the hazard of the exponential lifetime, per 30.4375-day month) is each
    segment's ``churn_rate``; ``mrr`` is lognormal around the segment's ARPA.
    """
    rng = _rng(seed)
    specs = _segment_names(segments)
    end = pd.Timestamp(as_of)
    rows = []
    churn, arpa = {}, {}
    day_per_month = 30.4375
    for s in specs:
        n = (
            n_per_segment.get(s.name, s.customers)
            if isinstance(n_per_segment, dict)
            else (n_per_segment or s.customers)
        )
        a = s.today_arpa
        start_days = rng.uniform(0, months * day_per_month, n)
        start = end - pd.to_timedelta(np.floor(start_days), unit="D")
        # a constant monthly hazard h means P(survive one month) = exp(-h·1); churn_rate is that h
        life_days = rng.exponential(day_per_month / s.churn_rate, n)
        stop = start + pd.to_timedelta(np.ceil(life_days), unit="D")
        ended = stop <= end
        rows.append(
            pd.DataFrame(
                {
                    "segment": s.name,
                    "start_date": start.strftime("%Y-%m-%d"),
                    "end_date": np.where(ended, stop.strftime("%Y-%m-%d"), ""),
                    "mrr": np.round(a * np.exp(0.3 * rng.standard_normal(n) - 0.045), 2),
                }
            )
        )
        churn[s.name] = s.churn_rate
        arpa[s.name] = a
    customers = pd.concat(rows, ignore_index=True)
    customers.insert(0, "customer_id", _ids(len(customers), "C"))
    return SimulatedCustomers(customers, simulate_segments(specs), churn, arpa, end)


def simulate_segments(segments=None) -> pd.DataFrame:
    """The segments.csv layout for a set of segment specs (no randomness: these are the truth)."""
    specs = _segment_names(segments)
    return pd.DataFrame(
        {
            "segment": [s.name for s in specs],
            "customers": [s.customers for s in specs],
            "arpa": [s.today_arpa for s in specs],
            # the contract's churn_rate is the share lost per period: 1 − e^(−hazard), to
            # four places as a customer file would give it
            "churn_rate": [round(float(-np.expm1(-s.churn_rate)), 4) for s in specs],
            "cac": [s.cac for s in specs],
            "trials": [s.trials for s in specs],
            "conversions": [round(s.trials * s.conversion_rate) for s in specs],
            "gross_margin": [s.gross_margin for s in specs],
            "market_size": [s.market_size for s in specs],
            "market_growth": [s.market_growth for s in specs],
        }
    )


# --------------------------------------------------------------------------------------------
# Customer bases for exploring segments and tracking them


@dataclass(frozen=True)
class SimulatedCustomerBase:
    """Trialers and customers with profile columns; performance differs on one dimension only.

    ``truth`` holds, per row of ``customers``, the conversion probability and the Weibull
    lifetime (``scale`` in months, ``shape``) that generated the row, so the truth of any
    grouping is known: a group's conversion is the mean of its trialers' probabilities, its
    survival at t the mean of its customers' exp(−(t/scale)^shape).
    """

    customers: pd.DataFrame  # customers.csv with trial_start, converted and profile columns
    truth: pd.DataFrame  # customer_id, conversion_prob, scale, shape, paying
    as_of: pd.Timestamp
    effect: str  # the dimension that carries the differences

    def true_survival(self, t: float, mask: np.ndarray | None = None) -> float:
        """Survival at t months of the paying customers (in ``mask``), from their lifetimes."""
        tr = self.truth if mask is None else self.truth[mask]
        tr = tr[tr["paying"]]
        return float(np.mean(np.exp(-((t / tr["scale"].to_numpy()) ** tr["shape"].to_numpy()))))


INDUSTRIES = ("Software", "Retail", "Finance", "Health", "Education", "Manufacturing")
COUNTRIES = ("US", "UK", "DE", "AU")


def simulate_customer_base(
    n_trials: int = 4000,
    *,
    effect: str = "company_size",
    months: int = 36,
    as_of: str = "2026-06-30",
    shape: float = 0.8,
    strength: float = 1.0,
    seed: int | np.random.Generator | None = 0,
) -> SimulatedCustomerBase:
    """Trialers over ``months`` before ``as_of``; conversion, churn and ARPA depend on one column.

    Profile columns: ``company_size`` (employees, lognormal), ``industry``, ``country``,
    ``plan`` and ``adoption`` (share of seats active, 0–1). Only ``effect`` (``company_size``
    or ``industry``) moves performance; the others are independent noise. With z the effect
    (log-size standardised, or a fixed value per industry) and ``strength`` its scale:

    * conversion probability = logistic(−1.3 + 0.5·z·strength);
    * lifetime Weibull with ``shape`` (0.8: a falling hazard, unlike the constant hazard of
      churn = churned / exposure) and scale 30·exp(0.45·z·strength) months;
    * mrr lognormal around 60·exp(0.5·z·strength).
    """
    rng = _rng(seed)
    end = pd.Timestamp(as_of)
    day = 30.4375
    n = int(n_trials)
    employees = np.maximum(1, np.round(np.exp(np.log(40) + 1.3 * rng.standard_normal(n)))).astype(
        int
    )
    industry = rng.choice(INDUSTRIES, size=n, p=[0.25, 0.2, 0.15, 0.15, 0.1, 0.15])
    country = rng.choice(COUNTRIES, size=n, p=[0.4, 0.25, 0.2, 0.15])
    plan = rng.choice(["Starter", "Pro", "Business"], size=n, p=[0.45, 0.35, 0.2])
    adoption = np.round(rng.beta(2.0, 2.0, size=n), 3)
    if effect == "company_size":
        z = (np.log(employees) - np.log(40)) / 1.3
    elif effect == "industry":
        level = dict(zip(INDUSTRIES, (1.0, -1.0, 0.8, 0.0, -0.8, 0.3), strict=True))
        z = np.array([level[i] for i in industry])
    else:
        raise ValueError(f"effect must be 'company_size' or 'industry', not {effect!r}")
    z = z * strength
    p_conv = 1.0 / (1.0 + np.exp(1.3 - 0.5 * z))
    trial_days = np.floor(rng.uniform(0, months * day, n))
    trial_start = end - pd.to_timedelta(trial_days, unit="D")
    converted = rng.random(n) < p_conv
    start = trial_start + pd.Timedelta(days=14)
    paying = converted & (start <= end)
    scale = 30.0 * np.exp(0.45 * z)
    life = scale * rng.weibull(shape, n)
    stop = start + pd.to_timedelta(np.ceil(life * day), unit="D")
    ended = paying & (stop <= end)
    mrr = np.round(60.0 * np.exp(0.5 * z + 0.3 * rng.standard_normal(n)), 2)
    ids = _ids(n, "C")
    fmt = lambda d: pd.Series(d).dt.strftime("%Y-%m-%d").to_numpy()  # noqa: E731
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "trial_start": fmt(trial_start),
            "converted": converted.astype(int),
            "start_date": np.where(converted, fmt(start), ""),
            "end_date": np.where(ended, fmt(stop), ""),
            "mrr": np.where(converted, mrr, np.nan),
            "company_size": employees,
            "industry": industry,
            "country": country,
            "plan": plan,
            "adoption": adoption,
        }
    )
    truth = pd.DataFrame(
        {
            "customer_id": ids,
            "conversion_prob": p_conv,
            "scale": scale,
            "shape": shape,
            "paying": paying,
        }
    )
    return SimulatedCustomerBase(customers, truth, end, effect)


@dataclass(frozen=True)
class SimulatedChurnStep:
    """Customers whose churn steps up in one quarter in one segment."""

    customers: pd.DataFrame  # customers.csv
    segments: pd.DataFrame  # segments.csv
    as_of: pd.Timestamp
    step_segment: str
    step_quarter: pd.Timestamp  # first day of the quarter with the higher churn
    churn_rate: float
    factor: float


def simulate_churn_step(
    n_per_segment: int = 1500,
    *,
    segments: tuple[str, ...] = ("Startups", "SMB", "Mid-market"),
    quarters: int = 12,
    churn_rate: float = 0.03,
    factor: float = 2.5,
    step_segment: str = "SMB",
    step_quarter: int = 8,
    as_of: str = "2026-06-30",
    seed: int | np.random.Generator | None = 0,
) -> SimulatedChurnStep:
    """Customers start uniformly over ``quarters`` + 4 quarters before ``as_of`` and churn at a
    constant monthly hazard ``churn_rate``, except that during quarter ``step_quarter``
    (0-based, counted from the first of the last ``quarters`` full quarters) the customers of
    ``step_segment`` churn ``factor`` times as fast (a price change, a competitor's launch).
    Lifetimes are drawn by inverting the piecewise-constant cumulative hazard.
    """
    rng = _rng(seed)
    end = pd.Timestamp(as_of)
    day = 30.4375
    last_q = end.to_period("Q").start_time
    if end < (end.to_period("Q").end_time.normalize()):
        last_q = last_q - pd.offsets.QuarterBegin(startingMonth=1)
    first_q = last_q - pd.DateOffset(months=3 * (quarters - 1))
    w0 = first_q + pd.DateOffset(months=3 * step_quarter)
    w1 = w0 + pd.DateOffset(months=3)
    origin = first_q - pd.DateOffset(months=12)
    span = (end - origin).days
    rows = []
    for name in segments:
        n = int(n_per_segment)
        s_days = np.floor(rng.uniform(0, span, n))
        start = origin + pd.to_timedelta(s_days, unit="D")
        e = rng.exponential(1.0, n)  # cumulative hazard at which the customer leaves
        s = (start - origin).days.to_numpy() / day  # months since origin
        a, b = (w0 - origin).days / day, (w1 - origin).days / day
        h = churn_rate
        if name == step_segment:
            before = h * np.clip(a - s, 0, None)
            in_window = np.clip(b - np.maximum(s, a), 0, None)
            t = np.where(
                e <= before,
                e / h,
                np.where(
                    e - before <= h * factor * in_window,
                    np.clip(a - s, 0, None) + (e - before) / (h * factor),
                    np.clip(a - s, 0, None) + in_window + (e - before - h * factor * in_window) / h,
                ),
            )
        else:
            t = e / h
        stop = start + pd.to_timedelta(np.ceil(t * day), unit="D")
        ended = stop <= end
        rows.append(
            pd.DataFrame(
                {
                    "segment": name,
                    "start_date": start.strftime("%Y-%m-%d"),
                    "end_date": np.where(ended, stop.strftime("%Y-%m-%d"), ""),
                    "mrr": np.round(80 * np.exp(0.3 * rng.standard_normal(n)), 2),
                }
            )
        )
    customers = pd.concat(rows, ignore_index=True)
    customers.insert(0, "customer_id", _ids(len(customers), "C"))
    segs = pd.DataFrame(
        {"segment": list(segments), "customers": [int(n_per_segment)] * len(segments), "cac": 500.0}
    )
    return SimulatedChurnStep(customers, segs, end, step_segment, w0, churn_rate, factor)


# --------------------------------------------------------------------------------------------
# A whole study folder


@dataclass(frozen=True)
class SimulatedStudy:
    """A study folder written to disk and the truth behind it."""

    folder: Path
    vw: SimulatedVW
    maxdiff: SimulatedMaxDiff
    conjoint: SimulatedConjoint
    customers: SimulatedCustomers
    revenue_optimal_prices: pd.DataFrame  # segment, revenue_optimal_price


def _respondents_frame(
    ids: np.ndarray,
    segment: np.ndarray,
    customers: dict[str, int],
    rng: np.random.Generator,
    weights: bool = True,
) -> pd.DataFrame:
    """respondents.csv: each respondent's segment, a post-stratification weight (respondents
    answer in proportion to the sample plan; the weight brings each segment back to its share of
    the customer base) and a company size."""
    resp = pd.DataFrame({"respondent_id": ids, "segment": segment})
    if weights:
        total = float(sum(customers.values()))
        have = resp["segment"].value_counts() / len(resp)
        target = {s: customers[s] / total / have[s] for s in have.index}
        resp["weight"] = np.round(resp["segment"].map(target).to_numpy(dtype=float), 4)
    resp["company_size"] = rng.choice(
        ["1-10", "11-50", "51-200", "201-1000", "1000+"], size=len(resp)
    )
    return resp


def _write_study_toml(
    folder: Path,
    *,
    name: str,
    as_of,
    labels: dict[str, str],
    attributes: dict[str, list],
    prices: list[float],
    pins: list[str],
    extra: str = "",
) -> None:
    """study.toml of a simulated study with every instrument and customers."""
    items = "\n".join(f'{k} = "{v}"' for k, v in labels.items())
    attrs = "\n".join(
        f"{a} = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in lv)}]"
        for a, lv in attributes.items()
    )
    pinned = ", ".join(f'{c} = "Enterprise"' for c in pins)
    (folder / "study.toml").write_text(
        f'''[study]
name = "{name}"
currency = "USD"
price_unit = "per account per month"
period = "month"
as_of = "{as_of}"

[data]
respondents    = "respondents.csv"
van_westendorp = "vw.csv"
maxdiff        = "maxdiff.csv"
conjoint       = "conjoint.csv"
segments       = "segments.csv"
customers      = "customers.csv"

[maxdiff.items]
{items}

[conjoint]
prices = [{", ".join(f"{p:g}" for p in prices)}]

[conjoint.attributes]
{attrs}

[packages]
tiers = ["Starter", "Pro", "Enterprise"]
# features pinned to a tier (code = tier) and the most features a tier may add
pins = {{ {pinned} }}
max_features_per_tier = 5
{extra}''',
        encoding="utf-8",
    )


def simulate_study(
    folder: str | Path,
    *,
    n_respondents: int = 600,
    segments=None,
    name: str = "Acme Analytics pricing 2026",
    seed: int = 20260,
    maxdiff_tasks: int = 10,
    conjoint_tasks: int = 10,
    customers_per_segment: int | None = None,
    weights: bool = True,
    conjoint_prices: list[float] | None = None,
) -> SimulatedStudy:
    """Write a complete study folder (study.toml and every input file) and return its truth.

    The same respondents answer Van Westendorp, MaxDiff and conjoint; their segment and a
    survey weight live in respondents.csv (the instrument files carry no segment, as a survey
    export would not).
    """
    rng = np.random.default_rng(seed)
    specs = _segment_names(segments)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seg = _assign_segments(n_respondents, specs, rng)
    ids = _ids(n_respondents)
    vw = simulate_vw(n_respondents, specs, seed=rng, respondent_ids=ids, segment_index=seg)
    md = simulate_maxdiff(
        n_respondents,
        n_items=len(DEMO_ITEMS),
        per_task=5,
        n_tasks=maxdiff_tasks,
        n_versions=12,
        segments=specs,
        seed=rng,
        respondent_ids=ids,
        segment_index=seg,
    )
    if conjoint_prices is None:
        # one tested range that spans every segment's prices, as a real study must
        lo = min(s.median_wtp for s in specs) * 0.7
        hi = max(s.median_wtp for s in specs) * 1.2
        conjoint_prices = [float(round(p)) for p in np.geomspace(lo, hi, 6)]
    cj = simulate_conjoint(
        n_respondents,
        n_tasks=conjoint_tasks,
        n_alts=3,
        none=True,
        segments=specs,
        prices=conjoint_prices,
        seed=rng,
        respondent_ids=ids,
        segment_index=seg,
    )
    cu = simulate_customers(specs, n_per_segment=customers_per_segment, seed=rng)
    resp = _respondents_frame(
        ids,
        np.array([specs[i].name for i in seg], dtype=object),
        {s.name: s.customers for s in specs},
        rng,
        weights,
    )
    resp.to_csv(folder / "respondents.csv", index=False)
    vw.answers.drop(columns="segment").to_csv(folder / "vw.csv", index=False)
    md.answers.drop(columns="segment").to_csv(folder / "maxdiff.csv", index=False)
    cj.answers.drop(columns="segment").to_csv(folder / "conjoint.csv", index=False)
    cu.segments.to_csv(folder / "segments.csv", index=False)
    cu.customers.to_csv(folder / "customers.csv", index=False)
    _write_study_toml(
        folder,
        name=name,
        as_of=cu.as_of.date(),
        labels=md.labels,
        attributes=cj.attributes,
        prices=cj.prices,
        pins=["sso", "audit_log"] if any(s.name == "Enterprise" for s in specs) else [],
    )
    opt = vw.optimal_prices[["segment", "revenue_optimal_price"]]
    return SimulatedStudy(folder, vw, md, cj, cu, opt)


# --------------------------------------------------------------------------------------------
# Tier truth: a market where packages, prices and take-up are known


TIER_FEATURES = (
    "sso",
    "audit_log",
    "sla",
    "custom_roles",
    "api",
    "integrations",
)  # the first six demo items
# conjoint attributes shared with MaxDiff items; "yes" is listed first on purpose (level order)
TIER_ATTRIBUTES = {"SSO": ["yes", "no"], "API": ["yes", "no"]}
_TIER_MAP = {"SSO": "sso", "API": "api"}


@dataclass(frozen=True)
class TierSegment:
    """A segment of a tier world: the value of the core product and of each feature (as a share
    of the core value), true and stated propensity, volumes and today's price."""

    name: str
    share: float
    median_value: float
    feature_ratio: dict[str, float]
    sigma: float = 0.35
    propensity: float = 0.35  # true share in the market
    overstatement: float = 1.8  # stated purchase likelihood ÷ true
    market_size: int = 10000
    customers: int = 1000
    arpa: float | None = None  # today's price of the core product (default: the median value)

    @property
    def today_arpa(self) -> float:
        """Today's price of the core product: ``arpa``, else the median value."""
        return self.arpa if self.arpa is not None else self.median_value


TIER_SEGMENTS = (
    TierSegment(
        "Startups",
        0.40,
        30.0,
        {
            "integrations": 0.35,
            "api": 0.15,
            "custom_roles": 0.05,
            "sla": 0.04,
            "sso": 0.03,
            "audit_log": 0.02,
        },
        market_size=40000,
        customers=1500,
        arpa=29.0,
    ),
    TierSegment(
        "SMB",
        0.35,
        80.0,
        {
            "integrations": 0.25,
            "api": 0.2,
            "custom_roles": 0.2,
            "sla": 0.1,
            "sso": 0.12,
            "audit_log": 0.05,
        },
        market_size=15000,
        customers=1200,
        arpa=79.0,
    ),
    TierSegment(
        "Enterprise",
        0.25,
        260.0,
        {
            "sso": 0.5,
            "audit_log": 0.4,
            "sla": 0.35,
            "custom_roles": 0.25,
            "api": 0.2,
            "integrations": 0.1,
        },
        market_size=2000,
        customers=150,
        arpa=249.0,
    ),
)


@dataclass(frozen=True)
class AnswerProcess:
    """How answers relate to the truth: where "expensive" and "too expensive" sit against the
    reservation value (log offsets), whether "too cheap" really stops buying, choice noise."""

    name: str
    expensive: float = -0.15
    too_expensive: float = 0.25
    too_cheap_effect: bool = True
    noise: float = 0.10  # Gumbel scale of choices, as a share of the core value
    # MaxDiff utilities = this × log money: under 1, answers noisier than the money at stake
    # (shares ∝ money^scale), so a bridge that takes money ∝ share undervalues the top features
    maxdiff_scale: float = 1.0
    # True: each person's choice noise is ``noise`` × their own value; False: ``noise`` × the
    # segment's median value for everyone (noise that does not follow what people would pay)
    noise_follows_value: bool = True


ANSWER_PROCESSES = {
    "expensive-below": AnswerProcess(
        "expensive-below", expensive=-0.15, too_expensive=0.25, too_cheap_effect=True, noise=0.10
    ),
    "expensive-above": AnswerProcess(
        "expensive-above", expensive=0.12, too_expensive=0.45, too_cheap_effect=False, noise=0.25
    ),
    "noisy-maxdiff": AnswerProcess(
        "noisy-maxdiff",
        expensive=0.0,
        too_expensive=0.35,
        too_cheap_effect=False,
        noise=0.15,
        maxdiff_scale=0.5,
    ),
}


# the demo's people: "expensive" near their reservation value, no real too-cheap effect, MaxDiff
# answers a little noisier than the money at stake
DEMO_PROCESS = AnswerProcess(
    "demo",
    expensive=-0.05,
    too_expensive=0.30,
    too_cheap_effect=False,
    noise=0.15,
    maxdiff_scale=0.8,
)

# The demo's market: four segments valuing the fourteen demo items, one truth behind every
# answer (the earlier demo drew each instrument on its own, so its features and its product
# disagreed on money by 3–10×). Values sit near today's ARPA; volumes follow DEMO_SEGMENTS.
DEMO_FEATURES = tuple(DEMO_ITEMS)
# each segment's money value of a feature, as a share of its core value
DEMO_FEATURE_RATIOS = {
    "Startups": {
        "integrations": 0.30,
        "ai_insights": 0.25,
        "dashboards": 0.20,
        "api": 0.12,
        "exports": 0.10,
        "mobile_app": 0.08,
        "priority_support": 0.05,
        "data_retention": 0.05,
        "custom_roles": 0.04,
        "sandbox": 0.03,
        "sla": 0.03,
        "sso": 0.02,
        "white_label": 0.02,
        "audit_log": 0.01,
    },
    "SMB": {
        "dashboards": 0.25,
        "integrations": 0.22,
        "exports": 0.20,
        "ai_insights": 0.15,
        "mobile_app": 0.12,
        "api": 0.12,
        "custom_roles": 0.12,
        "priority_support": 0.10,
        "data_retention": 0.08,
        "sso": 0.08,
        "sla": 0.06,
        "white_label": 0.05,
        "sandbox": 0.04,
        "audit_log": 0.04,
    },
    "Mid-market": {
        "sso": 0.30,
        "custom_roles": 0.25,
        "api": 0.22,
        "integrations": 0.18,
        "dashboards": 0.15,
        "sla": 0.15,
        "sandbox": 0.12,
        "audit_log": 0.12,
        "priority_support": 0.12,
        "data_retention": 0.10,
        "exports": 0.10,
        "ai_insights": 0.10,
        "white_label": 0.06,
        "mobile_app": 0.05,
    },
    "Enterprise": {
        "sso": 0.50,
        "audit_log": 0.40,
        "sla": 0.38,
        "custom_roles": 0.25,
        "priority_support": 0.25,
        "api": 0.20,
        "data_retention": 0.18,
        "sandbox": 0.12,
        "white_label": 0.10,
        "integrations": 0.10,
        "dashboards": 0.08,
        "exports": 0.06,
        "ai_insights": 0.06,
        "mobile_app": 0.03,
    },
}
# true propensity to buy (stated = 1.8 ×): today's conversion comes out near DEMO_SEGMENTS'
DEMO_PROPENSITY = {"Startups": 0.24, "SMB": 0.32, "Mid-market": 0.40, "Enterprise": 0.50}
# volumes, price levels and today's ARPA are DEMO_SEGMENTS' (segments.csv is written from them)
DEMO_TIER_SEGMENTS = tuple(
    TierSegment(
        s.name,
        s.share,
        s.median_wtp,
        DEMO_FEATURE_RATIOS[s.name],
        sigma=s.wtp_sigma,
        propensity=DEMO_PROPENSITY[s.name],
        market_size=s.market_size,
        customers=s.customers,
        arpa=s.today_arpa,
    )
    for s in DEMO_SEGMENTS
)
# what each demo conjoint level is worth: (feature, fraction of its money) or (None, fraction of
# the core value); the first level of each attribute is worth nothing
DEMO_WORTH = {
    "Support": {"Chat": ("priority_support", 0.4), "Phone 24/7": ("priority_support", 1.0)},
    "SSO": {"Included": ("sso", 1.0)},
    "Users": {"25 users": (None, 0.15), "Unlimited": (None, 0.30)},
    "History": {"1 year": ("data_retention", 0.5), "Unlimited": ("data_retention", 1.0)},
}


@dataclass(frozen=True)
class TierPeople:
    """Per person: core value R, feature money values M (n × F), true propensity, quality
    threshold L (too cheap) and choice-noise scale."""

    value: np.ndarray
    money: np.ndarray
    propensity: np.ndarray
    stated: np.ndarray
    too_cheap: np.ndarray
    noise: np.ndarray


def _tier_people(
    spec: TierSegment,
    n: int,
    process: AnswerProcess,
    rng: np.random.Generator,
    features: tuple[str, ...] = TIER_FEATURES,
) -> TierPeople:
    R = spec.median_value * np.exp(spec.sigma * rng.standard_normal(n))
    ratio = np.array([spec.feature_ratio.get(f, 0.0) for f in features])
    M = R[:, None] * ratio[None, :] * np.exp(0.4 * rng.standard_normal((n, len(features))) - 0.08)
    a = 6.0
    pi = rng.beta(a * spec.propensity, a * (1 - spec.propensity), n)
    stated = np.clip(pi * spec.overstatement, 0, 1)
    L = 0.5 * R * np.exp(0.1 * rng.standard_normal(n))
    scale = R if process.noise_follows_value else np.full(n, spec.median_value)
    return TierPeople(R, M, pi, stated, L, process.noise * scale)


def tier_choice(
    people: TierPeople, membership: np.ndarray, prices: np.ndarray, too_cheap_effect: bool
) -> np.ndarray:
    """n × K: each person's true probability of taking each package: propensity × logit choice
    among the packages and not buying, with Gumbel noise of the person's scale; a package priced
    below the person's too-cheap threshold (scaled by its value) is not taken when the effect is
    real."""
    member = np.asarray(membership, dtype=float)
    prices = np.asarray(prices, dtype=float)
    V = people.value[:, None] + people.money @ member.T
    z = (V - prices[None, :]) / people.noise[:, None]
    if too_cheap_effect:
        z = np.where(
            prices[None, :] < people.too_cheap[:, None] * V / people.value[:, None], -np.inf, z
        )
    top = np.maximum(z.max(axis=1, keepdims=True), 0.0)
    e = np.exp(z - top)
    return people.propensity[:, None] * e / (e.sum(axis=1, keepdims=True) + np.exp(-top))


def tier_take_up(
    people: TierPeople, membership: np.ndarray, prices: np.ndarray, too_cheap_effect: bool
) -> np.ndarray:
    """True expected share taking each package: :func:`tier_choice` averaged over people."""
    return tier_choice(people, membership, prices, too_cheap_effect).mean(axis=0)


@dataclass(frozen=True)
class SimulatedTierWorld:
    """A study folder written from tier truth, and a large population to judge books by."""

    folder: Path
    process: AnswerProcess
    segments: tuple[TierSegment, ...]
    population: dict[str, TierPeople]
    respondents: dict[str, TierPeople]
    features: tuple[str, ...] = TIER_FEATURES  # the columns of every TierPeople.money

    def take_up(self, segment: str, membership: np.ndarray, prices: np.ndarray) -> np.ndarray:
        return tier_take_up(
            self.population[segment], membership, prices, self.process.too_cheap_effect
        )

    def revenue(self, segments: list[str], membership: np.ndarray, prices: np.ndarray) -> float:
        """True revenue per period of one book offered to ``segments`` (prospects = market size)."""
        spec = {s.name: s for s in self.segments}
        return float(
            sum(
                spec[s].market_size
                * self.take_up(s, membership, prices)
                @ np.asarray(prices, dtype=float)
                for s in segments
            )
        )

    def best_prices(
        self,
        segments: list[str],
        membership: np.ndarray,
        start: np.ndarray,
        min_step: float = 1.0,
    ) -> tuple[np.ndarray, float]:
        """The same packages at their true revenue-optimal ordered prices: every ordered ladder
        on a coarse log grid over the packages' true values (the revenue landscape has several
        peaks, so a search from the proposed prices alone can stop on a lower one), then
        Nelder–Mead on the log first price and log steps from the two best coarse ladders and
        from the proposed prices (not restricted to nice prices; each tier at least
        ``min_step`` × the one below, 1 = any ordered ladder)."""
        import itertools

        from scipy.optimize import minimize

        start = np.sort(np.asarray(start, dtype=float))
        member = np.asarray(membership, dtype=float)

        floor = float(np.log(min_step))

        def ladder(x):  # an ordered ladder: first price, then log steps ≥ log(min_step)
            return np.exp(np.cumsum(np.r_[x[0], floor + np.square(x[1:])]))

        def unladder(p):
            return np.r_[np.log(p[0]), np.sqrt(np.maximum(np.diff(np.log(p)) - floor, 0.0))]

        values = [
            self.population[s].value[:, None] + self.population[s].money @ member.T
            for s in segments
        ]
        lo = 0.3 * min(float(np.quantile(v[:, 0], 0.05)) for v in values)
        hi = max(float(np.quantile(v[:, -1], 0.99)) for v in values)
        grid = np.geomspace(lo, hi, 14)
        coarse = np.array(list(itertools.combinations(grid, len(start)))).reshape(-1, len(start))
        coarse = coarse[(np.diff(np.log(coarse), axis=1) >= floor - 1e-12).all(axis=1)]
        rough = np.array([self.revenue(segments, membership, p) for p in coarse])
        starts = [start, *coarse[np.argsort(-rough)[:2]]]
        best_p = ladder(unladder(start))  # the proposal, held to the step
        best_r = self.revenue(segments, membership, best_p)
        for s0 in starts:
            res = minimize(
                lambda x: -self.revenue(segments, membership, ladder(x)),
                unladder(s0),
                method="Nelder-Mead",
                options={"xatol": 1e-5, "fatol": 1e-7, "maxiter": 6000},
            )
            if -res.fun > best_r:
                best_p, best_r = ladder(res.x), float(-res.fun)
        return best_p, best_r

    def judge(self, result, *, best: bool = True, min_step: float | None = None) -> pd.DataFrame:
        """Each proposed book judged by this world's truth, not by the tool's model.

        One row per scenario (``multiple``, ``single``) and a ``total`` for each: true revenue
        of the proposed books, true revenue of the same packages at their true best prices, their
        ratio, the predicted revenue and its 90% interval, and whether the interval covers the
        truth. ``uplift_true`` / ``uplift_predicted`` compare multiple with single. ``best=False``
        skips the search for the best prices (seconds instead of a minute; ``true_best`` and
        ``ratio`` are then NaN). ``min_step`` (e.g. the tool's ``[pricing] min_step``) adds
        ``true_best_at_step`` and ``ratio_at_step``: the best of the ladders whose tiers keep
        that step, the rule the proposal follows (a world whose packages add little is best
        served with the tiers at one price, which no book with a step can be).
        """
        rows = []
        sc = result.scenarios.set_index(["scenario", "segment"])

        totals = {}
        for scenario in ("multiple", "single"):
            got = best_sum = step_sum = 0.0
            for g, book in self._offered(result, scenario):
                m, p = self._priced(book)
                if not len(p):
                    continue
                r = self.revenue(g, m, p)
                rb = self.best_prices(g, m, p)[1] if best else np.nan
                rs = self.best_prices(g, m, p, min_step)[1] if min_step else np.nan
                got += r
                best_sum += rb
                step_sum += rs
                if scenario == "multiple":
                    pred = sc.loc[(scenario, g[0])]
                    rows.append(
                        {
                            "scenario": scenario,
                            "segment": g[0],
                            "true_revenue": r,
                            "true_best": rb,
                            "ratio": r / rb if rb else np.nan,
                            "true_best_at_step": rs,
                            "ratio_at_step": r / rs,
                            "predicted": pred["revenue"],
                            "lower": pred["revenue_lower"],
                            "upper": pred["revenue_upper"],
                        }
                    )
            pred = sc.loc[(scenario, "total")]
            totals[scenario] = (got, pred["revenue"])
            rows.append(
                {
                    "scenario": scenario,
                    "segment": "total",
                    "true_revenue": got,
                    "true_best": best_sum,
                    "ratio": got / best_sum if best_sum else np.nan,
                    "true_best_at_step": step_sum,
                    "ratio_at_step": got / step_sum,
                    "predicted": pred["revenue"],
                    "lower": pred["revenue_lower"],
                    "upper": pred["revenue_upper"],
                }
            )
        out = pd.DataFrame(rows)
        if not min_step:
            out = out.drop(columns=["true_best_at_step", "ratio_at_step"])
        out["covered"] = (out["lower"] <= out["true_revenue"]) & (
            out["true_revenue"] <= out["upper"]
        )
        (tm, pm), (ts, ps) = totals["multiple"], totals["single"]
        out["uplift_true"] = tm / ts - 1
        out["uplift_predicted"] = pm / ps - 1
        return out

    def add_on_revenue(
        self,
        segments: list[str],
        membership: np.ndarray,
        prices: np.ndarray,
        feature: str,
        price: float | np.ndarray,
    ) -> float | np.ndarray:
        """True revenue per period of ``feature`` sold as an add-on at ``price`` on top of a book
        (``membership`` in this world's features, its tiers' ``prices``) offered to ``segments``
        (:func:`add_on_take_up`)."""
        spec = {s.name: s for s in self.segments}
        j = list(self.features).index(feature)
        return sum(
            spec[s].market_size
            * add_on_take_up(
                self.population[s], membership, prices, j, price, self.process.too_cheap_effect
            )
            * np.asarray(price, dtype=float)
            for s in segments
        )

    def best_add_on_price(
        self, segments: list[str], membership: np.ndarray, prices: np.ndarray, feature: str
    ) -> tuple[float, float]:
        """The add-on's true revenue-optimal price and revenue, tiers held: a log grid up to the
        highest money value + 12 noise scales, then a bounded 1-D search around its best point
        (not nice prices)."""
        from scipy.optimize import minimize_scalar

        j = list(self.features).index(feature)
        # choice noise sells above the money value: search up to where nobody is left
        hi = max(
            float(np.max(self.population[s].money[:, j] + 12 * self.population[s].noise))
            for s in segments
        )
        grid = np.geomspace(hi / 2000, hi, 600)
        rev = self.add_on_revenue(segments, membership, prices, feature, grid)
        i = int(np.argmax(rev))
        res = minimize_scalar(
            lambda p: -float(self.add_on_revenue(segments, membership, prices, feature, p)),
            bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]),
            method="bounded",
            options={"xatol": 1e-6 * hi},
        )
        if -res.fun > rev[i]:
            return float(res.x), float(-res.fun)
        return float(grid[i]), float(rev[i])

    def judge_add_ons(self, result) -> pd.DataFrame:
        """Each priced add-on of the proposed books judged by this world's truth: true revenue at
        the tool's price against the true best price for it (the same tiers at the same prices),
        and the tool's forecast (pricing/add_ons.csv summed over the book's segments)."""
        rows = []
        ao = result.add_ons
        for scenario in ("multiple", "single"):
            for g, book in self._offered(result, scenario):
                m, p = self._priced(book)
                for f, price in getattr(book, "add_ons", ()):
                    if not np.isfinite(price) or f not in self.features:
                        continue
                    r = float(self.add_on_revenue(g, m, p, f, price))
                    bp, rb = self.best_add_on_price(g, m, p, f)
                    pred = ao[
                        (ao["scenario"] == scenario) & ao["segment"].isin(g) & (ao["feature"] == f)
                    ]["revenue"].sum()
                    rows.append({
                        "scenario": scenario, "book": book.name if scenario == "single" else g[0], "feature": f, "price": price,
                        "best_price": bp, "true_revenue": r, "true_best": rb, "ratio": r / rb if rb > 0 else np.nan, "predicted": float(pred),
                    })  # fmt: skip
        cols = ["scenario", "book", "feature", "price", "best_price", "true_revenue", "true_best", "ratio", "predicted"]  # fmt: skip
        out = pd.DataFrame(rows, columns=cols)
        return out.astype(dict.fromkeys(cols[3:], float))

    def _offered(self, result, scenario: str):
        """(segments, book) pairs of a scenario: each segment with its own book under
        ``multiple`` (the single book where it has none), every segment together under
        ``single``."""
        names = [s.name for s in self.segments]
        books = {(b.scenario, b.name): b for b in result.books}
        groups = [[s] for s in names] if scenario == "multiple" else [names]
        for g in groups:
            own = books.get((scenario, g[0] if scenario == "multiple" else "all"))
            yield g, own or books[("single", "all")]

    def _priced(self, book) -> tuple[np.ndarray, np.ndarray]:
        """A book's priced tiers as this world's feature membership (K × F) and prices (K)."""
        cols = [list(book.features).index(f) if f in book.features else -1 for f in self.features]
        m = np.zeros((len(book.tiers), len(self.features)))
        for j, c in enumerate(cols):
            if c >= 0:
                m[:, j] = book.membership[:, c]
        ok = np.isfinite(book.prices)
        return m[ok], book.prices[ok]

    def judge_take_up(self, result) -> pd.DataFrame:
        """Each segment's predicted take-up of each tier of the book it is offered (take_up.csv)
        against the true take-up of that tier: where a revenue forecast goes wrong, this says
        whether it is how many buy or which tier they take."""
        rows = []
        books = {(b.scenario, b.name): b for b in result.books}
        tu = result.take_up.set_index(["scenario", "segment", "package"])
        for scenario, seg in dict.fromkeys(
            zip(tu.index.get_level_values(0), tu.index.get_level_values(1), strict=True)
        ):
            if seg not in {s.name for s in self.segments}:
                continue
            # a segment without a book of its own is offered the single book in both scenarios
            book = books.get((scenario, seg)) or books[("single", "all")]
            m, p = self._priced(book)
            true = self.take_up(seg, m, p)
            tiers = [t for t, q in zip(book.tiers, book.prices, strict=True) if np.isfinite(q)]
            for k, t in enumerate(tiers):
                rows.append(
                    {
                        "scenario": scenario,
                        "segment": seg,
                        "package": t,
                        "price": p[k],
                        "predicted_share": float(tu.loc[(scenario, seg, t), "share"]),
                        "true_share": float(true[k]),
                    }
                )
        return pd.DataFrame(rows)


def add_on_take_up(
    people: TierPeople,
    membership: np.ndarray,
    prices: np.ndarray,
    j: int,
    price: float | np.ndarray,
    too_cheap_effect: bool,
) -> np.ndarray:
    """True share buying feature j as an add-on at ``price`` (scalar or array): a person who
    takes a package lacking j buys it when ``M_ij − price + ε ≥ 0``, ε logistic of the person's
    choice-noise scale (the difference of two Gumbel errors, as their tier choice has); the
    package they take does not depend on the add-on."""
    lacks = ~np.asarray(membership, dtype=bool)[:, j]
    able = tier_choice(people, membership, prices, too_cheap_effect)[:, lacks].sum(axis=1)
    p = np.atleast_1d(np.asarray(price, dtype=float))
    z = (people.money[:, j][:, None] - p[None, :]) / people.noise[:, None]
    buy = 0.5 * (1 + np.tanh(z / 2))  # the logistic, without overflow
    out = able @ buy / len(able)
    return out if np.ndim(price) else out[0]


def _tier_vw(people: TierPeople, process: AnswerProcess, rng: np.random.Generator) -> np.ndarray:
    R, L = people.value, people.too_cheap
    n = len(R)
    centre = np.column_stack(
        [
            L * np.exp(-0.1),
            L * np.exp(0.25),
            R * np.exp(process.expensive),
            R * np.exp(process.too_expensive),
        ]
    )
    answers = np.sort(centre * np.exp(0.04 * rng.standard_normal((n, 4))), axis=1)
    step = np.where(R < 60, 1.0, 5.0)[:, None]
    return np.sort(np.maximum(np.round(answers / step) * step, step), axis=1)


def _tier_nms(people: TierPeople, price: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    q = people.stated / (1 + np.exp(-(people.value - price) / people.noise))
    q = np.clip(q + 0.05 * rng.standard_normal(len(q)), 0, 1)
    levels = np.array(sorted(NMS_CALIBRATION))
    probs = np.array([NMS_CALIBRATION[k] for k in levels])
    return levels[np.argmin(np.abs(q[:, None] - probs[None, :]), axis=1)]


def _tier_conjoint(
    people: TierPeople,
    ids: np.ndarray,
    prices: list[float],
    n_tasks: int,
    rng: np.random.Generator,
    *,
    features: tuple[str, ...] = TIER_FEATURES,
    attributes: dict[str, list[str]] = TIER_ATTRIBUTES,
    worth: dict[str, dict[str, tuple[str | None, float]]] | None = None,
    n_alts: int = 2,
) -> pd.DataFrame:
    """Choices among ``n_alts`` profiles and none: a profile is worth the core value plus, per
    attribute level, ``fraction`` × a feature's money (``worth[attr][level] = (feature,
    fraction)``) or × the core value (feature ``None``); levels not listed are worth nothing."""
    from wtp.conjoint import design_conjoint

    worth = worth if worth is not None else {a: {"yes": (_TIER_MAP[a], 1.0)} for a in attributes}
    design = design_conjoint(
        attributes, prices, n_tasks=n_tasks, n_alts=n_alts, n_versions=8, none=False, rng=rng
    )
    if "none" in design.columns:
        design = design[design["none"].fillna(0).astype(int) == 0].drop(columns="none")
    design = design.sort_values(["version", "task", "alt"]).reset_index(drop=True)
    versions = design["version"].unique()
    T = design.groupby("version")["task"].nunique().iloc[0]
    A = design.groupby(["version", "task"]).size().iloc[0]
    # per profile: the multiple of the core value (column 0) and of each feature's money
    W = np.zeros((len(design), len(features) + 1))
    for a, levels in worth.items():
        shown = design[a].to_numpy()
        for level, (feature, fraction) in levels.items():
            W[shown == level, 0 if feature is None else 1 + features.index(feature)] += fraction
    W = W.reshape(len(versions), T, A, -1)
    P = design["price"].to_numpy(dtype=float).reshape(len(versions), T, A)
    n = len(ids)
    v_of = np.arange(n) % len(versions)
    value = people.value[:, None, None] + np.einsum(
        "ntaf,nf->nta", W[v_of], np.column_stack([people.value, people.money])
    )
    util = (value - P[v_of]) / people.noise[:, None, None]
    util = np.concatenate([util, np.zeros((n, T, 1))], axis=2) + rng.gumbel(size=(n, T, A + 1))
    choice = np.argmax(util, axis=2)  # n × T
    blocks = []
    for v_i, v in enumerate(versions):
        who = np.flatnonzero(v_of == v_i)
        if len(who) == 0:
            continue
        block = design[design["version"] == v].drop(columns="version").assign(none=0)
        nr = pd.DataFrame({"task": block["task"].unique(), "alt": A + 1, "none": 1})
        block = (
            pd.concat([block, nr], ignore_index=True)
            .sort_values(["task", "alt"], kind="stable")
            .reset_index(drop=True)
        )
        big = block.loc[np.tile(np.arange(len(block)), len(who))].reset_index(drop=True)
        big.insert(0, "respondent_id", np.repeat(ids[who], len(block)))
        pos = np.tile(np.arange(A + 1), len(who) * T)
        big["chosen"] = (pos == np.repeat(choice[who].reshape(-1), A + 1)).astype(int)
        blocks.append(big)
    out = pd.concat(blocks, ignore_index=True)
    order = {rid: i for i, rid in enumerate(ids)}
    out = out.sort_values(
        ["respondent_id", "task", "alt"],
        key=lambda c: c.map(order) if c.name == "respondent_id" else c,
        kind="stable",
    ).reset_index(drop=True)
    for a in attributes:
        out[a] = out[a].where(out["none"] == 0, None)
    out["price"] = out["price"].where(out["none"] == 0, None)
    return out[["respondent_id", "task", "alt", *attributes, "price", "none", "chosen"]]


@dataclass(frozen=True)
class _TierAnswers:
    """Every survey answer of a tier world, and the truth behind it."""

    ids: np.ndarray
    segment: np.ndarray  # each respondent's segment name
    people: dict[str, TierPeople]  # respondents per segment
    population: dict[str, TierPeople]  # a large population per segment, to judge books by
    vw: pd.DataFrame
    maxdiff: pd.DataFrame
    conjoint: pd.DataFrame
    conversion: dict[str, float]  # true take-up of the core product at today's price (arpa)


def _tier_answers(
    specs: list[TierSegment],
    proc: AnswerProcess,
    rng: np.random.Generator,
    *,
    n: int,
    seed: int,
    population: int,
    features: tuple[str, ...],
    maxdiff_design,  # rng → the MaxDiff design (version, task, position, item)
    maxdiff_per_task: int,
    conjoint_prices: list[float],
    conjoint_tasks: int,
    attributes: dict[str, list[str]],
    worth: dict[str, dict[str, tuple[str | None, float]]] | None,
    conjoint_alts: int,
) -> _TierAnswers:
    seg = _assign_segments(n, specs, rng)
    ids = _ids(n)
    people = {
        s.name: _tier_people(s, int((seg == i).sum()), proc, rng, features)
        for i, s in enumerate(specs)
    }
    pop = {
        s.name: _tier_people(s, population, proc, np.random.default_rng([seed, 7, i]), features)
        for i, s in enumerate(specs)
    }
    # stack respondents in id order
    fields_ = ("value", "money", "propensity", "stated", "too_cheap", "noise")
    order = np.concatenate([np.flatnonzero(seg == i) for i in range(len(specs))])
    stacked = TierPeople(
        *(np.concatenate([getattr(people[s.name], f) for s in specs]) for f in fields_)
    )
    inv = np.empty(n, dtype=int)
    inv[order] = np.arange(n)
    P = TierPeople(*(getattr(stacked, f)[inv] for f in fields_))
    names = np.array([s.name for s in specs], dtype=object)[seg]
    vw = _tier_vw(P, proc, rng)
    vw_frame = pd.DataFrame(
        {
            "respondent_id": ids,
            "too_cheap": vw[:, 0],
            "cheap": vw[:, 1],
            "expensive": vw[:, 2],
            "too_expensive": vw[:, 3],
        }
    )
    vw_frame["buy_cheap"] = _tier_nms(P, vw[:, 1], rng)
    vw_frame["buy_expensive"] = _tier_nms(P, vw[:, 2], rng)
    md = simulate_maxdiff(
        n,
        n_items=len(features),
        per_task=maxdiff_per_task,
        segments=specs,
        seed=rng,
        design=maxdiff_design(rng),
        respondent_ids=ids,
        segment_index=seg,
        utilities=proc.maxdiff_scale * np.log(np.maximum(P.money, 1e-6)),
    )
    cj = _tier_conjoint(
        P,
        ids,
        conjoint_prices,
        conjoint_tasks,
        rng,
        features=features,
        attributes=attributes,
        worth=worth,
        n_alts=conjoint_alts,
    )
    conversion = {
        s.name: float(
            tier_take_up(
                pop[s.name],
                np.zeros((1, len(features))),
                np.array([s.today_arpa]),
                proc.too_cheap_effect,
            )[0]
        )
        for s in specs
    }
    return _TierAnswers(
        ids, names, people, pop, vw_frame, md.answers.drop(columns="segment"), cj, conversion
    )


def simulate_tier_world(
    folder: str | Path,
    *,
    process: str | AnswerProcess = "expensive-below",
    n_respondents: int = 600,
    segments: tuple[TierSegment, ...] = TIER_SEGMENTS,
    population: int = 20000,
    seed: int = 0,
    maxdiff_tasks: int = 8,
    conjoint_tasks: int = 8,
    draws: int = 100,
    too_cheap: str | None = None,
) -> SimulatedTierWorld:
    """Write a study whose every answer comes from per-respondent tier truth.

    Each respondent has a core value R (lognormal), a money value per feature (a segment share of
    R, lognormal around it), a true propensity to buy and a stated one (``overstatement`` ×), and
    a quality threshold (too cheap ≈ 0.5 R). Van Westendorp answers sit at the ``process``'s
    offsets from R; NMS likelihoods are the stated propensity × the logit probability of buying
    the core at the price; MaxDiff utilities are the log money values times the process's
    ``maxdiff_scale`` (best-worst with Gumbel noise); conjoint choices (SSO, API, price, none) maximise ``(R + features − price)/noise +
    Gumbel``. segments.csv reports today's conversion: the true take-up of the core product at
    today's price (``arpa``). A separate population of ``population`` people per segment judges
    any book by its true revenue. ``too_cheap`` writes ``[pricing] too_cheap`` (the analyst's
    setting; ``None`` leaves the default).
    """
    proc = ANSWER_PROCESSES[process] if isinstance(process, str) else process
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = list(segments)
    F = len(TIER_FEATURES)

    def random_design(rng):  # a random design is enough here (the design search takes time)
        picks = np.argsort(rng.random((6 * maxdiff_tasks, F)), axis=1)[:, :4]
        return pd.DataFrame(
            {
                "version": np.repeat(np.arange(1, 7), maxdiff_tasks * 4),
                "task": np.tile(np.repeat(np.arange(1, maxdiff_tasks + 1), 4), 6),
                "position": np.tile(np.arange(1, 5), 6 * maxdiff_tasks),
                "item": np.array(TIER_FEATURES, dtype=object)[picks.reshape(-1)],
            }
        )

    lo = min(s.median_value for s in specs) * 0.5
    hi = max(s.median_value for s in specs) * 1.8
    a = _tier_answers(
        specs,
        proc,
        rng,
        n=n_respondents,
        seed=seed,
        population=population,
        features=TIER_FEATURES,
        maxdiff_design=random_design,
        maxdiff_per_task=4,
        conjoint_prices=[float(round(p)) for p in np.geomspace(lo, hi, 6)],
        conjoint_tasks=conjoint_tasks,
        attributes=TIER_ATTRIBUTES,
        worth=None,
        conjoint_alts=2,
    )
    rows = [
        {
            "segment": s.name,
            "customers": s.customers,
            "arpa": s.today_arpa,
            "churn_rate": 0.03,
            "cac": 100.0,
            "trials": 10000,
            "conversions": round(10000 * a.conversion[s.name]),
            "gross_margin": 0.8,
            "market_size": s.market_size,
        }
        for s in specs
    ]
    pd.DataFrame({"respondent_id": a.ids, "segment": a.segment, "weight": 1.0}).to_csv(
        folder / "respondents.csv", index=False
    )
    a.vw.to_csv(folder / "vw.csv", index=False)
    a.maxdiff.to_csv(folder / "maxdiff.csv", index=False)
    a.conjoint.to_csv(folder / "conjoint.csv", index=False)
    pd.DataFrame(rows).to_csv(folder / "segments.csv", index=False)
    items = "\n".join(f'{k} = "{DEMO_ITEMS[k]}"' for k in TIER_FEATURES)
    too_cheap_line = f'too_cheap = "{too_cheap}"\n' if too_cheap else ""
    (folder / "study.toml").write_text(
        f"""[study]
name = "Tier world ({proc.name}, seed {seed})"
currency = "USD"
price_unit = "per account per month"
period = "month"

[data]
respondents    = "respondents.csv"
van_westendorp = "vw.csv"
maxdiff        = "maxdiff.csv"
conjoint       = "conjoint.csv"
segments       = "segments.csv"

[maxdiff.items]
{items}

[packages]
tiers = ["Starter", "Pro", "Enterprise"]

[pricing]
{too_cheap_line}draws = {draws}
""",
        encoding="utf-8",
    )
    return SimulatedTierWorld(folder, proc, tuple(specs), a.population, a.people)


def simulate_demo_study(
    folder: str | Path,
    *,
    n_respondents: int = 600,
    seed: int = 20260,
    population: int = 20000,
    process: str | AnswerProcess = DEMO_PROCESS,
) -> SimulatedTierWorld:
    """Write the demo study (``wtp demo``; ``surveys/demo`` in the repository) and return the
    world behind it, so its price books can be judged by the truth like any tier world's.

    Four segments value the fourteen demo items (``DEMO_TIER_SEGMENTS``). One truth per
    respondent drives every answer: Van Westendorp and NMS around the core value, MaxDiff from
    the log money values, and a conjoint whose levels are worth what ``DEMO_WORTH`` says (support,
    SSO and history are features the MaxDiff also asks about; users is not). Customers,
    post-stratification weights and segments.csv follow ``DEMO_SEGMENTS``; today's conversion in
    segments.csv is the true take-up of the core product at today's ARPA.
    """
    from wtp.maxdiff import design_maxdiff

    proc = ANSWER_PROCESSES[process] if isinstance(process, str) else process
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = list(DEMO_TIER_SEGMENTS)
    lo = min(s.median_value for s in specs) * 0.6
    hi = max(s.median_value for s in specs) * 1.6
    a = _tier_answers(
        specs,
        proc,
        rng,
        n=n_respondents,
        seed=seed,
        population=population,
        features=DEMO_FEATURES,
        maxdiff_design=lambda r: design_maxdiff(
            len(DEMO_FEATURES), 5, 10, 12, items=list(DEMO_FEATURES), rng=r
        ),
        maxdiff_per_task=5,
        conjoint_prices=[float(round(p)) for p in np.geomspace(lo, hi, 6)],
        conjoint_tasks=10,
        attributes=DEMO_ATTRIBUTES,
        worth=DEMO_WORTH,
        conjoint_alts=3,
    )
    # as in real exports, a few respondents answer out of order (wtp excludes and reports them)
    cols = ["too_cheap", "cheap", "expensive", "too_expensive"]
    answers = a.vw[cols].to_numpy(copy=True)
    _misread(answers, 0.03, rng)
    a.vw[cols] = answers
    cu = simulate_customers(DEMO_SEGMENTS, seed=rng)
    segments = cu.segments.copy()
    segments["conversions"] = [
        round(t * a.conversion[s])
        for s, t in zip(segments["segment"], segments["trials"], strict=True)
    ]
    resp = _respondents_frame(a.ids, a.segment, {s.name: s.customers for s in DEMO_SEGMENTS}, rng)
    resp.to_csv(folder / "respondents.csv", index=False)
    a.vw.to_csv(folder / "vw.csv", index=False)
    a.maxdiff.to_csv(folder / "maxdiff.csv", index=False)
    a.conjoint.to_csv(folder / "conjoint.csv", index=False)
    segments.to_csv(folder / "segments.csv", index=False)
    cu.customers.to_csv(folder / "customers.csv", index=False)
    _write_study_toml(
        folder,
        name="Acme Analytics pricing 2026",
        as_of=cu.as_of.date(),
        labels=DEMO_ITEMS,
        attributes=DEMO_ATTRIBUTES,
        prices=sorted({float(p) for p in a.conjoint["price"].dropna()}),
        pins=["sso", "audit_log"],
        extra="""# MaxDiff items the conjoint also tested (SSO is matched by name): they anchor the MaxDiff
# preferences in money
conjoint = { priority_support = "Support=Phone 24/7", data_retention = "History=Unlimited" }
""",
    )
    return SimulatedTierWorld(
        folder, proc, tuple(specs), a.population, a.people, features=DEMO_FEATURES
    )
