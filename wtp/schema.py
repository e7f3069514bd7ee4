"""Names every stage shares: the reserved segment names, the study's one segment order, slugs.

=================  ===========================================================================
name               what it means
=================  ===========================================================================
``ALL = "all"``    The *pooled* segment: every respondent of the study analysed together, as
                   if they were one segment (VW price points, MaxDiff shares, conjoint
                   part-worths re-estimated on everyone). Also the segment of the single price
                   book (one book for all). A data file may not use it as a segment name.
``TOTAL="total"``  The *sum* row of tables whose numbers add up across segments (customers,
                   revenue in ``scenarios.csv`` and ``pricing/comparison.csv``). Nothing is
                   re-estimated for it; it is the segments' rows added together.
=================  ===========================================================================

So ``all`` answers "what does everyone, pooled, think?" and ``total`` answers "what do the
segments add up to?" — a share for ``all`` is not the sum of the segments' shares.

Segment order: one order for a whole study, used by every table and page — the order of
``segments.csv`` when the study has one, else the order in which ``respondents.csv`` first names
each segment, else the order of first appearance in the instrument files; ``all`` comes after
the segments and ``total`` last. Names are matched after trimming and case-folding (contract §5).

Slug (contract §5): lower case; every run of characters other than ``a–z0–9`` becomes ``-``; a
slug longer than 60 characters is cut to 51 and ends with ``-`` and the first 8 hex digits of
the SHA-1 of the name, so long names that share a beginning still get distinct pages.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

import pandas as pd

ALL = "all"
TOTAL = "total"
RESERVED = (ALL, TOTAL)

SLUG_MAX = 60
_SLUG_CUT = 51


def segment_key(name) -> str:
    """The form in which segment names are compared: trimmed and case-folded."""
    return str(name).strip().casefold()


def is_all(name) -> bool:
    """Whether a segment name is the reserved ``all`` in any spelling (``All``, `` ALL ``)."""
    return (
        name is not None
        and not (isinstance(name, float) and name != name)
        and segment_key(name) == ALL
    )


def first_seen(names: Iterable) -> list[str]:
    """Distinct names in order of first appearance, the reserved ones (``all``, ``total``) last.

    Library functions use this when no study order is given; the study loader puts the rows of
    every instrument into the study order first, so first appearance *is* the study order.
    """
    seen = list(
        dict.fromkeys(str(n) for n in names if not (n is None or (isinstance(n, float) and n != n)))
    )
    plain = [n for n in seen if segment_key(n) not in RESERVED]
    return plain + [n for r in RESERVED for n in seen if segment_key(n) == r]


def segment_order(
    segments: pd.DataFrame | None = None,
    respondents: pd.DataFrame | None = None,
    others: Sequence[pd.DataFrame | None] = (),
) -> list[str]:
    """The study's segment order (reserved names excluded): segments.csv, else respondents.csv,
    else first appearance in ``others``; segments named only by a later source follow in order."""
    names: list = []
    for frame in (segments, respondents, *others):
        if frame is not None and "segment" in frame.columns:
            names += frame["segment"].tolist()
    by_key: dict[str, str] = {}
    for n in first_seen(names):
        by_key.setdefault(segment_key(n), n)
    return [n for k, n in by_key.items() if k not in RESERVED]


def ordered(names: Iterable, order: Sequence[str]) -> list[str]:
    """``names`` (distinct) sorted by their place in ``order``; unknown names keep their first-seen
    order after the known ones, then ``all``, then ``total``."""
    rank = {segment_key(n): i for i, n in enumerate(order)}
    names = first_seen(names)
    tail = {ALL: len(order) + 1, TOTAL: len(order) + 2}
    return sorted(
        names, key=lambda n: tail.get(segment_key(n), rank.get(segment_key(n), len(order)))
    )


def sort_by_segment(
    frame: pd.DataFrame, order: Sequence[str], column: str = "segment"
) -> pd.DataFrame:
    """Rows stably sorted by the segment's place in ``order`` (index kept: row numbers survive)."""
    if frame is None or column not in frame.columns or not len(order):
        return frame
    rank = {segment_key(n): i for i, n in enumerate(order)}
    rank |= {ALL: len(order) + 1, TOTAL: len(order) + 2}
    codes, names = pd.factorize(frame[column])  # per distinct name, not per row
    pos = [rank.get(segment_key(n), len(order)) for n in names] + [len(order)]  # code -1: missing
    out = frame.iloc[pd.Series(pos).to_numpy()[codes].argsort(kind="stable")]
    out.attrs.update(frame.attrs)
    return out


def slug(name) -> str:
    """Contract slug of a segment name, for file names such as ``segment-<slug>.html``."""
    text = str(name)
    s = re.sub(r"[^a-z0-9]+", "-", text.lower())
    if len(s) > SLUG_MAX:
        s = s[:_SLUG_CUT] + "-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return s


__all__ = [
    "ALL",
    "TOTAL",
    "RESERVED",
    "segment_key",
    "first_seen",
    "segment_order",
    "ordered",
    "sort_by_segment",
    "slug",
]
