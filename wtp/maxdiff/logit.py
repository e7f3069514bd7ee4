"""Aggregate sequential best-worst logit: one utility per item, maximum likelihood."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wtp.maxdiff.data import MaxDiffData, _bw_choices, _BWChoices

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
