"""Gumbel errors that the offline simulator page can draw again, bit for bit.

A counter-based hash (lowbias32, C. Wellons) of (seed, segment, respondent, draw, package) gives
each error, so a page holding only the seed and the respondents' scales redraws what the
pricing stage drew, with the same arithmetic in ``simulator.js`` (``mix32``). Two uses: the
randomised-first-choice rule of ``wtp simulate`` and the page, and the noise between tiers of
:func:`wtp.pricing.valuation.tier_noise`.
"""

from __future__ import annotations

import numpy as np


def _mix32(x: np.ndarray) -> np.ndarray:
    """lowbias32 (C. Wellons): a 32-bit integer hash, the same in the page's JavaScript."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def rfc_gumbel(seed: int, segment_index: int, n: int, d: int, width: int) -> np.ndarray:
    """N × D × width standard Gumbel errors from a counter hash of (seed, segment, i, d, k)."""
    key = _mix32(
        np.array([(seed * 0x9E3779B9 + segment_index * 0x85EBCA6B) & 0xFFFFFFFF], dtype=np.uint64)
    )[0]
    counter = np.arange(n * d * width, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
    h = _mix32(counter.astype(np.uint32) ^ key)
    u = (h.astype(float) + 0.5) / 4294967296.0
    return (-np.log(-np.log(u))).reshape(n, d, width)


__all__ = ["rfc_gumbel"]
