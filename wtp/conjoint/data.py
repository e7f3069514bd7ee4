"""Conjoint answers as the padded arrays and design matrices the estimators need."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wtp.columns import CONJOINT_NON_ATTRIBUTES
from wtp.errors import MAX_EXAMPLES, InputError, Problem, suggestion
from wtp.schema import ALL as RESERVED_SEGMENT

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
                # one line per level, counting every row that holds it (the true problem count)
                rows = sorted(real.loc[real[a].astype(str) == level, "row"].astype(int).tolist())
                problems.append(
                    Problem(
                        source,
                        rows[0],
                        a,
                        "one of the levels in study.toml: "
                        + ", ".join(given)
                        + suggestion(level, given),
                        level,
                        count=len(rows),
                        examples=tuple((r, level) for r in rows[:MAX_EXAMPLES])
                        if len(rows) > 1
                        else (),
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
        attributes = [c for c in answers.columns if c not in CONJOINT_NON_ATTRIBUTES]
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
