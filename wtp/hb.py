"""Hierarchical Bayesian multinomial logit (PyMC), shared by MaxDiff and conjoint.

Each respondent ``r`` has a parameter vector β_r drawn from a multivariate normal population
whose mean may differ by group (segment) and whose covariance is full::

    β_r = μ_{g(r)} + L z_r,      z_r ~ N(0, I)          (non-centred)
    L   = diag(σ) · chol(Ω),     Ω ~ LKJ(η),  σ_p ~ Gamma(2, 2 / sd_scale)
    μ_g ~ N(0, mu_sd² I)

and every choice ``n`` picks alternative ``a`` with probability
``exp(x_na·β_r) / Σ_{available b} exp(x_nb·β_r)``.

Input is the padded array layout built by :func:`choice_data`:

=============== ============================== =====================================
array           shape                          content
=============== ============================== =====================================
``X``           n_choices × max_alts × n_params design rows (anything on unavailable
                                               slots is ignored)
``available``   n_choices × max_alts           True where an alternative was offered
``chosen``      n_choices                      index of the chosen alternative
``respondent``  n_choices                      respondent index 0 .. R−1
``group``       R (optional)                   group (segment) index 0 .. G−1
=============== ============================== =====================================

Sampling uses nutpie when it is installed (PyMC's NUTS otherwise), chains in parallel, and
continues until converged: convergence (ArviZ R-hat and ESS of the population means and scales,
derived results such as segment shares, and a sample of individual parameters) is checked at
fixed numbers of draws, and a run that cannot converge within its time budget says which check
failed and what to do (:func:`fit_hb`, :func:`unconverged_advice`). Progress goes to
:mod:`wtp.progress` (a status line on a terminal, a line every few seconds in logs). The result
keeps the posterior as an ArviZ ``InferenceData`` (``save_posterior`` writes NetCDF) and the
individual draws of β.

Speed (why the likelihood is written the way it is): nutpie samples the log density written
out in :mod:`wtp.hb_density` (numba C callbacks compiled once and loaded from numba's cache,
where compiling PyMC's model through nutpie cost 13 s in every process), with the population
scales on the log scale and the correlations as partial correlations (the same prior as
:func:`build_model`'s ``LKJCholeskyCov``, which mixed 2.5× slower on the chocolate CBC). A
logp + gradient evaluation is dominated by ``exp`` and ``log`` calls. When many choices share
the same design rows (MaxDiff: every alternative is ±one item) the utilities of the distinct
rows are computed once per respondent (``W = β D'``), exponentiated once, and gathered,
instead of one ``exp`` per alternative per choice. :func:`build_model` (PyMC, with the same
likelihood as fused PyTensor Ops) serves PyMC's sampler and is the reference the hand-written
density is tested against.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from wtp.progress import Reporter

__all__ = [
    "ChoiceData",
    "HBPriors",
    "HBResult",
    "choice_data",
    "fit_hb",
    "respondent_loglik",
    "map_individual",
    "save_posterior",
    "convergence_diagnostics",
    "has_nutpie",
    "RHAT_MAX",
    "ESS_MIN",
]

RHAT_MAX = 1.01
ESS_MIN = 400
# population correlations: reported, but not part of ``converged`` (see convergence_diagnostics)
NUISANCE = ("corr",)


# --------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class ChoiceData:
    """Choice sets in the padded array layout (see the module docstring).

    Build it with :func:`choice_data`, which checks the shapes and indexes.
    """

    X: np.ndarray
    available: np.ndarray
    chosen: np.ndarray
    respondent: np.ndarray
    group: np.ndarray
    param_names: list[str]
    respondent_ids: list[Any]
    group_names: list[str]

    @property
    def n_choices(self) -> int:
        return int(self.X.shape[0])

    @property
    def max_alts(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_params(self) -> int:
        return int(self.X.shape[2])

    @property
    def n_respondents(self) -> int:
        return len(self.respondent_ids)

    @property
    def n_groups(self) -> int:
        return len(self.group_names)

    def choices_per_respondent(self) -> np.ndarray:
        return np.bincount(self.respondent, minlength=self.n_respondents)


def choice_data(
    X: np.ndarray,
    available: np.ndarray,
    chosen: np.ndarray,
    respondent: np.ndarray,
    group: np.ndarray | None = None,
    *,
    param_names: list[str] | None = None,
    respondent_ids: list | None = None,
    group_names: list[str] | None = None,
) -> ChoiceData:
    """Check and package choice sets for :func:`fit_hb`.

    Parameters
    ----------
    X : ndarray, shape (n_choices, max_alts, n_params)
    available : ndarray of bool, shape (n_choices, max_alts)
    chosen : ndarray of int, shape (n_choices,)
        Index of the chosen alternative; it must be available.
    respondent : ndarray of int, shape (n_choices,)
        Respondent index 0 .. R−1 (every respondent needs at least one choice).
    group : ndarray of int, shape (R,), optional
        Group (segment) of each respondent, 0 .. G−1; groups get their own population mean.
    param_names, respondent_ids, group_names : list, optional
        Labels for the outputs.
    """
    X = np.asarray(X, dtype=float)
    available = np.asarray(available, dtype=bool)
    chosen = np.asarray(chosen, dtype=np.int64)
    respondent = np.asarray(respondent, dtype=np.int64)
    if X.ndim != 3:
        raise ValueError(f"X must be n_choices × max_alts × n_params, got shape {X.shape}")
    n, a, p = X.shape
    if available.shape != (n, a):
        raise ValueError(f"available must have shape {(n, a)}, got {available.shape}")
    if chosen.shape != (n,) or respondent.shape != (n,):
        raise ValueError("chosen and respondent need one entry per choice")
    if ((chosen < 0) | (chosen >= a)).any():
        raise ValueError("chosen indexes must lie in 0 .. max_alts-1")
    if not available[np.arange(n), chosen].all():
        bad = int(np.flatnonzero(~available[np.arange(n), chosen])[0])
        raise ValueError(f"choice {bad}: the chosen alternative is not available")
    if (available.sum(axis=1) < 2).any():
        raise ValueError("every choice needs at least two available alternatives")
    if not np.isfinite(X[available]).all():
        raise ValueError("X holds missing or infinite values on available alternatives")
    n_resp = int(respondent.max()) + 1 if n else 0
    if respondent_ids is not None:
        n_resp = max(n_resp, len(respondent_ids))
    counts = np.bincount(respondent, minlength=n_resp)
    if (respondent < 0).any() or (counts == 0).any():
        raise ValueError("respondent indexes must be 0 .. R-1 with at least one choice each")
    if group is None:
        group = np.zeros(n_resp, dtype=np.int64)
    group = np.asarray(group, dtype=np.int64)
    if group.shape != (n_resp,):
        raise ValueError(f"group needs one entry per respondent ({n_resp}), got {group.shape}")
    n_groups = int(group.max()) + 1
    if group_names is not None:
        n_groups = max(n_groups, len(group_names))
    if (group < 0).any() or (np.bincount(group, minlength=n_groups) == 0).any():
        raise ValueError("group indexes must be 0 .. G-1 with at least one respondent each")
    X = np.where(available[..., None], X, 0.0)
    return ChoiceData(
        X=X,
        available=available,
        chosen=chosen,
        respondent=respondent,
        group=group,
        param_names=list(param_names)
        if param_names is not None
        else [f"b{i + 1}" for i in range(p)],
        respondent_ids=list(respondent_ids) if respondent_ids is not None else list(range(n_resp)),
        group_names=list(group_names)
        if group_names is not None
        else [f"g{i + 1}" for i in range(n_groups)],
    )


@dataclass(frozen=True)
class _Layout:
    """Index arrays for the likelihood (see the module docstring on speed)."""

    factorised: bool
    rows: np.ndarray  # U × P distinct design rows (factorised) or unused
    flat: np.ndarray  # A × N flat index into R·U (factorised)
    flat_chosen: np.ndarray  # N
    avail: np.ndarray  # A × N float (1 available, 0 not)
    counts: np.ndarray  # R choices per respondent
    # the hierarchical kernel's view (factorised): choices sorted by respondent
    alts: np.ndarray | None = None  # N × A int32 row index, U on unavailable slots
    alt_chosen: np.ndarray | None = None  # N int32 row index of the chosen alternative
    start: np.ndarray | None = None  # R + 1: respondent r owns choices start[r]:start[r+1]


def _layout(data: ChoiceData, force: str | None = None) -> _Layout:
    n, a, p = data.X.shape
    r = data.n_respondents
    rows, inverse = np.unique(data.X.reshape(n * a, p), axis=0, return_inverse=True)
    inverse = inverse.reshape(n, a)
    u = len(rows)
    # one exp per distinct row per respondent against one per alternative per choice
    factorised = r * u <= 0.75 * n * a if force is None else force == "factorised"
    counts = data.choices_per_respondent().astype(float)
    avail = data.available.T.astype(float).copy()
    if factorised:
        flat = data.respondent[:, None] * u + inverse
        chosen_flat = flat[np.arange(n), data.chosen]
        order = np.argsort(data.respondent, kind="stable")
        alts = np.where(data.available[order], inverse[order], u).astype(np.int32)
        return _Layout(
            True,
            rows,
            np.ascontiguousarray(flat.T),
            chosen_flat,
            avail,
            counts,
            alts=np.ascontiguousarray(alts),
            alt_chosen=inverse[order, data.chosen[order]].astype(np.int32),
            start=np.concatenate([[0], np.cumsum(counts.astype(np.int64))]),
        )
    # the dense likelihood reads the design rows directly (see _dense_loglik_op)
    return _Layout(
        False,
        np.zeros((1, p)),
        np.zeros((a, 1), dtype=np.int64),
        np.zeros(1, dtype=np.int64),
        avail,
        counts,
    )


# --------------------------------------------------------------------------------------------
# Factorised log-likelihood as one fused operation


def _factorised_loglik_numpy(W, flat, avail, flat_chosen, resp):
    """Σ_n [W(chosen) − log Σ_available exp W] and its gradient in W (R × U)."""
    R, U = W.shape
    m = W.max(axis=1)
    E = np.exp(W - m[:, None]).ravel()
    Ea = E[flat] * avail
    S = Ea.sum(axis=0) + 1e-300
    ll = W.ravel()[flat_chosen].sum() - m[resp].sum() - np.log(S).sum()
    g = np.bincount(flat_chosen, minlength=R * U).astype(float)
    g -= np.bincount(flat.ravel(), weights=(Ea / S).ravel(), minlength=R * U)
    return np.asarray(ll), g.reshape(R, U)


def _fused_loglik_class(name: str, doc: str, numpy_fn, n_params: int = 1):
    """A PyTensor Op class for a fused log-likelihood: the first ``n_params`` inputs are
    parameters, the rest are data; the outputs are the log-likelihood and its gradient in each
    parameter (``L_op`` reuses those outputs). ``numpy_fn`` is the reference implementation
    (``perform``); the numba kernel is registered separately."""
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_type
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    def make_node(self, *args):
        inputs = [pt.as_tensor_variable(x) for x in args]
        return Apply(self, inputs, [pt.dscalar()] + [x.type() for x in inputs[:n_params]])

    def perform(self, node, inputs, outputs):
        for out, value in zip(outputs, numpy_fn(*inputs), strict=True):
            out[0] = value

    def connection_pattern(self, node):
        n_out = n_params + 1
        return [[True] * n_out] * n_params + [[False] * n_out] * (len(node.inputs) - n_params)

    def L_op(self, inputs, outputs, output_grads):
        return [output_grads[0] * g for g in outputs[1 : n_params + 1]] + [
            disconnected_type() for _ in inputs[n_params:]
        ]

    return type(
        name,
        (Op,),
        {
            "__doc__": doc,
            "__module__": __name__,
            "__props__": (),
            "make_node": make_node,
            "perform": perform,
            "connection_pattern": connection_pattern,
            "L_op": L_op,
        },
    )


def _loglik_op():
    """Build the PyTensor Op lazily so importing this module stays light."""
    global _LOGLIK_OP
    if _LOGLIK_OP is not None:
        return _LOGLIK_OP
    FactorisedLogLik = _fused_loglik_class(
        "FactorisedLogLik",
        """Log-likelihood of choices whose utilities are gathered from W = β D' (respondent ×
        distinct design row). One pass: one exp per entry of W, one log per choice, and the
        gradient in W as a second output (used by ``L_op``), so the graph stays small and
        the numba kernel avoids the many temporaries of the elementwise version.""",
        _factorised_loglik_numpy,
    )

    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )

        @register_funcify_default_op_cache_key(FactorisedLogLik)
        def _numba_factorised_loglik(op, node, **kwargs):
            @numba_njit
            def factorised_loglik(W, flat, avail, flat_chosen, resp):
                R, U = W.shape
                A, N = flat.shape
                E = np.empty(R * U)
                m = np.empty(R)
                for r in range(R):
                    mx = W[r, 0]
                    for u in range(1, U):
                        if W[r, u] > mx:
                            mx = W[r, u]
                    m[r] = mx
                    for u in range(U):
                        E[r * U + u] = np.exp(W[r, u] - mx)
                g = np.zeros(R * U)
                ll = 0.0
                for c in range(N):
                    s = 1e-300
                    for a in range(A):
                        s += E[flat[a, c]] * avail[a, c]
                    f = flat_chosen[c]
                    ll += W[f // U, f % U] - m[resp[c]] - np.log(s)
                    g[f] += 1.0
                    inv = 1.0 / s
                    for a in range(A):
                        i = flat[a, c]
                        g[i] -= E[i] * avail[a, c] * inv
                return np.asarray(ll), g.reshape((R, U))

            return factorised_loglik

    except ImportError:  # an older PyTensor without this registry: the numpy version runs
        pass
    _LOGLIK_OP = FactorisedLogLik()
    return _LOGLIK_OP


_LOGLIK_OP = None


def _hier_loglik_numpy(mu, chol, z, group, rows, alts, alt_chosen, start):
    """Log-likelihood of the factorised layout as a function of the population and z, with
    β_r = μ_g(r) + L z_r (L: the lower triangle of ``chol``), W = β D', and its gradients in
    μ, L and z. Choices sorted by respondent; ``alts`` points at rows of D, U = unavailable."""
    L = np.tril(chol)
    beta = mu[group] + z @ L.T
    W = beta @ rows.T
    R, U = W.shape
    m = W.max(axis=1)
    E = np.concatenate([np.exp(W - m[:, None]), np.zeros((R, 1))], axis=1)
    resp = np.repeat(np.arange(R), np.diff(start))
    Ea = E[resp[:, None], alts]
    S = Ea.sum(axis=1)
    ll = (W[resp, alt_chosen] - m[resp] - np.log(S)).sum()
    gW = np.zeros((R, U + 1))
    np.add.at(gW, (resp, alt_chosen), 1.0)
    np.add.at(gW, (np.broadcast_to(resp[:, None], alts.shape), alts), -Ea / S[:, None])
    gb = gW[:, :U] @ rows
    gmu = np.zeros_like(mu)
    np.add.at(gmu, group, gb)
    return np.asarray(ll), gmu, np.tril(gb.T @ z), gb @ L


def _hier_loglik_op():
    """β construction and the factorised likelihood as one fused operation (built lazily).

    The graph it replaces (β = μ[group] + z Lᵀ, W = β D', the factorised Op, and their
    gradients) cost 0.65 ms per logp + gradient on the benchmark study (750 respondents,
    24 distinct rows, 11 parameters). Here each respondent is handled once, in cache: β_r,
    its row utilities and their exps, its choices, then the gradient back to μ, L and z_r.
    One log per respondent instead of one per choice (the choice sums are multiplied, and
    logged before the product could underflow)."""
    global _HIER_LOGLIK_OP
    if _HIER_LOGLIK_OP is not None:
        return _HIER_LOGLIK_OP
    HierLogLik = _fused_loglik_class(
        "HierLogLik",
        "Log-likelihood of the hierarchical MNL (factorised layout) and its gradients in "
        "mu, chol and z.",
        _hier_loglik_numpy,
        n_params=3,
    )

    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )

        @register_funcify_default_op_cache_key(HierLogLik)
        def _numba_hier_loglik(op, node, **kwargs):
            from wtp.hb_density import hier_choices

            @numba_njit
            def hier_loglik(mu, chol, z, group, rows, alts, alt_chosen, start):
                P = z.shape[1]
                gmu = np.zeros(mu.shape)
                gL = np.zeros((P, P))
                gz = np.empty(z.shape)
                no_mirror = np.zeros(0, dtype=np.int64)
                ll = hier_choices(
                    mu, chol, z, group, rows, no_mirror, alts, alt_chosen, start, gmu, gL, gz
                )
                return np.asarray(ll), gmu, gL, gz

            return hier_loglik

    except ImportError:  # an older PyTensor without this registry: the numpy version runs
        pass
    _HIER_LOGLIK_OP = HierLogLik()
    return _HIER_LOGLIK_OP


_HIER_LOGLIK_OP = None


def _sparse_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Design rows as padded (index, value) lists of their non-zero entries: N × A × K each.

    Dummy- or effects-coded conjoint rows are mostly zeros (one level per attribute), so the
    likelihood touches K ≈ attributes + 1 entries per alternative instead of all P."""
    nz = X != 0
    k = max(1, int(nz.sum(axis=2).max()))
    order = np.argsort(~nz, axis=2, kind="stable")[..., :k]
    idx = order.astype(np.int64)
    val = np.take_along_axis(X, order, axis=2)
    val = np.where(np.take_along_axis(nz, order, axis=2), val, 0.0)
    return np.ascontiguousarray(idx), np.ascontiguousarray(val, dtype=float)


def _dense_loglik_numpy(beta, idx, val, avail, chosen, resp):
    """Σ_n [x_n,chosen·β_r − log Σ_available exp(x_na·β_r)] and its gradient in β (R × P);
    design rows as in :func:`_sparse_rows`."""
    V = (val * beta[resp[:, None, None], idx]).sum(axis=2)  # N × A utilities
    V = np.where(avail > 0, V, -np.inf)
    m = V.max(axis=1)
    E = np.exp(V - m[:, None])
    S = E.sum(axis=1)
    n = np.arange(len(chosen))
    ll = (V[n, chosen] - m - np.log(S)).sum()
    coef = -E / S[:, None]
    coef[n, chosen] += 1.0
    g = np.zeros_like(beta)
    rows = np.broadcast_to(resp[:, None, None], idx.shape)
    np.add.at(g, (rows, idx), coef[:, :, None] * val)
    return np.asarray(ll), g


def _dense_loglik_op():
    """The dense-layout likelihood as one fused operation (built lazily, like
    :func:`_loglik_op`): utilities, log-sum-exp and the gradient in β in one pass over the
    choices, touching only the non-zero design entries. The elementwise PyTensor graph it
    replaces cost 0.72 ms per evaluation on the chocolate CBC (403 respondents × 6 tasks ×
    4 alternatives × 15 parameters), most of it in temporaries."""
    global _DENSE_LOGLIK_OP
    if _DENSE_LOGLIK_OP is not None:
        return _DENSE_LOGLIK_OP
    DenseLogLik = _fused_loglik_class(
        "DenseLogLik",
        "Log-likelihood of choices over sparse design rows, and its gradient in β.",
        _dense_loglik_numpy,
    )

    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )

        @register_funcify_default_op_cache_key(DenseLogLik)
        def _numba_dense_loglik(op, node, **kwargs):
            from wtp.hb_density import dense_choices

            @numba_njit
            def dense_loglik(beta, idx, val, avail, chosen, resp):
                g = np.zeros(beta.shape)
                ll = dense_choices(beta, idx, val, avail, chosen, resp, g)
                return np.asarray(ll), g

            return dense_loglik

    except ImportError:
        pass
    _DENSE_LOGLIK_OP = DenseLogLik()
    return _DENSE_LOGLIK_OP


_DENSE_LOGLIK_OP = None


# --------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class HBPriors:
    """Priors of the population (documented defaults; override per study).

    Attributes
    ----------
    mu_sd : float, default 3.0
        Standard deviation of the normal prior on each population mean (utility scale).
    sd_scale : float, default 1.0
        Prior mean of each population standard deviation (``sd_prior="gamma"``), or the scale
        of its half-normal prior (``sd_prior="halfnormal"``).
    lkj_eta : float, default 2.0
        LKJ shape for the correlation matrix (1 = uniform; 2 mildly favours small correlations).
    sd_prior : {"gamma", "halfnormal"}, default "gamma"
        ``gamma``: Gamma(2, 2 / sd_scale), whose density vanishes at zero. A population scale
        that the data cannot tell from zero otherwise drifts into the neck of the
        non-centred funnel, where the sampler crawls: on the demo conjoint (true scales
        0.4, 10 tasks) the half-normal prior left R-hat 1.6 after 4,000 draws per chain; the
        gamma prior converged. Like bayesm's default inverse-Wishart prior on the
        covariance, it keeps scales away from zero without holding them up when data say
        they are small (posterior scales 0.3–0.5 there).
    """

    mu_sd: float = 3.0
    sd_scale: float = 1.0
    lkj_eta: float = 2.0
    sd_prior: str = "gamma"

    def sd_dist(self, p: int):
        import pymc as pm

        if self.sd_prior == "gamma":
            return pm.Gamma.dist(alpha=2.0, beta=2.0 / self.sd_scale, shape=p)
        return pm.HalfNormal.dist(self.sd_scale, shape=p)


def build_model(data: ChoiceData, priors: HBPriors | None = None, layout: str | None = None):
    """The PyMC model (not sampled). ``layout`` forces ``"factorised"`` or ``"dense"``."""
    import pymc as pm

    priors = priors or HBPriors()
    lay = _layout(data, layout)
    p = data.n_params
    coords = {
        "param": data.param_names,
        "respondent": [str(x) for x in data.respondent_ids],
        "group": data.group_names,
    }
    with pm.Model(coords=coords) as model:
        group = pm.Data("group_index", data.group)
        mu = pm.Normal("mu", 0.0, priors.mu_sd, dims=("group", "param"))
        chol, _corr, _sd = pm.LKJCholeskyCov(
            "pop",
            n=p,
            eta=priors.lkj_eta,
            sd_dist=priors.sd_dist(p),
            compute_corr=True,
            store_in_trace=True,
        )
        z = pm.Normal("z", 0.0, 1.0, dims=("respondent", "param"))
        # the factorised likelihood builds β inside its fused Op; there this Deterministic is
        # only for PyMC's sampler and is not part of the log density nutpie evaluates
        beta = pm.Deterministic("beta", mu[group] + z @ chol.T, dims=("respondent", "param"))
        if lay.factorised:
            loglik = _hier_loglik_op()(
                mu,
                chol,
                z,
                group,
                pm.Data("rows", lay.rows),
                pm.Data("alts", lay.alts),
                pm.Data("alt_chosen", lay.alt_chosen),
                pm.Data("choice_start", lay.start),
            )[0]
        else:
            # a fused version with β built inside (as for the factorised layout) measured no
            # faster here: 0.38 against 0.37 ms per evaluation on the chocolate CBC
            idx, val = _sparse_rows(np.asarray(data.X, dtype=float))
            loglik = _dense_loglik_op()(
                beta,
                pm.Data("X_index", idx),
                pm.Data("X_value", val),
                pm.Data("avail_na", np.ascontiguousarray(data.available, dtype=float)),
                pm.Data("chosen", data.chosen.astype(np.int64)),
                pm.Data("respondent_index", data.respondent.astype(np.int64)),
            )[0]
        pm.Potential("loglik", loglik)
    return model


def has_nutpie() -> bool:
    """Whether nutpie is installed (looked for, not imported: see :func:`_nutpie_lib`)."""
    import importlib.util

    return importlib.util.find_spec("nutpie") is not None


def _nutpie_lib():
    """nutpie's compiled core, ``nutpie._lib``, loaded without running the package's
    ``__init__``, which imports ``nutpie.sample`` and with it ArviZ, matplotlib and
    scipy.stats: 1.35 s on the 2-core benchmark machine before sampling could start. wtp
    drives the core itself (:func:`_start_nutpie`, :class:`_NutpieModel`), and ArviZ is
    imported beside the sampler (:func:`_import_beside_sampler`). The module is registered
    as ``nutpie._lib``, so a later ``import nutpie`` uses the same one. Where nutpie is
    imported already, or the file is not where nutpie 0.16 keeps it, nutpie's own import."""
    import importlib.machinery
    import importlib.util
    import os
    import sys

    loaded = sys.modules.get("nutpie._lib")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("nutpie") if "nutpie" not in sys.modules else None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_lib" + suffix)
            if not os.path.isfile(path):
                continue
            lib_spec = importlib.util.spec_from_file_location("nutpie._lib", path)
            module = importlib.util.module_from_spec(lib_spec)
            sys.modules["nutpie._lib"] = module
            try:
                lib_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop("nutpie._lib", None)
                raise
            return module
    from nutpie import _lib

    return _lib


def _import_beside_sampler(names=("zarr", "arviz")):
    """Import ``names`` in a thread while the chains warm up (the checks read the trace with
    zarr; the result is built with ArviZ): the main thread only waits then, and an import
    that is still running when the main thread needs the module is waited for by Python's
    import lock."""
    import importlib
    import sys
    import threading

    def run():
        for name in names:
            if name not in sys.modules:
                try:
                    importlib.import_module(name)
                except Exception:  # the main thread's own import reports it
                    return

    if all(name in sys.modules for name in names):
        return None
    thread = threading.Thread(target=run, name="wtp-hb-imports", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------------------------
# Diagnostics


def _split_chains(x: np.ndarray) -> np.ndarray:
    """(C, D, V) → (2C, D//2, V): first and last halves of every chain (ArviZ's split)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _blom_table(n: int) -> np.ndarray:
    """The rank-normal score of every average rank 1, 1.5, …, n among ``n`` draws (entry
    ``2·rank − 2``): ``Φ⁻¹((rank − 3/8) / (n + 1/4))``, Blom's offset as ArviZ. Ties share
    their average rank (NUTS repeats a draw now and then), so half ranks occur. The same
    arithmetic on the same ranks as scoring every draw: the scores are identical, and
    ``ndtri`` runs 2n times instead of once per draw and variable (60 ms per check of 100
    respondents' utilities)."""
    from scipy import special

    # ndtri is norm.ppf without scipy.stats' argument checks
    return special.ndtri((np.arange(2, 2 * n + 1) / 2.0 - 0.375) / (n + 0.25))


def _z_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalise each variable over all its draws (Blom's offset 3/8, as ArviZ); returns
    the scores (shape of ``x``) and every variable's draws sorted (V × all draws)."""
    from wtp.hb_density import normal_scores

    c, d, v = x.shape
    # ranks along contiguous rows: sorting down a column of a (draws × V) array is 3× slower
    rows = np.ascontiguousarray(x.reshape(c * d, v).T)
    scores, ordered = normal_scores(rows, np.argsort(rows, axis=1), _blom_table(c * d))
    return scores.reshape(x.shape), ordered


def _rhat_of(x: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    between = d * np.var(x.mean(axis=1), axis=0, ddof=1)
    within = np.var(x, axis=1, ddof=1).mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + d - 1) / d)


def _geyer_tau(rho: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation time per column of ``rho`` (lags × V), by Geyer's initial
    positive and monotone sequences exactly as ArviZ's ``_ess`` applies them (a numba loop:
    in Python it cost a second per check of the individual parameters)."""
    from wtp.hb_density import geyer_tau

    return geyer_tau(np.ascontiguousarray(np.asarray(rho, dtype=float).T))


#: lags computed one by one before a variable's autocorrelations go to the FFT
MAX_DIRECT_LAGS = 48


def _fft_tau(x: np.ndarray) -> np.ndarray:
    """Autocorrelation time of every variable of a (C, D, V) array from all lags by FFT
    (ArviZ's ``_autocov``), for draws whose Geyer sequence runs past the direct lags."""
    from scipy.fft import next_fast_len

    c, d, v = x.shape
    centred = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(centred, n=next_fast_len(2 * d), axis=1)
    acov = np.fft.irfft(f * np.conjugate(f), n=next_fast_len(2 * d), axis=1)[:, :d] / d
    mean_var = acov[:, 0].mean(axis=0) * d / (d - 1.0)
    var_plus = mean_var * (d - 1.0) / d
    if c > 1:
        var_plus = var_plus + np.var(x.mean(axis=1), axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus
    return _geyer_tau(rho)


def _ess_of(x: np.ndarray) -> np.ndarray:
    """ArviZ's ``_ess`` for every variable of a (C, D, V) array at once.

    The autocorrelations are computed lag by lag as far as Geyer's sequence reads them
    (:func:`wtp.hb_density.lag_tau`; a few lags for draws that mix well), and by FFT over
    all lags, as ArviZ, for variables that need more than :data:`MAX_DIRECT_LAGS`. The
    same formulas: equal to ArviZ's to rounding (tested to 1e-10), at half the FFT's cost
    on the benchmark study's checks (where most variables need under ten lags)."""
    from wtp.hb_density import lag_tau

    c, d, v = x.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        tau, done = lag_tau(np.ascontiguousarray(np.moveaxis(x, 2, 0)), MAX_DIRECT_LAGS)
        if not done.all():
            tau[~done] = _fft_tau(x[:, :, ~done])
    n = c * d
    ess = n / np.maximum(tau, 1.0 / np.log10(n))
    constant = (x.max(axis=(0, 1)) - x.min(axis=(0, 1))) < np.finfo(float).resolution
    ess[constant] = n
    ess[np.isnan(tau) & ~constant] = np.nan
    return ess


def rank_diagnostics(
    x: np.ndarray, stop_above: float | None = None, workers: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of every variable of ``x``
    (chain × draw × V), equal to ArviZ's ``rhat``/``ess(method="bulk"|"tail")``.

    ArviZ computes them one variable at a time through xarray (about 5 ms per variable on
    this machine, which made a convergence check of a MaxDiff study cost seconds); the same
    formulas (Vehtari et al. 2021) vectorised over variables take milliseconds. Tested
    against ArviZ to 1e-10 (tests/test_hb.py).

    With ``stop_above``, the bulk R-hat (a third of the work) is computed first and, when its
    maximum exceeds ``stop_above``, returned alone with NaN for the rest: R-hat is the larger
    of bulk and folded, so the check has failed whatever the rest would say. Likewise the
    R-hat with the folded draws, before the ESS (half of the work).

    ``workers`` > 1 splits the variables into that many blocks computed in threads (numpy's
    sorts and the numba kernels release the GIL); every statistic is per variable, so the
    numbers are the same.
    """
    x = np.asarray(x, dtype=float)
    v = x.shape[2]
    n_blocks = workers if 1 < workers and 2 * workers <= v else 1
    blocks = [_RankBlock(b) for b in np.array_split(x, n_blocks, axis=2)]

    def run(stage: str) -> np.ndarray:
        if n_blocks == 1:
            return getattr(blocks[0], stage)()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_blocks, thread_name_prefix="wtp-hb-check") as pool:
            return np.concatenate(list(pool.map(lambda b: getattr(b, stage)(), blocks)))

    def stop(rhat: np.ndarray) -> bool:
        return stop_above is not None and np.nanmax(rhat, initial=-np.inf) > stop_above

    rhat = run("bulk_rhat")
    if not stop(rhat):
        rhat = run("rhat")
        if not stop(rhat):
            ess = run("ess")
            return rhat, ess[:, 0], ess[:, 1]
    nan = np.full(v, np.nan)
    return rhat, nan, nan.copy()


class _RankBlock:
    """The steps of :func:`rank_diagnostics` for one block of variables (C × D × V), each
    reusing the one before: bulk R-hat, R-hat (with the folded draws), then bulk and tail ESS
    (V × 2)."""

    def __init__(self, x: np.ndarray):
        self.x = x

    def bulk_rhat(self) -> np.ndarray:
        self.split = _split_chains(self.x)
        # once: rank-normalising is most of the cost
        self.z_split, self.ordered = _z_scale(self.split)
        self.rhat_bulk = _rhat_of(self.z_split)
        return self.rhat_bulk

    def rhat(self) -> np.ndarray:
        # median and quantiles depend only on the values, so the sorted split draws give the
        # same numbers (a partition of sorted rows is cheap)
        folded = np.abs(self.split - np.median(self.ordered, axis=1))
        return np.maximum(self.rhat_bulk, _rhat_of(_z_scale(folded)[0]))

    def ess(self) -> np.ndarray:
        x = self.x
        ess_bulk = _ess_of(self.z_split)
        if x.shape[1] % 2 == 0:  # the split halves hold every draw
            cuts = np.quantile(self.ordered, (0.05, 0.95), axis=1)
        else:
            cuts = np.quantile(x.reshape(-1, x.shape[2]), (0.05, 0.95), axis=0)
        tails = [_ess_of(_split_chains((x <= cut).astype(float))) for cut in cuts]
        return np.stack([ess_bulk, np.minimum(*tails)], axis=1)


def _extremes(arrays: dict[str, np.ndarray]) -> tuple[dict, dict, dict]:
    """Max R-hat, min bulk ESS and min tail ESS per variable (rank-normalised; chain × draw
    × ... arrays). All variables go through :func:`rank_diagnostics` at once (every statistic
    is per variable; one call per name cost most of a population check in fixed overhead)."""
    flat = {}
    for name, a in arrays.items():
        a = np.asarray(a, dtype=float)
        if a.size == 0 or a.ndim < 2:
            continue
        flat[name] = a.reshape(a.shape[0], a.shape[1], -1)
    flat = {name: a for name, a in flat.items() if a.shape[2]}
    if not flat:
        return {}, {}, {}
    r, b, t = rank_diagnostics(np.concatenate(list(flat.values()), axis=2))
    rh, eb, et = {}, {}, {}
    start = 0
    for name, a in flat.items():
        part = slice(start, start + a.shape[2])
        start = part.stop
        rh[name], eb[name], et[name] = (
            float(np.nanmax(r[part])),
            float(np.nanmin(b[part])),
            float(np.nanmin(t[part])),
        )
    return rh, eb, et


@dataclass
class _Draws:
    """Kept draws as numpy arrays (chain × draw × ...): what a convergence check reads.

    ``beta`` is chain × draw × respondent × param; ``extra`` holds derived quantities (e.g.
    segment shares) computed from it."""

    mu: np.ndarray
    sd: np.ndarray
    corr: np.ndarray
    beta: np.ndarray
    diverging: np.ndarray
    n_steps: np.ndarray | None = None
    step_size: np.ndarray | None = None
    extra: dict[str, np.ndarray] | None = None

    @classmethod
    def from_idata(cls, idata) -> _Draws:
        post, stats = idata.posterior, idata.sample_stats

        def stat(name):
            return stats[name].to_numpy() if name in stats else None

        div = stat("diverging")
        return cls(
            mu=post["mu"].to_numpy(),
            sd=post["sd"].to_numpy(),
            corr=post["corr"].to_numpy(),
            beta=post["beta"].transpose("chain", "draw", "respondent", "param").to_numpy(),
            diverging=np.zeros(post["mu"].shape[:2], bool) if div is None else div,
            n_steps=stat("n_steps"),
            step_size=stat("step_size"),
        )


def convergence_diagnostics(
    idata,
    *,
    individual_sample: int | None = 100,
    rng: np.random.Generator | None = None,
    extra: dict[str, np.ndarray] | None = None,
    screen: bool = False,
    population: tuple[dict, dict, dict] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Convergence checks computed by ArviZ (rank-normalised split R-hat, bulk and tail ESS).

    ``converged`` holds when every quantity that feeds a result passes R-hat ≤ ``RHAT_MAX``,
    bulk and tail ESS ≥ ``ESS_MIN``, and no transition diverged:

    * population: ``mu``, ``sd`` and any ``extra`` draws (chain × draw × ...; e.g. segment
      shares) — reported as ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail``;
    * individual: ``beta`` of ``individual_sample`` respondents drawn at random (all when
      ``None``) — reported as ``individual_*``. A random sample keeps the check fast (ArviZ
      needs about 1 ms per parameter per statistic) and still catches a sampler that has not
      mixed, which shows on every respondent.

    The off-diagonal of ``corr`` is reported as ``corr_*`` and ``covariance_converged`` but is
    not part of ``converged``: the correlations mix slowest (in the non-centred
    parameterisation they move only with all z's at once) and only set how far individual
    utilities are pulled towards the population, which the individual check already judges.
    ``limiting`` names the check furthest from its threshold, in words.

    ``screen`` (interim checks while sampling goes on): the individual bulk R-hat is computed
    first and, when it fails, the individual ESS is not computed (``individual_screened``;
    its values are NaN). On the benchmark study that saved most of each failing check, which
    runs beside the sampler on the same cores.

    ``population``: the ``rhat_by_variable``, ``ess_bulk_by_variable`` and
    ``ess_tail_by_variable`` of an earlier call on the same draws, reused.

    ``workers``: threads for the individual diagnostics (:func:`rank_diagnostics`; the same
    numbers).
    """

    draws = idata if isinstance(idata, _Draws) else _Draws.from_idata(idata)
    if population is None:
        pop = {"mu": draws.mu, "sd": draws.sd}
        p = draws.sd.shape[-1]
        lower = np.tril_indices(p, -1)
        if len(lower[0]):
            pop["corr"] = draws.corr[..., lower[0], lower[1]]
        for name, arr in {**(draws.extra or {}), **(extra or {})}.items():
            pop[name] = np.asarray(arr)
        rh, eb, et = _extremes(pop)
    else:
        rh, eb, et = (dict(v) for v in population)
    n_resp = draws.beta.shape[2]
    if individual_sample == 0:
        chosen = np.arange(0)
    elif individual_sample is None or individual_sample >= n_resp:
        chosen = np.arange(n_resp)
    else:
        rng = np.random.default_rng(0) if rng is None else rng
        chosen = np.sort(rng.choice(n_resp, size=individual_sample, replace=False))
    if len(chosen):
        ind = draws.beta[:, :, chosen]
        ind_rhat, ind_ess_b, ind_ess_t = rank_diagnostics(
            ind.reshape(*ind.shape[:2], -1),
            stop_above=RHAT_MAX if screen else None,
            workers=workers,
        )
    else:  # skipped (an interim check whose population set has not passed yet)
        ind_rhat = ind_ess_b = ind_ess_t = np.array([])
    screened = bool(ind_ess_b.size and np.isnan(ind_ess_b).all())
    if screened:
        ind_ess_b = ind_ess_t = np.array([])
    div = int(np.sum(draws.diverging))
    out: dict[str, Any] = {
        "max_rhat": max(v for k, v in rh.items() if k not in NUISANCE),
        "min_ess_bulk": min(v for k, v in eb.items() if k not in NUISANCE),
        "min_ess_tail": min(v for k, v in et.items() if k not in NUISANCE),
        "divergences": div,
        "worst_parameter": max((k for k in rh if k not in NUISANCE), key=rh.get),
        "rhat_by_variable": rh,
        "ess_bulk_by_variable": eb,
        "ess_tail_by_variable": et,
        "individual_checked": int(len(chosen)),
        "individual_screened": screened,
        "individual_max_rhat": float(np.nanmax(ind_rhat)) if ind_rhat.size else float("nan"),
        "individual_rhat_p99": float(np.nanquantile(ind_rhat, 0.99))
        if ind_rhat.size
        else float("nan"),
        "individual_share_rhat_above": float(np.mean(ind_rhat > RHAT_MAX))
        if ind_rhat.size
        else float("nan"),
        "individual_min_ess_bulk": float(np.nanmin(ind_ess_b)) if ind_ess_b.size else float("nan"),
        "individual_min_ess_tail": float(np.nanmin(ind_ess_t)) if ind_ess_t.size else float("nan"),
        "n_draws": int(draws.mu.shape[0] * draws.mu.shape[1]),
        "draws_per_chain": int(draws.mu.shape[1]),
        "chains": int(draws.mu.shape[0]),
        "rhat_threshold": RHAT_MAX,
        "ess_threshold": ESS_MIN,
    }
    if draws.n_steps is not None:
        out["mean_leapfrog_steps"] = float(np.mean(draws.n_steps))
    if draws.step_size is not None:
        out["mean_step_size"] = float(np.mean(draws.step_size))
    checks = _checks(out)
    out["population_converged"] = all(ok for name, _, ok in checks if name.startswith("population"))
    out["individual_converged"] = all(ok for name, _, ok in checks if name.startswith("individual"))
    out["converged"] = all(ok for _, _, ok in checks)
    failing = [(name, value) for name, value, ok in checks if not ok]
    out["limiting"] = "; ".join(f"{name} {value}" for name, value in failing) if failing else ""
    if "corr" in rh:
        out["corr_max_rhat"] = rh["corr"]
        out["corr_min_ess_bulk"] = eb["corr"]
        out["corr_min_ess_tail"] = et["corr"]
        out["covariance_converged"] = bool(
            rh["corr"] <= RHAT_MAX and eb["corr"] >= ESS_MIN and et["corr"] >= ESS_MIN
        )
    return out


def _checks(d: dict) -> list[tuple[str, str, bool]]:
    """(what, value in words, passes) for every check that decides ``converged``."""
    out = [
        (
            f"population R-hat ({d['worst_parameter']})",
            f"{d['max_rhat']:.3f} > {RHAT_MAX}"
            if d["max_rhat"] > RHAT_MAX
            else f"{d['max_rhat']:.3f}",
            d["max_rhat"] <= RHAT_MAX,
        ),
        (
            "population bulk ESS",
            f"{d['min_ess_bulk']:.0f} < {ESS_MIN}",
            d["min_ess_bulk"] >= ESS_MIN,
        ),
        (
            "population tail ESS",
            f"{d['min_ess_tail']:.0f} < {ESS_MIN}",
            d["min_ess_tail"] >= ESS_MIN,
        ),
    ]
    if d["individual_checked"]:
        out.append(
            (
                "individual R-hat",
                f"{d['individual_max_rhat']:.3f} > {RHAT_MAX}",
                d["individual_max_rhat"] <= RHAT_MAX,
            )
        )
    if d["individual_checked"] and d.get("individual_screened"):
        out.append(("individual ESS", "checked once the individual R-hat passes", False))
    elif d["individual_checked"]:
        out += [
            (
                "individual bulk ESS",
                f"{d['individual_min_ess_bulk']:.0f} < {ESS_MIN}",
                d["individual_min_ess_bulk"] >= ESS_MIN,
            ),
            (
                "individual tail ESS",
                f"{d['individual_min_ess_tail']:.0f} < {ESS_MIN}",
                d["individual_min_ess_tail"] >= ESS_MIN,
            ),
        ]
    else:
        out.append(("individual utilities", "checked once the population passes", False))
    out.append(("divergent transitions", f"{d['divergences']} > 0", d["divergences"] == 0))
    return out


# --------------------------------------------------------------------------------------------
# Fitting


@dataclass(frozen=True)
class HBResult:
    """A fitted hierarchical Bayesian MNL.

    Attributes
    ----------
    idata : arviz.InferenceData
        Posterior of ``mu`` (group × param), ``sd``, ``corr``, ``beta`` (respondent × param).
    beta_draws : ndarray, shape (n_draws, R, P)
        Individual parameter draws, chains stacked.
    diagnostics : dict
        From :func:`convergence_diagnostics`, plus the sampler and timings.
    timings : dict
        Seconds spent building, compiling, sampling and diagnosing.
    extra_draws : dict
        The ``extra_diagnostics`` quantities (chain × draw × ...) of the kept draws, as the
        convergence checks computed them (so a caller need not compute them again).
    """

    idata: Any
    beta_draws: np.ndarray
    diagnostics: dict[str, Any]
    timings: dict[str, float]
    data: ChoiceData
    priors: HBPriors
    sampler: str
    settings: dict[str, Any] = field(default_factory=dict)
    extra_draws: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return bool(self.diagnostics.get("converged", False))

    def beta_mean(self) -> np.ndarray:
        """Posterior mean of each respondent's parameters (R × P)."""
        return self.beta_draws.mean(axis=0)

    def to_frame(self) -> pd.DataFrame:
        """Posterior mean individual parameters: ``respondent_id, group, param, beta``."""
        b = self.beta_mean()
        r, p = b.shape
        return pd.DataFrame(
            {
                "respondent_id": np.repeat(np.asarray(self.data.respondent_ids, dtype=object), p),
                "group": np.repeat(
                    np.asarray(self.data.group_names, dtype=object)[self.data.group], p
                ),
                "param": np.tile(np.asarray(self.data.param_names, dtype=object), r),
                "beta": b.ravel(),
            }
        )

    def population(self) -> pd.DataFrame:
        """Population means per group and standard deviations with 95% intervals."""
        post = self.idata.posterior
        rows = []
        mu = post["mu"].stack(s=("chain", "draw")).to_numpy()  # G × P × S
        sd = post["sd"].stack(s=("chain", "draw")).to_numpy()  # P × S
        for g, gname in enumerate(self.data.group_names):
            for j, pname in enumerate(self.data.param_names):
                rows.append(
                    {
                        "group": gname,
                        "param": pname,
                        "mean": mu[g, j].mean(),
                        "lower": np.quantile(mu[g, j], 0.025),
                        "upper": np.quantile(mu[g, j], 0.975),
                        "sd": sd[j].mean(),
                    }
                )
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """Diagnostics against their thresholds, one row per check."""
        d = self.diagnostics
        return pd.DataFrame(
            [
                {
                    "check": "max R-hat",
                    "value": d["max_rhat"],
                    "threshold": f"<= {RHAT_MAX}",
                    "ok": d["max_rhat"] <= RHAT_MAX,
                },
                {
                    "check": "min bulk ESS",
                    "value": d["min_ess_bulk"],
                    "threshold": f">= {ESS_MIN}",
                    "ok": d["min_ess_bulk"] >= ESS_MIN,
                },
                {
                    "check": "min tail ESS",
                    "value": d["min_ess_tail"],
                    "threshold": f">= {ESS_MIN}",
                    "ok": d["min_ess_tail"] >= ESS_MIN,
                },
                {
                    "check": "divergences",
                    "value": d["divergences"],
                    "threshold": "0",
                    "ok": d["divergences"] == 0,
                },
                {
                    "check": "individual max R-hat",
                    "value": d["individual_max_rhat"],
                    "threshold": f"<= {RHAT_MAX}",
                    "ok": d["individual_max_rhat"] <= RHAT_MAX,
                },
                {
                    "check": "individual min bulk ESS",
                    "value": d["individual_min_ess_bulk"],
                    "threshold": f">= {ESS_MIN}",
                    "ok": d["individual_min_ess_bulk"] >= ESS_MIN,
                },
                {
                    "check": "individual min tail ESS",
                    "value": d["individual_min_ess_tail"],
                    "threshold": f">= {ESS_MIN}",
                    "ok": d["individual_min_ess_tail"] >= ESS_MIN,
                },
            ]
        )


# nutpie settings every fit starts from (benchmarks/maxdiff.py --low-rank measures the alternative)
DEFAULT_SAMPLER_KWARGS: dict[str, Any] = {}

# study.toml keys of [maxdiff] / [conjoint] that set the sampler, with what each must be
SAMPLER_KEYS = {
    "draws": (int, 1, "kept draws per chain at the first convergence check (a whole number >= 1)"),
    "tune": (int, 1, "warm-up iterations per chain (a whole number >= 1)"),
    "chains": (int, 1, "number of chains (a whole number >= 1)"),
    "time_budget": (float, 1, "seconds before sampling stops unconverged (a number >= 1)"),
    "target_accept": (float, 0, "target acceptance between 0 and 1 (e.g. 0.8)"),
    "until_converged": (bool, None, "true or false"),
    "save_posterior": (bool, None, "true or false"),
}


def sampler_settings(section: dict | None, source: str = "study.toml", **given) -> dict[str, Any]:
    """Sampler settings from a study section (``[maxdiff]`` or ``[conjoint]``) overridden by
    the options given (None = not given); only the keys set anywhere are returned, so the
    library defaults of :func:`fit_hb` apply to the rest.

    Raises
    ------
    InputError
        A value of the wrong kind, naming the key and what it must be.
    """
    from wtp.errors import InputError, Problem

    out: dict[str, Any] = {}
    for key, (kind, low, expected) in SAMPLER_KEYS.items():
        value = given.get(key)
        where = f"--{key.replace('_', '-')}"
        if value is None and section and key in section:
            value, where = section[key], source
        if value is None:
            continue
        ok = (
            isinstance(value, bool)
            if kind is bool
            else (isinstance(value, (int, float)) and not isinstance(value, bool))
        )
        if ok and kind is int:
            ok = float(value).is_integer()
        if ok and kind is not bool:
            ok = value >= low and (key != "target_accept" or 0 < value < 1)
        if not ok:
            raise InputError(Problem(where, None, key, expected, value))
        out[key] = kind(value)
    return out


def unconverged_advice(d: dict) -> str:
    """What an analyst should do about a run that did not converge, in words."""
    if d.get("converged"):
        return ""
    why = d.get("stopped_because", "")
    failing = d.get("limiting", "")
    head = f"The hierarchical Bayes estimates have NOT settled ({failing})."
    if d.get("divergences", 0) > 0:
        act = "The sampler hit divergent transitions: rerun with --target-accept 0.95 (and a longer --time-budget if needed)."
    elif "time budget" in why:
        spent = d.get("total_s")
        act = (
            f"Sampling stopped when its time budget ran out{f' after {spent:.0f} s' if spent else ''}: rerun with a longer "
            "--time-budget (for example twice as long); the run continues from scratch and stops as soon as it has converged."
        )
    elif "rounds" in why:
        act = "Several rounds with longer warm-up did not settle it: rerun with --tune 2000 and a longer --time-budget, or check the data (respondents with very few tasks)."
    else:
        act = (
            "Rerun without --draws/--tune limits so that sampling continues until it has converged."
        )
    return f"{head} {act} Until then, do not use the shares, utilities or prices built on them."


def _seed(rng: np.random.Generator | int | None) -> int:
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**31 - 1))
    return int(rng or 0)


def fit_hb(
    data: ChoiceData,
    *,
    draws: int = 200,
    tune: int = 300,
    chains: int | None = None,
    cores: int | None = None,
    rng: np.random.Generator | int | None = None,
    priors: HBPriors | None = None,
    target_accept: float = 0.8,
    progress: bool | Reporter = True,
    sampler: str = "auto",
    layout: str | None = None,
    sampler_kwargs: dict[str, Any] | None = None,
    extra_diagnostics=None,
    individual_sample: int | None = 100,
    until_converged: bool = True,
    time_budget: float | None = 600.0,
    max_rounds: int = 3,
    max_draws: int | None = None,
) -> HBResult:
    """Sample the hierarchical Bayesian MNL until it has converged (or the time budget ends).

    How sampling proceeds (nutpie; see :func:`_run_rounds`):

    ====== ===========================================================================
    step   what happens
    ====== ===========================================================================
    1      ``chains`` chains warm up for ``tune`` iterations, then keep drawing
    2      at ``draws`` kept draws per chain, then at ×1.25 steps, the draws so far are
           checked (:func:`convergence_diagnostics`); converged → stop there
    3      divergent transitions → a new round with a higher ``target_accept`` and
           longer warm-up (more draws cannot remove divergences)
    4      the draw cap reached unconverged → a new round with twice the warm-up
    5      ``time_budget`` seconds spent (compilation included) → stop at the draws
           so far and report the run as not converged, with the check that failed
    ====== ===========================================================================

    Every check happens at a fixed number of draws per chain and nutpie's chains are
    seeded, so the same data and seed stop at the same draw with the same numbers (unless
    the time budget ends the run). ``diagnostics["sampling"]`` records every round and check.

    Parameters
    ----------
    data : ChoiceData
        From :func:`choice_data`.
    draws : int, default 200
        Kept draws per chain at the first convergence check (with ``until_converged=False``:
        the draws kept).
    tune : int, default 300
        Warm-up iterations per chain in the first round (nutpie adapts quickly).
    chains : int, optional
        Chains, run in parallel on ``cores`` cores (default: all available, at most ``chains``).
        Default: one per core, at least 2 and at most 4 (:func:`default_chains`, PyMC's rule).
        More chains than cores run in turns and each pays its own warm-up: on the 2-core
        benchmark machine 4 chains took 134 s of CPU to converge against 99 s for 2 (the
        same thresholds passed). Fewer chains make R-hat less sensitive to a chain stuck in
        another mode; pass ``chains=4`` for that extra safety on a small machine.
    rng : numpy.random.Generator or int, optional
        Seeds the sampler.
    priors : HBPriors, optional
    target_accept : float, default 0.8
        Target acceptance of the first round (raised after divergences).
    progress : bool or wtp.progress.Reporter, default True
        Progress lines on stderr (a :class:`~wtp.progress.Reporter` to direct them).
    sampler : {"auto", "nutpie", "pymc"}
        ``auto`` uses nutpie when installed. PyMC's sampler runs one fixed round.
    layout : {"factorised", "dense"}, optional
        Force the likelihood layout (default: whichever needs fewer ``exp`` calls).
    sampler_kwargs : dict, optional
        Passed on to nutpie's settings or ``pymc.sample`` (e.g. ``maxdepth``).
    extra_diagnostics : callable, optional
        ``f(beta_draws (chain × draw × R × P)) -> {name: chain × draw × ... array}``: derived
        quantities (e.g. segment shares) checked with the population parameters.
    individual_sample : int or None, default 100
        Respondents whose β enter the individual-level diagnostics (None: all).
    until_converged : bool, default True
        Keep sampling until converged; False runs exactly ``tune`` + ``draws``.
    time_budget : float or None, default 600
        Seconds (compilation included) after which sampling stops unconverged; None: no
        limit. The first convergence check always completes.
    max_rounds : int, default 3
    max_draws : int, optional
        Most kept draws per chain in a round (default: as many as keep the individual draws
        under about 600 MB, at most 8,000).

    Returns
    -------
    HBResult
    """
    import os

    from wtp.progress import Reporter, heartbeat, quiet

    t_start = time.perf_counter()
    chains = default_chains() if chains is None else chains
    reporter = progress if isinstance(progress, Reporter) else (Reporter() if progress else quiet())
    priors = priors or HBPriors()
    seed = _seed(rng)
    if cores is None:
        cores = max(1, min(chains, os.cpu_count() or 1))
    t0 = time.perf_counter()
    use_nutpie = sampler == "nutpie" or (sampler == "auto" and has_nutpie())
    if use_nutpie:
        # nutpie's core alone: importing the package imports ArviZ, matplotlib and
        # scipy.stats (1.35 s), which now happens beside the sampler (_import_beside_sampler)
        _nutpie_lib()
    timings: dict[str, float] = {"import_s": time.perf_counter() - t0}
    # nutpie samples the hand-written density (wtp.hb_density); the PyMC model is built only
    # for PyMC's sampler
    timings["build_s"] = 0.0
    diag_rng = np.random.default_rng(seed)
    individual_rng_state = diag_rng.bit_generator.state

    def diagnose(draws: _Draws, interim: bool = False, before_individual=None) -> dict:
        """``before_individual()``, when given, is called before the individual diagnostics
        and returns the threads they may use (the sampler pauses for them)."""
        # the same respondents at every check
        diag_rng.bit_generator.state = individual_rng_state
        if interim:
            # the individual set costs most of a check; it can only pass once the population has
            d = convergence_diagnostics(draws, individual_sample=0)
            if not (
                d["max_rhat"] <= RHAT_MAX
                and d["min_ess_bulk"] >= ESS_MIN
                and d["min_ess_tail"] >= ESS_MIN
            ):
                return d
            population = (
                d["rhat_by_variable"],
                d["ess_bulk_by_variable"],
                d["ess_tail_by_variable"],
            )
        else:
            population = None
        workers = before_individual() if before_individual is not None else 1
        return convergence_diagnostics(
            draws,
            individual_sample=individual_sample,
            rng=diag_rng,
            screen=interim,
            population=population,
            workers=workers,
        )

    settings = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "cores": cores,
        "seed": seed,
        "target_accept": target_accept,
        "until_converged": until_converged,
        "time_budget_s": time_budget,
        "max_rounds": max_rounds,
    }
    if use_nutpie:
        t0 = time.perf_counter()
        reporter.message(
            f"hierarchical Bayes: {data.n_respondents} respondents, {data.n_params} parameters each; compiling the model"
        )
        with heartbeat("loading the model (numba; compiled once, then cached)", reporter.message):
            compiled = _compiled(data, priors, layout)
        timings["compile_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        deadline = None if time_budget is None else t_start + float(time_budget)
        # every chain in its own thread, even on fewer cores: the convergence checks need all
        # chains to advance together (nutpie would otherwise run the later ones afterwards)
        idata, diagnostics, beta, extra, history = _run_rounds(
            compiled,
            diagnose,
            extra_diagnostics=extra_diagnostics,
            reporter=reporter,
            tune=tune,
            draws=draws,
            chains=chains,
            cores=chains,
            seed=seed,
            target_accept=target_accept,
            until_converged=until_converged,
            deadline=deadline,
            max_rounds=max_rounds,
            draws_cap=max(draws, max_draws) if max_draws else _draws_cap(data, chains, draws),
            data=data,
            sampler_kwargs=dict(
                DEFAULT_SAMPLER_KWARGS if sampler_kwargs is None else sampler_kwargs
            ),
        )
        timings["sample_s"] = time.perf_counter() - t0
        used = "nutpie"
    else:
        import pymc as pm

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # PyTensor's C backend (unused here) complains about BLAS on pip installs
            warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
            model = build_model(data, priors, layout)
        timings["build_s"] = time.perf_counter() - t0
        # beta is rebuilt from (mu, chol, z) as draws are read: storing it would double the trace
        var_names = ["mu", "pop", "pop_stds", "pop_corr"]
        t0 = time.perf_counter()
        reporter.message(
            f"hierarchical Bayes (PyMC sampler): {chains} chains x {draws} draws after {tune} warm-up"
        )
        with model, heartbeat("sampling (PyMC)", reporter.message, every=10.0):
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=seed,
                progressbar=False,
                target_accept=target_accept,
                var_names=[*var_names, "beta"],
                compute_convergence_checks=False,
                **(sampler_kwargs or {}),
            )
        # PyMC compiles inside sample(); the split is not observable from here
        timings["compile_s"] = float("nan")
        timings["sample_s"] = time.perf_counter() - t0
        idata = _tidy(idata, data)
        draws_ = _Draws.from_idata(idata)
        if extra_diagnostics is not None:
            draws_.extra = extra_diagnostics(draws_.beta)
        diagnostics = diagnose(draws_)
        beta, extra = draws_.beta, draws_.extra
        history = [
            {
                "round": 1,
                "tune": tune,
                "target_accept": target_accept,
                "draws_per_chain": draws,
                "converged": diagnostics["converged"],
                "limiting": diagnostics["limiting"],
                "stopped_because": "fixed draws (PyMC sampler)",
            }
        ]
        used = "pymc"
    timings["total_s"] = time.perf_counter() - t_start
    diagnostics["sampler"] = used
    diagnostics["sampling"] = history
    diagnostics["stopped_because"] = history[-1]["stopped_because"] if history else ""
    diagnostics.update({k: round(v, 3) for k, v in timings.items() if not math.isnan(v)})
    verdict = (
        "converged" if diagnostics["converged"] else f"NOT converged ({diagnostics['limiting']})"
    )
    reporter.message(
        f"hierarchical Bayes: {verdict} after {diagnostics['draws_per_chain']} draws per chain, {timings['total_s']:.0f} s in all"
    )
    reporter.close()
    beta_draws = beta.reshape(-1, beta.shape[2], beta.shape[3])
    settings["rounds"] = len(history)
    return HBResult(
        idata=idata,
        beta_draws=beta_draws,
        diagnostics=diagnostics,
        timings=timings,
        data=data,
        priors=priors,
        sampler=used,
        settings=settings,
        extra_draws=dict(extra or {}),
    )


def default_chains() -> int:
    """Chains when none are asked for: one per core, at least 2 (R-hat compares chains) and
    at most 4 (PyMC's default rule)."""
    import os

    return max(2, min(4, os.cpu_count() or 1))


def _draws_cap(data: ChoiceData, chains: int, draws: int) -> int:
    """Most kept draws per chain a round may take: the individual draws held in memory stay
    under about 600 MB (8 bytes × chains × draws × respondents × parameters)."""
    per_draw = 8.0 * chains * max(1, data.n_respondents * data.n_params)
    return int(max(draws, min(8000, 6e8 / per_draw)))


def _checkpoints(first: int, cap: int) -> list[int]:
    """Draws per chain at which convergence is checked: ``first``, then ×1.25 (to 50s).

    A run stops at the first check that passes, so it overshoots the draws it needed by half
    a step on average: ×1.5 steps cost the benchmark study 550 draws per chain when the check
    at 1,050 missed by R-hat 1.011; a check costs 1–2 s there, 50 draws per chain about 1 s."""
    points = [first]
    while points[-1] < cap:
        points.append(min(cap, int(math.ceil(points[-1] * 1.25 / 50.0) * 50)))
    return points


#: threads for the individual diagnostics of a check, run while the chains pause
CHECK_WORKERS = 2

#: how often nutpie reports the chains' draws (ms) and the driver looks at them (s): a check
#: starts on average half of each after its draws exist, and the last check's wait is part of
#: the run's time (250 ms and 0.2 s cost the benchmark study 0.2 s on average)
PROGRESS_MS = 100
POLL_S = 0.05

_PROGRESS_TEMPLATE = (
    "{% for chain in chains %}{{ chain.finished_draws }}:{{ chain.divergences }};{% endfor %}"
)


class _Tracker:
    """Per-chain counts from nutpie's progress callback (called from the sampler's thread)."""

    def __init__(self, chains: int, tune: int):
        self.tune = tune
        self.finished = [0] * chains
        self.divergences = [0] * chains

    def __call__(self, text: str) -> None:
        parts = [p for p in text.strip().split(";") if p]
        for i, part in enumerate(parts[: len(self.finished)]):
            done, div = part.split(":")
            self.finished[i] = int(done)
            self.divergences[i] = int(div)

    def kept(self) -> int:
        """Kept (post-warm-up) draws of the slowest chain."""
        return max(0, min(self.finished) - self.tune)

    def warmup_done(self) -> int:
        return sum(min(f, self.tune) for f in self.finished)

    def kept_total(self, cap: int | None = None) -> int:
        """Kept draws of all chains (each counted up to ``cap``, the next check's target)."""
        kept = (max(0, f - self.tune) for f in self.finished)
        return sum(kept if cap is None else (min(cap, k) for k in kept))


#: trace folders left by a run that was killed are removed by a later run once this old (or
#: as soon as the process named in the folder has gone)
STALE_TRACE_S = 24 * 3600.0
_TRACE_PREFIX = "wtp-hb-trace-"
#: memory-backed folder preferred for the trace (see :func:`_zarr_store_dir`)
SHM_DIR = "/dev/shm"


def _process_gone(name: str) -> bool:
    """Whether the folder name ``wtp-hb-trace-<pid>-…`` names a process that no longer runs."""
    import os

    pid = name[len(_TRACE_PREFIX) :].split("-", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process, or no way to ask: keep the folder
        return False
    return False


def _remove_stale_traces(root: str | None = None, now: float | None = None) -> int:
    """Remove our own trace folders older than :data:`STALE_TRACE_S` (a run's time budget is
    minutes, so none of them can still be in use) or left by a process that has gone; returns
    how many went."""
    import shutil
    import tempfile
    import time
    from pathlib import Path

    now = time.time() if now is None else now
    gone = 0
    for folder in Path(root or tempfile.gettempdir()).glob(_TRACE_PREFIX + "*"):
        try:
            if folder.is_dir() and (
                now - folder.stat().st_mtime > STALE_TRACE_S or _process_gone(folder.name)
            ):
                shutil.rmtree(folder, ignore_errors=True)
                gone += 1
        except OSError:
            continue
    return gone


def _trace_root(expected_bytes: int) -> str | None:
    """:data:`SHM_DIR` where it exists with room for twice ``expected_bytes``, else None (the
    system's temporary folder). nutpie writes about 3 × n_dim doubles per draw (the draw, its
    gradient and the unconstrained draw, whatever its settings say: 545 MB on the benchmark
    study); on the disk that cost 0.8 s of system time per 1,800 draws plus the kernel's
    write-back beside the sampler, in memory 0.2 s."""
    import os
    import shutil

    try:
        if os.path.isdir(SHM_DIR) and os.access(SHM_DIR, os.W_OK):
            if shutil.disk_usage(SHM_DIR).free > 2 * expected_bytes:
                return SHM_DIR
    except OSError:
        pass
    return None


def _zarr_store_dir(expected_bytes: int = 0) -> str | None:
    """A fresh folder for nutpie's zarr trace (in memory where there is room, see
    :func:`_trace_root`), or None where none can be made (the sampler then keeps its trace in
    memory and checks read it through ``inspect``). zarr is only looked for here: importing
    it (0.15 s) waits for the first check, beside the sampler, instead of holding up its
    start."""
    import importlib.util
    import os
    import tempfile

    if importlib.util.find_spec("zarr") is None:
        return None
    root = _trace_root(expected_bytes)
    try:
        for folder in {root, None}:
            _remove_stale_traces(folder)
        return tempfile.mkdtemp(prefix=f"{_TRACE_PREFIX}{os.getpid()}-", dir=root)
    except OSError:
        return None


def _start_nutpie(
    compiled,
    *,
    tune,
    draws,
    chains,
    cores,
    seed,
    target_accept,
    sampler_kwargs,
    tracker,
    store_dir=None,
):
    """nutpie's background sampler with a progress callback instead of its terminal bar.

    ``nutpie.sample`` offers a callback only inside notebooks, so the sampler is assembled
    here from nutpie 0.16's core (:func:`_nutpie_lib`); ``inspect`` and ``abort`` are its.
    With ``store_dir`` the trace goes to a zarr store in that folder (chunks of 16 draws per
    chain), from which each convergence check reads only the draws it has not seen:
    nutpie's in-memory trace can only be read by copying all of it (``inspect``), which cost
    1.6 s of CPU per check at 450 kept draws on the benchmark study and grew with every check.
    """
    _lib = _nutpie_lib()
    low_rank = bool(sampler_kwargs.get("low_rank_modified_mass_matrix", False))
    settings = (_lib.PyNutsSettings.LowRank if low_rank else _lib.PyNutsSettings.Diag)(seed)
    settings.num_tune = tune
    settings.num_draws = draws
    settings.num_chains = chains
    settings.target_accept = target_accept
    # μ and z are read from the unconstrained draw (the stored draw is the covariance's factor)
    settings.store_unconstrained = True
    for name, value in sampler_kwargs.items():
        if name != "low_rank_modified_mass_matrix":
            setattr(settings, name, value)
    zarr_store = None
    store = _lib.PyStorage.arrow()
    if store_dir is not None:
        zarr_store = _lib.store.LocalStore(store_dir)
        store = _lib.PyStorage.zarr(zarr_store)
    progress = _lib.ProgressType.template_callback(PROGRESS_MS, _PROGRESS_TEMPLATE, cores, tracker)
    sampler = _lib.PySampler.from_pymc(settings, cores, compiled.make_model(_lib), progress, store)
    return _NutpieRun(sampler, store_dir, zarr_store)


class _NutpieRun:
    """One round's nutpie sampler (``nutpie.sample._BackgroundSampler``'s part of it that wtp
    uses): the Rust sampler, its trace folder and the store object kept alive beside it."""

    def __init__(self, sampler, zarr_dir: str | None, zarr_store=None):
        self._sampler = sampler
        self._zarr_dir = zarr_dir
        self._zarr_store = zarr_store

    def cancel(self) -> None:
        """Stop sampling and drop the trace."""
        self._sampler.abort()

    def __del__(self):
        sampler = getattr(self, "_sampler", None)
        if sampler is not None and not sampler.is_empty(ignore_error=True):
            self.cancel()


class _KeptDraws:
    """Kept draws of every chain, read from nutpie's trace as sampling goes on (the zarr
    store of :func:`_start_nutpie`, or its in-memory Arrow trace where no store was made).

    Each convergence check converts only the draws since the previous one, rebuilds β =
    μ_g + z·Lᵀ for them (β is not stored by the sampler: it would double the trace) and
    computes ``extra_diagnostics`` on them alone. Converting the whole trace to ArviZ at
    every check cost most of a long run's time before. Arrays are allocated for
    ``capacity`` draws at once (memory is only committed as draws are written): growing
    them by doubling copied β (200 MB at 1,500 draws on the benchmark study), 2.7 s a run."""

    # "pop" is PyMC's packed lower triangle of the Cholesky factor (np.tril_indices order)
    _SHAPES = {"mu": "gp", "pop": "t", "z": "rp"}

    def __init__(self, data: ChoiceData, chains: int, extra_fn=None, capacity: int = 0):
        self.data = data
        self.chains = chains
        self.capacity = capacity
        self.extra_fn = extra_fn
        self.n = 0
        self.buf: dict[str, np.ndarray] = {}
        p = data.n_params
        sizes = {"g": data.n_groups, "p": p, "r": data.n_respondents, "t": p * (p + 1) // 2}
        self.shapes = {k: tuple(sizes[c] for c in v) for k, v in self._SHAPES.items()}

    def _slots(self, name: str, k: int, shape: tuple, dtype) -> np.ndarray:
        """The buffer of ``name`` (chain × draw × ``shape``) for draws ``self.n .. self.n + k``
        to be written into."""
        buf = self.buf.get(name)
        if buf is None or buf.shape[1] < self.n + k:
            grown = np.empty(
                (
                    self.chains,
                    max(self.n + k, self.capacity, 2 * (0 if buf is None else buf.shape[1])),
                    *shape,
                ),
                dtype=dtype,
            )
            if buf is not None:
                grown[:, : self.n] = buf[:, : self.n]
            self.buf[name] = buf = grown
        return buf[:, self.n : self.n + k]

    def _append(self, name: str, chunk: np.ndarray) -> None:
        self._slots(name, chunk.shape[1], chunk.shape[2:], chunk.dtype)[...] = chunk

    def _trace(self, bg, upto: int, wait_s: float = 30.0):
        """nutpie's per-chain Arrow batches once every chain has ``upto`` kept draws stored
        (the progress callback can run a few draws ahead of the store)."""
        import pyarrow as pa

        t_end = time.perf_counter() + wait_s
        while True:
            draws, stats = bg._sampler.inspect().get_arrow_trace()
            tunes = [
                int(pa.array(st.column("tuning")).to_numpy(zero_copy_only=False).sum())
                for st in stats
            ]
            if all(d.num_rows >= t + upto for d, t in zip(draws, tunes, strict=True)):
                return draws, stats, tunes
            if time.perf_counter() > t_end:
                raise RuntimeError("the sampler's trace lags its progress report")
            time.sleep(0.1)

    _STATS = ("diverging", "n_steps", "step_size")

    def _from_arrow(self, bg, upto: int) -> dict[str, np.ndarray]:
        """Draws ``self.n .. upto`` from nutpie's in-memory trace (copied whole by inspect)."""
        import pyarrow as pa

        k = upto - self.n
        draws, stats, tunes = self._trace(bg, upto)
        cols: dict[str, list] = {name: [] for name in ("pop", "unconstrained", *self._STATS)}
        for d, st, t in zip(draws, stats, tunes, strict=True):
            d, st = d.slice(t + self.n, k), st.slice(t + self.n, k)
            cols["pop"].append(pa.array(d.column("pop")).flatten().to_numpy().reshape(k, -1))
            flat = pa.array(st.column("unconstrained_draw")).flatten().to_numpy()
            cols["unconstrained"].append(flat.reshape(k, -1))
            for name in self._STATS:
                cols[name].append(pa.array(st.column(name)).to_numpy(zero_copy_only=False))
        out = {name: np.stack(v) for name, v in cols.items()}
        return self._unpack(out.pop("unconstrained"), out)

    def _unpack(self, x: np.ndarray, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """μ and z out of unconstrained draws ``x`` (chain × draw × n_dim: μ, the covariance's
        coordinates, z), added to ``out``."""
        c, k = x.shape[:2]
        gp = int(np.prod(self.shapes["mu"]))
        t = self.shapes["pop"][0]
        out["mu"] = x[..., :gp].reshape(c, k, *self.shapes["mu"])
        out["z"] = x[..., gp + t :].reshape(c, k, *self.shapes["z"])
        return out

    def _from_zarr(self, bg, upto: int, wait_s: float = 30.0) -> dict[str, np.ndarray]:
        """Draws ``self.n .. upto`` from the zarr store: only these chunks are read. nutpie
        writes a chunk when its 16 draws are full; ``flush`` writes the partial ones, and a
        slot not yet written reads as NaN (``n_steps``: 0)."""
        import zarr

        t_end = time.perf_counter() + wait_s
        while True:
            bg._sampler.flush()
            group = zarr.open_group(bg._zarr_dir, mode="r")
            window = slice(self.n, upto)
            out = {"pop": group["posterior"]["pop"][:, window]}
            for name in self._STATS:
                out[name] = group["sample_stats"][name][:, window]
            x = group["sample_stats"]["unconstrained_draw"][:, window]
            if (out["n_steps"] > 0).all() and not np.isnan(x).any():
                return self._unpack(x, out)
            if time.perf_counter() > t_end:
                raise RuntimeError("the sampler's trace lags its progress report")
            time.sleep(0.1)

    def read(self, bg, upto: int) -> _Draws:
        """Read kept draws ``self.n .. upto`` of every chain; the draws so far."""
        from wtp.hb_density import beta_draws_into

        k = upto - self.n
        if k > 0:
            if getattr(bg, "_zarr_dir", None):
                arr = self._from_zarr(bg, upto)
            else:
                arr = self._from_arrow(bg, upto)
            st_cols = {name: arr[name] for name in self._STATS}
            p = self.data.n_params
            chol = np.zeros((self.chains, k, p, p))
            chol[..., *np.tril_indices(p)] = arr["pop"]
            z = np.ascontiguousarray(arr["z"], dtype=float)
            beta = self._slots("beta", k, z.shape[2:], float)
            beta_draws_into(
                np.ascontiguousarray(arr["mu"], dtype=float),
                chol,
                z,
                np.ascontiguousarray(self.data.group, dtype=np.int64),
                beta,
            )
            # Σ = L Lᵀ: σ_i = ‖L_i·‖ and Ω = D⁻¹ Σ D⁻¹ (PyMC's pop_stds and pop_corr)
            sd = np.sqrt(np.sum(chol**2, axis=-1))
            cov = np.matmul(chol, np.swapaxes(chol, -1, -2))
            self._append("mu", arr["mu"])
            self._append("sd", sd)
            self._append("corr", cov / (sd[..., :, None] * sd[..., None, :]))
            for name, v in st_cols.items():
                self._append(name, v)
            if self.extra_fn is not None:
                for name, v in self.extra_fn(beta).items():
                    self._append("extra:" + name, np.asarray(v))
            self.n = upto
        return self.draws()

    def draws(self) -> _Draws:
        n = self.n
        b = {name: v[:, :n] for name, v in self.buf.items()}
        extra = {name[6:]: v for name, v in b.items() if name.startswith("extra:")}
        return _Draws(
            mu=b["mu"],
            sd=b["sd"],
            corr=b["corr"],
            beta=b["beta"],
            diverging=b["diverging"].astype(bool),
            n_steps=b["n_steps"],
            step_size=b["step_size"],
            extra=extra or None,
        )


def _idata(draws: _Draws, data: ChoiceData):
    """The reported posterior as ArviZ ``InferenceData`` (built once, at the end)."""
    import arviz as az

    stats = {"diverging": draws.diverging}
    if draws.n_steps is not None:
        stats["n_steps"] = draws.n_steps
    if draws.step_size is not None:
        stats["step_size"] = draws.step_size
    return az.from_dict(
        posterior={"mu": draws.mu, "sd": draws.sd, "corr": draws.corr, "beta": draws.beta},
        sample_stats=stats,
        coords={
            "group": list(data.group_names),
            "param": list(data.param_names),
            "param_b": list(data.param_names),
            "respondent": [str(x) for x in data.respondent_ids],
        },
        dims={
            "mu": ["group", "param"],
            "sd": ["param"],
            "corr": ["param", "param_b"],
            "beta": ["respondent", "param"],
        },
    )


def _run_rounds(compiled, diagnose, **settings):
    """Rounds of nutpie sampling with convergence checks (the table in :func:`fit_hb`; the
    settings are :func:`_sample_rounds`'s); the zarr trace folders made on the way are removed
    however the run ends."""
    import shutil
    import threading

    stores: list[str] = []
    try:
        return _sample_rounds(compiled, diagnose, stores, **settings)
    finally:
        # thousands of chunk files: removing them took 1–2.6 s of the benchmark's wall time, so
        # it happens beside the rest of the run (not a daemon: the interpreter waits for it)
        def remove():
            for folder in stores:
                shutil.rmtree(folder, ignore_errors=True)

        threading.Thread(target=remove, name="wtp-hb-trace-cleanup").start()


def _sample_rounds(
    compiled,
    diagnose,
    stores: list[str],
    *,
    extra_diagnostics,
    reporter,
    tune,
    draws,
    chains,
    cores,
    seed,
    target_accept,
    until_converged,
    deadline,
    max_rounds,
    draws_cap,
    sampler_kwargs,
    data,
):
    """The rounds of :func:`_run_rounds`; the zarr trace folders it makes go to ``stores``."""
    from wtp.progress import SamplingStatus

    history: list[dict] = []
    best = None  # (draws, diagnostics) of the latest check
    t0 = time.perf_counter()
    round_tune, round_ta = tune, target_accept
    cap = draws_cap if until_converged else draws
    for rnd in range(1, max_rounds + 1):
        tracker = _Tracker(chains, round_tune)
        kept = _KeptDraws(data, chains, extra_diagnostics, capacity=cap)
        # the draw, its gradient and the unconstrained draw, as doubles (see _trace_root)
        store_dir = _zarr_store_dir(24 * compiled.n_dim * chains * (round_tune + cap))
        if store_dir is not None:
            stores.append(store_dir)
        bg = _start_nutpie(
            compiled,
            tune=round_tune,
            draws=cap,
            chains=chains,
            cores=cores,
            seed=seed + rnd - 1,
            target_accept=round_ta,
            sampler_kwargs=sampler_kwargs,
            tracker=tracker,
            store_dir=store_dir,
        )
        if rnd == 1:
            _import_beside_sampler()
        reporter.message(
            f"sampling round {rnd}: {chains} chains, {round_tune} warm-up iterations, "
            f"target acceptance {round_ta:.2f}; convergence checked from {draws} draws per chain"
        )
        points = _checkpoints(draws, cap)
        outcome = "cap"
        for n in points:
            if deadline is not None and time.perf_counter() > deadline and (best is not None):
                outcome = "time"
                history[-1]["stopped_because"] = "time budget spent"
                break
            rate_t, rate_n = time.perf_counter(), tracker.kept_total() + tracker.warmup_done()
            out_of_time = False
            while True:
                now = time.perf_counter()
                done = tracker.kept_total() + tracker.warmup_done()
                rate = (
                    (done - rate_n) / (now - rate_t) if now - rate_t > 1 and done > rate_n else None
                )
                left = max(0, chains * (round_tune + n) - done)
                reporter.status(
                    SamplingStatus(
                        round=rnd,
                        chains=chains,
                        chains_warming_up=sum(f < round_tune for f in tracker.finished),
                        draws_done=tracker.kept_total(cap=n),
                        draws_target=chains * n,
                        warmup_done=tracker.warmup_done(),
                        warmup_total=chains * round_tune,
                        divergences=sum(tracker.divergences),
                        elapsed_s=now - t0,
                        remaining_s=left / rate if rate else (0.0 if not left else None),
                    )
                )
                if tracker.kept() >= n:
                    break
                if deadline is not None and now > deadline and best is not None:
                    out_of_time = True
                    break
                time.sleep(POLL_S)
            if out_of_time:
                outcome = "time"
                history[-1]["stopped_because"] = "time budget spent"
                break
            t_check = time.perf_counter()
            draws_so_far = kept.read(bg, n)
            t_read = time.perf_counter() - t_check
            last = n >= cap or not until_converged
            paused = []

            def pause(bg=bg, paused=paused):
                # the individual diagnostics come once the population has passed, so this
                # check may be the last: the chains wait (their draws do not depend on when
                # they run) and the check has every core, instead of sharing them with draws
                # that are thrown away if it passes
                bg._sampler.pause()
                paused.append(True)
                return CHECK_WORKERS

            diag = diagnose(draws_so_far, interim=not last, before_individual=pause)
            best = (draws_so_far, diag)
            elapsed = time.perf_counter() - t0
            if diag["converged"]:
                why = "converged"
            elif not until_converged:
                why = "fixed draws (until_converged=False)"
            elif diag["divergences"] > 0:
                why = "divergent transitions: new round with a higher target acceptance"
            elif n >= cap:
                why = "draw cap reached: new round with longer warm-up"
            else:
                why = "continuing"
            history.append(_record(rnd, round_tune, round_ta, n, diag, elapsed, why))
            history[-1]["check_s"] = round(time.perf_counter() - t_check, 1)
            history[-1]["read_s"] = round(t_read, 1)
            reporter.message(
                f"  check at {n} draws per chain ({elapsed:.0f} s): "
                + ("converged" if diag["converged"] else f"not yet ({diag['limiting']})")
            )
            if why == "continuing" and paused:
                bg._sampler.resume()
            if why != "continuing":
                outcome = (
                    "done"
                    if why == "converged" or not until_converged
                    else ("divergent" if diag["divergences"] else "cap")
                )
                break
        if history and history[-1]["round"] == rnd:
            history[-1]["warmup_leapfrog_steps"] = _warmup_steps(bg)
            history[-1]["kept_leapfrog_steps"] = int(np.sum(kept.draws().n_steps))
        bg.cancel()
        if outcome in ("done", "time"):
            break
        if deadline is not None and time.perf_counter() > deadline:
            history[-1]["stopped_because"] = "time budget spent"
            break
        if rnd == max_rounds:
            history[-1]["stopped_because"] = f"{max_rounds} rounds without convergence"
            break
        if outcome == "divergent":
            round_ta = min(0.99, 1.0 - (1.0 - round_ta) / 2.0)
            round_tune = int(round_tune * 1.5)
        else:
            round_tune *= 2
    draws_so_far, diag = best
    if not diag["individual_checked"] or diag["individual_screened"]:
        diag = diagnose(draws_so_far)  # the reported draws get the full diagnostics
    return _idata(draws_so_far, data), diag, draws_so_far.beta, draws_so_far.extra, history


def _warmup_steps(bg) -> int | None:
    """Leapfrog steps (gradient evaluations) the chains spent warming up, from the zarr trace
    (nutpie writes warm-up statistics there whether or not they are asked for); None without
    a store."""
    if not getattr(bg, "_zarr_dir", None):
        return None
    import zarr

    bg._sampler.flush()
    group = zarr.open_group(bg._zarr_dir, mode="r")
    try:
        return int(np.sum(group["warmup_sample_stats"]["n_steps"][:]))
    except KeyError:
        return None


def _record(rnd, tune, ta, n, diag, elapsed, why) -> dict:
    def r(x, digits):
        return None if x is None or not np.isfinite(x) else round(float(x), digits)

    return {
        "round": rnd,
        "tune": tune,
        "target_accept": round(ta, 3),
        "draws_per_chain": n,
        "converged": bool(diag["converged"]),
        "max_rhat": r(diag["max_rhat"], 4),
        "min_ess_bulk": r(diag["min_ess_bulk"], 1),
        "min_ess_tail": r(diag["min_ess_tail"], 1),
        "individual_max_rhat": r(diag["individual_max_rhat"], 4),
        "individual_min_ess_bulk": r(diag["individual_min_ess_bulk"], 1),
        "divergences": int(diag["divergences"]),
        "limiting": diag["limiting"],
        "stopped_because": why,
        "elapsed_s": round(elapsed, 1),
    }


#: coordinates nutpie samples the population covariance in (wtp.hb_density.make_density)
PARAMETERISATION = "scales"


def _compiled(data: ChoiceData, priors: HBPriors, layout: str | None):
    """nutpie's model over the hand-written log density of :mod:`wtp.hb_density`.

    nutpie's own PyMC compilation (``compile_pymc_model``) compiled a numba wrapper around
    PyTensor's function in every process: 12.8 s of a 52 s benchmark run, 8 s of it that
    wrapper, which numba cannot cache. The density's C callbacks are compiled once and loaded
    from numba's cache afterwards (about 1 s with the import). The trace stores the packed
    Cholesky factor as the draw and the unconstrained draw (μ, the covariance's coordinates,
    z) beside it; σ, the correlations and β are derived as draws are read (:class:`_KeptDraws`).
    """
    from wtp import hb_density

    dens = hb_density.make_density(
        data, _layout(data, layout), priors, parameterisation=PARAMETERISATION
    )
    g, p = data.n_groups, data.n_params
    t = p * (p + 1) // 2
    # the stored draw is the packed factor alone (wtp.hb_density._expand_cfunc)
    names, shapes, slices = ["pop"], [(t,)], [slice(0, t)]
    if PARAMETERISATION == "scales":
        diagonal = g * p + np.arange(p)  # log σ
    else:
        diagonal = g * p + np.cumsum(np.arange(1, p + 1)) - 1
    log_scale = math.log(priors.sd_scale)

    def initial_point(seed) -> np.ndarray:
        # PyMC's default for nutpie: the support point (0; scales at the prior's centre)
        # jittered by U(-1, 1) on the unconstrained scale
        x = np.random.default_rng(int(seed)).uniform(-1.0, 1.0, dens.n_dim)
        x[diagonal] += log_scale
        return x

    return _NutpieModel(
        density=dens,
        n_dim=dens.n_dim,
        n_expanded=t,
        shape_info=(names, slices, shapes),
        initial_point=initial_point,
    )


@dataclass(frozen=True)
class _NutpieModel:
    """What nutpie's core samples: the C callbacks of :mod:`wtp.hb_density` over ``density``'s
    address table, the stored draw's layout and the initial point (the parts of nutpie's
    ``CompiledPyMCModel`` that sampling reads, without importing ``nutpie.compile_pymc``)."""

    density: Any
    n_dim: int
    n_expanded: int
    shape_info: tuple
    initial_point: Any

    def make_model(self, lib):
        """nutpie's model object (``CompiledPyMCModel._make_model`` of nutpie 0.16)."""
        from wtp import hb_density

        user_data = self.density.meta.ctypes.data
        expand = lib.ExpandFunc(
            self.n_dim, self.n_expanded, hb_density._expand_cfunc.address, user_data, self
        )
        logp = lib.LogpFunc(hb_density._logp_cfunc.address, user_data, self)
        names, _, shapes = self.shape_info
        # new_variables adds the default dimensions ("pop_dim_0") to dim_sizes, which the
        # model then needs: one dict for both, as nutpie
        dim_sizes: dict[str, int] = {}
        variables = lib.PyVariable.new_variables(
            names, ["float64"] * len(names), shapes, dim_sizes, {}
        )

        def make_adapter(*args, **kwargs):  # only for nutpie's normalising-flow adaptation
            from nutpie.transform_adapter import make_transform_adapter

            return make_transform_adapter()(*args, **kwargs, logp_fn=None)

        return lib.PyMcModel(
            logp, expand, variables, self.n_dim, dim_sizes, {}, self.initial_point, make_adapter
        )


def _tidy(idata, data: ChoiceData):
    """Name the population variables ``sd`` and ``corr`` with ``param`` dims."""
    post = idata.posterior
    rename = {k: v for k, v in {"pop_stds": "sd", "pop_corr": "corr"}.items() if k in post}
    post = post.rename_vars(rename)
    params = data.param_names
    if "sd" in post:
        post["sd"] = (("chain", "draw", "param"), post["sd"].to_numpy())
    if "corr" in post:
        post["corr"] = (("chain", "draw", "param", "param_b"), post["corr"].to_numpy())
    # a reused compiled model carries the labels of the data it was compiled with
    post = post.assign_coords(param=params, param_b=params)
    if "respondent" in post.dims:
        post = post.assign_coords(respondent=[str(x) for x in data.respondent_ids])
    if "group" in post.dims:
        post = post.assign_coords(group=data.group_names)
    post = post.drop_vars([d for d in post.coords if d.startswith("pop_")], errors="ignore")
    idata.posterior = post
    return idata


# --------------------------------------------------------------------------------------------
# Fit of individual parameters


def respondent_loglik(data: ChoiceData, beta: np.ndarray) -> np.ndarray:
    """Log-likelihood of each respondent's choices at parameters ``beta`` (R × P).

    Vectorised over choices; with ``beta`` of shape (S, R, P) returns (S, R).
    """
    b = np.asarray(beta, dtype=float)
    squeeze = b.ndim == 2
    if squeeze:
        b = b[None]
    V = np.einsum("nap,snp->sna", data.X, b[:, data.respondent, :])
    V = np.where(data.available[None], V, -np.inf)
    m = V.max(axis=2, keepdims=True)
    lse = m[..., 0] + np.log(np.exp(V - m).sum(axis=2))
    chosen = np.take_along_axis(V, data.chosen[None, :, None].repeat(len(b), 0), axis=2)[..., 0]
    ll = chosen - lse
    out = np.zeros((len(b), data.n_respondents))
    for s in range(len(b)):
        out[s] = np.bincount(data.respondent, weights=ll[s], minlength=data.n_respondents)
    return out[0] if squeeze else out


def save_posterior(result: HBResult, path, *, single_precision: bool = True) -> None:
    """Write the posterior (ArviZ InferenceData) to NetCDF.

    Individual draws dominate the file (chains × draws × respondents × parameters); single
    precision halves it and keeps seven significant digits, far below Monte Carlo error.
    """
    idata = result.idata
    if single_precision:
        idata = idata.copy()
        idata.posterior = idata.posterior.astype("float32")
    idata.to_netcdf(str(path))


def map_individual(
    data: ChoiceData,
    mu: np.ndarray,
    cov: np.ndarray,
    *,
    iterations: int = 25,
) -> np.ndarray:
    """Posterior mode of each respondent's parameters under a fixed population N(mu, cov).

    Batched Newton steps over all respondents at once (the objective is concave). Used to
    score simulated random respondents the way hierarchical Bayes would, to set a fit
    threshold. ``mu`` has shape (P,) or (R, P). Returns (R, P).
    """
    from wtp.hb_density import mnl_gradient_hessian

    R, P = data.n_respondents, data.n_params
    mu = np.broadcast_to(np.asarray(mu, dtype=float), (R, P))
    prec = np.linalg.inv(np.asarray(cov, dtype=float))
    beta = mu.copy()
    X = np.ascontiguousarray(data.X, dtype=float)
    available = np.ascontiguousarray(data.available)
    chosen = np.ascontiguousarray(data.chosen, dtype=np.int64)
    respondent = np.ascontiguousarray(data.respondent, dtype=np.int64)
    for _ in range(iterations):
        grad, H = mnl_gradient_hessian(X, available, chosen, respondent, beta)
        grad -= (beta - mu) @ prec
        H += prec
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        beta = beta + step
        if np.abs(step).max() < 1e-8:
            break
    return beta
