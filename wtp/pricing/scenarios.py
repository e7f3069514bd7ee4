"""Books, calibration, joint pricing and the single-versus-multiple scenarios.

======================= =========================================================================
step                    what
======================= =========================================================================
books                   a book = its tiers' cumulative feature sets (K × F); a tier that adds
                        only features without a money value is not priced (no bridge)
calibration             per segment with today's conversion c and ARPA a: the simulated share
                        taking today's product (what the Van Westendorp question showed) at a,
                        q_d in draw d; factor ``k_d = c_d / q_d`` multiplies every take-up share
                        of the segment. c_d is drawn from the observed conversion's posterior,
                        ``Beta(c·n + ½, (1 − c)·n + ½)`` with n = ``trials`` (Jeffreys prior),
                        so the interval carries the uncertainty of both sides of the ratio
                        (without trial counts c_d = c and the table says so); without c and a
                        ``k = 1`` (stated intent) and the result says so
pricing                 each book's prices maximise Σ_segments prospects · k · Σ_k share_k ·
                        price_k (:mod:`wtp.pricing.optimiser`); the single book over every
                        segment at once, each segment choosing among its packages
instrument spread       where the conjoint could value a segment too, both instruments forecast
                        its book's revenue (each calibrated); every draw's take-up × a mean-one
                        lognormal with log-sd = |log ratio| / √2 of the two forecasts, one normal per
                        draw for all segments (:func:`instrument_spread`)
scenarios               ``multiple``: each segment its own book (a segment under ``[sample]
                        min_n`` is offered the single book); ``single``: one book for all.
                        Revenue per draw = prospects × seats × Σ share × price; intervals are
                        the draws' 5% and 95% quantiles; ``p_multiple_better`` = share of draws
                        where multiple earns more (same draws for both)
======================= =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wtp.pricing.inputs import Volumes
from wtp.pricing.optimiser import Agents, lattice, optimise_ladder
from wtp.pricing.settings import PricingSettings
from wtp.pricing.simulator import take_up
from wtp.pricing.valuation import SegmentValues


@dataclass(frozen=True)
class Book:
    """A price book: tiers (in order), their cumulative features, prices and how found."""

    scenario: str
    name: str  # the segment, or 'all'
    tiers: tuple[str, ...]
    membership: np.ndarray  # K × F bool
    prices: np.ndarray  # K (NaN: not priced)
    unpriced: dict[str, str]  # tier → why it has no price
    search_note: str = ""
    n_evaluated: int = 0
    features: tuple[str, ...] = ()  # the columns of ``membership``
    # add-ons priced on top of the tiers (:mod:`wtp.pricing.add_ons`): (feature, price; NaN: none)
    add_ons: tuple[tuple[str, float], ...] = ()
    add_on_unpriced: dict[str, str] = field(default_factory=dict)  # feature → why no price
    add_on_evaluated: int = 0  # lattice prices the add-on search evaluated


def membership(
    packages: pd.DataFrame, book: str, tiers: list[str], features: list[str]
) -> tuple[list[str], np.ndarray]:
    """Tiers that exist in a book and their cumulative feature sets."""
    pk = packages[packages["segment"] == book]
    have, rows, acc = [], [], set()
    for j, t in enumerate(tiers):
        added = set(pk.loc[pk["package"] == t, "feature"].astype(str)) - {""}
        if j > 0 and not added:
            continue
        acc |= added
        have.append(t)
        rows.append([f in acc for f in features])
    return have, np.array(rows, dtype=bool).reshape(len(have), len(features))


#: why nothing is priced when no instrument values the product (see :func:`unvalued_reason`)
NOTHING_VALUED = "no Van Westendorp and no conjoint: nothing puts a money value on any package"


def unvalued_reason(vw, conjoint) -> str:
    """Why no instrument values the product, in the analyst's words ("" when one does)."""
    if vw is not None:
        return ""
    if conjoint is None:
        return NOTHING_VALUED
    if not getattr(getattr(conjoint, "coding", None), "none", True):
        return (
            "no Van Westendorp, and the conjoint has no 'none' option: it values levels against "
            "each other, not the product against buying nothing, so nothing says who would buy "
            "at a price (add a none alternative to the conjoint, or a Van Westendorp question)"
        )
    return ""


def _priceable(
    values: list[SegmentValues], tiers: list[str], member: np.ndarray, unvalued: str = ""
) -> tuple[list[int], dict[str, str]]:
    """Tiers whose added features all have a money value somewhere in the book's respondents."""
    if not values:
        return [], dict.fromkeys(tiers, unvalued or NOTHING_VALUED)
    known = np.zeros(member.shape[1], dtype=bool)
    for v in values:
        known |= np.isfinite(v.feature_values).any(axis=0)
    keep, why = [0], {}
    for k in range(1, len(tiers)):
        added = member[k] & ~member[k - 1]
        if (added & ~known).any():
            names = [
                f for f, a, kn in zip(values[0].features, added, known, strict=True) if a and not kn
            ]
            why[tiers[k]] = (
                "its added features ("
                + ", ".join(names)
                + ") have no money value: no bridge from MaxDiff to money (no feature is both a MaxDiff item and a conjoint level)"
            )
            break  # a ladder cannot continue past a tier it cannot price
        keep.append(k)
    for k in range(len(keep) + len(why), len(tiers)):
        why.setdefault(tiers[k], "a lower tier could not be priced")
    return keep, why


def segment_agents(
    v: SegmentValues, member: np.ndarray, scale: float, settings: PricingSettings, draws: int | None
) -> Agents:
    tc = v.thresholds(member) if settings.too_cheap == "exclude" else None
    return Agents.from_arrays(
        v.base,
        v.extra(member),
        v.weight,
        too_cheap=tc,
        shock=v.shocks(member.shape[0]),
        draws=draws,
        scale=scale,
    )


def search_grid(agents: Agents) -> np.ndarray:
    """Nice prices from half the low end of the entry package's values to the high end of the
    top package's."""
    v = agents.values
    w = agents.weights
    lo_vals, hi_vals = v[:, 0], v[:, -1]

    def q(x, p):
        ok = np.isfinite(x)
        if not ok.any():
            return np.nan
        o = np.argsort(x[ok])
        cw = np.cumsum(w[ok][o])
        return float(x[ok][o][min(np.searchsorted(cw, p * cw[-1]), ok.sum() - 1)])

    lo, hi = q(lo_vals, 0.05), q(hi_vals, 0.98)
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= 0:
        return np.array([])
    return lattice(max(lo * 0.5, hi / 200), hi)


def price_book(
    scenario: str,
    name: str,
    tiers: list[str],
    member: np.ndarray,
    parts: list[tuple[SegmentValues, float]],
    settings: PricingSettings,
    rng: np.random.Generator,
    features: tuple[str, ...] = (),
    unvalued: str = "",
) -> Book:
    """Jointly priced book for the segments in ``parts`` (values, prospects × calibration);
    ``unvalued``: why nothing values the product, when nothing does."""
    keep, why = _priceable([v for v, _ in parts], tiers, member, unvalued)
    prices = np.full(len(tiers), np.nan)
    if not keep or not parts:
        return Book(scenario, name, tuple(tiers), member, prices, why, features=features)
    sub = member[keep]
    agents = Agents.stack(
        [
            segment_agents(v, sub, scale, settings, settings.search_draws_for(v.n))
            for v, scale in parts
        ]
    )
    grid = search_grid(agents)
    if len(grid) == 0:
        return Book(
            scenario,
            name,
            tuple(tiers),
            member,
            prices,
            {t: "nobody in the survey would buy it at any price" for t in tiers},
            features=features,
        )
    found = optimise_ladder(agents, grid, min_step=settings.min_step, rng=rng)
    prices[keep] = found.prices
    return Book(
        scenario, name, tuple(tiers), member, prices, why, found.note, found.n_evaluated, features
    )


# --------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class Outcome:
    """Take-up of one book by one segment, per draw (calibrated)."""

    shares: np.ndarray  # D × K
    revenue: np.ndarray  # D: per period, all prospects
    prices: np.ndarray


def evaluate(
    book: Book,
    v: SegmentValues,
    volumes: Volumes,
    factor: np.ndarray,
    settings: PricingSettings,
    too_cheap: str | None = None,
) -> Outcome:
    """Calibrated take-up and revenue draws of ``book`` offered to segment ``v``."""
    priced = np.isfinite(book.prices)
    member = book.membership[priced]
    prices = book.prices[priced]
    d = v.base.shape[1]
    if not priced.any():
        return Outcome(np.zeros((d, len(book.prices))), np.zeros(d), book.prices)
    mode = too_cheap or settings.too_cheap
    tc = v.thresholds(member) if mode == "exclude" else None
    sh = take_up(v.base, v.extra(member), prices, v.boot, too_cheap=tc, shock=v.shocks(len(prices)))
    sh = sh * factor[:, None]
    total = sh.sum(axis=1, keepdims=True)
    sh = np.where(
        total > 1, sh / np.where(total > 0, total, 1), sh
    )  # calibration cannot exceed everyone
    full = np.zeros((d, len(book.prices)))
    full[:, priced] = sh
    prospects = volumes.get(v.segment, "prospects", 0.0)
    seats = volumes.get(v.segment, "seats", 1.0)
    return Outcome(full, prospects * seats * (sh @ prices), book.prices)


@dataclass(frozen=True)
class Calibration:
    factor: dict[str, np.ndarray]  # segment → D
    table: pd.DataFrame
    # segment → D: calibrated share taking today's product at today's price (NaN without ARPA);
    # prospects × seats × this × today's price is today's book on the scenarios' own basis
    today: dict[str, np.ndarray] = field(default_factory=dict)
    # segment → D: mean-one multiplier carrying how far the instruments' revenue forecasts
    # disagree (:func:`instrument_spread`); none for a segment only one instrument values
    spread: dict[str, np.ndarray] = field(default_factory=dict)

    def draws(self, segment: str) -> np.ndarray:
        """Per draw: the calibration factor times the instruments' spread."""
        m = self.spread.get(segment)
        return self.factor[segment] if m is None else self.factor[segment] * m


def same_basis(model: float, today: float) -> bool:
    """Whether the scenarios' basis (prospects at today's conversion, or their revenue at today's
    price) is today's business (customers, or customers × ARPA) within a factor of 1.5: when it
    is not, scenarios are read as the change against today, not as today's revenue."""
    return 2 / 3 <= model / today <= 1.5


def observed_draws(
    conversion: float, trials: float, draws: int, rng: np.random.Generator | None
) -> np.ndarray:
    """Draws of today's conversion: its Beta posterior given ``trials`` (Jeffreys prior), or the
    number itself when there are no counts (or no generator)."""
    if rng is None or not (np.isfinite(trials) and trials > 0):
        return np.full(draws, conversion)
    c = min(max(conversion, 0.0), 1.0)
    return rng.beta(c * trials + 0.5, (1 - c) * trials + 0.5, size=draws)


def calibrate(
    values: dict[str, SegmentValues],
    volumes: Volumes,
    settings: PricingSettings,
    rng: np.random.Generator | None = None,
) -> Calibration:
    """Take-up factor per segment so that today's price reproduces today's conversion (per draw;
    with ``rng`` and trial counts the observed conversion is drawn from its posterior)."""
    rows, factor, today_share = [], {}, {}
    for s, v in values.items():
        d = v.base.shape[1]
        today_share[s] = np.full(d, np.nan)
        obs = volumes.get(s, "conversion")
        arpa = volumes.get(s, "arpa")
        price = arpa / volumes.get(s, "seats", 1.0)
        row = {
            "segment": s,
            "observed_conversion": obs,
            "today_price": price,
            "predicted_conversion": np.nan,
            "factor": 1.0,
            "lower": 1.0,
            "upper": 1.0,
        }
        factor[s] = np.ones(d)
        q = np.full(d, np.nan)
        if np.isfinite(price) and price > 0:
            # today's product is what the Van Westendorp question showed (vw_describes): under
            # "entry" or "full" that includes features, whose money values must not be taken away
            today = v.described[None, :].copy()
            tc = v.thresholds(today) if settings.too_cheap == "exclude" else None
            q = take_up(
                v.base, v.extra(today), np.array([price]), v.boot, too_cheap=tc, shock=v.shocks(1)
            )[:, 0]
            today_share[s] = q
        if not settings.calibrate:
            row["note"] = "calibration switched off ([pricing] calibrate = false): stated intent"
        elif not (np.isfinite(obs) and np.isfinite(price) and price > 0):
            row["note"] = (
                "no conversion or ARPA in segments.csv: take-up is stated intent, not calibrated (it usually overstates buying)"
            )
        else:
            row["predicted_conversion"] = float(q.mean())
            if q.mean() <= 0:
                row["note"] = (
                    f"nobody in the survey would buy today's product at today's price {price:,.2f}: not calibrated"
                )
            else:
                trials = volumes.get(s, "trials")
                c = observed_draws(obs, trials, d, rng)
                f = np.where(q > 0, c / np.where(q > 0, q, 1.0), c / q.mean())
                factor[s] = f
                today_share[s] = np.minimum(q * f, 1.0)
                row.update(
                    factor=float(obs / q.mean()),
                    lower=float(np.quantile(f, 0.05)),
                    upper=float(np.quantile(f, 0.95)),
                )
                counted = (
                    f" (of {trials:,.0f} trials: drawn from its posterior)"
                    if rng is not None and np.isfinite(trials) and trials > 0
                    else " (no trial counts: taken as exact)"
                )
                row["note"] = (
                    f"today's product at today's price {price:,.2f}: survey says {q.mean():.1%}, segments.csv says {obs:.1%}{counted}; every take-up share × {obs / q.mean():.3g}"
                )
        rows.append(row)
    cols = [
        "segment",
        "observed_conversion",
        "today_price",
        "predicted_conversion",
        "factor",
        "lower",
        "upper",
        "instrument_ratio",  # the conjoint's revenue forecast ÷ the Van Westendorp's
        "instrument_spread",  # |log| of it / √2: the log-sd the intervals carry
        "note",
    ]
    return Calibration(factor, pd.DataFrame(rows, columns=cols), today_share)


#: instruments whose revenue forecasts for a segment differ by more than this factor get a warning
SPREAD_WARNING = 1.5


def instrument_spread(
    values: dict[str, SegmentValues],
    second: dict[str, SegmentValues],
    offered: dict[str, Book],
    volumes: Volumes,
    cal: Calibration,
    settings: PricingSettings,
    rng: np.random.Generator,
) -> tuple[Calibration, list[str]]:
    """Carry the disagreement of two instruments into the revenue intervals.

    Where a segment is valued by Van Westendorp (``values``) and could be by the conjoint alone
    (``second``: its reference product, the same feature money values), both are calibrated the
    same way and both forecast the revenue of the book the segment is offered. Their log ratio
    ``r_s`` measures what neither forecast's own draws carry: how a stated answer maps onto
    buying. Read as the difference of two instruments' errors, independent and equally large,
    it is one draw of a normal with variance 2τ², so each forecast's own error has the sd
    ``τ_s = |r_s| / √2``. That enters as a mean-one lognormal multiplier
    ``exp(τ_s·z_d) / mean_d exp(τ_s·z_d)`` of each draw's take-up, ``z_d`` one standard normal
    per draw shared by every segment (the instruments' bias is a study's, not a segment's):
    forecasts keep their mean (up to the cap of everyone buying), the 90% interval widens by
    about ±1.6 τ_s on the log scale, and multiple and single move together in each draw, so
    ``p_multiple_better`` still compares like with like. Books are priced before this and do
    not change.

    Measured on the tier worlds (3 answer processes × 5 seeds, ``--fast``): the truth lay
    between the two forecasts in most segments; where the conjoint was an aggregate logit that
    disagreed by 2× (answers below the reservation price, little choice noise) the intervals
    became very wide."""
    if not second:
        return cal, []
    d = min(v.base.shape[1] for v in values.values())
    z = rng.standard_normal(d)
    sec_cal = calibrate(second, volumes, settings, rng)
    spread, notes = dict(cal.spread), []
    table = cal.table.copy()
    for s, alt in second.items():
        book = offered.get(s)
        if book is None or not np.isfinite(volumes.get(s, "prospects")):
            continue
        a = evaluate(book, values[s], volumes, cal.factor[s], settings).revenue.mean()
        b = evaluate(book, alt, volumes, sec_cal.factor[s], settings).revenue.mean()
        if not (a > 0 and b > 0):
            continue
        g = abs(float(np.log(b / a))) / np.sqrt(2)
        m = np.exp(g * z[: values[s].base.shape[1]])
        spread[s] = m / m.mean()
        table.loc[table["segment"] == s, ["instrument_ratio", "instrument_spread"]] = [b / a, g]
        if max(a, b) / min(a, b) > SPREAD_WARNING:
            notes.append(
                f"{s}: the conjoint alone forecasts {b / a:.2g}× the revenue that the Van Westendorp answers do for the same book "
                f"(both calibrated to today's conversion): the stated answers disagree about buying, and the revenue interval carries it."
            )
    return Calibration(cal.factor, table, cal.today, spread), notes


def interval(x: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(x, a)), float(np.quantile(x, 1 - a))
