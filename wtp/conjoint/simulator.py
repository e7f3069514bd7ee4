"""Market simulator: shares of preference and demand curves from the part-worths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wtp.conjoint.estimate import ConjointResult
from wtp.errors import InputError, Problem, suggestion
from wtp.schema import ALL as RESERVED_SEGMENT

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
