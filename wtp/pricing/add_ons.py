"""Add-ons: features sold on top of a package, each priced after the book's tiers.

======================= ======================================================================
step                    what (respondent i, draw d, add-on a with price p_a)
======================= ======================================================================
who could buy it        ``c_id``: the tier package i takes in draw d from the book's priced
                        tiers (:func:`wtp.pricing.simulator.choices`, exactly as take-up, with
                        the same too-cheap rule and choice noise); i could buy a when
                        ``c_id ≥ 0`` and package ``c_id`` lacks a
who buys it             those with ``m_ia + σ_i ε ≥ p_a``: ``m_ia`` the money value
                        (``SegmentValues.feature_values``, never negative; NaN — no money value —
                        never buys), ε standard logistic (the difference of two Gumbel errors, as
                        a conjoint choice between buying and not has), ``σ_i = 1 / −β_price`` the
                        respondent's conjoint price scale (``[pricing] add_on_noise =
                        "conjoint"``, the default). Its expectation is used:
                        ``b_ia(p) = F((m_ia − p) / σ_i)``. Without a conjoint, or with
                        ``add_on_noise = "none"``, σ_i = 0: ``b_ia(p) = 1[m_ia ≥ p]``
take-up                 ``share_da = k_d · Σ_i w_di · 1[c_id lacks a] · b_ia(p_a) / Σ_i w_di``
                        with ``k_d`` the factor the draw's tier shares got: the calibration
                        factor (× the instruments' spread), divided by the draw's conversion when
                        calibration would have more than everyone buy a package
revenue                 ``prospects × seats × share_da × p_a`` per draw; intervals are the
                        draws' quantiles, as for tiers
price                   the nice price (:func:`wtp.pricing.optimiser.lattice`) with the largest
                        mean revenue summed over the segments the book serves, found by
                        evaluating every lattice price (a 1-D search: exhaustive, so exact on
                        the lattice). Without noise the share is a step function of p that only
                        falls at respondents' money values: every lattice price from just below
                        the lowest positive value to the highest is evaluated at once from a
                        sorted cumulative sum (below it revenue only falls with the price, above
                        it nobody buys). With noise: every lattice price from just below the
                        smallest of σ_i and the lowest positive value to the highest m + 10 σ
======================= ======================================================================

Why the noise: in the tier worlds of :mod:`wtp.simulate` people choose with logit noise, and a
feature worth little to everyone still sells to those whose noise favours it. Priced on money
values alone (σ = 0), add-ons earned a median 38% of the true best add-on revenue (worst 7.5%;
3 answer processes × 2 seeds, ``--fast``, 52 add-ons); with the conjoint's scale a median 96%
(worst 62%). The
segment logit's scale also carries the segment's unseen spread of values, so it overstates each
person's noise (about 2× in those worlds) and the price leans high; HB gives a scale per
respondent.

Simplifications: the package a respondent takes does not change because add-ons exist (nobody
picks a lower tier to add a feature to it); an add-on has no too-cheap threshold and no stated
likelihood beyond the tier choice; add-ons are bought independently of each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from wtp.pricing.optimiser import lattice
from wtp.pricing.simulator import choices

#: why an add-on has no price, in the analyst's words
NO_TIERS = "the book's tiers have no price, so nobody takes a package to add it to"
NO_MONEY = (
    "no money value: no bridge from MaxDiff to money (no feature is both a MaxDiff item and a "
    "conjoint level)"
)
NO_BUYER = "nobody who takes a package without it puts a money value on it"


@dataclass(frozen=True)
class Buyers:
    """Who could buy an add-on in one segment offered one book.

    ``taken`` is N × D × K: the probability that respondent i takes tier k in draw d (0/1 under
    first choice; every tier of the book, 0 where unpriced); ``weight`` D × N is ``w_di / Σ_i w_di
    · k_d``; ``money`` N × F the feature money values (NaN: none); ``scale`` prospects × seats.
    """

    taken: np.ndarray
    weight: np.ndarray
    money: np.ndarray
    scale: float
    noise: np.ndarray | None = None  # N: money scale σ_i of the logistic buying noise; None: 0

    def able(self, lacks: np.ndarray) -> np.ndarray:
        """N × D probability of taking a package that lacks the feature (``lacks``: K bool)."""
        return self.taken @ np.asarray(lacks, dtype=float)


def calibrated_weights(boot: np.ndarray, taken: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """D × N: each draw's normalised weights times the factor its tier shares got (the
    calibration factor, divided by the draw's conversion where it would exceed everyone)."""
    w = np.asarray(boot, dtype=float)
    w = w / w.sum(axis=1, keepdims=True)
    conv = np.einsum("dn,nd->d", w, taken.sum(axis=2))
    f = np.asarray(factor, dtype=float)
    k = np.where(f * conv > 1, 1.0 / np.where(conv > 0, conv, 1.0), f)
    return w * k[:, None]


def first_choice(pick: np.ndarray, priced: np.ndarray) -> np.ndarray:
    """N × D × K one-hot of the tier taken (``pick`` indexes the priced tiers, −1: none)."""
    idx = np.flatnonzero(priced)
    out = np.zeros((*pick.shape, len(priced)))
    i, d = np.nonzero(pick >= 0)
    out[i, d, idx[pick[i, d]]] = 1.0
    return out


def buy_probability(money: np.ndarray, noise: np.ndarray | None, prices: np.ndarray) -> np.ndarray:
    """N × L probability that a respondent buys at each price: ``1[m ≥ p]`` without noise (or
    where σ_i is not positive), else the logistic ``F((m − p) / σ_i)``; NaN money never buys."""
    m = np.asarray(money, dtype=float)[:, None]
    p = np.asarray(prices, dtype=float)[None, :]
    out = (np.nan_to_num(m, nan=-np.inf) >= p).astype(float)
    if noise is not None:
        s = np.asarray(noise, dtype=float)[:, None]
        soft = np.isfinite(s[:, 0]) & (s[:, 0] > 0) & np.isfinite(m[:, 0])
        if soft.any():
            z = (m[soft] - p) / s[soft]
            out[soft] = 0.5 * (1 + np.tanh(z / 2))
    return out


def segment_buyers(
    book, v, factor: np.ndarray, scale: float, too_cheap: str, noise: np.ndarray | None = None
) -> Buyers:
    """The :class:`Buyers` of ``book`` (a :class:`~wtp.pricing.scenarios.Book`) in the segment
    ``v`` (:class:`~wtp.pricing.valuation.SegmentValues`), as :func:`~wtp.pricing.scenarios.evaluate`
    chooses tiers; ``factor`` per draw, ``scale`` prospects × seats."""
    priced = np.isfinite(book.prices)
    n, d = v.base.shape
    if priced.any():
        member, prices = book.membership[priced], book.prices[priced]
        tc = v.thresholds(member) if too_cheap == "exclude" else None
        pick = choices(v.base, v.extra(member), prices, too_cheap=tc, shock=v.shocks(len(prices)))
    else:
        pick = np.full((n, d), -1)
    taken = first_choice(pick, priced)
    return Buyers(
        taken, calibrated_weights(v.boot, taken, factor), money(v.feature_values), scale, noise
    )


def money(feature_values: np.ndarray) -> np.ndarray:
    """N × F money values as add-ons read them: a feature without a money value for anyone in
    the segment stays NaN (never bought); a respondent without one where others have it counts
    as 0, as the tiers count them (:meth:`~wtp.pricing.valuation.SegmentValues.extra`)."""
    fv = np.asarray(feature_values, dtype=float)
    return np.where(np.isfinite(fv).any(axis=0)[None, :], np.nan_to_num(fv, nan=0.0), np.nan)


def shares(b: Buyers, lacks: np.ndarray, j: int, price: float) -> np.ndarray:
    """D: take-up of feature j's add-on at ``price`` (share of the segment's prospects)."""
    buys = b.able(lacks) * buy_probability(b.money[:, j], b.noise, np.array([price]))  # N × D
    return np.einsum("dn,nd->d", b.weight, buys)


def revenue_curve(parts: list[Buyers], lacks: np.ndarray, j: int, grid: np.ndarray) -> np.ndarray:
    """Mean revenue of feature j's add-on at every price in ``grid``, summed over ``parts``."""
    out = np.zeros(len(grid))
    for b in parts:
        u = np.einsum("dn,nd->n", b.weight, b.able(lacks)) / b.weight.shape[0]  # N
        m = b.money[:, j]
        if b.noise is not None:
            out += b.scale * grid * (u @ buy_probability(m, b.noise, grid))
            continue
        ok = np.isfinite(m) & (u > 0)
        order = np.argsort(m[ok], kind="stable")
        ms = m[ok][order]
        tail = np.r_[np.cumsum(u[ok][order][::-1])[::-1], 0.0]  # Σ over money ≥ ms[i]
        out += b.scale * grid * tail[np.searchsorted(ms, grid, side="left")]
    return out


def add_on_grid(parts: list[Buyers], lacks: np.ndarray, j: int) -> np.ndarray:
    """Every nice price from just below the lowest positive money value of those who could buy
    feature j's add-on to the highest (see the module docstring: the search is exact on it)."""
    lo, hi = [], []
    for b in parts:
        u = np.einsum("dn,nd->n", b.weight, b.able(lacks))
        m = b.money[:, j]
        ok = np.isfinite(m) & (u > 0)
        if b.noise is not None:  # noise sells above the money value, and at 0 as well
            s = np.where(np.isfinite(b.noise) & (b.noise > 0), b.noise, 0.0)
            ok &= (m > 0) | (s > 0)
            lo.append(
                np.where(s[ok] > 0, np.minimum(s[ok], np.where(m[ok] > 0, m[ok], np.inf)), m[ok])
            )
            hi.append(m[ok] + 10 * s[ok])
        else:
            ok &= m > 0
            lo.append(m[ok])
            hi.append(m[ok])
    lo, hi = np.concatenate(lo), np.concatenate(hi)
    if not lo.size:
        return np.array([])
    return lattice(lo.min() / 1.2, hi.max())


def price_add_ons(book, features: list[str], parts: list[Buyers]):
    """``book`` with its add-ons (feature codes; columns of ``book.features``) priced on top of
    its tiers for the segments in ``parts``: ``add_ons`` (feature, price) and
    ``add_on_unpriced`` (feature → why it has no price)."""
    rows, why, n_eval = [], {}, 0
    lacks_all = ~np.asarray(book.membership, dtype=bool)  # K × F
    for f in features:
        j = list(book.features).index(f)
        price = float("nan")
        if not np.isfinite(book.prices).any():
            why[f] = NO_TIERS
        elif not any(np.isfinite(b.money[:, j]).any() for b in parts):
            why[f] = NO_MONEY
        else:
            grid = add_on_grid(parts, lacks_all[:, j], j)
            if not grid.size:
                why[f] = NO_BUYER
            else:
                rev = revenue_curve(parts, lacks_all[:, j], j, grid)
                n_eval += len(grid)
                price = float(grid[int(np.argmax(rev))])
        rows.append((f, price))
    return replace(book, add_ons=tuple(rows), add_on_unpriced=why, add_on_evaluated=n_eval)


@dataclass(frozen=True)
class AddOnOutcome:
    """Take-up and revenue of a book's add-ons in one segment, per draw."""

    features: tuple[str, ...]
    prices: np.ndarray  # A (NaN: not priced)
    shares: np.ndarray  # D × A
    revenue: np.ndarray  # D × A


def evaluate_add_ons(book, b: Buyers, features: tuple[str, ...] | None = None) -> AddOnOutcome:
    """Calibrated take-up and revenue draws of ``book``'s add-ons for the segment ``b``
    (``features``: the columns of ``book.membership``, default ``book.features``)."""
    features = tuple(book.features if features is None else features)
    feats = tuple(f for f, _ in book.add_ons)
    prices = np.array([p for _, p in book.add_ons], dtype=float)
    d = b.weight.shape[0]
    sh = np.zeros((d, len(feats)))
    member = np.asarray(book.membership, dtype=bool)
    for a, (f, p) in enumerate(book.add_ons):
        if np.isfinite(p) and f in features:
            j = features.index(f)
            sh[:, a] = shares(b, ~member[:, j], j, p)
    return AddOnOutcome(feats, prices, sh, b.scale * sh * np.nan_to_num(prices, nan=0.0))


__all__ = [
    "AddOnOutcome",
    "Buyers",
    "add_on_grid",
    "calibrated_weights",
    "evaluate_add_ons",
    "first_choice",
    "money",
    "price_add_ons",
    "revenue_curve",
    "segment_buyers",
    "shares",
]
