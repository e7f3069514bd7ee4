"""The pricing stage as a recipe of named steps over the earlier stages' result objects."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from wtp.pricing.add_ons import evaluate_add_ons, price_add_ons, segment_buyers
from wtp.pricing.inputs import Volumes, survey_mix, volumes
from wtp.pricing.packages import draft_packages, draft_single_book
from wtp.pricing.recommendation import recommend
from wtp.pricing.result import (
    ADD_ON_COLUMNS,
    PACKAGES_COLUMNS,
    PRICE_BOOK_COLUMNS,
    SCENARIO_COLUMNS,
    TAKE_UP_COLUMNS,
    PriceBookResult,
)
from wtp.pricing.scenarios import (
    Book,
    Calibration,
    Outcome,
    calibrate,
    evaluate,
    instrument_spread,
    interval,
    membership,
    price_book,
    same_basis,
    unvalued_reason,
)
from wtp.pricing.settings import ADD_ON, ALL, TOTAL, PricingSettings, resolve_settings
from wtp.pricing.simulator import choices
from wtp.pricing.simulator_inputs import simulator_inputs
from wtp.pricing.valuation import SegmentValues, second_opinion, value_segments


@dataclass
class _Log:
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[dict] = field(default_factory=list)
    disagree: list[str] = field(default_factory=list)  # segments whose instruments disagree


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
    min_n: int | None = None,
    rng: np.random.Generator | None = None,
    **options,
) -> PriceBookResult:
    """Packages, jointly priced books and the single-versus-multiple scenarios.

    Parameters
    ----------
    vw, maxdiff, conjoint
        The instrument results (:class:`~wtp.vanwestendorp.VanWestendorpResult`,
        :class:`~wtp.maxdiff.MaxDiffResult`, :class:`~wtp.conjoint.ConjointResult`); any may be
        ``None``. Individual Van Westendorp answers come from ``study.vw`` (the validated frame
        the result was estimated from).
    segments
        :class:`~wtp.segments.SegmentScores` (or a frame with ``segment, customers`` and
        optional ``market_size, arpa, conversion_rate, churn_rate, gross_margin``).
    study
        :class:`~wtp.study.Study`: settings, labels and the answer frames.
    tiers, pins, caps, min_n, **options
        Override study.toml (``min_n``: ``[sample] min_n``; options: any
        :class:`~wtp.pricing.settings.PricingSettings` field).
    rng
        Generator for every draw (default seeded with 0).
    """
    settings = resolve_settings(
        study, tiers=tiers, pins=pins, caps=caps, min_n=min_n, options=options
    )
    rng = rng if rng is not None else np.random.default_rng(0)
    log = _Log()
    labels = dict(getattr(study, "item_labels", {}) or {})
    segs = _segments(vw, maxdiff, conjoint)
    packages, items = _step_packages(maxdiff, study, segs, settings, labels, log)
    values = _step_values(
        vw, maxdiff, conjoint, study, segs, packages, items, settings, labels, rng, log
    )
    vols = volumes(
        segments,
        segs,
        survey_mix(
            getattr(study, "vw", None),
            getattr(study, "maxdiff", None),
            getattr(study, "conjoint", None),
        ),
    )
    log.notes += list(vols.notes)
    own = _step_sample_size(values, vols, settings, log)
    packages = _step_single_packages(packages, values, own, settings, labels)
    cal = calibrate(values, vols, settings, rng)
    unvalued = unvalued_reason(vw, conjoint)
    books = _step_price(packages, values, own, vols, cal, items, settings, rng, log, unvalued)
    cal = _step_instrument_spread(
        books, values, own, vols, cal, conjoint, study, settings, rng, log
    )
    noise = {s: v.scale for s, v in values.items()}
    books = _step_add_ons(books, packages, values, own, vols, cal, settings, log, noise)
    tables = _step_scenarios(books, values, own, vols, cal, settings)
    tables.update(_step_add_on_take_up(books, values, own, vols, cal, settings, tables, noise, log))
    _step_idle_tiers(tables["take_up"], tables["scenarios"], log)
    check = _step_too_cheap_check(books, values, own, vols, cal, settings, tables)
    _step_too_cheap_notes(books, values, own, settings, check, log)
    _step_missing(vw, maxdiff, conjoint, segments, vols, values, log)
    comparison = tables["comparison"]
    period = str(getattr(study, "period", None) or "period")
    text = recommend(
        comparison,
        tables["scenarios"],
        books,
        own,
        vols,
        check,
        settings,
        period,
        log.disagree,
        unvalued,
    )
    import wtp

    return PriceBookResult(
        packages=_packages_table(packages, values, own, settings),
        price_books=_price_book_table(books, values, own, vw, settings),
        take_up=tables["take_up"],
        add_ons=tables["add_ons"],
        scenarios=tables["scenarios"],
        comparison=comparison,
        calibration=cal.table,
        valuation=_valuation_table(values, own, segs, settings),
        search=pd.DataFrame(
            [
                {
                    "scenario": b.scenario,
                    "book": b.name,
                    "n_evaluated": b.n_evaluated,
                    "note": b.search_note,
                }
                for b in books.values()
            ],
            columns=["scenario", "book", "n_evaluated", "note"],
        ),
        arbitrage=tables["arbitrage"],
        recommendation=text,
        missing=pd.DataFrame(log.missing, columns=["input", "status", "effect"]),
        settings=settings,
        segments=tuple(segs),
        too_cheap_check=check,
        warnings=tuple(dict.fromkeys(log.warnings)),
        notes=tuple(dict.fromkeys(log.notes)),
        volume_source=vols.source,
        period=period,
        price_unit=str(getattr(study, "price_unit", "") or ""),
        books=tuple(books.values()),
        simulator=simulator_inputs(
            books, values, own, vols, cal, settings, vw=vw, conjoint=conjoint, study=study
        ),
        provenance={
            "wtp_version": wtp.__version__,
            "instruments": {
                "van_westendorp": vw is not None,
                "maxdiff": maxdiff is not None,
                "conjoint": conjoint is not None,
                "segments": vols.source,
            },
        },
    )


# --------------------------------------------------------------------------------------------
# 1. Segments and packages


def _segments(vw, maxdiff, conjoint) -> list[str]:
    segs: list[str] = []
    for source in (
        None if vw is None else vw.price_points["segment"].astype(str).tolist(),
        None if conjoint is None else [str(s) for s in conjoint.segments],
        None if maxdiff is None else maxdiff.item_scores["segment"].astype(str).tolist(),
    ):
        for s in source or []:
            if s not in segs and s != ALL:
                segs.append(s)
    return segs or [ALL]


def _counts_individual(answers: pd.DataFrame) -> pd.DataFrame:
    """Per respondent and item: (best − worst) / times shown — a utility proxy for appeal and
    reach when the MaxDiff method gave no individual utilities."""
    g = (
        answers.groupby(["respondent_id", "item"], sort=False)
        .agg(
            shown=("best", "size"),
            best=("best", "sum"),
            worst=("worst", "sum"),
            segment=("segment", "first"),
        )
        .reset_index()
    )
    g["utility"] = (g["best"].astype(float) - g["worst"].astype(float)) / g["shown"]
    return g[["respondent_id", "segment", "item", "utility"]]


def _step_packages(
    maxdiff, study, segs, settings: PricingSettings, labels, log: _Log
) -> tuple[pd.DataFrame, list[str]]:
    books = [*segs, ALL] if segs != [ALL] else [ALL]
    if maxdiff is None:
        log.missing.append(
            {
                "input": "maxdiff",
                "status": "missing",
                "effect": "One package per book with no feature list; no tiers, no add-ons.",
            }
        )
        rows = [
            {
                "segment": s,
                "package": settings.tiers[0],
                "feature": "",
                "label": "",
                "reason": "no MaxDiff: one package, features not assessed",
            }
            for s in books
        ]
        return pd.DataFrame(rows), []
    scores = maxdiff.item_scores.copy()
    scores["segment"] = scores["segment"].astype(str)
    scores["item"] = scores["item"].astype(str)
    individual = (
        maxdiff.individual_utilities if len(getattr(maxdiff, "individual_utilities", [])) else None
    )
    answers = getattr(study, "maxdiff", None)
    if individual is None and answers is not None and "segment" in answers.columns:
        individual = _counts_individual(answers)
        log.notes.append(
            "Appeal and reach use each respondent's best − worst counts (the MaxDiff method gave no individual utilities)."
        )
    if individual is not None:
        individual = individual.copy()
        individual["respondent_id"] = individual["respondent_id"].astype(str)
        vw_frame = getattr(study, "vw", None)
        if vw_frame is not None and "expensive" in vw_frame.columns:
            exp = vw_frame.drop_duplicates("respondent_id").set_index(
                vw_frame.drop_duplicates("respondent_id")["respondent_id"].astype(str)
            )["expensive"]
            individual["value"] = individual["respondent_id"].map(exp).astype(float)
        if (
            "weight" not in individual.columns
            and answers is not None
            and "weight" in answers.columns
        ):
            w = answers.drop_duplicates("respondent_id").set_index(
                answers.drop_duplicates("respondent_id")["respondent_id"].astype(str)
            )["weight"]
            individual["weight"] = individual["respondent_id"].map(w).astype(float)
    packages, warn = draft_packages(
        scores, individual, settings=settings, labels=labels, segments=books
    )
    log.warnings += warn
    items = list(dict.fromkeys(scores["item"]))
    return packages, items


# --------------------------------------------------------------------------------------------
# 2. Values, sample size


def _step_values(
    vw,
    maxdiff,
    conjoint,
    study,
    segs,
    packages,
    items,
    settings: PricingSettings,
    labels,
    rng,
    log: _Log,
) -> dict[str, SegmentValues]:
    described: dict[str, set[str]] = {}
    for s in segs:
        pk = packages[(packages["segment"] == s) & (packages["package"] != ADD_ON)]
        if settings.vw_describes == "entry":
            described[s] = set(
                pk.loc[pk["package"] == settings.tiers[0], "feature"].astype(str)
            ) - {""}
        elif settings.vw_describes == "full":
            described[s] = set(items)
        else:
            described[s] = set()
    vw_answers = getattr(study, "vw", None)
    if vw is not None and vw_answers is None:
        log.warnings.append(
            "The Van Westendorp result came without its answers (study.vw): respondents' own values cannot be read; Van Westendorp is not used for take-up."
        )
        vw = None
    values, notes, warnings = value_segments(
        segs, features=items, described=described, vw=vw, vw_answers=vw_answers, conjoint=conjoint,
        conjoint_answers=getattr(study, "conjoint", None), maxdiff=maxdiff, labels=labels,
        explicit_map=settings.conjoint_features, n_packages=len(settings.tiers), draws=settings.draws, rng=rng,
    )  # fmt: skip
    log.notes += notes
    log.warnings += list(warnings.values())
    log.disagree = list(warnings)
    return values


def _step_sample_size(
    values: dict[str, SegmentValues], vols: Volumes, settings: PricingSettings, log: _Log
) -> dict[str, bool]:
    """Which segments get a book of their own (``[sample] min_n``, contract §5)."""
    own = {}
    for s, v in values.items():
        own[s] = v.n >= settings.min_n or len(values) == 1
        if not own[s]:
            log.warnings.append(
                f"{s}: only {v.n} respondents with a valuation (under [sample] min_n = {settings.min_n}): no price book of its own; it is offered the single book."
            )
    return own


def _step_single_packages(
    packages: pd.DataFrame,
    values: dict[str, SegmentValues],
    own: dict[str, bool],
    settings: PricingSettings,
    labels,
) -> pd.DataFrame:
    if not (packages["feature"].astype(str) != "").any():
        return packages
    typical = {
        s: float(np.nanmedian(np.where(np.isfinite(v.base), v.base, np.nan)))
        if np.isfinite(v.base).any()
        else 0.0
        for s, v in values.items()
        if own.get(s)
    }
    order = sorted(typical, key=lambda s: typical[s])
    single = draft_single_book(packages, order, settings, labels)
    return pd.concat([packages[packages["segment"] != ALL], single], ignore_index=True)


# --------------------------------------------------------------------------------------------
# 3. Prices


def _step_price(
    packages,
    values,
    own,
    vols: Volumes,
    cal: Calibration,
    items,
    settings: PricingSettings,
    rng,
    log: _Log,
    unvalued: str = "",
) -> dict[tuple[str, str], Book]:
    tiers = list(settings.tiers)
    books: dict[tuple[str, str], Book] = {}

    def part(s):
        return values[s], vols.get(s, "prospects", 0.0) * vols.get(s, "seats", 1.0) * float(
            np.mean(cal.factor[s])
        )

    scope = [s for s in values if np.isfinite(vols.get(s, "prospects"))]
    for s in scope:
        if not own[s]:
            continue
        have, member = membership(packages, s, tiers, items)
        books[("multiple", s)] = price_book(
            "multiple", s, have, member, [part(s)], settings, rng, tuple(items), unvalued
        )
    have, member = membership(packages, ALL, tiers, items)
    books[("single", ALL)] = price_book(
        "single", ALL, have, member, [part(s) for s in scope], settings, rng, tuple(items), unvalued
    )
    for b in books.values():
        for t, why in b.unpriced.items():
            log.warnings.append(
                f"{b.name if b.scenario == 'multiple' else 'Single book'}: {t} has no price — {why}."
            )
    return books


def _step_instrument_spread(
    books, values, own, vols, cal, conjoint, study, settings: PricingSettings, rng, log: _Log
) -> Calibration:
    """Widen the revenue intervals by how far the conjoint alone and the Van Westendorp answers
    disagree on each segment's revenue (:func:`wtp.pricing.scenarios.instrument_spread`)."""
    answers = getattr(study, "conjoint", None)
    second = {
        s: alt
        for s, v in values.items()
        if (alt := second_opinion(v, conjoint, answers, len(settings.tiers), rng)) is not None
    }
    offered = {s: _offered(books, s, own) for s in values}
    cal, warnings = instrument_spread(values, second, offered, vols, cal, settings, rng)
    log.warnings += warnings
    if second:
        log.notes.append(
            "Revenue intervals carry the disagreement of the two instruments: each segment's take-up draws × a mean-one "
            "lognormal whose log-sd is |log ratio| / √2 of the conjoint's and the Van Westendorp answers' revenue forecasts "
            "for its book (calibration.csv, instrument_spread), the same normal draw for every segment."
        )
    return cal


def _buyers(book: Book, s: str, values, vols: Volumes, cal: Calibration, settings, noise=None):
    return segment_buyers(
        book,
        values[s],
        cal.draws(s),
        vols.get(s, "prospects", 0.0) * vols.get(s, "seats", 1.0),
        settings.too_cheap,
        noise.get(s) if noise is not None and settings.add_on_noise == "conjoint" else None,
    )


def _step_add_ons(
    books, packages, values, own, vols: Volumes, cal: Calibration, settings, log: _Log, noise
) -> dict[tuple[str, str], Book]:
    """Price each book's add-ons (packages.csv ``package = add-on``) on top of its priced tiers,
    for the segments the book serves (:mod:`wtp.pricing.add_ons`)."""
    scope = [s for s in values if np.isfinite(vols.get(s, "prospects"))]
    out = {}
    for key, b in books.items():
        pk = packages[(packages["segment"] == b.name) & (packages["package"] == ADD_ON)]
        feats = [f for f in dict.fromkeys(pk["feature"].astype(str)) if f in b.features]
        segs = scope if b.scenario == "single" else [b.name]
        if not feats or not segs:
            out[key] = b
            continue
        out[key] = price_add_ons(
            b, feats, [_buyers(b, s, values, vols, cal, settings, noise) for s in segs]
        )
        who = "Single book" if b.scenario == "single" else b.name
        for f, why in out[key].add_on_unpriced.items():
            log.warnings.append(f"{who}: the add-on {f} has no price — {why}.")
    return out


def _step_add_on_take_up(
    books, values, own, vols: Volumes, cal: Calibration, settings, tables, noise, log: _Log
) -> dict[str, pd.DataFrame]:
    """pricing/add_ons.csv (per scenario × segment × add-on of the book it is offered) and
    scenarios.csv's ``add_on_revenue`` (+ its interval): add-ons apart from ``revenue``, which
    stays the tiers' (a customer takes one package; an add-on rides on it)."""
    lvl = settings.level
    rows, per = [], {}
    for scenario in ("single", "multiple"):
        for s in values:
            if not np.isfinite(vols.get(s, "prospects")):
                continue
            book = books[("single", ALL)] if scenario == "single" else _offered(books, s, own)
            o = evaluate_add_ons(book, _buyers(book, s, values, vols, cal, settings, noise))
            per[(scenario, s)] = o.revenue.sum(axis=1)
            prospects = vols.get(s, "prospects", 0.0)
            for a, f in enumerate(o.features):
                rlo, rhi = interval(o.revenue[:, a], lvl)
                rows.append({
                    "scenario": scenario, "segment": s, "price_book": book.name, "feature": f, "price": o.prices[a],
                    "share": float(o.shares[:, a].mean()), "customers": prospects * float(o.shares[:, a].mean()),
                    "revenue": float(o.revenue[:, a].mean()), "revenue_lower": rlo, "revenue_upper": rhi,
                    "note": book.add_on_unpriced.get(f, ""),
                })  # fmt: skip
    sc = tables["scenarios"].copy()
    cols = ["add_on_revenue", "add_on_revenue_lower", "add_on_revenue_upper"]
    if rows:
        add = {
            scn: sum(x.mean() for (k, _), x in per.items() if k == scn)
            for scn in ("single", "multiple")
        }
        log.notes.append(
            f"Add-ons earn {add['single']:,.2f} (single) and {add['multiple']:,.2f} (multiple) per period on top of the "
            "packages' revenue (pricing/add_ons.csv; scenarios.csv add_on_revenue, apart from revenue)."
        )
    for c in cols:
        sc[c] = np.nan
    for i, r in sc.iterrows():
        if r["segment"] == TOTAL:
            d = [x for (scn, _), x in per.items() if scn == r["scenario"]]
            x = np.sum(d, axis=0) if d else None
        else:
            x = per.get((r["scenario"], r["segment"]))
        if x is not None:
            sc.loc[i, cols] = [float(np.mean(x)), *interval(x, lvl)]
    return {"scenarios": sc, "add_ons": pd.DataFrame(rows, columns=ADD_ON_COLUMNS)}


# --------------------------------------------------------------------------------------------
# 4. Scenarios


def _offered(books, s: str, own: dict[str, bool]) -> Book:
    return (
        books.get(("multiple", s))
        if own.get(s) and ("multiple", s) in books
        else books[("single", ALL)]
    )


def _outcomes(
    books, values, own, vols, cal, settings, too_cheap=None
) -> dict[tuple[str, str], Outcome]:
    out = {}
    for s, v in values.items():
        if not np.isfinite(vols.get(s, "prospects")):
            continue
        out[("single", s)] = evaluate(
            books[("single", ALL)], v, vols, cal.draws(s), settings, too_cheap
        )
        out[("multiple", s)] = evaluate(
            _offered(books, s, own), v, vols, cal.draws(s), settings, too_cheap
        )
    return out


#: a priced tier taken by less than this share of a book's buyers, in every segment offered it,
#: neither earns nor steers anyone (take-up is first choice): the analyst is told
IDLE_TIER = 0.01


def _step_idle_tiers(take_up: pd.DataFrame, scenarios: pd.DataFrame, log: _Log) -> None:
    """Name the priced tiers that nobody offered the book takes (contract §5: each package
    resonates with the segments it serves)."""
    offered = scenarios.loc[scenarios["segment"] != TOTAL, ["scenario", "segment", "price_book"]]
    priced = take_up[np.isfinite(take_up["price"].to_numpy(float))].merge(
        offered, on=["scenario", "segment"]
    )
    for (scenario, book), g in priced.groupby(["scenario", "price_book"], sort=False):
        if scenario == "multiple" and book == ALL:
            continue  # small segments offered the single book: judged with it under single
        buyers = g.groupby("segment", sort=False)["share"].transform("sum")
        mix = g["share"] / buyers.where(buyers > 0)
        idle = mix.groupby(g["package"], sort=False).max()
        idle = idle.index[(idle.fillna(0) < IDLE_TIER).to_numpy()]
        if not len(idle):
            continue
        price = g.groupby("package", sort=False)["price"].first()
        tiers = " and ".join(f"{t} ({price[t]:,.2f})" for t in idle)
        where = "The single book" if book == ALL else f"The {book} book"
        log.warnings.append(
            f"{where}: {tiers} {'is' if len(idle) == 1 else 'are'} taken by under {IDLE_TIER:.0%} of the buyers in every "
            "segment offered it: at such a price a tier neither earns nor moves anyone to another (take-up is each "
            "respondent's best package), so any price high enough gives the same forecast. Drop it, merge its features "
            "into a neighbour, or price it where a segment takes it."
        )


def _step_scenarios(
    books, values, own, vols: Volumes, cal: Calibration, settings: PricingSettings
) -> dict[str, pd.DataFrame]:
    outcomes = _outcomes(books, values, own, vols, cal, settings)
    lvl = settings.level
    take, scen = [], []
    draws_total = {}
    for scenario in ("single", "multiple"):
        tot = None
        for s in values:
            if (scenario, s) not in outcomes:
                continue
            o = outcomes[(scenario, s)]
            book = books[("single", ALL)] if scenario == "single" else _offered(books, s, own)
            prospects = vols.get(s, "prospects", 0.0)
            seats = vols.get(s, "seats", 1.0)
            for k, t in enumerate(book.tiers):
                p = book.prices[k]
                sh = o.shares[:, k]
                lo, hi = interval(sh, lvl)
                rev = prospects * seats * sh * (p if np.isfinite(p) else 0.0)
                rlo, rhi = interval(rev, lvl)
                take.append(
                    {
                        "scenario": scenario,
                        "segment": s,
                        "package": t,
                        "price": p,
                        "share": float(sh.mean()),
                        "share_lower": lo,
                        "share_upper": hi,
                        "customers": prospects * float(sh.mean()),
                        "revenue": float(rev.mean()),
                        "revenue_lower": rlo,
                        "revenue_upper": rhi,
                    }
                )
            conv = o.shares.sum(axis=1)
            rlo, rhi = interval(o.revenue, lvl)
            customers = prospects * float(conv.mean())
            revenue = float(o.revenue.mean())
            baseline = vols.get(s, "customers") * vols.get(s, "arpa")
            today_rev = (
                prospects
                * seats
                * float(np.mean(cal.today.get(s, np.nan)))
                * (vols.get(s, "arpa") / seats)
            )
            churn, margin = vols.get(s, "churn_rate"), vols.get(s, "gross_margin", 1.0)
            life = (60.0 if churn == 0 else 1.0 / churn) if np.isfinite(churn) else np.nan
            ltv = (
                (revenue / customers) * (margin if np.isfinite(margin) else 1.0) * life
                if customers > 0
                else np.nan
            )
            note = (
                ""
                if scenario == "single" or own.get(s)
                else f"under [sample] min_n = {settings.min_n}: offered the single book"
            )
            note = "; ".join(x for x in (note, _basis_note(s, vols, cal)) if x)
            scen.append({
                "scenario": scenario, "segment": s, "price_book": ALL if scenario == "single" or not own.get(s) else s,
                "customers": customers, "conversion": float(conv.mean()), "revenue": revenue, "revenue_lower": rlo, "revenue_upper": rhi,
                "prospects": prospects, "entry_price": float(book.prices[0]), "calibration": float(np.mean(cal.factor[s])),
                "baseline_revenue": baseline, "today_revenue": today_rev, "change_vs_today": revenue / today_rev - 1 if today_rev > 0 else np.nan,
                "ltv": ltv, "lifetime_value": customers * ltv, "note": note,
            })  # fmt: skip
            tot = o.revenue.copy() if tot is None else tot + o.revenue
        if tot is not None:
            draws_total[scenario] = tot
            rows = [r for r in scen if r["scenario"] == scenario]
            V = sum(r["prospects"] for r in rows)
            C = sum(r["customers"] for r in rows)
            rlo, rhi = interval(tot, lvl)
            lifetime = sum(r["lifetime_value"] for r in rows)
            base = sum(r["baseline_revenue"] for r in rows)
            today = sum(r["today_revenue"] for r in rows)
            scen.append({
                "scenario": scenario, "segment": TOTAL, "price_book": ALL if scenario == "single" else "per segment", "customers": C,
                "conversion": C / V if V else np.nan, "revenue": float(tot.mean()), "revenue_lower": rlo, "revenue_upper": rhi, "prospects": V,
                "entry_price": np.nan, "calibration": np.nan, "baseline_revenue": base,
                "today_revenue": today, "change_vs_today": float(tot.mean()) / today - 1 if today > 0 else np.nan, "ltv": lifetime / C if C else np.nan, "lifetime_value": lifetime, "note": "",
            })  # fmt: skip
    scenarios = pd.DataFrame(scen, columns=SCENARIO_COLUMNS)
    take_up = pd.DataFrame(take, columns=TAKE_UP_COLUMNS)
    comparison = _comparison(scenarios, outcomes, draws_total, values)
    return {
        "take_up": take_up,
        "scenarios": scenarios,
        "comparison": comparison,
        "arbitrage": _arbitrage(books, values, own, vols, cal, settings, outcomes),
    }


def _basis_note(segment: str, vols: Volumes, cal: Calibration) -> str:
    """Say so when the scenarios' prospects at today's conversion are not today's customers
    (market_size counts prospects who never trial): revenue is then read as change vs today."""
    share = cal.today.get(segment)
    customers = vols.get(segment, "customers")
    if share is None or not np.all(np.isfinite(share)) or not customers > 0:
        return ""
    prospects = vols.get(segment, "prospects", 0.0)
    model = prospects * float(np.mean(share))
    if same_basis(model, customers):
        return ""
    return (
        f"at today's price the scenarios' basis counts {model:,.0f} customers ({prospects:,.0f} prospects × {float(np.mean(share)):.1%}) "
        f"against {customers:,.0f} today: read revenue as change_vs_today"
    )


def _comparison(scenarios: pd.DataFrame, outcomes, draws_total, values) -> pd.DataFrame:
    if scenarios.empty:
        return pd.DataFrame()
    s = scenarios[scenarios["scenario"] == "single"].set_index("segment")
    m = scenarios[scenarios["scenario"] == "multiple"].set_index("segment")
    rows = []
    for seg in [*values, TOTAL]:
        if seg not in s.index or seg not in m.index:
            continue
        a, b = s.loc[seg], m.loc[seg]
        if seg == TOTAL:
            dm, ds = draws_total["multiple"], draws_total["single"]
        else:
            dm, ds = outcomes[("multiple", seg)].revenue, outcomes[("single", seg)].revenue
        d_rev = b["revenue"] - a["revenue"]
        d_price = (
            b["entry_price"] / a["entry_price"] - 1
            if seg != TOTAL and a["entry_price"] > 0
            else np.nan
        )
        if seg == TOTAL:
            who = "business " + ("gains" if d_rev > 0 else "loses" if d_rev < 0 else "unchanged")
        else:
            pays = (
                "pay less" if d_price < -1e-9 else "pay more" if d_price > 1e-9 else "pay the same"
            )
            who = f"customers {pays} to enter; revenue {'up' if d_rev > 1e-9 else 'down' if d_rev < -1e-9 else 'unchanged'}"
        rows.append({
            "segment": seg, "prospects": a["prospects"], "price_single": a["entry_price"], "price_multiple": b["entry_price"], "price_change": d_price,
            "conversion_single": a["conversion"], "conversion_multiple": b["conversion"], "customers_single": a["customers"], "customers_multiple": b["customers"],
            "customers_change": b["customers"] - a["customers"], "revenue_single": a["revenue"], "revenue_multiple": b["revenue"],
            "revenue_single_lower": a["revenue_lower"], "revenue_single_upper": a["revenue_upper"], "revenue_multiple_lower": b["revenue_lower"], "revenue_multiple_upper": b["revenue_upper"],
            "revenue_change": d_rev, "revenue_change_pct": d_rev / a["revenue"] if a["revenue"] else np.nan,
            "p_multiple_better": float(np.mean(dm > ds + 1e-9)), "baseline_revenue": a["baseline_revenue"], "today_revenue": a["today_revenue"],
            "change_single_vs_today": a["change_vs_today"], "change_multiple_vs_today": b["change_vs_today"],
            "customers_gain": bool(d_price < -1e-9) if seg != TOTAL else None, "revenue_gain": bool(d_rev > 1e-9), "who": who,
        })  # fmt: skip
    return pd.DataFrame(rows)


def _arbitrage(books, values, own, vols, cal, settings, outcomes) -> pd.DataFrame:
    """Pairs where a segment offered a cheaper segment's book would earn less: the fences."""
    cols = [
        "segment",
        "cheaper_segment",
        "own_price",
        "cheaper_price",
        "gap",
        "revenue",
        "revenue_if_switched",
        "revenue_at_risk",
        "risk",
        "fence",
    ]
    rows = []
    mine = {s: books[("multiple", s)] for s in values if ("multiple", s) in books}
    for dear, bd in mine.items():
        for cheap, bc in mine.items():
            pd_, pc = bd.prices[0], bc.prices[0]
            if dear == cheap or not (np.isfinite(pd_) and np.isfinite(pc) and pc < pd_):
                continue
            own_rev = float(outcomes[("multiple", dear)].revenue.mean())
            switched = float(
                evaluate(bc, values[dear], vols, cal.factor[dear], settings).revenue.mean()
            )
            gap = 1 - pc / pd_
            rows.append({
                "segment": dear, "cheaper_segment": cheap, "own_price": pd_, "cheaper_price": pc, "gap": gap, "revenue": own_rev,
                "revenue_if_switched": switched, "revenue_at_risk": max(own_rev - switched, 0.0),
                "risk": "high" if gap >= 0.5 else "medium" if gap >= 0.2 else "low",
                "fence": "the packages differ in features; an eligibility fence (company size, seats, usage limits or verification) still keeps the cheaper book to its segment",
            })  # fmt: skip
    out = pd.DataFrame(rows, columns=cols)
    return (
        out.sort_values("revenue_at_risk", ascending=False, kind="stable").reset_index(drop=True)
        if len(out)
        else out
    )


def _step_too_cheap_check(books, values, own, vols, cal, settings: PricingSettings, tables) -> dict:
    """Both books re-evaluated under the other ``too_cheap`` setting: does the verdict change?"""
    other = "exclude" if settings.too_cheap == "ignore" else "ignore"
    has_answers = any(v.too_cheap is not None for v in values.values())
    cmp_ = tables["comparison"]
    if cmp_.empty or not has_answers:
        return {"setting": settings.too_cheap, "other": other, "available": False}
    out = _outcomes(books, values, own, vols, cal, settings, too_cheap=other)
    rs = sum(o.revenue.mean() for (sc, _), o in out.items() if sc == "single")
    rm = sum(o.revenue.mean() for (sc, _), o in out.items() if sc == "multiple")
    tot = cmp_[cmp_["segment"] == TOTAL].iloc[0]
    verdict = "multiple" if tot["revenue_change_pct"] >= settings.min_gain else "single"
    verdict_other = "multiple" if rs > 0 and (rm - rs) / rs >= settings.min_gain else "single"
    return {
        "setting": settings.too_cheap, "other": other, "available": True, "verdict": verdict, "verdict_other": verdict_other,
        "revenue_single_other": float(rs), "revenue_multiple_other": float(rm), "uplift_other": float((rm - rs) / rs) if rs > 0 else float("nan"),
        "changes": verdict != verdict_other,
    }  # fmt: skip


def credibility(book: Book, v: SegmentValues) -> np.ndarray:
    """Per tier of ``book``: of segment ``v``'s respondents who take it (under ``ignore``,
    weighted over draws), the share whose own "too cheap" answer — scaled by the package's value,
    as ``exclude`` reads it — lies above its price. NaN where unpriced, untaken or unanswered."""
    out = np.full(len(book.prices), np.nan)
    priced = np.isfinite(book.prices)
    if v.too_cheap is None or not priced.any():
        return out
    member, prices = book.membership[priced], book.prices[priced]
    pick = choices(v.base, v.extra(member), prices, shock=v.shocks(len(prices)))  # N × D
    doubt = prices[None, None, :] < v.thresholds(member)  # N × D × K
    w = v.boot.T  # N × D
    k = np.arange(len(prices))
    takes = (pick[:, :, None] == k) * w[:, :, None]  # N × D × K
    den = takes.sum(axis=(0, 1))
    num = (takes * doubt).sum(axis=(0, 1))
    out[priced] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def _step_too_cheap_notes(books, values, own, settings: PricingSettings, check, log: _Log) -> None:
    """Say the verdict under the other ``too_cheap`` setting on the terminal, and, under
    ``ignore``, name every price that most of a segment it is offered to calls too cheap: the
    book rests on those respondents buying anyway (nothing is repriced: ``ignore`` means it)."""
    if check.get("available"):
        line = (
            f"too_cheap = {check['setting']!r} was used; with {check['other']!r} the verdict "
            + (
                f"changes to {check['verdict_other']} ({check['uplift_other']:+.1%})."
                if check["changes"]
                else f"stays {check['verdict']} ({check['uplift_other']:+.1%})."
            )
        )
        (log.warnings if check["changes"] else log.notes).append(line)
    if settings.too_cheap != "ignore":
        return
    for s, v in values.items():
        offered = [books[("single", ALL)]] if ("single", ALL) in books else []
        if own.get(s) and ("multiple", s) in books:
            offered.append(books[("multiple", s)])
        for book in offered:
            share = credibility(book, v)
            for t, p, q in zip(book.tiers, book.prices, share, strict=True):
                if np.isfinite(q) and q > 0.5:
                    who = "Single book" if book.scenario == "single" else f"{s}'s book"
                    log.warnings.append(
                        f"{who}: {t} at {p:,.2f} is below what {q:.0%} of the {s} respondents who take it call too cheap for it; "
                        "with too_cheap = 'ignore' they are assumed to buy anyway (if doubts about quality stop them, see the verdict under 'exclude')."
                    )


# --------------------------------------------------------------------------------------------
# 5. Tables


def _step_missing(vw, maxdiff, conjoint, segments, vols: Volumes, values, log: _Log) -> None:
    unvalued = unvalued_reason(vw, conjoint)
    if vw is None:
        log.missing.append(
            {
                "input": "van_westendorp",
                "status": "missing",
                "effect": "Values of the product from the conjoint alone (its reference product against not buying)."
                if not unvalued
                else f"No value of the product at all: {unvalued}.",
            }
        )
    elif not vw.has_nms:
        log.missing.append(
            {
                "input": "van_westendorp NMS (buy_cheap, buy_expensive)",
                "status": "missing",
                "effect": "Everyone is assumed to buy below their own reservation price: take-up is an upper bound unless calibrated.",
            }
        )
    if conjoint is None:
        log.missing.append(
            {
                "input": "conjoint",
                "status": "missing",
                "effect": "No money value for features: no bridge from MaxDiff to money, so tiers above the entry package are not priced.",
            }
        )
    if unvalued:
        log.missing.append(
            {
                "input": "prices",
                "status": "not produced",
                "effect": f"Nothing is priced; packages only ({unvalued}).",
            }
        )
        log.warnings.append(f"Packages are drafted but nothing is priced: {unvalued}.")
    if segments is None:
        log.missing.append(
            {
                "input": "segments",
                "status": "missing",
                "effect": "Volumes are the survey's weighted segment mix per one prospect; no calibration to conversion; no baseline.",
            }
        )
    elif not np.isfinite(vols.table["conversion"].to_numpy(dtype=float)).any():
        log.missing.append(
            {
                "input": "segments.conversions / conversion_rate",
                "status": "missing",
                "effect": "Take-up is stated intent, not calibrated to today's conversion (it usually overstates buying).",
            }
        )


def _money_means(values: dict[str, SegmentValues], segs: list[str]) -> dict[str, tuple[float, str]]:
    num, den, src = {}, {}, {}
    for s in segs:
        v = values.get(s)
        if v is None:
            continue
        w = v.weight / v.weight.sum()
        for j, f in enumerate(v.features):
            col = v.feature_values[:, j]
            if np.isfinite(col).any():
                num[f] = num.get(f, 0.0) + float(np.nansum(w * col))
                den[f] = den.get(f, 0.0) + 1.0
            src.setdefault(f, v.feature_source.get(f, ""))
    return {f: (num[f] / den[f] if f in num else float("nan"), src.get(f, "")) for f in src}


def _packages_table(packages, values, own, settings: PricingSettings) -> pd.DataFrame:
    frames = []
    for s, g in packages.groupby("segment", sort=False):
        if s != ALL and not own.get(s, True):
            continue
        scenario = "single" if s == ALL else "multiple"
        money = _money_means(values, list(values) if s == ALL else [s])
        f = g.assign(scenario=scenario)
        f["money_value"] = [money.get(x, (np.nan, ""))[0] for x in f["feature"].astype(str)]
        f["money_source"] = [money.get(x, (np.nan, ""))[1] for x in f["feature"].astype(str)]
        frames.append(f)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PACKAGES_COLUMNS)
    for c in PACKAGES_COLUMNS:
        if c not in out.columns:
            out[c] = np.nan
    return out[
        PACKAGES_COLUMNS
        + [c for c in out.columns if c not in PACKAGES_COLUMNS and c not in ("lower", "upper")]
    ].reset_index(drop=True)


def _acceptable(vw, segment: str) -> tuple[float, float]:
    if vw is None:
        return float("nan"), float("nan")
    pp = vw.price_points.set_index(vw.price_points["segment"].astype(str))
    if segment not in pp.index:
        return float("nan"), float("nan")
    return float(pp.loc[segment, "pmc"]), float(pp.loc[segment, "pme"])


def _price_book_table(books, values, own, vw, settings: PricingSettings) -> pd.DataFrame:
    rows = []

    def emit(book: Book, segment: str, note_all: str = ""):
        lo, hi = _acceptable(vw, segment)
        vs = (
            list(values.values())
            if segment == ALL
            else [values[segment]]
            if segment in values
            else []
        )
        for k, t in enumerate(book.tiers):
            p = book.prices[k]
            value = np.nan
            if vs:
                vals = []
                for v in vs:
                    # a respondent who buys in no draw has no finite value: NaN, left out below
                    finite = np.isfinite(v.base)
                    n_finite = finite.sum(axis=1)
                    mean = np.where(finite, v.base, 0.0).sum(axis=1) / np.maximum(n_finite, 1)
                    mean = np.where(n_finite > 0, mean, np.nan)
                    vals.append(mean + v.extra(book.membership[k : k + 1])[:, 0])
                value = float(np.nanmedian(np.concatenate(vals)))
            extra = (
                float(
                    np.nanmean(
                        np.concatenate([v.extra(book.membership[k : k + 1])[:, 0] for v in vs])
                    )
                )
                if vs
                else 0.0
            )
            in_range = (
                bool(np.isfinite(p) and np.isfinite(lo) and lo - 1e-9 <= p <= hi + extra + 1e-9)
                if np.isfinite(lo)
                else True
            )
            note = book.unpriced.get(t, "")
            if np.isfinite(p) and not in_range:
                note = (
                    f"outside the acceptable range {lo:,.2f}–{hi:,.2f} of the product the Van Westendorp question showed"
                    + (f" (+{extra:,.2f} its features add)" if extra > 0 else "")
                    + ": revenue-optimal for the respondents' values; check it"
                )
            if note_all:
                note = (note + "; " if note else "") + note_all
            step = (
                p / book.prices[k - 1]
                if k > 0 and np.isfinite(p) and np.isfinite(book.prices[k - 1])
                else np.nan
            )
            rows.append(
                {
                    "scenario": book.scenario,
                    "segment": segment,
                    "package": t,
                    "feature": "",
                    "price": p,
                    "step_ratio": step,
                    "value": value,
                    "in_range": in_range,
                    "note": note,
                }
            )
        rows.extend(_add_on_rows(book, segment, vs, note_all))

    single = books[("single", ALL)]
    emit(single, ALL)
    # the single book repeated per segment (contract §5 allows it): each segment's range and value
    # (a study without segments has only ``all``, whose single rows are already there)
    for s in values:
        if s != ALL:
            emit(single, s)
    for s in values:
        if ("multiple", s) in books:
            emit(books[("multiple", s)], s)
        else:
            emit(
                replace(single, scenario="multiple", name=s, search_note="", n_evaluated=0),
                s,
                f"offered the single book: under [sample] min_n = {settings.min_n}",
            )
    return pd.DataFrame(rows, columns=PRICE_BOOK_COLUMNS)


def _add_on_rows(book: Book, segment: str, vs: list[SegmentValues], note_all: str) -> list[dict]:
    """price_books.csv rows of a book's add-ons: ``value`` is the median money value of the
    feature among the book's respondents who have one."""
    rows = []
    for f, p in book.add_ons:
        j = list(book.features).index(f)
        col = np.concatenate([v.feature_values[:, j] for v in vs]) if vs else np.array([])
        note = "; ".join(x for x in (book.add_on_unpriced.get(f, ""), note_all) if x)
        rows.append({
            "scenario": book.scenario, "segment": segment, "package": ADD_ON, "feature": f, "price": p, "step_ratio": np.nan,
            "value": float(np.nanmedian(col)) if np.isfinite(col).any() else np.nan, "in_range": True, "note": note,
        })  # fmt: skip
    return rows


def _valuation_table(values, own, segs, settings: PricingSettings) -> pd.DataFrame:
    rows = []
    for s in segs:
        v = values.get(s)
        if v is None:
            rows.append(
                {
                    "segment": s,
                    "n": 0,
                    "source": "none",
                    "own_book": False,
                    "reason": "no Van Westendorp or conjoint answers: no value",
                    "median_value": np.nan,
                }
            )
            continue
        b = np.where(np.isfinite(v.base), v.base, np.nan)
        med = float(np.nanmedian(b)) if np.isfinite(b).any() else np.nan
        reason = (
            ""
            if own.get(s)
            else f"{v.n} respondents, under [sample] min_n = {settings.min_n}: offered the single book"
        )
        rows.append(
            {
                "segment": s,
                "n": v.n,
                "source": v.source,
                "own_book": bool(own.get(s)),
                "reason": reason,
                "median_value": med,
            }
        )
    return pd.DataFrame(
        rows, columns=["segment", "n", "source", "own_book", "reason", "median_value"]
    )
