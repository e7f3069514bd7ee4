"""Hierarchical Bayesian multinomial logit (PyMC), shared by MaxDiff and conjoint.

Each respondent ``r`` has a parameter vector β_r drawn from a multivariate normal population
whose mean may differ by group (segment) and whose covariance is full::

    β_r = μ_{g(r)} + L z_r,      z_r ~ N(0, I)          (non-centred)
    L   = diag(σ) · chol(Ω),     Ω ~ LKJ(η),  σ_p ~ HalfNormal(sd_scale)
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

Sampling uses nutpie when it is installed (PyMC's NUTS otherwise), chains in parallel, with
progress shown; diagnostics come from ArviZ. The result keeps the posterior as an ArviZ
``InferenceData`` (``save_posterior`` writes NetCDF) and the individual draws of β.

Speed (why the likelihood is written the way it is): with the numba backend a logp + gradient
evaluation is dominated by ``exp`` and ``log`` calls. When many choices share the same design
rows (MaxDiff: every alternative is ±one item) the utilities of the distinct rows are computed
once per respondent (``W = β D'``), exponentiated once, and gathered, instead of one ``exp``
per alternative per choice. Data enter as shared variables with symbolic sizes so the compiled
(numba-cached) functions are reused across data sets with the same number of parameters.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

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
        param_names=list(param_names) if param_names is not None else [f"b{i + 1}" for i in range(p)],
        respondent_ids=list(respondent_ids) if respondent_ids is not None else list(range(n_resp)),
        group_names=list(group_names) if group_names is not None else [f"g{i + 1}" for i in range(n_groups)],
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
    XT: np.ndarray  # A × N × P (dense) or unused
    Xc: np.ndarray  # N × P chosen rows (dense) or unused


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
        return _Layout(True, rows, np.ascontiguousarray(flat.T), chosen_flat, avail, counts, np.zeros((1, 1, p)), np.zeros((1, p)))
    XT = np.ascontiguousarray(np.transpose(data.X, (1, 0, 2)))
    Xc = data.X[np.arange(n), data.chosen]
    return _Layout(False, np.zeros((1, p)), np.zeros((a, 1), dtype=np.int64), np.zeros(1, dtype=np.int64), avail, counts, XT, Xc)


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


def _loglik_op():
    """Build the PyTensor Op lazily so importing this module stays light."""
    global _LOGLIK_OP
    if _LOGLIK_OP is not None:
        return _LOGLIK_OP
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_type
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class FactorisedLogLik(Op):
        """Log-likelihood of choices whose utilities are gathered from W = β D' (respondent ×
        distinct design row). One pass: one exp per entry of W, one log per choice, and the
        gradient in W as a second output (used by ``L_op``), so the graph stays small and
        the numba kernel avoids the many temporaries of the elementwise version."""

        __props__ = ()

        def make_node(self, W, flat, avail, flat_chosen, resp):
            inputs = [pt.as_tensor_variable(x) for x in (W, flat, avail, flat_chosen, resp)]
            return Apply(self, inputs, [pt.dscalar(), inputs[0].type()])

        def perform(self, node, inputs, outputs):
            ll, g = _factorised_loglik_numpy(*inputs)
            outputs[0][0] = ll
            outputs[1][0] = g

        def connection_pattern(self, node):
            return [[True, True]] + [[False, False]] * 4

        def L_op(self, inputs, outputs, output_grads):
            return [output_grads[0] * outputs[1]] + [disconnected_type() for _ in inputs[1:]]

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


# --------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class HBPriors:
    """Priors of the population (documented defaults; override per study).

    Attributes
    ----------
    mu_sd : float, default 3.0
        Standard deviation of the normal prior on each population mean (utility scale).
    sd_scale : float, default 2.0
        Scale of the half-normal prior on each population standard deviation.
    lkj_eta : float, default 2.0
        LKJ shape for the correlation matrix (1 = uniform; 2 mildly favours small correlations).
    """

    mu_sd: float = 3.0
    sd_scale: float = 2.0
    lkj_eta: float = 2.0


def build_model(data: ChoiceData, priors: HBPriors | None = None, layout: str | None = None):
    """The PyMC model (not sampled). ``layout`` forces ``"factorised"`` or ``"dense"``."""
    import pymc as pm
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad

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
        avail = pm.Data("avail", lay.avail)
        mu = pm.Normal("mu", 0.0, priors.mu_sd, dims=("group", "param"))
        chol, _corr, _sd = pm.LKJCholeskyCov(
            "pop",
            n=p,
            eta=priors.lkj_eta,
            sd_dist=pm.HalfNormal.dist(priors.sd_scale, shape=p),
            compute_corr=True,
            store_in_trace=True,
        )
        z = pm.Normal("z", 0.0, 1.0, dims=("respondent", "param"))
        beta = pm.Deterministic("beta", mu[group] + z @ chol.T, dims=("respondent", "param"))
        if lay.factorised:
            rows = pm.Data("rows", lay.rows)
            W = beta @ rows.T  # respondents × distinct design rows
            loglik = _loglik_op()(
                W,
                pm.Data("flat", lay.flat),
                avail,
                pm.Data("flat_chosen", lay.flat_chosen),
                pm.Data("choice_respondent", data.respondent),
            )[0]
        else:
            XT = pm.Data("XT", lay.XT)
            Xc = pm.Data("Xc", lay.Xc)
            resp = pm.Data("respondent_index", data.respondent)
            B = beta[resp]
            V = [(XT[i] * B).sum(axis=1) for i in range(data.max_alts)]
            masked = [v + (avail[i] - 1.0) * 1e9 for i, v in enumerate(V)]
            m = masked[0]
            for v in masked[1:]:
                m = pt.maximum(m, v)
            m = disconnected_grad(m)
            # the tiny term keeps log finite (and gradients defined) in absurd warm-up regions
            S = sum(pt.exp(masked[i] - m) * avail[i] for i in range(data.max_alts)) + 1e-300
            loglik = (Xc * B).sum() - m.sum() - pt.log(S).sum()
        pm.Potential("loglik", loglik)
    return model


def has_nutpie() -> bool:
    try:
        import nutpie  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Diagnostics


def _arviz_extremes(ds) -> tuple[dict, dict, dict]:
    """Max R-hat, min bulk ESS and min tail ESS per variable (ArviZ, rank-normalised)."""
    import arviz as az

    rhat = az.rhat(ds)
    ess_bulk = az.ess(ds, method="bulk")
    ess_tail = az.ess(ds, method="tail")

    def pick(d, fn):
        return {k: float(fn(v.to_numpy())) for k, v in d.data_vars.items() if v.size}

    return pick(rhat, np.nanmax), pick(ess_bulk, np.nanmin), pick(ess_tail, np.nanmin)


def convergence_diagnostics(
    idata,
    *,
    individual_sample: int | None = 100,
    rng: np.random.Generator | None = None,
    extra: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Convergence checks computed by ArviZ (rank-normalised split R-hat, bulk and tail ESS).

    Two sets are checked:

    * population: ``mu``, ``sd`` and any ``extra`` draws (chain × draw × ...; e.g. segment
      shares) — these give ``max_rhat``, ``min_ess_bulk``, ``min_ess_tail`` and decide
      ``converged`` together with zero divergences;
    * the off-diagonal of ``corr``: reported as ``corr_*`` and ``covariance_converged``. The
      correlations mix slowest (in the non-centred parameterisation they move only with all
      z's at once) and are a nuisance for the shares and utilities reported, so they are shown
      next to the verdict, not folded into it;
    * individual: ``beta`` of ``individual_sample`` respondents drawn at random (all when
      ``None``). With thousands of individual parameters the largest R-hat exceeds 1.01 by
      chance long before the sampler has a problem (iid draws of 4 × 500 give about 1.006 for
      8,000 parameters), so these are reported next to the population set, with their 99th
      percentile, rather than folded into ``converged``.
    """
    import arviz as az

    post = idata.posterior
    pop = {}
    for name in ("mu", "sd"):
        if name in post:
            pop[name] = post[name].to_numpy()
    if "corr" in post:
        p = post.sizes["param"]
        lower = np.tril_indices(p, -1)
        if len(lower[0]):
            pop["corr"] = post["corr"].to_numpy()[..., lower[0], lower[1]]
    for name, arr in (extra or {}).items():
        pop[name] = np.asarray(arr)
    rh, eb, et = _arviz_extremes(az.convert_to_dataset(pop))
    n_resp = post.sizes.get("respondent", 0)
    if individual_sample is None or individual_sample >= n_resp:
        chosen = np.arange(n_resp)
    else:
        rng = np.random.default_rng(0) if rng is None else rng
        chosen = np.sort(rng.choice(n_resp, size=individual_sample, replace=False))
    ind = az.convert_to_dataset({"beta": post["beta"].isel(respondent=chosen).to_numpy()})
    ind_rhat = az.rhat(ind)["beta"].to_numpy().ravel()
    ind_ess_b = az.ess(ind, method="bulk")["beta"].to_numpy().ravel()
    ind_ess_t = az.ess(ind, method="tail")["beta"].to_numpy().ravel()
    div = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
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
        "individual_max_rhat": float(np.nanmax(ind_rhat)),
        "individual_rhat_p99": float(np.nanquantile(ind_rhat, 0.99)),
        "individual_share_rhat_above": float(np.mean(ind_rhat > RHAT_MAX)),
        "individual_min_ess_bulk": float(np.nanmin(ind_ess_b)),
        "individual_min_ess_tail": float(np.nanmin(ind_ess_t)),
        "n_draws": int(post.sizes["chain"] * post.sizes["draw"]),
        "chains": int(post.sizes["chain"]),
        "rhat_threshold": RHAT_MAX,
        "ess_threshold": ESS_MIN,
    }
    if "n_steps" in idata.sample_stats:
        out["mean_leapfrog_steps"] = float(idata.sample_stats["n_steps"].mean())
    if "step_size" in idata.sample_stats:
        out["mean_step_size"] = float(idata.sample_stats["step_size"].mean())
    out["converged"] = bool(
        out["max_rhat"] <= RHAT_MAX and out["min_ess_bulk"] >= ESS_MIN and out["min_ess_tail"] >= ESS_MIN and div == 0
    )
    if "corr" in rh:
        out["corr_max_rhat"] = rh["corr"]
        out["corr_min_ess_bulk"] = eb["corr"]
        out["corr_min_ess_tail"] = et["corr"]
        out["covariance_converged"] = bool(rh["corr"] <= RHAT_MAX and eb["corr"] >= ESS_MIN and et["corr"] >= ESS_MIN)
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
    """

    idata: Any
    beta_draws: np.ndarray
    diagnostics: dict[str, Any]
    timings: dict[str, float]
    data: ChoiceData
    priors: HBPriors
    sampler: str
    settings: dict[str, Any] = field(default_factory=dict)

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
                "group": np.repeat(np.asarray(self.data.group_names, dtype=object)[self.data.group], p),
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
                {"check": "max R-hat", "value": d["max_rhat"], "threshold": f"<= {RHAT_MAX}", "ok": d["max_rhat"] <= RHAT_MAX},
                {"check": "min bulk ESS", "value": d["min_ess_bulk"], "threshold": f">= {ESS_MIN}", "ok": d["min_ess_bulk"] >= ESS_MIN},
                {"check": "min tail ESS", "value": d["min_ess_tail"], "threshold": f">= {ESS_MIN}", "ok": d["min_ess_tail"] >= ESS_MIN},
                {"check": "divergences", "value": d["divergences"], "threshold": "0", "ok": d["divergences"] == 0},
            ]
        )


def _seed(rng: np.random.Generator | int | None) -> int:
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(2**31 - 1))
    return int(rng or 0)


def fit_hb(
    data: ChoiceData,
    *,
    draws: int = 1000,
    tune: int = 300,
    chains: int = 4,
    cores: int | None = None,
    rng: np.random.Generator | int | None = None,
    priors: HBPriors | None = None,
    target_accept: float = 0.8,
    progress: bool = True,
    sampler: str = "auto",
    layout: str | None = None,
    sampler_kwargs: dict[str, Any] | None = None,
    extra_diagnostics=None,
    individual_sample: int | None = 100,
) -> HBResult:
    """Sample the hierarchical Bayesian MNL.

    Parameters
    ----------
    data : ChoiceData
        From :func:`choice_data`.
    draws, tune : int
        Kept draws and warm-up iterations per chain (nutpie adapts quickly; 300 warm-up
        iterations are its default).
    chains : int, default 4
        Chains, run in parallel on ``cores`` cores (default: all available, at most ``chains``).
    rng : numpy.random.Generator or int, optional
        Seeds the sampler.
    priors : HBPriors, optional
    target_accept : float, default 0.8
    progress : bool, default True
        Show the sampler's progress bar.
    sampler : {"auto", "nutpie", "pymc"}
        ``auto`` uses nutpie when installed.
    layout : {"factorised", "dense"}, optional
        Force the likelihood layout (default: whichever needs fewer ``exp`` calls).
    sampler_kwargs : dict, optional
        Passed on to ``nutpie.sample`` or ``pymc.sample`` (e.g. ``maxdepth``).
    extra_diagnostics : callable, optional
        ``f(beta_draws (chain × draw × R × P)) -> {name: chain × draw × ... array}``: derived
        quantities (e.g. segment shares) checked with the population parameters.
    individual_sample : int or None, default 100
        Respondents whose β enter the individual-level diagnostics (None: all).

    Returns
    -------
    HBResult
    """
    import os

    priors = priors or HBPriors()
    seed = _seed(rng)
    if cores is None:
        cores = max(1, min(chains, os.cpu_count() or 1))
    use_nutpie = sampler == "nutpie" or (sampler == "auto" and has_nutpie())
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # PyTensor's C backend (unused here) complains about BLAS on pip installs
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        model = build_model(data, priors, layout)
    timings["build_s"] = time.perf_counter() - t0
    var_names = ["mu", "pop_stds", "pop_corr", "beta"]
    if use_nutpie:
        import nutpie

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
            compiled = _compiled(model, data, priors, layout, var_names)
        timings["compile_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        idata = nutpie.sample(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            progress_bar=progress,
            target_accept=target_accept,
            save_warmup=False,
            **(sampler_kwargs or {}),
        )
        timings["sample_s"] = time.perf_counter() - t0
        used = "nutpie"
    else:
        import pymc as pm

        t0 = time.perf_counter()
        with model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=seed,
                progressbar=progress,
                target_accept=target_accept,
                var_names=var_names,
                compute_convergence_checks=False,
                **(sampler_kwargs or {}),
            )
        # PyMC compiles inside sample(); the split is not observable from here
        timings["compile_s"] = float("nan")
        timings["sample_s"] = time.perf_counter() - t0
        used = "pymc"
    idata = _tidy(idata, data)
    t0 = time.perf_counter()
    beta = idata.posterior["beta"].transpose("chain", "draw", "respondent", "param").to_numpy()
    extra = extra_diagnostics(beta) if extra_diagnostics is not None else None
    diagnostics = convergence_diagnostics(
        idata, individual_sample=individual_sample, rng=np.random.default_rng(seed), extra=extra
    )
    timings["diagnostics_s"] = time.perf_counter() - t0
    diagnostics["sampler"] = used
    diagnostics.update({k: round(v, 3) for k, v in timings.items() if not math.isnan(v)})
    beta_draws = beta.reshape(-1, beta.shape[2], beta.shape[3])
    return HBResult(
        idata=idata,
        beta_draws=beta_draws,
        diagnostics=diagnostics,
        timings=timings,
        data=data,
        priors=priors,
        sampler=used,
        settings={"draws": draws, "tune": tune, "chains": chains, "cores": cores, "seed": seed, "target_accept": target_accept},
    )


_COMPILED: OrderedDict = OrderedDict()
_COMPILED_MAX = 4


def _compiled(model, data: ChoiceData, priors: HBPriors, layout: str | None, var_names: list[str]):
    """nutpie's compiled model, reused within the process for data of the same shapes.

    Compilation (numba, about 10 s even with PyTensor's on-disk cache) dominates small fits;
    the data are shared variables, so a compiled model can take new values of the same
    shapes through ``with_data``.
    """
    import nutpie

    shared = {v.name: v.get_value() for v in model.data_vars}
    key = (
        priors,
        layout,
        tuple(var_names),
        data.n_params,
        data.max_alts,
        data.n_groups,
        data.n_respondents,
        tuple(sorted((name, value.shape, str(value.dtype)) for name, value in shared.items())),
    )
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key].with_data(**shared)
    compiled = nutpie.compile_pymc_model(model, var_names=var_names)
    _COMPILED[key] = compiled
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return compiled


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
    R, P = data.n_respondents, data.n_params
    mu = np.broadcast_to(np.asarray(mu, dtype=float), (R, P))
    prec = np.linalg.inv(np.asarray(cov, dtype=float))
    beta = mu.copy()
    X, av = data.X, data.available
    n = data.n_choices
    for _ in range(iterations):
        V = np.einsum("nap,np->na", X, beta[data.respondent])
        V = np.where(av, V, -np.inf)
        V -= V.max(axis=1, keepdims=True)
        p = np.exp(V)
        p /= p.sum(axis=1, keepdims=True)
        xp = np.einsum("nap,na->np", X, p)
        resid = X[np.arange(n), data.chosen] - xp
        grad = np.zeros((R, P))
        np.add.at(grad, data.respondent, resid)
        grad -= (beta - mu) @ prec
        hc = np.einsum("nap,na,naq->npq", X, p, X) - xp[:, :, None] * xp[:, None, :]
        H = np.zeros((R, P, P))
        np.add.at(H, data.respondent, hc)
        H += prec
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        beta = beta + step
        if np.abs(step).max() < 1e-8:
            break
    return beta
