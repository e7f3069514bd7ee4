"""Packages and price books: good/better/best per segment, one book against one per segment.

The last analytic stage. It takes the instrument results and the segment volumes and

1. drafts **packages** per segment from MaxDiff (:mod:`wtp.pricing.packages`) and the single
   book's packages aimed at the segments;
2. puts a **money value** on the product and on each feature per respondent
   (:mod:`wtp.pricing.valuation`: Van Westendorp/NMS, conjoint part-worths, the MaxDiff bridge);
3. **simulates take-up** — each respondent takes the package that leaves them the most value over
   its price, or none (:mod:`wtp.pricing.simulator`);
4. **prices every tier of a book jointly** on the nice-price lattice (:mod:`wtp.pricing.optimiser`);
5. **calibrates** take-up to today's conversion and compares ``single`` with ``multiple``
   against today's book (:mod:`wtp.pricing.scenarios`), with intervals and
   ``p_multiple_better``; and words a **recommendation** (:mod:`wtp.pricing.recommendation`).

:func:`build_price_books` is that recipe; it never re-estimates an instrument and writes
nothing (``wtp.report.pricing.write_outputs`` writes the tables).
"""

from wtp.pricing.build import build_price_books
from wtp.pricing.optimiser import Agents, brute_force, lattice, nice_price, optimise_ladder
from wtp.pricing.packages import PACKAGE_COLUMNS, draft_packages, draft_single_book
from wtp.pricing.result import PriceBookResult
from wtp.pricing.settings import (
    ADD_ON,
    ALL,
    DEFAULT_TIERS,
    TOTAL,
    PricingSettings,
    resolve_settings,
)
from wtp.pricing.simulator import choices, revenue_per_prospect, take_up
from wtp.pricing.valuation import SegmentValues, reservation_draws

__all__ = [
    "ADD_ON",
    "ALL",
    "Agents",
    "DEFAULT_TIERS",
    "PACKAGE_COLUMNS",
    "PriceBookResult",
    "PricingSettings",
    "SegmentValues",
    "TOTAL",
    "brute_force",
    "build_price_books",
    "choices",
    "draft_packages",
    "draft_single_book",
    "lattice",
    "nice_price",
    "optimise_ladder",
    "reservation_draws",
    "resolve_settings",
    "revenue_per_prospect",
    "take_up",
]
