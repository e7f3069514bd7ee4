"""Tests for wtp.hb: the generic hierarchical Bayesian multinomial logit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wtp.hb import (
    ChoiceData,
    _factorised_loglik_numpy,
    _layout,
    build_model,
    choice_data,
    fit_hb,
    map_individual,
    respondent_loglik,
)

# PyTensor's C backend (unused: models run through numba) warns about BLAS on pip installs
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")


def _conjoint_like(n_resp=30, n_choices=8, n_alts=3, n_params=3, seed=0, sd=0.7):
    """Random continuous attributes (every row distinct: the dense layout) and known betas."""
    rng = np.random.default_rng(seed)
    mu = np.linspace(-1, 1, n_params)
    beta = mu + sd * rng.standard_normal((n_resp, n_params))
    n = n_resp * n_choices
    X = rng.normal(size=(n, n_alts, n_params))
    resp = np.repeat(np.arange(n_resp), n_choices)
    V = np.einsum("nap,np->na", X, beta[resp])
    chosen = np.argmax(V + rng.gumbel(size=V.shape), axis=1)
    return choice_data(X, np.ones((n, n_alts), bool), chosen, resp), beta, mu


def _maxdiff_like(n_resp=20, n_items=5, seed=1):
    """Choices among ±unit rows (few distinct rows: the factorised layout), with padding."""
    rng = np.random.default_rng(seed)
    rows = np.vstack([np.eye(n_items)[:, : n_items - 1], -np.eye(n_items)[:, : n_items - 1]])
    n = n_resp * 6
    pick = np.stack([rng.choice(2 * n_items, 3, replace=False) for _ in range(n)])
    X = rows[pick]
    avail = np.ones((n, 3), bool)
    avail[::4, 2] = False  # some choices offer only two alternatives
    chosen = rng.integers(0, 2, size=n)
    resp = np.repeat(np.arange(n_resp), 6)
    return choice_data(X, avail, chosen, resp)


def test_choice_data_checks():
    X = np.zeros((2, 3, 1))
    ok = np.ones((2, 3), bool)
    with pytest.raises(ValueError, match="not available"):
        choice_data(
            X,
            np.array([[True, True, False], [True, True, True]]),
            np.array([2, 0]),
            np.array([0, 0]),
        )
    with pytest.raises(ValueError, match="two available"):
        choice_data(
            X,
            np.array([[True, False, False], [True, True, True]]),
            np.array([0, 0]),
            np.array([0, 0]),
        )
    with pytest.raises(ValueError, match="respondent"):
        choice_data(X, ok, np.array([0, 0]), np.array([0, 2]))
    with pytest.raises(ValueError, match="group"):
        choice_data(X, ok, np.array([0, 0]), np.array([0, 0]), group=np.array([0, 1]))
    d = choice_data(X, ok, np.array([0, 1]), np.array([0, 0]))
    assert isinstance(d, ChoiceData) and d.n_respondents == 1 and d.group_names == ["g1"]


def test_respondent_loglik_hand_case():
    # one respondent, one choice among utilities (1, 0, -inf unavailable): log(e/(e+1))
    X = np.array([[[1.0], [0.0], [5.0]]])
    d = choice_data(X, np.array([[True, True, False]]), np.array([0]), np.array([0]))
    assert respondent_loglik(d, np.array([[1.0]]))[0] == pytest.approx(
        math.log(math.e / (math.e + 1))
    )
    # draws axis
    out = respondent_loglik(d, np.array([[[1.0]], [[0.0]]]))
    assert out.shape == (2, 1) and out[1, 0] == pytest.approx(math.log(0.5))


def test_layout_choice():
    assert _layout(_maxdiff_like()).factorised
    assert not _layout(_conjoint_like()[0]).factorised


def test_factorised_loglik_and_gradient():
    d = _maxdiff_like()
    lay = _layout(d)
    rng = np.random.default_rng(3)
    beta = rng.normal(size=(d.n_respondents, d.n_params))
    W = beta @ lay.rows.T
    ll, g = _factorised_loglik_numpy(W, lay.flat, lay.avail, lay.flat_chosen, d.respondent)
    assert float(ll) == pytest.approx(respondent_loglik(d, beta).sum())
    eps = 1e-6
    for r, u in [(0, 0), (3, 5), (7, len(lay.rows) - 1)]:
        W2 = W.copy()
        W2[r, u] += eps
        l2, _ = _factorised_loglik_numpy(W2, lay.flat, lay.avail, lay.flat_chosen, d.respondent)
        assert (float(l2) - float(ll)) / eps == pytest.approx(g[r, u], abs=1e-5)


def test_numba_kernel_matches_numpy():
    import pytensor
    import pytensor.tensor as pt

    from wtp.hb import _loglik_op

    d = _maxdiff_like()
    lay = _layout(d)
    W = np.random.default_rng(5).normal(size=(d.n_respondents, len(lay.rows)))
    Wt = pt.matrix("W")
    out = _loglik_op()(Wt, lay.flat, lay.avail, lay.flat_chosen, d.respondent)[0]
    f = pytensor.function([Wt], [out, pytensor.grad(out, Wt)], mode="NUMBA")
    ll, g = f(W)
    ll0, g0 = _factorised_loglik_numpy(W, lay.flat, lay.avail, lay.flat_chosen, d.respondent)
    assert float(ll) == pytest.approx(float(ll0))
    assert np.allclose(g, g0)


@pytest.mark.parametrize("layout", ["factorised", "dense"])
def test_model_likelihood_matches_reference(layout):
    import pytensor

    d = _maxdiff_like()
    model = build_model(d, layout=layout)
    rng = np.random.default_rng(2)
    z = rng.normal(size=(d.n_respondents, d.n_params))
    point = model.initial_point()
    point["z"] = z
    pot = model.potentials[0]
    f = pytensor.function(model.value_vars, pot, mode="FAST_COMPILE", on_unused_input="ignore")
    val = float(f(*[point[v.name] for v in model.value_vars]))
    beta_f = pytensor.function(
        model.value_vars, model["beta"], mode="FAST_COMPILE", on_unused_input="ignore"
    )
    beta = beta_f(*[point[v.name] for v in model.value_vars])
    assert val == pytest.approx(respondent_loglik(d, beta).sum(), rel=1e-10)


def test_map_individual_limits():
    d, beta, mu = _conjoint_like(n_resp=10, n_choices=40)
    tight = map_individual(d, mu, np.eye(d.n_params) * 1e-8)
    assert np.allclose(tight, mu, atol=1e-5)
    loose = map_individual(d, mu, np.eye(d.n_params) * 1e8)
    # at the maximum-likelihood estimate the score of every respondent is zero
    V = np.einsum("nap,np->na", d.X, loose[d.respondent])
    p = np.exp(V - V.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    score = d.X[np.arange(d.n_choices), d.chosen] - np.einsum("nap,na->np", d.X, p)
    per = np.zeros_like(loose)
    np.add.at(per, d.respondent, score)
    assert np.abs(per).max() < 1e-6


def test_fit_hb_tiny_dense():
    d, beta, mu = _conjoint_like()
    res = fit_hb(
        d,
        draws=100,
        tune=100,
        chains=2,
        rng=np.random.default_rng(0),
        progress=False,
        until_converged=False,
    )
    assert res.beta_draws.shape == (200, 30, 3)
    post = res.idata.posterior
    assert {"mu", "sd", "corr", "beta"} <= set(post.data_vars)
    assert post["mu"].dims == ("chain", "draw", "group", "param")
    for key in (
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "divergences",
        "individual_max_rhat",
        "compile_s",
        "sample_s",
        "converged",
    ):
        assert key in res.diagnostics
    assert res.summary()["check"].tolist()[0] == "max R-hat"
    frame = res.to_frame()
    assert list(frame.columns) == ["respondent_id", "group", "param", "beta"] and len(frame) == 90
    assert np.corrcoef(res.beta_mean().ravel(), beta.ravel())[0, 1] > 0.5


@pytest.mark.slow
def test_fit_hb_recovery_dense_with_groups():
    rng = np.random.default_rng(8)
    n_resp, n_choices, P = 240, 15, 4
    group = np.repeat([0, 1], n_resp // 2)
    mu = np.array([[1.0, -0.5, 0.0, 0.5], [0.0, 0.5, -1.0, 0.5]])
    beta = mu[group] + 0.6 * rng.standard_normal((n_resp, P))
    n = n_resp * n_choices
    X = rng.normal(size=(n, 3, P))
    resp = np.repeat(np.arange(n_resp), n_choices)
    chosen = np.argmax(np.einsum("nap,np->na", X, beta[resp]) + rng.gumbel(size=(n, 3)), axis=1)
    d = choice_data(X, np.ones((n, 3), bool), chosen, resp, group, group_names=["a", "b"])
    res = fit_hb(d, draws=500, tune=300, chains=4, rng=np.random.default_rng(1), progress=False)
    pop = res.population()
    inside = (pop["lower"] <= mu.ravel()) & (mu.ravel() <= pop["upper"])
    assert inside.mean() >= 0.75
    assert np.corrcoef(res.beta_mean().ravel(), beta.ravel())[0, 1] > 0.85
    assert res.diagnostics["divergences"] == 0
    assert res.diagnostics["max_rhat"] < 1.05


@pytest.mark.slow
def test_fit_hb_pymc_fallback():
    # without nutpie the same model samples with PyMC's NUTS (the fused likelihood's numpy path)
    d = _maxdiff_like(n_resp=15)
    res = fit_hb(
        d,
        draws=100,
        tune=100,
        chains=2,
        cores=1,
        rng=np.random.default_rng(0),
        progress=False,
        sampler="pymc",
    )
    assert res.sampler == "pymc"
    assert res.beta_draws.shape == (200, 15, d.n_params)
    assert "max_rhat" in res.diagnostics


# --------------------------------------------------------------------------------------------
# sampling until converged, progress, settings


def test_checkpoints_grow_by_a_quarter_to_the_cap():
    from wtp.hb import _checkpoints

    assert _checkpoints(200, 1000) == [200, 250, 350, 450, 600, 750, 950, 1000]
    assert _checkpoints(150, 150) == [150]


def test_progress_lines_when_not_a_terminal():
    # a log file (not a terminal) gets status lines during sampling, not only at the end
    import io

    from wtp.progress import Reporter

    log = io.StringIO()
    d, _, _ = _conjoint_like()
    res = fit_hb(
        d,
        draws=300,
        tune=100,
        chains=2,
        rng=np.random.default_rng(0),
        progress=Reporter(log, every=0.0),
        until_converged=False,
    )
    lines = log.getvalue().splitlines()
    assert res.beta_draws.shape[0] == 600
    status = [ln for ln in lines if ln.startswith("sampling round 1: 2 chains,")]
    assert len(status) >= 2, lines
    assert any(
        "divergences" in ln and "elapsed" in ln and "to the next convergence check" in ln
        for ln in status
    )
    assert any("check at 300 draws per chain" in ln for ln in lines)
    assert "\r" not in log.getvalue()  # no terminal control in logs
    # what was run and why
    rec = res.diagnostics["sampling"]
    assert rec[0]["draws_per_chain"] == 300 and rec[0]["tune"] == 100
    assert res.diagnostics["stopped_because"] in (
        "converged",
        "fixed draws (until_converged=False)",
    )


def test_heartbeat_speaks_while_work_runs():
    import time

    from wtp.progress import heartbeat

    said = []
    with heartbeat("compiling", said.append, every=0.05):
        time.sleep(0.3)
    assert len(said) >= 3 and said[0].startswith("still compiling (")


def test_sampling_continues_until_converged_and_is_reproducible():
    # the first check (50 draws per chain) cannot pass ESS >= 400 with 2 chains; sampling goes on
    d, _, _ = _conjoint_like(n_resp=30, n_choices=12)
    kw = {
        "draws": 50,
        "tune": 150,
        "chains": 2,
        "rng": 3,
        "progress": False,
        "time_budget": None,
        "max_draws": 120,
        "max_rounds": 1,
    }
    a = fit_hb(d, **kw)
    rec = a.diagnostics["sampling"]
    assert [r["draws_per_chain"] for r in rec][:2] == [50, 100] and not rec[0]["converged"]
    assert a.diagnostics["draws_per_chain"] == rec[-1]["draws_per_chain"]
    if a.converged:
        assert rec[-1]["stopped_because"] == "converged"
        assert a.diagnostics["min_ess_bulk"] >= 400 and a.diagnostics["individual_max_rhat"] <= 1.01
    else:
        assert (
            rec[-1]["stopped_because"] == "1 rounds without convergence"
            and a.diagnostics["individual_checked"] > 0
        )
    # same data and seed: the same stopping draw and the same numbers
    b = fit_hb(d, **kw)
    assert np.array_equal(a.beta_draws, b.beta_draws)


def test_time_budget_stops_unconverged_with_advice():
    from wtp.hb import unconverged_advice

    d, _, _ = _conjoint_like()
    res = fit_hb(d, draws=50, tune=100, chains=2, rng=0, progress=False, time_budget=0.001)
    # the first check always completes; then the budget is spent
    assert res.diagnostics["draws_per_chain"] == 50
    assert not res.converged and "time budget" in res.diagnostics["stopped_because"]
    advice = unconverged_advice(res.diagnostics)
    assert "--time-budget" in advice and "do not use" in advice


def test_sampler_settings_from_study_and_options():
    from wtp.errors import InputError
    from wtp.hb import sampler_settings

    section = {
        "draws": 300,
        "tune": 500,
        "time_budget": 120,
        "target_accept": 0.9,
        "save_posterior": True,
        "method": "hb",
    }
    s = sampler_settings(section, draws=100)
    assert s == {
        "draws": 100,
        "tune": 500,
        "time_budget": 120.0,
        "target_accept": 0.9,
        "save_posterior": True,
    }
    assert sampler_settings(None) == {}
    with pytest.raises(InputError, match="target_accept"):
        sampler_settings({"target_accept": 1.5})
    with pytest.raises(InputError, match="draws"):
        sampler_settings({}, draws=0)
    with pytest.raises(InputError, match="chains"):
        sampler_settings({"chains": "four"})


def test_cli_sampler_options_are_checked_before_sampling(tmp_path):
    from typer.testing import CliRunner

    from wtp.cli import app
    from wtp.simulate import simulate_maxdiff

    f = tmp_path / "maxdiff.csv"
    simulate_maxdiff(20, 6, 3, 4, n_versions=2, seed=0).answers.to_csv(f, index=False)
    r = CliRunner().invoke(
        app, ["maxdiff", str(f), "--out", str(tmp_path / "o"), "--target-accept", "1.5"]
    )
    assert r.exit_code == 2 and "target_accept" in r.output and not (tmp_path / "o").exists()
    (tmp_path / "study.toml").write_text('[maxdiff]\ntime_budget = "long"\n')
    r = CliRunner().invoke(
        app, ["maxdiff", str(f), "--out", str(tmp_path / "o"), "--study", str(tmp_path)]
    )
    assert r.exit_code == 2 and "time_budget" in r.output
    for command in ("maxdiff", "conjoint"):
        help_text = CliRunner().invoke(app, [command, "--help"]).output
        for option in ("--draws", "--tune", "--chains", "--time-budget", "--target-accept"):
            assert option in help_text, (command, option)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # ArviZ, constant
def test_rank_diagnostics_equal_arviz_on_mixed_chains():
    """The vectorised R-hat / bulk ESS / tail ESS equal ArviZ's on autocorrelated, shifted,
    constant and odd-length draws (hand-checkable reference: ArviZ itself)."""
    import arviz as az

    from wtp.hb import rank_diagnostics

    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 301, 12))
    phi = np.linspace(0.0, 0.97, 12)
    for t in range(1, x.shape[1]):
        x[:, t] = phi * x[:, t - 1] + x[:, t]
    x[1, :, :3] += 0.5  # one chain elsewhere: R-hat well above 1.01
    x[:, :, 7] = 3.0  # a constant: ESS = all draws, R-hat undefined
    rhat, bulk, tail = rank_diagnostics(x)
    ds = az.convert_to_dataset({"v": x})
    np.testing.assert_allclose(rhat, az.rhat(ds)["v"].to_numpy(), rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(bulk, az.ess(ds, method="bulk")["v"].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(tail, az.ess(ds, method="tail")["v"].to_numpy(), rtol=1e-10)
    assert rhat[0] > 1.01 and bulk[7] == 8 * 150  # split chains: 2 × 4 halves of 150


def test_dense_loglik_kernel_equals_numpy_and_finite_differences():
    """The fused dense-layout likelihood (numba) equals the numpy reference and a direct
    log-sum-exp, and its gradient equals finite differences (unavailable slots ignored)."""
    import pytensor
    import pytensor.tensor as pt
    from scipy.special import logsumexp

    from wtp.hb import _dense_loglik_numpy, _dense_loglik_op, _sparse_rows

    rng = np.random.default_rng(1)
    R, N, A, P = 7, 40, 4, 5
    X = rng.normal(size=(N, A, P)) * (rng.random((N, A, P)) < 0.5)
    avail = np.ones((N, A))
    avail[::3, 3] = 0
    chosen = rng.integers(0, 3, N)
    resp = rng.integers(0, R, N)
    beta = rng.normal(size=(R, P))
    idx, val = _sparse_rows(X)
    ll, g = _dense_loglik_numpy(beta, idx, val, avail, chosen, resp)
    V = np.where(avail > 0, np.einsum("nap,np->na", X, beta[resp]), -np.inf)
    assert ll == pytest.approx((V[np.arange(N), chosen] - logsumexp(V, axis=1)).sum(), rel=1e-12)
    B = pt.dmatrix()
    out = _dense_loglik_op()(B, idx, val, avail, chosen, resp)
    f = pytensor.function([B], [out[0], pytensor.grad(out[0], B)], mode="NUMBA")
    ll2, g2 = f(beta)
    assert ll2 == pytest.approx(ll, rel=1e-12) and np.abs(g2 - g).max() < 1e-12
    eps = 1e-6
    bumped = beta.copy()
    bumped[2, 1] += eps
    fd = (_dense_loglik_numpy(bumped, idx, val, avail, chosen, resp)[0] - ll) / eps
    assert fd == pytest.approx(g[2, 1], abs=1e-4)


def test_default_chains_follow_the_cores(monkeypatch):
    # one chain per core, at least 2 (R-hat compares chains), at most 4
    import os

    from wtp.hb import default_chains

    for cores, expected in [(1, 2), (2, 2), (3, 3), (16, 4), (None, 2)]:
        monkeypatch.setattr(os, "cpu_count", lambda c=cores: c)
        assert default_chains() == expected


def test_hierarchical_kernel_equals_numpy_the_old_graph_and_finite_differences():
    """The fused factorised likelihood (β built inside, numba) equals its numpy reference,
    the per-respondent log-likelihood at β = μ_g + z Lᵀ, and finite differences in μ, L, z."""
    import pytensor
    import pytensor.tensor as pt

    from wtp.hb import _hier_loglik_numpy, _hier_loglik_op

    d = _maxdiff_like()
    lay = _layout(d)
    rng = np.random.default_rng(4)
    P = d.n_params
    mu = rng.normal(size=(d.n_groups, P))
    chol = np.tril(rng.normal(size=(P, P)))
    z = rng.normal(size=(d.n_respondents, P))
    data = (d.group, lay.rows, lay.alts, lay.alt_chosen, lay.start)
    ll, gmu, gL, gz = _hier_loglik_numpy(mu, chol, z, *data)
    beta = mu[d.group] + z @ chol.T
    assert float(ll) == pytest.approx(respondent_loglik(d, beta).sum(), rel=1e-12)
    M, C, Z = pt.dmatrix(), pt.dmatrix(), pt.dmatrix()
    out = _hier_loglik_op()(M, C, Z, *data)[0]
    f = pytensor.function([M, C, Z], [out, *pytensor.grad(out, [M, C, Z])], mode="NUMBA")
    got = f(mu, chol, z)
    assert float(got[0]) == pytest.approx(float(ll), rel=1e-12)
    for a, b in zip(got[1:], (gmu, gL, gz), strict=True):
        assert np.abs(a - b).max() < 1e-10
    eps = 1e-6
    for which, idx, g in ((0, (0, 1), gmu), (1, (2, 1), gL), (2, (3, 2), gz)):
        args = [mu.copy(), chol.copy(), z.copy()]
        args[which][idx] += eps
        fd = (float(_hier_loglik_numpy(*args, *data)[0]) - float(ll)) / eps
        assert fd == pytest.approx(g[idx], abs=1e-4)


def test_hierarchical_kernel_survives_extreme_utilities():
    # the choice sums are multiplied before one log per respondent: far-apart utilities
    # (a product that would underflow) must still give the exact log-likelihood
    import pytensor
    import pytensor.tensor as pt

    from wtp.hb import _hier_loglik_numpy, _hier_loglik_op

    d = _maxdiff_like(n_resp=3)
    lay = _layout(d)
    P = d.n_params
    mu = np.zeros((d.n_groups, P))
    mu[0, 0] = 60.0  # item 1 far above the rest: choices among the others have tiny sums
    chol = np.eye(P) * 0.1
    z = np.zeros((d.n_respondents, P))
    data = (d.group, lay.rows, lay.alts, lay.alt_chosen, lay.start)
    M, C, Z = pt.dmatrix(), pt.dmatrix(), pt.dmatrix()
    f = pytensor.function([M, C, Z], _hier_loglik_op()(M, C, Z, *data)[0], mode="NUMBA")
    ref = respondent_loglik(d, mu[d.group] + z @ chol.T).sum()
    assert np.isfinite(ref) and float(f(mu, chol, z)) == pytest.approx(ref, rel=1e-10)
    assert float(_hier_loglik_numpy(mu, chol, z, *data)[0]) == pytest.approx(ref, rel=1e-10)


def test_zarr_trace_reads_the_same_draws_as_the_in_memory_trace(monkeypatch):
    """Checks read new draws from a zarr store (incrementally); the in-memory Arrow trace is
    the fallback. Both give identical draws, and the store's folder is removed afterwards."""
    import os
    import threading

    import wtp.hb as hb

    d = _maxdiff_like(n_resp=12)
    kw = {
        "draws": 40,
        "tune": 60,
        "chains": 2,
        "rng": 5,
        "progress": False,
        "until_converged": False,
    }
    made = []
    real = hb._zarr_store_dir

    def tracked(*args):
        folder = real(*args)
        made.append(folder)
        return folder

    monkeypatch.setattr(hb, "_zarr_store_dir", tracked)
    a = fit_hb(d, **kw)
    # the folder is removed beside the rest of the run
    for thread in threading.enumerate():
        if thread.name == "wtp-hb-trace-cleanup":
            thread.join()
    assert made and made[0] is not None and not os.path.exists(made[0])
    monkeypatch.setattr(hb, "_zarr_store_dir", lambda *args: None)
    b = fit_hb(d, **kw)
    assert np.array_equal(a.beta_draws, b.beta_draws)
    assert np.array_equal(a.idata.posterior["sd"].to_numpy(), b.idata.posterior["sd"].to_numpy())


def test_trace_folders_of_killed_runs_are_removed_once_stale(tmp_path):
    """A run killed while sampling leaves its zarr trace; a later run removes ours once older
    than a day, and leaves fresh ones (a run in progress) and other folders alone."""
    import os

    from wtp.hb import STALE_TRACE_S, _remove_stale_traces

    old, fresh, other = (tmp_path / n for n in ("wtp-hb-trace-a", "wtp-hb-trace-b", "keep-me"))
    for folder in (old, fresh, other):
        (folder / "chunk").mkdir(parents=True)
    now = 2_000_000_000.0
    for folder, age in ((old, STALE_TRACE_S + 60), (fresh, 60), (other, STALE_TRACE_S + 60)):
        os.utime(folder, (now - age, now - age))
    assert _remove_stale_traces(str(tmp_path), now=now) == 1
    assert not old.exists() and fresh.exists() and other.exists()


def test_trace_folders_of_processes_that_have_gone_are_removed(tmp_path):
    """A fresh folder named after a process that has ended goes; one of this process stays."""
    import os
    import subprocess
    import sys

    from wtp.hb import _remove_stale_traces

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = tmp_path / f"wtp-hb-trace-{int(ended.stdout)}-x1"
    mine = tmp_path / f"wtp-hb-trace-{os.getpid()}-x2"
    for folder in (dead, mine):
        (folder / "chunk").mkdir(parents=True)
    assert _remove_stale_traces(str(tmp_path)) == 1
    assert not dead.exists() and mine.exists()


def test_rank_normal_scores_equal_scipy_with_ties():
    """Scores from the table of every average rank equal ndtri of scipy's average ranks,
    bit for bit, with repeated draws, rounded draws and a constant; the sorted rows too."""
    from scipy import special, stats

    from wtp.hb import _z_scale

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 100, 5))
    x[:, ::3, 1] = x[0, 0, 1]  # a repeated draw, as NUTS makes now and then
    x[..., 2] = np.round(x[..., 2])
    x[..., 3] = 1.0  # constant
    rows = x.reshape(200, 5).T
    rank = stats.rankdata(rows, axis=1, method="average")
    expected = special.ndtri((rank.T - 0.375) / (200 + 0.25)).reshape(x.shape)
    scores, ordered = _z_scale(x)
    assert np.array_equal(scores, expected)
    assert np.array_equal(ordered, np.sort(rows, axis=1))


def test_map_individual_newton_terms_equal_numpy():
    """The numba gradient and Hessian of the Newton steps equal numpy's scatter-add version."""
    from wtp.hb_density import mnl_gradient_hessian

    for d in (_conjoint_like(n_resp=12, n_choices=9)[0], _maxdiff_like()):
        beta = np.random.default_rng(4).normal(size=(d.n_respondents, d.n_params))
        V = np.where(d.available, np.einsum("nap,np->na", d.X, beta[d.respondent]), -np.inf)
        p = np.exp(V - V.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        xp = np.einsum("nap,na->np", d.X, p)
        grad = np.zeros_like(beta)
        np.add.at(grad, d.respondent, d.X[np.arange(d.n_choices), d.chosen] - xp)
        hc = np.einsum("nap,na,naq->npq", d.X, p, d.X) - xp[:, :, None] * xp[:, None, :]
        H = np.zeros((d.n_respondents, d.n_params, d.n_params))
        np.add.at(H, d.respondent, hc)
        g, h = mnl_gradient_hessian(d.X, d.available, d.chosen, d.respondent, beta)
        np.testing.assert_allclose(g, grad, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(h, H, rtol=1e-12, atol=1e-12)


def test_screened_check_stops_at_the_bulk_rhat():
    from wtp.hb import RHAT_MAX, _checks, rank_diagnostics

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 300, 6))
    x[1, :, 2] += 0.5  # a chain apart: R-hat far above the threshold
    rhat, ess_b, ess_t = rank_diagnostics(x, stop_above=RHAT_MAX)
    assert rhat[2] > RHAT_MAX and np.isnan(ess_b).all() and np.isnan(ess_t).all()
    full = rank_diagnostics(x)
    assert rhat[2] <= full[0][2] and not np.isnan(full[1]).any()
    # a chain whose spread differs fails on the folded R-hat: ESS skipped as well
    y = rng.normal(size=(2, 300, 6))
    y[1, :, 4] *= 2.0
    rhat_y, ess_y, _ = rank_diagnostics(y, stop_above=RHAT_MAX)
    assert np.isnan(ess_y).all() and rhat_y[4] == rank_diagnostics(y)[0][4] > RHAT_MAX
    # a passing set is computed in full
    ok = rank_diagnostics(rng.normal(size=(2, 300, 6)), stop_above=1.5)
    assert not np.isnan(ok[1]).any()
    d = {
        "max_rhat": 1.0,
        "min_ess_bulk": 1000.0,
        "min_ess_tail": 1000.0,
        "worst_parameter": "mu",
        "individual_checked": 6,
        "individual_screened": True,
        "individual_max_rhat": float(rhat.max()),
        "divergences": 0,
    }
    failing = [name for name, _, passes in _checks(d) if not passes]
    assert failing == ["individual R-hat", "individual ESS"]
