"""study.toml settings: one declarative schema, parsed once into typed, frozen sections.

Each section of study.toml is a frozen dataclass below. **A field is the schema**: its type
annotation says what TOML value is accepted, :func:`setting` gives the one default (and the
``--fast`` default where a first look differs), a range, and help text. Adding a key to
study.toml is one line in its section's class.

========================  ==================================================================
annotation                accepted in study.toml
========================  ==================================================================
``str``                   a string
``int`` / ``float``       a whole number / a finite number (an integer is accepted)
``bool``                  ``true`` or ``false``
``Literal["a", "b"]``     one of the strings (an unknown one gets "did you mean")
``date``                  a TOML date or a ``"YYYY-MM-DD"`` string
``tuple[X, ...]``         an array of X
``dict[str, X]``          a table of X
``X | None``              X, or the key left out (TOML has no null)
========================  ==================================================================

Errors name study.toml and the dotted key (``maxdiff.draws``); an unknown key or section names
the closest known one (``difflib``), in its own section or another.

>>> s = parse_settings({"maxdiff": {"draws": 2000}})
>>> s.maxdiff.draws, s.maxdiff.method, s.maxdiff.tune is None  # None: the sampler's default
(2000, 'hb', True)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wtp.errors import InputError, Problem

__all__ = [
    "StudySettings",
    "parse_settings",
    "setting",
    "SECTIONS",
    "known_keys",
    "as_settings",
    "sampler_keys",
]

_FAST = "wtp_fast"
_RANGE = "wtp_range"
_HELP = "wtp_help"


def setting(
    default: Any = None,
    *,
    fast: Any = dataclasses.MISSING,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    help: str = "",
):  # noqa: A002
    """A study.toml key: its default, the ``--fast`` default, its range and help text.

    ``min``/``max`` are inclusive, ``above`` exclusive; for arrays and tables they apply to every
    number inside.
    """
    meta = {_RANGE: (min, max, above), _HELP: help}
    if fast is not dataclasses.MISSING:
        meta[_FAST] = fast
    if isinstance(default, dict | list):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------
# The sections. One line per key.

Level = str | int | float | bool


@dataclass(frozen=True)
class StudyInfo:
    """``[study]``: what the study is."""

    name: str | None = setting(help="shown in reports; default: the folder name")
    currency: str = setting("USD", help="shown next to every price")
    price_unit: str = setting("per account per month", help="what a price buys, shown in reports")
    period: str = setting(
        "month", help="period of prices, arpa and churn_rate: day, week, month, quarter, year"
    )
    export_date: _dt.date | None = setting(help="date customers.csv was exported (issue 17)")
    as_of: _dt.date | None = setting(
        help="censoring date for open customers; default: latest date in customers.csv"
    )


@dataclass(frozen=True)
class DataFiles:
    """``[data]``: input files, relative to the study folder (see :mod:`wtp.study`)."""

    respondents: str | None = setting(help="respondent_id, segment[, weight]")
    van_westendorp: str | None = setting(help="Van Westendorp answers")
    maxdiff: str | None = setting(help="MaxDiff answers")
    conjoint: str | None = setting(help="choice-based conjoint answers")
    segments: str | None = setting(help="segment performance")
    customers: str | None = setting(help="one row per customer")
    allow_outside: bool = setting(
        False, help="allow absolute paths and paths outside the study folder"
    )


@dataclass(frozen=True)
class ColumnMaps:
    """``[columns.<kind>]``: contract column → the file's column (``respondent_id = "Response ID"``)."""

    vw: dict[str, str | tuple[str, ...]] = setting({})
    maxdiff: dict[str, str | tuple[str, ...]] = setting({})
    conjoint: dict[str, str | tuple[str, ...]] = setting({})
    respondents: dict[str, str | tuple[str, ...]] = setting({})
    segments: dict[str, str | tuple[str, ...]] = setting({})
    customers: dict[str, str | tuple[str, ...]] = setting({})


@dataclass(frozen=True)
class Input:
    """``[input]`` and ``[input.<kind>]``: where the header is in a survey export (issue 11)."""

    header_row: int | Literal["auto"] | None = setting(
        min=1, help="the row holding the column names"
    )
    header_rows: int | Literal["auto"] | None = setting(min=0, help="rows of header above the data")
    vw: dict[str, int | Literal["auto"]] = setting({}, min=0)
    maxdiff: dict[str, int | Literal["auto"]] = setting({}, min=0)
    conjoint: dict[str, int | Literal["auto"]] = setting({}, min=0)
    respondents: dict[str, int | Literal["auto"]] = setting({}, min=0)
    segments: dict[str, int | Literal["auto"]] = setting({}, min=0)
    customers: dict[str, int | Literal["auto"]] = setting({}, min=0)


@dataclass(frozen=True)
class Sample:
    """``[sample]``: the smallest segment that gets its own price book."""

    min_n: int = setting(30, min=1, help="respondents a segment needs, every instrument")
    min_n_vw: int | None = setting(min=1, help="override for Van Westendorp")
    min_n_maxdiff: int | None = setting(min=1, help="override for MaxDiff")
    min_n_conjoint: int | None = setting(min=1, help="override for conjoint")


@dataclass(frozen=True)
class VanWestendorp:
    """``[van_westendorp]``: the analysis choices of :func:`wtp.vanwestendorp.van_westendorp`."""

    inconsistent: Literal["exclude", "repair"] = setting("exclude")
    ties: Literal["keep", "drop"] = setting("keep")
    cheap_rule: Literal["ge", "gt"] = setting("ge")
    plateau: Literal["lowest", "highest", "middle"] = setting("lowest")
    nms_scale: Literal["scale", "probability"] | None = setting(
        help="how buy_cheap/buy_expensive are read"
    )
    nms_calibration: str | dict[str, float] | None = setting(
        help="scale point → purchase probability"
    )
    bootstrap: int = setting(1000, fast=200, min=0, help="bootstrap replicates for intervals")


@dataclass(frozen=True)
class MaxDiff:
    """``[maxdiff]``: estimation method and sampler settings, item labels, TURF."""

    method: Literal["hb", "logit", "counts"] = setting("hb", fast="logit")
    # sampler keys: None leaves the default to wtp.hb.fit_hb, which owns them (it samples until
    # converged, so a fixed draw count here would be a second, contradicting default)
    draws: int | None = setting(min=1, help="HB: kept draws per chain at the first check")
    tune: int | None = setting(min=0, help="HB: warm-up iterations per chain")
    chains: int | None = setting(min=1)
    target_accept: float | None = setting(above=0, max=0.999)
    time_budget: float | None = setting(above=0, help="HB: seconds the sampler may take")
    until_converged: bool | None = setting(help="HB: keep sampling until converged (issue 12)")
    save_posterior: bool = setting(False, help="HB: keep the posterior draws (issue 12)")
    segment_means: bool = setting(True, help="HB: a population mean per segment")
    turf_size: int = setting(3, min=0)
    turf_reach: Literal["above_mean", "top_n"] = setting("above_mean")
    items: dict[str, str] = setting({}, help="item code → label")


@dataclass(frozen=True)
class Conjoint:
    """``[conjoint]``: estimation settings, attribute levels in order, tested prices."""

    method: Literal["mnl", "hb"] = setting(
        "hb",
        fast="mnl",
        help="wtp run: hb (individual part-worths; the MNL when HB does not converge) or mnl",
    )
    coding: Literal["dummy", "effects"] = setting("dummy")
    price: Literal["linear", "partworth"] = setting("linear")
    # sampler keys: None leaves the default to wtp.hb.fit_hb (see [maxdiff])
    draws: int | None = setting(min=1, help="HB: kept draws per chain at the first check")
    tune: int | None = setting(min=0, help="HB: warm-up iterations per chain")
    chains: int | None = setting(min=1)
    target_accept: float | None = setting(above=0, max=0.999)
    time_budget: float | None = setting(above=0)
    until_converged: bool | None = setting()
    save_posterior: bool = setting(False)
    se: Literal["cluster", "plain"] = setting("cluster", help="MNL standard errors (issue 17)")
    numeric: tuple[str, ...] | str = setting(
        (), help="attributes estimated as linear (money value per unit)"
    )
    piecewise: dict[str, tuple[float, ...]] = setting(
        {}, help="numeric attribute → knots (issue 17)"
    )
    prices: tuple[float, ...] | None = setting(above=0, max=1e12, help="tested price levels")
    attributes: dict[str, tuple[Level, ...]] = setting(
        {}, help="attribute → levels, first = reference"
    )


@dataclass(frozen=True)
class Segments:
    """``[segments]``: MAP scoring thresholds and axis weights."""

    min_share: float = setting(0.05, min=0, max=1)
    min_ltv_cac: float = setting(1.0, min=0)
    focus_min_score: float = setting(70.0, min=0, max=100)
    max_focus: int = setting(3, min=1)
    weights: dict[str, float] = setting(
        {}, min=0, help="axis or metric weights, e.g. potential = 2"
    )


@dataclass(frozen=True)
class Packages:
    """``[packages]``: tiers, pins, caps. The numeric drafting options (``capture``,
    ``step``, …) are the fields of :class:`wtp.pricing.PricingSettings`, which owns them."""

    tiers: tuple[str, ...] = setting(("Starter", "Pro", "Enterprise"))
    pins: dict[str, str] = setting({}, help="feature code → tier or add-on")
    max_features_per_tier: int | dict[str, int] | None = setting(min=0)
    caps: int | dict[str, int] | None = setting(min=0, help="same as max_features_per_tier")
    step: tuple[float, ...] | None = setting(
        min=1, help="[lowest, highest] tier-to-tier price ratio"
    )
    conjoint: dict[str, str] = setting({}, help="feature code → 'Attribute=Level'")
    options: dict[str, Any] = setting({}, help="PricingSettings fields given in [packages]")


@dataclass(frozen=True)
class Pricing:
    """``[pricing]``: how price books read the instruments (CONTRACT §5)."""

    too_cheap: Literal["ignore", "exclude"] = setting("ignore")
    vw_describes: Literal["core", "entry", "full"] = setting("core")
    # defaults live in wtp.pricing.PricingSettings (None: its default)
    min_step: float | None = setting(min=1, help="each tier at least this × the tier below")
    draws: int | None = setting(min=2, help="take-up draws (posterior or bootstrap)")
    search_draws: int | None = setting(min=2, help="draws the joint price search uses")
    calibrate: bool | None = setting(help="scale take-up to today's conversion")
    min_gain: float | None = setting(min=0, help="revenue gain that justifies separate books")
    level: float | None = setting(above=0, max=0.999, help="interval level")
    add_on_noise: Literal["conjoint", "none"] = setting(
        "conjoint", help="add-on buying noise: the conjoint's price scale, or none"
    )


SECTIONS: dict[str, type] = {
    "study": StudyInfo,
    "data": DataFiles,
    "columns": ColumnMaps,
    "input": Input,
    "sample": Sample,
    "van_westendorp": VanWestendorp,
    "maxdiff": MaxDiff,
    "conjoint": Conjoint,
    "segments": Segments,
    "packages": Packages,
    "pricing": Pricing,
}
# other spellings analysts use: section → (alias → key)
ALIASES: dict[str, dict[str, str]] = {
    "": {"vw": "van_westendorp", "cbc": "conjoint"},
    "data": {"vw": "van_westendorp", "cbc": "conjoint"},
}


@dataclass(frozen=True)
class StudySettings:
    """Every section of study.toml, validated and typed (absent sections hold their defaults)."""

    study: StudyInfo = field(default_factory=StudyInfo)
    data: DataFiles = field(default_factory=DataFiles)
    columns: ColumnMaps = field(default_factory=ColumnMaps)
    input: Input = field(default_factory=Input)
    sample: Sample = field(default_factory=Sample)
    van_westendorp: VanWestendorp = field(default_factory=VanWestendorp)
    maxdiff: MaxDiff = field(default_factory=MaxDiff)
    conjoint: Conjoint = field(default_factory=Conjoint)
    segments: Segments = field(default_factory=Segments)
    packages: Packages = field(default_factory=Packages)
    pricing: Pricing = field(default_factory=Pricing)
    fast: bool = False
    data_given: frozenset[str] = frozenset()  # [data] keys the study names (absent ≠ default)

    def min_n(self, instrument: str) -> int:
        """Smallest segment size for an instrument (``vw``, ``maxdiff``, ``conjoint``)."""
        own = getattr(self.sample, f"min_n_{instrument}", None)
        return int(own if own is not None else self.sample.min_n)


def as_settings(
    settings: StudySettings | Mapping[str, Any] | None, *, source: str = "study.toml"
) -> StudySettings:
    """The typed settings, from themselves or from a parsed study.toml (validated here), so that
    helpers taking either read one schema and its defaults."""
    if isinstance(settings, StudySettings):
        return settings
    return parse_settings(settings or {}, source=source)


def sampler_keys(section: MaxDiff | Conjoint) -> dict[str, Any]:
    """The sampler keys a study sets in ``[maxdiff]`` or ``[conjoint]`` (unset ones are left
    out, so :func:`wtp.hb.sampler_settings` applies the sampler's own defaults)."""
    keys = ("draws", "tune", "chains", "target_accept", "time_budget", "until_converged")
    out = {k: getattr(section, k) for k in keys if getattr(section, k) is not None}
    if section.save_posterior:
        out["save_posterior"] = True
    return out


def known_keys() -> dict[str, list[str]]:
    """Section → its keys, for messages and documentation."""
    return {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}


# --------------------------------------------------------------------------------------------
# Parsing


def parse_settings(
    raw: Mapping[str, Any], *, source: str = "study.toml", fast: bool = False
) -> StudySettings:
    """Validate a parsed study.toml against the schema; every problem is reported together.

    Raises :class:`~wtp.errors.InputError` naming ``source`` and the dotted key.
    """
    problems: list[Problem] = []
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        name = ALIASES[""].get(name, name)
        if name not in SECTIONS:
            problems.append(_unknown(source, name, list(SECTIONS), section=None))
            continue
        if not isinstance(value, Mapping):
            problems.append(Problem(source, None, name, f"a [{name}] table", value))
            continue
        sections[name] = _parse_section(name, SECTIONS[name], value, source, fast, problems)
    if fast:
        # absent sections take their first-look defaults too
        for name, cls in SECTIONS.items():
            if name not in sections:
                sections[name] = _parse_section(name, cls, {}, source, fast, problems)
    if problems:
        raise InputError(problems)
    given = frozenset(
        ALIASES["data"].get(k, k) for k in raw.get("data", {}) if k != "allow_outside"
    )
    return StudySettings(
        **{k: v for k, v in sections.items() if v is not None}, fast=fast, data_given=given
    )


def _parse_section(
    name: str, cls: type, table: Mapping[str, Any], source: str, fast: bool, problems: list[Problem]
):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    pricing_fields = _pricing_fields() if name == "packages" else {}
    for key, value in table.items():
        key = ALIASES.get(name, {}).get(key, key)
        dotted = f"{name}.{key}"
        if key in fields and key != "options":
            ok, clean, expected = _check(
                value, hints[key], fields[key].metadata.get(_RANGE, (None, None, None))
            )
            if ok:
                values[key] = clean
            else:
                problems.append(Problem(source, None, dotted, expected, _found(value)))
        elif key in pricing_fields:
            ok, clean, expected = _check(value, pricing_fields[key], (0, None, None))
            if ok:
                extra[key] = clean
            else:
                problems.append(Problem(source, None, dotted, expected, _found(value)))
        else:
            problems.append(_unknown(source, key, [*fields, *pricing_fields], section=name))
    if extra:
        values["options"] = extra
    if fast:
        for f in fields.values():
            if f.name not in values and _FAST in f.metadata:
                values[f.name] = f.metadata[_FAST]
    try:
        return cls(**values)
    except TypeError as exc:  # pragma: no cover - keys were checked above
        problems.append(Problem(source, None, name, "known keys", str(exc)))
        return None


def _pricing_fields() -> dict[str, Any]:
    # [packages] also takes every PricingSettings option; pricing owns those defaults
    try:
        from wtp.pricing import PricingSettings
    except ImportError:  # pragma: no cover
        return {}
    hints = typing.get_type_hints(PricingSettings)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(PricingSettings)
        if f.name not in ("tiers", "pins", "caps")
    }


def _unknown(source: str, key: str, known: list[str], *, section: str | None) -> Problem:
    where = key if section is None else f"{section}.{key}"
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
    hint = ""
    if close:
        hint = f"; did you mean '{close[0]}'?"
    else:
        # a key that lives in another section
        for other, cls in SECTIONS.items():
            if other != section and key in {f.name for f in dataclasses.fields(cls)}:
                hint = f"; '{key}' belongs in [{other}]"
                break
    kind = "section" if section is None else f"key in [{section}]"
    listed = ", ".join(known[:14]) + (", …" if len(known) > 14 else "")
    return Problem(source, None, where, f"a known {kind} ({listed}){hint}", f"unknown '{key}'")


def _found(value: Any) -> str:
    kind = {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "an array",
        dict: "a table",
    }
    for t, word in kind.items():
        if type(value) is t:
            return f"{word} {value!r}" if t is not dict else "a table"
    return repr(value)


def _check(value: Any, tp: Any, rng: tuple) -> tuple[bool, Any, str]:
    """(accepted, cleaned value, what was expected) for one TOML value against an annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        expected = []
        for member in members:
            ok, clean, exp = _check(value, member, rng)
            if ok:
                return True, clean, ""
            expected.append(exp)
        return False, None, " or ".join(expected)
    if origin is Literal:
        choices = [str(a) for a in args]
        if isinstance(value, str) and value in choices:
            return True, value, ""
        close = (
            difflib.get_close_matches(str(value), choices, n=1) if isinstance(value, str) else []
        )
        return (
            False,
            None,
            "one of " + ", ".join(choices) + (f" (did you mean '{close[0]}'?)" if close else ""),
        )
    if origin is tuple or origin is list:
        inner = args[0]
        if not isinstance(value, list):
            return False, None, f"an array of {_name(inner)}"
        out = []
        for v in value:
            ok, clean, exp = _check(v, inner, rng)
            if not ok:
                return False, None, f"an array of {exp}"
            out.append(clean)
        return True, tuple(out) if origin is tuple else out, ""
    if origin is dict:
        inner = args[1]
        if not isinstance(value, Mapping):
            return False, None, f"a table of {_name(inner)}"
        out = {}
        for k, v in value.items():
            ok, clean, exp = _check(v, inner, rng)
            if not ok:
                return False, None, f"a table of {exp} (at '{k}')"
            out[str(k)] = clean
        return True, out, ""
    if tp is Any:
        return True, value, ""
    if tp is bool:
        return (True, value, "") if isinstance(value, bool) else (False, None, "true or false")
    if tp is str:
        return (True, value, "") if isinstance(value, str) else (False, None, "text in quotes")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return _in_range(value, rng, "a whole number")
        return False, None, "a whole number" + _range_text(rng)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                return False, None, "a finite number" + _range_text(rng)
            return _in_range(float(value), rng, "a number")
        return False, None, "a number" + _range_text(rng)
    if tp is _dt.date:
        if isinstance(value, _dt.datetime):
            return True, value.date(), ""
        if isinstance(value, _dt.date):
            return True, value, ""
        if isinstance(value, str):
            try:
                return True, _dt.date.fromisoformat(value.strip()), ""
            except ValueError:
                pass
        return False, None, "a date YYYY-MM-DD"
    return False, None, _name(tp)  # pragma: no cover - an annotation the schema does not use


def _in_range(value: float, rng: tuple, what: str) -> tuple[bool, Any, str]:
    lo, hi, above = rng
    if (
        (lo is not None and value < lo)
        or (hi is not None and value > hi)
        or (above is not None and value <= above)
    ):
        return False, None, what + _range_text(rng)
    return True, value, ""


def _range_text(rng: tuple) -> str:
    lo, hi, above = rng
    parts = []
    if above is not None:
        parts.append(f"above {above:g}")
    if lo is not None:
        parts.append(f"{lo:g} or more")
    if hi is not None:
        parts.append(f"at most {hi:g}")
    return (" " + " and ".join(parts)) if parts else ""


def _name(tp: Any) -> str:
    names = {str: "text", int: "whole numbers", float: "numbers", bool: "true/false"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return "text or numbers"
    if typing.get_origin(tp) is tuple:
        return "arrays"
    return getattr(tp, "__name__", str(tp))
