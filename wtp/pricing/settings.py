"""Settings of the pricing stage: every choice it makes, parsed once from study.toml.

========================= ============================ ==========================================
key                       default                      meaning
========================= ============================ ==========================================
``[packages] tiers``      Starter, Pro, Enterprise     the ladder of cumulative packages
``[packages] pins``       none                         ``code = "Tier"`` (or ``"add-on"``)
``[packages]``            none                         most features a tier adds (a number or a
``max_features_per_tier``                              table per tier)
``[packages] conjoint``   none                         ``code = "Attribute=Level"``: the MaxDiff
                                                       feature a conjoint level stands for
``[pricing] too_cheap``   ``"ignore"``                 ``"exclude"``: nobody buys below their own
                                                       "too cheap" answer (the NMS convention);
                                                       between it and their "cheap" answer the
                                                       threshold is uncertain (drawn per draw)
``[pricing]               ``"core"``                   what the Van Westendorp question showed:
vw_describes``                                         ``core`` (no MaxDiff feature), ``entry``
                                                       (the entry package) or ``full`` (every
                                                       feature)
``[pricing] min_step``    1.15                         each tier costs at least this × the one
                                                       below
``[pricing] draws``       200                          draws of the take-up simulation (posterior
                                                       draws or Bayesian bootstrap)
``[pricing] calibrate``   true                         scale take-up so that today's price
                                                       reproduces today's conversion
``[pricing] min_gain``    0.05                         revenue gain that justifies separate books
``[pricing]               enough for 25,600            draws the price search uses (the scenarios
search_draws``            respondent-draws per         use all ``draws``)
                          segment, 32 to ``draws``
``[pricing] level``       0.90                         interval level of take-up and revenue
``[pricing]               ``"conjoint"``               who buys an add-on: ``conjoint`` — money
add_on_noise``                                         value + logistic noise of the respondent's
                                                       conjoint price scale ≥ price; ``none`` (or
                                                       no conjoint) — money value ≥ price
``[sample] min_n``        30                           a segment under it gets no book of its own
========================= ============================ ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from wtp.errors import InputError, Problem

ALL = "all"
TOTAL = "total"
ADD_ON = "add-on"
DEFAULT_TIERS = ("Starter", "Pro", "Enterprise")
SCENARIOS = ("single", "multiple")
#: respondent-draws per segment the price search aims for: with 32 draws of a 200-respondent
#: segment the search chased Monte Carlo noise (tier worlds, 3 × 5 seeds: own books ≥ 95% of
#: their best in 12 of 15; with 128, 14, the single book 14 → 13, uplift within ±25% 11 → 12)
SEARCH_AGENTS = 25_600
MIN_SEARCH_DRAWS = 32

TooCheap = Literal["ignore", "exclude"]
VwDescribes = Literal["core", "entry", "full"]
AddOnNoise = Literal["conjoint", "none"]


@dataclass(frozen=True)
class PricingSettings:
    """Every choice of the pricing stage (see the module docstring for the defaults)."""

    tiers: tuple[str, ...] = DEFAULT_TIERS
    pins: dict[str, str] = field(default_factory=dict)
    caps: dict[str, int] = field(default_factory=dict)
    conjoint_features: dict[str, str] = field(default_factory=dict)
    stakes_appeal: float = 0.75
    stakes_share_ratio: float = 1.4
    low_share_ratio: float = 0.5
    reach_top_n: int = 3
    min_reach_gain: float = 0.05
    too_cheap: TooCheap = "ignore"
    vw_describes: VwDescribes = "core"
    min_step: float = 1.15
    draws: int = 200
    search_draws: int | None = None  # None: search_draws_for picks by segment size
    calibrate: bool = True
    min_gain: float = 0.05
    min_n: int = 30
    level: float = 0.90
    add_on_noise: AddOnNoise = "conjoint"

    def cap(self, tier: str) -> int | None:
        return self.caps.get(tier)

    def search_draws_for(self, n_respondents: int) -> int:
        """Draws the price search takes of a segment of ``n_respondents``: as set, else enough
        for :data:`SEARCH_AGENTS` respondent-draws (at least :data:`MIN_SEARCH_DRAWS`, at most
        ``draws``), so a small segment's revenue landscape is not one draw's noise."""
        if self.search_draws is not None:
            return self.search_draws
        want = math.ceil(SEARCH_AGENTS / max(n_respondents, 1))
        return int(min(self.draws, max(MIN_SEARCH_DRAWS, want)))

    def describe(self) -> list[str]:
        """The method in sentences, for the report."""
        caps = ", ".join(f"{t} {self.caps[t]}" for t in self.tiers if t in self.caps) or "none"
        shown = {
            "core": "the product without the MaxDiff features",
            "entry": "the entry package",
            "full": "the product with every feature",
        }[self.vw_describes]
        return [
            f"Tiers: {' / '.join(self.tiers)} (cumulative). Most features a tier adds: {caps}.",
            f"Each respondent's value of a package = their Van Westendorp/NMS reservation value for what the question showed ({shown}; [pricing] vw_describes = {self.vw_describes!r}) "
            "± the money values of the features the package has beyond it; without Van Westendorp, their conjoint utility of the package against not buying, in money.",
            "A respondent takes the package that leaves them the most value over its price (where the conjoint gives each respondent their own price scale, that value carries choice noise of that scale between tiers), or none; shares are weighted means over respondents.",
            f"Too cheap: {self.too_cheap!r} ({'a price below someone’s too-cheap answer does not stop them buying' if self.too_cheap == 'ignore' else 'nobody buys below their own too-cheap price'}).",
            f"Uncertainty: {self.draws} draws (posterior draws where the conjoint has them, a Bayesian bootstrap of respondents, and each respondent's stated purchase likelihood); intervals are {self.level:.0%}.",
            f"Tier prices are searched jointly on the nice-price lattice: each tier at least {self.min_step:g}× the tier below.",
            "Take-up is calibrated so that today's price reproduces today's conversion where segments.csv gives it."
            if self.calibrate
            else "Take-up is stated intent, not calibrated.",
            "Add-ons are priced after the tiers, on the same lattice: someone who takes a package without the feature buys it on top when their money value of it"
            + (
                " plus logistic noise of their conjoint price scale"
                if self.add_on_noise == "conjoint"
                else ""
            )
            + " is at least its price ([pricing] add_on_noise = "
            + repr(self.add_on_noise)
            + "); add-ons do not change which package anyone takes.",
        ]


_KNOWN = {f.name for f in fields(PricingSettings)} - {"tiers", "pins", "caps", "conjoint_features"}
_PACKAGE_KEYS = {"tiers", "pins", "max_features_per_tier", "caps", "conjoint", "step", "options"}
_CHOICES = {
    "too_cheap": ("ignore", "exclude"),
    "vw_describes": ("core", "entry", "full"),
    "add_on_noise": ("conjoint", "none"),
}


def resolve_settings(
    study=None,
    *,
    tiers=None,
    pins=None,
    caps=None,
    min_n: int | None = None,
    options: dict[str, Any] | None = None,
) -> PricingSettings:
    """Settings from study.toml ``[packages]``, ``[pricing]`` and ``[sample] min_n``, overridden
    by the arguments; validated.

    Raises
    ------
    InputError
        Naming ``study.toml`` and the key for a pin naming no tier, a cap that is not a whole
        number, an unknown option or a value outside its choices.
    """
    settings_dict = getattr(study, "settings", None) or {}
    block = {k: v for k, v in dict(settings_dict.get("packages", {})).items() if v is not None}
    pricing = dict(settings_dict.get("pricing", {}))
    source = (
        "study.toml" if study is None else str(Path(getattr(study, "folder", ".")) / "study.toml")
    )
    problems: list[Problem] = []
    tiers = [str(t) for t in (tiers if tiers is not None else block.get("tiers", DEFAULT_TIERS))]
    if not tiers or len(set(tiers)) != len(tiers) or ADD_ON in tiers:
        problems.append(
            Problem(
                source,
                None,
                "packages.tiers",
                f"a list of distinct tier names (not '{ADD_ON}')",
                tiers,
            )
        )
    lookup = {t.lower(): t for t in tiers} | {ADD_ON: ADD_ON, "add-ons": ADD_ON, "addon": ADD_ON}
    clean_pins = {}
    for code, tier in dict(pins if pins is not None else block.get("pins", {})).items():
        t = lookup.get(str(tier).strip().lower())
        if t is None:
            problems.append(
                Problem(
                    source,
                    None,
                    f"packages.pins.{code}",
                    "one of the tiers " + ", ".join(tiers) + f" or '{ADD_ON}'",
                    tier,
                )
            )
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
                problems.append(
                    Problem(
                        source,
                        None,
                        f"packages.max_features_per_tier.{t}",
                        "one of the tiers " + ", ".join(tiers),
                        t,
                    )
                )
            elif not ok:
                problems.append(
                    Problem(
                        source,
                        None,
                        "packages.max_features_per_tier",
                        "a whole number of features, 0 or more",
                        v,
                    )
                )
            else:
                clean_caps[key] = int(v)
    opts: dict[str, Any] = {k: v for k, v in block.items() if k in _KNOWN}
    for k in block:
        if k not in _KNOWN | _PACKAGE_KEYS:
            import difflib

            near = difflib.get_close_matches(k, sorted(_KNOWN | _PACKAGE_KEYS), n=1)
            problems.append(
                Problem(
                    source,
                    None,
                    f"packages.{k}",
                    "a known [packages] key" + (f" (did you mean {near[0]!r}?)" if near else ""),
                    k,
                )
            )
    if isinstance(block.get("conjoint"), dict):
        opts["conjoint_features"] = {str(k): str(v) for k, v in block["conjoint"].items()}
    for k, v in pricing.items():
        if v is None:
            continue  # a typed schema's "not given"
        if k in _KNOWN:
            opts[k] = v
        else:
            import difflib

            near = difflib.get_close_matches(k, sorted(_KNOWN), n=1)
            problems.append(
                Problem(
                    source,
                    None,
                    f"pricing.{k}",
                    "a known [pricing] key" + (f" (did you mean {near[0]!r}?)" if near else ""),
                    k,
                )
            )
    sample_n = (settings_dict.get("sample") or {}).get("min_n")
    if sample_n is not None:
        opts["min_n"] = sample_n
    if min_n is not None:
        opts["min_n"] = min_n
    for k, v in (options or {}).items():
        if k not in _KNOWN:
            problems.append(Problem("options", None, k, "one of " + ", ".join(sorted(_KNOWN)), k))
        else:
            opts[k] = v
    for k, allowed in _CHOICES.items():
        if k in opts and opts[k] not in allowed:
            problems.append(
                Problem(
                    source, None, f"pricing.{k}", " or ".join(repr(a) for a in allowed), opts[k]
                )
            )
    if "min_step" in opts and not (
        isinstance(opts["min_step"], int | float) and opts["min_step"] >= 1
    ):
        problems.append(
            Problem(
                source,
                None,
                "pricing.min_step",
                "a tier-to-tier price ratio of 1 or more",
                opts["min_step"],
            )
        )
    for k in ("draws", "search_draws", "min_n"):
        if k in opts and not (
            isinstance(opts[k], int | np.integer)
            and not isinstance(opts[k], bool)
            and opts[k] >= (0 if k == "min_n" else 2)
        ):
            problems.append(
                Problem(
                    source,
                    None,
                    f"pricing.{k}" if k != "min_n" else "sample.min_n",
                    "a whole number" + (" of 2 or more" if k != "min_n" else ""),
                    opts[k],
                )
            )
    if problems:
        raise InputError(problems)
    return replace(PricingSettings(tiers=tuple(tiers), pins=clean_pins, caps=clean_caps), **opts)
