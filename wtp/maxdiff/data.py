"""MaxDiff answers as the index arrays the estimators need, and probability-scaled shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.schema import ALL, first_seen

# --------------------------------------------------------------------------------------------
# Data preparation


@dataclass(frozen=True)
class MaxDiffData:
    """Answers as index arrays (one row per task, padded to the largest task).

    ================= ====================== =========================================
    array             shape                  content
    ================= ====================== =========================================
    ``shown``         n_tasks × max_k        item index shown, −1 on padding
    ``best``          n_tasks                position (column of ``shown``) picked best
    ``worst``         n_tasks                position picked worst
    ``task_resp``     n_tasks                respondent index
    ``segment``       n_respondents          segment index into ``segments``
    ``weight``        n_respondents          respondent weight (1 when absent)
    ================= ====================== =========================================
    """

    items: list[str]
    respondent_ids: list[str]
    segments: list[str]
    shown: np.ndarray
    best: np.ndarray
    worst: np.ndarray
    task_resp: np.ndarray
    segment: np.ndarray
    weight: np.ndarray
    k: int
    source: str = "maxdiff.csv"

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_respondents(self) -> int:
        return len(self.respondent_ids)

    @property
    def n_tasks(self) -> int:
        return int(self.shown.shape[0])

    def task_sizes(self) -> np.ndarray:
        return (self.shown >= 0).sum(axis=1)

    def respondent_segments(self) -> np.ndarray:
        """Segment name of each respondent."""
        return np.asarray(self.segments, dtype=object)[self.segment]


def _natural_key(code: str):
    return (0, int(code), code) if code.isdigit() else (1, 0, code)


def prepare_maxdiff_data(
    answers: pd.DataFrame,
    *,
    items: list[str] | None = None,
    k: int | None = None,
) -> MaxDiffData:
    """Turn the validated long layout into the arrays the estimators need.

    Parameters
    ----------
    answers : DataFrame
        ``respondent_id, task, item, best, worst`` (one row per item shown) with optional
        ``position``, ``segment`` (default ``all``) and ``weight`` (default 1), as returned by
        :func:`wtp.io.validate_maxdiff` and :func:`wtp.io.attach_segments`.
    items : list of str, optional
        Item codes in report order; default: numeric codes in numeric order, others sorted.
    k : int, optional
        Items per task for the share formula; default the most common task size.

    Raises
    ------
    InputError
        Naming the task that broke (``Task ('r7', 3) has 2 best picks; exactly one is required``).
    """
    source = str(answers.attrs.get("source", "maxdiff.csv"))
    need = ["respondent_id", "task", "item", "best", "worst"]
    missing = [c for c in need if c not in answers.columns]
    if missing:
        raise InputError(
            [Problem(source, None, c, f"a column named '{c}'", "no such column") for c in missing]
        )
    df = answers.copy()
    df["respondent_id"] = df["respondent_id"].astype(str)
    df["task"] = df["task"].astype(str)
    df["item"] = df["item"].astype(str)
    df["best"] = pd.to_numeric(df["best"]).astype(float)
    df["worst"] = pd.to_numeric(df["worst"]).astype(float)
    if "segment" not in df.columns:
        df["segment"] = ALL
    df["segment"] = df["segment"].astype(str)
    if "weight" not in df.columns:
        df["weight"] = 1.0
    df["weight"] = pd.to_numeric(df["weight"]).astype(float)
    if "position" not in df.columns:
        df["position"] = df.groupby(["respondent_id", "task"], sort=False).cumcount() + 1
    row = df["row"] if "row" in df.columns else pd.Series(np.arange(len(df)) + 2, index=df.index)
    df["_row"] = row.to_numpy()

    # factorize, not dict.fromkeys/map: iterating Arrow strings costs seconds per million rows
    item_codes, found_index = pd.factorize(df["item"])
    found = [str(c) for c in found_index]
    if items is None:
        items = sorted(found, key=_natural_key)
    else:
        items = [str(c) for c in items]
        unknown = sorted(set(found) - set(items))
        if unknown:
            first = df.loc[df["item"] == unknown[0], "_row"].iloc[0]
            raise InputError(
                Problem(
                    source,
                    int(first),
                    "item",
                    "an item listed for the study (" + ", ".join(items[:10]) + ")",
                    unknown[0],
                )
            )
    item_index = {c: i for i, c in enumerate(items)}

    df["_r"], ids = pd.factorize(df["respondent_id"])
    ids = list(ids)
    df["_item"] = np.array([item_index[c] for c in found], dtype=np.int64)[item_codes]
    # tasks in order of appearance within respondent, items in screen order
    df["_t"] = df.groupby(["respondent_id", "task"], sort=False).ngroup()
    df = df.sort_values(["_r", "_t", "position"], kind="stable")
    g = df.groupby("_t", sort=True)
    problems = []
    nb, nw = g["best"].sum(), g["worst"].sum()
    dup = df.duplicated(["_t", "item"])
    both = (df["best"] == 1) & (df["worst"] == 1)
    size = g.size()
    first = g.first()
    for t in np.flatnonzero((nb.to_numpy() != 1) | (nw.to_numpy() != 1) | (size.to_numpy() < 2)):
        f = first.iloc[t]
        key = f"Task ({f['respondent_id']!r}, {f['task']!r})"
        if size.iloc[t] < 2:
            problems.append(
                Problem(
                    source,
                    int(f["_row"]),
                    "item",
                    f"{key}: at least two items shown",
                    int(size.iloc[t]),
                )
            )
        if nb.iloc[t] != 1:
            problems.append(
                Problem(
                    source,
                    int(f["_row"]),
                    "best",
                    f"{key}: exactly one best pick",
                    f"{int(nb.iloc[t])} best picks",
                )
            )
        if nw.iloc[t] != 1:
            problems.append(
                Problem(
                    source,
                    int(f["_row"]),
                    "worst",
                    f"{key}: exactly one worst pick",
                    f"{int(nw.iloc[t])} worst picks",
                )
            )
        if len(problems) > 50:
            break
    for r in df.loc[dup | both, "_row"].head(20):
        problems.append(
            Problem(
                source, int(r), "item", "each item once per task, and best different from worst"
            )
        )
    if problems:
        raise InputError(problems)

    n_tasks = int(df["_t"].max()) + 1
    sizes = size.to_numpy()
    max_k = int(sizes.max())
    col = df.groupby("_t", sort=False).cumcount().to_numpy()
    t_idx = df["_t"].to_numpy()
    shown = np.full((n_tasks, max_k), -1, dtype=np.int64)
    shown[t_idx, col] = df["_item"].to_numpy()
    best = np.zeros(n_tasks, dtype=np.int64)
    worst = np.zeros(n_tasks, dtype=np.int64)
    bmask = df["best"].to_numpy() == 1
    wmask = df["worst"].to_numpy() == 1
    best[t_idx[bmask]] = col[bmask]
    worst[t_idx[wmask]] = col[wmask]
    task_resp = np.zeros(n_tasks, dtype=np.int64)
    task_resp[t_idx] = df["_r"].to_numpy()

    per_resp = df.groupby("_r", sort=True).agg(
        segment=("segment", "first"), weight=("weight", "first")
    )
    # the study order: the loader puts rows in it, so first appearance is that order
    seg_names = first_seen(per_resp["segment"])
    if k is None:
        k = int(pd.Series(sizes).mode().max())
    return MaxDiffData(
        items=items,
        respondent_ids=ids,
        segments=seg_names,
        shown=shown,
        best=best,
        worst=worst,
        task_resp=task_resp,
        segment=per_resp["segment"].map({s: i for i, s in enumerate(seg_names)}).to_numpy(),
        weight=per_resp["weight"].to_numpy(dtype=float),
        k=int(k),
        source=source,
    )


@dataclass(frozen=True)
class _BWChoices:
    """The sequential best-worst model as choices among items: best among those shown
    (sign +1), then worst among the rest (sign −1, utilities negated)."""

    items: np.ndarray  # n_choices × max_k item index, −1 when not available
    sign: np.ndarray  # n_choices (+1 best, −1 worst)
    chosen: np.ndarray  # n_choices, column of ``items``
    resp: np.ndarray  # n_choices respondent index


def _bw_choices(md: MaxDiffData) -> _BWChoices:
    n, kmax = md.shown.shape
    worst_items = md.shown.copy()
    worst_items[np.arange(n), md.best] = -1
    # a task of two items has no informative worst pick: the worst is what is left
    informative = (worst_items >= 0).sum(axis=1) >= 2
    items = np.concatenate([md.shown, worst_items[informative]])
    sign = np.concatenate([np.ones(n), -np.ones(int(informative.sum()))])
    chosen = np.concatenate([md.best, md.worst[informative]])
    resp = np.concatenate([md.task_resp, md.task_resp[informative]])
    order = np.argsort(resp, kind="stable")
    return _BWChoices(items[order], sign[order], chosen[order], resp[order])


# --------------------------------------------------------------------------------------------
# Shares


def probability_shares(utilities: np.ndarray, k: int) -> np.ndarray:
    """Probability-scaled shares (0–100) along the last axis.

    Each item's utility (zero-centred first) becomes ``exp(u) / (exp(u) + k − 1)``, the chance
    it is picked best against ``k − 1`` items of average utility, rescaled to sum to 100.
    """
    u = np.asarray(utilities, dtype=float)
    u = u - u.mean(axis=-1, keepdims=True)
    # exp(u)/(exp(u)+k-1) = 1/(1+(k-1)exp(-u)), stable for large |u|
    p = 1.0 / (1.0 + (k - 1) * np.exp(-u))
    return 100.0 * p / p.sum(axis=-1, keepdims=True)


def _segment_rows(md: MaxDiffData) -> list[tuple[str, np.ndarray]]:
    """(segment name, respondent mask) for each segment and then 'all'."""
    out = [(s, md.segment == i) for i, s in enumerate(md.segments) if s != ALL]
    out.append((ALL, np.ones(md.n_respondents, dtype=bool)))
    return out
