"""Packages: good/better/best per segment, and the single book's packages aimed at the segments.

Rules per segment (``segment = 'all'`` drafts from every respondent)
=====================================================================

============== ===============================================================================
appeal         share of the segment's (weighted) respondents whose utility of the feature is
               above their own mean (individual MaxDiff utilities; without them, best − worst
               counts per respondent)
entry tier     table stakes: appeal ≥ 0.75 or share ≥ 1.4 × the average share, best share
               first, up to the tier's cap; at least the top-share feature
higher tier j  targets the respondents whose Van Westendorp "expensive" price is at or above
(of T tiers)   the segment's j/T quantile and adds features by reach (:func:`wtp.turf.turf`'s
               greedy ladder, a respondent reached by one of their top 3 among the features
               the lower tiers lack) until the next adds under 5% reach or the cap is hit; the
               top tier then takes the remaining valued features
add-on         share < half the average share, or left over once every tier is at its cap
pins, caps     ``[packages] pins`` place a feature first; ``max_features_per_tier`` caps a tier
============== ===============================================================================

The single book (:func:`draft_single_book`): segments ordered by their typical value of the
product; with at least as many segments as tiers, tier j is aimed at the j-th group of segments
and holds (cumulatively) the features those segments' own books have up to tier j; with fewer
segments than tiers, the tiers drafted from every respondent (``'all'``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from wtp.pricing.settings import ADD_ON, ALL, PricingSettings
from wtp.turf import turf

PACKAGE_COLUMNS = [
    "segment",
    "package",
    "feature",
    "label",
    "share",
    "lower",
    "upper",
    "appeal",
    "reach",
    "reason",
]


def _respondent_matrix(individual: pd.DataFrame, items: list[str]):
    """(ids, R × K utilities, weights, value) from the long individual layout."""
    u = individual.pivot_table(
        index="respondent_id", columns="item", values="utility", aggfunc="mean", sort=False
    )
    u = u.reindex(columns=items)
    first = individual.drop_duplicates("respondent_id").set_index("respondent_id")
    w = (
        first["weight"].reindex(u.index).to_numpy(dtype=float)
        if "weight" in first.columns
        else np.ones(len(u))
    )
    v = (
        first["value"].reindex(u.index).to_numpy(dtype=float)
        if "value" in first.columns
        else np.full(len(u), np.nan)
    )
    w = np.where(np.isfinite(w) & (w > 0), w, 1.0)
    return u.index.to_numpy(), u.to_numpy(dtype=float), w, v


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    return float(x[order][min(np.searchsorted(cw, q * cw[-1], side="left"), len(x) - 1)])


def _draft_segment(
    seg: str, scores: pd.DataFrame, resp, settings: PricingSettings, warnings: list[str]
) -> list[dict]:
    """Package rows of one segment (see the module docstring for the rules)."""
    tiers = list(settings.tiers)
    scores = scores.sort_values("share", ascending=False, kind="stable")
    items = scores["item"].astype(str).tolist()
    share = dict(zip(items, scores["share"].to_numpy(dtype=float), strict=True))
    K = len(items)
    mean_share = 100.0 / K
    low = {i: share[i] < settings.low_share_ratio * mean_share for i in items}
    col = {i: j for j, i in enumerate(items)}
    if resp is not None:
        ids, U, w, value = resp
        above = U > np.nanmean(U, axis=1, keepdims=True)
        appeal_arr = (w[:, None] * above).sum(axis=0) / w.sum()
        appeal = dict(zip(items, appeal_arr, strict=True))
    else:
        appeal = dict.fromkeys(items, float("nan"))
    placed: dict[str, dict] = {}

    def place(item, tier, reason, reach=float("nan")):
        placed[item] = {
            "segment": seg,
            "package": tier,
            "feature": item,
            "share": share[item],
            "appeal": appeal[item],
            "reach": reach,
            "reason": reason,
        }

    for code, tier in settings.pins.items():
        if code in share:
            place(code, tier, f"pinned to {tier} in study.toml")
    counts = {t: sum(1 for p in placed.values() if p["package"] == t) for t in tiers}
    for t in tiers:
        cap = settings.cap(t)
        if cap is not None and counts[t] > cap:
            warnings.append(
                f"{seg}: {counts[t]} features are pinned to {t}, more than its cap of {cap}; the pins are kept."
            )

    def room(t):
        cap = settings.cap(t)
        return (
            math.inf if cap is None else cap - sum(1 for p in placed.values() if p["package"] == t)
        )

    # entry tier: table stakes
    entry = tiers[0]
    bar = settings.stakes_share_ratio * mean_share
    by_share = {i for i in items if share[i] >= bar}
    by_appeal = {i for i in items if resp is not None and appeal[i] >= settings.stakes_appeal}
    # either signal is enough: appeal from noisy individual scores (counts) understates how
    # widely a feature is valued, a flat share profile understates how strongly
    stakes = [
        i for i in items if (i in by_share or i in by_appeal) and i not in placed and not low[i]
    ]

    def why(i):
        parts = []
        if i in by_appeal:
            parts.append(f"{appeal[i]:.0%} of the segment value it above their average")
        if i in by_share:
            parts.append(
                f"share {share[i]:.1f} ≥ {settings.stakes_share_ratio:g}× the average ({bar:.1f})"
            )
        elif resp is not None:
            parts.append(f"share {share[i]:.1f}")
        return "table stakes: " + "; ".join(parts)

    if not stakes and not any(p["package"] == entry for p in placed.values()):
        stakes = [i for i in items if i not in placed and not low[i]][:1]

        def why(i):
            return (
                f"the segment's top share ({share[i]:.1f}); no feature clears the table-stakes bar"
            )

    reached_all = np.zeros(0)
    if resp is not None:
        reached_all = np.zeros(U.shape[0], dtype=bool)
        for i in [i for i, p in placed.items() if p["package"] == entry]:
            reached_all |= above[:, col[i]]
    for i in stakes:
        if room(entry) <= 0:
            break
        r = float("nan")
        if resp is not None:
            reached_all |= above[:, col[i]]
            r = float((w * reached_all).sum() / w.sum())
        place(i, entry, why(i), r)

    # higher tiers
    T = len(tiers)
    higher = tiers[1:]
    for j, tier in enumerate(higher, start=1):
        last = j == T - 1
        cands = [i for i in items if i not in placed and not low[i]]
        if resp is None:
            # no individual data: split the remaining valued features by share across tiers
            n_left = len(higher) - j + 1
            take = len(cands) if last else math.ceil(len(cands) / n_left)
            for i in cands[:take]:
                if room(tier) <= 0:
                    break
                place(
                    i,
                    tier,
                    f"share {share[i]:.1f} (no individual utilities: remaining features split across the higher tiers by share)",
                )
            continue
        lower = {i for i, p in placed.items() if p["package"] in tiers[:j]}
        remaining = np.array(
            [
                col[i]
                for i in items
                if i not in lower and placed.get(i, {}).get("package") != ADD_ON
            ],
            dtype=int,
        )
        q = j / T
        known = np.isfinite(value)
        if known.mean() >= 0.5:
            threshold = _weighted_quantile(value[known], w[known], q)
            target = known & (value >= threshold)
            who = f"the top {1 - q:.0%} of the segment by the price they call expensive (≥ {threshold:,.0f})"
        else:
            target = np.ones(len(w), dtype=bool)
            who = "the segment (no Van Westendorp answers to pick its high-value respondents)"
        pool = [i for i in cands if room(tier) > 0]
        if pool and target.any() and remaining.size:
            # reach among the features the lower tiers lack, by wtp.turf's greedy ladder
            rem_items = [items[c] for c in remaining]
            frame = pd.DataFrame(
                {
                    "respondent_id": np.repeat(ids[target], len(rem_items)),
                    "item": np.tile(rem_items, int(target.sum())),
                    "utility": U[np.ix_(target, remaining)].ravel(),
                }
            )
            ladder = turf(
                frame, 1, reach="top_n", top_n=settings.reach_top_n, weights=w[target], items=pool
            ).ladder
            picked = any(p["package"] == tier for p in placed.values())
            for step in ladder.itertuples(index=False):
                if room(tier) <= 0 or (step.added_reach < settings.min_reach_gain and picked):
                    break
                before = step.reach - step.added_reach
                place(
                    step.item,
                    tier,
                    f"reaches {step.added_reach:.0%} more of {who}: a top-{settings.reach_top_n} feature among those the lower tiers lack (reach {before:.0%} → {step.reach:.0%}; share {share[step.item]:.1f})",
                    step.reach,
                )
                picked = True
        if last:
            for i in [i for i in items if i not in placed and not low[i]]:
                if room(tier) <= 0:
                    break
                place(i, tier, f"completes the top tier (share {share[i]:.1f})")

    for i in items:
        if i in placed:
            continue
        if low[i]:
            place(
                i,
                ADD_ON,
                f"low value: share {share[i]:.1f} is under {settings.low_share_ratio:g}× the average ({settings.low_share_ratio * mean_share:.1f}); drop it or sell it as an add-on",
            )
        else:
            place(
                i,
                ADD_ON,
                f"valued (share {share[i]:.1f}) but every tier is at its cap; sell it as an add-on",
            )
    order = {t: k for k, t in enumerate([*tiers, ADD_ON])}
    rows = list(placed.values())
    rows.sort(key=lambda r: order[r["package"]])  # stable: keeps the order of choice within a tier
    return rows


def draft_packages(
    item_scores: pd.DataFrame,
    individual_utilities: pd.DataFrame | None = None,
    *,
    settings: PricingSettings | None = None,
    labels: dict[str, str] | None = None,
    segments: list[str] | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Good/better/best packages per segment from MaxDiff results.

    Parameters
    ----------
    item_scores
        ===========  =====================================================
        segment      segment (``all`` for the single book's packages)
        item         feature code
        share        probability-scaled share, 0–100 within a segment
        lower/upper  optional 95% interval of the share
        ===========  =====================================================
    individual_utilities
        Optional long frame ``respondent_id, segment, item, utility`` with optional ``weight``
        (survey weight) and ``value`` (a price level that marks high-value respondents, e.g.
        the Van Westendorp "expensive" answer). Without it, appeal and reach are not available
        and tiers follow shares alone.
    settings
        Tiers, pins, caps and thresholds.
    labels
        Feature code → label.
    segments
        Which segments to draft (default: every segment in ``item_scores``).

    Returns
    -------
    (DataFrame, list of str)
        Packages in :data:`PACKAGE_COLUMNS` layout and warnings.
    """
    settings = settings or PricingSettings()
    labels = labels or {}
    warnings: list[str] = []
    scores = item_scores.copy()
    scores["item"] = scores["item"].astype(str)
    segs = segments if segments is not None else list(dict.fromkeys(scores["segment"].astype(str)))
    unknown = sorted(set(settings.pins) - set(scores["item"]))
    if unknown:
        warnings.append(
            "Pinned features not among the MaxDiff items (ignored): " + ", ".join(unknown) + "."
        )
    rows = []
    for seg in segs:
        sc = scores[scores["segment"].astype(str) == seg]
        if sc.empty:
            continue
        items = sc.sort_values("share", ascending=False, kind="stable")["item"].tolist()
        resp = None
        if individual_utilities is not None and len(individual_utilities):
            ind = (
                individual_utilities
                if seg == ALL
                else individual_utilities[individual_utilities["segment"].astype(str) == seg]
            )
            if len(ind):
                resp = _respondent_matrix(ind, items)
        seg_rows = _draft_segment(seg, sc, resp, settings, warnings)
        extra = sc.set_index("item")
        for r in seg_rows:
            r["label"] = labels.get(r["feature"], r["feature"])
            r["lower"] = (
                float(extra.loc[r["feature"], "lower"])
                if "lower" in extra.columns
                else float("nan")
            )
            r["upper"] = (
                float(extra.loc[r["feature"], "upper"])
                if "upper" in extra.columns
                else float("nan")
            )
        rows += seg_rows
    out = pd.DataFrame(rows, columns=PACKAGE_COLUMNS)
    return out, warnings


def draft_single_book(
    packages: pd.DataFrame,
    order: list[str],
    settings: PricingSettings,
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The single book's packages (segment ``'all'``) aimed at the segments (see the module
    docstring). ``packages`` holds every segment's own packages and the ``'all'`` draft;
    ``order`` lists the segments from the lowest to the highest value of the product."""
    labels = labels or {}
    tiers = list(settings.tiers)
    pooled = packages[packages["segment"] == ALL]
    if len(order) < len(tiers) or pooled.empty:
        return pooled.copy()
    groups = [list(g) for g in np.array_split(np.array(order, dtype=object), len(tiers))]
    share = pooled.set_index("feature")["share"].to_dict()
    rows, placed = [], set()
    for j, (tier, group) in enumerate(zip(tiers, groups, strict=True)):
        want = packages[packages["segment"].isin(group) & packages["package"].isin(tiers[: j + 1])]
        new = [
            f
            for f in dict.fromkeys(
                want.sort_values("share", ascending=False, kind="stable")["feature"].astype(str)
            )
            if f and f not in placed
        ]
        cap = settings.cap(tier)
        if cap is not None:
            new = new[:cap]
        if not new:
            rest = [
                f
                for f in pooled.sort_values("share", ascending=False, kind="stable")[
                    "feature"
                ].astype(str)
                if f
                and f not in placed
                and f in set(packages.loc[packages["package"] != ADD_ON, "feature"].astype(str))
            ]
            new = rest[:1]
        aimed = ", ".join(group)
        for f in new:
            rows.append(
                {
                    "segment": ALL,
                    "package": tier,
                    "feature": f,
                    "label": labels.get(f, f),
                    "share": share.get(f, np.nan),
                    "reason": f"aimed at {aimed}: in {'their' if len(group) > 1 else 'its'} own {tier} or below",
                }
            )
            placed.add(f)
    for f in pooled["feature"].astype(str):
        if f and f not in placed:
            rows.append(
                {
                    "segment": ALL,
                    "package": ADD_ON,
                    "feature": f,
                    "label": labels.get(f, f),
                    "share": share.get(f, np.nan),
                    "reason": "in no segment's tiers up to the one aimed at it: an add-on",
                }
            )
    out = pd.DataFrame(rows, columns=PACKAGE_COLUMNS)
    return out
