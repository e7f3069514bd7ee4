"""Respondent fit: root likelihood per respondent and the random-answering flag."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wtp.maxdiff.data import MaxDiffData, _bw_choices
from wtp.schema import ALL

# --------------------------------------------------------------------------------------------
# Respondent fit


def _task_sets(
    md: MaxDiffData, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Task sets of ``n`` real respondents drawn at random: (picked respondent, task rows,
    new respondent index of every task row)."""
    pick = rng.integers(md.n_respondents, size=n)
    order = np.argsort(md.task_resp, kind="stable")
    starts = np.searchsorted(md.task_resp[order], np.arange(md.n_respondents))
    ends = np.searchsorted(md.task_resp[order], np.arange(md.n_respondents), side="right")
    tasks = np.concatenate([order[starts[p] : ends[p]] for p in pick])
    resp = np.repeat(np.arange(n), ends[pick] - starts[pick])
    return pick, tasks, resp


def _simulated(
    md: MaxDiffData,
    resp: np.ndarray,
    shown: np.ndarray,
    best: np.ndarray,
    worst: np.ndarray,
    prefix: str,
) -> MaxDiffData:
    n = int(resp.max()) + 1
    return MaxDiffData(
        items=md.items,
        respondent_ids=[f"{prefix}{i}" for i in range(n)],
        segments=[ALL],
        shown=shown,
        best=best,
        worst=worst,
        task_resp=resp,
        segment=np.zeros(n, dtype=np.int64),
        weight=np.ones(n),
        k=md.k,
    )


def _random_respondents(md: MaxDiffData, n: int, rng: np.random.Generator) -> MaxDiffData:
    """Respondents who pick best and worst at random, on task sets drawn from the real ones."""
    _, tasks, resp = _task_sets(md, n, rng)
    shown = md.shown[tasks]
    size = (shown >= 0).sum(axis=1)
    best = (rng.random(len(tasks)) * size).astype(np.int64)
    worst = (best + 1 + (rng.random(len(tasks)) * (size - 1)).astype(np.int64)) % size
    return _simulated(md, resp, shown, best, worst, "random")


def _honest_respondents(
    md: MaxDiffData, utilities: np.ndarray, rng: np.random.Generator
) -> MaxDiffData:
    """Respondents with item utilities ``utilities`` (n × K) who answer by the sequential
    best-worst model (best = argmax u + Gumbel, worst = argmin among the rest), on task sets
    drawn from the real ones."""
    n = len(utilities)
    _, tasks, resp = _task_sets(md, n, rng)
    shown = md.shown[tasks]
    u = np.where(shown >= 0, utilities[resp[:, None], np.maximum(shown, 0)], -np.inf)
    best = np.argmax(u + rng.gumbel(size=u.shape), axis=1)
    w = np.where(shown >= 0, -u + rng.gumbel(size=u.shape), -np.inf)
    w[np.arange(len(w)), best] = -np.inf
    worst = np.argmax(w, axis=1)
    return _simulated(md, resp, shown, best, worst, "honest")


def _loglik_items(md: MaxDiffData, U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-respondent log-likelihood of the best-worst choices at item utilities U (R × K),
    the equal-utility (chance) log-likelihood, and the number of choices."""
    ch = _bw_choices(md)
    avail = ch.items >= 0
    V = np.where(
        avail, ch.sign[:, None] * U[ch.resp[:, None], np.where(avail, ch.items, 0)], -np.inf
    )
    m = V.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(V - m).sum(axis=1))
    ll = V[np.arange(len(V)), ch.chosen] - lse
    R = md.n_respondents
    ll_r = np.bincount(ch.resp, weights=ll, minlength=R)
    ll0 = np.bincount(ch.resp, weights=-np.log(avail.sum(axis=1)), minlength=R)
    n = np.bincount(ch.resp, minlength=R)
    return ll_r, ll0, n


def _fit_frame(
    md: MaxDiffData, U: np.ndarray, threshold: float, judged: np.ndarray | None = None
) -> pd.DataFrame:
    """Fit per respondent at utilities U; ``judged`` is the RLH compared with the random
    threshold when it is computed differently from the reported one (hierarchical Bayes)."""
    ll, ll0, n = _loglik_items(md, U)
    rlh = np.exp(ll / n)
    judged = rlh if judged is None else judged
    same, straight = _same_position(md)
    return pd.DataFrame(
        {
            "respondent_id": md.respondent_ids,
            "segment": md.respondent_segments(),
            "n_choices": n,
            "loglik": ll,
            "rlh": rlh,
            "chance_rlh": np.exp(ll0 / n),
            "pct_certainty": 1.0 - ll / ll0,
            "random_like": judged <= threshold,
            "same_position_best": same,
            "straight_lining": straight,
        }
    )


STRAIGHT_LINE_SHARE = 0.8  # best pick in the same screen position in this share of tasks
STRAIGHT_LINE_MIN_TASKS = 5


def _same_position(md: MaxDiffData) -> tuple[np.ndarray, np.ndarray]:
    """Share of a respondent's tasks whose best pick sits in their most used screen position,
    and the straight-lining flag (share ≥ 0.8 over at least 5 tasks). Designs rotate items
    over positions, so an honest respondent picks by position this often only by chance
    (about 4·(1/4)^8 over 10 tasks of 4)."""
    R, kmax = md.n_respondents, md.shown.shape[1]
    counts = np.bincount(md.task_resp * kmax + md.best, minlength=R * kmax).reshape(R, kmax)
    tasks = counts.sum(axis=1)
    share = counts.max(axis=1) / np.maximum(tasks, 1)
    return share, (share >= STRAIGHT_LINE_SHARE) & (tasks >= STRAIGHT_LINE_MIN_TASKS)
