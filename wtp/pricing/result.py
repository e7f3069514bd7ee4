"""The pricing stage's result: every table the outputs and the report need, and the books."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from wtp.pricing.settings import TOTAL, PricingSettings

PACKAGES_COLUMNS = [
    "scenario",
    "segment",
    "package",
    "feature",
    "label",
    "share",
    "appeal",
    "reach",
    "money_value",
    "money_source",
    "reason",
]
PRICE_BOOK_COLUMNS = [
    "scenario",
    "segment",
    "package",
    "feature",  # the add-on's feature; empty for a tier
    "price",
    "step_ratio",
    "value",
    "in_range",
    "note",
]
TAKE_UP_COLUMNS = [
    "scenario",
    "segment",
    "package",
    "price",
    "share",
    "share_lower",
    "share_upper",
    "customers",
    "revenue",
    "revenue_lower",
    "revenue_upper",
]
SCENARIO_COLUMNS = [
    "scenario", "segment", "price_book", "customers", "conversion", "revenue", "revenue_lower", "revenue_upper",
    "prospects", "entry_price", "calibration", "baseline_revenue", "today_revenue", "change_vs_today", "ltv", "lifetime_value", "note",
    "add_on_revenue", "add_on_revenue_lower", "add_on_revenue_upper",
]  # fmt: skip
#: pricing/add_ons.csv: per scenario × segment × add-on of the book the segment is offered
ADD_ON_COLUMNS = [
    "scenario", "segment", "price_book", "feature", "price", "share", "customers", "revenue", "revenue_lower",
    "revenue_upper", "note",
]  # fmt: skip


@dataclass(frozen=True)
class PriceBookResult:
    """Packages, price books, take-up and the single-versus-multiple scenarios of a study.

    Attributes
    ----------
    packages
        packages.csv: ``scenario, segment, package, feature`` (a feature once, at the lowest
        tier that has it; ``package='add-on'``) plus ``label, share, appeal, reach,
        money_value`` (the segment's mean money value of the feature, per period) ``,
        money_source, reason``. The single book's rows carry segment ``all``.
    price_books
        price_books.csv: ``scenario, segment, package, price`` plus ``feature`` (an add-on's,
        with ``package='add-on'``; empty for tiers), ``step_ratio``, ``value``
        (mean value of the package to the book's respondents), ``in_range`` and ``note`` (why a
        price is missing or outside the acceptable range; a small segment offered the single
        book).
    take_up
        take_up.csv: per scenario × segment × package ``share`` (0–1, calibrated) with its 90%
        interval, ``customers``, ``revenue`` and its interval.
    scenarios
        scenarios.csv: per scenario × segment and ``total``; besides the contract's columns
        ``baseline_revenue`` (today's customers × ARPA), ``today_revenue`` (today's product at
        today's price on the scenarios' own basis: prospects × calibrated take-up × ARPA) and
        ``change_vs_today`` (revenue ÷ today_revenue − 1: what to apply to today's revenue when
        prospects at today's conversion are not today's customers, which the note says).
        ``add_on_revenue`` (+ ``_lower, _upper``): the add-ons' revenue, apart from ``revenue``
        (the packages', as the contract defines it).
    add_ons
        pricing/add_ons.csv: per scenario × segment × add-on of the book the segment is offered,
        ``price``, ``share`` of the segment's prospects buying it, ``customers``, ``revenue`` and
        its interval (:mod:`wtp.pricing.add_ons`).
    comparison
        pricing/comparison.csv: per segment and total, both scenarios, the change,
        ``p_multiple_better`` and who gains or loses.
    calibration
        ``segment, observed_conversion, today_price, predicted_conversion, factor, lower,
        upper, note``.
    valuation
        ``segment, n, source, own_book, reason, median_value``: where values came from and which
        segments were too small for a book of their own.
    search
        How each book's prices were found: ``scenario, book, n_evaluated, note``.
    too_cheap_check
        The verdict under the other ``too_cheap`` setting.
    """

    packages: pd.DataFrame
    price_books: pd.DataFrame
    take_up: pd.DataFrame
    scenarios: pd.DataFrame
    comparison: pd.DataFrame
    calibration: pd.DataFrame
    valuation: pd.DataFrame
    search: pd.DataFrame
    arbitrage: pd.DataFrame
    recommendation: str
    missing: pd.DataFrame
    settings: PricingSettings
    segments: tuple[str, ...] = ()
    too_cheap_check: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    volume_source: str = ""
    period: str = "period"
    price_unit: str = ""  # as study.toml says it ("per seat per month", "per bar")
    books: tuple = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    simulator: Any = None  # SimulatorInputs: what simulator.html and `wtp simulate` recompute from
    add_ons: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ADD_ON_COLUMNS))

    @property
    def has_prices(self) -> bool:
        return bool(self.price_books["price"].notna().any()) if len(self.price_books) else False

    def entry_prices(self, scenario: str = "multiple") -> dict[str, float]:
        s = self.scenarios[
            (self.scenarios["scenario"] == scenario) & (self.scenarios["segment"] != TOTAL)
        ]
        return dict(zip(s["segment"], s["entry_price"].astype(float), strict=True))

    def total(self, scenario: str, column: str = "revenue") -> float:
        s = self.scenarios[
            (self.scenarios["scenario"] == scenario) & (self.scenarios["segment"] == TOTAL)
        ]
        return float(s[column].iloc[0]) if len(s) else float("nan")

    def summary(self) -> pd.DataFrame:
        """Per segment and total: revenue under both scenarios, the change and its odds."""
        cols = [
            "segment",
            "prospects",
            "revenue_single",
            "revenue_multiple",
            "revenue_change_pct",
            "p_multiple_better",
        ]
        return self.comparison[[c for c in cols if c in self.comparison.columns]].copy()

    def to_frame(self) -> pd.DataFrame:
        """The price books (price_books.csv)."""
        return self.price_books.copy()
