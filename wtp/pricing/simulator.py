"""The take-up simulator: which package each respondent takes from a price book, or none.

Pure, vectorised numpy over respondents × draws × packages. Its inputs are plain arrays so the
same arithmetic can run elsewhere (an offline simulator page) and give the same shares.

================ ================= ===============================================================
array            shape             meaning
================ ================= ===============================================================
``base``         N × D             money value, per period, of the product the valuation
                                   describes (the Van Westendorp product, or the conjoint's
                                   reference product) for respondent i in draw d; ``-inf``: this
                                   respondent does not buy at any price in this draw
``extra``        N × K             money value of package k beyond that product (its features'
                                   money values; negative where ``vw_describes`` has the
                                   product include features the package lacks)
``prices``       K                 the book's prices; NaN: package not offered
``weights``      D × N             respondent weights per draw (survey weight × bootstrap
                                   weight); normalised within each draw
``too_cheap``    N × D × K         a package priced below it is not taken in that draw
                 (optional)        (``too_cheap = "exclude"``; N × K: the same in every draw)
``shock``        N × D × (K + 1)   money-valued choice noise for each package and, last, for
                 (optional)        not buying (conjoint-based values; with Van Westendorp values
                                   and a conjoint scale per respondent, noise between
                                   tiers only)
================ ================= ===============================================================

Respondent i in draw d takes ``argmax_k (base + extra_k + shock_k − price_k)`` when that surplus
is at least ``shock_none``, else nothing; ties go to the cheaper (earlier) package. The share of
package k in draw d is ``Σ_i w_di · [i takes k] / Σ_i w_di``; revenue per prospect is
``Σ_k share_k · price_k``.
"""

from __future__ import annotations

import numpy as np


def surplus(
    base: np.ndarray,
    extra: np.ndarray,
    prices: np.ndarray,
    *,
    too_cheap: np.ndarray | None = None,
    shock: np.ndarray | None = None,
) -> np.ndarray:
    """N × D × K surplus over not buying; ``-inf`` where a package is not on offer to someone."""
    prices = np.asarray(prices, dtype=float)
    offered = np.isfinite(prices)
    k = prices.size
    s = (
        base[:, :, None]
        + np.nan_to_num(extra, nan=0.0)[:, None, :]
        - np.where(offered, prices, 0.0)[None, None, :]
    )
    if shock is not None:
        s = s + (shock[:, :, :k] - shock[:, :, k : k + 1])
    blocked = np.broadcast_to(~offered[None, None, :], s.shape)
    if too_cheap is not None:
        tc = too_cheap if too_cheap.ndim == 3 else too_cheap[:, None, :]
        blocked = blocked | (np.where(offered, prices, np.inf)[None, None, :] < tc)
    return np.where(blocked, -np.inf, s)


def choices(
    base: np.ndarray,
    extra: np.ndarray,
    prices: np.ndarray,
    *,
    too_cheap: np.ndarray | None = None,
    shock: np.ndarray | None = None,
) -> np.ndarray:
    """N × D index of the package taken, −1 for none."""
    s = surplus(base, extra, prices, too_cheap=too_cheap, shock=shock)
    best = np.argmax(s, axis=2)
    top = np.take_along_axis(s, best[..., None], axis=2)[..., 0]
    return np.where(top >= 0, best, -1)


def take_up(
    base: np.ndarray,
    extra: np.ndarray,
    prices: np.ndarray,
    weights: np.ndarray,
    *,
    too_cheap: np.ndarray | None = None,
    shock: np.ndarray | None = None,
) -> np.ndarray:
    """D × K share of prospects taking each package in each draw (see the module docstring)."""
    prices = np.asarray(prices, dtype=float)
    pick = choices(base, extra, prices, too_cheap=too_cheap, shock=shock)  # N × D
    w = np.asarray(weights, dtype=float)
    w = w / w.sum(axis=1, keepdims=True)
    k = prices.size
    onehot = pick.T[:, :, None] == np.arange(k)[None, None, :]  # D × N × K
    return np.einsum("dn,dnk->dk", w, onehot.astype(float))


def revenue_per_prospect(shares: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Per draw: ``Σ_k share_k · price_k`` (packages not offered earn nothing)."""
    return shares @ np.nan_to_num(np.asarray(prices, dtype=float), nan=0.0)


__all__ = ["choices", "revenue_per_prospect", "surplus", "take_up"]
