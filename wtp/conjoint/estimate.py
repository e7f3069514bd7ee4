""":func:`estimate_conjoint` and its :class:`ConjointResult`: part-worths, importances, willingness to pay (MNL or hierarchical Bayes)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd

from wtp.conjoint.data import _Z95, ChoiceData, Coding, prepare_choice_data
from wtp.conjoint.mnl import fit_mnl_identified
from wtp.errors import InputError, Problem
from wtp.schema import ALL as RESERVED_SEGMENT

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
    # MNL with the respondents' own price levels: segment → how its choice noise in money
    # follows a respondent's price level (:func:`level_noise`); empty otherwise
    level_noise: dict[str, LevelNoise] = field(default_factory=dict)

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

    def level_noise_frame(self) -> pd.DataFrame:
        """``segment, mean_level, noise_scale, elasticity``: :attr:`level_noise` as a table."""
        return pd.DataFrame(
            [(s, n.mean_level, n.scale, n.elasticity) for s, n in self.level_noise.items()],
            columns=["segment", "mean_level", "noise_scale", "elasticity"],
        )

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


@dataclass(frozen=True)
class LevelNoise:
    """A segment's choice noise in money as it follows each respondent's own price level:
    ``scale × (level / mean_level) ** elasticity`` (:func:`level_noise`)."""

    scale: float  # the noise scale (1/−β_price, money) of a respondent at the mean level
    mean_level: float  # the segment's weighted geometric mean price level
    elasticity: float  # 1: noise in proportion to the level; 0: the same for everyone

    def at(self, levels) -> np.ndarray:
        """The noise scale of respondents with these price levels (the mean level's where a
        level is missing)."""
        lv = np.asarray(levels, dtype=float)
        ratio = np.where(np.isfinite(lv) & (lv > 0), lv / self.mean_level, 1.0)
        return self.scale * ratio**self.elasticity


#: the elasticities :func:`level_noise` searches between (beyond proportional either way)
LEVEL_ELASTICITY_BOUNDS = (-0.5, 1.5)


def level_noise(data: ChoiceData, price_levels: pd.Series) -> dict[str, LevelNoise]:
    """Per segment, how the noise of respondents' choices in money follows their own price
    level (from another instrument: :func:`wtp.vanwestendorp.respondent_price_levels`).

    An aggregate MNL gives a whole segment one price coefficient. When the segment's
    respondents differ in what money means to them, that coefficient averages them and its
    ``1/−β`` overstates their noise (2.3× in the low-value segment of the tier worlds: 6.8
    against a true 3.0). Here the price coefficient varies with the level,
    ``β_r = β · (level_r / m)^−θ`` (``m`` the segment's weighted geometric mean level), and
    every other part-worth (levels, none) moves with ``log(level_r / m)`` and with
    ``level_r / m − 1`` (either shape of how values follow the level), so that
    people who value the product and its features more are not read as less sensitive to price.
    ``θ`` maximises the likelihood within :data:`LEVEL_ELASTICITY_BOUNDS` (bounded Brent, one
    MNL per step); respondent ``r``'s noise is then ``price_scale / −β · (level_r / m)^θ``.
    Where noise does not follow the level ``θ`` comes out near 0 and everyone gets the same.
    Respondents without a level are taken at ``m``. Only linear price; a segment gets none
    where its coefficient is not negative and two standard errors from zero, or where fewer
    than two of its respondents have a level; ``all`` only in a study without segments (the
    pooled fit would take as long as all the others together, and pricing never reads it).
    """
    from scipy.optimize import minimize_scalar

    c = data.coding
    if c.price != "linear":
        return {}
    col = c.blocks["price"].start
    lv = pd.Series(price_levels, dtype=float)
    lv.index = lv.index.astype(str)
    lv = lv[~lv.index.duplicated()]  # ids that read the same as text: the first
    level = lv.reindex(data.respondents.astype(str)).to_numpy()
    has = np.isfinite(level) & (level > 0)
    w_resp, seg_resp = _respondent_arrays(data)
    others = np.arange(c.n_parameters) != col
    out: dict[str, LevelNoise] = {}
    segments = _segment_order(data.segment)
    if len(segments) > 1:  # pricing values segments, and ``all`` only where it is the one
        segments = [s for s in segments if s != RESERVED_SEGMENT]
    for seg in segments:
        in_seg = np.ones(seg_resp.size, bool) if seg == RESERVED_SEGMENT else seg_resp == seg
        mine = in_seg & has
        if mine.sum() < 2:
            continue
        m = float(np.exp(np.average(np.log(level[mine]), weights=w_resp[mine])))
        z = np.where(has, np.log(np.where(has, level, 1.0) / m), 0.0)
        tasks = np.ones(data.n_choices, bool) if seg == RESERVED_SEGMENT else data.segment == seg
        sub = data.subset(tasks)
        zt = z[data.respondent[tasks]][:, None, None]
        # every other part-worth moves with the level, log and linear (see the docstring)
        moved = np.concatenate(
            [sub.X[:, :, others] * zt, sub.X[:, :, others] * np.expm1(zt)], axis=2
        )

        def fit(theta: float, sub=sub, zt=zt, moved=moved):
            X = sub.X.copy()
            X[:, :, col] *= np.exp(-theta * zt[:, :, 0])
            return fit_mnl_identified(replace(sub, X=np.concatenate([X, moved], axis=2)))

        best = minimize_scalar(
            lambda t: -fit(t).loglik,
            bounds=LEVEL_ELASTICITY_BOUNDS,
            method="bounded",
            options={"xatol": 0.02},
        )
        theta = float(best.x)
        f = fit(theta)
        b, var = f.beta[col], f.cov[col, col]
        if f.converged and np.isfinite(b) and b < 0 and b * b > 4.0 * var:
            out[seg] = LevelNoise(float(c.price_scale / -b), m, theta)
    return out


def _with_level_noise(
    result: ConjointResult, data: ChoiceData, price_levels: pd.Series
) -> ConjointResult:
    """``result`` with :func:`level_noise` and a note on it, or a warning (no respondent in
    common: two files naming the same people differently) or a note on why there is none."""
    noise = level_noise(data, price_levels)
    if noise:
        shown = "; ".join(
            f"{s} {n.scale:,.3g} at {n.mean_level:,.4g}, elasticity {n.elasticity:.2f}"
            for s, n in noise.items()
        )
        note = (
            "Choice noise per respondent (the scale of tier choice in pricing): an MNL whose price coefficient "
            "follows each respondent's Van Westendorp price level, noise = scale × (level / mean level)^elasticity "
            f"(level_noise.csv): {shown}."
        )
        return replace(result, level_noise=noise, notes=(*result.notes, note))
    ids = pd.Index(price_levels.index.astype(str))
    common = int(pd.Index(data.respondents.astype(str)).isin(ids).sum())
    if common == 0:
        warning = (
            "No conjoint respondent has a Van Westendorp answer (no respondent_id in common): check that both "
            "files use the same respondent_id. Without their price levels, pricing chooses among tiers by money alone."
        )
        return replace(result, warnings=(*result.warnings, warning))
    note = (
        f"Choice noise per respondent: none from the Van Westendorp price levels ({common} conjoint respondents "
        "have one, but no segment's price coefficient that follows them is negative and two standard errors "
        "from zero); pricing chooses among tiers by money alone."
    )
    return replace(result, notes=(*result.notes, note))


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
    price_levels: pd.Series | None = None,
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
    price_levels
        MNL: each respondent's own price level from another instrument, by ``respondent_id``
        (:func:`wtp.vanwestendorp.respondent_price_levels`). The result then also carries
        :func:`level_noise`, the noise of each respondent's choices in money, which
        the aggregate coefficient overstates when respondents differ (HB has its own per
        respondent).
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
    result = _assemble(
        data,
        method,
        tables,
        n_respondents=int(pd.Series(answers["respondent_id"]).nunique()),
        source=source,
        se_type=se_type,
    )
    if method == "mnl" and price_levels is not None:
        result = _with_level_noise(result, data, price_levels)
    return result


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
    units = prior_units(data)
    hb_data = hb.choice_data(
        data.X * units,
        data.available,
        data.chosen,
        data.respondent,
        group_index,
        param_names=list(data.coding.parameters),
        respondent_ids=list(data.respondents),
        group_names=groups,
    )
    fit = hb.fit_hb(hb_data, rng=rng, progress=progress, **sampler)
    beta = fit.beta_draws * units  # draws × respondents × P, back in the coding's units
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


def prior_units(data: ChoiceData) -> np.ndarray:
    """Per parameter, the unit the HB's priors are stated in: the largest magnitude the
    aggregate MNLs (each segment's and the pooled one, where converged and at least two
    standard errors from zero) give it, at least 1 (the coding's unit).

    The HB priors (:class:`wtp.hb.HBPriors`: means N(0, 3²), population scales about 1) suit
    parameters of order 1, which dummy-coded levels are. A linear price coefficient is not:
    per ``price / price_scale``, a segment worth a tenth of the highest tested price has a
    coefficient of −30 or more, and a scale prior of about 1 held its spread between people
    near 1 when it was tens. The HB then shrank every price coefficient toward the others and
    toward zero (to 0.3–0.6× the truth in the low-value segments of the tier worlds), which
    inflated their money values and their choice noise. Stating the priors in these units
    (the design column × unit, the draws × unit back) is the same model with priors
    N(0, (3·unit)²) on the means and scales of about one unit, wide enough for the data.
    """
    betas, covs, fits, _ = _estimate_mnl(data, "plain")
    units = np.ones(data.coding.n_parameters)
    for f in fits:
        if not f["converged"]:  # a level always or never chosen: says nothing of scale
            continue
        b = np.asarray(betas[f["segment"]], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.abs(b) / np.sqrt(np.diag(covs[f["segment"]]))
        # only estimates the data pin down (|z| ≥ 2): a level chosen almost always drifts to a
        # large coefficient with a larger standard error, and must not widen its prior
        firm = np.isfinite(b) & np.isfinite(z) & (z >= 2.0)
        units = np.where(firm, np.maximum(units, np.abs(b)), units)
    return units


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
