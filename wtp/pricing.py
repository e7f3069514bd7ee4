"""Packages and price books: good/better/best per segment, one price book against one per segment.

The last analytic stage of a study. It takes the instrument results (Van Westendorp, MaxDiff,
conjoint) and the segment volumes and drafts

* **packages** per segment — tiers (``[packages] tiers`` in study.toml, default Starter / Pro /
  Enterprise) built from MaxDiff shares and individual utilities, each feature with the reason it
  sits where it does;
* **prices** per package and segment — the entry price is revenue-optimal within the segment's
  acceptable range (PMC–PME) under the segment's demand model; higher tiers step up by what the
  added features are worth;
* two **scenarios** — ``multiple`` (each segment its own price book) and ``single`` (one book
  for everyone, its entry price maximising revenue over all segments weighted by volume) — with
  customers, conversion, revenue, LTV, who gains and loses, ±10% sensitivity, arbitrage risk
  and a recommendation.

Package rules (per segment; ``'all'`` holds the single book's packages)
========================================================================

============== ===============================================================================
appeal         share of the segment's (weighted) respondents whose utility of the feature is
               above their own mean utility (individual utilities from MaxDiff; without them,
               best − worst counts per respondent from the answers)
entry tier     table stakes: appeal ≥ 0.75 ("nearly everyone values it") or share ≥ 1.4 × the
               average share (either signal is enough: appeal from noisy per-respondent counts
               understates how widely a feature is valued), best share first, up to the tier's
               cap. At least one feature: the top-share one when nothing clears the bar
higher tier j  targets the segment's high-value respondents — those whose Van Westendorp
(of T tiers)   "expensive" price is at or above the segment's j/T quantile (all respondents
               when VW answers cannot be linked) — and adds features greedily (TURF): a target
               is reached by a feature that is one of their top 3 among the features the lower
               tiers do not have; each step takes the feature reaching the most targets not yet
               reached, and stops when the next one adds under 5% reach or the cap is hit. The
               top tier then takes the remaining valued features, best share first, to its cap
add-on          share < half the average share: "nobody values it much" (drop or sell as an
               add-on), or left over once every tier is at its cap
pins, caps     ``[packages] pins = {code = "Tier"}`` (or ``"add-on"``) place a feature first;
               ``max_features_per_tier`` (a number, or a table per tier) caps the features a
               tier adds; pins are honoured even beyond a cap (with a warning)
============== ===============================================================================

Tiers are cumulative: packages.csv lists a feature once, at the lowest tier that has it.

Demand and prices
=================

Per segment, purchase probability at price ``p``:

* ``nms(p)`` — the Van Westendorp Newton–Miller–Smith trial curve (calibrated stated purchase
  likelihood);
* ``conjoint(p)`` — the conjoint share of the entry product against the no-choice option
  (``wtp.conjoint.demand_curve``). The entry product is every attribute at its first level unless
  ``[packages] entry_product`` says otherwise, with any feature mapped to a conjoint level
  switched on;
* **reconciled** — NMS supplies the level, both supply the price response: the conjoint curve
  is rescaled to the NMS purchase probability at the NMS revenue-optimal price, then the two are
  blended on the log scale, ``d = nms^(1−w) · (k · conjoint)^w``, so their elasticities average.
  ``w`` is 0.5 inside the conjoint's tested prices and falls linearly to 0 a quarter of the tested
  span beyond them (a linear price utility extrapolated past the tested prices is not evidence),
  and likewise around the acceptable range (outside it only Van Westendorp saw the "too cheap"
  doubts and outright rejections), and is 0 where the segment's price coefficient is not
  negative and significant. Only one curve
  → that curve. VW without NMS and no conjoint → the share of respondents who find the price
  neither too cheap nor too expensive (an upper bound on trial; flagged).

Entry price: the revenue-maximising price (``p · d(p)``) among "nice" prices (whole units below
100, steps of 5 to 500, 10 to 2,000 …) within the segment's acceptable range PMC–PME (without VW:
the conjoint's tested prices). Higher tier ``j``: ``P_j = P_{j−1} · r`` with
``r = 1 + capture · WTP(added features) / P_{j−1}`` clamped to 1.25–2.5 (a sensible
good/better/best step). ``capture`` is 0.5: stated WTP is not additive across features and is
overstated, and the half left to the buyer is their reason to upgrade. A feature's WTP is its
conjoint WTP where it maps to a conjoint level (``[packages] conjoint = {code =
"Attribute=Level"}``, or an item named like a two-level attribute); any other feature is worth its
MaxDiff share × money per share point, a share point being worth Σ WTP / Σ share of the mapped
features (conjoint anchors) or, without anchors, the entry price / Σ share of the entry
features (value share). Tier prices above the acceptable range are flagged.

Scenarios (contract §5)
=======================

prospects = ``market_size`` if given, else ``customers`` (segments.csv); without segments.csv the
survey's weighted segment mix (per one prospect). ``conversion`` = d(entry price);
``customers`` = prospects × conversion; ``revenue`` = customers × entry price per period (× ``seats_per_account`` when segments.csv gives it: prices are then per seat);
``ltv`` per customer = entry price × gross margin / churn (60 periods when churn is 0). The single
book's entry price maximises Σ prospects_s · p · d_s(p) over nice prices from the lowest PMC to the
highest PME; its higher tiers step up from the ``'all'`` packages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.segments import LIFETIME_CAP  # churn 0 → this many periods (contract §5)

ALL = "all"
ADD_ON = "add-on"
TOTAL = "total"
DEFAULT_TIERS = ("Starter", "Pro", "Enterprise")
SCENARIOS = ("single", "multiple")

PACKAGE_COLUMNS = ["segment", "package", "feature", "label", "share", "lower", "upper", "appeal", "reach", "wtp", "wtp_source", "reason"]
PRICE_BOOK_COLUMNS = ["scenario", "segment", "package", "price", "step_ratio", "added_wtp", "in_range", "note"]
SCENARIO_COLUMNS = ["scenario", "segment", "price_book", "customers", "conversion", "revenue", "prospects", "entry_price", "ltv", "lifetime_value"]


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class PricingSettings:
    """Every choice the pricing stage makes; defaults documented in the module docstring.

    Any field can be set in study.toml ``[packages]`` (``max_features_per_tier`` is ``caps``)
    or passed to :func:`build_price_books` as a keyword.
    """

    tiers: tuple[str, ...] = DEFAULT_TIERS
    pins: dict[str, str] = field(default_factory=dict)  # feature code → tier or 'add-on'
    caps: dict[str, int] = field(default_factory=dict)  # tier → most features it may add
    stakes_appeal: float = 0.75
    stakes_share_ratio: float = 1.4
    low_share_ratio: float = 0.5
    reach_top_n: int = 3
    min_reach_gain: float = 0.05
    conjoint_weight: float = 0.5
    conjoint_fade: float = 0.25
    step_min: float = 1.25
    step_max: float = 2.5
    capture: float = 0.5
    round_prices: bool = True
    sensitivity: float = 0.10
    min_gain: float = 0.05
    conjoint_features: dict[str, str] = field(default_factory=dict)  # feature code → "Attribute=Level"
    entry_product: dict[str, str] = field(default_factory=dict)  # conjoint attribute → level

    def cap(self, tier: str) -> int | None:
        return self.caps.get(tier)

    def describe(self) -> list[str]:
        caps = ", ".join(f"{t} {self.caps[t]}" for t in self.tiers if t in self.caps) or "none"
        return [
            f"Tiers: {' / '.join(self.tiers)} (cumulative). Most features a tier adds: {caps}.",
            f"Entry tier: features valued above their own average by ≥ {self.stakes_appeal:.0%} of the segment's respondents, "
            f"or with a share ≥ {self.stakes_share_ratio:g}× the average share.",
            f"Higher tiers: greedy reach among the segment's higher-priced respondents, a feature reaching them when it is one of their top "
            f"{self.reach_top_n} among the features lower tiers lack; a tier stops adding when the next feature adds under {self.min_reach_gain:.0%} reach.",
            f"Add-ons: share under {self.low_share_ratio:g}× the average share, or left over once tiers are at their caps.",
            f"Demand: NMS sets the level; the conjoint's share against not buying, rescaled to NMS at the NMS revenue optimum, is blended in on the log scale "
            f"with weight {self.conjoint_weight:g} inside both its tested prices and the acceptable range, fading to 0 at {self.conjoint_fade:.0%} of each span beyond them.",
            f"Tier steps: 1 + {self.capture:g} × WTP of the added features / previous price, clamped to {self.step_min:g}–{self.step_max:g}×.",
            "Prices " + ("rounded to nice prices (whole units below 100, 5s to 500, 10s to 2,000)." if self.round_prices else "not rounded."),
        ]


_OPTION_NAMES = {f.name for f in fields(PricingSettings)} - {"tiers", "pins", "caps"}


def resolve_settings(
    study=None,
    *,
    tiers=None,
    pins=None,
    caps=None,
    options: dict[str, Any] | None = None,
) -> PricingSettings:
    """Settings from study.toml ``[packages]`` overridden by the arguments; validated.

    Raises
    ------
    InputError
        Naming ``study.toml`` and the key when a pin names no tier, a cap is not a whole number
        of 0 or more, or an option is unknown.
    """
    block = dict((getattr(study, "settings", None) or {}).get("packages", {}))
    source = "study.toml" if study is None else str(Path(getattr(study, "folder", ".")) / "study.toml")
    problems: list[Problem] = []
    tiers = list(tiers if tiers is not None else block.get("tiers", DEFAULT_TIERS))
    tiers = [str(t) for t in tiers]
    if not tiers or len(set(tiers)) != len(tiers) or ADD_ON in tiers:
        problems.append(Problem(source, None, "packages.tiers", f"a list of distinct tier names (not '{ADD_ON}')", tiers))
    pins = dict(pins if pins is not None else block.get("pins", {}))
    lookup = {t.lower(): t for t in tiers} | {ADD_ON: ADD_ON, "add-ons": ADD_ON, "addon": ADD_ON}
    clean_pins = {}
    for code, tier in pins.items():
        t = lookup.get(str(tier).strip().lower())
        if t is None:
            problems.append(Problem(source, None, f"packages.pins.{code}", "one of the tiers " + ", ".join(tiers) + f" or '{ADD_ON}'", tier))
        else:
            clean_pins[str(code)] = t
    raw_caps = caps if caps is not None else block.get("max_features_per_tier", block.get("caps"))
    clean_caps: dict[str, int] = {}
    if raw_caps is not None:
        items = raw_caps.items() if isinstance(raw_caps, dict) else [(t, raw_caps) for t in tiers]
        for t, v in items:
            key = lookup.get(str(t).strip().lower())
            ok = isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0
            if key is None or key == ADD_ON:
                problems.append(Problem(source, None, f"packages.max_features_per_tier.{t}", "one of the tiers " + ", ".join(tiers), t))
            elif not ok:
                problems.append(Problem(source, None, "packages.max_features_per_tier", "a whole number of features, 0 or more", v))
            else:
                clean_caps[key] = int(v)
    opts: dict[str, Any] = {}
    for k, v in block.items():
        if k in _OPTION_NAMES:
            opts[k] = v
    if "conjoint" in block and isinstance(block["conjoint"], dict):
        opts["conjoint_features"] = block["conjoint"]
    for k, v in (options or {}).items():
        if k not in _OPTION_NAMES:
            problems.append(Problem("options", None, k, "one of " + ", ".join(sorted(_OPTION_NAMES)), k))
        else:
            opts[k] = v
    if "step" in block:
        try:
            opts["step_min"], opts["step_max"] = (float(x) for x in block["step"])
        except (TypeError, ValueError):
            problems.append(Problem(source, None, "packages.step", "two numbers [lowest, highest] tier-to-tier price ratio", block["step"]))
    if problems:
        raise InputError(problems)
    settings = PricingSettings(tiers=tuple(tiers), pins=clean_pins, caps=clean_caps)
    try:
        settings = replace(settings, **opts)
    except TypeError as exc:  # pragma: no cover - names were checked above
        raise InputError(Problem(source, None, "packages", "known options", str(exc))) from exc
    if not 1 <= settings.step_min <= settings.step_max:
        raise InputError(Problem(source, None, "packages.step", "1 ≤ lowest step ≤ highest step", (settings.step_min, settings.step_max)))
    return settings


# --------------------------------------------------------------------------------------------
# Prices


_BANDS = [(0.0, 10.0, 0.5), (10.0, 100.0, 1.0), (100.0, 500.0, 5.0), (500.0, 2000.0, 10.0), (2000.0, 10000.0, 50.0), (10000.0, math.inf, 100.0)]


def nice_price(p: float) -> float:
    """Round to a price a price book would show: 0.5s below 10, whole units below 100, 5s below
    500, 10s below 2,000, 50s below 10,000, then 100s."""
    if not np.isfinite(p):
        return float(p)
    for _lo, hi, step in _BANDS:
        if p < hi:
            r = round(p / step) * step
            # rounding can cross into the next band (99.6 → 100); that is still a nice price
            return float(max(r, step))
    return float(p)  # pragma: no cover


def candidate_prices(lo: float, hi: float, *, nice: bool = True, n: int = 401) -> np.ndarray:
    """Prices considered within [lo, hi]: the nice prices there (or ``n`` evenly spaced).

    Nice prices lie on one lattice for every range, so a price that is a candidate for one
    segment is a candidate for any other whose range contains it.
    """
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi < lo:
        return np.array([], dtype=float)
    if not nice:
        return np.linspace(lo, hi, n)
    parts = []
    for b_lo, b_hi, step in _BANDS:
        a, b = max(lo, b_lo), min(hi, b_hi)
        if a > b:
            continue
        start = math.ceil(a / step - 1e-9) * step
        vals = np.arange(start, b + 1e-9, step)
        parts.append(vals[vals < b_hi])
    out = np.unique(np.concatenate(parts)) if parts else np.array([], dtype=float)
    out = out[(out >= lo - 1e-9) & (out <= hi + 1e-9)]
    if out.size == 0:
        # a range narrower than one step: its nearest nice price, or its middle
        mid = nice_price((lo + hi) / 2)
        out = np.array([mid if lo <= mid <= hi else (lo + hi) / 2])
    return out


def best_price(candidates: np.ndarray, revenue_at) -> tuple[float, float]:
    """The candidate with the highest revenue (the lowest such price on ties) and its revenue."""
    if len(candidates) == 0:
        return float("nan"), float("nan")
    rev = np.asarray(revenue_at(candidates), dtype=float)
    if not np.isfinite(rev).any() or np.nanmax(rev) <= 0:
        return float("nan"), 0.0
    i = int(np.nanargmax(rev))
    return float(candidates[i]), float(rev[i])


# --------------------------------------------------------------------------------------------
# Demand


@dataclass(frozen=True)
class DemandModel:
    """Purchase probability of a segment's entry package as a function of price.

    ``source`` says which curves exist: ``nms+conjoint``, ``nms``, ``conjoint``, ``acceptance``
    (VW without NMS: share who find the price neither too cheap nor too expensive) or ``none``.
    Call it with prices to get the reconciled curve; :meth:`curves` gives every curve.
    """

    segment: str
    source: str
    lo: float  # acceptable range used for the entry price
    hi: float
    range_source: str
    nms_prices: np.ndarray | None = None  # piecewise-linear NMS trial curve (exact)
    nms_trial: np.ndarray | None = None
    acceptance_prices: np.ndarray | None = None
    acceptance: np.ndarray | None = None
    conjoint_prices: np.ndarray | None = None  # log-spaced; the conjoint curve is smooth
    conjoint_share: np.ndarray | None = None
    tested: tuple[float, float] | None = None  # conjoint's tested price range
    weight_max: float = 0.0
    fade: float = 0.25
    scale: float = 1.0  # k: conjoint rescaled to the NMS level at ``reference_price``
    reference_price: float = float("nan")
    notes: tuple[str, ...] = ()

    def nms(self, prices) -> np.ndarray | None:
        if self.nms_prices is None:
            return None
        return np.interp(np.asarray(prices, dtype=float), self.nms_prices, self.nms_trial, left=0.0, right=0.0)

    def conjoint(self, prices) -> np.ndarray | None:
        if self.conjoint_prices is None:
            return None
        p = np.maximum(np.asarray(prices, dtype=float), 1e-9)
        return np.interp(np.log(p), np.log(self.conjoint_prices), self.conjoint_share)

    def acceptance_curve(self, prices) -> np.ndarray | None:
        if self.acceptance_prices is None:
            return None
        return np.interp(np.asarray(prices, dtype=float), self.acceptance_prices, self.acceptance, left=0.0, right=0.0)

    def weight(self, prices) -> np.ndarray:
        """Conjoint weight in the blend: ``weight_max`` where the price is inside both the
        conjoint's tested prices and the acceptable range, fading to 0 a ``fade`` share of each
        span beyond them. Outside the tested prices the conjoint extrapolates; outside the
        acceptable range only Van Westendorp saw the "too cheap" doubts and the outright
        rejections a share against not buying cannot show."""
        p = np.asarray(prices, dtype=float)
        if self.tested is None or self.weight_max <= 0 or self.nms_prices is None or self.conjoint_prices is None:
            return np.zeros_like(p)
        w = np.full(p.shape, self.weight_max)
        for a, b in (self.tested, (self.lo, self.hi)):
            if not (np.isfinite(a) and np.isfinite(b)):
                continue
            margin = max(self.fade * (b - a), 1e-9)
            outside = np.maximum(a - p, 0.0) + np.maximum(p - b, 0.0)
            w = w * np.clip(1.0 - outside / margin, 0.0, 1.0)
        return w

    def __call__(self, prices) -> np.ndarray:
        p = np.asarray(prices, dtype=float)
        n = self.nms(p)
        c = self.conjoint(p)
        if n is not None and c is not None:
            w = self.weight(p)
            # 0 ** 0 = 1, so where w = 0 this is exactly the NMS curve
            return np.clip(np.power(np.clip(n, 0.0, 1.0), 1.0 - w) * np.power(np.clip(self.scale * c, 0.0, 1.0), w), 0.0, 1.0)
        if n is not None:
            return n
        if c is not None:
            return c
        a = self.acceptance_curve(p)
        if a is not None:
            return a
        return np.full(p.shape, np.nan)

    def curves(self, prices) -> pd.DataFrame:
        """``segment, price, nms, conjoint, conjoint_calibrated, conjoint_weight, acceptance, reconciled``."""
        p = np.asarray(prices, dtype=float)
        nan = np.full(p.shape, np.nan)
        n = self.nms(p)
        c = self.conjoint(p)
        a = self.acceptance_curve(p)
        return pd.DataFrame(
            {
                "segment": self.segment,
                "price": p,
                "nms": nan if n is None else n,
                "conjoint": nan if c is None else c,
                "conjoint_calibrated": nan if c is None else np.clip(self.scale * c, 0, 1) if n is not None else c,
                "conjoint_weight": self.weight(p),
                "acceptance": nan if a is None else a,
                "reconciled": self(p),
            }
        )


def _vw_range(vw, segment: str) -> tuple[float, float, str]:
    pp = vw.price_points.set_index("segment")
    if segment not in pp.index:
        return float("nan"), float("nan"), "none"
    row = pp.loc[segment]
    lo, hi = float(row.get("pmc", np.nan)), float(row.get("pme", np.nan))
    if np.isfinite(lo) and np.isfinite(hi) and lo < hi:
        return lo, hi, "PMC–PME (Van Westendorp)"
    nlo, nhi = float(row.get("pmc_narrow", np.nan)), float(row.get("pme_narrow", np.nan))
    lo = lo if np.isfinite(lo) else nlo
    hi = hi if np.isfinite(hi) else nhi
    if np.isfinite(lo) and np.isfinite(hi) and lo < hi:
        return lo, hi, "Van Westendorp range (a point did not cross; narrower-range point used)"
    c = vw.curves[vw.curves["segment"] == segment]
    if len(c):
        return float(c["price"].min()), float(c["price"].max()), "answered prices (PMC/PME did not cross)"
    return float("nan"), float("nan"), "none"


def build_demand(
    segment: str,
    *,
    vw=None,
    conjoint=None,
    product: dict[str, str] | None = None,
    settings: PricingSettings | None = None,
    span: tuple[float, float] | None = None,
    rng: np.random.Generator | None = None,
) -> DemandModel:
    """The demand model of one segment from whatever instruments exist (see the module docstring)."""
    settings = settings or PricingSettings()
    notes: list[str] = []
    lo = hi = float("nan")
    range_source = "none"
    kw: dict[str, Any] = {}
    has_vw = vw is not None and segment in set(vw.price_points["segment"])
    if has_vw:
        lo, hi, range_source = _vw_range(vw, segment)
        if vw.has_nms and (vw.nms["segment"] == segment).any():
            c = vw.nms[vw.nms["segment"] == segment]
            kw.update(nms_prices=c["price"].to_numpy(dtype=float), nms_trial=c["trial"].to_numpy(dtype=float))
        else:
            c = vw.curves[vw.curves["segment"] == segment]
            acc = np.clip(1.0 - c["too_expensive"].to_numpy(dtype=float) - c["too_cheap"].to_numpy(dtype=float), 0.0, 1.0)
            kw.update(acceptance_prices=c["price"].to_numpy(dtype=float), acceptance=acc)
    cj_ok = conjoint is not None and segment in list(conjoint.segments) and bool(conjoint.coding.none)
    if conjoint is not None and not cj_ok:
        if segment not in list(conjoint.segments):
            notes.append(f"{segment}: not in the conjoint; no conjoint demand curve.")
        else:
            notes.append("The conjoint has no none option: no conjoint demand curve (share against not buying).")
    if cj_ok:
        from wtp.conjoint import demand_curve

        tested = (float(min(conjoint.prices)), float(max(conjoint.prices)))
        if not np.isfinite(lo):
            lo, hi = tested
            range_source = "the conjoint's tested prices (no Van Westendorp)"
        a, b = span if span is not None else (min(lo, tested[0]) * 0.5, max(hi, tested[1]) * 1.5)
        grid = np.exp(np.linspace(np.log(max(a, 1e-6)), np.log(b), 160))
        dc = demand_curve(conjoint, product or {}, grid, segment=segment, n_draws=40, rng=rng if rng is not None else np.random.default_rng(0))
        kw.update(conjoint_prices=grid, conjoint_share=dc["share"].to_numpy(dtype=float), tested=tested)
        ok = bool(conjoint.price_ok.get(segment, False))
        kw["weight_max"] = settings.conjoint_weight if ok else 0.0
        if not ok:
            notes.append(f"{segment}: the conjoint price coefficient is not negative and significant; the conjoint curve is shown but not used.")
    kw["fade"] = settings.conjoint_fade
    model = DemandModel(segment=segment, source="none", lo=lo, hi=hi, range_source=range_source, **kw)
    parts = [s for s, present in (("nms", model.nms_prices is not None), ("conjoint", model.conjoint_prices is not None)) if present]
    source = "+".join(parts) if parts else ("acceptance" if model.acceptance_prices is not None else "none")
    if source == "acceptance":
        notes.append(f"{segment}: no NMS purchase likelihoods and no conjoint: demand is the share who find the price neither too cheap nor too expensive, an upper bound on conversion.")
    if model.nms_prices is not None and model.conjoint_prices is not None:
        # calibrate the conjoint's level to NMS where NMS earns the most within the range
        cand = candidate_prices(lo, hi, nice=False, n=301)
        p_ref, _ = best_price(cand, lambda p: p * model.nms(p))
        if not np.isfinite(p_ref):
            p_ref = (lo + hi) / 2
        n_ref, c_ref = float(model.nms([p_ref])[0]), float(model.conjoint([p_ref])[0])
        k = n_ref / c_ref if n_ref > 0 and c_ref > 0 else 1.0
        model = replace(model, scale=k, reference_price=float(p_ref))
    return replace(model, source=source, notes=tuple(notes))


# --------------------------------------------------------------------------------------------
# Packages


def _respondent_matrix(individual: pd.DataFrame, items: list[str]):
    """(ids, R × K utilities, weights, value) from the long individual layout."""
    u = individual.pivot_table(index="respondent_id", columns="item", values="utility", aggfunc="mean", sort=False)
    u = u.reindex(columns=items)
    first = individual.drop_duplicates("respondent_id").set_index("respondent_id")
    w = first["weight"].reindex(u.index).to_numpy(dtype=float) if "weight" in first.columns else np.ones(len(u))
    v = first["value"].reindex(u.index).to_numpy(dtype=float) if "value" in first.columns else np.full(len(u), np.nan)
    w = np.where(np.isfinite(w) & (w > 0), w, 1.0)
    return u.index.to_numpy(), u.to_numpy(dtype=float), w, v


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q: float) -> float:
    order = np.argsort(x, kind="stable")
    cw = np.cumsum(w[order])
    return float(x[order][min(np.searchsorted(cw, q * cw[-1], side="left"), len(x) - 1)])


def _top_n_among(U: np.ndarray, columns: np.ndarray, n: int) -> np.ndarray:
    """Boolean R × K: feature is one of the respondent's top ``n`` among ``columns``."""
    R, K = U.shape
    out = np.zeros((R, K), dtype=bool)
    if columns.size == 0:
        return out
    sub = np.where(np.isnan(U[:, columns]), -np.inf, U[:, columns])
    # rank within the remaining features (0 = favourite); ties broken by column order
    order = np.argsort(-sub, axis=1, kind="stable")
    ranks = np.empty_like(order)
    ranks[np.arange(R)[:, None], order] = np.arange(columns.size)[None, :]
    out[:, columns] = (ranks < n) & np.isfinite(sub)
    return out


def _draft_segment(seg: str, scores: pd.DataFrame, resp, settings: PricingSettings, warnings: list[str]) -> list[dict]:
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
        placed[item] = {"segment": seg, "package": tier, "feature": item, "share": share[item], "appeal": appeal[item], "reach": reach, "reason": reason}

    for code, tier in settings.pins.items():
        if code in share:
            place(code, tier, f"pinned to {tier} in study.toml")
    counts = {t: sum(1 for p in placed.values() if p["package"] == t) for t in tiers}
    for t in tiers:
        cap = settings.cap(t)
        if cap is not None and counts[t] > cap:
            warnings.append(f"{seg}: {counts[t]} features are pinned to {t}, more than its cap of {cap}; the pins are kept.")

    def room(t):
        cap = settings.cap(t)
        return math.inf if cap is None else cap - sum(1 for p in placed.values() if p["package"] == t)

    # entry tier: table stakes
    entry = tiers[0]
    bar = settings.stakes_share_ratio * mean_share
    by_share = {i for i in items if share[i] >= bar}
    by_appeal = {i for i in items if resp is not None and appeal[i] >= settings.stakes_appeal}
    # either signal is enough: appeal from noisy individual scores (counts) understates how
    # widely a feature is valued, a flat share profile understates how strongly
    stakes = [i for i in items if (i in by_share or i in by_appeal) and i not in placed and not low[i]]

    def why(i):
        parts = []
        if i in by_appeal:
            parts.append(f"{appeal[i]:.0%} of the segment value it above their average")
        if i in by_share:
            parts.append(f"share {share[i]:.1f} ≥ {settings.stakes_share_ratio:g}× the average ({bar:.1f})")
        elif resp is not None:
            parts.append(f"share {share[i]:.1f}")
        return "table stakes: " + "; ".join(parts)

    if not stakes and not any(p["package"] == entry for p in placed.values()):
        stakes = [i for i in items if i not in placed and not low[i]][:1]

        def why(i):
            return f"the segment's top share ({share[i]:.1f}); no feature clears the table-stakes bar"
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
                place(i, tier, f"share {share[i]:.1f} (no individual utilities: remaining features split across the higher tiers by share)")
            continue
        lower = {i for i, p in placed.items() if p["package"] in tiers[:j]}
        remaining = np.array([col[i] for i in items if i not in lower and placed.get(i, {}).get("package") != ADD_ON], dtype=int)
        valued = _top_n_among(U, remaining, settings.reach_top_n)
        q = j / T
        known = np.isfinite(value)
        if known.mean() >= 0.5:
            threshold = _weighted_quantile(value[known], w[known], q)
            target = known & (value >= threshold)
            who = f"the top {1 - q:.0%} of the segment by the price they call expensive (≥ {threshold:,.0f})"
        else:
            target = np.ones(len(w), dtype=bool)
            who = "the segment (no Van Westendorp answers to pick its high-value respondents)"
        wt = w * target
        W = wt.sum()
        reached = np.zeros(len(w), dtype=bool)
        for i in [i for i, p in placed.items() if p["package"] == tier]:
            reached |= valued[:, col[i]]
        picked = any(p["package"] == tier for p in placed.values())
        pool = list(cands)
        while pool and room(tier) > 0 and W > 0:
            gains = np.array([(wt * (valued[:, col[i]] & ~reached)).sum() / W for i in pool])
            b = int(np.argmax(gains))  # ties: the higher share (pool is in share order)
            if gains[b] < settings.min_reach_gain and picked:
                break
            i = pool.pop(b)
            before = (wt * reached).sum() / W
            reached |= valued[:, col[i]]
            after = (wt * reached).sum() / W
            place(i, tier, f"reaches {after - before:.0%} more of {who}: a top-{settings.reach_top_n} feature among those the lower tiers lack (reach {before:.0%} → {after:.0%}; share {share[i]:.1f})", after)
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
            place(i, ADD_ON, f"low value: share {share[i]:.1f} is under {settings.low_share_ratio:g}× the average ({settings.low_share_ratio * mean_share:.1f}); drop it or sell it as an add-on")
        else:
            place(i, ADD_ON, f"valued (share {share[i]:.1f}) but every tier is at its cap; sell it as an add-on")
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
        Packages in :data:`PACKAGE_COLUMNS` layout (``wtp`` empty until priced) and warnings.
    """
    settings = settings or PricingSettings()
    labels = labels or {}
    warnings: list[str] = []
    scores = item_scores.copy()
    scores["item"] = scores["item"].astype(str)
    segs = segments if segments is not None else list(dict.fromkeys(scores["segment"].astype(str)))
    unknown = sorted(set(settings.pins) - set(scores["item"]))
    if unknown:
        warnings.append("Pinned features not among the MaxDiff items (ignored): " + ", ".join(unknown) + ".")
    rows = []
    for seg in segs:
        sc = scores[scores["segment"].astype(str) == seg]
        if sc.empty:
            continue
        items = sc.sort_values("share", ascending=False, kind="stable")["item"].tolist()
        resp = None
        if individual_utilities is not None and len(individual_utilities):
            ind = individual_utilities if seg == ALL else individual_utilities[individual_utilities["segment"].astype(str) == seg]
            if len(ind):
                resp = _respondent_matrix(ind, items)
        seg_rows = _draft_segment(seg, sc, resp, settings, warnings)
        extra = sc.set_index("item")
        for r in seg_rows:
            r["label"] = labels.get(r["feature"], r["feature"])
            r["lower"] = float(extra.loc[r["feature"], "lower"]) if "lower" in extra.columns else float("nan")
            r["upper"] = float(extra.loc[r["feature"], "upper"]) if "upper" in extra.columns else float("nan")
            r["wtp"] = float("nan")
            r["wtp_source"] = ""
        rows += seg_rows
    out = pd.DataFrame(rows, columns=PACKAGE_COLUMNS)
    return out, warnings


# --------------------------------------------------------------------------------------------
# Feature values and tier prices


def feature_values(
    packages: pd.DataFrame,
    entry_price: float,
    *,
    conjoint_wtp: dict[str, float] | None = None,
    settings: PricingSettings | None = None,
) -> dict[str, tuple[float, str]]:
    """Money value per period of each feature of one segment: ``feature → (wtp, source)``.

    A feature that maps to a conjoint level is worth its conjoint WTP. The others are worth
    their MaxDiff share × money per share point, where a share point is worth

    * with conjoint anchors (mapped features with a valid WTP in this segment):
      ``Σ WTP(anchors) / Σ share(anchors)``;
    * otherwise the entry price's value share: ``entry_price / Σ share(entry features)`` (the
      entry price pays for the entry features).
    """
    settings = settings or PricingSettings()
    conjoint_wtp = {f: v for f, v in (conjoint_wtp or {}).items() if np.isfinite(v)}
    feats = packages[packages["feature"].notna() & (packages["feature"].astype(str) != "")]
    share = dict(zip(feats["feature"].astype(str), feats["share"].to_numpy(dtype=float), strict=True))
    anchors = [f for f in share if f in conjoint_wtp and share[f] > 0]
    if anchors:
        per_point = sum(conjoint_wtp[f] for f in anchors) / sum(share[f] for f in anchors)
        note = "MaxDiff share × conjoint money per share point (anchored on " + ", ".join(anchors) + ")"
    else:
        entry = feats[feats["package"] == settings.tiers[0]]
        denom = float(entry["share"].sum())
        note = "MaxDiff value share of the entry price"
        if not denom > 0:
            # no entry feature carries the entry price: it buys one average feature
            denom = 100.0 / max(len(feats), 1)
            note = "MaxDiff value share (entry price = one average feature)"
        per_point = entry_price / denom if np.isfinite(entry_price) else float("nan")
    out = {}
    for f, s in share.items():
        if f in conjoint_wtp:
            out[f] = (float(conjoint_wtp[f]), "conjoint WTP")
        else:
            out[f] = (float(per_point * s), note)
    return out


def tier_prices(
    entry_price: float,
    packages: pd.DataFrame,
    values: dict[str, tuple[float, str]],
    *,
    settings: PricingSettings | None = None,
    ratios: dict[str, float] | None = None,
) -> list[dict]:
    """Prices of one segment's tiers: the entry price, then each tier stepped up.

    ``P_j = P_{j−1} · clamp(1 + capture · Σ WTP(added) / P_{j−1}, step_min, step_max)`` (nice-
    rounded). A tier that adds no feature is left out (it would be the tier below). ``ratios``
    (tier → ratio) overrides the computed steps, as the single book does.
    """
    settings = settings or PricingSettings()
    rnd = nice_price if settings.round_prices else float
    rows = [{"package": settings.tiers[0], "price": rnd(entry_price) if np.isfinite(entry_price) else float("nan"), "step_ratio": float("nan"), "added_wtp": float("nan"), "note": "entry: revenue-optimal within the acceptable range"}]
    if not np.isfinite(entry_price):
        rows[0]["note"] = "no price: no demand model"
    has = set(packages["package"])
    prev = rows[0]["price"]
    for tier in settings.tiers[1:]:
        if tier not in has:
            continue
        added = packages[packages["package"] == tier]["feature"].astype(str)
        wtp = float(sum(values.get(f, (0.0, ""))[0] for f in added if np.isfinite(values.get(f, (0.0, ""))[0])))
        raw = 1.0 + settings.capture * wtp / prev if prev and np.isfinite(prev) and prev > 0 else float("nan")
        if ratios is not None and tier in ratios:
            r = ratios[tier]
            note = "step of the single book's packages"
        else:
            r = float(np.clip(raw, settings.step_min, settings.step_max)) if np.isfinite(raw) else float("nan")
            note = f"+{settings.capture:g} × WTP of the added features"
            if np.isfinite(raw) and raw != r:
                note += f" implied {raw:.2f}×, held to {r:.2f}× (step limits {settings.step_min:g}–{settings.step_max:g}×)"
        price = rnd(prev * r) if np.isfinite(r) else float("nan")
        if settings.round_prices and np.isfinite(price) and price <= prev:
            price = nice_price(prev * r + _step_at(prev))  # rounding must not erase the step
        rows.append({"package": tier, "price": price, "step_ratio": price / prev if prev else float("nan"), "added_wtp": wtp, "note": note})
        prev = price
    return rows


def _step_at(p: float) -> float:
    for lo, hi, step in _BANDS:
        if lo <= p < hi:
            return step
    return 1.0


# --------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class PriceBookResult:
    """Packages, price books and the single-versus-multiple scenarios of a study.

    Attributes
    ----------
    packages
        packages.csv: ``segment, package, feature`` (a feature once, at the lowest tier that has
        it; ``package='add-on'`` for add-ons) plus ``label, share`` (0–100, as item_scores),
        ``lower, upper, appeal`` (0–1: share of the segment valuing it above their average),
        ``reach`` (0–1: the tier's reach among its target respondents once this feature is in),
        ``wtp, wtp_source, reason``. Segment ``all`` holds the single book's packages.
    price_books
        price_books.csv: ``scenario, segment, package, price`` plus ``step_ratio, added_wtp,
        in_range`` (within the segment's acceptable range) and ``note``.
    scenarios
        scenarios.csv: ``scenario, segment, price_book, customers, conversion, revenue`` per
        segment and ``total``, plus ``prospects, entry_price, ltv`` (per customer) and
        ``lifetime_value`` (customers × ltv).
    comparison
        Per segment and total: prices, conversion, customers and revenue under both scenarios,
        the changes from single to multiple and who gains or loses.
    sensitivity
        ``scenario, segment, price_change, entry_price, conversion, customers, revenue,
        revenue_change`` at −10%, 0 and +10% prices.
    arbitrage
        Segment pairs of the multiple scenario where one pays more than another could: ``segment,
        cheaper_segment, own_price, cheaper_price, gap, revenue, revenue_if_switched,
        revenue_at_risk, risk, fence``.
    demand
        Curves per segment: ``segment, price, nms, conjoint, conjoint_calibrated,
        conjoint_weight, acceptance, reconciled``.
    demand_summary
        Per segment: the range, its source, the demand source, each curve's own revenue-optimal
        price in range, the entry price and the conversion there.
    recommendation
        One paragraph with its numbers.
    missing
        ``input, status, effect``: what was absent and what was assumed instead.
    """

    packages: pd.DataFrame
    price_books: pd.DataFrame
    scenarios: pd.DataFrame
    comparison: pd.DataFrame
    sensitivity: pd.DataFrame
    arbitrage: pd.DataFrame
    demand: pd.DataFrame
    demand_summary: pd.DataFrame
    recommendation: str
    missing: pd.DataFrame
    settings: PricingSettings
    segments: tuple[str, ...] = ()
    models: dict[str, DemandModel] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    volume_source: str = ""
    period: str = "period"
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def has_prices(self) -> bool:
        return bool(self.price_books["price"].notna().any()) if len(self.price_books) else False

    def entry_prices(self, scenario: str = "multiple") -> dict[str, float]:
        s = self.scenarios[(self.scenarios["scenario"] == scenario) & (self.scenarios["segment"] != TOTAL)]
        return dict(zip(s["segment"], s["entry_price"].astype(float), strict=True))

    def total(self, scenario: str, column: str = "revenue") -> float:
        s = self.scenarios[(self.scenarios["scenario"] == scenario) & (self.scenarios["segment"] == TOTAL)]
        return float(s[column].iloc[0]) if len(s) else float("nan")

    def summary(self) -> pd.DataFrame:
        """Per segment and total: entry prices, conversion and revenue under both scenarios."""
        cols = ["segment", "prospects", "price_single", "price_multiple", "conversion_single", "conversion_multiple", "revenue_single", "revenue_multiple", "revenue_change"]
        return self.comparison[[c for c in cols if c in self.comparison.columns]].copy()

    def to_frame(self) -> pd.DataFrame:
        """The price books (price_books.csv)."""
        return self.price_books.copy()


# --------------------------------------------------------------------------------------------
# Inputs: results, volumes, individual data


def _counts_item_scores(answers: pd.DataFrame) -> pd.DataFrame:
    """Segment shares from best − worst counts (contract §5), for when no MaxDiff result exists."""
    a = answers.copy()
    a["w"] = a["weight"].astype(float) if "weight" in a.columns else 1.0
    a["b"] = a["best"].astype(float) * a["w"]
    a["x"] = a["worst"].astype(float) * a["w"]
    k = int(a.groupby(["respondent_id", "task"]).size().mode().iloc[0])
    frames = []
    for seg, sub in [*a.groupby("segment", sort=False), (ALL, a)]:
        g = sub.groupby("item", sort=False).agg(shown=("w", "sum"), best=("b", "sum"), worst=("x", "sum"))
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.log((g["shown"] + g["best"] - g["worst"]) / (g["shown"] - g["best"] + g["worst"])) / 2
        u = np.clip(u.to_numpy(dtype=float), -10, 10)
        u = u - u.mean()
        p = np.exp(u) / (np.exp(u) + k - 1)
        frames.append(pd.DataFrame({"segment": seg, "item": g.index.astype(str), "utility": u, "share": 100 * p / p.sum()}))
    return pd.concat(frames, ignore_index=True)


def _counts_individual(answers: pd.DataFrame) -> pd.DataFrame:
    """Per respondent and item: (best − worst) / times shown, a utility proxy for appeal and reach."""
    g = answers.groupby(["respondent_id", "item"], sort=False).agg(shown=("best", "size"), best=("best", "sum"), worst=("worst", "sum"), segment=("segment", "first")).reset_index()
    g["utility"] = (g["best"].astype(float) - g["worst"].astype(float)) / g["shown"]
    return g[["respondent_id", "segment", "item", "utility"]]


def _first_per_respondent(frame: pd.DataFrame | None, column: str) -> pd.Series | None:
    if frame is None or column not in frame.columns or "respondent_id" not in frame.columns:
        return None
    f = frame.drop_duplicates("respondent_id")
    return pd.Series(f[column].to_numpy(), index=f["respondent_id"].astype(str).to_numpy())


def _volumes(segments, study, segs: list[str], vw_frame) -> tuple[pd.DataFrame, str, list[str]]:
    """prospects, churn and margin per segment, and where the volumes came from."""
    notes: list[str] = []
    metrics = None
    if segments is not None:
        metrics = getattr(segments, "metrics", None)
        if metrics is None:
            metrics = getattr(segments, "scores", None)
        if metrics is None and isinstance(segments, pd.DataFrame):
            metrics = segments
    if metrics is not None:
        m = metrics.drop_duplicates("segment").set_index(metrics.drop_duplicates("segment")["segment"].astype(str))
        out = pd.DataFrame(index=pd.Index(segs, name="segment"))
        market = m["market_size"].reindex(segs).astype(float) if "market_size" in m.columns else pd.Series(np.nan, index=segs)
        cust = m["customers"].reindex(segs).astype(float) if "customers" in m.columns else pd.Series(np.nan, index=segs)
        out["prospects"] = np.where(np.isfinite(market), market, cust)
        out["prospects_source"] = np.where(np.isfinite(market), "market_size", np.where(np.isfinite(cust), "customers", "missing"))
        out["churn_rate"] = m["churn_rate"].reindex(segs).astype(float).to_numpy() if "churn_rate" in m.columns else np.nan
        out["gross_margin"] = m["gross_margin"].reindex(segs).astype(float).to_numpy() if "gross_margin" in m.columns else np.nan
        # prices are per seat when segments.csv says how many seats an account has (contract §5)
        seats = m["seats_per_account"].reindex(segs).astype(float) if "seats_per_account" in m.columns else pd.Series(1.0, index=segs)
        out["seats"] = seats.fillna(1.0).to_numpy()
        src = "market_size" if (out["prospects_source"] == "market_size").all() else "market_size where given, else customers"
        if (out["prospects_source"] == "customers").all():
            src = "customers (no market_size)"
        lost = [s for s in segs if out.loc[s, "prospects_source"] == "missing"]
        if lost:
            notes.append("No volume in segments.csv for " + ", ".join(lost) + ": left out of the scenarios.")
        unsurveyed = [str(s) for s in m.index if str(s) not in segs]
        if unsurveyed and segs != [ALL]:
            notes.append("segments.csv lists " + ", ".join(unsurveyed) + " but no survey answers come from it: not priced.")
        return out.reset_index(), src, notes
    # no segments.csv: the survey's own (weighted) mix, per one prospect
    out = pd.DataFrame({"segment": segs})
    mix = None
    for frame in (vw_frame, getattr(study, "maxdiff", None), getattr(study, "conjoint", None)):
        if frame is not None and "segment" in frame.columns:
            f = frame.drop_duplicates("respondent_id")
            wts = f["weight"].astype(float) if "weight" in f.columns else pd.Series(1.0, index=f.index)
            mix = wts.groupby(f["segment"].astype(str)).sum()
            break
    if mix is None or len(segs) == 1:
        out["prospects"] = 1.0 / len(segs)
    else:
        mix = mix.reindex(segs).fillna(0.0)
        out["prospects"] = (mix / mix.sum()).to_numpy()
    out["prospects_source"] = "survey mix"
    out["seats"] = 1.0
    out["churn_rate"] = np.nan
    out["gross_margin"] = np.nan
    return out, "the survey's weighted segment mix, per one prospect (no segments.csv)", notes


def _conjoint_feature_map(conjoint, items: list[str], labels: dict[str, str], settings: PricingSettings) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """MaxDiff feature → (conjoint attribute, level): explicit, or an item named like a two-level attribute."""
    from wtp.report import slug

    notes = []
    out: dict[str, tuple[str, str]] = {}
    if conjoint is None:
        return out, notes
    levels = conjoint.attributes
    for code, spec in settings.conjoint_features.items():
        attr, _, lev = str(spec).partition("=")
        if attr in levels and lev in levels[attr]:
            out[str(code)] = (attr, lev)
        else:
            notes.append(f"[packages] conjoint maps {code} to {spec}, which is not a tested attribute level; ignored.")
    by_slug = {slug(a): a for a, lv in levels.items() if len(lv) == 2}
    for code in items:
        if code in out:
            continue
        for name in (code, labels.get(code, "")):
            a = by_slug.get(slug(name))
            if a:
                out[code] = (a, levels[a][1])
                break
    return out, notes


# --------------------------------------------------------------------------------------------
# The stage


def build_price_books(
    *,
    vw=None,
    maxdiff=None,
    conjoint=None,
    segments=None,
    study=None,
    tiers=None,
    pins=None,
    caps=None,
    rng: np.random.Generator | None = None,
    **options,
) -> PriceBookResult:
    """Packages, price books and single-versus-multiple scenarios from whatever results exist.

    Parameters
    ----------
    vw
        :class:`wtp.vanwestendorp.VanWestendorpResult`: acceptable range and NMS demand.
    maxdiff
        A MaxDiff result with ``item_scores`` (``segment, item, share`` 0–100, ``lower, upper``)
        and, optionally, ``individual_utilities`` (``respondent_id, segment, item, utility``).
    conjoint
        :class:`wtp.conjoint.ConjointResult`: share-against-none demand and feature WTP.
    segments
        :class:`wtp.segments.SegmentScores` (or a frame with ``segment, customers`` and optional
        ``market_size, churn_rate, gross_margin``): volumes and LTV.
    study
        :class:`wtp.study.Study`: ``[packages]`` settings, item labels, respondents' weights and
        Van Westendorp answers (to find high-value respondents). A result that is not passed is
        estimated from the study's frame where it has one, by the fast method (VW; MaxDiff
        aggregate logit; conjoint MNL), and the notes say so.
    tiers, pins, caps
        Override ``[packages] tiers``, ``pins`` and ``max_features_per_tier``.
    rng
        Generator for the conjoint simulator's parameter draws (default: seeded with 0).
    **options
        Any other :class:`PricingSettings` field (e.g. ``step_min=1.3``, ``round_prices=False``).

    Returns
    -------
    PriceBookResult
    """
    settings = resolve_settings(study, tiers=tiers, pins=pins, caps=caps, options=options)
    rng = rng if rng is not None else np.random.default_rng(0)
    warnings: list[str] = []
    notes: list[str] = []
    missing: list[dict] = []
    labels = dict(getattr(study, "item_labels", {}) or {})

    # ---- results: passed in, else estimated from the study's frames by the fast method
    if vw is None and getattr(study, "vw", None) is not None:
        from wtp.vanwestendorp import van_westendorp

        vs = dict((study.settings or {}).get("van_westendorp", {}))
        vw = van_westendorp(study.vw, nms_scale=vs.get("nms_scale"))
        notes.append("Van Westendorp estimated here from the study's answers (default options).")
    if conjoint is None and getattr(study, "conjoint", None) is not None:
        from wtp.conjoint import estimate_conjoint

        conjoint = estimate_conjoint(study.conjoint, levels=study.attribute_levels or None, method="mnl")
        notes.append("Conjoint estimated here from the study's answers (aggregate MNL).")
    item_scores = None
    individual = None
    if maxdiff is not None:
        item_scores = maxdiff.item_scores
        ind = getattr(maxdiff, "individual_utilities", None)
        individual = ind if ind is not None and len(ind) else None
    elif getattr(study, "maxdiff", None) is not None:
        try:
            from wtp.maxdiff import estimate_maxdiff
        except ImportError:
            estimate_maxdiff = None
        if estimate_maxdiff is not None:
            try:
                maxdiff = estimate_maxdiff(study.maxdiff, method="logit", rng=rng, labels=labels or None, progress=False)
            except (TypeError, NotImplementedError):
                # an estimator with another signature: the counts below need nothing from it
                estimate_maxdiff = None
        if estimate_maxdiff is not None:
            item_scores = maxdiff.item_scores
            ind = getattr(maxdiff, "individual_utilities", None)
            individual = ind if ind is not None and len(ind) else None
            notes.append("MaxDiff estimated here from the study's answers (aggregate logit).")
        else:
            item_scores = _counts_item_scores(study.maxdiff)
            notes.append("MaxDiff shares computed here from best − worst counts (no MaxDiff result was passed).")
    if item_scores is not None and individual is None and getattr(study, "maxdiff", None) is not None:
        individual = _counts_individual(study.maxdiff)
        notes.append("Appeal and reach use each respondent's best − worst counts (the MaxDiff result has no individual utilities).")
    if item_scores is not None:
        item_scores = item_scores.copy()
        item_scores["segment"] = item_scores["segment"].astype(str)
        item_scores["item"] = item_scores["item"].astype(str)
        if not (item_scores["segment"] == ALL).any():
            pooled = item_scores.groupby("item", sort=False)["share"].mean().reset_index().assign(segment=ALL)
            item_scores = pd.concat([item_scores, pooled], ignore_index=True)

    # ---- which segments
    segs: list[str] = []
    for source in (
        None if vw is None else vw.price_points["segment"].astype(str).tolist(),
        None if conjoint is None else [str(s) for s in conjoint.segments],
        None if item_scores is None else item_scores["segment"].tolist(),
    ):
        for s in source or []:
            if s not in segs and s != ALL:
                segs.append(s)
    if not segs:
        segs = [ALL]

    # ---- individual data: survey weight and a respondent's price level
    if individual is not None:
        individual = individual.copy()
        individual["respondent_id"] = individual["respondent_id"].astype(str)
        if "segment" not in individual.columns:
            seg_of = _first_per_respondent(getattr(study, "maxdiff", None), "segment")
            individual["segment"] = individual["respondent_id"].map(seg_of) if seg_of is not None else ALL
        individual["segment"] = individual["segment"].astype(str)
        if "weight" not in individual.columns:
            wts = None
            for frame in (getattr(study, "maxdiff", None), getattr(study, "respondents", None), getattr(study, "vw", None)):
                wts = _first_per_respondent(frame, "weight")
                if wts is not None:
                    break
            individual["weight"] = individual["respondent_id"].map(wts).astype(float) if wts is not None else 1.0
        if "value" not in individual.columns:
            exp = _first_per_respondent(getattr(study, "vw", None), "expensive")
            individual["value"] = individual["respondent_id"].map(exp).astype(float) if exp is not None else np.nan
            if exp is None:
                notes.append("High-value respondents could not be picked (no Van Westendorp answers linked by respondent_id): higher tiers target every respondent.")

    # ---- packages
    if item_scores is not None:
        packages, pw = draft_packages(item_scores, individual, settings=settings, labels=labels, segments=[*segs, ALL] if segs != [ALL] else [ALL])
        warnings += pw
    else:
        packages = pd.DataFrame(
            [{"segment": s, "package": settings.tiers[0], "feature": "", "label": "", "reason": "no MaxDiff: one package, features not assessed"} for s in ([*segs, ALL] if segs != [ALL] else [ALL])],
            columns=PACKAGE_COLUMNS,
        )
        missing.append({"input": "maxdiff", "status": "missing", "effect": "One package per segment with no feature list; no tiers, no add-ons."})

    # ---- volumes
    vols, volume_source, vn = _volumes(segments, study, segs, getattr(study, "vw", None))
    if segments is None and getattr(study, "segments", None) is not None:
        try:
            from wtp.segments import segment_metrics

            metrics = segment_metrics(study.segments, study.customers, period=study.period, as_of=study.as_of)
            vols, volume_source, vn = _volumes(metrics, study, segs, study.vw)
            notes.append("Segment volumes read from the study's segments.csv.")
        except ImportError:  # pragma: no cover - wtp.segments ships with wtp
            pass
    notes += vn
    vols = vols.set_index("segment")

    # ---- demand models and the acceptable ranges
    cj_map, cjn = _conjoint_feature_map(conjoint, sorted(set(packages["feature"].dropna().astype(str)) - {""}), labels, settings)
    notes += cjn
    ranges = []
    if vw is not None:
        for s in segs:
            lo, hi, _ = _vw_range(vw, s) if s in set(vw.price_points["segment"]) else (np.nan, np.nan, "")
            ranges += [lo, hi]
    if conjoint is not None:
        ranges += [float(min(conjoint.prices)), float(max(conjoint.prices))]
    ranges = [r for r in ranges if np.isfinite(r)]
    span = (min(ranges) * 0.4, max(ranges) * 1.6) if ranges else None
    models: dict[str, DemandModel] = {}
    for s in segs:
        product = {a: lv[0] for a, lv in conjoint.attributes.items()} if conjoint is not None else {}
        if conjoint is not None:
            for a, lv in settings.entry_product.items():
                if a in product and lv in conjoint.attributes[a]:
                    product[a] = lv
            entry_feats = packages[(packages["segment"] == s) & (packages["package"] == settings.tiers[0])]["feature"].astype(str)
            for f in entry_feats:
                if f in cj_map:
                    product[cj_map[f][0]] = cj_map[f][1]
        models[s] = build_demand(s, vw=vw, conjoint=conjoint, product=product, settings=settings, span=span, rng=rng)
        notes += list(models[s].notes)
    priced = [s for s in segs if models[s].source != "none" and np.isfinite(models[s].lo)]
    if vw is None:
        missing.append({"input": "van_westendorp", "status": "missing", "effect": "No acceptable range: entry prices searched within the conjoint's tested prices." if conjoint is not None else "No acceptable range and no NMS demand."})
    elif not vw.has_nms:
        missing.append({"input": "van_westendorp NMS (buy_cheap, buy_expensive)", "status": "missing", "effect": "No stated purchase likelihood: demand from the conjoint" + (" (its level is the share against not buying, not calibrated)." if conjoint is not None else "; without a conjoint, the acceptance share (an upper bound on conversion).")})
    if conjoint is None:
        missing.append({"input": "conjoint", "status": "missing", "effect": "Demand from Van Westendorp alone; feature WTP from MaxDiff value shares of the entry price."})
    if vw is None and conjoint is None:
        missing.append({"input": "prices", "status": "not produced", "effect": "Neither Van Westendorp nor a conjoint: no demand model, so no prices and no scenarios; packages only."})
        warnings.append("No Van Westendorp and no conjoint: packages are drafted but nothing is priced.")
    if segments is None and getattr(study, "segments", None) is None:
        missing.append({"input": "segments", "status": "missing", "effect": "Volumes are the survey's weighted segment mix per one prospect (customers and revenue per prospect); no LTV."})
    elif "prospects_source" in vols.columns and (vols["prospects_source"] == "customers").any():
        missing.append({"input": "segments.market_size", "status": "missing" if (vols["prospects_source"] == "customers").all() else "partial", "effect": "Prospects = current customers where market_size is absent."})
    if individual is None and item_scores is not None:
        missing.append({"input": "maxdiff individual utilities", "status": "missing", "effect": "Appeal and reach unavailable: tiers follow shares alone."})
    if (vols.get("churn_rate", pd.Series(dtype=float)).isna()).all():
        missing.append({"input": "churn", "status": "missing", "effect": "No LTV in the scenarios."})

    # ---- prices per segment (multiple) and the single book
    nice = settings.round_prices
    entry_m: dict[str, float] = {}
    for s in priced:
        m = models[s]
        p, _ = best_price(candidate_prices(m.lo, m.hi, nice=nice), lambda x, m=m: x * m(x))
        entry_m[s] = p
        if not np.isfinite(p):
            warnings.append(f"{s}: no price earns anything within the range {m.lo:,.2f}–{m.hi:,.2f}; no price book.")
    in_scope = [s for s in priced if np.isfinite(entry_m.get(s, np.nan)) and np.isfinite(vols.loc[s, "prospects"]) if s in vols.index]
    entry_s = float("nan")
    if in_scope:
        lo = min(models[s].lo for s in in_scope)
        hi = max(models[s].hi for s in in_scope)
        V = {s: float(vols.loc[s, "prospects"]) * float(vols.loc[s, "seats"]) for s in in_scope}
        entry_s, _ = best_price(candidate_prices(lo, hi, nice=nice), lambda x: sum(V[s] * x * models[s](x) for s in in_scope))

    # ---- feature values, tier prices, price books
    cj_wtp: dict[str, dict[str, float]] = {}
    if conjoint is not None and cj_map:
        w = conjoint.wtp
        w = w[w["valid"]] if "valid" in w.columns else w
        for seg in [*segs, ALL]:
            sub = w[w["segment"].astype(str) == seg].set_index(["attribute", "level"])["wtp"]
            cj_wtp[seg] = {f: float(sub.get((a, lv), np.nan)) for f, (a, lv) in cj_map.items()}
    book_rows = []
    pk_wtp: dict[tuple[str, str], tuple[float, str]] = {}
    tier_rows_m: dict[str, list[dict]] = {}
    for s in segs:
        pk = packages[packages["segment"] == s]
        e = entry_m.get(s, float("nan"))
        vals = feature_values(pk, e, conjoint_wtp=cj_wtp.get(s), settings=settings) if item_scores is not None else {}
        pk_wtp.update({(s, f): v for f, v in vals.items()})
        tier_rows_m[s] = tier_prices(e, pk, vals, settings=settings)
    # the single book: the 'all' packages at the single entry price
    pk_all = packages[packages["segment"] == ALL]
    vals_all = feature_values(pk_all, entry_s, conjoint_wtp=cj_wtp.get(ALL), settings=settings) if item_scores is not None else {}
    pk_wtp.update({(ALL, f): v for f, v in vals_all.items()})
    tier_rows_s = tier_prices(entry_s, pk_all, vals_all, settings=settings)
    for r in tier_rows_s:
        if r["package"] == settings.tiers[0] and np.isfinite(entry_s):
            r["note"] = "entry: maximises revenue over all segments weighted by prospects"
    for s in segs:
        m = models[s]
        for scen, rows in (("single", tier_rows_s), ("multiple", tier_rows_m[s])):
            for r in rows:
                p = r["price"]
                ok = bool(np.isfinite(p) and m.lo - 1e-9 <= p <= m.hi + 1e-9) if np.isfinite(m.lo) else False
                book_rows.append({"scenario": scen, "segment": s, **r, "in_range": ok})
    price_books = pd.DataFrame(book_rows, columns=PRICE_BOOK_COLUMNS)
    for s in segs:
        m = models[s]
        out = price_books[(price_books["scenario"] == "multiple") & (price_books["segment"] == s) & price_books["price"].notna() & ~price_books["in_range"]]
        if len(out) and np.isfinite(m.lo):
            listed = ", ".join(f"{r.package} {r.price:,.2f}" for r in out.itertuples())
            warnings.append(f"{s}: {listed} lie outside the acceptable range {m.lo:,.2f}–{m.hi:,.2f}; higher tiers must be carried by their added features.")
    if np.isfinite(entry_s):
        outside = [s for s in in_scope if not models[s].lo <= entry_s <= models[s].hi]
        if outside:
            warnings.append(f"The single entry price {entry_s:,.2f} is outside the acceptable range of " + ", ".join(outside) + ".")
    pw = packages["feature"].notna() & (packages["feature"].astype(str) != "")
    packages.loc[pw, "wtp"] = [pk_wtp.get((s, f), (np.nan, ""))[0] for s, f in zip(packages.loc[pw, "segment"], packages.loc[pw, "feature"].astype(str), strict=True)]
    packages.loc[pw, "wtp_source"] = [pk_wtp.get((s, f), (np.nan, ""))[1] for s, f in zip(packages.loc[pw, "segment"], packages.loc[pw, "feature"].astype(str), strict=True)]

    # ---- scenarios
    scen_rows = []

    def row(scen, s, price):
        m = models[s]
        V = float(vols.loc[s, "prospects"]) if s in vols.index else float("nan")
        conv = float(m([price])[0]) if np.isfinite(price) else float("nan")
        cust = V * conv
        churn = float(vols.loc[s, "churn_rate"]) if s in vols.index else float("nan")
        margin = float(vols.loc[s, "gross_margin"]) if s in vols.index else float("nan")
        margin = margin if np.isfinite(margin) else 1.0
        life = (LIFETIME_CAP if churn == 0 else 1.0 / churn) if np.isfinite(churn) else float("nan")
        per_account = price * (float(vols.loc[s, "seats"]) if s in vols.index else 1.0)
        ltv = per_account * margin * life
        return {"scenario": scen, "segment": s, "price_book": ALL if scen == "single" else s, "customers": cust, "conversion": conv, "revenue": cust * per_account, "prospects": V, "entry_price": price, "ltv": ltv, "lifetime_value": cust * ltv}

    for scen in SCENARIOS:
        rows = [row(scen, s, entry_s if scen == "single" else entry_m.get(s, np.nan)) for s in segs]
        valid = [r for r in rows if r["segment"] in in_scope]
        if valid:
            V = sum(r["prospects"] for r in valid)
            C = sum(r["customers"] for r in valid)
            total_ltv = sum(r["lifetime_value"] for r in valid) if all(np.isfinite(r["lifetime_value"]) for r in valid) else float("nan")
            rows.append({"scenario": scen, "segment": TOTAL, "price_book": ALL if scen == "single" else "per segment", "customers": C, "conversion": C / V if V else np.nan, "revenue": sum(r["revenue"] for r in valid), "prospects": V, "entry_price": np.nan, "ltv": total_ltv / C if C else np.nan, "lifetime_value": total_ltv})
        scen_rows += rows
    scenarios = pd.DataFrame(scen_rows, columns=SCENARIO_COLUMNS)

    comparison = _comparison(scenarios, in_scope)
    sensitivity = _sensitivity(models, vols, in_scope, entry_m, entry_s, settings.sensitivity)
    arbitrage = _arbitrage(models, vols, in_scope, entry_m, packages, settings)
    if len(comparison):
        tot = comparison[comparison["segment"] == TOTAL]
        if len(tot) and tot["revenue_multiple"].iloc[0] < tot["revenue_single"].iloc[0] - 1e-9:
            warnings.append("One price book earns more than one per segment here: a segment's range keeps its own price from following its demand (the single price lies outside that range).")

    # ---- demand curves for the report
    dem, dsum = [], []
    for s in segs:
        m = models[s]
        if m.source == "none":
            dsum.append({"segment": s, "demand_source": "none", "lo": np.nan, "hi": np.nan, "range_source": m.range_source})
            continue
        a, b = (m.lo * 0.6, m.hi * 1.5) if np.isfinite(m.lo) else span
        grid = np.unique(np.concatenate([np.linspace(a, b, 240), [p for p in (entry_m.get(s), entry_s) if p is not None and np.isfinite(p)]]))
        dem.append(m.curves(grid))
        cand = candidate_prices(m.lo, m.hi, nice=nice)
        opt = {}
        for name, fn in (("nms", m.nms), ("conjoint", m.conjoint), ("acceptance", m.acceptance_curve)):
            opt[name] = best_price(cand, lambda x, fn=fn: x * fn(x))[0] if fn(cand[:1]) is not None and len(cand) else np.nan
        e = entry_m.get(s, np.nan)
        dsum.append(
            {
                "segment": s, "demand_source": m.source, "lo": m.lo, "hi": m.hi, "range_source": m.range_source,
                "nms_optimum": opt["nms"], "conjoint_optimum": opt["conjoint"], "acceptance_optimum": opt["acceptance"],
                "entry_price": e, "conversion": float(m([e])[0]) if np.isfinite(e) else np.nan,
                "conjoint_weight_at_entry": float(m.weight([e])[0]) if np.isfinite(e) else np.nan,
                "conjoint_scale": m.scale, "reference_price": m.reference_price,
                "conjoint_tested": f"{m.tested[0]:g}–{m.tested[1]:g}" if m.tested else "",
            }
        )
    demand = pd.concat(dem, ignore_index=True) if dem else pd.DataFrame(columns=["segment", "price", "nms", "conjoint", "conjoint_calibrated", "conjoint_weight", "acceptance", "reconciled"])
    demand_summary = pd.DataFrame(dsum)

    period = str(getattr(study, "period", None) or "period")
    recommendation = _recommend(comparison, arbitrage, sensitivity, in_scope, entry_m, entry_s, settings, volume_source, period)
    missing_frame = pd.DataFrame(missing, columns=["input", "status", "effect"])
    import wtp

    return PriceBookResult(
        packages=packages.reset_index(drop=True),
        price_books=price_books,
        scenarios=scenarios,
        comparison=comparison,
        sensitivity=sensitivity,
        arbitrage=arbitrage,
        demand=demand,
        demand_summary=demand_summary,
        recommendation=recommendation,
        missing=missing_frame,
        settings=settings,
        segments=tuple(segs),
        models=models,
        warnings=tuple(dict.fromkeys(warnings)),
        notes=tuple(dict.fromkeys(notes)),
        volume_source=volume_source,
        period=period,
        provenance={"wtp_version": wtp.__version__, "instruments": {"van_westendorp": vw is not None, "maxdiff": item_scores is not None, "conjoint": conjoint is not None, "segments": volume_source}},
    )


# --------------------------------------------------------------------------------------------
# Scenario tables


def _comparison(scenarios: pd.DataFrame, in_scope: list[str]) -> pd.DataFrame:
    if scenarios.empty:
        return pd.DataFrame()
    s = scenarios[scenarios["scenario"] == "single"].set_index("segment")
    m = scenarios[scenarios["scenario"] == "multiple"].set_index("segment")
    rows = []
    for seg in [*in_scope, TOTAL]:
        if seg not in s.index or seg not in m.index:
            continue
        a, b = s.loc[seg], m.loc[seg]
        d_rev = b["revenue"] - a["revenue"]
        d_price = (b["entry_price"] / a["entry_price"] - 1) if seg != TOTAL else np.nan
        if seg == TOTAL:
            who = "business " + ("gains" if d_rev > 0 else "loses" if d_rev < 0 else "unchanged")
        else:
            pays = "pay less" if d_price < -1e-9 else "pay more" if d_price > 1e-9 else "pay the same"
            who = f"customers {pays}; revenue {'up' if d_rev > 1e-9 else 'down' if d_rev < -1e-9 else 'unchanged'}"
        rows.append(
            {
                "segment": seg,
                "prospects": a["prospects"],
                "price_single": a["entry_price"],
                "price_multiple": b["entry_price"],
                "price_change": d_price,
                "conversion_single": a["conversion"],
                "conversion_multiple": b["conversion"],
                "customers_single": a["customers"],
                "customers_multiple": b["customers"],
                "customers_change": b["customers"] - a["customers"],
                "revenue_single": a["revenue"],
                "revenue_multiple": b["revenue"],
                "revenue_change": d_rev,
                "revenue_change_pct": d_rev / a["revenue"] if a["revenue"] else np.nan,
                "customers_gain": bool(d_price < -1e-9) if seg != TOTAL else None,
                "revenue_gain": bool(d_rev > 1e-9),
                "who": who,
            }
        )
    return pd.DataFrame(rows)


def _sensitivity(models, vols, in_scope, entry_m, entry_s, step) -> pd.DataFrame:
    rows = []
    for scen in SCENARIOS:
        base = {}
        for change in (-step, 0.0, step):
            tot_c = tot_r = 0.0
            for s in in_scope:
                p0 = entry_s if scen == "single" else entry_m[s]
                p = p0 * (1 + change)
                conv = float(models[s]([p])[0])
                c = float(vols.loc[s, "prospects"]) * conv
                r = c * p * float(vols.loc[s, "seats"])
                tot_c += c
                tot_r += r
                if change == 0:
                    base[s] = r
                rows.append({"scenario": scen, "segment": s, "price_change": change, "entry_price": p, "conversion": conv, "customers": c, "revenue": r})
            if change == 0:
                base[TOTAL] = tot_r
            rows.append({"scenario": scen, "segment": TOTAL, "price_change": change, "entry_price": np.nan, "conversion": np.nan, "customers": tot_c, "revenue": tot_r})
    out = pd.DataFrame(rows, columns=["scenario", "segment", "price_change", "entry_price", "conversion", "customers", "revenue"])
    if len(out):
        base = out[out["price_change"] == 0].set_index(["scenario", "segment"])["revenue"]
        ref = base.reindex(pd.MultiIndex.from_frame(out[["scenario", "segment"]])).to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            out["revenue_change"] = np.where(ref > 0, out["revenue"].to_numpy() / ref - 1, np.nan)
    else:
        out["revenue_change"] = []
    return out


def _arbitrage(models, vols, in_scope, entry_m, packages, settings) -> pd.DataFrame:
    """Pairs where a segment could buy another's cheaper book, and what that would cost."""
    rows = []
    entry = settings.tiers[0]
    for dear in in_scope:
        for cheap in in_scope:
            pd_, pc = entry_m[dear], entry_m[cheap]
            if dear == cheap or not pc < pd_:
                continue
            V = float(vols.loc[dear, "prospects"]) * float(vols.loc[dear, "seats"])
            m = models[dear]
            own = V * pd_ * float(m([pd_])[0])
            switched = V * pc * float(m([pc])[0])
            gap = 1 - pc / pd_
            entry_of = packages[packages["package"] == entry]
            feats_dear = set(entry_of[entry_of["segment"] == dear]["feature"].astype(str)) - {""}
            feats_cheap = set(entry_of[entry_of["segment"] == cheap]["feature"].astype(str)) - {""}
            label = dict(zip(packages["feature"].astype(str), packages["label"].fillna(packages["feature"]).astype(str), strict=True))
            only = sorted(feats_dear - feats_cheap)
            if only:
                fence = f"feature fence: the {dear} {entry} has " + ", ".join(label.get(f, f) for f in only) + f"; the {cheap} {entry} does not"
            else:
                fence = "no feature separates the two entry packages: needs an eligibility fence (company size, seats, usage limits or verification)"
            rows.append(
                {
                    "segment": dear, "cheaper_segment": cheap, "own_price": pd_, "cheaper_price": pc, "gap": gap,
                    "revenue": own, "revenue_if_switched": switched, "revenue_at_risk": own - switched,
                    "risk": "high" if gap >= 0.5 else "medium" if gap >= 0.2 else "low", "fence": fence,
                }
            )
    cols = ["segment", "cheaper_segment", "own_price", "cheaper_price", "gap", "revenue", "revenue_if_switched", "revenue_at_risk", "risk", "fence"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("revenue_at_risk", ascending=False, kind="stable").reset_index(drop=True) if len(out) else out


def _fmt(x: float) -> str:
    """A number for a sentence: no decimals from 100, one below, two below 10."""
    if not np.isfinite(x):
        return "–"
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    text = f"{x:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if digits else text


def _recommend(comparison, arbitrage, sensitivity, in_scope, entry_m, entry_s, settings, volume_source, period="period") -> str:
    if not in_scope or comparison.empty:
        return "No price book can be recommended: the study has no demand model (neither Van Westendorp nor a conjoint) or no segment with a volume."
    tot = comparison[comparison["segment"] == TOTAL].iloc[0]
    per = "per prospect" if "per one prospect" in volume_source else f"per {period}"
    if len(in_scope) == 1:
        s = in_scope[0]
        return f"One segment ({s}): one price book, entry price {_fmt(entry_m[s])}, converting {tot['conversion_multiple']:.1%} for revenue {_fmt(tot['revenue_multiple'])} {per}."
    gain = tot["revenue_change_pct"]
    lo = min(in_scope, key=lambda s: entry_m[s])
    hi = max(in_scope, key=lambda s: entry_m[s])
    sens = sensitivity[(sensitivity["segment"] == TOTAL) & (sensitivity["scenario"] == "multiple")].set_index("price_change")["revenue_change"]
    up = sens.get(settings.sensitivity, np.nan)
    down = sens.get(-settings.sensitivity, np.nan)
    pays_more = comparison[(comparison["segment"] != TOTAL) & (comparison["price_change"] > 1e-9)]["segment"].tolist()
    pays_less = comparison[(comparison["segment"] != TOTAL) & (comparison["price_change"] < -1e-9)]["segment"].tolist()
    high = arbitrage[arbitrage["risk"] != "low"] if len(arbitrage) else arbitrage
    text = []
    if gain >= settings.min_gain:
        text.append(
            f"Use one price book per segment: it earns {_fmt(tot['revenue_multiple'])} {per} against {_fmt(tot['revenue_single'])} with one book at {_fmt(entry_s)} (+{gain:.1%})."
        )
    else:
        text.append(
            f"Keep one price book at {_fmt(entry_s)}: one per segment would earn {_fmt(tot['revenue_multiple'])} {per} against {_fmt(tot['revenue_single'])} ({gain:+.1%}), "
            f"under the {settings.min_gain:.0%} that would pay for the fences separate books need."
        )
    text.append(f"Entry prices run from {_fmt(entry_m[lo])} ({lo}) to {_fmt(entry_m[hi])} ({hi}).")
    if pays_more or pays_less:
        bits = []
        if pays_less:
            bits.append(", ".join(pays_less) + " would pay less than under one book")
        if pays_more:
            bits.append(", ".join(pays_more) + " more")
        text.append("Going from one book to several, " + " and ".join(bits) + f"; customers overall {'+' if tot['customers_change'] >= 0 else ''}{_fmt(tot['customers_change'])}.")
    if len(high) and gain >= settings.min_gain:
        worst = high.iloc[0]
        text.append(
            f"{len(high)} segment pair{'s' if len(high) != 1 else ''} need fences; the costliest is {worst['segment']} buying the {worst['cheaper_segment']} book "
            f"({worst['gap']:.0%} cheaper, {_fmt(worst['revenue_at_risk'])} {per} at risk)."
        )
    if np.isfinite(up) and np.isfinite(down):
        text.append(f"A 10% price rise moves total revenue {up:+.1%}, a 10% cut {down:+.1%}: the prices sit near the revenue peak." if abs(up) < 0.03 and abs(down) < 0.03 else f"A 10% price rise moves total revenue {up:+.1%}, a 10% cut {down:+.1%}.")
    return " ".join(text)


# --------------------------------------------------------------------------------------------
# Output


def write_price_books(result: PriceBookResult, folder: str | Path, *, extras: str | Path | None = "pricing") -> list[Path]:
    """Write the contract tables into ``folder`` and the supporting tables into ``folder/extras``.

    Contract (§4): ``packages.csv``, ``price_books.csv``, ``scenarios.csv``. Supporting:
    ``comparison.csv`` (single → multiple per segment), ``sensitivity.csv`` (±10% prices),
    ``arbitrage.csv``, ``demand.csv`` (every curve per segment), ``demand_summary.csv`` and
    ``missing.csv``; ``extras=None`` leaves them out.
    """
    from wtp.io import write_csv

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = [
        write_csv(result.packages, folder / "packages.csv"),
        write_csv(result.price_books, folder / "price_books.csv"),
        write_csv(result.scenarios, folder / "scenarios.csv"),
    ]
    if extras is not None:
        sub = folder / extras
        sub.mkdir(parents=True, exist_ok=True)
        for name, frame in (
            ("comparison", result.comparison),
            ("sensitivity", result.sensitivity),
            ("arbitrage", result.arbitrage),
            ("demand", result.demand),
            ("demand_summary", result.demand_summary),
            ("missing", result.missing),
        ):
            out.append(write_csv(frame, sub / f"{name}.csv"))
    return out


__all__ = [
    "ADD_ON",
    "DEFAULT_TIERS",
    "DemandModel",
    "PriceBookResult",
    "PricingSettings",
    "build_demand",
    "build_price_books",
    "candidate_prices",
    "draft_packages",
    "feature_values",
    "nice_price",
    "resolve_settings",
    "tier_prices",
    "write_price_books",
]
