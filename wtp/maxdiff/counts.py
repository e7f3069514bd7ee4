"""MaxDiff counts: best minus worst over times shown, per item and segment."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wtp.maxdiff.data import MaxDiffData, _segment_rows, probability_shares

# --------------------------------------------------------------------------------------------
# Counts


def _respondent_counts(md: MaxDiffData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times shown, picked best and picked worst per respondent × item."""
    r, k = md.n_respondents, md.n_items
    valid = md.shown >= 0
    resp = np.broadcast_to(md.task_resp[:, None], md.shown.shape)
    shown = np.zeros((r, k))
    np.add.at(shown, (resp[valid], md.shown[valid]), 1.0)
    n = md.n_tasks
    best = np.zeros((r, k))
    np.add.at(best, (md.task_resp, md.shown[np.arange(n), md.best]), 1.0)
    worst = np.zeros((r, k))
    np.add.at(worst, (md.task_resp, md.shown[np.arange(n), md.worst]), 1.0)
    return shown, best, worst


def _bootstrap_sums(
    rng: np.random.Generator, w: np.ndarray, tables: tuple, n_boot: int, chunk: int = 50
):
    """Weighted column sums of each respondent × item table over ``n_boot`` resamples of the
    respondents with replacement. Drawn as indices and counted with ``bincount`` in chunks:
    a multinomial over 50,000 respondents per replicate took seconds, this takes tenths."""
    n = len(w)
    stacked = np.hstack(tables)  # one product per chunk for all tables
    sums = np.empty((n_boot, stacked.shape[1]))
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(c, n)) + (np.arange(c) * n)[:, None]
        times = np.bincount(idx.ravel(), minlength=c * n).reshape(c, n) * w
        sums[start : start + c] = times @ stacked
    return np.split(sums, np.cumsum([t.shape[1] for t in tables])[:-1], axis=1)


def _counts_utility(shown: np.ndarray, best: np.ndarray, worst: np.ndarray) -> np.ndarray:
    """u = log((shown + best − worst) / (shown − best + worst)) / 2, zero-centred.

    An item always picked best (or always worst) has an infinite log ratio; half a pick is
    added to both sides of that item's ratio only, so the figure stays finite.
    """
    num = shown + best - worst
    den = shown - best + worst
    fix = (num <= 0) | (den <= 0)
    num = np.where(fix, num + 0.5, num)
    den = np.where(fix, den + 0.5, den)
    u = 0.5 * np.log(num / den)
    return u - u.mean(axis=-1, keepdims=True)


def counts_scores(
    md: MaxDiffData, *, rng: np.random.Generator | None = None, n_boot: int = 500
) -> pd.DataFrame:
    """Weighted best − worst counts per segment and ``all``, with the contract's count utility,
    probability-scaled shares and a respondent bootstrap 95% interval for the share.

    Returns ``segment, item, utility, share, lower, upper, shown, best, worst, bw_score,
    n_respondents`` (``bw_score`` = (best − worst) / shown).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    s_r, b_r, w_r = _respondent_counts(md)
    frames = []
    for name, mask in _segment_rows(md):
        w = md.weight[mask]
        S, B, W = (w @ x[mask] for x in (s_r, b_r, w_r))
        u = _counts_utility(S, B, W)
        share = probability_shares(u, md.k)
        # bootstrap: resample respondents (multinomial counts), keep their weights
        n = int(mask.sum())
        ub = _counts_utility(*_bootstrap_sums(rng, w, (s_r[mask], b_r[mask], w_r[mask]), n_boot))
        sb = probability_shares(ub, md.k)
        frames.append(
            pd.DataFrame(
                {
                    "segment": name,
                    "item": md.items,
                    "utility": u,
                    "share": share,
                    "lower": np.quantile(sb, 0.025, axis=0),
                    "upper": np.quantile(sb, 0.975, axis=0),
                    "shown": S,
                    "best": B,
                    "worst": W,
                    "bw_score": np.where(S > 0, (B - W) / np.where(S > 0, S, 1), np.nan),
                    "n_respondents": n,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
