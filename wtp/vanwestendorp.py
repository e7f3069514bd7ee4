"""Van Westendorp price sensitivity meter with the Newton–Miller–Smith extension.

The four cumulative curves are evaluated on the sorted distinct prices the respondents answered
(contract §3):

=============  =============================================  ===========
curve          share of (weighted) respondents whose answer   direction
=============  =============================================  ===========
too cheap      ``too_cheap >= P``                             falls
cheap          ``cheap >= P`` (``>`` with ``cheap_rule="gt"``) falls
expensive      ``expensive <= P``                             rises
too expensive  ``too_expensive <= P``                         rises
=============  =============================================  ===========

and the price points are where two curves cross, linearly interpolated between neighbouring
prices: PMC = too cheap × not cheap, OPP = too cheap × too expensive, IPP = cheap × expensive,
PME = not expensive × too expensive; the narrower range uses too cheap × expensive and
cheap × too expensive.

Newton–Miller–Smith: each respondent's stated purchase likelihood at their own cheap and
expensive price is calibrated to a probability (default 5→0.7, 4→0.5, 3→0.3, 2→0.1, 1→0, as R's
pricesensitivitymeter), and a piecewise-linear demand curve runs through
(too cheap, 0), (cheap, p_cheap), (expensive, p_expensive), (too expensive, 0). Their weighted
mean is the trial curve; price × trial is revenue per respondent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.schema import ALL

CURVES = ["too_cheap", "cheap", "not_cheap", "expensive", "not_expensive", "too_expensive"]
ANSWERS = ["too_cheap", "cheap", "expensive", "too_expensive"]
# (point, first curve, second curve): the point is where first − second changes sign
POINTS = {
    "pmc": ("too_cheap", "not_cheap"),
    "opp": ("too_cheap", "too_expensive"),
    "ipp": ("cheap", "expensive"),
    "pme": ("not_expensive", "too_expensive"),
    "pmc_narrow": ("too_cheap", "expensive"),
    "pme_narrow": ("cheap", "too_expensive"),
}
DEFAULT_CALIBRATION = {5: 0.7, 4: 0.5, 3: 0.3, 2: 0.1, 1: 0.0}
NMS_LABELS = {
    # what survey tools write for a 5-point purchase-likelihood scale
    "very unlikely": 1,
    "definitely would not buy": 1,
    "definitely not": 1,
    "extremely unlikely": 1,
    "unlikely": 2,
    "somewhat unlikely": 2,
    "probably would not buy": 2,
    "probably not": 2,
    "neither likely nor unlikely": 3,
    "neither": 3,
    "neutral": 3,
    "might or might not buy": 3,
    "not sure": 3,
    "unsure": 3,
    "likely": 4,
    "somewhat likely": 4,
    "probably would buy": 4,
    "probably": 4,
    "very likely": 5,
    "definitely would buy": 5,
    "definitely": 5,
    "extremely likely": 5,
}
ZERO_TOLERANCE = 1e-9  # shares closer than this are equal


@dataclass(frozen=True)
class VanWestendorpSettings:
    """Method choices, recorded in every result and shown in the report."""

    inconsistent: str = "exclude"  # exclude | repair
    ties: str = "keep"  # keep | drop
    cheap_rule: str = "ge"  # ge (contract) | gt (pricesensitivitymeter)
    plateau: str = "lowest"  # lowest | highest | middle
    nms_scale: str | None = None  # None (detect) | scale | probability
    nms_calibration: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_CALIBRATION))
    nms_too_cheap: float = 0.0  # purchase probability assumed at the too-cheap price
    nms_too_expensive: float = 0.0  # and at the too-expensive price
    bootstrap: int = 0
    level: float = 0.95

    def describe(self) -> list[str]:
        out = [
            "Inconsistent answers (not too cheap ≤ cheap ≤ expensive ≤ too expensive) are "
            + (
                "excluded and counted."
                if self.inconsistent == "exclude"
                else "repaired by sorting the four answers, and counted."
            ),
            "Ties between answers are "
            + (
                "consistent (kept)."
                if self.ties == "keep"
                else "treated as inconsistent (as R's pricesensitivitymeter)."
            ),
            "The two cheap curves count answers "
            + (
                "at or above the price (≥ P, the contract's convention)."
                if self.cheap_rule == "ge"
                else "strictly above the price (> P, as R's pricesensitivitymeter)."
            ),
            f"Where two curves touch over an interval the {self.plateau} price of it is the point.",
        ]
        if self.bootstrap:
            out.append(
                f"{int(self.level * 100)}% intervals from {self.bootstrap} bootstrap replicates (respondents resampled within each segment)."
            )
        return out


@dataclass(frozen=True)
class VanWestendorpResult:
    """Price points, curves and NMS demand per segment (and ``all``).

    Attributes
    ----------
    price_points
        One row per segment plus ``all``: ``segment, n, n_excluded, pmc, opp, ipp, pme,
        pmc_narrow, pme_narrow, n_in, n_repaired, weight_sum``, the NMS optima
        ``trial_optimal_price, revenue_optimal_price, trial_at_revenue_optimum, n_nms`` when
        purchase likelihoods were asked, and ``<point>_lower/_upper`` with a bootstrap.
    curves
        ``segment, price, too_cheap, cheap, not_cheap, expensive, not_expensive, too_expensive``.
    nms
        ``segment, price, trial, revenue_index, revenue`` (empty without NMS columns).
    excluded
        Respondents left out and why: ``respondent_id, segment, row, reason``.
    """

    price_points: pd.DataFrame
    curves: pd.DataFrame
    nms: pd.DataFrame
    excluded: pd.DataFrame
    settings: VanWestendorpSettings
    warnings: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def segments(self) -> list[str]:
        return self.price_points["segment"].tolist()

    @property
    def has_nms(self) -> bool:
        return not self.nms.empty

    def acceptable_range(self, segment: str = ALL, *, narrow: bool = False) -> tuple[float, float]:
        row = self.price_points.set_index("segment").loc[segment]
        return (
            (float(row["pmc_narrow"]), float(row["pme_narrow"]))
            if narrow
            else (float(row["pmc"]), float(row["pme"]))
        )

    def demand(self, segment: str, prices) -> np.ndarray:
        """NMS purchase probability (trial) at arbitrary prices, interpolated on the curve.

        The trial curve is piecewise linear between answered prices, so linear interpolation on
        the answered grid is exact. Outside the answered range it is 0.
        """
        if not self.has_nms:
            raise ValueError(
                "no purchase-likelihood answers (buy_cheap, buy_expensive): no NMS demand curve"
            )
        c = self.nms[self.nms["segment"] == segment]
        return np.interp(
            np.asarray(prices, dtype=float),
            c["price"].to_numpy(),
            c["trial"].to_numpy(),
            left=0.0,
            right=0.0,
        )

    def to_frame(self) -> pd.DataFrame:
        return self.price_points.copy()

    def summary(self) -> pd.DataFrame:
        cols = ["segment", "n", "n_excluded", "pmc", "opp", "ipp", "pme"]
        if "revenue_optimal_price" in self.price_points.columns:
            cols += ["trial_optimal_price", "revenue_optimal_price"]
        return self.price_points[cols].copy()


# --------------------------------------------------------------------------------------------
# Curves and crossings (pure functions, vectorised over bootstrap replicates)


def crossing_price(prices: np.ndarray, diff: np.ndarray, plateau: str = "lowest") -> np.ndarray:
    """Lowest price at which ``diff`` (first curve − second) changes sign.

    ``diff`` has shape (rows, prices). Exactly 0 at a grid price: that price; 0 over an interval:
    its lowest (or highest, or middle) price; a sign change between two prices: linear
    interpolation. No crossing: NaN.
    """
    d = np.atleast_2d(np.asarray(diff, dtype=float))
    # weighted shares are sums of floats: curves that are equal can differ by rounding, and a tie
    # lost to rounding would move the point to the next price
    d = np.where(np.abs(d) <= ZERO_TOLERANCE, 0.0, d)
    prices = np.asarray(prices, dtype=float)
    n_rows, n = d.shape
    rows = np.arange(n_rows)
    zero = d == 0
    change = np.zeros_like(zero)
    change[:, :-1] = (d[:, :-1] * d[:, 1:]) < 0
    event = zero | change
    has = event.any(axis=1)
    i = event.argmax(axis=1)
    j = np.minimum(i + 1, n - 1)
    d0, d1 = d[rows, i], d[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(d0 != d1, d0 / (d0 - d1), 0.0)
    interp = prices[i] + t * (prices[j] - prices[i])
    if plateau == "lowest":
        flat = prices[i]
    else:
        idx = np.where(~zero, np.arange(n)[None, :], n)
        next_nonzero = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]
        end = next_nonzero[rows, i] - 1
        end = np.clip(end, i, n - 1)
        flat = prices[end] if plateau == "highest" else (prices[i] + prices[end]) / 2
    out = np.where(zero[rows, i], flat, interp)
    return np.where(has, out, np.nan)


def _six_curves(too_cheap, cheap, expensive, too_expensive) -> dict[str, np.ndarray]:
    return {
        "too_cheap": too_cheap,
        "cheap": cheap,
        "not_cheap": 1 - cheap,
        "expensive": expensive,
        "not_expensive": 1 - expensive,
        "too_expensive": too_expensive,
    }


def _cumulative(values: np.ndarray, weights: np.ndarray, grid: np.ndarray):
    """Weighted shares of answers ≥ P, > P and ≤ P for every grid price P."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    cw = np.concatenate([[0.0], np.cumsum(weights[order])])
    total = cw[-1]
    below = cw[np.searchsorted(v, grid, side="left")]  # weight of answers < P
    at_or_below = cw[np.searchsorted(v, grid, side="right")]  # weight of answers ≤ P
    return (total - below) / total, (total - at_or_below) / total, at_or_below / total


def price_curves(
    answers: np.ndarray, weights: np.ndarray, grid: np.ndarray, cheap_rule: str = "ge"
) -> dict[str, np.ndarray]:
    """The six curves on ``grid`` from an (n, 4) array of too cheap, cheap, expensive, too expensive."""
    tc_ge, tc_gt, _ = _cumulative(answers[:, 0], weights, grid)
    ch_ge, ch_gt, _ = _cumulative(answers[:, 1], weights, grid)
    _, _, ex_le = _cumulative(answers[:, 2], weights, grid)
    _, _, te_le = _cumulative(answers[:, 3], weights, grid)
    too_cheap = tc_ge if cheap_rule == "ge" else tc_gt
    cheap = ch_ge if cheap_rule == "ge" else ch_gt
    return _six_curves(too_cheap, cheap, ex_le, te_le)


def price_points_from_curves(
    grid: np.ndarray, curves: dict[str, np.ndarray], plateau: str = "lowest"
) -> dict[str, np.ndarray]:
    """All six crossing prices; curve arrays may be (prices,) or (replicates, prices)."""
    return {
        name: crossing_price(grid, np.atleast_2d(curves[a]) - np.atleast_2d(curves[b]), plateau)
        for name, (a, b) in POINTS.items()
    }


def _one_hot(index: np.ndarray, width: int, values: np.ndarray | None = None):
    """Sparse (len(index) × width) matrix with ``values`` (default 1) at ``index`` in each row."""
    from scipy import sparse

    vals = np.ones(len(index)) if values is None else values
    return sparse.csr_matrix((vals, (np.arange(len(index)), index)), shape=(len(index), width))


def _resample_weights(rng: np.random.Generator, n: int, m: int, weights: np.ndarray) -> np.ndarray:
    """(m × n) weights of m bootstrap replicates: how often each respondent is drawn × weight."""
    draws = rng.integers(0, n, size=(m, n))
    counts = np.bincount((draws + (np.arange(m) * n)[:, None]).ravel(), minlength=m * n)
    return counts.reshape(m, n) * weights[None, :]


def _bootstrap_curves(
    answers: np.ndarray, grid: np.ndarray, rep_weights: np.ndarray, cheap_rule: str
) -> dict[str, np.ndarray]:
    """Curves for a block of replicates given their (replicates × respondents) weights."""
    g = len(grid)
    total = rep_weights.sum(axis=1, keepdims=True)

    def share_at_or_below(column: int) -> np.ndarray:
        # answers are grid prices, so the grid index of each answer is exact
        onehot = _one_hot(np.searchsorted(grid, answers[:, column]), g)
        mass = np.asarray((onehot.T @ rep_weights.T).T)
        return np.cumsum(mass, axis=1) / total

    def at_or_above(le: np.ndarray) -> np.ndarray:
        # share ≥ P = 1 − share ≤ the previous grid price
        return 1 - np.concatenate([np.zeros((le.shape[0], 1)), le[:, :-1]], axis=1)

    tc_le, ch_le = share_at_or_below(0), share_at_or_below(1)
    ex_le, te_le = share_at_or_below(2), share_at_or_below(3)
    too_cheap = at_or_above(tc_le) if cheap_rule == "ge" else 1 - tc_le
    cheap = at_or_above(ch_le) if cheap_rule == "ge" else 1 - ch_le
    return _six_curves(too_cheap, cheap, ex_le, te_le)


# --------------------------------------------------------------------------------------------
# Newton–Miller–Smith


def parse_calibration(value, source: str = "--nms-calibration") -> dict[int, float] | None:
    """Calibration from ``"5=0.7,4=0.5,…"`` or a study.toml table ``{5 = 0.7, …}``; None stays None."""
    if value is None:
        return None
    items = (
        value.items()
        if isinstance(value, dict)
        else (part.split("=", 1) for part in str(value).split(","))
    )
    out: dict[int, float] = {}
    try:
        for k, v in items:
            out[int(str(k).strip())] = float(v)
    except ValueError as exc:
        raise InputError(
            Problem(
                source,
                None,
                None,
                "scale=probability pairs such as 5=0.7,4=0.5,3=0.3,2=0.1,1=0",
                value,
            )
        ) from exc
    if not out or any(not 0 <= p <= 1 for p in out.values()):
        raise InputError(
            Problem(source, None, None, "probabilities between 0 and 1 for each scale point", value)
        )
    return out


def nms_probabilities(
    values: pd.Series,
    *,
    scale: str | None = None,
    calibration: dict[int, float] | None = None,
    column: str = "buy_cheap",
    rows: np.ndarray | None = None,
    source: str = "vw.csv",
) -> np.ndarray:
    """Calibrated purchase probabilities from labels, a 1–5 scale or probabilities.

    Integers 1–5 are a scale; values in [0, 1] with any fraction are probabilities; a column of
    only 0 and 1 is ambiguous and needs ``scale``. Text labels ("Very likely" …) map to 1–5.
    Missing answers stay NaN (the respondent is left out of NMS only).
    """
    calibration = calibration or DEFAULT_CALIBRATION
    rows = np.arange(len(values)) + 2 if rows is None else rows
    raw = pd.Series(values).reset_index(drop=True)
    text = raw.astype("string").str.strip()
    numeric = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
    labelled = text.str.lower().map(NMS_LABELS)
    is_label = numeric.isna() & labelled.notna()
    bad = numeric.isna() & labelled.isna() & text.notna() & (text != "")
    problems = [
        Problem(
            source,
            int(r),
            column,
            "a purchase likelihood: 1–5, a probability 0–1, or a label like 'Very likely'",
            v,
        )
        for r, v in zip(rows[bad.to_numpy()], raw[bad.to_numpy()], strict=True)
    ]
    if problems:
        raise InputError(problems[:100])
    num = numeric.to_numpy(dtype=float)
    present = ~np.isnan(num)
    vals = num[present]
    if scale is None and len(vals):
        if np.isin(vals, [0.0, 1.0]).all():
            raise InputError(
                Problem(
                    source,
                    None,
                    column,
                    "purchase likelihoods that say what they are: this column holds only 0 and 1, which could be a probability or a scale; run again with --nms-scale scale or --nms-scale probability",
                    "only 0 and 1",
                )
            )
        if ((vals >= 1) & (vals <= 5) & (vals == np.round(vals))).all():
            scale = "scale"
        elif ((vals >= 0) & (vals <= 1)).all():
            scale = "probability"
        else:
            first = np.flatnonzero(
                present
                & ~(((num >= 0) & (num <= 1)) | ((num >= 1) & (num <= 5) & (num == np.round(num))))
            )
            r = rows[first[0]] if len(first) else None
            raise InputError(
                Problem(
                    source,
                    None if r is None else int(r),
                    column,
                    "integers 1–5 or probabilities between 0 and 1",
                    raw.iloc[first[0]] if len(first) else None,
                )
            )
    probs = np.full(len(raw), np.nan)
    if scale == "probability":
        out_of = present & ((num < 0) | (num > 1))
        if out_of.any():
            raise InputError(
                [
                    Problem(source, int(r), column, "a probability between 0 and 1", v)
                    for r, v in zip(rows[out_of], raw[out_of], strict=True)
                ][:100]
            )
        probs[present] = num[present]
    else:
        ok = present & np.isin(num, list(calibration))
        if (present & ~ok).any():
            wrong = present & ~ok
            raise InputError(
                [
                    Problem(
                        source,
                        int(r),
                        column,
                        "a scale value " + ", ".join(str(k) for k in sorted(calibration)),
                        v,
                    )
                    for r, v in zip(rows[wrong], raw[wrong], strict=True)
                ][:100]
            )
        probs[ok] = [calibration[int(x)] for x in num[ok]]
    lab = is_label.to_numpy()
    probs[lab] = [calibration[int(x)] for x in labelled[lab]]
    return probs


def _nms_pieces(
    answers: np.ndarray,
    p_cheap: np.ndarray,
    p_exp: np.ndarray,
    at_too_cheap: float,
    at_too_exp: float,
):
    """Linear pieces of every respondent's demand curve: (start, end, intercept, slope) arrays."""
    x = answers
    y = np.column_stack(
        [np.full(len(x), at_too_cheap), p_cheap, p_exp, np.full(len(x), at_too_exp)]
    )
    starts = x[:, :3]
    ends = x[:, 1:]
    length = ends - starts
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(length > 0, (y[:, 1:] - y[:, :3]) / np.where(length > 0, length, 1), 0.0)
    intercept = y[:, :3] - slope * starts
    keep = length > 0
    return starts[keep], ends[keep], intercept[keep], slope[keep], np.nonzero(keep)[0]


def nms_curve(
    grid: np.ndarray,
    answers: np.ndarray,
    weights: np.ndarray,
    p_cheap: np.ndarray,
    p_exp: np.ndarray,
    at_too_cheap: float = 0.0,
    at_too_exp: float = 0.0,
):
    """Weighted mean purchase probability on ``grid`` and its linear pieces between grid prices.

    Returns (trial, a, b): on [grid[i], grid[i+1]) the trial curve is a[i] + b[i]·price.
    """
    s, e, a, b, who = _nms_pieces(answers, p_cheap, p_exp, at_too_cheap, at_too_exp)
    w = weights[who]
    total = weights.sum()
    si = np.searchsorted(grid, s, side="left")
    ei = np.searchsorted(grid, e, side="left")
    g = len(grid)
    A = (
        np.cumsum(
            np.bincount(si, weights=w * a, minlength=g + 1)
            - np.bincount(ei, weights=w * a, minlength=g + 1)
        )[:g]
        / total
    )
    B = (
        np.cumsum(
            np.bincount(si, weights=w * b, minlength=g + 1)
            - np.bincount(ei, weights=w * b, minlength=g + 1)
        )[:g]
        / total
    )
    return A + B * grid, A, B


def _nms_optima(grid: np.ndarray, trial: np.ndarray, A: np.ndarray, B: np.ndarray):
    """Trial- and revenue-optimal prices; revenue is maximised exactly within each linear piece.

    Arrays may carry a leading replicate axis.
    """
    trial = np.atleast_2d(trial)
    A = np.atleast_2d(A)
    B = np.atleast_2d(B)
    rev = grid * trial
    # inside [g_i, g_{i+1}) revenue p(a + b p) peaks at p = −a / 2b when b < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        vertex = np.where(B < 0, -A / (2 * B), np.nan)
    upper = np.append(grid[1:], grid[-1])
    inside = (vertex > grid) & (vertex < upper)
    vrev = np.where(inside, vertex * (A + B * vertex), -np.inf)
    i_grid = rev.argmax(axis=1)
    i_vert = vrev.argmax(axis=1)
    rows = np.arange(trial.shape[0])
    best_grid = rev[rows, i_grid]
    best_vert = vrev[rows, i_vert]
    use_vert = best_vert > best_grid
    p_rev = np.where(use_vert, vertex[rows, i_vert], grid[i_grid])
    t_rev = np.where(
        use_vert, A[rows, i_vert] + B[rows, i_vert] * vertex[rows, i_vert], trial[rows, i_grid]
    )
    p_trial = grid[trial.argmax(axis=1)]
    return p_trial, p_rev, t_rev


def _bootstrap_nms(grid, answers, rep_weights, p_cheap, p_exp, at_too_cheap, at_too_exp):
    """Trial curves and linear pieces for a block of replicates (replicates × respondents weights)."""
    s, e, a, b, who = _nms_pieces(answers, p_cheap, p_exp, at_too_cheap, at_too_exp)
    g = len(grid)
    n = len(answers)
    si = np.searchsorted(grid, s, side="left")
    ei = np.searchsorted(grid, e, side="left")
    total = rep_weights.sum(axis=1, keepdims=True)

    def per_respondent(vals):
        # respondent × grid-index matrix of what their pieces add (at start) and remove (at end)
        from scipy import sparse

        m = sparse.csr_matrix(
            (np.concatenate([vals, -vals]), (np.concatenate([who, who]), np.concatenate([si, ei]))),
            shape=(n, g + 1),
        )
        return np.cumsum(np.asarray((m.T @ rep_weights.T).T), axis=1)[:, :g] / total

    A = per_respondent(a)
    B = per_respondent(b)
    return A + B * grid[None, :], A, B


# --------------------------------------------------------------------------------------------
# The analysis


# share of respondents answering two columns the wrong way round above which the columns are
# taken to be swapped: honest out-of-order answers are a minority in every public data set
SWAPPED_SHARE = 0.5


def swapped_columns(answers: pd.DataFrame) -> tuple[str, str, int] | None:
    """The pair of answer columns that most respondents answer the wrong way round.

    Returns ``(lower, upper, count)`` where ``count`` respondents gave ``lower > upper`` and
    that is more than :data:`SWAPPED_SHARE` of them — a mapping with the two columns swapped
    (the public Hoekstra file labels them so), not respondents' noise. None otherwise.
    """
    x = answers[ANSWERS].to_numpy(dtype=float)
    best = None
    for i in range(len(ANSWERS)):
        for j in range(i + 1, len(ANSWERS)):
            count = int((x[:, i] > x[:, j]).sum())
            if best is None or count > best[2]:
                best = (ANSWERS[i], ANSWERS[j], count)
    if best is None or best[2] <= SWAPPED_SHARE * len(x):
        return None
    return best


def _check_usable(
    answers: pd.DataFrame, kept: pd.DataFrame, settings: VanWestendorpSettings, source: str
) -> None:
    """No result from nothing: swapped columns or no usable answer at all are input errors."""
    swapped = swapped_columns(answers)
    mapped = answers.attrs.get("column_map", {})
    order = "too_cheap ≤ cheap ≤ expensive ≤ too_expensive"
    if swapped is not None:
        lo, hi, count = swapped
        names = f"'{lo}' and '{hi}'"
        if lo in mapped or hi in mapped:
            names += f" (read from the file's '{mapped.get(lo, lo)}' and '{mapped.get(hi, hi)}')"
        raise InputError(
            Problem(
                source,
                None,
                lo,
                f"answers ordered {order}; {count:,} of {len(answers):,} respondents answer {lo} > {hi}, so the columns "
                f"{names} look swapped: map them the other way round ([columns.vw] or --columns {lo}=...,{hi}=...)",
                count=count,
            )
        )
    if len(kept) == 0:
        why = "out of order" if settings.ties == "keep" else "out of order or tied (--ties drop)"
        raise InputError(
            Problem(
                source,
                None,
                None,
                f"at least one respondent with usable answers ({order}); all {len(answers):,} answers are {why}, "
                "so there is nothing to compute price points from",
                count=len(answers),
            )
        )


def prepare_answers(
    answers: pd.DataFrame, settings: VanWestendorpSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split answers into the rows analysed and the rows left out (with the reason)."""
    x = answers[ANSWERS].to_numpy(dtype=float)
    steps = np.diff(x, axis=1)
    out_of_order = (steps < 0).any(axis=1)
    kept = answers.copy()
    reasons = pd.Series(pd.NA, index=answers.index, dtype="string")
    if settings.inconsistent == "repair":
        kept.loc[out_of_order, ANSWERS] = np.sort(x[out_of_order], axis=1)
        kept["repaired"] = out_of_order
        drop = np.zeros(len(x), dtype=bool)
    else:
        kept["repaired"] = False
        drop = out_of_order.copy()
        reasons[out_of_order] = (
            "answers out of order (need too_cheap ≤ cheap ≤ expensive ≤ too_expensive)"
        )
    if settings.ties == "drop":
        x2 = kept[ANSWERS].to_numpy(dtype=float)
        tie_now = (np.diff(x2, axis=1) == 0).any(axis=1) & ~drop
        reasons[tie_now] = "two answers equal (ties dropped by option)"
        drop = drop | tie_now
    excluded = answers.loc[drop, ["respondent_id", "segment", "row"]].assign(
        reason=reasons[drop].to_numpy()
    )
    return kept.loc[~drop].reset_index(drop=True), excluded.reset_index(drop=True)


def kept_answers(answers: pd.DataFrame, settings: VanWestendorpSettings) -> pd.DataFrame:
    """The rows :func:`van_westendorp` analysed with ``settings`` (out-of-order answers
    repaired or left out, ties as set), for later stages that work per respondent; a frame
    without ``segment``/``weight``/``row`` gets ``all``, 1 and its file row."""
    return prepare_answers(_with_defaults(answers), settings)[0]


def _with_defaults(answers: pd.DataFrame) -> pd.DataFrame:
    """A copy with ``segment`` (``all``), ``weight`` (1) and ``row`` (the file row) where the
    frame has none."""
    a = answers.copy()
    if "segment" not in a.columns:
        a["segment"] = ALL
    if "weight" not in a.columns:
        a["weight"] = 1.0
    if "row" not in a.columns:
        a["row"] = np.arange(len(a)) + 2
    return a


def price_level(expensive, too_expensive) -> np.ndarray:
    """A respondent's own price level: the geometric mean of their "expensive" and "too
    expensive" answers, the middle of the range where the product turns from a purchase to
    think about into one out of the question (geometric, as prices are answered on a ratio
    scale: 100 and 400 give 200)."""
    return np.sqrt(np.asarray(expensive, dtype=float) * np.asarray(too_expensive, dtype=float))


def respondent_price_levels(vw: VanWestendorpResult, answers: pd.DataFrame) -> pd.Series:
    """:func:`price_level` of every respondent ``vw`` analysed, indexed by ``respondent_id``
    (as text)."""
    kept = kept_answers(answers, vw.settings)
    return pd.Series(
        price_level(kept["expensive"], kept["too_expensive"]),
        index=pd.Index(kept["respondent_id"].astype(str), name="respondent_id"),
        name="price_level",
    )


def van_westendorp(
    answers: pd.DataFrame,
    *,
    inconsistent: str = "exclude",
    ties: str = "keep",
    cheap_rule: str = "ge",
    plateau: str = "lowest",
    nms_scale: str | None = None,
    nms_calibration: dict[int, float] | None = None,
    nms_too_cheap: float = 0.0,
    nms_too_expensive: float = 0.0,
    bootstrap: int = 0,
    level: float = 0.95,
    rng: np.random.Generator | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VanWestendorpResult:
    """Van Westendorp (and NMS when ``buy_cheap``/``buy_expensive`` are present) per segment.

    Parameters
    ----------
    answers
        A frame in the vw.csv layout; validated here if it has not been already. ``segment`` and
        ``weight`` are used when present.
    inconsistent
        ``"exclude"`` (default) leaves out rows not ordered too cheap ≤ cheap ≤ expensive ≤ too
        expensive; ``"repair"`` sorts their four answers. Either way they are counted.
    ties
        ``"keep"`` (ties are consistent) or ``"drop"`` (treat ties as inconsistent, as R's
        pricesensitivitymeter).
    cheap_rule
        ``"ge"``: the cheap curves count answers ≥ P (contract); ``"gt"``: > P (R psm).
    plateau
        Where two curves coincide over an interval: ``"lowest"``, ``"highest"`` or ``"middle"``.
    bootstrap
        Replicates for percentile intervals (respondents resampled within each segment).
    rng
        The ``numpy.random.Generator`` the bootstrap draws from; required when
        ``bootstrap > 0`` (``wtp.randomness.stage_rng(seed, "vw")`` in the pipeline).
    progress
        Called as ``progress(done, total)`` while bootstrapping.
    """
    for name, value, allowed in [
        ("inconsistent", inconsistent, ("exclude", "repair")),
        ("ties", ties, ("keep", "drop")),
        ("cheap_rule", cheap_rule, ("ge", "gt")),
        ("plateau", plateau, ("lowest", "highest", "middle")),
    ]:
        if value not in allowed:
            raise InputError(Problem("options", None, name, " or ".join(allowed), value))
    if nms_scale not in (None, "scale", "probability"):
        raise InputError(Problem("options", None, "nms_scale", "scale or probability", nms_scale))
    if "row" not in answers.columns:
        from wtp.io import attach_segments, validate_vw

        answers = attach_segments(validate_vw(answers))
    answers = _with_defaults(answers)  # validated, so ``row`` is the file's
    if bootstrap and not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"bootstrap={bootstrap} needs rng=numpy.random.Generator, got {type(rng).__name__}"
        )
    settings = VanWestendorpSettings(
        inconsistent=inconsistent,
        ties=ties,
        cheap_rule=cheap_rule,
        plateau=plateau,
        nms_scale=nms_scale,
        nms_calibration=dict(nms_calibration or DEFAULT_CALIBRATION),
        nms_too_cheap=nms_too_cheap,
        nms_too_expensive=nms_too_expensive,
        bootstrap=bootstrap,
        level=level,
    )
    source = str(answers.attrs.get("source", "vw.csv"))
    kept, excluded = prepare_answers(answers, settings)
    _check_usable(answers, kept, settings, source)
    has_nms = {"buy_cheap", "buy_expensive"} <= set(kept.columns)
    if has_nms:
        for c in ("buy_cheap", "buy_expensive"):
            kept[f"p_{c}"] = nms_probabilities(
                kept[c],
                scale=nms_scale,
                calibration=settings.nms_calibration,
                column=c,
                rows=kept["row"].to_numpy(),
                source=source,
            )
    segments = list(dict.fromkeys(answers["segment"].tolist()))
    groups = [(s, kept["segment"] == s) for s in segments if s != ALL]
    groups.append((ALL, pd.Series(True, index=kept.index)))
    n_in = answers.groupby("segment", sort=False).size()
    n_excl = excluded.groupby("segment", sort=False).size()
    warnings: list[str] = []
    point_rows, curve_frames, nms_frames = [], [], []
    total_work = bootstrap * len(groups)
    done = 0
    alpha = (1 - level) / 2
    for seg, mask in groups:
        sub = kept.loc[mask.to_numpy()]
        row: dict[str, Any] = {
            "segment": seg,
            "n": len(sub),
            "n_excluded": int(n_excl.sum() if seg == ALL else n_excl.get(seg, 0)),
            "n_in": int(n_in.sum() if seg == ALL else n_in.get(seg, 0)),
            "n_repaired": int(sub["repaired"].sum()),
            "weight_sum": float(sub["weight"].sum()),
        }
        if len(sub) == 0:
            warnings.append(f"{seg}: no consistent answers left; no price points.")
            point_rows.append(row | dict.fromkeys(POINTS, np.nan))
            continue
        x = sub[ANSWERS].to_numpy(dtype=float)
        w = sub["weight"].to_numpy(dtype=float)
        grid = np.unique(x)
        curves = price_curves(x, w, grid, cheap_rule)
        points = price_points_from_curves(grid, curves, plateau)
        for name, val in points.items():
            row[name] = float(val[0])
            if np.isnan(val[0]) and name in ("pmc", "opp", "ipp", "pme"):
                warnings.append(
                    f"{seg}: the curves for {name.upper()} do not cross within the answered prices; left empty."
                )
        curve_frames.append(pd.DataFrame({"segment": seg, "price": grid, **curves}))
        nms_ok = None
        if has_nms:
            nms_ok = ~(
                np.isnan(sub["p_buy_cheap"].to_numpy())
                | np.isnan(sub["p_buy_expensive"].to_numpy())
            )
            row["n_nms"] = int(nms_ok.sum())
            if nms_ok.any():
                trial, A, B = nms_curve(
                    grid,
                    x[nms_ok],
                    w[nms_ok],
                    sub["p_buy_cheap"].to_numpy()[nms_ok],
                    sub["p_buy_expensive"].to_numpy()[nms_ok],
                    nms_too_cheap,
                    nms_too_expensive,
                )
                p_trial, p_rev, t_rev = _nms_optima(grid, trial, A, B)
                row.update(
                    trial_optimal_price=float(p_trial[0]),
                    revenue_optimal_price=float(p_rev[0]),
                    trial_at_revenue_optimum=float(t_rev[0]),
                )
                revenue = grid * trial
                peak = revenue.max()
                nms_frames.append(
                    pd.DataFrame(
                        {
                            "segment": seg,
                            "price": grid,
                            "trial": trial,
                            "revenue_index": 100 * revenue / peak if peak > 0 else np.nan,
                            "revenue": revenue,
                        }
                    )
                )
            else:
                row.update(
                    trial_optimal_price=np.nan,
                    revenue_optimal_price=np.nan,
                    trial_at_revenue_optimum=np.nan,
                )
        if bootstrap:
            n = len(sub)
            reps: dict[str, list[np.ndarray]] = {k: [] for k in POINTS}
            if has_nms:
                reps.update(trial_optimal_price=[], revenue_optimal_price=[])
            # blocks bound memory: a block holds (replicates × respondents) weights
            block = max(1, min(bootstrap, int(4e6 // max(n, 1))))
            nms_boot = has_nms and nms_ok is not None and nms_ok.any()
            for start in range(0, bootstrap, block):
                m = min(block, bootstrap - start)
                rep_w = _resample_weights(rng, n, m, w)
                bc = _bootstrap_curves(x, grid, rep_w, cheap_rule)
                for k, v in price_points_from_curves(grid, bc, plateau).items():
                    reps[k].append(v)
                if nms_boot:
                    t, A_, B_ = _bootstrap_nms(
                        grid,
                        x[nms_ok],
                        rep_w[:, nms_ok],
                        sub["p_buy_cheap"].to_numpy()[nms_ok],
                        sub["p_buy_expensive"].to_numpy()[nms_ok],
                        nms_too_cheap,
                        nms_too_expensive,
                    )
                    p_t, p_r, _ = _nms_optima(grid, t, A_, B_)
                    reps["trial_optimal_price"].append(p_t)
                    reps["revenue_optimal_price"].append(p_r)
                done += m
                if progress:
                    progress(done, total_work)
            for k, parts in reps.items():
                if not parts:
                    continue
                v = np.concatenate(parts)
                v = v[~np.isnan(v)]
                row[f"{k}_lower"] = float(np.quantile(v, alpha)) if len(v) else np.nan
                row[f"{k}_upper"] = float(np.quantile(v, 1 - alpha)) if len(v) else np.nan
        point_rows.append(row)
    if len(excluded):
        warnings.insert(
            0,
            f"{len(excluded)} of {len(answers)} respondents left out: "
            + "; ".join(f"{r} ({c})" for r, c in excluded["reason"].value_counts().items()),
        )
    price_points = pd.DataFrame(point_rows)
    lead = ["segment", "n", "n_excluded", "pmc", "opp", "ipp", "pme", "pmc_narrow", "pme_narrow"]
    price_points = price_points[lead + [c for c in price_points.columns if c not in lead]]
    curves = (
        pd.concat(curve_frames, ignore_index=True)
        if curve_frames
        else pd.DataFrame(columns=["segment", "price", *CURVES])
    )
    nms = (
        pd.concat(nms_frames, ignore_index=True)
        if nms_frames
        else pd.DataFrame(columns=["segment", "price", "trial", "revenue_index", "revenue"])
    )
    import wtp

    return VanWestendorpResult(
        price_points=price_points,
        curves=curves[["segment", "price", *CURVES]],
        nms=nms,
        excluded=excluded,
        settings=settings,
        warnings=tuple(warnings),
        provenance={"source": source, "wtp_version": wtp.__version__, "n_rows": len(answers)},
    )
