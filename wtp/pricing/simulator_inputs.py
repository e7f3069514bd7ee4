"""What the offline simulator page and ``wtp simulate`` need to recompute take-up for any book.

The pricing stage keeps, per segment, the arrays the take-up simulator ran on
(:class:`~wtp.pricing.valuation.SegmentValues`), the calibration factor per draw and the
volumes. :func:`simulator_inputs` packs them with the proposed books into one
:class:`SimulatorInputs` record that serialises to JSON (``pricing/simulator_inputs.json``, and
inlined into ``simulator.html``); :func:`simulate_books` evaluates any book on it with one of
three rules, and the page's JavaScript does the same arithmetic on the same numbers.

=================== ==========================================================================
rule                take-up of package k by respondent i in draw d
=================== ==========================================================================
``first-choice``    the contract's rule (:mod:`wtp.pricing.simulator`): the package with the
                    largest surplus ``s_idk = base + extra_k − price_k`` (+ the stored money
                    shocks: of conjoint-based values, or the tier noise of Van Westendorp
                    values with a conjoint scale per respondent), if it is ≥ 0 — exactly the pricing stage
``share-of-         logit over the surplus without shocks, in money: ``exp(s_k/σ_i) / (1 +
preference``        Σ_j exp(s_j/σ_i))`` with ``σ_i = 1 / −β_price`` the respondent's conjoint
                    price scale (HB posterior mean; MNL: the segment's, or its level noise at
                    the respondent's Van Westendorp price level). Needs a conjoint
``rfc``             randomised first choice: first choice on ``s_idk + σ_i (g_idk − g_id0)``,
                    ``g`` standard Gumbel from a counter-based hash of (seed, segment,
                    respondent, draw, package), so the page draws the same errors; values that
                    already carry stored shocks (above) keep them, and RFC equals first-choice
                    for them. Needs a conjoint
=================== ==========================================================================

Shares are then weighted by each draw's bootstrap × survey weights, multiplied by the draw's
calibration factor (capped so no more than everyone buys), and revenue is prospects × seats ×
Σ share × price, exactly as :func:`wtp.pricing.scenarios.evaluate`.

Size: arrays are stored as little-endian float64 when every draw fits in
:data:`MAX_BYTES`, else float32, and the draws are thinned (the first ``D'`` of the
stage's ``D``; draws are exchangeable) until they fit; ``draws`` and ``draws_total`` say how
many. With every draw kept, the proposal's books reproduce ``scenarios.csv``.

Guardrails (:func:`guardrails`): a price outside the prices the segment's survey tested (the
conjoint's price levels, or the span of the Van Westendorp answers) is marked with how far
outside; a feature in a package without a money value for the segment is marked as counted at 0.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.pricing.noise import rfc_gumbel
from wtp.pricing.settings import ADD_ON
from wtp.pricing.valuation import package_thresholds, tier_noise

Rule = Literal["first-choice", "share-of-preference", "rfc"]
RULES: tuple[str, ...] = ("first-choice", "share-of-preference", "rfc")
FORMAT = "wtp-simulator-inputs"
VERSION = 2  # 2: too_cheap holds a quality threshold per draw (N × D)
MAX_BYTES = 4_200_000  # the arrays' share of the 5 MB page budget (base64 included)
SCENARIO_FILE_COLUMNS = ["scenario", "segment", "package", "feature", "price"]


@dataclass(frozen=True)
class SimulatorSegment:
    """One segment's take-up inputs (shapes as in :mod:`wtp.pricing.simulator`)."""

    name: str
    base: np.ndarray  # N × D
    boot: np.ndarray  # D × N
    feature_values: np.ndarray  # N × F, NaN → 0 (as SegmentValues.extra reads them)
    valued: np.ndarray  # F bool: the feature has a money value for this segment
    described: np.ndarray  # F bool
    reference: np.ndarray  # N
    factor: np.ndarray  # D calibration factor
    prospects: float
    seats: float
    own_book: bool
    too_cheap: np.ndarray | None = None  # N × D quality thresholds of the described product
    shock: np.ndarray | None = None  # N × D × (T + 1)
    scale: np.ndarray | None = None  # N conjoint price scale 1/−β_price (money)
    tested: tuple[float, float, str] | None = None  # low, high, what tested them
    source: str = ""
    # the shock is tier noise (wtp.pricing.valuation.tier_noise) of this seed: stored as the seed
    noise_seed: int | None = None

    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    def extra(self, membership: np.ndarray) -> np.ndarray:
        m = np.asarray(membership, dtype=float) - self.described[None, :].astype(float)
        return self.feature_values @ m.T

    def thresholds(self, membership: np.ndarray) -> np.ndarray | None:
        return package_thresholds(
            self.too_cheap, self.reference, self.extra(membership), self.base.shape[1]
        )

    def shocks(self, k: int) -> np.ndarray | None:
        if self.shock is None:
            return None
        return np.concatenate([self.shock[:, :, :k], self.shock[:, :, -1:]], axis=2)


@dataclass(frozen=True)
class BookSpec:
    """A price book as the simulator reads it: tiers, cumulative features, prices."""

    scenario: str
    name: str  # segment, or 'all'
    tiers: tuple[str, ...]
    membership: np.ndarray  # K × F bool
    prices: np.ndarray  # K, NaN: not offered
    # where the book comes from: "" for the run's proposal, else the scenario file's name
    source: str = ""
    # add-ons (feature, price; NaN: not offered): sold on top of a package (:mod:`wtp.pricing.add_ons`)
    add_ons: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class SimulatorInputs:
    """Everything needed to recompute take-up of any book, for the page and the CLI."""

    features: tuple[str, ...]
    labels: dict[str, str]
    tiers: tuple[str, ...]
    segments: tuple[SimulatorSegment, ...]
    books: tuple[BookSpec, ...]
    too_cheap: str
    level: float
    draws: int
    draws_total: int
    dtype: str  # 'f8' or 'f4'
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    add_on_noise: str = "conjoint"  # [pricing] add_on_noise

    def book(self, scenario: str, name: str) -> BookSpec | None:
        return next((b for b in self.books if b.scenario == scenario and b.name == name), None)

    def segment(self, name: str) -> SimulatorSegment:
        return next(s for s in self.segments if s.name == name)

    @property
    def has_conjoint_scale(self) -> bool:
        return bool(self.segments) and all(s.scale is not None for s in self.segments)

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "segment": s.name,
                    "respondents": s.n,
                    "draws": self.draws,
                    "prospects": s.prospects,
                    "own_book": s.own_book,
                    "source": s.source,
                }
                for s in self.segments
            ]
        )

    def to_frame(self) -> pd.DataFrame:
        return self.summary()

    # ---------------------------------------------------------------------------------------
    # JSON

    def to_json(self) -> dict[str, Any]:
        dt = "<" + self.dtype

        def enc(x):
            if x is None:
                return None
            return base64.b64encode(np.ascontiguousarray(x, dtype=dt).tobytes()).decode("ascii")

        segs = []
        for s in self.segments:
            segs.append({
                "name": s.name, "n": s.n, "prospects": _num(s.prospects), "seats": _num(s.seats), "own_book": s.own_book, "source": s.source,
                "described": s.described.tolist(), "valued": s.valued.tolist(), "factor": [float(x) for x in s.factor],
                "tested": None if s.tested is None else {"low": s.tested[0], "high": s.tested[1], "source": s.tested[2]},
                "base": enc(s.base), "boot": enc(s.boot), "feature_values": enc(s.feature_values), "reference": enc(s.reference),
                "too_cheap": enc(s.too_cheap), "shock": None if s.noise_seed is not None else enc(s.shock),
                "shock_width": None if s.shock is None else int(s.shock.shape[2]), "noise_seed": s.noise_seed, "scale": enc(s.scale),
            })  # fmt: skip
        books = [
            {
                "scenario": b.scenario,
                "name": b.name,
                "tiers": list(b.tiers),
                "membership": b.membership.astype(bool).tolist(),
                "prices": [_num(p) for p in b.prices],
                "add_ons": [[f, _num(p)] for f, p in b.add_ons],
            }
            for b in self.books
        ]
        return {
            "format": FORMAT, "version": VERSION, "features": list(self.features), "labels": dict(self.labels), "tiers": list(self.tiers),
            "too_cheap": self.too_cheap, "level": self.level, "draws": self.draws, "draws_total": self.draws_total, "dtype": self.dtype,
            "seed": self.seed, "meta": self.meta, "segments": segs, "books": books, "add_on_noise": self.add_on_noise,
        }  # fmt: skip

    @classmethod
    def from_json(
        cls, data: dict[str, Any], source: str = "simulator_inputs.json"
    ) -> SimulatorInputs:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise InputError(
                Problem(
                    source,
                    None,
                    "format",
                    f"{FORMAT} version {VERSION} (written by `wtp run`)",
                    f"{data.get('format')} {data.get('version')}",
                )
            )
        dt = "<" + data["dtype"]
        d = int(data["draws"])
        f = len(data["features"])

        def dec(text, shape):
            if text is None:
                return None
            return np.frombuffer(base64.b64decode(text), dtype=dt).astype(float).reshape(shape)

        segs = []
        for s in data["segments"]:
            n = int(s["n"])
            t = s.get("tested")
            scale, seed, width = dec(s["scale"], (n,)), s.get("noise_seed"), s["shock_width"] or 0
            shock = (
                dec(s["shock"], (n, d, width))
                if seed is None
                else tier_noise(scale, d, width - 1, int(seed), int(data["draws_total"]))
            )
            segs.append(SimulatorSegment(
                name=s["name"], base=dec(s["base"], (n, d)), boot=dec(s["boot"], (d, n)), feature_values=dec(s["feature_values"], (n, f)),
                valued=np.array(s["valued"], dtype=bool), described=np.array(s["described"], dtype=bool), reference=dec(s["reference"], (n,)),
                factor=np.array(s["factor"], dtype=float), prospects=_unnum(s["prospects"]), seats=_unnum(s["seats"]), own_book=bool(s["own_book"]),
                too_cheap=dec(s["too_cheap"], (n, d)), shock=shock, scale=scale, noise_seed=None if seed is None else int(seed),
                tested=None if t is None else (float(t["low"]), float(t["high"]), str(t["source"])), source=s.get("source", ""),
            ))  # fmt: skip
        books = tuple(
            BookSpec(
                b["scenario"],
                b["name"],
                tuple(b["tiers"]),
                np.array(b["membership"], dtype=bool).reshape(len(b["tiers"]), f),
                np.array([_unnum(p) for p in b["prices"]], dtype=float),
                add_ons=tuple((str(f), _unnum(p)) for f, p in b.get("add_ons", [])),
            )
            for b in data["books"]
        )
        return cls(
            features=tuple(data["features"]), labels=dict(data["labels"]), tiers=tuple(data["tiers"]), segments=tuple(segs), books=books,
            too_cheap=data["too_cheap"], level=float(data["level"]), draws=d, draws_total=int(data["draws_total"]), dtype=data["dtype"],
            seed=int(data.get("seed", 0)), meta=dict(data.get("meta", {})), add_on_noise=str(data.get("add_on_noise", "conjoint")),
        )  # fmt: skip


def read_inputs(path: str | Path) -> SimulatorInputs:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(
            Problem(str(path), None, None, "the simulator inputs `wtp run` writes (JSON)", str(e))
        ) from None
    return SimulatorInputs.from_json(data, str(path))


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _unnum(x) -> float:
    return float("nan") if x is None else float(x)


# --------------------------------------------------------------------------------------------
# Built from the pricing stage


def _tested_range(v, vw, conjoint, study) -> tuple[float, float, str] | None:
    """Prices the segment's survey put to respondents: the conjoint's price levels where the
    values come from it, else the span of the segment's Van Westendorp answers."""
    if "conjoint" in v.source and conjoint is not None and len(conjoint.coding.prices):
        p = np.asarray(conjoint.coding.prices, dtype=float)
        return float(p.min()), float(p.max()), "conjoint price levels"
    answers = getattr(study, "vw", None)
    if answers is not None and {"too_cheap", "too_expensive"} <= set(answers.columns):
        a = answers[answers["respondent_id"].astype(str).isin(set(map(str, v.respondent_id)))]
        cols = [c for c in ("too_cheap", "cheap", "expensive", "too_expensive") if c in a.columns]
        x = a[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        if np.isfinite(x).any():
            return float(np.nanmin(x)), float(np.nanmax(x)), "Van Westendorp answers"
    return None


def _per_draw(x: np.ndarray, d: int) -> np.ndarray:
    """N × d: the first d draws of an N × D array, or an N array repeated."""
    x = np.asarray(x, dtype=float)
    return np.repeat(x[:, None], d, axis=1) if x.ndim == 1 else x[:, :d]


def _thin(per_draw_bytes: float, fixed_bytes: float, draws: int) -> tuple[str, int]:
    """float64 with every draw if it fits, else float32 and as many draws as fit."""
    if fixed_bytes * 8 + per_draw_bytes * 8 * draws <= MAX_BYTES * 3 / 4:
        return "f8", draws
    room = MAX_BYTES * 3 / 4 - fixed_bytes * 4
    return "f4", int(max(1, min(draws, room // max(per_draw_bytes * 4, 1))))


def simulator_inputs(
    books, values, own, vols, cal, settings, *, vw=None, conjoint=None, study=None, seed: int = 0
) -> SimulatorInputs:
    """The simulator record of a pricing stage (arguments as :func:`build_price_books` has them:
    ``books`` keyed by ``(scenario, name)``, ``values`` the segments' SegmentValues, ``own``
    which segments have their own book, volumes and calibration)."""
    vs = [v for s, v in values.items() if np.isfinite(vols.get(s, "prospects"))]
    d_total = min((v.base.shape[1] for v in vs), default=0)
    per_draw = sum(
        v.n
        * (
            2
            + (v.shock.shape[2] if v.shock is not None and v.noise_seed is None else 0)
            + (v.too_cheap is not None)  # a quality threshold per draw
        )
        for v in vs
    )
    fixed = sum(v.n * (len(v.features) + 3) for v in vs)
    dtype, d = _thin(per_draw, fixed, d_total)
    segs = []
    for v in vs:
        s = v.segment
        fv = np.nan_to_num(v.feature_values, nan=0.0)
        segs.append(SimulatorSegment(
            name=s, base=v.base[:, :d], boot=v.boot[:d], feature_values=fv, valued=np.isfinite(v.feature_values).any(axis=0),
            described=np.asarray(v.described, dtype=bool), reference=np.asarray(v.reference, dtype=float), factor=np.asarray(cal.draws(s), dtype=float)[:d],
            prospects=float(vols.get(s, "prospects", 0.0)), seats=float(vols.get(s, "seats", 1.0)), own_book=bool(own.get(s)) and ("multiple", s) in books,
            too_cheap=None if v.too_cheap is None else _per_draw(v.too_cheap, d), shock=None if v.shock is None else v.shock[:, :d],
            scale=v.scale, tested=_tested_range(v, vw, conjoint, study), source=v.source, noise_seed=v.noise_seed,
        ))  # fmt: skip
    specs = tuple(
        BookSpec(
            b.scenario,
            b.name,
            tuple(b.tiers),
            np.asarray(b.membership, dtype=bool),
            np.asarray(b.prices, dtype=float),
            add_ons=tuple(getattr(b, "add_ons", ())),
        )
        for b in books.values()
    )
    features = tuple(vs[0].features) if vs else ()
    item_labels = dict(getattr(study, "item_labels", None) or {})
    labels = {f: str(item_labels.get(f, f)) for f in features}
    meta = {}
    if study is not None:
        meta = {
            "name": str(getattr(study, "name", "")),
            "currency": str(getattr(study, "currency", "") or ""),
            "price_unit": str(getattr(study, "price_unit", "") or ""),
            "period": str(getattr(study, "period", "") or ""),
        }
    return SimulatorInputs(
        features,
        labels,
        tuple(settings.tiers),
        tuple(segs),
        specs,
        settings.too_cheap,
        float(settings.level),
        d,
        d_total,
        dtype,
        seed,
        meta,
        settings.add_on_noise,
    )


# --------------------------------------------------------------------------------------------
# Rules


def _shares(
    seg: SimulatorSegment,
    member: np.ndarray,
    prices: np.ndarray,
    too_cheap: str,
    rule: str,
    seed: int,
    index: int,
    width: int,
) -> np.ndarray:
    """D × K uncalibrated take-up shares of the priced packages."""
    from wtp.pricing.simulator import take_up

    k = len(prices)
    tc = seg.thresholds(member) if too_cheap == "exclude" else None
    extra = seg.extra(member)
    if rule == "first-choice" or (rule == "rfc" and seg.shock is not None):
        return take_up(seg.base, extra, prices, seg.boot, too_cheap=tc, shock=seg.shocks(k))
    if seg.scale is None:
        raise InputError(
            Problem(
                "--rule",
                None,
                None,
                "a conjoint in the study (its price scale) for the share-of-preference and RFC rules",
                rule,
            )
        )
    w = seg.boot / seg.boot.sum(axis=1, keepdims=True)
    if rule == "rfc":
        shock = _rfc_shock(seg, seed, index, width, k)
        return take_up(seg.base, extra, prices, seg.boot, too_cheap=tc, shock=shock)
    return np.einsum("dn,ndk->dk", w, _logit(seg, extra, prices, tc))


def _rfc_shock(seg: SimulatorSegment, seed: int, index: int, width: int, k: int) -> np.ndarray:
    """N × D × (k + 1) money-valued Gumbel errors of the RFC rule: columns are tiers by position,
    none last, so a book's errors do not depend on how many tiers it prices."""
    g = rfc_gumbel(seed, index, seg.n, seg.base.shape[1], width)
    return np.concatenate([g[:, :, :k], g[:, :, -1:]], axis=2) * seg.scale[:, None, None]


def _logit(seg: SimulatorSegment, extra, prices, tc) -> np.ndarray:
    """N × D × K share-of-preference probabilities: logit over the surplus in units of each
    respondent's conjoint price scale, not buying at 0."""
    from wtp.pricing.simulator import surplus

    s = surplus(seg.base, extra, prices, too_cheap=tc) / seg.scale[:, None, None]
    m = np.maximum(np.max(s, axis=2, initial=0.0), 0.0)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m[..., None])
    return e / (np.exp(-m) + e.sum(axis=2))[..., None]


@dataclass(frozen=True)
class Outcome:
    shares: np.ndarray  # D × K (every tier of the book; 0 where not priced)
    revenue: np.ndarray  # D


def evaluate_book(
    seg: SimulatorSegment,
    book: BookSpec,
    too_cheap: str,
    rule: str = "first-choice",
    seed: int = 0,
    index: int = 0,
    width: int | None = None,
) -> Outcome:
    """Calibrated take-up and revenue per draw (as :func:`wtp.pricing.scenarios.evaluate`)."""
    priced = np.isfinite(book.prices)
    d = seg.base.shape[1]
    full = np.zeros((d, len(book.prices)))
    if not priced.any():
        return Outcome(full, np.zeros(d))
    prices = book.prices[priced]
    width = len(book.prices) + 1 if width is None else width
    sh = (
        _shares(seg, book.membership[priced], prices, too_cheap, rule, seed, index, width)
        * seg.factor[:, None]
    )
    total = sh.sum(axis=1, keepdims=True)
    sh = np.where(total > 1, sh / np.where(total > 0, total, 1), sh)
    full[:, priced] = sh
    return Outcome(full, seg.prospects * seg.seats * (sh @ prices))


# --------------------------------------------------------------------------------------------
# Add-ons (:mod:`wtp.pricing.add_ons` on the simulator's arrays)


def _taken(
    seg: SimulatorSegment,
    book: BookSpec,
    too_cheap: str,
    rule: str,
    seed: int,
    index: int,
    width: int,
) -> np.ndarray:
    """N × D × K probability that each respondent takes each tier of ``book`` under ``rule``:
    per respondent what :func:`_shares` sums over respondents."""
    from wtp.pricing.add_ons import first_choice
    from wtp.pricing.simulator import choices

    priced = np.isfinite(book.prices)
    n, d = seg.base.shape
    out = np.zeros((n, d, len(book.prices)))
    if not priced.any():
        return out
    member, prices = book.membership[priced], book.prices[priced]
    k = len(prices)
    tc = seg.thresholds(member) if too_cheap == "exclude" else None
    extra = seg.extra(member)
    if rule == "share-of-preference":
        out[:, :, priced] = _logit(seg, extra, prices, tc)
        return out
    shock = seg.shocks(k)
    if rule == "rfc" and seg.shock is None:
        shock = _rfc_shock(seg, seed, index, width, k)
    return first_choice(choices(seg.base, extra, prices, too_cheap=tc, shock=shock), priced)


def evaluate_add_ons(
    seg: SimulatorSegment,
    book: BookSpec,
    features: tuple[str, ...],
    too_cheap: str,
    rule: str = "first-choice",
    seed: int = 0,
    index: int = 0,
    width: int | None = None,
    noise: str = "conjoint",
):
    """Calibrated take-up and revenue draws of ``book``'s add-ons
    (:class:`~wtp.pricing.add_ons.AddOnOutcome`), as the pricing stage computes them."""
    from wtp.pricing.add_ons import Buyers, calibrated_weights
    from wtp.pricing.add_ons import evaluate_add_ons as evaluate

    width = len(book.prices) + 1 if width is None else width
    taken = _taken(seg, book, too_cheap, rule, seed, index, width)
    money = np.where(seg.valued[None, :], seg.feature_values, np.nan)
    b = Buyers(
        taken,
        calibrated_weights(seg.boot, taken, seg.factor),
        money,
        seg.prospects * seg.seats,
        seg.scale if noise == "conjoint" else None,
    )
    return evaluate(book, b, features)


def _interval(x: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(x, a)), float(np.quantile(x, 1 - a))


# --------------------------------------------------------------------------------------------
# Guardrails


def tested_range(seg: SimulatorSegment, member_row: np.ndarray) -> tuple[float, float] | None:
    """Lowest and highest price the segment's survey tested for a package: the conjoint's
    price levels, or the span of the Van Westendorp answers (about the product they describe)
    plus the mean money value the package's features add to it."""
    if seg.tested is None:
        return None
    lo, hi, what = seg.tested
    if what.startswith("Van Westendorp"):
        w = seg.boot.mean(axis=0)
        add = float(w @ seg.extra(member_row[None, :])[:, 0] / w.sum())
        hi += max(add, 0.0)
    return lo, hi


def _pct(x: float) -> str:
    return f"{x:.1%}" if x < 0.01 else f"{x:.0%}"


def outside_note(name: str, price: float, low: float, high: float, what: str) -> str | None:
    """``"Pro at 4.99 is 100% above the highest price tested (2.49, …): extrapolated"``, or
    ``None`` for a price within ``[low, high]``."""
    if not np.isfinite(price) or low <= price <= high:
        return None
    far = price / high - 1 if price > high else 1 - price / low
    side = f"{_pct(far)} above the highest" if price > high else f"{_pct(far)} below the lowest"
    return f"{name} at {price:,.2f} is {side} price tested ({high if price > high else low:,.2f}, {what}): extrapolated"


def guardrails(inputs: SimulatorInputs, books: dict[tuple[str, str], BookSpec]) -> pd.DataFrame:
    """Prices outside what the survey tested and features without a money value, per book and
    package: ``scenario, book, package, feature, price, tested_low, tested_high, outside,
    note``. ``outside`` is the relative distance beyond the tested range (0.2 = 20% above); a
    book offered to several segments is tested over their widest range."""
    rows = []
    cols = [
        "scenario",
        "book",
        "package",
        "feature",
        "price",
        "tested_low",
        "tested_high",
        "outside",
        "note",
    ]
    for (scenario, name), b in books.items():
        segs = [s for s in inputs.segments if (name == "all" or s.name == name)]
        for k, (t, p) in enumerate(zip(b.tiers, b.prices, strict=True)):
            ranges = [r for r in (tested_range(s, b.membership[k]) for s in segs) if r is not None]
            if not ranges or not np.isfinite(p):
                continue
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
            if lo <= p <= hi:
                continue
            far = p / hi - 1 if p > hi else 1 - p / lo
            what = next(s.tested[2] for s in segs if s.tested is not None)
            rows.append(
                {
                    "scenario": scenario,
                    "book": name,
                    "package": t,
                    "feature": "",
                    "price": p,
                    "tested_low": lo,
                    "tested_high": hi,
                    "outside": far,
                    "note": outside_note(t, p, lo, hi, what),
                }
            )
        for j, f in enumerate(inputs.features):
            for k, t in enumerate(b.tiers):
                if (
                    not b.membership[k, j]
                    or not np.isfinite(b.prices[k])
                    or (k > 0 and b.membership[k - 1, j])
                ):
                    continue
                missing = [s.name for s in segs if not s.valued[j]]
                if missing:
                    rows.append({"scenario": scenario, "book": name, "package": t, "feature": f, "price": b.prices[k], "tested_low": np.nan, "tested_high": np.nan, "outside": np.nan,
                                 "note": f"{inputs.labels.get(f, f)} in {t} has no money value for {', '.join(missing)} (no conjoint level, no bridge): counted as 0"})  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------
# Books from a scenario file


def proposal_books(inputs: SimulatorInputs) -> dict[tuple[str, str], BookSpec]:
    return {(b.scenario, b.name): b for b in inputs.books}


def read_book_file(path: str | Path, inputs: SimulatorInputs) -> dict[tuple[str, str], BookSpec]:
    """Books in a scenario file (``scenario, segment, package, feature, price``; each feature at
    the lowest tier that has it, as packages.csv; scenario, segment and package names match after
    trimming and case-folding). Within a scenario the file names, a segment whose book it does
    not give keeps the proposed one (:func:`simulate_books` says so); ``package = add-on`` rows
    are add-ons (:mod:`wtp.pricing.add_ons`), simulated on top of the book's tiers; an empty
    price means not offered, for an add-on as for a tier."""
    from difflib import get_close_matches

    from wtp.io import read_table

    path = Path(path)
    frame = read_table(path)
    src = str(path)
    cols = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in SCENARIO_FILE_COLUMNS if c not in cols]
    if missing:
        raise InputError(
            [
                Problem(
                    src,
                    1,
                    c,
                    "a column '" + c + "' (scenario, segment, package, feature, price)",
                    "header " + ", ".join(map(str, frame.columns)),
                )
                for c in missing
            ]
        )
    f = frame.rename(columns={v: k for k, v in cols.items()})[SCENARIO_FILE_COLUMNS]
    offset = int(frame.attrs.get("row_offset", 2))
    problems: list[Problem] = []
    segments = [s.name for s in inputs.segments]
    known = {"single": ["all"], "multiple": segments}
    tiers = list(inputs.tiers)
    feats = list(inputs.features)
    by_book: dict[tuple[str, str], dict[str, Any]] = {}
    # names as the analyst typed them: trimmed and case-folded, as every other match (§5)
    fold = {
        "scenario": {k.casefold(): k for k in known},
        "single": {"all": "all"},
        "multiple": {x.casefold(): x for x in segments},
        "package": {t.casefold(): t for t in [*tiers, ADD_ON]}
        | {"add-ons": ADD_ON, "addon": ADD_ON},
    }

    def close(x, options):
        m = get_close_matches(str(x), [str(o) for o in options], n=1)
        return f" (did you mean '{m[0]}'?)" if m else ""

    for i, r in enumerate(f.itertuples(index=False)):
        row = i + offset
        sc, seg, pk, ft, pr = (("" if pd.isna(x) else str(x).strip()) for x in r)
        sc = fold["scenario"].get(sc.casefold(), sc)
        if sc in known:
            seg = fold[sc].get(seg.casefold(), seg)
        pk = fold["package"].get(pk.casefold(), pk)
        if sc not in known:
            problems.append(
                Problem(src, row, "scenario", "single or multiple" + close(sc, known), sc)
            )
            continue
        if seg not in known[sc]:
            problems.append(
                Problem(
                    src,
                    row,
                    "segment",
                    f"one of {', '.join(known[sc])} for scenario {sc}" + close(seg, known[sc]),
                    seg,
                )
            )
            continue
        if pk not in tiers and pk != ADD_ON:
            problems.append(
                Problem(
                    src,
                    row,
                    "package",
                    f"one of the study's tiers {', '.join(tiers)} or '{ADD_ON}'" + close(pk, tiers),
                    pk,
                )
            )
            continue
        if ft and ft not in feats:
            problems.append(
                Problem(
                    src,
                    row,
                    "feature",
                    "a feature code of the study (or empty)" + close(ft, feats),
                    ft,
                )
            )
            continue
        try:
            price = float(pr) if pr else float("nan")
        except ValueError:
            problems.append(Problem(src, row, "price", "a number (or empty: not offered)", pr))
            continue
        if np.isfinite(price) and price < 0 or np.isinf(price):
            problems.append(Problem(src, row, "price", "a price of 0 or more", pr))
            continue
        b = by_book.setdefault((sc, seg), {"prices": {}, "lowest": {}, "add_ons": {}})
        if pk == ADD_ON:
            if not ft:
                problems.append(Problem(src, row, "feature", "the feature sold as an add-on", ""))
            elif ft in b["lowest"] or ft in b["add_ons"]:
                where = b["lowest"].get(ft, ADD_ON)
                problems.append(
                    Problem(
                        src,
                        row,
                        "feature",
                        f"each feature once per book ({ft} is already in {where})",
                        ft,
                    )
                )
            else:
                b["add_ons"][ft] = price
            continue
        if pk in b["prices"] and not (
            np.isnan(price) and np.isnan(b["prices"][pk]) or price == b["prices"][pk]
        ):
            problems.append(
                Problem(
                    src,
                    row,
                    "price",
                    f"the same price on every row of {pk} ({b['prices'][pk]:g})",
                    pr,
                )
            )
            continue
        b["prices"][pk] = price
        if ft:
            if ft in b["lowest"] or ft in b["add_ons"]:
                problems.append(
                    Problem(
                        src,
                        row,
                        "feature",
                        f"each feature once per book, at the lowest tier that has it ({ft} is already in {b['lowest'][ft]})",
                        ft,
                    )
                )
                continue
            b["lowest"][ft] = pk
    for (sc, seg), b in by_book.items():
        if not b["prices"]:
            problems.append(
                Problem(
                    src,
                    None,
                    "package",
                    f"at least one tier for the {sc} book of {seg}",
                    "add-ons only",
                )
            )
    if problems:
        raise InputError(problems)
    if not by_book:
        raise InputError(Problem(src, None, None, "at least one book row", "no rows"))
    out = proposal_books(inputs)
    for (sc, seg), b in by_book.items():
        have = [t for t in tiers if t in b["prices"]]
        member = np.zeros((len(have), len(feats)), dtype=bool)
        for ft, pk in b["lowest"].items():
            member[have.index(pk) :, feats.index(ft)] = True
        out[(sc, seg)] = BookSpec(
            sc,
            seg,
            tuple(have),
            member,
            np.array([b["prices"][t] for t in have], dtype=float),
            source=path.name,
            add_ons=tuple(b["add_ons"].items()),
        )
    return out


# --------------------------------------------------------------------------------------------
# Evaluation of books


@dataclass(frozen=True)
class SimulationResult:
    """take_up.csv and scenarios.csv for a set of books, plus the guardrail marks."""

    take_up: pd.DataFrame
    scenarios: pd.DataFrame
    guardrails: pd.DataFrame
    rule: str
    draws: int
    seed: int | None = None  # the seed the take-up draws used (the run's unless given)
    sources: tuple[str, ...] = ()  # the scenario files the books came from
    meta: dict[str, Any] = field(default_factory=dict)  # the study's name, currency, period
    add_ons: pd.DataFrame | None = None  # pricing/add_ons.csv's layout (ADD_ON_COLUMNS)

    def summary(self) -> pd.DataFrame:
        return self.scenarios[
            [
                "scenario",
                "segment",
                "price_book",
                "customers",
                "conversion",
                "revenue",
                "revenue_lower",
                "revenue_upper",
            ]
        ].copy()

    def to_frame(self) -> pd.DataFrame:
        return self.take_up.copy()


def offered(
    books: dict[tuple[str, str], BookSpec], seg: SimulatorSegment, scenario: str
) -> BookSpec | None:
    """The book a segment is offered: its own under ``multiple`` when there is one (the run's, or
    one a scenario file gives it — also to a segment the run offered the single book), else the
    single book."""
    if scenario == "multiple" and ("multiple", seg.name) in books:
        return books[("multiple", seg.name)]
    return books.get(("single", "all"))


def _book_note(book: BookSpec, seg: SimulatorSegment, scenario: str, named: bool) -> str:
    """What a scenarios.csv row's book is, when a scenario file is involved."""
    notes = []
    if named and not book.source:
        notes.append("the proposed book: the scenario file gives none for this segment")
    if scenario == "multiple" and book.scenario == "multiple" and not seg.own_book:
        notes.append("the run offered this segment the single book ([sample] min_n)")
    idle = [f for f, p in book.add_ons if not np.isfinite(p)]
    if idle:
        notes.append(f"add-ons without a price, not offered: {', '.join(idle)}")
    return "; ".join(notes)


def simulate_books(
    inputs: SimulatorInputs,
    books: dict[tuple[str, str], BookSpec] | None = None,
    *,
    rule: Rule = "first-choice",
    seed: int | None = None,
) -> SimulationResult:
    """take_up.csv and scenarios.csv (contract §5) of ``books`` (default: the proposal)."""
    from wtp.pricing.result import ADD_ON_COLUMNS, SCENARIO_COLUMNS, TAKE_UP_COLUMNS

    if rule not in RULES:
        raise InputError(Problem("--rule", None, None, "one of " + ", ".join(RULES), rule))
    books = proposal_books(inputs) if books is None else books
    seed = inputs.seed if seed is None else seed
    marks = guardrails(inputs, books)
    take, scen, extras = [], [], []
    lvl = inputs.level
    # with a scenario file: the scenarios it names (contract §4: "for the book in FILE")
    named = {b.scenario for b in books.values() if b.source}
    for scenario in [x for x in ("single", "multiple") if not named or x in named]:
        tot = add_tot = None
        for index, seg in enumerate(inputs.segments):
            book = offered(books, seg, scenario)
            if book is None or not np.isfinite(seg.prospects):
                continue
            o = evaluate_book(seg, book, inputs.too_cheap, rule, seed, index, len(inputs.tiers) + 1)
            for k, t in enumerate(book.tiers):
                p = book.prices[k]
                sh = o.shares[:, k]
                lo, hi = _interval(sh, lvl)
                rev = seg.prospects * seg.seats * sh * (p if np.isfinite(p) else 0.0)
                rlo, rhi = _interval(rev, lvl)
                take.append(
                    {
                        "scenario": scenario,
                        "segment": seg.name,
                        "package": t,
                        "price": p,
                        "share": float(sh.mean()),
                        "share_lower": lo,
                        "share_upper": hi,
                        "customers": seg.prospects * float(sh.mean()),
                        "revenue": float(rev.mean()),
                        "revenue_lower": rlo,
                        "revenue_upper": rhi,
                    }
                )
            ao = evaluate_add_ons(
                seg, book, inputs.features, inputs.too_cheap, rule, seed, index, len(inputs.tiers) + 1, inputs.add_on_noise
            )  # fmt: skip
            extras += _add_on_rows(scenario, seg, book, ao, lvl)
            add_rev = ao.revenue.sum(axis=1)
            add_tot = add_rev.copy() if add_tot is None else add_tot + add_rev
            conv = o.shares.sum(axis=1)
            rlo, rhi = _interval(o.revenue, lvl)
            m = marks[(marks["scenario"] == book.scenario) & (marks["book"] == book.name)]
            note = "; ".join(
                [*m["note"], *filter(None, [_book_note(book, seg, scenario, bool(named))])]
            )
            scen.append({"scenario": scenario, "segment": seg.name, "price_book": book.name, "customers": seg.prospects * float(conv.mean()), "conversion": float(conv.mean()), "revenue": float(o.revenue.mean()),
                         "revenue_lower": rlo, "revenue_upper": rhi, "prospects": seg.prospects, "entry_price": float(book.prices[0]) if len(book.prices) else np.nan, "calibration": float(np.mean(seg.factor)),
                         "note": note, **_add_on_revenue(add_rev, lvl)})  # fmt: skip
            tot = o.revenue.copy() if tot is None else tot + o.revenue
        if tot is not None:
            rows = [r for r in scen if r["scenario"] == scenario]
            v = sum(r["prospects"] for r in rows)
            c = sum(r["customers"] for r in rows)
            rlo, rhi = _interval(tot, lvl)
            scen.append({"scenario": scenario, "segment": "total", "price_book": "all" if scenario == "single" else "per segment", "customers": c, "conversion": c / v if v else np.nan,
                         "revenue": float(tot.mean()), "revenue_lower": rlo, "revenue_upper": rhi, "prospects": v, "entry_price": np.nan, "calibration": np.nan, "note": "",
                         **_add_on_revenue(add_tot, lvl)})  # fmt: skip
    scen_cols = [
        c
        for c in SCENARIO_COLUMNS
        if c
        in {
            "scenario",
            "segment",
            "price_book",
            "customers",
            "conversion",
            "revenue",
            "revenue_lower",
            "revenue_upper",
            "prospects",
            "entry_price",
            "calibration",
            "note",
            "add_on_revenue",
            "add_on_revenue_lower",
            "add_on_revenue_upper",
        }
    ]
    return SimulationResult(
        pd.DataFrame(take, columns=TAKE_UP_COLUMNS),
        pd.DataFrame(scen, columns=scen_cols),
        marks,
        rule,
        inputs.draws,
        seed,
        tuple(sorted({b.source for b in books.values() if b.source})),
        dict(inputs.meta),
        pd.DataFrame(extras, columns=ADD_ON_COLUMNS),
    )


def _add_on_revenue(revenue: np.ndarray, level: float) -> dict[str, float]:
    lo, hi = _interval(revenue, level)
    return {
        "add_on_revenue": float(revenue.mean()),
        "add_on_revenue_lower": lo,
        "add_on_revenue_upper": hi,
    }


def _add_on_rows(
    scenario: str, seg: SimulatorSegment, book: BookSpec, ao, level: float
) -> list[dict]:
    """pricing/add_ons.csv rows of one segment offered ``book``."""
    rows = []
    for a, f in enumerate(ao.features):
        lo, hi = _interval(ao.revenue[:, a], level)
        share = float(ao.shares[:, a].mean())
        rows.append({
            "scenario": scenario, "segment": seg.name, "price_book": book.name, "feature": f, "price": ao.prices[a], "share": share,
            "customers": seg.prospects * share, "revenue": float(ao.revenue[:, a].mean()), "revenue_lower": lo, "revenue_upper": hi,
            "note": "" if np.isfinite(ao.prices[a]) else "no price: not offered",
        })  # fmt: skip
    return rows


def book_rows(books: dict[tuple[str, str], BookSpec], features: tuple[str, ...]) -> pd.DataFrame:
    """The scenario file of ``books``: each feature once, at the lowest tier that has it."""
    rows = []
    for (sc, name), b in books.items():
        for k, t in enumerate(b.tiers):
            added = [
                f
                for j, f in enumerate(features)
                if b.membership[k, j] and (k == 0 or not b.membership[k - 1, j])
            ]
            for f in added or [""]:
                rows.append(
                    {
                        "scenario": sc,
                        "segment": name,
                        "package": t,
                        "feature": f,
                        "price": b.prices[k],
                    }
                )
        rows += [
            {"scenario": sc, "segment": name, "package": ADD_ON, "feature": f, "price": p}
            for f, p in b.add_ons
        ]
    return pd.DataFrame(rows, columns=SCENARIO_FILE_COLUMNS)


__all__ = [
    "RULES",
    "BookSpec",
    "SimulationResult",
    "SimulatorInputs",
    "SimulatorSegment",
    "book_rows",
    "evaluate_add_ons",
    "evaluate_book",
    "guardrails",
    "outside_note",
    "proposal_books",
    "read_book_file",
    "read_inputs",
    "rfc_gumbel",
    "simulate_books",
    "simulator_inputs",
]
