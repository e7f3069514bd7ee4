"""The recommendation: one paragraph built from the scenario numbers, in the analyst's words."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wtp.pricing.inputs import Volumes
from wtp.pricing.scenarios import same_basis
from wtp.pricing.settings import ALL, TOTAL, PricingSettings


def _fmt(x: float) -> str:
    """A number for a sentence: no decimals from 100, one below, two below 10."""
    if not np.isfinite(x):
        return "–"
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    text = f"{x:,.{digits}f}"
    return text.rstrip("0").rstrip(".") if digits else text


def recommend(
    comparison: pd.DataFrame,
    scenarios: pd.DataFrame,
    books,
    own: dict[str, bool],
    vols: Volumes,
    check: dict,
    settings: PricingSettings,
    period: str = "period",
    disagree: list[str] | None = None,
    unvalued: str = "",
) -> str:
    if comparison.empty or not (comparison["segment"] == TOTAL).any():
        if unvalued:
            return f"No price book can be recommended: {unvalued}."
        return "No price book can be recommended: nothing puts a money value on the packages (no Van Westendorp and no conjoint), or no segment has a volume."
    tot = comparison[comparison["segment"] == TOTAL].iloc[0]
    per = "per prospect" if vols.per_prospect else f"per {period}"
    single = books[("single", ALL)]
    ladder = " / ".join(
        f"{t} {_fmt(p)}" for t, p in zip(single.tiers, single.prices, strict=True) if np.isfinite(p)
    )
    gain = tot["revenue_change_pct"]
    p_better = tot["p_multiple_better"]
    text = []
    segs = [s for s in comparison["segment"] if s != TOTAL]
    if len(segs) == 1:
        text.append(
            f"One segment: one price book ({ladder}), expected revenue {_fmt(tot['revenue_single'])} {per} (90% interval {_fmt(tot['revenue_single_lower'])}–{_fmt(tot['revenue_single_upper'])})."
        )
    elif gain >= settings.min_gain:
        text.append(
            f"Use one price book per segment: it is expected to earn {_fmt(tot['revenue_multiple'])} {per} against {_fmt(tot['revenue_single'])} with one book for all "
            f"({gain:+.1%}; multiple earns more in {p_better:.0%} of the draws)."
        )
    else:
        text.append(
            f"Keep one price book for all ({ladder}): one per segment is expected to earn {_fmt(tot['revenue_multiple'])} {per} against {_fmt(tot['revenue_single'])} "
            f"({gain:+.1%}, more in {p_better:.0%} of the draws), under the {settings.min_gain:.0%} that would pay for the fences separate books need."
        )
    base = tot.get("baseline_revenue", np.nan)
    today = tot.get("today_revenue", np.nan)
    if np.isfinite(base) and base > 0:
        multiple = gain >= settings.min_gain and len(segs) > 1
        best = tot["revenue_multiple"] if multiple else tot["revenue_single"]
        change = best / today - 1 if np.isfinite(today) and today > 0 else np.nan
        if np.isfinite(change) and not same_basis(today, base):
            # prospects (market_size) at today's conversion are not today's customers: the
            # scenarios' level is another market's, their change against today's book is not
            text.append(
                f"Today's book earns {_fmt(base)} {per} (customers × ARPA). The scenarios count every prospect at the calibrated take-up, where today's product at today's price "
                f"earns {_fmt(today)}: against that, the recommended book changes revenue by {change:+.1%}, about {_fmt(base * (1 + change))} {per} applied to today's business."
            )
        elif np.isfinite(change):
            text.append(
                f"Today's book earns {_fmt(base)} {per} (customers × ARPA); the recommended one {change:+.1%} against today's product at today's price on the same basis."
            )
        else:
            text.append(
                f"Today's book earns {_fmt(base)} {per} (customers × ARPA); the recommended one {best / base - 1:+.1%}."
            )
    if disagree:
        text.append(
            f"Caution: in {', '.join(disagree)} the features' money values do not fit the value of what the Van Westendorp question showed "
            "(see the pricing warnings): check [pricing] vw_describes and the MaxDiff → money anchor before using the tier prices."
        )
    small = [s for s, o in own.items() if not o]
    if small:
        text.append(
            ", ".join(small)
            + f" {'has' if len(small) == 1 else 'have'} fewer than {settings.min_n} respondents: offered the single book rather than a book of {'its' if len(small) == 1 else 'their'} own."
        )
    flagged = [
        s
        for s in vols.flags
        if own.get(s) and "too small" in vols.flags[s] and gain >= settings.min_gain
    ]
    if flagged:
        text.append(
            ", ".join(flagged)
            + " get their own book here, but the segment scores call them too small to pursue: unless the fence is cheap, offer them the single book (the difference is in the comparison table)."
        )
    if check.get("available"):
        if check["changes"]:
            text.append(
                f"Caution: with too_cheap = {check['other']!r} the verdict would be {check['verdict_other']} ({check['uplift_other']:+.1%})."
            )
        else:
            text.append(
                f"The verdict holds with too_cheap = {check['other']!r} ({check['uplift_other']:+.1%})."
            )
    return " ".join(text)
