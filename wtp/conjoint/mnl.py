"""Aggregate multinomial logit with respondent-clustered standard errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from wtp.conjoint.data import ChoiceData

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
