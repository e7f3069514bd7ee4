"""MaxDiff (best-worst scaling, case 1): designs, counts, aggregate logit, hierarchical Bayes.

The module follows the data one way:

1. :func:`design_maxdiff` makes a balanced design a survey tool can field and
   :func:`design_balance` says how balanced it is.
2. :func:`prepare_maxdiff_data` turns validated answers (the long layout of
   :func:`wtp.io.validate_maxdiff` with ``segment`` and ``weight`` from
   :func:`wtp.io.attach_segments`) into index arrays.
3. :func:`estimate_maxdiff` estimates item utilities by counts, aggregate sequential
   best-worst logit or hierarchical Bayes (:mod:`wtp.hb`) and returns a :class:`MaxDiffResult`
   with probability-scaled shares per segment, individual utilities and fit diagnostics.

Heavy libraries (PyMC, ArviZ) are imported only by the hierarchical Bayes path.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.schema import ALL, first_seen

__all__ = [
    "design_maxdiff",
    "design_balance",
    "DesignBalance",
    "d_efficiency",
    "MaxDiffData",
    "prepare_maxdiff_data",
    "probability_shares",
    "counts_scores",
    "fit_logit",
    "LogitFit",
    "estimate_maxdiff",
    "MaxDiffResult",
    "METHODS",
]

METHODS = ("hb", "logit", "counts")


# --------------------------------------------------------------------------------------------
# Design


def _default_codes(n_items: int) -> list[str]:
    return [str(i) for i in range(1, n_items + 1)]


def _check_design_args(
    n_items: int, per_task: int, n_tasks: int, n_versions: int, items
) -> list[str]:
    problems = []
    if n_items < 3:
        problems.append(Problem("design", None, "items", "at least 3 items", n_items))
    if per_task < 2 or per_task >= max(n_items, 3):
        problems.append(
            Problem(
                "design",
                None,
                "per_task",
                f"between 2 and {max(n_items - 1, 2)} items per task",
                per_task,
            )
        )
    if n_tasks < 1:
        problems.append(Problem("design", None, "tasks", "at least 1 task", n_tasks))
    if n_versions < 1:
        problems.append(Problem("design", None, "versions", "at least 1 version", n_versions))
    codes = _default_codes(n_items) if items is None else [str(x) for x in items]
    if len(codes) != n_items:
        problems.append(Problem("design", None, "items", f"{n_items} item codes", len(codes)))
    elif len(set(codes)) != len(codes):
        problems.append(Problem("design", None, "items", "distinct item codes", codes))
    if problems:
        raise InputError(problems)
    return codes


def _version_frequencies(
    n_items: int, slots: int, pooled: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """How often each item appears in one version: equal, ±1, the extras going to the items
    seen least so far across versions (so the pooled design is balanced too)."""
    base, extra = divmod(slots, n_items)
    freq = np.full(n_items, base)
    if extra:
        # random tie-break among equally seen items, lowest pooled count first
        order = np.lexsort((rng.random(n_items), pooled))
        freq[order[:extra]] += 1
    return freq


def _initial_tasks(
    freq: np.ndarray, per_task: int, n_tasks: int, pair_w: np.ndarray, rng
) -> np.ndarray:
    """Greedy fill: each task takes the items with most appearances left, preferring items
    that pair least with those already in the task."""
    remaining = freq.astype(float).copy()
    tasks = np.empty((n_tasks, per_task), dtype=int)
    for t in range(n_tasks):
        chosen: list[int] = []
        for _ in range(per_task):
            score = remaining * 1000.0 + rng.random(len(freq))
            if chosen:
                score -= pair_w[chosen].sum(axis=0)
                score[chosen] = -np.inf
            score[remaining <= 0] = -np.inf
            if not np.isfinite(score).any():
                # every item with appearances left is already in the task: take any other
                score = rng.random(len(freq))
                score[chosen] = -np.inf
            j = int(np.argmax(score))
            chosen.append(j)
            remaining[j] -= 1
        tasks[t] = chosen
    return tasks


def _pair_matrix(tasks: np.ndarray, n_items: int) -> np.ndarray:
    m = np.zeros((n_items, n_items))
    per_task = tasks.shape[1]
    for a in range(per_task):
        for b in range(per_task):
            if a != b:
                np.add.at(m, (tasks[:, a], tasks[:, b]), 1.0)
    return m


def _improve_pairs(
    tasks: np.ndarray, pooled_pairs: np.ndarray, n_items: int, rng, iterations: int
) -> np.ndarray:
    """Swap items between tasks (keeping each item's frequency) while the sum of squared pair
    counts falls, within the version and pooled with earlier versions."""
    tasks = tasks.copy()
    n_tasks, per_task = tasks.shape
    if n_tasks < 2:
        return tasks
    own = _pair_matrix(tasks, n_items)
    # the pooled term keeps later versions from repeating the pairs earlier ones favoured
    total = pooled_pairs + own

    def delta_for(task_items, out_item, in_item):
        others = task_items[task_items != out_item]
        d = 0.0
        # removing out_item from pairs with others: (n-1)^2 - n^2 = -2n + 1
        d += (-2.0 * own[out_item, others] + 1.0).sum() + (
            -2.0 * total[out_item, others] + 1.0
        ).sum()
        d += (2.0 * own[in_item, others] + 1.0).sum() + (2.0 * total[in_item, others] + 1.0).sum()
        return d, others

    # simulated annealing: worse swaps are sometimes accepted early on so the search can leave
    # local optima (a plain descent rarely finds a BIBD when one exists)
    objective = float((own**2).sum() + (total**2).sum())
    best_obj, best_tasks = objective, tasks.copy()
    temperatures = np.geomspace(4.0, 0.02, iterations)
    for temp in temperatures:
        a, b = rng.choice(n_tasks, size=2, replace=False)
        i, j = rng.integers(per_task), rng.integers(per_task)
        x, y = tasks[a, i], tasks[b, j]
        if x == y or y in tasks[a] or x in tasks[b]:
            continue
        da, others_a = delta_for(tasks[a], x, y)
        # apply a's change before computing b's so pairs shared by both tasks are counted right
        for m in (own, total):
            m[x, others_a] -= 1
            m[others_a, x] -= 1
            m[y, others_a] += 1
            m[others_a, y] += 1
        db, others_b = delta_for(tasks[b], y, x)
        # each unordered pair sits twice in the symmetric matrices
        d = 2.0 * (da + db)
        if d <= 0 or rng.random() < math.exp(-d / temp):
            for m in (own, total):
                m[y, others_b] -= 1
                m[others_b, y] -= 1
                m[x, others_b] += 1
                m[others_b, x] += 1
            tasks[a, i], tasks[b, j] = y, x
            objective += d
            if objective < best_obj - 1e-9:
                best_obj, best_tasks = objective, tasks.copy()
        else:
            for m in (own, total):
                m[y, others_a] -= 1
                m[others_a, y] -= 1
                m[x, others_a] += 1
                m[others_a, x] += 1
    return best_tasks


def _assign_positions(
    tasks: np.ndarray, pooled_pos: np.ndarray, rng, passes: int = 10
) -> np.ndarray:
    """Order the items of each task so each item visits each position about equally often,
    within the version and pooled with earlier versions.

    Coordinate descent: take one task out, give it the optimal order for the rest (an
    assignment problem on the increase in squared position counts), put it back; repeat.
    """
    from scipy.optimize import linear_sum_assignment

    n_tasks, per_task = tasks.shape
    out = tasks.copy()
    own = np.zeros_like(pooled_pos)
    for t in range(n_tasks):
        np.add.at(own, (out[t], np.arange(per_task)), 1)
    for _ in range(passes):
        changed = False
        for t in rng.permutation(n_tasks):
            items = out[t].copy()
            own[items, np.arange(per_task)] -= 1
            # tiny noise breaks ties at random instead of always by item order
            cost = 2 * own[items] + 2 * pooled_pos[items] + rng.random((per_task, per_task)) * 1e-3
            rows, cols = linear_sum_assignment(cost)
            new = np.empty_like(items)
            new[cols] = items[rows]
            changed |= bool((new != out[t]).any())
            out[t] = new
            own[new, np.arange(per_task)] += 1
        if not changed:
            break
    pooled_pos += own
    return out


def design_maxdiff(
    n_items: int,
    per_task: int,
    n_tasks: int,
    n_versions: int = 1,
    *,
    items: list[str] | None = None,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """A balanced MaxDiff design a survey tool can field.

    Within each version every item appears equally often (±1 when the numbers do not divide),
    no item twice in a task, pairs of items appear together as evenly as a swap search can make
    them (within the version and pooled over versions), and each item visits each position about
    equally often.

    Parameters
    ----------
    n_items : int
        Number of items (K ≥ 3).
    per_task : int
        Items shown per task (2 ≤ k < K).
    n_tasks : int
        Tasks per respondent.
    n_versions : int, default 1
        Number of versions (blocks); respondents are assigned to versions in rotation.
    items : list of str, optional
        Item codes; default ``"1" .. "K"``.
    rng : numpy.random.Generator, optional
        Source of randomness; default ``numpy.random.default_rng(0)``.

    Returns
    -------
    pandas.DataFrame
        One row per item shown:

        ======== ===================================
        version  1 .. n_versions
        task     1 .. n_tasks (within the version)
        position 1 .. per_task (screen order)
        item     item code (str)
        ======== ===================================
    """
    codes = _check_design_args(n_items, per_task, n_tasks, n_versions, items)
    rng = np.random.default_rng(0) if rng is None else rng
    slots = n_tasks * per_task
    pooled_items = np.zeros(n_items)
    pooled_pairs = np.zeros((n_items, n_items))
    pos_counts = np.zeros((n_items, per_task))
    frames = []
    iterations = max(5000, 80 * slots)
    for v in range(n_versions):
        freq = _version_frequencies(n_items, slots, pooled_items, rng)
        tasks = _initial_tasks(freq, per_task, n_tasks, pooled_pairs, rng)
        tasks = _improve_pairs(tasks, pooled_pairs, n_items, rng, iterations)
        tasks = tasks[rng.permutation(n_tasks)]
        tasks = _assign_positions(tasks, pos_counts, rng)
        pooled_items += np.bincount(tasks.ravel(), minlength=n_items)
        pooled_pairs += _pair_matrix(tasks, n_items)
        frames.append(
            pd.DataFrame(
                {
                    "version": v + 1,
                    "task": np.repeat(np.arange(1, n_tasks + 1), per_task),
                    "position": np.tile(np.arange(1, per_task + 1), n_tasks),
                    "item": np.asarray(codes, dtype=object)[tasks.ravel()],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------
# Design balance


def _contrast_basis(n_items: int) -> np.ndarray:
    """An orthonormal K × (K−1) basis of zero-sum item contrasts."""
    # QR of a centred identity gives orthonormal columns orthogonal to the ones vector
    centred = np.eye(n_items) - 1.0 / n_items
    q, _ = np.linalg.qr(centred[:, : n_items - 1])
    return q


def _bw_information(task_items: list[np.ndarray], n_items: int) -> np.ndarray:
    """Fisher information of the sequential best-worst logit at equal utilities, in the item
    dummy space (K × K), summed over tasks."""
    info = np.zeros((n_items, n_items))
    for items in task_items:
        k = len(items)
        # best among k: covariance of a uniform draw over the set's dummies
        sub = np.eye(k) / k - np.full((k, k), 1.0 / k**2)
        block = sub.copy()
        if k > 2:
            # worst among the k-1 left, averaged over which item was best
            w = np.zeros((k, k))
            for b in range(k):
                rest = np.delete(np.arange(k), b)
                m = len(rest)
                w[np.ix_(rest, rest)] += np.eye(m) / m - np.full((m, m), 1.0 / m**2)
            block += w / k
        info[np.ix_(items, items)] += block
    return info


def d_efficiency(task_items: list[np.ndarray], n_items: int) -> float:
    """D-efficiency of a set of tasks relative to a perfectly balanced design of the same size.

    The best-worst logit information at equal utilities is projected on zero-sum contrasts;
    its trace depends only on the task sizes, and for a fixed trace the determinant is largest
    when all eigenvalues are equal (a balanced incomplete block design). The figure is
    ``det(M)^(1/(K-1)) / (trace(M)/(K-1))``: 1 for a BIBD, 0 when some contrast is not
    estimable (an item never shown).
    """
    q = _contrast_basis(n_items)
    m = q.T @ _bw_information(task_items, n_items) @ q
    p = n_items - 1
    eig = np.linalg.eigvalsh(m)
    tr = eig.sum()
    if tr <= 0 or eig.min() <= 1e-10 * tr:
        return 0.0
    return float(np.exp(np.log(eig).mean()) / (tr / p))


@dataclass(frozen=True)
class DesignBalance:
    """How balanced a MaxDiff design is.

    Attributes
    ----------
    item_counts : DataFrame
        ``item, shown, min_per_version, max_per_version``.
    pair_counts : DataFrame
        ``item_a, item_b, together`` for every unordered pair (pooled over versions).
    position_counts : DataFrame
        ``item`` then one column per position (pooled).
    version_efficiency : DataFrame
        ``version, d_efficiency, pair_min, pair_max``.
    d_efficiency : float
        Of the pooled design (all versions).
    """

    item_counts: pd.DataFrame
    pair_counts: pd.DataFrame
    position_counts: pd.DataFrame
    version_efficiency: pd.DataFrame
    d_efficiency: float
    n_items: int
    per_task: int
    n_tasks: int
    n_versions: int

    def summary(self) -> pd.DataFrame:
        """One row of headline figures."""
        pc = self.pair_counts["together"]
        pos = self.position_counts.drop(columns="item").to_numpy()
        return pd.DataFrame(
            [
                {
                    "items": self.n_items,
                    "per_task": self.per_task,
                    "tasks": self.n_tasks,
                    "versions": self.n_versions,
                    "item_spread_within_version": int(
                        (
                            self.item_counts["max_per_version"]
                            - self.item_counts["min_per_version"]
                        ).max()
                    ),
                    "pair_min": int(pc.min()),
                    "pair_max": int(pc.max()),
                    "pair_cv": float(pc.std(ddof=0) / pc.mean()) if pc.mean() > 0 else float("nan"),
                    "position_min": int(pos.min()),
                    "position_max": int(pos.max()),
                    "d_efficiency": self.d_efficiency,
                    "mean_version_d_efficiency": float(
                        self.version_efficiency["d_efficiency"].mean()
                    ),
                }
            ]
        )

    def to_frame(self) -> pd.DataFrame:
        return self.item_counts.merge(self.position_counts, on="item")

    def text(self) -> str:
        """The plain-text report written to ``design_report.txt``."""
        s = self.summary().iloc[0]
        lines = [
            "MaxDiff design balance",
            "======================",
            f"items: {self.n_items}   per task: {self.per_task}   tasks per version: {self.n_tasks}   versions: {self.n_versions}",
            "",
            f"D-efficiency (pooled, 1 = balanced incomplete block design): {self.d_efficiency:.4f}",
            f"D-efficiency per version: mean {s['mean_version_d_efficiency']:.4f}, "
            f"min {self.version_efficiency['d_efficiency'].min():.4f}",
            "  (best-worst logit information at equal utilities on zero-sum contrasts,",
            "   det^(1/(K-1)) divided by its largest possible value for the same task sizes)",
            "",
            "Item frequency (times shown; within each version every item appears equally often, ±1)",
        ]
        lines.append(self.item_counts.to_string(index=False))
        lines += [
            "",
            f"Pairs shown together (pooled): min {int(s['pair_min'])}, max {int(s['pair_max'])}, "
            f"coefficient of variation {s['pair_cv']:.3f}",
        ]
        pm = self.pair_counts.pivot(index="item_a", columns="item_b", values="together")
        order = list(self.item_counts["item"])
        pm = pm.reindex(index=order, columns=order)
        full = pm.fillna(0) + pm.fillna(0).T
        full = full.astype(int).astype(object)
        for i in order:
            full.loc[i, i] = "-"
        lines.append(full.to_string())
        lines += ["", "Position balance (times each item is shown in each position, pooled)"]
        lines.append(self.position_counts.to_string(index=False))
        lines += ["", "Per version"]
        lines.append(
            self.version_efficiency.to_string(index=False, float_format=lambda x: f"{x:.4f}")
        )
        return "\n".join(lines) + "\n"


def design_balance(design: pd.DataFrame, items: list[str] | None = None) -> DesignBalance:
    """Item, pair and position balance and D-efficiency of a MaxDiff design.

    Parameters
    ----------
    design : DataFrame
        ``version, task, position, item`` as made by :func:`design_maxdiff`.
    items : list of str, optional
        Item codes in report order (default: order of first appearance, numeric codes sorted).
    """
    design = design.copy()
    design["item"] = design["item"].astype(str)
    if items is None:
        found = list(dict.fromkeys(design["item"]))
        items = sorted(found, key=lambda c: (0, int(c)) if c.isdigit() else (1, c))
    codes = {c: i for i, c in enumerate(items)}
    n_items = len(items)
    idx = design["item"].map(codes).to_numpy()
    design["_i"] = idx
    keys = ["version", "task"]
    tasks = [
        g["_i"].to_numpy()
        for _, g in design.sort_values(keys + ["position"]).groupby(keys, sort=True)
    ]
    by_version = (
        design.groupby(["version", "_i"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=range(n_items), fill_value=0)
    )
    item_counts = pd.DataFrame(
        {
            "item": items,
            "shown": np.bincount(idx, minlength=n_items),
            "min_per_version": by_version.min(axis=0).to_numpy(),
            "max_per_version": by_version.max(axis=0).to_numpy(),
        }
    )
    pairs = np.zeros((n_items, n_items), dtype=int)
    for t in tasks:
        for a, b in itertools.combinations(sorted(t), 2):
            pairs[a, b] += 1
    ia, ib = np.triu_indices(n_items, 1)
    pair_counts = pd.DataFrame(
        {
            "item_a": np.asarray(items, dtype=object)[ia],
            "item_b": np.asarray(items, dtype=object)[ib],
            "together": pairs[ia, ib],
        }
    )
    per_task = int(design.groupby(keys).size().max())
    pos = (
        design.groupby(["_i", "position"])
        .size()
        .unstack(fill_value=0)
        .reindex(index=range(n_items), fill_value=0)
    )
    pos.columns = [f"position_{int(c)}" for c in pos.columns]
    position_counts = pd.concat([pd.Series(items, name="item"), pos.reset_index(drop=True)], axis=1)
    rows = []
    for v, g in design.sort_values(keys + ["position"]).groupby("version", sort=True):
        vt = [h["_i"].to_numpy() for _, h in g.groupby("task", sort=True)]
        vp = np.zeros((n_items, n_items), dtype=int)
        for t in vt:
            for a, b in itertools.combinations(sorted(t), 2):
                vp[a, b] += 1
        rows.append(
            {
                "version": v,
                "d_efficiency": d_efficiency(vt, n_items),
                "pair_min": int(vp[ia, ib].min()),
                "pair_max": int(vp[ia, ib].max()),
            }
        )
    n_tasks = int(design.groupby("version")["task"].nunique().max())
    return DesignBalance(
        item_counts=item_counts,
        pair_counts=pair_counts,
        position_counts=position_counts,
        version_efficiency=pd.DataFrame(rows),
        d_efficiency=d_efficiency(tasks, n_items),
        n_items=n_items,
        per_task=per_task,
        n_tasks=n_tasks,
        n_versions=int(design["version"].nunique()),
    )


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


# --------------------------------------------------------------------------------------------
# Aggregate sequential best-worst logit


def _bw_loglik(theta: np.ndarray, ch: _BWChoices, weights: np.ndarray, n_items: int):
    """Weighted log-likelihood, gradient and Hessian in item space (K utilities)."""
    u = theta
    avail = ch.items >= 0
    V = np.where(avail, ch.sign[:, None] * u[np.where(avail, ch.items, 0)], -np.inf)
    m = V.max(axis=1, keepdims=True)
    e = np.exp(V - m)
    p = e / e.sum(axis=1, keepdims=True)
    w = weights
    idx = np.arange(len(V))
    ll = float(w @ (V[idx, ch.chosen] - m[:, 0] - np.log(e.sum(axis=1))))
    # d/du_i of log p(chosen) = sign * (1[i chosen] - p_i)
    resid = -p
    resid[idx, ch.chosen] += 1.0
    contrib = (w * ch.sign)[:, None] * resid
    grad = np.bincount(ch.items[avail], weights=contrib[avail], minlength=n_items)
    # Hessian = -Σ w (diag p - p p') in item space; sign² = 1. With each choice's
    # probabilities spread into a choices × K matrix P (an item appears once per choice set),
    # that is P'WP - diag(Σ w P): two matrix products instead of a scatter over n × k × k
    rows = np.broadcast_to(idx[:, None], avail.shape)[avail]
    P = np.zeros((len(V), n_items))
    P[rows, ch.items[avail]] = p[avail]
    H = (P * w[:, None]).T @ P
    H[np.diag_indices(n_items)] -= w @ P
    return ll, grad, H


def _bw_scores(
    theta: np.ndarray, ch: _BWChoices, weights: np.ndarray, n_items: int, n_resp: int
) -> np.ndarray:
    """Score (gradient) contributions per respondent, n_resp × K, for the cluster-robust variance."""
    avail = ch.items >= 0
    V = np.where(avail, ch.sign[:, None] * theta[np.where(avail, ch.items, 0)], -np.inf)
    m = V.max(axis=1, keepdims=True)
    e = np.exp(V - m)
    p = e / e.sum(axis=1, keepdims=True)
    idx = np.arange(len(V))
    resid = -p
    resid[idx, ch.chosen] += 1.0
    contrib = (weights * ch.sign)[:, None] * resid
    resp = np.broadcast_to(ch.resp[:, None], avail.shape)
    flat = resp[avail].astype(np.int64) * n_items + ch.items[avail]
    return np.bincount(flat, weights=contrib[avail], minlength=n_resp * n_items).reshape(
        n_resp, n_items
    )


@dataclass(frozen=True)
class LogitFit:
    """Aggregate sequential best-worst logit for one group of respondents.

    ``utility`` is zero-centred (K items); ``cov`` its covariance (K × K, singular because of
    the centring) from the cluster-robust sandwich (respondents as clusters; the model-based
    inverse Hessian is ``cov_model``).
    """

    utility: np.ndarray
    se: np.ndarray
    cov: np.ndarray
    cov_model: np.ndarray
    loglik: float
    loglik_null: float
    n_choices: int
    n_respondents: int
    converged: bool
    iterations: int
    message: str


def fit_logit(md: MaxDiffData, mask: np.ndarray | None = None) -> LogitFit:
    """Maximum likelihood for the aggregate sequential best-worst logit.

    The last item is the reference during optimisation (scipy ``trust-exact`` with the analytic
    gradient and Hessian); utilities are then zero-centred and the covariance carried along.
    Respondent weights multiply each choice's log-likelihood.
    """
    from scipy.optimize import minimize

    mask = np.ones(md.n_respondents, dtype=bool) if mask is None else mask
    ch_all = _bw_choices(md)
    keep = mask[ch_all.resp]
    remap = np.cumsum(mask) - 1
    ch = _BWChoices(
        ch_all.items[keep], ch_all.sign[keep], ch_all.chosen[keep], remap[ch_all.resp[keep]]
    )
    w = md.weight[mask][ch.resp]
    # weights scaled to mean 1 so standard errors reflect the number of respondents
    w = w / w.mean()
    K = md.n_items
    seen = np.zeros(K, dtype=bool)
    seen[ch.items[ch.items >= 0]] = True
    free = np.flatnonzero(seen)[:-1]  # the last item seen is the reference while optimising
    A = np.zeros((K, len(free)))
    A[free, np.arange(len(free))] = 1.0

    # the mean log-likelihood per choice keeps the tolerance independent of the sample size
    scale = 1.0 / len(ch.sign)

    def f(t):
        ll, g, H = _bw_loglik(A @ t, ch, w, K)
        return -ll * scale, -(A.T @ g) * scale, -(A.T @ H @ A) * scale

    cache: dict = {}

    def fun(t):
        key = t.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = f(t)
        return cache[key]

    res = minimize(
        lambda t: fun(t)[0],
        np.zeros(len(free)),
        jac=lambda t: fun(t)[1],
        hess=lambda t: fun(t)[2],
        method="trust-exact",
        options={"gtol": 1e-9, "maxiter": 200},
    )
    theta = res.x
    _, gn, Hn = fun(theta)
    # trust-exact can stop with "cannot improve" at the optimum; the gradient decides
    converged = bool(res.success or np.abs(gn).max() < 1e-7)
    info = Hn / scale  # observed information of the free parameters
    try:
        cov_free = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        cov_free = np.linalg.pinv(info)
    scores = _bw_scores(A @ theta, ch, w, K, int(mask.sum())) @ A
    meat = scores.T @ scores
    robust_free = cov_free @ meat @ cov_free
    # items never shown stay at the reference level; centre over the items seen
    C = np.eye(K)
    C[:, seen] -= 1.0 / seen.sum()
    C[:, ~seen] = 0.0
    M = C @ A
    u = M @ theta
    u[~seen] = np.nan
    cov = M @ robust_free @ M.T
    cov_model = M @ cov_free @ M.T
    ll0 = float(-(w * np.log((ch.items >= 0).sum(axis=1))).sum())
    return LogitFit(
        utility=u,
        se=np.sqrt(np.clip(np.diag(cov), 0, None)),
        cov=cov,
        cov_model=cov_model,
        loglik=float(-res.fun / scale),
        loglik_null=ll0,
        n_choices=len(ch.sign),
        n_respondents=int(mask.sum()),
        converged=converged,
        iterations=int(res.nit),
        message=str(res.message),
    )


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


def _share_draws(md: MaxDiffData, beta: np.ndarray, Q: np.ndarray, chunk: int = 100):
    """Segment utilities and shares per posterior draw: per draw, per respondent, then the
    weighted mean over the segment. ``beta`` is (chain, draw, R, P); returns two arrays
    (chain, draw, segment, item) and the segment names."""
    names, M = _segment_weights(md)
    C, D = beta.shape[:2]
    flat = beta.reshape(C * D, *beta.shape[2:])
    shares = np.empty((C * D, len(names), md.n_items))
    utils = np.empty_like(shares)
    for start in range(0, C * D, chunk):
        u = flat[start : start + chunk] @ Q.T  # draws × R × K
        shares[start : start + chunk] = np.einsum("gr,srk->sgk", M, probability_shares(u, md.k))
        utils[start : start + chunk] = np.einsum("gr,srk->sgk", M, u)
    shape = (C, D, len(names), md.n_items)
    return shares.reshape(shape), utils.reshape(shape), names


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


# --------------------------------------------------------------------------------------------
# Result


@dataclass(frozen=True)
class MaxDiffResult:
    """MaxDiff item scores.

    Attributes
    ----------
    item_scores : DataFrame
        ``segment, item, utility, share, lower, upper`` (+ ``label``, ``n_respondents`` and
        method-specific columns). One row set per segment and one for ``all``. ``utility`` is
        zero-centred; ``share`` is probability-scaled, 0–100, summing to 100 within a segment;
        ``lower``/``upper`` a 95% interval of the share.
    individual_utilities : DataFrame
        ``respondent_id, segment, item, utility`` (hierarchical Bayes only; empty otherwise).
    diagnostics : dict
        Fit and convergence figures (``max_rhat``, ``min_ess_bulk``, ``divergences``,
        ``mean_rlh``, ... for hb; the relevant subset otherwise).
    respondent_fit : DataFrame
        ``respondent_id, segment, n_choices, loglik, rlh, chance_rlh, pct_certainty,
        random_like``.
    converged : bool
    """

    method: str
    item_scores: pd.DataFrame
    individual_utilities: pd.DataFrame
    diagnostics: dict
    respondent_fit: pd.DataFrame
    converged: bool
    items: list[str]
    labels: dict[str, str]
    k: int
    segments: list[str]
    n_respondents: int
    n_tasks: int
    settings: dict = field(default_factory=dict)
    hb: object | None = None
    warnings: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        return self.item_scores.copy()

    def summary(self) -> pd.DataFrame:
        """Items ranked by share for the total sample, with segment shares side by side."""
        wide = self.item_scores.pivot(index="item", columns="segment", values="share")
        order = self.item_scores[self.item_scores["segment"] == ALL].sort_values(
            "share", ascending=False
        )
        cols = [ALL] + [s for s in self.segments if s != ALL]
        out = wide.loc[order["item"], cols].reset_index()
        out.insert(1, "label", out["item"].map(self.labels).fillna(out["item"]))
        out.insert(2, "lower", order["lower"].to_numpy())
        out.insert(3, "upper", order["upper"].to_numpy())
        out.columns.name = None
        return out

    def save_posterior(self, path) -> None:
        """Write the hierarchical Bayes posterior (ArviZ InferenceData) as NetCDF."""
        if self.hb is None:
            raise ValueError(f"method {self.method!r} has no posterior to save")
        from wtp.hb import save_posterior

        save_posterior(self.hb, path)


def _empty_individual() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "respondent_id": pd.Series(dtype=object),
            "segment": pd.Series(dtype=object),
            "item": pd.Series(dtype=object),
            "utility": pd.Series(dtype=float),
        }
    )


def separated_items(md: MaxDiffData, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items the logit cannot estimate for these respondents: picked best every time they were
    shown (utility +∞) or worst every time (−∞) — complete separation, so no finite maximum
    likelihood exists. Returns (always_best, always_worst) boolean masks over the items."""
    shown, best, worst = (x[mask].sum(axis=0) for x in _respondent_counts(md))
    seen = shown > 0
    return seen & (best == shown), seen & (worst == shown)


def _logit_scores(
    md: MaxDiffData, rng: np.random.Generator, n_draws: int = 4000
) -> tuple[pd.DataFrame, dict, dict]:
    """Aggregate logit per segment and ``all``; share intervals from parametric draws of the
    (cluster-robust) ML covariance. Separated items (see :func:`separated_items`) are flagged:
    their figures are where the optimiser stopped on the way to ±∞, not estimates."""
    frames, fits, separated = [], {}, []
    for name, mask in _segment_rows(md):
        always_best, always_worst = separated_items(md, mask)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # separation makes the covariance near-singular; it is reported below instead
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_logit(md, mask)
            u = np.nan_to_num(fit.utility)
            draws = rng.multivariate_normal(u, fit.cov, size=n_draws, method="eigh")
        fits[name] = fit
        sh = probability_shares(draws, md.k)
        for i in np.flatnonzero(always_best | always_worst):
            separated.append(
                {
                    "segment": name,
                    "item": md.items[i],
                    "always": "best" if always_best[i] else "worst",
                }
            )
        frames.append(
            pd.DataFrame(
                {
                    "segment": name,
                    "item": md.items,
                    "utility": fit.utility,
                    "share": probability_shares(u, md.k),
                    "lower": np.quantile(sh, 0.025, axis=0),
                    "upper": np.quantile(sh, 0.975, axis=0),
                    "se": fit.se,
                    "n_respondents": fit.n_respondents,
                    "separated": always_best | always_worst,
                }
            )
        )
    all_fit = fits[ALL]
    diag = {
        "loglik": all_fit.loglik,
        "loglik_null": all_fit.loglik_null,
        "pseudo_r2": 1.0 - all_fit.loglik / all_fit.loglik_null,
        "optimizer_converged": all(f.converged for f in fits.values()),
        "iterations": max(f.iterations for f in fits.values()),
        "se_type": "cluster-robust by respondent",
        "separated_items": separated,
    }
    return pd.concat(frames, ignore_index=True), diag, fits


def _separation_warnings(separated: list[dict]) -> tuple[str, ...]:
    by_item: dict[tuple[str, str], list[str]] = {}
    for rec in separated:
        by_item.setdefault((rec["item"], rec["always"]), []).append(rec["segment"])
    return tuple(
        f"separation: item {item} was picked {always} every time it was shown (segments: {', '.join(segs)}); "
        f"the logit has no finite utility for it, so its utility and share are limits, not estimates "
        f"(use --method hb, whose prior keeps it finite, or counts)"
        for (item, always), segs in by_item.items()
    )


def estimate_maxdiff(
    answers: pd.DataFrame,
    *,
    method: str = "hb",
    k: int | None = None,
    rng: np.random.Generator | None = None,
    draws: int = 200,
    tune: int = 300,
    chains: int = 4,
    cores: int | None = None,
    progress=True,
    labels: dict[str, str] | None = None,
    items: list[str] | None = None,
    segment_means: bool = True,
    target_accept: float = 0.8,
    priors=None,
    n_random: int = 500,
    individual_sample: int | None = 100,
    time_budget: float | None = 600.0,
    until_converged: bool = True,
) -> MaxDiffResult:
    """Estimate MaxDiff item scores by counts, aggregate logit or hierarchical Bayes.

    Parameters
    ----------
    answers : DataFrame
        Long layout with ``segment`` and ``weight`` (see :func:`prepare_maxdiff_data`).
    method : {"hb", "logit", "counts"}
    k : int, optional
        Items per task in the share formula (default: the most common task size).
    rng :
        The ``numpy.random.Generator`` for all randomness (bootstrap, interval draws, the
        sampler, random respondents); required (``wtp.randomness.stage_rng(seed, "maxdiff")``).
    draws, tune, chains, cores, progress, target_accept, priors, time_budget, until_converged :
        Hierarchical Bayes sampler settings (see :func:`wtp.hb.fit_hb`): by default sampling
        continues past ``draws`` per chain until shares, utilities and the population have
        converged, or ``time_budget`` seconds have passed.
    labels : dict, optional
        Item code → label for reports.
    items : list of str, optional
        Item codes in report order.
    segment_means : bool, default True
        Hierarchical Bayes: each segment gets its own population mean (shared covariance).
    n_random : int, default 500
        Simulated random respondents (and, with hierarchical Bayes, as many simulated honest
        ones) that set and check the random-answering flag (see :func:`_random_flag`).
    individual_sample : int or None, default 100
        Hierarchical Bayes: respondents whose parameters enter the individual-level R-hat/ESS
        (None: all; ArviZ needs about 1 ms per parameter per statistic).

    Returns
    -------
    MaxDiffResult
    """
    if method not in METHODS:
        raise InputError(Problem("--method", None, "method", "one of hb, logit, counts", method))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    md = prepare_maxdiff_data(answers, items=items, k=k)
    labels = {c: str((labels or {}).get(c, c)) for c in md.items}
    fit_rng, rand_rng = rng.spawn(2)
    hb_result = None
    individual = _empty_individual()
    result_warnings: tuple[str, ...] = ()
    randoms = _random_respondents(md, n_random, rand_rng)
    if method == "counts":
        scores = counts_scores(md, rng=fit_rng)
        diagnostics: dict = {}
        converged = True
    elif method == "logit":
        scores, diagnostics, _fits = _logit_scores(md, fit_rng)
        # with separation the optimiser only stops on a flat slope towards infinity
        converged = bool(diagnostics["optimizer_converged"]) and not diagnostics["separated_items"]
        result_warnings = _separation_warnings(diagnostics["separated_items"])
    if method in ("counts", "logit"):
        # fit of each respondent's answers to their segment's utilities
        seg_u = (
            scores.pivot(index="segment", columns="item", values="utility")
            .reindex(columns=md.items)
            .fillna(0.0)
        )
        U = seg_u.loc[md.respondent_segments()].to_numpy()
        u_all = np.tile(seg_u.loc[ALL].to_numpy(), (randoms.n_respondents, 1))
        ll, _, n = _loglik_items(randoms, u_all)
        threshold = float(np.quantile(np.exp(ll / n), 0.95))
        fit = _fit_frame(md, U, threshold)
    else:
        from wtp.hb import fit_hb

        data, Q = maxdiff_choice_data(md, segment_means=segment_means)

        def share_check(beta):
            # segment shares are what the report leads with, so they are checked too (the
            # sampler calls this on each batch of new draws)
            return {"share": _share_draws(md, beta, Q)[0]}

        hb_result = fit_hb(
            data,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            rng=fit_rng,
            progress=progress,
            target_accept=target_accept,
            priors=priors,
            extra_diagnostics=share_check,
            individual_sample=individual_sample,
            time_budget=time_budget,
            until_converged=until_converged,
        )
        scores = _hb_scores(md, *_share_draws(md, hb_result.beta_draws[None], Q))
        beta_mean = hb_result.beta_mean()
        U = beta_mean @ Q.T
        individual = pd.DataFrame(
            {
                "respondent_id": np.repeat(np.asarray(md.respondent_ids, dtype=object), md.n_items),
                "segment": np.repeat(md.respondent_segments(), md.n_items),
                "item": np.tile(np.asarray(md.items, dtype=object), md.n_respondents),
                "utility": U.ravel(),
            }
        )
        # the population as estimated: posterior means of the segment means and the covariance
        flag = _random_flag(
            md,
            hb_result.idata.posterior["mu"].mean(dim=("chain", "draw")).to_numpy(),
            hb_result.data.group,
            beta_mean,
            beta_mean.mean(axis=0),
            _posterior_cov(hb_result),
            Q,
            randoms,
            n_random,
            rand_rng,
        )
        mode_rlh = flag.pop("rlh_mode")
        fit = _fit_frame(md, U, flag["rlh_random_threshold"], judged=mode_rlh)
        fit["rlh_mode"] = mode_rlh
        threshold = flag["rlh_random_threshold"]
        diagnostics = {k_: v for k_, v in hb_result.diagnostics.items() if not isinstance(v, dict)}
        diagnostics["by_variable"] = {
            name: {
                "max_rhat": hb_result.diagnostics["rhat_by_variable"].get(name),
                "min_ess_bulk": hb_result.diagnostics["ess_bulk_by_variable"].get(name),
                "min_ess_tail": hb_result.diagnostics["ess_tail_by_variable"].get(name),
            }
            for name in hb_result.diagnostics["rhat_by_variable"]
        }
        diagnostics["segment_means"] = bool(segment_means and len(md.segments) > 1)
        diagnostics.update(flag)
        converged = hb_result.converged
    w = md.weight
    diagnostics.update(
        {
            "method": method,
            "n_respondents": md.n_respondents,
            "n_tasks": md.n_tasks,
            "k": md.k,
            "mean_rlh": float(np.average(fit["rlh"], weights=w)),
            "median_rlh": float(fit["rlh"].median()),
            "chance_rlh": float(fit["chance_rlh"].mean()),
            "rlh_random_threshold": threshold,
            "n_random_like": int(fit["random_like"].sum()),
            "share_random_like": float(fit["random_like"].mean()),
            "n_straight_lining": int(fit["straight_lining"].sum()),
            "mean_pct_certainty": float(np.average(fit["pct_certainty"], weights=w)),
            "converged": bool(converged),
        }
    )
    scores.insert(2, "label", scores["item"].map(labels))
    return MaxDiffResult(
        method=method,
        item_scores=scores,
        individual_utilities=individual,
        diagnostics=diagnostics,
        respondent_fit=fit,
        converged=bool(converged),
        items=md.items,
        labels=labels,
        k=md.k,
        segments=[s for s in md.segments if s != ALL] + [ALL],
        n_respondents=md.n_respondents,
        n_tasks=md.n_tasks,
        settings={
            "method": method,
            "k": md.k,
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "target_accept": target_accept,
            "until_converged": until_converged,
            "time_budget_s": time_budget,
            "segment_means": segment_means,
            "individual_sample": individual_sample,
            "share_rule": "mean of individual probability-scaled shares"
            if method == "hb"
            else "probability-scaled shares of the segment's utilities",
        },
        hb=hb_result,
        warnings=result_warnings,
    )


RANDOM_FALSE_ALARM = 0.05  # share of honest respondents the random-answering flag may mark
RANDOM_MIN_DETECTION = 0.5  # below this share of random answerers caught, the design cannot tell


def _mode_rlh(md: MaxDiffData, centre: np.ndarray, cov: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """RLH of each respondent at their posterior mode under the population N(centre, cov)."""
    from wtp.hb import map_individual

    data, _ = maxdiff_choice_data(md, segment_means=False)
    ll, _, n = _loglik_items(md, map_individual(data, centre, cov) @ Q.T)
    return np.exp(ll / n)


def _random_flag(
    md: MaxDiffData,
    group_means: np.ndarray,
    respondent_group: np.ndarray,
    estimates: np.ndarray,
    centre: np.ndarray,
    cov: np.ndarray,
    Q: np.ndarray,
    randoms: MaxDiffData,
    n_sim: int,
    rng: np.random.Generator,
) -> dict:
    """Random-answering flag whose false-alarm rate is set on simulated honest respondents.

    ==== ==================================================================================
    step
    ==== ==================================================================================
    1    real, simulated honest and simulated random respondents are scored alike: RLH at
         their posterior mode under the estimated population (overall mean, posterior mean
         covariance), on task sets drawn from the study's own respondents
    2    honest respondents answer by the sequential best-worst logit with utilities drawn
         (a) from the estimated population N(μ_segment, Σ) and (b) from the real
         respondents' own estimates; the threshold is the lower of the two 5th percentiles
         of their RLH. (a) alone flags too many honest respondents when people differ in
         how consistently they answer (scale heterogeneity, which the normal population
         does not have); (b) carries that spread over from the data. At most about 5% of
         honest respondents are flagged
    3    ``random_detection_rate``: the share of simulated random answerers below the
         threshold. Under 50% the design has too few tasks to tell random from honest
         answering (``random_flag_reliable`` False), and the report says so
    ==== ==================================================================================

    A respondent's own mode (not posterior mean) is used because the mode of a random
    answerer fits its noise as well as anyone's; judging real respondents by posterior means
    and simulated ones by modes would compare unlike with unlike.
    """
    pick = rng.integers(len(respondent_group), size=n_sim)
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(len(cov)))
    from_population = (
        group_means[respondent_group[pick]] + rng.standard_normal((n_sim, len(cov))) @ chol.T
    )
    from_estimates = estimates[rng.integers(len(estimates), size=n_sim)]
    thresholds = []
    for beta in (from_population, from_estimates):
        rlh_honest = _mode_rlh(_honest_respondents(md, beta @ Q.T, rng), centre, cov, Q)
        thresholds.append(float(np.quantile(rlh_honest, RANDOM_FALSE_ALARM)))
    threshold = min(thresholds)
    detection = float(np.mean(_mode_rlh(randoms, centre, cov, Q) <= threshold))
    return {
        "rlh_mode": _mode_rlh(md, centre, cov, Q),
        "rlh_random_threshold": threshold,
        "random_flag_rule": "RLH at the posterior mode below the 5th percentile of simulated honest respondents",
        "random_false_alarm_target": RANDOM_FALSE_ALARM,
        "random_detection_rate": detection,
        "random_flag_reliable": bool(detection >= RANDOM_MIN_DETECTION),
        "tasks_per_respondent": float(md.n_tasks / md.n_respondents),
    }


def _posterior_cov(hb_result) -> np.ndarray:
    """Posterior mean of the population covariance diag(sd)·corr·diag(sd)."""
    post = hb_result.idata.posterior
    sd = post["sd"].to_numpy()
    corr = post["corr"].to_numpy()
    cov = sd[..., :, None] * corr * sd[..., None, :]
    return cov.mean(axis=(0, 1))
