""":func:`estimate_maxdiff` and its :class:`MaxDiffResult`: counts, logit or hierarchical Bayes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem
from wtp.maxdiff.counts import _respondent_counts, counts_scores
from wtp.maxdiff.data import MaxDiffData, _segment_rows, prepare_maxdiff_data, probability_shares
from wtp.maxdiff.fit import _fit_frame, _honest_respondents, _loglik_items, _random_respondents
from wtp.maxdiff.hb import _hb_scores, _segment_share_draws, _share_draws, maxdiff_choice_data
from wtp.maxdiff.logit import fit_logit
from wtp.schema import ALL

METHODS = ("hb", "logit", "counts")


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
    chains: int | None = None,
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
            return {"share": _segment_share_draws(md, beta, Q)}

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
        # the share draws the convergence checks computed are the reported draws' shares
        scores = _hb_scores(
            md,
            *_share_draws(md, hb_result.beta_draws[None], Q, hb_result.extra_draws.get("share")),
        )
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
            "chains": hb_result.settings["chains"] if hb_result is not None else chains,
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
