"""What each respondent would pay: the product the Van Westendorp question showed, and each feature.

Everything here reads earlier stages' results (and the validated answer frames they were
estimated from); nothing is re-estimated.

Value of the described product (``base``, respondent × draw)
=============================================================

======================== =========================================================================
source                   per respondent i and draw d (u_id uniform on [0, 1])
======================== =========================================================================
Van Westendorp + NMS     the respondent's own stated demand curve P_i(p): ``c_i`` (calibrated
                         likelihood at their "cheap" price) up to "cheap", linear to ``e_i`` at
                         "expensive", linear to 0 at "too expensive"; the draw is its inverse,
                         ``R_id = P_i⁻¹(u_id)`` (``-inf`` — no purchase — when u_id ≥ c_i), so the
                         mean take-up of the product at price p over draws is P_i(p)
Van Westendorp, no NMS   as above with c_i = e_i = 1: everyone buys below their reservation,
                         an upper bound on take-up (calibration fixes the level)
conjoint, HB             posterior draw d of the respondent's part-worths:
                         ``(u(reference product) − u(none)) / −β_price``, with Gumbel choice noise
                         of scale ``1 / −β_price`` in money
conjoint, MNL            the segment's coefficients, a draw from their sampling distribution per d,
                         the same for every respondent of the segment, with the Gumbel noise
======================== =========================================================================

Money value of a feature (respondent × feature, never negative)
================================================================

======================== =========================================================================
feature is …             money value
======================== =========================================================================
a conjoint level         ``max(0, β_has − β_lacks) / −β_price`` (HB: posterior means per
                         respondent; MNL: the segment's); a respondent who would rather not
                         have it ignores it (free disposal), hence the floor at 0
a MaxDiff item only      the bridge: ``K_s · share_ik ^ g``, the respondent's probability-
                         scaled MaxDiff share (0–100; HB, else the segment's) to a power g,
                         anchored on the features that are both MaxDiff items and conjoint
                         levels. One anchor: g = 1 (money proportional to the share). Two or
                         more: g is the slope of log mean money on log mean share over the
                         anchors, pooled over segments (each segment's level removed; weights
                         ∝ money², so anchors worth little barely count), held to [1/3, 3].
                         ``K_s = Σ_anchors mean money / Σ_anchors mean share^g`` (pooled
                         over segments when a segment's anchors carry no value). Never negative
no anchor                no money value: tiers that add such features are not priced, and the
                         result says why
======================== =========================================================================

Each respondent's money scale: a MaxDiff share says how much a feature matters against the
others, not in money, and a segment-level (MNL) value is everyone's; both are scaled by the
respondent's own price level, ``reference_i / mean reference`` (the value of what the Van
Westendorp question showed), keeping each feature's segment mean
(:func:`at_own_price_level`): someone who would pay twice as much for the product pays twice
as much for its features. Only a feature valued from the respondent's own HB part-worths keeps
its value, since their own price coefficient already sets its scale. Measured on the tier worlds
(default HB run, 3 answer processes × 2 seeds, judged by the worlds' truth): without this scale
the HB money values of MaxDiff features spread 0.15–0.5× as widely as the truth, tier take-up
was too all-or-nothing, the single book's revenue was over-predicted by up to 44% and own books
reached 95% of their best revenue in 1 of 6; with it, 6 of 6.

Too cheap (``[pricing] too_cheap = "exclude"``): a respondent's quality threshold lies between
their "too cheap" answer (below it they doubt the product) and their "cheap" one (there it is a
bargain), as their reservation value lies between "expensive" and "too expensive"; draw d takes
``T_id = too_cheap_i + v_id · (cheap_i − too_cheap_i)``, v_id uniform on [0, 1], so no
ladder rests on the exact point of a bracket the answers leave open. A package's threshold
scales with its value (``T_id · (reference_i + extra_ik) / reference_i``).

Which tier (Van Westendorp values with a conjoint scale per respondent): money alone would send
everyone to the tier with the largest surplus, all or nothing, when people choose among tiers as
noisily as they chose among conjoint profiles. Each respondent's choice among the tiers carries
Gumbel noise of their own price scale (:func:`tier_noise`), the entry package sharing not
buying's draw, so whether they buy at all stays what their answers say: with HB their own
``1/−β_price``; with the MNL (``--fast``) the segment's
:class:`wtp.conjoint.estimate.LevelNoise` at their Van Westendorp price level. The plain segment
MNL's one scale also carries how much people differ (measured 2–3.5× each person's noise), so
without price levels the choice stays by money alone. Measured on 12 tier worlds (HB, 3 answer
processes × 4 seeds): the tier mix's total variation distance from the truth fell from 0.24 to
0.06 and the predicted uplift of multiple over single came within ±25% of the true uplift in 12
of 12 (4 of 12 without); on 15 (``--fast``, seeds 0–4) from 0.28 to 0.08, and 13 of 15 (12).

Uncertainty: draw d also reweights respondents by a Bayesian bootstrap (``Exp(1)`` weights
times the survey weight), so intervals carry sampling error as well as each respondent's own
stated uncertainty and, with HB, the posterior.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from wtp.pricing.noise import rfc_gumbel


@dataclass(frozen=True)
class SegmentValues:
    """Plain arrays of one segment's valuation (see the module docstring)."""

    segment: str
    respondent_id: np.ndarray  # N
    weight: np.ndarray  # N survey weights
    base: np.ndarray  # N × D
    boot: np.ndarray  # D × N bootstrap × survey weights
    features: tuple[str, ...]
    feature_values: np.ndarray  # N × F (NaN: no money value)
    described: np.ndarray  # F bool: in the product ``base`` describes
    reference: np.ndarray  # N: point value of the described product (scales too-cheap doubts)
    too_cheap: np.ndarray | None = None  # N × D (or N): quality threshold of the described product
    shock: np.ndarray | None = None  # N × D × (T + 1) money-valued choice noise, none last
    noise_seed: int | None = None  # the shock is tier_noise(scale, …, noise_seed)
    scale: np.ndarray | None = None  # N: price_scale (1/−β_price in money); None without a conjoint
    source: str = ""
    feature_source: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(len(self.respondent_id))

    def extra(self, membership: np.ndarray) -> np.ndarray:
        """N × K value of each package beyond the described product (membership K × F)."""
        m = np.asarray(membership, dtype=float) - self.described[None, :].astype(float)
        return np.nan_to_num(self.feature_values, nan=0.0) @ m.T

    def thresholds(self, membership: np.ndarray) -> np.ndarray | None:
        """N × D × K too-cheap price of each package: the threshold scaled by its value."""
        return package_thresholds(
            self.too_cheap, self.reference, self.extra(membership), self.base.shape[1]
        )

    def shocks(self, k: int) -> np.ndarray | None:
        if self.shock is None:
            return None
        return np.concatenate([self.shock[:, :, :k], self.shock[:, :, -1:]], axis=2)


def package_thresholds(
    too_cheap: np.ndarray | None, reference: np.ndarray, extra: np.ndarray, draws: int
) -> np.ndarray | None:
    """N × D × K: each draw's quality threshold (N × D, or N for one per respondent) times each
    package's value over the described product's (``reference``)."""
    if too_cheap is None:
        return None
    tc = np.asarray(too_cheap, dtype=float)
    tc = np.broadcast_to(tc[:, None], (len(tc), draws)) if tc.ndim == 1 else tc
    ref = reference[:, None]
    ratio = np.where(ref > 0, (ref + extra) / np.where(ref > 0, ref, 1.0), 1.0)
    return tc[:, :, None] * np.maximum(ratio, 0.0)[:, None, :]


# --------------------------------------------------------------------------------------------
# Van Westendorp


def _vw_frame(vw, answers: pd.DataFrame) -> pd.DataFrame:
    """The respondents the Van Westendorp result kept, with calibrated NMS probabilities."""
    from wtp.vanwestendorp import kept_answers, nms_probabilities

    kept = kept_answers(answers, vw.settings)
    if vw.has_nms and {"buy_cheap", "buy_expensive"} <= set(kept.columns):
        for c in ("buy_cheap", "buy_expensive"):
            kept[f"p_{c}"] = nms_probabilities(
                kept[c],
                scale=vw.settings.nms_scale,
                calibration=vw.settings.nms_calibration,
                column=c,
                rows=kept["row"].to_numpy(),
            )
    return kept


#: how a segment's values from Van Westendorp answers begin their ``source`` (the second
#: opinion of the conjoint is asked for those only)
VW_SOURCE = "Van Westendorp"


def reservation_draws(
    cheap, expensive, too_expensive, p_cheap, p_expensive, u, at_too_expensive: float = 0.0
) -> np.ndarray:
    """Inverse of each respondent's NMS curve at uniforms ``u`` (N × D); ``-inf``: no purchase."""
    c = np.asarray(p_cheap, dtype=float)[:, None]
    e = np.asarray(p_expensive, dtype=float)[:, None]
    e = np.minimum(e, c)  # a likelihood that rises with price is read as flat
    z = np.minimum(at_too_expensive, e)
    ch, ex, te = (np.asarray(x, dtype=float)[:, None] for x in (cheap, expensive, too_expensive))
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = np.where(e > z, ex + (te - ex) * (e - u) / (e - z), ex)  # u in [z, e)
        middle = np.where(c > e, ch + (ex - ch) * (c - u) / (c - e), ch)  # u in [e, c)
    r = np.where(u < z, te, np.where(u < e, upper, np.where(u < c, middle, -np.inf)))
    return r


def vw_base(
    vw, answers: pd.DataFrame, segment: str, draws: int, rng: np.random.Generator
) -> dict | None:
    from wtp.vanwestendorp import price_level

    kept = _vw_frame(vw, answers)
    kept = kept[kept["segment"].astype(str) == segment]
    if kept.empty:
        return None
    n = len(kept)
    u = rng.random((n, draws))
    if "p_buy_cheap" in kept.columns:
        pc = kept["p_buy_cheap"].to_numpy(dtype=float)
        pe = kept["p_buy_expensive"].to_numpy(dtype=float)
        # a respondent who skipped a likelihood gets the segment's mean answer
        pc = np.where(np.isfinite(pc), pc, np.nanmean(pc) if np.isfinite(pc).any() else 1.0)
        pe = np.where(np.isfinite(pe), pe, np.nanmean(pe) if np.isfinite(pe).any() else 1.0)
        source = f"{VW_SOURCE} + NMS"
    else:
        pc = pe = np.ones(n)
        source = (
            f"{VW_SOURCE} without NMS (everyone buys below their reservation price: an upper bound)"
        )
    at_te = float(getattr(vw.settings, "nms_too_expensive", 0.0))
    base = reservation_draws(
        kept["cheap"], kept["expensive"], kept["too_expensive"], pc, pe, u, at_te
    )
    ex = kept["expensive"].to_numpy(dtype=float)
    te = kept["too_expensive"].to_numpy(dtype=float)
    tc = kept["too_cheap"].to_numpy(dtype=float)
    ch = kept["cheap"].to_numpy(dtype=float)
    bracket = np.where(np.isfinite(ch) & (ch > tc), ch - tc, 0.0)
    threshold = tc[:, None] + rng.random((n, draws)) * bracket[:, None]
    return {
        "respondent_id": kept["respondent_id"].astype(str).to_numpy(),
        "weight": kept["weight"].astype(float).to_numpy(),
        "base": base,
        "reference": price_level(ex, te),
        "too_cheap": threshold,
        "source": source,
    }


# --------------------------------------------------------------------------------------------
# Conjoint


def _reference_row(coding) -> np.ndarray:
    row = np.zeros(coding.n_parameters)
    for a in coding.levels:
        row += coding.level_rows(a)[0]
    return row


def conjoint_base(
    conjoint,
    answers: pd.DataFrame | None,
    segment: str,
    draws: int,
    n_packages: int,
    rng: np.random.Generator,
) -> dict | None:
    """Value of the conjoint's reference product (every attribute at its first level) in money."""
    if conjoint is None or not conjoint.coding.none:
        return None
    c = conjoint.coding
    ref = _reference_row(c) - c.none_row()
    slope_row = c.price_slope_row()
    ind = conjoint.individual
    if ind is not None:
        mask = np.asarray(ind.segment).astype(str) == segment
        if not mask.any():
            return None
        B = ind.draws[mask]  # n × S × P
        pick = rng.integers(0, B.shape[1], size=draws)
        Bd = B[:, pick, :]  # n × D × P
        slope = Bd @ slope_row
        value = Bd @ ref
        ids = np.asarray(ind.respondent_id)[mask].astype(str)
        w = np.asarray(ind.weight, dtype=float)[mask]
        source = "conjoint (HB posterior draws)"
    else:
        if segment not in conjoint.betas:
            return None
        beta, cov = conjoint.betas[segment], conjoint.covariances[segment]
        Bd = rng.multivariate_normal(beta, cov, size=draws, method="eigh")  # D × P
        if answers is not None and "segment" in answers.columns:
            f = answers[answers["segment"].astype(str) == segment].drop_duplicates("respondent_id")
            ids = f["respondent_id"].astype(str).to_numpy()
            w = f["weight"].astype(float).to_numpy() if "weight" in f.columns else np.ones(len(f))
        else:
            n = (
                int(conjoint.fit.set_index("segment").loc[segment, "n_respondents"])
                if segment in set(conjoint.fit["segment"])
                else 100
            )
            ids = np.array([f"{segment}#{i + 1}" for i in range(n)])
            w = np.ones(n)
        slope = np.broadcast_to(Bd @ slope_row, (len(ids), draws))
        value = np.broadcast_to(Bd @ ref, (len(ids), draws))
        source = "conjoint (segment MNL, coefficient draws)"
    ok = slope < 0
    scale = np.where(ok, -1.0 / np.where(ok, slope, -1.0), np.nan)
    base = np.where(ok, value * scale, -np.inf)
    shock = (
        rng.gumbel(size=(len(ids), draws, n_packages + 1))
        * np.nan_to_num(scale, nan=0.0)[:, :, None]
    )
    ref_point = np.nanmedian(np.where(np.isfinite(base), base, np.nan), axis=1)
    return {
        "respondent_id": ids,
        "weight": w,
        "base": base,
        "shock": shock,
        "reference": np.nan_to_num(ref_point, nan=0.0),
        "too_cheap": None,
        "source": source,
    }


def conjoint_feature_map(
    conjoint, items: list[str], labels: dict[str, str], explicit: dict[str, str]
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """MaxDiff feature → (conjoint attribute, level): explicit (``[packages] conjoint``), or an
    item named like a two-level attribute (its non-reference level)."""
    notes: list[str] = []
    out: dict[str, tuple[str, str]] = {}
    if conjoint is None:
        return out, notes
    levels = conjoint.attributes
    for code, spec in explicit.items():
        attr, _, lev = str(spec).partition("=")
        if attr in levels and lev in levels[attr]:
            out[str(code)] = (attr, lev)
        else:
            notes.append(
                f"[packages] conjoint maps {code} to {spec}, which is not a tested attribute level; ignored."
            )
    from wtp.conjoint.data import ABSENCE_LEVELS

    by_slug = {_slug(a): a for a, lv in levels.items() if len(lv) == 2}
    for code in items:
        if code in out:
            continue
        for name in (code, labels.get(code, "")):
            a = by_slug.get(_slug(name))
            if a:
                # "has it": the level that does not mean absence, whatever order study.toml
                # gives (a reference of "yes" must not turn the feature's value into lacking it)
                lv = levels[a]
                absent = [x for x in lv if str(x).strip().lower() in ABSENCE_LEVELS]
                out[code] = (a, lv[0] if absent == [lv[1]] else lv[1])
                break
    return out, notes


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def conjoint_money(
    conjoint, segment: str, ids: np.ndarray, mapping: dict[str, tuple[str, str]]
) -> tuple[np.ndarray, dict[str, str]]:
    """N × len(mapping) money value of each mapped feature (NaN for respondents not in the
    conjoint: filled with the segment mean by the caller)."""
    feats = list(mapping)
    out = np.full((len(ids), len(feats)), np.nan)
    if not feats:
        return out, {}
    c = conjoint.coding
    deltas = []
    for f in feats:
        a, lv = mapping[f]
        rows = c.level_rows(a)
        has = c.levels[a].index(lv)
        # has − lacks: against the other level of a two-level attribute, else the reference
        lacks = 1 - has if len(c.levels[a]) == 2 else 0
        deltas.append(rows[has] - rows[lacks])
    D = np.array(deltas)  # F × P
    slope_row = c.price_slope_row()
    ind = conjoint.individual
    if ind is not None:
        mask = np.asarray(ind.segment).astype(str) == segment
        mean = ind.draws[mask].mean(axis=1)  # n × P
        slope = mean @ slope_row
        money = np.where(slope[:, None] < 0, np.maximum(mean @ D.T, 0.0) / -slope[:, None], np.nan)
        pos = pd.Index(np.asarray(ind.respondent_id)[mask].astype(str)).get_indexer(ids)
        out[pos >= 0] = money[pos[pos >= 0]]
        src = "conjoint part-worths per respondent (HB), has − lacks over −β_price"
    elif segment in conjoint.betas:
        beta = conjoint.betas[segment]
        slope = float(beta @ slope_row)
        if slope < 0:
            out[:] = np.maximum(D @ beta, 0.0) / -slope
        src = "conjoint part-worths of the segment (MNL), has − lacks over −β_price"
    else:
        src = "not in the conjoint"
    return out, dict.fromkeys(feats, src)


# --------------------------------------------------------------------------------------------
# MaxDiff bridge


def maxdiff_shares(
    maxdiff, segment: str, ids: np.ndarray, items: list[str]
) -> tuple[np.ndarray, str]:
    """N × K probability-scaled shares (0–100): each respondent's own (HB) or the segment's."""
    from wtp.maxdiff import probability_shares

    k = int(getattr(maxdiff, "k", 4) or 4)
    ind = getattr(maxdiff, "individual_utilities", None)
    if ind is not None and len(ind):
        sub = ind[ind["segment"].astype(str) == segment] if "segment" in ind.columns else ind
        wide = sub.pivot_table(
            index="respondent_id", columns="item", values="utility", aggfunc="mean"
        ).reindex(columns=items)
        wide.index = wide.index.astype(str)
        sh = probability_shares(wide.to_numpy(dtype=float), k)
        sh = 100 * sh / sh.sum(axis=1, keepdims=True)
        out = np.full((len(ids), len(items)), np.nan)
        pos = wide.index.get_indexer(ids)
        out[pos >= 0] = sh[pos[pos >= 0]]
        mean = np.nanmean(sh, axis=0) if len(sh) else np.full(len(items), 100 / len(items))
        out = np.where(np.isnan(out), mean[None, :], out)
        return out, "each respondent's MaxDiff share (HB)"
    sc = maxdiff.item_scores
    sc = (
        sc[sc["segment"].astype(str) == segment]
        .set_index("item")["share"]
        .reindex(items)
        .to_numpy(dtype=float)
    )
    return np.broadcast_to(
        sc, (len(ids), len(items))
    ).copy(), "the segment's MaxDiff share (no individual utilities)"


@dataclass(frozen=True)
class Bridge:
    """Money of a MaxDiff item per segment, ``K_s · share ** power``, and what it rests on."""

    per_point: dict[str, float]  # K_s
    anchors: tuple[str, ...]
    note: str
    power: float = 1.0  # 1: money proportional to the probability-scaled share
    own_weight: dict[str, float] = field(default_factory=dict)  # of the segment's own anchors

    def money(self, segment: str, shares: np.ndarray) -> np.ndarray:
        return self.per_point[segment] * shares**self.power


#: anchors whose log mean shares spread less than this do not identify the power
MIN_ANCHOR_SPREAD = 0.25
#: the estimated power is held to this range (beyond it one anchor's noise would decide)
POWER_RANGE = (1 / 3, 3.0)
#: anchors worth less than about this share of a segment's price level in all do not measure its
#: money scale (the bridge leans on the pooled one)
ANCHOR_RESOLUTION = 0.05


def _power(x: np.ndarray, y: np.ndarray, v: np.ndarray) -> float:
    """Weighted least-squares slope of y on x (NaN when x hardly spreads); x and y already have
    each segment's weighted level removed."""
    ok = np.isfinite(x) & np.isfinite(y) & (v > 0)
    x, y, v = x[ok], y[ok], v[ok]
    if len(x) < 2 or np.ptp(x) < MIN_ANCHOR_SPREAD:
        return np.nan
    return float(np.clip((v * x) @ y / ((v * x) @ x), *POWER_RANGE))


def bridge(
    shares: dict[str, np.ndarray],
    money: dict[str, np.ndarray],
    weights: dict[str, np.ndarray],
    items: list[str],
    anchors: list[str],
    levels: dict[str, float] | None = None,
) -> Bridge:
    """Money of a feature from its probability-scaled MaxDiff share, anchored on the features
    that are also conjoint levels: ``K_s · share ** power``.

    One anchor (or anchors of nearly equal share) cannot tell how shares scale with money: money
    is taken as proportional to the share (power 1, the dollars-per-share-point convention) and
    the note says so. Two or more: the power is the slope of log mean money on log mean share
    over the anchors, pooled over segments (each segment's level removed: how shares scale with
    money is the questionnaire's — its answer noise, the shares' saturation — not the
    segment's), weighted by money² within a segment as a fit in money would be, so an anchor
    worth little, whose log a little noise throws far, barely counts; held to [1/3, 3].
    The scale is measured in units of each segment's price level ``levels[s]`` (the median
    value of what the Van Westendorp question showed; 1 without it): the segment's own
    ``m_s / d_s`` — ``m_s`` its anchors' mean money per price level, ``d_s`` their mean
    share^power summed — and the pooled ``Σ t_s m_s / Σ t_s d_s``.
    ``K_s = level_s · (t_s·own + (1 − t_s)·pooled)`` with ``t_s = m_s² / (m_s² + r²)``, ``r`` =
    :data:`ANCHOR_RESOLUTION` (``t_s = 1`` without price levels, 0 where the anchors carry no
    value): anchors the conjoint values at nothing or at a few percent of the price level (HB put
    a low-price segment's at 0.1%, a twentieth of the truth) do not measure its scale, which then
    is the other segments' at its own price level. (Before, that pooled
    scale was taken at the pooled price level and valued a low-price segment's top features at
    10× the truth. Pooling informative segments too, by how much preference their anchors hold,
    was measured on the tier worlds and cost the single book: 13 → 12 of 15 at ≥ 95%.)"""
    if not anchors:
        return Bridge(
            {}, (), "no MaxDiff item is also a conjoint level: no bridge from preferences to money"
        )
    col = [items.index(a) for a in anchors]
    given = levels is not None
    levels = {s: (levels or {}).get(s, 1.0) for s in shares}
    # each segment's anchor money per price level, and how far it measures the segment's scale:
    # anchors worth nothing, or a few percent of the price level in all, are below what a
    # conjoint resolves (its price grid spans every segment; a small part-worth is mostly noise
    # or shrinkage), so neither the power nor the segment's scale should rest on them
    own = {
        s: float(np.nansum((weights[s] / weights[s].sum()) @ np.nan_to_num(money[s], nan=0.0)))
        / levels[s]
        for s in shares
    }
    trust = {
        s: 0.0
        if own[s] <= 0
        else (own[s] ** 2 / (own[s] ** 2 + ANCHOR_RESOLUTION**2) if given else 1.0)
        for s in shares
    }
    xs, ys, vs = [], [], []
    for s in shares:
        w = weights[s] / weights[s].sum()
        m = w @ np.nan_to_num(money[s], nan=0.0)  # A: mean money of each anchor
        sh = w @ shares[s][:, col]
        ok = (m > 0) & (sh > 0)
        if ok.sum() >= 2 and trust[s] > 0:
            v = np.where(ok, m, 0.0) ** 2 / (m[ok] ** 2).sum()
            x = np.log(np.where(ok, sh, 1.0))
            y = np.log(np.where(ok, m, 1.0))
            xs.append(np.where(ok, x - v @ x, np.nan))
            ys.append(np.where(ok, y - v @ y, np.nan))
            vs.append(trust[s] * v)  # a segment counts as far as its anchors measure
    g = (
        _power(np.concatenate(xs), np.concatenate(ys), np.concatenate(vs))
        if xs and len(anchors) > 1
        else np.nan
    )
    power = g if np.isfinite(g) else 1.0
    depth = {
        s: float((weights[s] / weights[s].sum()) @ (shares[s][:, col] ** power).sum(axis=1))
        for s in shares
    }
    trust = {s: t if depth[s] > 0 else 0.0 for s, t in trust.items()}
    # money per price level per share^power, pooled over the segments whose anchors measure it
    num = sum(trust[s] * own[s] for s in shares)
    den = sum(trust[s] * depth[s] for s in shares)
    pooled = num / den if den > 0 and num > 0 else np.nan
    per = {}
    for s in shares:
        mine = own[s] / depth[s] if trust[s] > 0 else np.nan
        per[s] = levels[s] * (
            mine
            if not np.isfinite(pooled)  # no segment's anchors measure a scale
            else trust[s] * np.nan_to_num(mine) + (1 - trust[s]) * pooled
        )
    if np.isfinite(g):
        how = f"money ∝ share^{g:.2f}, the power from how money rises with share over the anchors"
        if g in POWER_RANGE:
            how += (
                f" (held at the bound {g:.2g}: the anchors would have it further out; check them)"
            )
    elif len(anchors) > 1:
        how = "money proportional to the share (the anchors' shares hardly differ, so they cannot tell how shares scale with money)"
    else:
        how = "money proportional to the share (one anchor cannot tell how shares scale with money: a second feature shared with the conjoint would)"
    note = (
        "MaxDiff shares anchored on "
        + ", ".join(anchors)
        + f" (features that are both MaxDiff items and conjoint levels): {how}"
    )
    leaning = [s for s in per if trust[s] < 0.5 and np.isfinite(per[s])]
    if leaning:
        whose, who = ("its", "it takes") if len(leaning) == 1 else ("each one's", "each takes")
        note += (
            f". {', '.join(leaning)}: the conjoint values the anchors at nothing or at a few "
            f"percent of {whose} price level, too little to measure a money scale; {who} the "
            "other segments' scale at its own price level"
        )
    return Bridge(per, tuple(anchors), note, power, trust)


# --------------------------------------------------------------------------------------------
# Every segment


def _column_means(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean of each column over its finite entries (NaN where none)."""
    have = np.isfinite(x)
    num = (np.where(have, x, 0.0) * w[:, None]).sum(axis=0)
    den = (have * w[:, None]).sum(axis=0)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _fill_mean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Missing rows (respondents an instrument did not ask) get the weighted mean of the rest."""
    if x.size == 0:
        return x
    return np.where(np.isfinite(x), x, _column_means(x, w)[None, :])


def _price_level(reference) -> float:
    """A segment's price level: the median value of what the Van Westendorp question showed
    (NaN where no respondent has one)."""
    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref) & (ref > 0)]
    return float(np.median(ref)) if len(ref) else np.nan


def at_own_price_level(money: np.ndarray, reference: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Money values (N × F) scaled by each respondent's own price level (the value of what the
    Van Westendorp question showed, against the segment's weighted mean), keeping each
    feature's weighted mean; a respondent without a price level keeps the value."""
    ref = np.asarray(reference, dtype=float)
    w = np.asarray(weight, dtype=float)
    has = np.isfinite(ref) & (ref > 0)
    r = np.where(has, ref / (np.sum(w[has] * ref[has]) / np.sum(w[has])), 1.0)
    x = money * r[:, None]
    ok = np.isfinite(money)
    wm = np.where(ok, w[:, None], 0.0)
    before = np.nansum(money * wm, axis=0)
    after = np.nansum(x * wm, axis=0)
    return x * np.where(after > 0, before / np.where(after > 0, after, 1.0), 1.0)[None, :]


def price_scale(v, conjoint) -> np.ndarray | None:
    """Per respondent of ``v`` (a :class:`SegmentValues`) 1/−β_price, the money one unit of
    conjoint utility is worth, which is also the scale of their choice noise in money: their
    own posterior mean (HB); with an MNL, the segment's ``level_noise`` at their own Van
    Westendorp price level where the conjoint estimated it, else the segment's; the
    segment's weighted mean for respondents the conjoint did not ask. ``None`` without a
    conjoint."""
    if conjoint is None:
        return None
    c = conjoint.coding
    slope_row = c.price_slope_row()
    ids = np.asarray(v.respondent_id).astype(str)
    out = np.full(len(ids), np.nan)
    ind = conjoint.individual
    if ind is not None:
        mask = np.asarray(ind.segment).astype(str) == v.segment
        slope = ind.draws[mask].mean(axis=1) @ slope_row
        scale = np.where(slope < 0, -1.0 / np.where(slope < 0, slope, -1.0), np.nan)
        pos = pd.Index(np.asarray(ind.respondent_id)[mask].astype(str)).get_indexer(ids)
        out[pos >= 0] = scale[pos[pos >= 0]]
    elif v.segment in conjoint.level_noise and v.source.startswith(VW_SOURCE):
        out[:] = conjoint.level_noise[v.segment].at(v.reference)
    elif v.segment in conjoint.betas:
        slope = float(conjoint.betas[v.segment] @ slope_row)
        if slope < 0:
            out[:] = -1.0 / slope
    if not np.isfinite(out).any():
        return None
    w = np.asarray(v.weight, dtype=float)
    ok = np.isfinite(out)
    return np.where(ok, out, float(np.sum(w[ok] * out[ok]) / np.sum(w[ok])))


def has_own_noise(conjoint, segment: str) -> bool:
    """Does the conjoint give each respondent of ``segment`` their own choice noise: HB
    part-worths, or an MNL with the respondents' price levels? The aggregate MNL's one
    coefficient does not: it averages respondents who differ, and its noise, 2–3× too wide,
    moved buyers between tiers far more than people do."""
    return conjoint is not None and (
        conjoint.individual is not None or segment in conjoint.level_noise
    )


def tier_noise(
    scale: np.ndarray, draws: int, n_packages: int, seed: int, total_draws: int | None = None
) -> np.ndarray:
    """N × D × (K + 1) money-valued choice noise, not buying last: Gumbel of each respondent's
    scale, the entry package (index 0) sharing not buying's draw. Whether someone buys at all
    stays what their Van Westendorp answers (and the calibration) say; which tier they take
    varies as their conjoint choices did.

    The errors come from the counter hash of :mod:`wtp.pricing.noise` keyed by ``seed``, over
    ``total_draws`` draws (the first ``draws`` kept), so the offline page redraws them from the
    seed instead of carrying them."""
    scale = np.asarray(scale, dtype=float)
    g = rfc_gumbel(seed, 0, len(scale), total_draws or draws, n_packages + 1)[:, :draws]
    g[:, :, n_packages] = g[:, :, 0]
    return scale[:, None, None] * g


def value_segments(
    segments: list[str],
    *,
    features: list[str],
    described: dict[str, set[str]],
    vw=None,
    vw_answers: pd.DataFrame | None = None,
    conjoint=None,
    conjoint_answers: pd.DataFrame | None = None,
    maxdiff=None,
    labels: dict[str, str] | None = None,
    explicit_map: dict[str, str] | None = None,
    n_packages: int = 3,
    draws: int = 200,
    rng: np.random.Generator,
) -> tuple[dict[str, SegmentValues], list[str]]:
    """One :class:`SegmentValues` per segment that has a valuation, notes on how, and warnings
    where the instruments disagree."""
    notes: list[str] = []
    warnings: dict[str, str] = {}  # segment → where its instruments disagree
    labels = labels or {}
    mapping, mnotes = conjoint_feature_map(conjoint, features, labels, explicit_map or {})
    notes += mnotes
    bases: dict[str, dict] = {}
    for s in segments:
        b = None
        if vw is not None and vw_answers is not None:
            b = vw_base(vw, vw_answers, s, draws, rng)
        if b is None and conjoint is not None:
            b = conjoint_base(conjoint, conjoint_answers, s, draws, n_packages, rng)
        if b is not None:
            bases[s] = b
    mapped = [f for f in features if f in mapping]
    money, shares, weights, sources = {}, {}, {}, {}
    for s, b in bases.items():
        ids, w = b["respondent_id"], b["weight"]
        m, src = (
            conjoint_money(conjoint, s, ids, {f: mapping[f] for f in mapped})
            if mapped
            else (np.zeros((len(ids), 0)), {})
        )
        money[s] = _fill_mean(m, w)
        sources[s] = {f: f"{src[f]} ({mapping[f][0]} = {mapping[f][1]})" for f in src}
        if maxdiff is not None and features:
            shares[s], how = maxdiff_shares(maxdiff, s, ids, features)
            for f in features:
                sources[s].setdefault(f, how)
        weights[s] = w
    levels = {s: _price_level(bases[s]["reference"]) for s in shares}
    br = (
        bridge(
            shares,
            {s: money[s] for s in shares},
            weights,
            features,
            [f for f in mapped if f in features],
            # price levels only where every segment has one (mixed units would skew the pool)
            levels if all(np.isfinite(x) for x in levels.values()) else None,
        )
        if shares
        else Bridge({}, (), "no MaxDiff")
    )
    if shares:
        notes.append(
            ("MaxDiff → money: " + br.note + ".")
            if br.anchors
            else "No bridge from MaxDiff preferences to money (no MaxDiff item is also a conjoint level): features the conjoint did not test have no money value, and tiers that add only such features are not priced."
        )
    out: dict[str, SegmentValues] = {}
    rescaled: set[str] = set()  # features scaled by each respondent's own price level
    noisy = False  # tier choice carries each respondent's own conjoint noise
    for s, b in bases.items():
        n = len(b["respondent_id"])
        fv = np.full((n, len(features)), np.nan)
        fsrc: dict[str, str] = {}
        lam = br.per_point.get(s, np.nan)
        for j, f in enumerate(features):
            if f in mapped:
                fv[:, j] = money[s][:, mapped.index(f)]
                fsrc[f] = sources[s][f]
            elif s in shares and np.isfinite(lam):
                fv[:, j] = br.money(s, shares[s][:, j])
                fsrc[f] = (
                    f"MaxDiff bridge: {lam:,.3g} per share point × {sources[s].get(f, 'share')}"
                    if br.power == 1.0
                    else f"MaxDiff bridge: {lam:,.3g} × share^{br.power:.2f}, with {sources[s].get(f, 'share')}"
                )
            else:
                fsrc[f] = "no money value (no bridge from MaxDiff to money)"
        w = b["weight"]
        ref = np.asarray(b["reference"], dtype=float)
        # a respondent's own part-worths carry their own money scale (their price coefficient);
        # a MaxDiff share is relative and a segment's value is everyone's, so those carry none
        own_scale = np.array(
            [f in mapped and conjoint.individual is not None for f in features], dtype=bool
        )
        scaled = ~own_scale & np.isfinite(fv).any(axis=0)
        if scaled.any() and np.isfinite(ref).any() and (ref > 0).any():
            fv[:, scaled] = at_own_price_level(fv[:, scaled], ref, w)
            rescaled.update(f for f, x in zip(features, scaled, strict=True) if x)
        fv, warning = _coherent(s, fv, ref, features, described.get(s, set()))
        if warning:
            warnings[s] = warning
        boot = rng.exponential(size=(draws, n)) * w[None, :]
        sv = SegmentValues(
            segment=s,
            respondent_id=b["respondent_id"],
            weight=w,
            base=b["base"],
            boot=boot,
            features=tuple(features),
            feature_values=fv,
            described=np.array([f in described.get(s, set()) for f in features], dtype=bool),
            reference=np.asarray(b["reference"], dtype=float),
            too_cheap=b["too_cheap"],
            shock=b.get("shock"),
            source=b["source"],
            feature_source=fsrc,
        )
        sv = replace(sv, scale=price_scale(sv, conjoint))  # tier noise, add-ons, the page
        if sv.shock is None and has_own_noise(conjoint, s) and sv.scale is not None:
            seed = int(rng.integers(2**31))
            shock = tier_noise(sv.scale, sv.base.shape[1], n_packages, seed)
            sv = replace(sv, shock=shock, noise_seed=seed)
            noisy = True
        out[s] = sv
    if noisy:
        notes.append(
            "Which tier a buyer takes is not decided by money alone: each respondent's choice among the tiers carries "
            + (
                "Gumbel noise of their own conjoint price scale (1/−β_price, HB), "
                if conjoint.individual is not None
                else "Gumbel noise of their own price scale (the conjoint MNL with a price coefficient that follows each "
                "respondent's own Van Westendorp price level, conjoint/level_noise.csv), "
            )
            + "as their conjoint choices did; whether they buy at all stays as their Van Westendorp answers say."
        )
    if rescaled:  # one note for the study: the rule is the same in every segment
        notes.append(
            f"Money values of {', '.join(f for f in features if f in rescaled)} are scaled by each respondent's own price level "
            "(someone who would pay twice as much for the product pays twice as much for its features; each segment's mean is kept): "
            "a MaxDiff share says how much a feature matters relative to the others, not in money"
            + (
                ""
                if conjoint is not None and conjoint.individual is not None
                else ", and the conjoint's values are the segment's"
            )
            + "."
        )
    return out, notes, warnings


def second_opinion(
    v: SegmentValues, conjoint, answers: pd.DataFrame | None, n_packages: int, rng
) -> SegmentValues | None:
    """The same segment valued by the conjoint alone: its reference product's money value per
    respondent and draw, with the segment's feature money values (matched by respondent, the
    segment's mean for anyone else). ``None`` unless ``v`` rests on Van Westendorp answers and
    the conjoint can value a product (a none option)."""
    if conjoint is None or not v.source.startswith(VW_SOURCE):
        return None
    d = v.base.shape[1]
    b = conjoint_base(conjoint, answers, v.segment, d, n_packages, rng)
    if b is None:
        return None
    ids = np.asarray(b["respondent_id"]).astype(str)
    w = np.asarray(b["weight"], dtype=float)
    pos = pd.Index(np.asarray(v.respondent_id).astype(str)).get_indexer(ids)
    fv = np.full((len(ids), len(v.features)), np.nan)
    fv[pos >= 0] = v.feature_values[pos[pos >= 0]]
    if (pos < 0).any():
        fv[pos < 0] = _column_means(v.feature_values, np.asarray(v.weight, dtype=float))
    return SegmentValues(
        segment=v.segment,
        respondent_id=ids,
        weight=w,
        base=b["base"],
        boot=rng.exponential(size=(d, len(ids))) * w[None, :],
        features=v.features,
        feature_values=fv,
        described=v.described,
        reference=np.asarray(b["reference"], dtype=float),
        too_cheap=None,
        shock=b["shock"],
        source=b["source"],
        feature_source=v.feature_source,
    )


#: features worth more than this × what the Van Westendorp question showed call for a check
INCOHERENT_RATIO = 3.0


def _coherent(
    segment: str, fv: np.ndarray, ref: np.ndarray, features: list[str], described: set[str]
) -> tuple[np.ndarray, str]:
    """Money values that the reservation value can hold, and a warning where it cannot.

    Under ``vw_describes = "full"`` the question showed every feature, so a respondent's
    features cannot be worth more together than that product: they are scaled down to it.
    Otherwise features add to what was shown and nothing bounds them, but features worth many
    times the product point to an anchor or a ``vw_describes`` that does not fit the study."""
    total = np.nansum(fv, axis=1)
    ok = np.isfinite(ref) & (ref > 0) & (total > 0)
    if not ok.any() or not len(features):
        return fv, ""
    if set(features) <= described:
        over = ok & (total > ref)
        if not over.any():
            return fv, ""
        scale = np.where(over, ref / np.where(over, total, 1.0), 1.0)
        return fv * scale[:, None], (
            f"{segment}: for {over.mean():.0%} of respondents the features' money values add up to more than the product with every feature "
            "they valued in the Van Westendorp question (vw_describes = 'full'); they are scaled down to it, since features cannot be worth "
            "more than the product that has them. Check the MaxDiff → money anchor."
        )
    ratio = float(np.median(total[ok] / ref[ok]))
    if round(ratio, 1) <= INCOHERENT_RATIO:  # as the warning prints it
        return fv, ""
    return fv, (
        f"{segment}: the money values of the features add up to {ratio:.1f}× the value of what the Van Westendorp question showed "
        "(median respondent), so tiers are priced far above it. Check [pricing] vw_describes (did the question show the product with "
        "these features?) and the MaxDiff → money anchor before using these prices."
    )
