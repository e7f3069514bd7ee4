"""Conjoint designs a survey tool can field (balanced overlap or random) and their level balance, overlap and D-error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem

# Balanced overlap: the share of (task, attribute) pairs that deliberately repeat one level when
# the attribute has enough levels to avoid it. Random designs repeat a level of a 4-level
# attribute in ~60% of triples; complete enumeration in none. Sawtooth's "balanced overlap"
# sits in between, and some overlap is what lets respondents trade the other attributes off.
BALANCED_OVERLAP = 0.3
_MAX_PROFILE_TRIES = 20


# ----------------------------------------------------------------------------------------------
# Design


def _check_design_inputs(
    attributes: dict[str, list[str]], prices: list[float], n_tasks, n_alts, n_versions, method
):
    problems = []
    if not attributes:
        problems.append(
            Problem("study.toml", None, "conjoint.attributes", "at least one attribute with levels")
        )
    for a, levels in attributes.items():
        if len(levels) < 2:
            problems.append(
                Problem(
                    "study.toml", None, f"conjoint.attributes.{a}", "at least two levels", levels
                )
            )
        if len(set(map(str, levels))) != len(levels):
            problems.append(
                Problem("study.toml", None, f"conjoint.attributes.{a}", "distinct levels", levels)
            )
        if a in ("price", "none", "version", "task", "alt"):
            problems.append(
                Problem(
                    "study.toml",
                    None,
                    f"conjoint.attributes.{a}",
                    "an attribute name other than a reserved column",
                    a,
                )
            )
    try:
        p = np.asarray(prices, dtype=float)
    except (TypeError, ValueError):
        p = np.array([np.nan])
    if p.size < 2 or not np.all(np.isfinite(p)) or len(set(p.tolist())) != p.size:
        problems.append(
            Problem(
                "study.toml",
                None,
                "conjoint.attributes.price",
                "at least two distinct numeric price levels",
                prices,
            )
        )
    if n_tasks < 1 or n_alts < 2 or n_versions < 1:
        problems.append(
            Problem(
                "design",
                None,
                None,
                "n_tasks >= 1, n_alts >= 2 and n_versions >= 1",
                (n_tasks, n_alts, n_versions),
            )
        )
    if method not in ("balanced", "random"):
        problems.append(Problem("design", None, "method", "'balanced' or 'random'", method))
    if problems:
        raise InputError(problems)


def _balanced_task_codes(
    counts: np.ndarray, n_alts: int, overlap: bool, rng: np.random.Generator
) -> np.ndarray:
    """Level codes for one attribute in one task: least-used levels first (balance), distinct
    where possible (minimal overlap), one repeat when ``overlap`` asks for it."""
    n_levels = counts.size
    order = np.lexsort((rng.random(n_levels), counts))  # least used, random tie-break
    distinct = min(n_levels, n_alts - 1 if overlap else n_alts)
    picked = list(order[:distinct])
    while len(picked) < n_alts:
        # repeats go to the least used of the levels already in the task, so balance holds
        shown = np.array(picked)
        uses = counts[shown] + np.bincount(shown, minlength=n_levels)[shown]
        picked.append(shown[np.lexsort((rng.random(shown.size), uses))[0]])
    codes = np.array(picked)
    return codes[rng.permutation(n_alts)]


def _random_codes(
    n_levels: int, n_versions: int, cells: int, rng: np.random.Generator
) -> np.ndarray:
    """Level codes (n_versions × cells) balanced over the whole design and nearly so per version."""
    tiled = np.resize(np.arange(n_levels), n_versions * cells)
    tiled = tiled[rng.permutation(tiled.size)]
    # sort then deal round-robin, so every version gets an (almost) equal count of every level
    tiled = np.sort(tiled).reshape(cells, n_versions).T
    return np.array([row[rng.permutation(cells)] for row in tiled])


def design_conjoint(
    attributes: dict[str, list[str]],
    prices: list[float],
    *,
    n_tasks: int = 12,
    n_alts: int = 3,
    n_versions: int = 10,
    none: bool = True,
    method: str = "balanced",
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """A choice-based conjoint design a survey tool can field.

    Parameters
    ----------
    attributes
        Attribute → ordered levels (first = reference), without price.
    prices
        Tested price levels (numbers); price is designed like an attribute.
    n_tasks, n_alts, n_versions
        Tasks per respondent, alternatives per task (without none), design versions.
    none
        Add a no-choice row per task (``none = 1``, attribute cells and price empty).
    method
        ``"balanced"`` (balanced overlap: levels used equally often, a level repeated within a
        task only in about :data:`BALANCED_OVERLAP` of the tasks where it could be avoided) or
        ``"random"`` (levels used equally often, placed at random).
    rng
        Random generator; ``None`` uses a generator seeded with 0, so the default is reproducible.

    Returns
    -------
    pandas.DataFrame
        ============ =====================================================
        version      1..n_versions
        task         1..n_tasks
        alt          1..n_alts (n_alts + 1 for the no-choice row)
        <attribute>  level shown (text; empty on the no-choice row)
        price        price shown (float; empty on the no-choice row)
        none         1 on the no-choice row, else 0 (only when ``none``)
        ============ =====================================================
    """
    _check_design_inputs(attributes, prices, n_tasks, n_alts, n_versions, method)
    rng = rng if rng is not None else np.random.default_rng(0)
    columns = {str(a): [str(x) for x in lv] for a, lv in attributes.items()}
    columns["price"] = [float(p) for p in prices]
    names = list(columns)
    sizes = np.array([len(columns[n]) for n in names])
    cells = n_tasks * n_alts
    codes = np.empty((n_versions, n_tasks, n_alts, len(names)), dtype=np.int64)

    if method == "random":
        for k, size in enumerate(sizes):
            codes[..., k] = _random_codes(int(size), n_versions, cells, rng).reshape(
                n_versions, n_tasks, n_alts
            )
    else:
        counts = [np.zeros(s, dtype=np.int64) for s in sizes]
        for v in range(n_versions):
            for t in range(n_tasks):
                for k, size in enumerate(sizes):
                    overlap = size >= n_alts and rng.random() < BALANCED_OVERLAP
                    codes[v, t, :, k] = _balanced_task_codes(counts[k], n_alts, overlap, rng)
                    counts[k] += np.bincount(codes[v, t, :, k], minlength=size)
    _separate_identical_profiles(codes, rng)

    flat = codes.reshape(-1, len(names))
    frame = pd.DataFrame(
        {
            "version": np.repeat(np.arange(1, n_versions + 1), cells),
            "task": np.tile(np.repeat(np.arange(1, n_tasks + 1), n_alts), n_versions),
            "alt": np.tile(np.arange(1, n_alts + 1), n_versions * n_tasks),
        }
    )
    for k, n in enumerate(names):
        values = np.asarray(columns[n], dtype=object if n != "price" else float)
        frame[n] = values[flat[:, k]]
    if none:
        frame["none"] = 0
        blank = frame.drop_duplicates(["version", "task"]).copy()
        blank["alt"] = n_alts + 1
        for n in names:
            blank[n] = None if n != "price" else np.nan
        blank["none"] = 1
        frame = pd.concat([frame, blank], ignore_index=True).sort_values(
            ["version", "task", "alt"], kind="stable"
        )
        frame = frame.reset_index(drop=True)
    frame["price"] = frame["price"].astype(float)
    frame.attrs.update(
        attributes={a: list(v) for a, v in columns.items() if a != "price"},
        prices=list(columns["price"]),
        method=method,
    )
    return frame


def _separate_identical_profiles(codes: np.ndarray, rng: np.random.Generator) -> None:
    """Two identical alternatives in one task teach nothing; swap levels between tasks of the same
    version (which keeps level balance) until no task shows the same profile twice."""
    n_versions, n_tasks, n_alts, n_attr = codes.shape
    for v in range(n_versions):
        for _ in range(_MAX_PROFILE_TRIES):
            block = codes[v]
            dup = [t for t in range(n_tasks) if len({tuple(r) for r in block[t]}) < n_alts]
            if not dup:
                break
            for t in dup:
                k = rng.integers(n_attr)
                a = rng.integers(n_alts)
                t2, a2 = rng.integers(n_tasks), rng.integers(n_alts)
                block[t, a, k], block[t2, a2, k] = block[t2, a2, k], block[t, a, k]


@dataclass(frozen=True)
class DesignReport:
    """Balance and efficiency of a conjoint design.

    Attributes
    ----------
    balance
        ``attribute, level, count, share`` — how often each level is shown (no-choice rows excluded).
    overlap
        ``attribute, tasks_with_repeat`` — share of tasks showing some level of the attribute twice.
    d_error
        D-error of an MNL with zero priors (all levels part-worth coded, price too; a no-choice
        constant when the design has one), for the information of one respondent (the design's
        information divided by the number of versions). Lower is better.
    n_versions, n_tasks, n_alts
        Size of the design (n_alts without the no-choice row).
    """

    balance: pd.DataFrame
    overlap: pd.DataFrame
    d_error: float
    n_versions: int
    n_tasks: int
    n_alts: int
    n_parameters: int

    def summary(self) -> pd.DataFrame:
        """Per attribute: levels, least and most shown count, their ratio, and the overlap."""
        g = self.balance.groupby("attribute", sort=False)["count"]
        out = pd.DataFrame({"levels": g.size(), "min_count": g.min(), "max_count": g.max()})
        out["balance"] = out["min_count"] / out["max_count"]
        out = out.reset_index().merge(self.overlap, on="attribute", how="left")
        return out

    def to_frame(self) -> pd.DataFrame:
        return self.balance.merge(self.overlap, on="attribute", how="left")

    def text(self) -> str:
        """The plain-text design report written as ``design_report.txt``."""
        lines = [
            "Choice-based conjoint design",
            f"versions: {self.n_versions}   tasks per version: {self.n_tasks}   alternatives per task: {self.n_alts}",
            f"D-error (MNL, zero priors, part-worth coding, {self.n_parameters} parameters, per respondent): {self.d_error:.4f}",
            "",
            "Level balance (times each level is shown) and overlap (share of tasks repeating a level):",
        ]
        for attr, rows in self.balance.groupby("attribute", sort=False):
            ov = self.overlap.set_index("attribute").loc[attr, "tasks_with_repeat"]
            lines.append(f"  {attr}  (overlap {100 * ov:.0f}% of tasks)")
            for r in rows.itertuples(index=False):
                lines.append(f"    {str(r.level):<30} {int(r.count):>6}  {100 * r.share:5.1f}%")
        return "\n".join(lines) + "\n"


def _design_matrix_partworth(
    design: pd.DataFrame, names: list[str], levels: dict[str, list]
) -> np.ndarray:
    blocks = []
    for n in names:
        values = design[n].to_numpy()
        lv = levels[n]
        for level in lv[1:]:
            blocks.append((values == level).astype(float))
    if "none" in design.columns:
        blocks.append(design["none"].to_numpy(dtype=float))
    return np.column_stack(blocks)


def evaluate_design(
    design: pd.DataFrame,
    attributes: dict[str, list[str]] | None = None,
    prices: list[float] | None = None,
) -> DesignReport:
    """Level balance, overlap and D-error of a design from :func:`design_conjoint`.

    The D-error uses an MNL with zero priors, so every alternative of a task is equally likely
    (p = 1/J): the information of a task is ``Σ_j (x_j − x̄)(x_j − x̄)ᵀ / J``. Levels (price
    included) are dummy coded against the first level, so the number does not depend on the
    price unit; the no-choice row adds its constant.
    """
    attributes = attributes if attributes is not None else design.attrs.get("attributes")
    prices = prices if prices is not None else design.attrs.get("prices")
    if attributes is None:
        reserved = {"version", "task", "alt", "price", "none"}
        attributes = {
            c: list(pd.unique(design[c].dropna())) for c in design.columns if c not in reserved
        }
    if prices is None:
        prices = sorted(design["price"].dropna().unique())
    levels = {a: [str(x) for x in v] for a, v in attributes.items()}
    levels["price"] = [float(p) for p in prices]
    names = list(levels)
    real = design if "none" not in design.columns else design[design["none"] == 0]

    rows = []
    over = []
    for n in names:
        counts = real[n].value_counts()
        total = counts.sum()
        for level in levels[n]:
            c = int(counts.get(level, 0))
            rows.append(
                (n, level if n != "price" else f"{level:g}", c, c / total if total else np.nan)
            )
        repeats = real.groupby(["version", "task"])[n].agg(lambda s: s.nunique() < s.size)
        over.append((n, float(repeats.mean())))
    balance = pd.DataFrame(rows, columns=["attribute", "level", "count", "share"])
    overlap = pd.DataFrame(over, columns=["attribute", "tasks_with_repeat"])

    work = design.sort_values(["version", "task", "alt"], kind="stable")
    x = _design_matrix_partworth(work, names, levels)
    size = work.groupby(["version", "task"], sort=False).size().to_numpy()
    n_versions = int(work["version"].nunique())
    d_error = _d_error_zero_prior(x, size, n_versions)
    n_alts = int(real.groupby(["version", "task"]).size().max())
    n_tasks = int(real.groupby("version")["task"].nunique().max())
    return DesignReport(balance, overlap, d_error, n_versions, n_tasks, n_alts, x.shape[1])


def _d_error_zero_prior(x: np.ndarray, task_sizes: np.ndarray, n_versions: int) -> float:
    starts = np.concatenate([[0], np.cumsum(task_sizes)[:-1]])
    task_of_row = np.repeat(np.arange(task_sizes.size), task_sizes)
    means = np.add.reduceat(x, starts, axis=0) / task_sizes[:, None]
    centred = x - means[task_of_row]
    weights = 1.0 / task_sizes[task_of_row]
    info = (centred * weights[:, None]).T @ centred / max(n_versions, 1)
    sign, logdet = np.linalg.slogdet(info)
    if sign <= 0:
        return float("inf")
    return float(np.exp(-logdet / x.shape[1]))
