"""MaxDiff designs a survey tool can field, and how balanced a design is."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem

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
