"""Choice-based conjoint: designs, part-worths, importances, willingness to pay, market simulator.

The module follows the analyst's workflow:

1. :func:`design_conjoint` builds a design a survey tool can field and :func:`evaluate_design`
   reports its level balance, overlap and D-error.
2. :func:`prepare_choice_data` turns the validated long layout (``wtp.io.validate_conjoint``)
   into padded arrays; :func:`estimate_conjoint` fits an aggregate multinomial logit (MNL) per
   segment (or a hierarchical MNL with ``method="hb"``) and returns a :class:`ConjointResult`
   with part-worths, importances and willingness to pay.
3. :func:`simulate_market` and :func:`demand_curve` turn the part-worths into shares of
   preference for products described by levels and price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem, suggestion
from wtp.schema import ALL as RESERVED_SEGMENT
from wtp.settings import StudySettings, as_settings

__all__ = [
    "design_conjoint",
    "evaluate_design",
    "DesignReport",
    "prepare_choice_data",
    "ChoiceData",
    "Coding",
    "fit_mnl",
    "MNLFit",
    "estimate_conjoint",
    "result_from_draws",
    "ConjointResult",
    "IndividualDraws",
    "simulate_market",
    "demand_curve",
    "simulator_tables",
    "conjoint_levels",
    "order_levels",
    "conjoint_prices",
    "conjoint_numeric",
    "extrapolation",
    "cluster_covariance",
]

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


# ----------------------------------------------------------------------------------------------
# Data preparation

_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Coding:
    """How levels and price become model parameters (and back).

    Each attribute with L levels has an L × (L − 1) coding matrix ``C`` (dummy: the first level
    is a row of zeros; effects: a row of −1), so the part-worths of all its levels are ``C β``.
    Price is one column (``price / price_scale``) when linear, or coded like an attribute over
    the sorted tested prices when ``price="partworth"``. The no-choice alternative gets a
    constant (``none``) and zeros elsewhere.
    """

    levels: dict[str, list[str]]
    prices: list[float]
    coding: str
    price: str
    none: bool
    price_scale: float
    parameters: list[str]
    blocks: dict[str, slice]  # attribute (and "price", "none") → parameter columns
    matrices: dict[str, np.ndarray]  # attribute (and "price" when part-worth) → coding matrix
    # numeric attribute → its knots (empty: linear); its tested values are ``levels`` (ascending)
    numeric: dict[str, tuple[float, ...]] = field(default_factory=dict)
    numeric_scale: dict[str, float] = field(default_factory=dict)

    @property
    def n_parameters(self) -> int:
        return len(self.parameters)

    def tested_values(self, attribute: str) -> np.ndarray:
        """The tested values of a numeric attribute (or of ``price``), ascending."""
        if attribute == "price":
            return np.asarray(self.prices, dtype=float)
        return np.asarray([float(x) for x in self.levels[attribute]])

    def numeric_basis(self, attribute: str, values) -> np.ndarray:
        """Rows (values × parameters) of a numeric attribute at any values.

        Linear: ``(x − x_min) / scale``. Piecewise with knots k₁ < … < k_m: one column per piece,
        the part of ``x − x_min`` that falls in it (``clip(x, k_j, k_{j+1}) − k_j``), so each
        coefficient is the slope on its piece; the first and last pieces extend beyond the
        tested range (extrapolation). The lowest tested value has utility 0, like a reference level.
        """
        x = np.atleast_1d(np.asarray(values, dtype=float))
        grid = self.tested_values(attribute)
        edges = np.concatenate([[grid[0]], self.numeric[attribute], [grid[-1]]])
        cols = []
        for j in range(edges.size - 1):
            lo = -np.inf if j == 0 else edges[j]
            hi = np.inf if j == edges.size - 2 else edges[j + 1]
            cols.append(np.clip(x, lo, hi) - (edges[j] if j else grid[0]))
        out = np.zeros((x.size, self.n_parameters))
        out[:, self.blocks[attribute]] = np.column_stack(cols) / self.numeric_scale[attribute]
        return out

    def unit_rows(self, attribute: str) -> list[tuple[str, np.ndarray]]:
        """``(label, row)`` of the utility per unit: ``per_unit`` for a linear attribute (and
        linear price), ``per_unit:lo-hi`` for each piece of a piecewise one."""
        if attribute == "price":
            return [("per_unit", self.price_slope_row())]
        grid = self.tested_values(attribute)
        edges = np.concatenate([[grid[0]], self.numeric[attribute], [grid[-1]]])
        out = []
        for j, col in enumerate(range(self.blocks[attribute].start, self.blocks[attribute].stop)):
            row = np.zeros(self.n_parameters)
            row[col] = 1.0 / self.numeric_scale[attribute]
            label = "per_unit" if edges.size == 2 else f"per_unit:{edges[j]:g}-{edges[j + 1]:g}"
            out.append((label, row))
        return out

    def level_rows(self, attribute: str) -> np.ndarray:
        """Rows L (levels × parameters) with part-worths ``L β`` of every level of ``attribute``
        (for a numeric attribute: at each tested value)."""
        if attribute in self.numeric:
            return self.numeric_basis(attribute, self.tested_values(attribute))
        m = self.matrices[attribute]
        out = np.zeros((m.shape[0], self.n_parameters))
        out[:, self.blocks[attribute]] = m
        return out

    def extrapolation(self, products: pd.DataFrame) -> pd.DataFrame:
        """Cells of ``products`` outside the tested range of price or a numeric attribute.

        ``row`` (0-based position), ``attribute, value, tested_min, tested_max``, ``outside_by``
        (value − tested_max above the range, value − tested_min below it) and ``outside_share``
        (``|outside_by|`` / the tested range). Empty when everything lies within what was tested.
        """
        rows = []
        for a in [*self.numeric, "price"]:
            if a not in products.columns:
                continue
            x = pd.to_numeric(products[a], errors="coerce").to_numpy(dtype=float)
            grid = self.tested_values(a)
            lo, hi = float(grid.min()), float(grid.max())
            by = np.where(x > hi, x - hi, np.where(x < lo, x - lo, 0.0))
            for i in np.flatnonzero(np.isfinite(x) & (by != 0)):
                rows.append(
                    (int(i), a, float(x[i]), lo, hi, float(by[i]), abs(float(by[i])) / (hi - lo))
                )
        return pd.DataFrame(
            rows,
            columns=[
                "row",
                "attribute",
                "value",
                "tested_min",
                "tested_max",
                "outside_by",
                "outside_share",
            ],
        )

    def price_rows(self, prices) -> np.ndarray:
        """Rows giving the utility of each price (linear term, or part-worths interpolated
        between tested prices and extended along the nearest segment outside them)."""
        p = np.atleast_1d(np.asarray(prices, dtype=float))
        out = np.zeros((p.size, self.n_parameters))
        if self.price == "linear":
            out[:, self.blocks["price"].start] = p / self.price_scale
            return out
        grid = np.asarray(self.prices, dtype=float)
        rows = self.level_rows("price")
        i = np.clip(np.searchsorted(grid, p, side="right") - 1, 0, grid.size - 2)
        t = (p - grid[i]) / (grid[i + 1] - grid[i])
        return rows[i] * (1 - t)[:, None] + rows[i + 1] * t[:, None]

    def price_slope_row(self) -> np.ndarray:
        """Utility per currency unit: the linear coefficient, or for part-worth price the slope
        between the lowest and the highest tested price."""
        if self.price == "linear":
            return self.price_rows([1.0])[0]
        lo, hi = min(self.prices), max(self.prices)
        r = self.price_rows([lo, hi])
        return (r[1] - r[0]) / (hi - lo)

    def none_row(self) -> np.ndarray:
        out = np.zeros(self.n_parameters)
        if self.none:
            out[self.blocks["none"].start] = 1.0
        return out

    def profile_rows(self, products: pd.DataFrame, *, source: str = "scenario") -> np.ndarray:
        """Parameter rows (products × parameters) of products described by levels and price."""
        problems = []
        need = list(self.levels) + ["price"]
        missing = [c for c in need if c not in products.columns]
        if missing:
            raise InputError(
                [
                    Problem(
                        source,
                        None,
                        c,
                        "a column for every attribute and price"
                        + suggestion(c, map(str, products.columns)),
                        "no such column",
                    )
                    for c in missing
                ]
            )
        out = np.zeros((len(products), self.n_parameters))
        rows = np.arange(len(products)) + int(products.attrs.get("row_offset", 2))
        for a, levels in self.levels.items():
            if a in self.numeric:
                # any value: between tested values it interpolates, outside it extrapolates (flagged)
                x = _numbers(products[a], products.attrs.get("decimal"))
                for r, v in zip(rows[~np.isfinite(x)], products[a][~np.isfinite(x)], strict=True):
                    problems.append(
                        Problem(source, int(r), a, f"a number (tested {levels[0]}–{levels[-1]})", v)
                    )
                out += self.numeric_basis(a, np.nan_to_num(x, nan=float(levels[0])))
                continue
            text = products[a].astype("string").str.strip()
            pos = pd.Index(levels).get_indexer(text.fillna(""))
            for r, v in zip(rows[pos < 0], text[pos < 0], strict=True):
                problems.append(
                    Problem(
                        source,
                        int(r),
                        a,
                        "one of the tested levels: "
                        + ", ".join(levels)
                        + suggestion(str(v), levels),
                        v,
                    )
                )
            out += self.level_rows(a)[np.maximum(pos, 0)]
        price = _numbers(products["price"], products.attrs.get("decimal"))
        for r, v in zip(
            rows[~np.isfinite(price)], products["price"][~np.isfinite(price)], strict=True
        ):
            problems.append(Problem(source, int(r), "price", "a numeric price", v))
        if problems:
            raise InputError(problems)
        return out + self.price_rows(price)


def _numbers(values: pd.Series, decimal=None) -> np.ndarray:
    raw = values
    if decimal == "," and not pd.api.types.is_numeric_dtype(raw):
        raw = raw.astype("string").str.replace(",", ".", regex=False)
    if not pd.api.types.is_numeric_dtype(raw):
        raw = raw.astype("string").str.strip()
    return pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)


@dataclass(frozen=True)
class ChoiceData:
    """Choice tasks in the padded layout the likelihoods use.

    ========== ============================ ==================================================
    X          n_choices × max_alts × P     coded attributes, price and none constant
    available  n_choices × max_alts (bool)  False on padding
    chosen     n_choices (int)              position of the chosen alternative
    respondent n_choices (int)              index into ``respondents``
    weight     n_choices (float)            the respondent's weight
    segment    n_choices (object)           the respondent's segment
    ========== ============================ ==================================================
    """

    X: np.ndarray
    available: np.ndarray
    chosen: np.ndarray
    respondent: np.ndarray
    respondents: np.ndarray
    weight: np.ndarray
    segment: np.ndarray
    coding: Coding
    notes: tuple[str, ...] = ()

    @property
    def n_choices(self) -> int:
        return int(self.chosen.size)

    def subset(self, mask: np.ndarray) -> ChoiceData:
        """The tasks where ``mask`` is True (respondent indices renumbered)."""
        keep_resp, respondent = np.unique(self.respondent[mask], return_inverse=True)
        return ChoiceData(
            self.X[mask],
            self.available[mask],
            self.chosen[mask],
            respondent,
            self.respondents[keep_resp],
            self.weight[mask],
            self.segment[mask],
            self.coding,
            self.notes,
        )


def _coding_matrix(n_levels: int, coding: str) -> np.ndarray:
    m = np.zeros((n_levels, n_levels - 1))
    m[np.arange(1, n_levels), np.arange(n_levels - 1)] = 1.0
    if coding == "effects":
        m[0, :] = -1.0
    return m


ABSENCE_LEVELS = frozenset({"no", "none", "false", "0", "without", "not included", "excluded"})


def _as_number(text: str) -> float | None:
    try:
        x = float(str(text).strip().replace(",", "."))
    except ValueError:
        return None
    return x if np.isfinite(x) else None


def order_levels(seen: list[str]) -> tuple[list[str], str]:
    """The contract's default level order (§5) and the rule that produced it.

    ======================== ========================================================
    rule                     order
    ======================== ========================================================
    absence first            a level meaning "not there" (``no``, ``none``, ``false``,
                             ``0``, ``without``, ``not included``, ``excluded``, any
                             case) first, the others in order of first appearance
    numeric ascending        every level reads as a number: ascending; a single text
                             level among numbers (``unlimited``) goes last
    first appearance         otherwise, the order the levels first appear in the data
    ======================== ========================================================

    The first level is the reference, so a binary feature's part-worth reads as "has it"
    minus "lacks it" whatever order the file shows the levels in.
    """
    seen = [str(x) for x in seen]
    numbers = {lv: _as_number(lv) for lv in seen}
    nums = sorted((lv for lv in seen if numbers[lv] is not None), key=lambda lv: numbers[lv])
    texts = [lv for lv in seen if numbers[lv] is None]
    absent = [lv for lv in texts if lv.strip().lower() in ABSENCE_LEVELS]
    if nums and not texts:
        return nums, "numeric ascending"
    if len(nums) >= 2 and len(texts) == 1:
        if absent:
            return texts + nums, f"absence level '{texts[0]}' first, then numeric ascending"
        return nums + texts, f"numeric ascending, '{texts[0]}' last"
    if absent:
        return absent[:1] + [
            lv for lv in seen if lv != absent[0]
        ], f"absence level '{absent[0]}' first"
    return seen, "first appearance"


def _resolve_levels(
    answers: pd.DataFrame, attributes: list[str], levels: dict | None, source: str
) -> tuple[dict[str, list[str]], list[str]]:
    """Level order per attribute: the given order (study.toml) where known, else
    :func:`order_levels` (absence first, numbers ascending, else first appearance)."""
    real = answers[~answers["none"]]
    out: dict[str, list[str]] = {}
    notes: list[str] = []
    problems = []
    for a in attributes:
        seen = [str(x) for x in pd.unique(real[a].dropna())]
        given = None if not levels or a not in levels else [str(x) for x in levels[a]]
        if given is None:
            order, rule = order_levels(seen)
            notes.append(
                f"{a}: level order {' < '.join(order)} ({rule}; reference {order[0] if order else '–'})"
            )
        else:
            unknown = sorted(set(seen) - set(given))
            for level in unknown:
                r = real.loc[real[a].astype(str) == level, "row"].iloc[0]
                problems.append(
                    Problem(
                        source,
                        int(r),
                        a,
                        "one of the levels in study.toml: "
                        + ", ".join(given)
                        + suggestion(level, given),
                        level,
                    )
                )
            order = [x for x in given if x in set(seen)]
            dropped = [x for x in given if x not in set(seen)]
            if dropped:
                notes.append(
                    f"{a}: level(s) {', '.join(dropped)} from the study are not in the data and cannot be estimated"
                )
        if len(order) < 2 and not problems:
            r = real["row"].iloc[0] if len(real) else None
            problems.append(
                Problem(
                    source, None if r is None else int(r), a, "at least two levels shown", order
                )
            )
        out[a] = order
    if problems:
        raise InputError(problems)
    return out, notes


def _numeric_spec(
    numeric, attributes: list[str], source: str = "study.toml"
) -> dict[str, tuple[float, ...]]:
    """``[conjoint] numeric`` (names, or name → knots for piecewise) as name → knots."""
    if not numeric:
        return {}
    spec = dict(numeric) if isinstance(numeric, dict) else {str(a): () for a in numeric}
    problems = []
    out = {}
    for a, knots in spec.items():
        a = str(a)
        if a == "price":
            continue  # price is numeric already
        if a not in attributes:
            problems.append(
                Problem(
                    source,
                    None,
                    "conjoint.numeric",
                    "an attribute of the conjoint (" + ", ".join(attributes) + ")",
                    a,
                )
            )
            continue
        try:
            out[a] = tuple(sorted(float(k) for k in (knots or ())))
        except (TypeError, ValueError):
            problems.append(
                Problem(
                    source,
                    None,
                    f"conjoint.piecewise.{a}",
                    "knots as numbers, e.g. [100, 500]",
                    knots,
                )
            )
    if problems:
        raise InputError(problems)
    return out


def _numeric_levels(real: pd.DataFrame, numeric: dict[str, tuple[float, ...]], source: str):
    """Tested values (as level text, ascending), scale and checked knots of numeric attributes."""
    problems, levels, scales = [], {}, {}
    for a, knots in numeric.items():
        x = _numbers(real[a], real.attrs.get("decimal"))
        bad = ~np.isfinite(x)
        for r, v in zip(real["row"].to_numpy()[bad], real[a].to_numpy()[bad], strict=True):
            problems.append(
                Problem(source, int(r), a, "a number ([conjoint] numeric lists this attribute)", v)
            )
        grid = np.unique(x[~bad])
        if grid.size < 2:
            problems.append(
                Problem(source, None, a, "at least two different values shown", grid.tolist())
            )
            continue
        inner = set(grid[1:-1].tolist())
        wrong = [k for k in knots if k not in inner]
        if wrong:
            problems.append(
                Problem(
                    "study.toml",
                    None,
                    f"conjoint.piecewise.{a}",
                    "knots among the tested values strictly inside the range: "
                    + ", ".join(f"{v:g}" for v in grid[1:-1]),
                    wrong,
                )
            )
        levels[a] = [f"{v:g}" for v in grid]
        scales[a] = float(np.abs(grid).max()) or 1.0
    if problems:
        raise InputError(problems)
    return levels, scales


def prepare_choice_data(
    answers: pd.DataFrame,
    *,
    levels: dict[str, list[str]] | None = None,
    coding: str = "dummy",
    price: str = "linear",
    numeric=None,
) -> ChoiceData:
    """Turn validated conjoint answers into the padded arrays of :class:`ChoiceData`.

    Parameters
    ----------
    answers
        Output of ``wtp.io.validate_conjoint`` (then ``attach_segments``):

        ============== ==============================================
        respondent_id  identifier
        task, alt      task and alternative
        <attribute>    level as text (attributes in ``attrs['attributes']``)
        price          float (NaN on the no-choice row)
        none           bool: the no-choice alternative
        chosen         0/1
        segment        optional (default ``all``)
        weight         optional positive (default 1)
        ============== ==============================================
    levels
        Attribute → ordered levels; the first is the reference. Attributes not given use the
        order of first appearance.
    coding
        ``"dummy"`` (reference level = 0) or ``"effects"`` (part-worths sum to 0 per attribute).
    price
        ``"linear"`` (one coefficient per currency unit) or ``"partworth"`` (one part-worth per
        tested price).
    numeric
        Attributes whose levels are quantities (seats, GB, minutes): a list of names (linear:
        one utility per unit) or name → knots (piecewise linear, knots among the tested values).
        Their cells must be numbers; their levels are the tested values, ascending.
    """
    if coding not in ("dummy", "effects"):
        raise InputError(Problem("options", None, "coding", "'dummy' or 'effects'", coding))
    if price not in ("linear", "partworth"):
        raise InputError(Problem("options", None, "price", "'linear' or 'partworth'", price))
    source = str(answers.attrs.get("source", "conjoint.csv"))
    attributes = list(answers.attrs.get("attributes") or [])
    if not attributes:
        reserved = {
            "respondent_id",
            "task",
            "alt",
            "price",
            "chosen",
            "none",
            "segment",
            "weight",
            "row",
        }
        attributes = [c for c in answers.columns if c not in reserved]
    frame = answers
    if "none" not in frame.columns:
        frame = frame.assign(none=False)
    if "row" not in frame.columns:
        frame = frame.assign(row=np.arange(len(frame)) + 2)
    frame = frame.assign(none=frame["none"].astype(bool))
    numeric = _numeric_spec(numeric, attributes)
    real = frame[~frame["none"]]
    real.attrs.update(answers.attrs)
    numeric_levels, numeric_scale = _numeric_levels(real, numeric, source)
    categorical = [a for a in attributes if a not in numeric]
    cat_order, notes = _resolve_levels(frame, categorical, levels, source)
    level_order = {a: numeric_levels[a] if a in numeric else cat_order[a] for a in attributes}
    prices = sorted(float(p) for p in pd.unique(frame.loc[~frame["none"], "price"].dropna()))
    if len(prices) < 2:
        raise InputError(
            Problem(
                source,
                None,
                "price",
                "at least two different prices shown (price is needed for willingness to pay)",
                prices,
            )
        )
    has_none = bool(frame["none"].any())

    names: list[str] = []
    blocks: dict[str, slice] = {}
    matrices: dict[str, np.ndarray] = {}
    for a, lv in level_order.items():
        if a in numeric:
            edges = [lv[0], *(f"{k:g}" for k in numeric[a]), lv[-1]]
            pieces = (
                [a]
                if len(edges) == 2
                else [f"{a}[{edges[j]}-{edges[j + 1]}]" for j in range(len(edges) - 1)]
            )
            blocks[a] = slice(len(names), len(names) + len(pieces))
            names += pieces
            continue
        matrices[a] = _coding_matrix(len(lv), coding)
        blocks[a] = slice(len(names), len(names) + len(lv) - 1)
        names += [f"{a}={x}" for x in lv[1:]]
    price_scale = float(max(abs(prices[0]), abs(prices[-1]))) or 1.0
    if price == "linear":
        blocks["price"] = slice(len(names), len(names) + 1)
        names.append("price")
    else:
        matrices["price"] = _coding_matrix(len(prices), coding)
        blocks["price"] = slice(len(names), len(names) + len(prices) - 1)
        names += [f"price={p:g}" for p in prices[1:]]
    if has_none:
        blocks["none"] = slice(len(names), len(names) + 1)
        names.append("none")
    spec = Coding(
        level_order,
        prices,
        coding,
        price,
        has_none,
        price_scale,
        names,
        blocks,
        matrices,
        numeric,
        numeric_scale,
    )

    # rows → (task, position): tasks keep the order of first appearance
    task_key = pd.MultiIndex.from_arrays(
        [frame["respondent_id"].to_numpy(), frame["task"].to_numpy()]
    )
    task_idx, _ = pd.factorize(task_key)
    order = np.argsort(task_idx, kind="stable")
    frame = frame.iloc[order]
    task_idx = task_idx[order]
    pos = frame.groupby(task_idx, sort=False).cumcount().to_numpy()
    n_tasks = int(task_idx.max()) + 1
    max_alts = int(pos.max()) + 1
    is_none = frame["none"].to_numpy()

    rows = np.zeros((len(frame), len(names)))
    for a, lv in level_order.items():
        if a in numeric:
            x = np.where(
                is_none,
                float(lv[0]),
                np.nan_to_num(_numbers(frame[a], answers.attrs.get("decimal")), nan=float(lv[0])),
            )
            rows += np.where(is_none[:, None], 0.0, spec.numeric_basis(a, x))
            continue
        codes = pd.Index(lv).get_indexer(frame[a].astype("string").fillna(""))
        block = matrices[a][np.maximum(codes, 0)]
        block[is_none] = 0.0
        rows[:, blocks[a]] = block
    p = frame["price"].to_numpy(dtype=float)
    if price == "linear":
        rows[:, blocks["price"].start] = np.where(is_none, 0.0, p / price_scale)
    else:
        codes = np.searchsorted(np.asarray(prices), np.where(is_none, prices[0], p))
        block = matrices["price"][codes]
        block[is_none] = 0.0
        rows[:, blocks["price"]] = block
    if has_none:
        rows[:, blocks["none"].start] = is_none.astype(float)

    X = np.zeros((n_tasks, max_alts, len(names)))
    X[task_idx, pos] = rows
    available = np.zeros((n_tasks, max_alts), dtype=bool)
    available[task_idx, pos] = True
    chosen_mask = frame["chosen"].to_numpy(dtype=float) == 1
    chosen = np.zeros(n_tasks, dtype=np.int64)
    chosen[task_idx[chosen_mask]] = pos[chosen_mask]

    first = np.r_[True, task_idx[1:] != task_idx[:-1]]
    resp_codes, respondents = pd.factorize(frame["respondent_id"].to_numpy()[first])
    seg = (
        frame["segment"].to_numpy(dtype=object)[first]
        if "segment" in frame.columns
        else np.full(n_tasks, RESERVED_SEGMENT, dtype=object)
    )
    w = (
        frame["weight"].to_numpy(dtype=float)[first]
        if "weight" in frame.columns
        else np.ones(n_tasks)
    )
    return ChoiceData(
        X,
        available,
        chosen,
        resp_codes.astype(np.int64),
        np.asarray(respondents, dtype=object),
        w,
        seg,
        spec,
        tuple(notes),
    )


# ----------------------------------------------------------------------------------------------
# Aggregate multinomial logit


@dataclass(frozen=True)
class MNLFit:
    """One aggregate MNL fit: estimates, covariances and fit statistics.

    ``cov`` is the model-based covariance (inverse Hessian of the weighted log-likelihood);
    ``cov_cluster`` the respondent-clustered sandwich ``G/(G−1) · H⁻¹ (Σ_g s_g s_gᵀ) H⁻¹``
    with ``s_g`` the score summed over respondent ``g``'s tasks (see :func:`cluster_covariance`).
    """

    beta: np.ndarray
    cov: np.ndarray
    loglik: float
    loglik_null: float
    converged: bool
    iterations: int
    n_respondents: int
    n_choices: int
    cov_cluster: np.ndarray | None = None


def _mnl_value_grad_hess(
    beta: np.ndarray,
    X: np.ndarray,
    available: np.ndarray,
    chosen: np.ndarray,
    w: np.ndarray,
    hessian: bool = True,
):
    """Weighted negative log-likelihood, its gradient and Hessian, fully vectorised."""
    v = X @ beta
    v = np.where(available, v, -np.inf)
    vmax = v.max(axis=1, keepdims=True)
    e = np.exp(v - vmax)
    denom = e.sum(axis=1, keepdims=True)
    p = e / denom
    n = np.arange(chosen.size)
    ll = w @ (v[n, chosen] - vmax[:, 0] - np.log(denom[:, 0]))
    xbar = np.einsum("ta,tap->tp", p, X)
    grad = w @ (X[n, chosen] - xbar)
    if not hessian:
        return -ll, -grad, None
    flat = X.reshape(-1, X.shape[2])
    wp = (p * w[:, None]).reshape(-1)
    H = (flat * wp[:, None]).T @ flat - (xbar * w[:, None]).T @ xbar
    return -ll, -grad, H


def fit_mnl(data: ChoiceData, *, max_iter: int = 200) -> MNLFit:
    """Maximum-likelihood aggregate MNL on ``data`` (weights in the likelihood).

    Weights are rescaled to average 1 per choice so the standard errors (inverse of the
    Hessian of the weighted log-likelihood) keep the scale of the sample size.
    """
    from scipy import optimize

    X, avail, chosen = data.X, data.available, data.chosen
    w = data.weight / data.weight.mean()
    cache: dict[bytes, tuple] = {}

    def evaluate(b):
        key = b.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = _mnl_value_grad_hess(b, X, avail, chosen, w)
        return cache[key]

    res = optimize.minimize(
        lambda b: evaluate(b)[0],
        np.zeros(X.shape[2]),
        jac=lambda b: evaluate(b)[1],
        hess=lambda b: evaluate(b)[2],
        method="trust-exact",
        options={"maxiter": max_iter, "gtol": 1e-7},
    )
    _, grad, H = evaluate(res.x)
    try:
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(H)
    converged = bool(res.success or np.max(np.abs(grad)) < 1e-4 * max(1.0, float(w.sum())) ** 0.5)
    n_alts = avail.sum(axis=1)
    ll_null = float(-(w @ np.log(n_alts)))
    scores = _respondent_scores(res.x, X, avail, chosen, w, data.respondent)
    robust = cluster_covariance(cov, scores)
    return MNLFit(
        res.x,
        cov,
        float(-res.fun),
        ll_null,
        converged,
        int(res.nit),
        int(np.unique(data.respondent).size),
        data.n_choices,
        robust,
    )


def _respondent_scores(
    beta: np.ndarray,
    X: np.ndarray,
    available: np.ndarray,
    chosen: np.ndarray,
    w: np.ndarray,
    respondent: np.ndarray,
) -> np.ndarray:
    """Weighted score (gradient of the log-likelihood) summed per respondent: G × P."""
    v = np.where(available, X @ beta, -np.inf)
    v = v - v.max(axis=1, keepdims=True)
    p = np.exp(v)
    p /= p.sum(axis=1, keepdims=True)
    s = w[:, None] * (X[np.arange(chosen.size), chosen] - np.einsum("ta,tap->tp", p, X))
    codes, _ = pd.factorize(respondent)
    out = np.zeros((int(codes.max()) + 1 if codes.size else 0, X.shape[2]))
    np.add.at(out, codes, s)
    return out


def cluster_covariance(bread: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Cluster-robust (sandwich) covariance ``G/(G−1) · B (Σ_g s_g s_gᵀ) B``.

    ``bread`` is the inverse Hessian of the negative log-likelihood, ``scores`` the score
    summed within each cluster (G × P). Respondents answer several tasks, and their errors are
    correlated across them (their tastes differ from the average), so the model-based
    covariance, which treats every task as independent, is too small. ``G/(G−1)`` is the usual
    small-sample factor for maximum-likelihood models (Stata's ``vce(cluster)`` for logit);
    statsmodels multiplies by ``(N−1)/(N−K)`` as well, a least-squares factor we do not use.
    """
    g = scores.shape[0]
    meat = scores.T @ scores
    factor = g / (g - 1) if g > 1 else np.nan
    return factor * (bread @ meat @ bread)


def _free_columns(X: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Parameters the data can identify: the column varies within at least one task."""
    cnt = available.sum(axis=1, keepdims=True)
    mean = (X * available[..., None]).sum(axis=1, keepdims=True) / cnt[..., None]
    spread = (np.abs(X - mean) * available[..., None]).sum(axis=(0, 1))
    return spread > 1e-12


def fit_mnl_identified(data: ChoiceData) -> MNLFit:
    """:func:`fit_mnl` on the parameters the data identify; the others are NaN.

    A segment that never saw some level (or never saw none) cannot estimate its part-worth;
    the rest of the model is still estimable.
    """
    free = _free_columns(data.X, data.available)
    if free.all():
        return fit_mnl(data)
    sub = ChoiceData(
        data.X[:, :, free],
        data.available,
        data.chosen,
        data.respondent,
        data.respondents,
        data.weight,
        data.segment,
        data.coding,
        data.notes,
    )
    fit = fit_mnl(sub)
    p = free.size
    beta = np.full(p, np.nan)
    beta[free] = fit.beta
    cov = np.full((p, p), np.nan)
    cov[np.ix_(free, free)] = fit.cov
    robust = np.full((p, p), np.nan)
    robust[np.ix_(free, free)] = fit.cov_cluster
    return MNLFit(
        beta,
        cov,
        fit.loglik,
        fit.loglik_null,
        fit.converged,
        fit.iterations,
        fit.n_respondents,
        fit.n_choices,
        robust,
    )


# ----------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class IndividualDraws:
    """Posterior draws of individual part-worths (hierarchical Bayes).

    ``draws`` is respondents × draws × parameters in the parameterisation of ``Coding``.
    """

    respondent_id: np.ndarray
    segment: np.ndarray
    weight: np.ndarray
    draws: np.ndarray


@dataclass(frozen=True)
class ConjointResult:
    """Part-worths, importances and willingness to pay of a choice-based conjoint.

    Attributes
    ----------
    partworths
        ``segment, attribute, level, utility, se`` — every level of every attribute (the
        reference level is 0 under dummy coding), the linear price as ``price, per_unit`` (utility
        per currency unit) or one row per tested price, and ``none, none``.
    importances
        ``segment, attribute, importance`` — range of an attribute's part-worths (price:
        ``|β_price| ×`` tested price range), normalised to 100 within a segment.
    wtp
        ``segment, attribute, level, wtp, lower, upper, se, valid`` — money value of a level
        against the attribute's first level, ``−(β_level − β_first) / β_price``, with a 95%
        interval (delta method for MNL, posterior quantiles for HB). ``valid`` is False where
        the segment's price coefficient is not negative and significant.
    parameters
        ``segment, parameter, estimate, se, z, p_value`` — the raw coefficients (price in units
        of ``price / coding.price_scale``).
    fit
        ``segment, n_respondents, n_choices, loglik, loglik_null, rho2, converged, price_coef,
        price_p_value`` per segment.
    """

    partworths: pd.DataFrame
    importances: pd.DataFrame
    wtp: pd.DataFrame
    parameters: pd.DataFrame
    fit: pd.DataFrame
    coding: Coding
    method: str
    segments: list[str]
    betas: dict[str, np.ndarray]
    covariances: dict[str, np.ndarray]
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    individual: IndividualDraws | None = None
    diagnostics: pd.DataFrame | None = None
    n_respondents: int = 0
    n_used: int = 0
    source: str = "conjoint.csv"
    se_type: str = "cluster"  # "cluster", "plain" (MNL) or "posterior" (HB)
    method_reason: str = ""  # why this model was used (set by the pipeline; shown in the report)

    @property
    def attributes(self) -> dict[str, list[str]]:
        return self.coding.levels

    @property
    def prices(self) -> list[float]:
        return self.coding.prices

    @property
    def price_ok(self) -> dict[str, bool]:
        """Per segment: is the price coefficient negative and significant (WTP meaningful)?"""
        f = self.fit.set_index("segment")
        return {
            s: bool(f.loc[s, "price_coef"] < 0 and f.loc[s, "price_p_value"] < 0.05)
            for s in self.segments
        }

    def summary(self) -> pd.DataFrame:
        """One row per segment: sample, fit, price coefficient and whether WTP is meaningful."""
        out = self.fit.copy()
        ok = self.price_ok
        out["wtp_meaningful"] = out["segment"].map(ok)
        return out

    def individual_partworths(self) -> pd.DataFrame | None:
        """HB: posterior mean part-worths of every respondent
        (``respondent_id, segment, attribute, level, utility``); ``None`` for MNL."""
        if self.individual is None:
            return None
        ind = self.individual
        mean = ind.draws.mean(axis=1)  # respondents × P
        blocks = []
        c = self.coding
        names = []
        for a, levels in c.levels.items():
            if a in c.numeric:
                names += [(a, label, r) for label, r in c.unit_rows(a)]
            else:
                names += [(a, lv, c.level_rows(a)[i]) for i, lv in enumerate(levels)]
        if c.price == "linear":
            names.append(("price", "per_unit", c.price_slope_row()))
        else:
            names += [("price", f"{p:g}", c.level_rows("price")[i]) for i, p in enumerate(c.prices)]
        if c.none:
            names.append(("none", "none", c.none_row()))
        rows = np.array([r for _, _, r in names])
        u = mean @ rows.T  # respondents × levels
        n_resp, n_lv = u.shape
        blocks = pd.DataFrame(
            {
                "respondent_id": np.repeat(ind.respondent_id, n_lv),
                "segment": np.repeat(ind.segment, n_lv),
                "attribute": np.tile([a for a, _, _ in names], n_resp),
                "level": np.tile([lv for _, lv, _ in names], n_resp),
                "utility": u.ravel(),
            }
        )
        return blocks

    def to_frame(self) -> pd.DataFrame:
        """Part-worths with their WTP and the attribute's importance, one row per level."""
        out = self.partworths.merge(
            self.wtp[["segment", "attribute", "level", "wtp", "lower", "upper"]],
            on=["segment", "attribute", "level"],
            how="left",
        )
        return out.merge(self.importances, on=["segment", "attribute"], how="left")


def _z_p(estimate, se):
    from scipy.special import ndtr

    z = np.asarray(estimate, dtype=float) / np.asarray(se, dtype=float)
    return z, 2 * ndtr(-np.abs(z))


def _linear_tables(seg: str, coding: Coding, beta: np.ndarray, cov: np.ndarray):
    """Part-worths, importances and WTP of one segment from coefficients and their covariance."""
    pw, imp, wtp = [], [], []
    slope = coding.price_slope_row()
    b_price = np.float64(slope @ beta)
    if b_price == 0:
        b_price = np.float64(np.nan)  # WTP undefined, not infinite
    with np.errstate(invalid="ignore", divide="ignore"):
        for a, levels in coding.levels.items():
            L = coding.level_rows(a)
            u = L @ beta
            se = np.sqrt(np.maximum(np.einsum("ip,pq,iq->i", L, cov, L), 0.0))
            units = coding.unit_rows(a) if a in coding.numeric else []
            if units:
                # a quantity: its part-worth is a utility per unit, like linear price
                pw += [
                    (seg, a, label, float(r @ beta), float(np.sqrt(max(r @ cov @ r, 0.0))))
                    for label, r in units
                ]
            else:
                pw += [(seg, a, lv, u[i], se[i]) for i, lv in enumerate(levels)]
            imp.append((seg, a, float(np.nanmax(u) - np.nanmin(u))))
            contrasts = [(lv, L[i] - L[0], i > 0) for i, lv in enumerate(levels)] + [
                (label, r, True) for label, r in units
            ]
            for lv, c, free in contrasts:
                d = float(c @ beta)
                value = -d / b_price
                g = -c / b_price + d / b_price**2 * slope
                s = float(np.sqrt(max(g @ cov @ g, 0.0))) if free else 0.0
                wtp.append((seg, a, lv, value if free else 0.0, s))
        if coding.price == "linear":
            s_price = float(np.sqrt(max(slope @ cov @ slope, 0.0)))
            pw.append((seg, "price", "per_unit", b_price, s_price))
            imp.append((seg, "price", abs(b_price) * (max(coding.prices) - min(coding.prices))))
        else:
            L = coding.level_rows("price")
            u = L @ beta
            se = np.sqrt(np.maximum(np.einsum("ip,pq,iq->i", L, cov, L), 0.0))
            pw += [(seg, "price", f"{p:g}", u[i], se[i]) for i, p in enumerate(coding.prices)]
            imp.append((seg, "price", float(np.nanmax(u) - np.nanmin(u))))
        if coding.none:
            r = coding.none_row()
            pw.append((seg, "none", "none", float(r @ beta), float(np.sqrt(max(r @ cov @ r, 0.0)))))
    return pw, imp, wtp


def _normalise_importances(imp: pd.DataFrame) -> pd.DataFrame:
    total = imp.groupby("segment", sort=False)["importance"].transform("sum")
    return imp.assign(importance=100 * imp["importance"] / total)


def _finish_wtp(wtp: pd.DataFrame, ok: dict[str, bool]) -> pd.DataFrame:
    wtp = wtp.copy()
    if "lower" not in wtp.columns:
        wtp["lower"] = wtp["wtp"] - _Z95 * wtp["se"]
        wtp["upper"] = wtp["wtp"] + _Z95 * wtp["se"]
    wtp["valid"] = wtp["segment"].map(ok).astype(bool)
    spread = [c for c in ("respondents_p25", "respondents_p75") if c in wtp.columns]
    return wtp[["segment", "attribute", "level", "wtp", "lower", "upper", "se", "valid", *spread]]


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> np.ndarray:
    """Weighted ``q``-quantile over the first axis (respondents) of ``values`` (R × ...): the
    smallest value whose cumulative weight reaches ``q`` (NaN values sort last, never picked
    while weight remains)."""
    order = np.argsort(values, axis=0)
    v = np.take_along_axis(values, order, axis=0)
    cw = np.cumsum(weights[order], axis=0) / weights.sum()
    idx = np.argmax(cw >= q - 1e-12, axis=0)
    return np.take_along_axis(v, idx[None], axis=0)[0]


def _price_warnings(fit: pd.DataFrame) -> list[str]:
    out = []
    for r in fit.itertuples(index=False):
        if not np.isfinite(r.price_coef):
            out.append(
                f"segment {r.segment}: the price coefficient could not be estimated; willingness to pay is not available."
            )
        elif r.price_coef >= 0:
            out.append(
                f"segment {r.segment}: the price coefficient is not negative ({r.price_coef:.4g} per unit); "
                "willingness to pay is meaningless for this segment."
            )
        elif not r.price_p_value < 0.05:
            out.append(
                f"segment {r.segment}: the price coefficient is not significant (p = {r.price_p_value:.2g}); "
                "willingness to pay is meaningless for this segment."
            )
    return out


def _segment_order(segment: np.ndarray) -> list[str]:
    segs = [str(s) for s in pd.unique(segment)]
    return [s for s in segs if s != RESERVED_SEGMENT] + [RESERVED_SEGMENT]


def _estimate_mnl(data: ChoiceData, se: str = "cluster") -> tuple[dict, dict, list, list]:
    betas, covs, fits, notes = {}, {}, [], []
    for seg in _segment_order(data.segment):
        sub = data if seg == RESERVED_SEGMENT else data.subset(data.segment == seg)
        fit = fit_mnl_identified(sub)
        betas[seg], covs[seg] = fit.beta, fit.cov_cluster if se == "cluster" else fit.cov
        if se == "cluster" and fit.n_respondents < 2:
            notes.append(
                f"segment {seg}: one respondent, so no respondent-clustered standard errors; intervals are not available."
            )
        slope = data.coding.price_slope_row()
        with np.errstate(invalid="ignore"):
            pc = (
                float(slope @ np.nan_to_num(fit.beta))
                if np.isfinite(fit.beta[slope != 0]).all()
                else np.nan
            )
            pse = (
                float(np.sqrt(slope @ np.nan_to_num(fit.cov) @ slope))
                if np.isfinite(pc)
                else np.nan
            )
        _, pp = _z_p(pc, pse)
        fits.append(
            {
                "segment": seg,
                "n_respondents": fit.n_respondents,
                "n_choices": fit.n_choices,
                "loglik": fit.loglik,
                "loglik_null": fit.loglik_null,
                "rho2": 1 - fit.loglik / fit.loglik_null,
                "converged": fit.converged,
                "price_coef": pc,
                "price_p_value": float(pp),
            }
        )
        if not fit.converged:
            notes.append(
                f"segment {seg}: the MNL did not converge (a level chosen always or never?); treat its numbers with care."
            )
        if np.isnan(fit.beta).any():
            missing = [
                n for n, b in zip(data.coding.parameters, fit.beta, strict=True) if np.isnan(b)
            ]
            notes.append(f"segment {seg}: not identified by its data: {', '.join(missing)}.")
    return betas, covs, fits, notes


def estimate_conjoint(
    answers: pd.DataFrame,
    *,
    levels: dict[str, list[str]] | None = None,
    method: str = "mnl",
    coding: str = "dummy",
    price: str = "linear",
    rng: np.random.Generator | None = None,
    draws: int | None = None,
    tune: int | None = None,
    chains: int | None = None,
    progress=False,
    se: Literal["cluster", "plain"] = "cluster",
    numeric=None,
    time_budget: float | None = None,
    target_accept: float | None = None,
    until_converged: bool | None = None,
) -> ConjointResult:
    """Estimate part-worths, importances and willingness to pay per segment and for ``all``.

    Parameters
    ----------
    answers
        Validated long layout (``wtp.io.validate_conjoint`` then ``attach_segments``); see
        :func:`prepare_choice_data`.
    levels
        Attribute → ordered levels (first = reference), e.g. ``Study.attribute_levels``.
    method
        ``"mnl"`` — aggregate multinomial logit per segment and pooled (``all``), weights in
        the likelihood, standard errors clustered by respondent (see ``se``); ``"hb"`` — hierarchical MNL
        (``wtp.hb``) with individual part-worths; segment numbers are weighted means over the
        segment's respondents.
    coding
        ``"dummy"`` or ``"effects"``; importances and WTP do not depend on it.
    price
        ``"linear"`` (default) or ``"partworth"``; with part-worth price, WTP uses the slope
        between the lowest and highest tested price.
    rng
        The ``numpy.random.Generator`` HB sampling draws from (required for ``"hb"``;
        ``wtp.randomness.stage_rng(seed, "conjoint")``). MNL is deterministic.
    draws, tune, chains, time_budget, target_accept, until_converged
        HB sampler settings (None: the defaults of :func:`wtp.hb.fit_hb`, which samples until
        converged or out of time).
    progress
        Show the HB sampler's progress (bool or a :class:`wtp.progress.Reporter`).
    se
        MNL standard errors: ``"cluster"`` (default) — the sandwich clustered by respondent
        with the ``G/(G−1)`` correction, because a respondent's many tasks are not independent;
        ``"plain"`` — the inverse Hessian, which treats every task as a separate person and is
        too narrow for panel data. WTP intervals and the price p-value follow the choice.
    numeric
        Quantity attributes estimated as a utility per unit (see :func:`prepare_choice_data`);
        e.g. :func:`conjoint_numeric` of the study settings. partworths.csv then has one row
        ``level = per_unit`` (or one per piece), and wtp.csv the money value per unit besides
        the value of each tested amount against the lowest.
    """
    if method not in ("mnl", "hb"):
        raise InputError(Problem("options", None, "method", "'mnl' or 'hb'", method))
    if se not in ("cluster", "plain"):
        raise InputError(Problem("options", None, "se", "'cluster' or 'plain'", se))
    se_type = se if method == "mnl" else "posterior"
    data = prepare_choice_data(answers, levels=levels, coding=coding, price=price, numeric=numeric)
    source = str(answers.attrs.get("source", "conjoint.csv"))
    if method == "mnl":
        betas, covs, fits, notes = _estimate_mnl(data, se)
        pw, imp, wtp = [], [], []
        for seg in betas:
            a, b, c = _linear_tables(seg, data.coding, betas[seg], covs[seg])
            pw += a
            imp += b
            wtp += c
        partworths = pd.DataFrame(pw, columns=["segment", "attribute", "level", "utility", "se"])
        importances = _normalise_importances(
            pd.DataFrame(imp, columns=["segment", "attribute", "importance"])
        )
        wtp_frame = pd.DataFrame(wtp, columns=["segment", "attribute", "level", "wtp", "se"])
        fit = pd.DataFrame(fits)
        params = []
        for seg in betas:
            se = np.sqrt(np.diag(covs[seg]))
            z, p = _z_p(betas[seg], se)
            params.append(
                pd.DataFrame(
                    {
                        "segment": seg,
                        "parameter": data.coding.parameters,
                        "estimate": betas[seg],
                        "se": se,
                        "z": z,
                        "p_value": p,
                    }
                )
            )
        parameters = pd.concat(params, ignore_index=True)
        tables = (
            partworths,
            importances,
            wtp_frame,
            parameters,
            fit,
            betas,
            covs,
            None,
            None,
            notes,
        )
    else:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"method='hb' needs rng=numpy.random.Generator, got {type(rng).__name__}"
            )
        sampler = {
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "time_budget": time_budget,
            "target_accept": target_accept,
            "until_converged": until_converged,
        }
        tables = _estimate_hb(
            data, rng=rng, progress=progress, **{k: v for k, v in sampler.items() if v is not None}
        )
    return _assemble(
        data,
        method,
        tables,
        n_respondents=int(pd.Series(answers["respondent_id"]).nunique()),
        source=source,
        se_type=se_type,
    )


def _assemble(
    data: ChoiceData,
    method: str,
    tables: tuple,
    *,
    n_respondents: int,
    source: str,
    se_type: str = "posterior",
) -> ConjointResult:
    (
        partworths,
        importances,
        wtp_frame,
        parameters,
        fit,
        betas,
        covs,
        individual,
        diagnostics,
        notes,
    ) = tables
    warn = _price_warnings(fit)
    ok = {
        r.segment: bool(r.price_coef < 0 and r.price_p_value < 0.05)
        for r in fit.itertuples(index=False)
    }
    # the order used (contract §5): 1 = the reference level; price and none have no order
    position = {
        (a, lv): i + 1 for a, levels in data.coding.levels.items() for i, lv in enumerate(levels)
    }
    partworths = partworths.assign(
        level_order=[
            position.get((a, str(lv)), np.nan)
            for a, lv in zip(partworths["attribute"], partworths["level"], strict=True)
        ]
    )
    return ConjointResult(
        partworths=partworths.reset_index(drop=True),
        importances=importances.reset_index(drop=True),
        wtp=_finish_wtp(wtp_frame, ok).reset_index(drop=True),
        parameters=parameters,
        fit=fit,
        coding=data.coding,
        method=method,
        segments=list(betas),
        betas=betas,
        covariances=covs,
        warnings=tuple(warn),
        notes=tuple(data.notes) + tuple(notes),
        individual=individual,
        diagnostics=diagnostics,
        n_respondents=n_respondents,
        n_used=int(data.respondents.size),
        source=source,
        se_type=se_type,
    )


def result_from_draws(
    data: ChoiceData, draws: np.ndarray, *, diagnostics: pd.DataFrame | None = None
) -> ConjointResult:
    """A :class:`ConjointResult` from posterior draws of individual part-worths.

    ``draws`` is respondents (ordered as ``data.respondents``) × draws × parameters (ordered as
    ``data.coding.parameters``); see :func:`tables_from_draws` for how segments are summarised.
    """
    draws = np.asarray(draws, dtype=float)
    if (
        draws.ndim != 3
        or draws.shape[0] != data.respondents.size
        or draws.shape[2] != data.coding.n_parameters
    ):
        raise ValueError(
            f"draws must be respondents × draws × parameters {data.respondents.size} × D × {data.coding.n_parameters}, got {draws.shape}"
        )
    tables = tables_from_draws(data, draws, diagnostics)
    return _assemble(
        data, "hb", tables, n_respondents=int(data.respondents.size), source="conjoint.csv"
    )


def _estimate_hb(data: ChoiceData, *, rng, progress=False, keep_draws=1000, **sampler):
    """Hierarchical MNL through the shared sampler in :mod:`wtp.hb` (unweighted individual fits;
    weights enter when respondents are summarised per segment)."""
    from wtp import hb

    _, seg_resp = _respondent_arrays(data)
    groups = [s for s in _segment_order(data.segment) if s != RESERVED_SEGMENT] or [
        RESERVED_SEGMENT
    ]
    group_index = pd.Index(groups).get_indexer(seg_resp)
    hb_data = hb.choice_data(
        data.X,
        data.available,
        data.chosen,
        data.respondent,
        group_index,
        param_names=list(data.coding.parameters),
        respondent_ids=list(data.respondents),
        group_names=groups,
    )
    fit = hb.fit_hb(hb_data, rng=rng, progress=progress, **sampler)
    beta = fit.beta_draws  # draws × respondents × P
    if beta.shape[0] > keep_draws:
        # evenly thinned: enough for intervals and RFC, and bounded memory for the simulator
        beta = beta[np.linspace(0, beta.shape[0] - 1, keep_draws).round().astype(int)]
    d = fit.diagnostics
    diagnostics = fit.summary()
    diagnostics["sampler"] = fit.sampler
    # what was run and why, for diagnostics.json (timings live only there)
    diagnostics.attrs["hb"] = {k: v for k, v in d.items() if not isinstance(v, dict)}
    tables = tables_from_draws(data, np.transpose(beta, (1, 0, 2)), diagnostics)
    notes = list(tables[-1])
    if not d.get("converged", False):
        notes.append(hb.unconverged_advice(d))
    return (*tables[:-1], notes)


def _respondent_arrays(data: ChoiceData) -> tuple[np.ndarray, np.ndarray]:
    """Weight and segment of each respondent (indexed like ``data.respondents``)."""
    n = data.respondents.size
    w = np.ones(n)
    seg = np.empty(n, dtype=object)
    w[data.respondent] = data.weight
    seg[data.respondent] = data.segment
    return w, seg


def tables_from_draws(data: ChoiceData, draws: np.ndarray, diagnostics: pd.DataFrame | None = None):
    """Result tables from posterior draws of individual part-worths (respondents × draws × P).

    Per segment (and ``all``) and per draw, the weighted mean of the segment's respondents gives
    the segment's part-worths and price coefficient; ``utility`` is their posterior mean and
    ``se`` the posterior sd. WTP is computed per respondent and draw, ``−Δβ_r / β_price,r``, and
    summarised per draw by the (weighted) median over the segment's respondents: the money value
    of the median respondent. Not the mean of the ratios — it does not exist when some
    respondents' price coefficients lie near 0, and a few such respondents would dominate it —
    and not the ratio of the mean part-worths, which is the value of an average respondent who
    does not exist and repeats the aggregate logit's heterogeneity bias. ``wtp`` is the posterior
    median of that median, ``lower``/``upper`` its 2.5%/97.5% posterior quantiles (the
    uncertainty of the segment figure), and ``respondents_p25``/``respondents_p75`` the posterior
    mean of the respondents' 25% and 75% quantiles (the spread of money values within the
    segment). Importances are computed per
    respondent and draw, normalised to 100, then averaged (weighted over respondents). The
    price ``p_value`` is the Bayesian analogue 2·min(P(β ≥ 0), P(β < 0)).
    """
    coding = data.coding
    w_resp, seg_resp = _respondent_arrays(data)
    slope = coding.price_slope_row()
    pw, imp, wtp, fits, params = [], [], [], [], []
    betas, covs = {}, {}
    mean_beta = draws.mean(axis=1)
    v = np.einsum("tap,tp->ta", data.X, mean_beta[data.respondent])
    v = np.where(data.available, v, -np.inf)
    lse = np.logaddexp.reduce(v, axis=1)
    ll_task = v[np.arange(data.n_choices), data.chosen] - lse
    ll_null_task = -np.log(data.available.sum(axis=1))
    ranges = {}
    for a in coding.levels:
        u = draws @ coding.level_rows(a).T  # R × D × levels
        ranges[a] = u.max(axis=2) - u.min(axis=2)
    if coding.price == "linear":
        ranges["price"] = np.abs(draws @ slope) * (max(coding.prices) - min(coding.prices))
    else:
        u = draws @ coding.level_rows("price").T
        ranges["price"] = u.max(axis=2) - u.min(axis=2)
    total = sum(ranges.values())
    for seg in _segment_order(data.segment):
        mask = np.ones(seg_resp.size, dtype=bool) if seg == RESERVED_SEGMENT else seg_resp == seg
        w = w_resp[mask] / w_resp[mask].sum()
        M = np.einsum("r,rdp->dp", w, draws[mask])  # draws × P: the segment's mean part-worths
        betas[seg] = M.mean(axis=0)
        covs[seg] = np.cov(M, rowvar=False)
        bp = M @ slope
        price_p = float(max(2 * min((bp >= 0).mean(), (bp < 0).mean()), 1 / bp.size))
        sd = M.std(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = betas[seg] / sd
        params.append(
            pd.DataFrame(
                {
                    "segment": seg,
                    "parameter": coding.parameters,
                    "estimate": betas[seg],
                    "se": sd,
                    "z": z,
                    "p_value": np.nan,
                }
            )
        )
        bp_ind = draws[mask] @ slope  # respondents × draws
        for a, levels in coding.levels.items():
            U = M @ coding.level_rows(a).T
            units = coding.unit_rows(a) if a in coding.numeric else []
            if units:
                Uu = M @ np.array([r for _, r in units]).T
                pw += [
                    (seg, a, label, float(Uu[:, k].mean()), float(Uu[:, k].std(ddof=1)))
                    for k, (label, _) in enumerate(units)
                ]
            else:
                pw += [
                    (seg, a, lv, float(U[:, i].mean()), float(U[:, i].std(ddof=1)))
                    for i, lv in enumerate(levels)
                ]
            labels = list(levels) + [label for label, _ in units]
            # contrasts against the first level (and per-unit rows): respondents × draws × labels
            C = coding.level_rows(a)
            C = C - C[:1]
            if units:
                C = np.vstack([C, [r for _, r in units]])
            with np.errstate(divide="ignore", invalid="ignore"):
                W = -(draws[mask] @ C.T) / bp_ind[..., None]
            med = _weighted_quantile(W, w, 0.5)  # draws × labels
            p25, p75 = _weighted_quantile(W, w, 0.25), _weighted_quantile(W, w, 0.75)
            for i, lv in enumerate(labels):
                if i == 0:
                    wtp.append((seg, a, lv, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0))
                    continue
                lo, mid, hi = np.quantile(med[:, i], [0.025, 0.5, 0.975])
                wtp.append(
                    (
                        seg,
                        a,
                        lv,
                        float(mid),
                        float(lo),
                        float(hi),
                        float(med[:, i].std(ddof=1)),
                        float(p25[:, i].mean()),
                        float(p75[:, i].mean()),
                    )
                )
        if coding.price == "linear":
            pw.append((seg, "price", "per_unit", float(bp.mean()), float(bp.std(ddof=1))))
        else:
            U = M @ coding.level_rows("price").T
            pw += [
                (seg, "price", f"{p:g}", float(U[:, i].mean()), float(U[:, i].std(ddof=1)))
                for i, p in enumerate(coding.prices)
            ]
        if coding.none:
            r = M @ coding.none_row()
            pw.append((seg, "none", "none", float(r.mean()), float(r.std(ddof=1))))
        for a, rg in ranges.items():
            share = (rg[mask] / total[mask]).mean(axis=1)
            imp.append((seg, a, float(100 * w @ share)))
        tasks = mask[data.respondent]
        ll, ll0 = float(ll_task[tasks].sum()), float(ll_null_task[tasks].sum())
        fits.append(
            {
                "segment": seg,
                "n_respondents": int(mask.sum()),
                "n_choices": int(tasks.sum()),
                "loglik": ll,
                "loglik_null": ll0,
                "rho2": 1 - ll / ll0,
                "converged": True,
                "price_coef": float(bp.mean()),
                "price_p_value": price_p,
                "mean_rlh": float(np.exp(ll / tasks.sum())),
            }
        )
    fit = pd.DataFrame(fits)
    if diagnostics is not None and "ok" in diagnostics.columns:
        fit["converged"] = bool(diagnostics["ok"].all())
    partworths = pd.DataFrame(pw, columns=["segment", "attribute", "level", "utility", "se"])
    importances = pd.DataFrame(imp, columns=["segment", "attribute", "importance"])
    wtp_frame = pd.DataFrame(
        wtp,
        columns=[
            "segment",
            "attribute",
            "level",
            "wtp",
            "lower",
            "upper",
            "se",
            "respondents_p25",
            "respondents_p75",
        ],
    )
    individual = IndividualDraws(data.respondents, seg_resp, w_resp, draws)
    notes: list[str] = []
    wrong_sign = float(w_resp @ (mean_beta @ slope >= 0) / w_resp.sum())
    if wrong_sign > 0.05:
        notes.append(
            f"{wrong_sign:.0%} of respondents (weighted) have a price coefficient that is not negative (posterior mean); "
            "their individual money values are not meaningful and sit in the tails of the WTP distribution."
        )
    return (
        partworths,
        importances,
        wtp_frame,
        pd.concat(params, ignore_index=True),
        fit,
        betas,
        covs,
        individual,
        diagnostics,
        notes,
    )


# ----------------------------------------------------------------------------------------------
# Market simulator


def _segments_of(result: ConjointResult, segment) -> list[str]:
    if segment is None:
        return list(result.segments)
    wanted = [segment] if isinstance(segment, str) else list(segment)
    unknown = [s for s in wanted if s not in result.segments]
    if unknown:
        raise InputError(
            [
                Problem(
                    "options",
                    None,
                    "segment",
                    "one of the segments: "
                    + ", ".join(result.segments)
                    + suggestion(str(u), result.segments),
                    u,
                )
                for u in unknown
            ]
        )
    return wanted


def _unit_draws(result: ConjointResult, seg: str, n_draws: int, rng: np.random.Generator):
    """(draws × units × P) parameter draws and unit weights for a segment.

    HB: the segment's respondents and their posterior draws. MNL: one unit, drawn from the
    asymptotic normal of the estimates (parameter uncertainty).
    """
    if result.individual is not None:
        ind = result.individual
        mask = (
            np.ones(ind.segment.size, dtype=bool) if seg == RESERVED_SEGMENT else ind.segment == seg
        )
        d = np.transpose(ind.draws[mask], (1, 0, 2))
        if d.shape[0] > n_draws:
            d = d[np.linspace(0, d.shape[0] - 1, n_draws).round().astype(int)]
        return d, ind.weight[mask]
    beta = np.nan_to_num(result.betas[seg])
    cov = np.nan_to_num(result.covariances[seg])
    d = rng.multivariate_normal(beta, cov, size=n_draws, method="eigh")
    return d[:, None, :], np.ones(1)


def _draws_for(
    result: ConjointResult, seg: str, n_draws: int, rng: np.random.Generator, method: str
):
    d, w = _unit_draws(result, seg, n_draws, rng)
    if method == "rfc" and result.individual is None:
        # aggregate model: the parameter draws are the simulated "individuals" of one market
        return np.transpose(d, (1, 0, 2)), np.ones(d.shape[0])
    return d, w


def _quantiles(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if draws.shape[0] < 2:
        nan = np.full(draws.shape[1:], np.nan)
        return nan, nan
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    return lo, hi


def _shares(
    V: np.ndarray, weights: np.ndarray, method: str, rng: np.random.Generator
) -> np.ndarray:
    """Shares (draws × alternatives) from utilities (draws × units × alternatives)."""
    if method == "logit":
        V = V - V.max(axis=-1, keepdims=True)
        e = np.exp(V)
        p = e / e.sum(axis=-1, keepdims=True)
    else:
        # randomized first choice: each unit picks its best alternative under Gumbel product
        # error, so individual heterogeneity (not the logit's IIA) drives substitution
        pick = np.argmax(V + rng.gumbel(size=V.shape), axis=-1)
        p = (pick[..., None] == np.arange(V.shape[-1])).astype(float)
    return np.einsum("duj,u->dj", p, weights / weights.sum())


def _point_shares(result: ConjointResult, seg: str, rows: np.ndarray) -> np.ndarray | None:
    """Logit shares at the point estimates (MNL only); rows: ... × alternatives × P."""
    if result.individual is not None:
        return None
    V = rows @ np.nan_to_num(result.betas[seg])
    V = V - V.max(axis=-1, keepdims=True)
    e = np.exp(V)
    return e / e.sum(axis=-1, keepdims=True)


def simulate_market(
    result: ConjointResult,
    products: pd.DataFrame,
    *,
    segment: str | list[str] | None = None,
    none: bool = True,
    method: str = "logit",
    n_draws: int = 500,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """Shares of preference of products described by levels and price.

    Parameters
    ----------
    result
        A :class:`ConjointResult`.
    products
        ========= ==========================================
        product   name
        <attr>    a tested level of every attribute
        <numeric> any number for a numeric attribute (interpolated between tested values)
        price     price (outside the tested range the share is extrapolated and marked)
        ========= ==========================================
    segment
        A segment, a list of them, or ``None`` for every segment and ``all``.
    none
        Include the no-choice option (when the model has one) as a row ``product = none``.
    method
        ``"logit"`` (share of preference) or ``"rfc"`` (randomized first choice over individual
        posterior draws with HB; over parameter draws with MNL, where it stays close to logit).
    n_draws
        Draws for intervals and for RFC.
    rng
        Generator for parameter draws and RFC errors (``None``: seeded with 0).

    Returns
    -------
    pandas.DataFrame
        ``segment, product, share, lower, upper, extrapolated`` with shares 0–1 summing to 1 per
        segment (``lower``/``upper``: 2.5% and 97.5% quantiles over the draws; empty for RFC on
        an aggregate model, whose draws make up a single simulated market). ``extrapolated``
        marks a product whose price or numeric attribute lies outside the tested range
        (:func:`extrapolation` says how far).
    """
    if method not in ("logit", "rfc"):
        raise InputError(Problem("options", None, "method", "'logit' or 'rfc'", method))
    rng = rng if rng is not None else np.random.default_rng(0)
    source = str(products.attrs.get("source", "scenario"))
    if "product" not in products.columns:
        raise InputError(
            Problem(
                source, None, "product", "a product column naming each product", "no such column"
            )
        )
    if len(products) == 0:
        raise InputError(Problem(source, None, None, "at least one product", "no rows"))
    rows = result.coding.profile_rows(products, source=source)
    names = products["product"].astype(str).tolist()
    outside = np.zeros(len(products), dtype=bool)
    outside[result.coding.extrapolation(products)["row"].to_numpy(dtype=int)] = True
    if none and result.coding.none:
        rows = np.vstack([rows, result.coding.none_row()])
        names = names + ["none"]
        outside = np.append(outside, False)
    out = []
    for seg in _segments_of(result, segment):
        d, w = _draws_for(result, seg, n_draws, rng, method)
        draws = _shares(d @ rows.T, w, method, rng)
        point = _point_shares(result, seg, rows) if method == "logit" else None
        share = point if point is not None else draws.mean(axis=0)
        lo, hi = _quantiles(draws)
        out.append(
            pd.DataFrame(
                {
                    "segment": seg,
                    "product": names,
                    "share": share,
                    "lower": lo,
                    "upper": hi,
                    "extrapolated": outside,
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def extrapolation(result: ConjointResult, products: pd.DataFrame) -> pd.DataFrame:
    """Products priced (or sized, for numeric attributes) outside what the study tested.

    ``product, attribute, value, tested_min, tested_max, outside_by, outside_share``: one row per
    cell outside the tested range, with how far outside (in the attribute's units and as a
    share of the tested range). The simulator still answers there — a linear term extends —
    but no respondent saw such a product, so the share is an extrapolation.
    """
    ext = result.coding.extrapolation(products)
    names = (
        products["product"].astype(str).to_numpy()
        if "product" in products.columns
        else np.arange(len(products)).astype(str)
    )
    ext.insert(0, "product", names[ext["row"].to_numpy(dtype=int)] if len(ext) else [])
    return ext.drop(columns="row")


def demand_curve(
    result: ConjointResult,
    product,
    prices=None,
    *,
    segment: str | list[str] | None = None,
    competitors: pd.DataFrame | None = None,
    method: str = "logit",
    n_draws: int = 300,
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """Share of one product as its price moves, against the no-choice option (and competitors).

    This is the conjoint's conversion model: at each price, ``share`` is the probability that a
    respondent of the segment chooses the product rather than not buying (or a competitor).
    Its inputs and output layout are stable; the pricing stage calls it.

    Parameters
    ----------
    result
        A :class:`ConjointResult` with a none option (or pass ``competitors``).
    product
        The product's levels: a mapping attribute → level, a Series, or a one-row DataFrame
        (its ``price``, if any, is ignored). Attributes it does not name are at their first
        (reference) level, so ``{}`` is the entry product of reference levels.
    prices
        Prices to evaluate; ``None`` → 25 evenly spaced prices across the tested range.
    segment
        A segment, a list, or ``None`` for every segment and ``all``.
    competitors
        Optional other products (layout of :func:`simulate_market`) at fixed prices.
    method, n_draws, rng
        As in :func:`simulate_market`.

    Returns
    -------
    pandas.DataFrame
        ``segment, price, share, lower, upper, extrapolated`` (shares 0–1; ``extrapolated``:
        the price is outside the tested range).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    if method not in ("logit", "rfc"):
        raise InputError(Problem("options", None, "method", "'logit' or 'rfc'", method))
    if isinstance(product, pd.DataFrame):
        product = product.iloc[0]
    product = {} if product is None else product
    # an attribute the product does not name sits at its first (reference) level
    levels = {a: (product[a] if a in product else lv[0]) for a, lv in result.coding.levels.items()}
    if prices is None:
        prices = np.linspace(min(result.prices), max(result.prices), 25)
    prices = np.atleast_1d(np.asarray(prices, dtype=float))
    base = pd.DataFrame({**{a: [v] for a, v in levels.items()}, "price": [float(prices[0])]})
    prow = (
        result.coding.profile_rows(base, source="product")[0]
        - result.coding.price_rows([prices[0]])[0]
    )
    own = prow[None, :] + result.coding.price_rows(prices)  # prices × P
    others = []
    if competitors is not None and len(competitors):
        others.append(
            result.coding.profile_rows(
                competitors, source=str(competitors.attrs.get("source", "competitors"))
            )
        )
    if result.coding.none:
        others.append(result.coding.none_row()[None, :])
    if not others:
        raise InputError(
            Problem(
                "options",
                None,
                "competitors",
                "a model with a none option, or competitors to compare with",
                "neither",
            )
        )
    other = np.vstack(others)
    tested = result.coding.tested_values("price")
    outside = (prices < tested.min()) | (prices > tested.max())
    # alternatives per price: the product first, then the fixed others
    rows = np.concatenate(
        [own[:, None, :], np.broadcast_to(other, (prices.size, *other.shape))], axis=1
    )
    out = []
    for seg in _segments_of(result, segment):
        d, w = _draws_for(result, seg, n_draws, rng, method)
        V = np.einsum("dup,kjp->kduj", d, rows)
        draws = np.stack([_shares(V[k], w, method, rng)[:, 0] for k in range(prices.size)], axis=1)
        point = _point_shares(result, seg, rows) if method == "logit" else None
        share = point[:, 0] if point is not None else draws.mean(axis=0)
        lo, hi = _quantiles(draws)
        out.append(
            pd.DataFrame(
                {
                    "segment": seg,
                    "price": prices,
                    "share": share,
                    "lower": lo,
                    "upper": hi,
                    "extrapolated": outside,
                }
            )
        )
    return pd.concat(out, ignore_index=True)


# ----------------------------------------------------------------------------------------------
# Study settings


def conjoint_levels(
    settings: StudySettings | Mapping, *, source: str = "study.toml", required: bool = False
) -> dict[str, list[str]]:
    """Attribute → ordered levels from ``[conjoint.attributes]`` (price excluded).

    ``settings``: the typed settings (:mod:`wtp.settings`) or a parsed study.toml."""
    attrs = as_settings(settings, source=source).conjoint.attributes
    if required and not any(k != "price" for k in attrs):
        raise InputError(
            Problem(
                source,
                None,
                "conjoint.attributes",
                "a [conjoint.attributes] table listing each attribute's levels",
                "none",
            )
        )
    return {str(k): [str(x) for x in v] for k, v in attrs.items() if k != "price"}


def conjoint_numeric(
    settings: StudySettings | Mapping, *, source: str = "study.toml"
) -> dict[str, tuple[float, ...]]:
    """Numeric attributes from ``[conjoint] numeric = ["seats"]`` (linear) and, for piecewise
    linear ones, ``[conjoint.piecewise] storage_gb = [100]`` (knots among the tested values)."""
    cj = as_settings(settings, source=source).conjoint
    names = [cj.numeric] if isinstance(cj.numeric, str) else list(cj.numeric)
    out: dict[str, tuple[float, ...]] = {str(a): () for a in names}
    out.update({str(a): tuple(knots) for a, knots in cj.piecewise.items()})
    return out


def conjoint_prices(
    settings: StudySettings | Mapping, *, source: str = "study.toml"
) -> list[float]:
    """Tested price levels: ``price = [...]`` in ``[conjoint.attributes]`` or ``[conjoint] prices``."""
    cj = as_settings(settings, source=source).conjoint
    prices = cj.attributes.get("price", cj.prices)
    if prices is None:
        raise InputError(
            Problem(
                source,
                None,
                "conjoint.attributes.price",
                "tested price levels, e.g. price = [29, 49, 79] (or [conjoint] prices = [...])",
                "none",
            )
        )
    try:
        values = [float(p) for p in prices]
    except (TypeError, ValueError):
        raise InputError(
            Problem(source, None, "conjoint.attributes.price", "numeric price levels", prices)
        ) from None
    return values


@dataclass(frozen=True)
class SimulatorTables:
    """What the conjoint report shows beyond the estimates: the scenario's shares and the demand
    curve of one product, computed before any report is written (writers draw nothing)."""

    simulation: pd.DataFrame | None
    demand: pd.DataFrame | None
    demand_product: dict[str, str] | None
    extrapolation: pd.DataFrame | None = None  # scenario cells outside the tested range


def simulator_tables(
    result: ConjointResult, scenario: pd.DataFrame | None = None, *, rng: np.random.Generator
) -> SimulatorTables:
    """Shares of the scenario's products (RFC with HB draws, else logit) and the demand curve of
    the scenario's first product — or of every attribute's first level — against no-choice."""
    simulation = outside = None
    if scenario is not None:
        method = "rfc" if result.individual is not None else "logit"
        simulation = simulate_market(result, scenario, method=method, rng=rng)
        outside = extrapolation(result, scenario)
    demand = product = None
    if result.coding.none:
        if scenario is not None:
            first = scenario.iloc[0]
            product = {a: str(first[a]).strip() for a in result.attributes}
        else:
            product = {a: levels[0] for a, levels in result.attributes.items()}
        demand = demand_curve(result, product, rng=rng)
    return SimulatorTables(simulation, demand, product, outside)
