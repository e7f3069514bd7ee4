"""MaxDiff through the hierarchical Bayes MNL of :mod:`wtp.hb`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wtp.maxdiff.data import MaxDiffData, _bw_choices, _segment_rows
from wtp.maxdiff.design import _contrast_basis
from wtp.schema import ALL

# --------------------------------------------------------------------------------------------
# Hierarchical Bayes


def maxdiff_choice_data(md: MaxDiffData, *, segment_means: bool = True):
    """The sequential best-worst choices as :class:`wtp.hb.ChoiceData`.

    Items are coded on an orthonormal basis of zero-sum contrasts (``Q``, K × (K−1)), so
    ``u = Q β`` is zero-centred and an exchangeable prior on β is exchangeable over items
    (no reference item is treated differently). Returns (ChoiceData, Q).
    """
    from wtp.hb import choice_data

    ch = _bw_choices(md)
    Q = _contrast_basis(md.n_items)
    avail = ch.items >= 0
    X = ch.sign[:, None, None] * Q[np.where(avail, ch.items, 0)]
    real_segments = [s for s in md.segments if s != ALL]
    use_groups = segment_means and len(md.segments) > 1
    data = choice_data(
        X,
        avail,
        ch.chosen,
        ch.resp,
        md.segment if use_groups else None,
        param_names=[f"c{i + 1}" for i in range(md.n_items - 1)],
        respondent_ids=md.respondent_ids,
        group_names=list(md.segments) if use_groups else [ALL],
    )
    _ = real_segments
    return data, Q


def _segment_weights(md: MaxDiffData) -> tuple[list[str], np.ndarray]:
    """Names and a (segments+1) × R matrix of normalised respondent weights."""
    rows = _segment_rows(md)
    M = np.zeros((len(rows), md.n_respondents))
    for i, (_, mask) in enumerate(rows):
        w = md.weight * mask
        M[i] = w / w.sum()
    return [name for name, _ in rows], M


def _segment_share_draws(md: MaxDiffData, beta: np.ndarray, Q: np.ndarray, chunk: int = 100):
    """Segment shares per posterior draw: per draw, per respondent, then the weighted mean over
    the segment. ``beta`` is (chain, draw, R, P); returns (chain, draw, segment, item)."""
    from wtp.hb_density import weighted_shares

    _, M = _segment_weights(md)
    C, D = beta.shape[:2]
    shares = np.empty((C, D, len(M), md.n_items))
    # chain by chain: ``beta`` may be a window of the sampler's buffer (not contiguous)
    for c in range(C):
        for start in range(0, D, chunk):
            u = beta[c, start : start + chunk] @ Q.T
            shares[c, start : start + chunk] = weighted_shares(u, M, md.k)
    return shares


def _segment_utility_draws(md: MaxDiffData, beta: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Segment mean utilities per posterior draw, (chain, draw, segment, item): linear in β,
    so the weighted mean is taken before the item basis (M β Qᵀ)."""
    _, M = _segment_weights(md)
    return np.matmul(M, beta) @ Q.T


def _share_draws(
    md: MaxDiffData, beta: np.ndarray, Q: np.ndarray, shares: np.ndarray | None = None
):
    """Segment utilities and shares per posterior draw: per draw, per respondent, then the
    weighted mean over the segment. ``beta`` is (chain, draw, R, P); returns two arrays
    (chain, draw, segment, item) and the segment names. ``shares``: the share draws already
    computed for these draws (the sampler's convergence checks keep them), reused."""
    names, _ = _segment_weights(md)
    if shares is None:
        shares = _segment_share_draws(md, beta, Q)
    return shares, _segment_utility_draws(md, beta, Q), names


def _hb_scores(
    md: MaxDiffData, shares: np.ndarray, utils: np.ndarray, names: list[str]
) -> pd.DataFrame:
    _, M = _segment_weights(md)
    sh = shares.reshape(-1, *shares.shape[2:])
    ut = utils.reshape(-1, *utils.shape[2:])
    frames = []
    for g, name in enumerate(names):
        frames.append(
            pd.DataFrame(
                {
                    "segment": name,
                    "item": md.items,
                    "utility": ut[:, g].mean(axis=0),
                    "share": sh[:, g].mean(axis=0),
                    "lower": np.quantile(sh[:, g], 0.025, axis=0),
                    "upper": np.quantile(sh[:, g], 0.975, axis=0),
                    "utility_lower": np.quantile(ut[:, g], 0.025, axis=0),
                    "utility_upper": np.quantile(ut[:, g], 0.975, axis=0),
                    "n_respondents": int((M[g] > 0).sum()),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
