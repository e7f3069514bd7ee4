"""TURF (total unduplicated reach and frequency) from individual MaxDiff utilities.

A respondent is *reached* by an item when the item is one they care about:

* ``reach="above_mean"``: the item's utility is above the respondent's mean utility;
* ``reach="top_n"``: the item is among the respondent's ``top_n`` items (ties broken by the
  item order given).

A portfolio's reach is the (weighted) share of respondents reached by at least one of its
items; its frequency the (weighted) mean number of its items that reach a respondent.
Portfolios of size ``k`` are enumerated exactly while ``C(n, k) <= max_exact``; beyond that a
greedy search adds, at each step, the item with the largest gain in reach (ties: larger gain
in frequency, then item order) and reports that single portfolio.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem

__all__ = ["turf", "TurfResult", "reach_matrix", "REACH_RULES"]

REACH_RULES = ("above_mean", "top_n")


@dataclass(frozen=True)
class TurfResult:
    """Portfolios ranked by reach, then frequency (best first).

    Attributes
    ----------
    portfolios : DataFrame
        ``rank, items, size, reach, frequency`` (``items`` joined with ``" + "``; reach 0–1).
    item_reach : DataFrame
        ``item, reach, frequency`` of each single item.
    ladder : DataFrame
        Greedy order over the whole pool: ``step, item, reach, added_reach, frequency`` — how
        reach grows as items are added (useful to choose a portfolio size).
    best : tuple of str
        The best portfolio's items.
    """

    portfolios: pd.DataFrame
    item_reach: pd.DataFrame
    ladder: pd.DataFrame
    best: tuple[str, ...]
    k: int
    reach_rule: str
    top_n: int | None
    method: str
    n_respondents: int
    n_evaluated: int
    settings: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return self.portfolios.copy()

    def summary(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` best portfolios."""
        return self.portfolios.head(n).reset_index(drop=True)


def reach_matrix(utilities: np.ndarray, reach: str = "above_mean", top_n: int = 3) -> np.ndarray:
    """Boolean respondents × items matrix: does the item reach the respondent?"""
    U = np.asarray(utilities, dtype=float)
    if reach == "above_mean":
        return U > U.mean(axis=1, keepdims=True)
    if reach == "top_n":
        n = min(max(int(top_n), 1), U.shape[1])
        # stable argsort on −U keeps the given item order among ties
        order = np.argsort(-U, axis=1, kind="stable")[:, :n]
        out = np.zeros(U.shape, dtype=bool)
        np.put_along_axis(out, order, True, axis=1)
        return out
    raise InputError(Problem("turf", None, "reach", "one of above_mean, top_n", reach))


def _wide(
    individual_utilities: pd.DataFrame, items: list[str] | None
) -> tuple[pd.DataFrame, list[str]]:
    need = {"respondent_id", "item", "utility"}
    if not need <= set(individual_utilities.columns):
        raise InputError(
            Problem(
                "individual utilities",
                None,
                ", ".join(sorted(need - set(individual_utilities.columns))),
                "columns respondent_id, item, utility",
            )
        )
    frame = individual_utilities.assign(item=individual_utilities["item"].astype(str))
    wide = frame.pivot_table(
        index="respondent_id", columns="item", values="utility", aggfunc="mean", sort=False
    )
    if items is None:
        pool = list(dict.fromkeys(frame["item"]))
    else:
        pool = [str(i) for i in items]
        unknown = [i for i in pool if i not in wide.columns]
        if unknown:
            raise InputError(
                Problem("turf", None, "items", "items present in the utilities", unknown[0])
            )
    return wide, pool


def _weights(weights, index: pd.Index) -> np.ndarray:
    if weights is None:
        return np.ones(len(index))
    if isinstance(weights, dict):
        weights = pd.Series(weights)
    if isinstance(weights, pd.Series):
        w = weights.reindex(index).to_numpy(dtype=float)
    else:
        w = np.asarray(weights, dtype=float)
    if w.shape != (len(index),) or not np.all(np.isfinite(w)) or (w <= 0).any():
        raise InputError(
            Problem(
                "turf", None, "weights", "one positive weight per respondent", f"{len(w)} values"
            )
        )
    return w


def _masks(B: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Respondents as bit masks over items, identical masks merged with summed weights."""
    bits = (B.astype(np.uint64) << np.arange(B.shape[1], dtype=np.uint64)).sum(
        axis=1, dtype=np.uint64
    )
    uniq, inverse = np.unique(bits, return_inverse=True)
    return uniq, np.bincount(inverse.ravel(), weights=w, minlength=len(uniq))


def _evaluate(
    combos: np.ndarray, masks: np.ndarray, mw: np.ndarray, total: float, chunk: int = 4096
):
    """Reach and frequency of portfolios given as bit masks."""
    reach = np.empty(len(combos))
    freq = np.empty(len(combos))
    for s in range(0, len(combos), chunk):
        hit = combos[s : s + chunk, None] & masks[None, :]
        reach[s : s + chunk] = ((hit != 0) @ mw) / total
        freq[s : s + chunk] = (np.bitwise_count(hit).astype(float) @ mw) / total
    return reach, freq


def _greedy(B: np.ndarray, w: np.ndarray, steps: int) -> list[int]:
    """Indexes added one at a time: largest reach gain, then frequency gain, then order."""
    reached = np.zeros(B.shape[0], dtype=bool)
    chosen: list[int] = []
    for _ in range(steps):
        gain = (B & ~reached[:, None]).T.astype(float) @ w
        freq = B.T.astype(float) @ w
        gain[chosen] = -np.inf
        best = max(range(B.shape[1]), key=lambda j: (gain[j], freq[j], -j))
        chosen.append(best)
        reached |= B[:, best]
    return chosen


def turf(
    individual_utilities: pd.DataFrame,
    k: int,
    *,
    reach: str = "above_mean",
    top_n: int = 3,
    weights=None,
    items: list[str] | None = None,
    max_exact: int = 250_000,
    keep: int = 50,
) -> TurfResult:
    """Reach and frequency of every portfolio of ``k`` items (exact while feasible).

    Parameters
    ----------
    individual_utilities : DataFrame
        ``respondent_id, item, utility`` (as :attr:`MaxDiffResult.individual_utilities`).
    k : int
        Portfolio size.
    reach : {"above_mean", "top_n"}
        What counts as reaching a respondent (see the module docstring).
    top_n : int, default 3
        For ``reach="top_n"``.
    weights : Series, dict or array, optional
        Respondent weights (Series/dict keyed by respondent_id, or an array in the order of
        first appearance).
    items : list of str, optional
        The candidate pool (default: every item).
    max_exact : int, default 250000
        Largest number of portfolios enumerated; beyond it the greedy rule is used.
    keep : int, default 50
        Portfolios kept in the result (best first).
    """
    wide, pool = _wide(individual_utilities, items)
    if reach not in REACH_RULES:
        raise InputError(Problem("turf", None, "reach", "one of above_mean, top_n", reach))
    if not 1 <= k <= len(pool):
        raise InputError(
            Problem("turf", None, "k", f"a portfolio size between 1 and {len(pool)}", k)
        )
    if len(pool) > 63:
        raise InputError(Problem("turf", None, "items", "at most 63 candidate items", len(pool)))
    # reach is judged against all items the respondent rated, then restricted to the pool
    B_all = reach_matrix(wide.to_numpy(), reach, top_n)
    cols = [list(wide.columns).index(i) for i in pool]
    B = B_all[:, cols]
    w = _weights(weights, wide.index)
    total = float(w.sum())
    masks, mw = _masks(B, w)
    single = np.left_shift(np.uint64(1), np.arange(len(pool), dtype=np.uint64))
    r1, f1 = _evaluate(single, masks, mw, total)
    item_reach = pd.DataFrame({"item": pool, "reach": r1, "frequency": f1}).sort_values(
        ["reach", "frequency"], ascending=False, kind="stable"
    )
    n_combos = math.comb(len(pool), k)
    if n_combos <= max_exact:
        method = "exact"
        idx = np.array(list(itertools.combinations(range(len(pool)), k)), dtype=np.int64).reshape(
            -1, k
        )
        combos = np.bitwise_or.reduce(single[idx], axis=1)
        rch, frq = _evaluate(combos, masks, mw, total)
        order = np.lexsort((np.arange(len(combos)), -frq, -rch))[:keep]
        sets = [tuple(pool[j] for j in idx[o]) for o in order]
        rch, frq = rch[order], frq[order]
        n_eval = n_combos
    else:
        method = "greedy"
        path = _greedy(B, w, k)
        combo = np.bitwise_or.reduce(single[path])
        rch, frq = _evaluate(np.array([combo]), masks, mw, total)
        sets = [tuple(pool[j] for j in path)]
        n_eval = k * len(pool)
    portfolios = pd.DataFrame(
        {
            "rank": np.arange(1, len(sets) + 1),
            "items": [" + ".join(s) for s in sets],
            "size": k,
            "reach": rch,
            "frequency": frq,
        }
    )
    path = _greedy(B, w, len(pool))
    ladder_masks = np.bitwise_or.accumulate(single[path])
    lr, lf = _evaluate(ladder_masks, masks, mw, total)
    ladder = pd.DataFrame(
        {
            "step": np.arange(1, len(pool) + 1),
            "item": [pool[j] for j in path],
            "reach": lr,
            "added_reach": np.diff(lr, prepend=0.0),
            "frequency": lf,
        }
    )
    return TurfResult(
        portfolios=portfolios,
        item_reach=item_reach.reset_index(drop=True),
        ladder=ladder,
        best=sets[0],
        k=k,
        reach_rule=reach,
        top_n=top_n if reach == "top_n" else None,
        method=method,
        n_respondents=len(wide),
        n_evaluated=n_eval,
        settings={"max_exact": max_exact, "keep": keep, "pool": pool},
    )
