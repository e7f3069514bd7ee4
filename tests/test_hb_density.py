"""The hand-written log density (wtp.hb_density) against PyMC's model of wtp.hb."""

from __future__ import annotations

import numpy as np
import pytest

from wtp.hb import HBPriors, _layout, build_model, choice_data
from wtp.hb_density import make_density

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")


def _maxdiff_like(n_resp=20, n_items=5, seed=1, groups=1):
    rng = np.random.default_rng(seed)
    rows = np.vstack([np.eye(n_items)[:, : n_items - 1], -np.eye(n_items)[:, : n_items - 1]])
    n = n_resp * 6
    pick = np.stack([rng.choice(2 * n_items, 3, replace=False) for _ in range(n)])
    avail = np.ones((n, 3), bool)
    avail[::4, 2] = False
    group = np.arange(n_resp) % groups
    return choice_data(
        rows[pick], avail, rng.integers(0, 2, size=n), np.repeat(np.arange(n_resp), 6), group
    )


def _conjoint_like(n_resp=15, seed=0, groups=2):
    """Dummy-coded rows with a 'none' alternative that is not always offered."""
    rng = np.random.default_rng(seed)
    n = n_resp * 5
    X = np.zeros((n, 4, 5))
    for a in range(3):
        X[np.arange(n), a, rng.integers(0, 3, size=n)] = 1.0
        X[:, a, 3] = rng.uniform(1, 3, size=n)
    X[:, 3, 4] = 1.0
    avail = np.ones((n, 4), bool)
    avail[::3, 3] = False
    chosen = rng.integers(0, 3, size=n)
    return choice_data(
        X, avail, chosen, np.repeat(np.arange(n_resp), 5), np.arange(n_resp) % groups
    )


def _pytensor_logp(model):
    """PyMC's joint log density and gradient over the value variables, as one flat vector
    in the density's order (μ, packed Cholesky, z)."""
    import pytensor
    import pytensor.tensor as pt

    values = [model.rvs_to_values[model[name]] for name in ("mu", "pop", "z")]
    logp = model.logp()
    grads = pytensor.grad(logp, values)
    f = pytensor.function(values, [logp, pt.concatenate([g.ravel() for g in grads])])
    shapes = [model.initial_point()[v.name].shape for v in values]

    def call(x):
        parts, k = [], 0
        for s in shapes:
            n = int(np.prod(s))
            parts.append(x[k : k + n].reshape(s))
            k += n
        v, g = f(*parts)
        return float(v), g

    return call


@pytest.mark.parametrize(
    ("make", "layout", "sd_prior"),
    [
        (_maxdiff_like, "factorised", "gamma"),
        (_maxdiff_like, "dense", "gamma"),
        (_conjoint_like, "dense", "gamma"),
        (_conjoint_like, "dense", "halfnormal"),
        (_maxdiff_like, "factorised", "halfnormal"),
    ],
)
def test_density_equals_pymc_value_and_gradient(make, layout, sd_prior):
    data = make() if make is _conjoint_like else make(groups=3)
    priors = HBPriors(mu_sd=2.5, sd_scale=0.8, lkj_eta=1.7, sd_prior=sd_prior)
    model = build_model(data, priors, layout=layout)
    ref = _pytensor_logp(model)
    dens = make_density(data, _layout(data, layout), priors, parameterisation="packed")
    rng = np.random.default_rng(4)
    offsets = []
    for _ in range(5):
        x = rng.normal(scale=0.7, size=dens.n_dim)
        v, g = dens.logp_and_grad(x)
        v0, g0 = ref(x)
        offsets.append(v - v0)
        # summation order differs (PyTensor sums over respondents in another order)
        np.testing.assert_allclose(g, g0, rtol=1e-8, atol=1e-8 * np.abs(g0).max())
    # equal up to the constants the density drops
    assert np.ptp(offsets) < 1e-8 * max(1.0, abs(v0))


def _pytensor_logp_scales(model, data):
    """PyMC's log density carried over to the (log σ, partial correlation) coordinates: the
    map to PyMC's packed Cholesky coordinates written in PyTensor, plus log |det| of its
    Jacobian; value and gradient in the density's order (μ, log σ, u, z)."""
    import pytensor
    import pytensor.tensor as pt

    G, P, R = data.n_groups, data.n_params, data.n_respondents
    gp, T = G * P, P * (P + 1) // 2
    x = pt.dvector("x")
    s, u = x[gp : gp + P], x[gp + P : gp + T]
    packed, k = [], 0
    for i in range(P):
        rem = 1.0
        for _ in range(i):
            packed.append(pt.exp(s[i]) * pt.tanh(u[k]) * pt.sqrt(rem))
            rem = rem / pt.cosh(u[k]) ** 2
            k += 1
        packed.append(s[i] + 0.5 * pt.log(rem))
    y = pt.stack(packed)
    jac = pytensor.gradient.jacobian(y, x)[:, gp : gp + T]
    values = {
        model.rvs_to_values[model[n]]: v
        for n, v in (
            ("mu", x[:gp].reshape((G, P))),
            ("pop", y),
            ("z", x[gp + T :].reshape((R, P))),
        )
    }
    logp = pytensor.clone_replace(model.logp(), values)
    logp = logp + pt.log(pt.abs(pt.nlinalg.det(jac)))
    f = pytensor.function([x], [logp, pytensor.grad(logp, x)])
    return lambda point: tuple(np.asarray(v) for v in f(point))


@pytest.mark.parametrize(
    ("make", "layout", "sd_prior"),
    [
        (_maxdiff_like, "factorised", "gamma"),
        (_conjoint_like, "dense", "gamma"),
        (_conjoint_like, "dense", "halfnormal"),
    ],
)
def test_scales_parameterisation_is_pymc_model_in_other_coordinates(make, layout, sd_prior):
    # the same posterior: PyMC's log density at the mapped point plus the log Jacobian
    data = make() if make is _conjoint_like else make(n_resp=8, groups=2)
    priors = HBPriors(mu_sd=2.5, sd_scale=0.8, lkj_eta=1.7, sd_prior=sd_prior)
    ref = _pytensor_logp_scales(build_model(data, priors, layout=layout), data)
    dens = make_density(data, _layout(data, layout), priors, parameterisation="scales")
    rng = np.random.default_rng(6)
    offsets = []
    for _ in range(5):
        x = rng.normal(scale=0.7, size=dens.n_dim)
        v, g = dens.logp_and_grad(x)
        v0, g0 = ref(x)
        offsets.append(v - float(v0))
        np.testing.assert_allclose(g, g0, rtol=1e-8, atol=1e-8 * np.abs(g0).max())
    assert np.ptp(offsets) < 1e-8 * max(1.0, abs(float(v0)))


def _population_draws(seed):
    """μ (chains × draws × groups × P), Cholesky factors, z for 7 respondents and their groups."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(2, 5, 3, 4))
    chol = np.tril(rng.normal(size=(2, 5, 4, 4)))
    z = rng.normal(size=(2, 5, 7, 4))
    return mu, chol, z, rng.integers(0, 3, 7)


def test_beta_draws_equal_numpy():
    from wtp.hb_density import beta_draws

    mu, chol, z, group = _population_draws(2)
    expected = mu[:, :, group, :] + np.matmul(z, np.swapaxes(chol, -1, -2))
    np.testing.assert_allclose(beta_draws(mu, chol, z, group), expected, rtol=1e-12, atol=1e-12)


def test_beta_draws_into_a_window_of_a_buffer():
    from wtp.hb_density import beta_draws, beta_draws_into

    mu, chol, z, group = _population_draws(3)
    buf = np.full((2, 9, 7, 4), np.nan)
    beta_draws_into(mu, chol, z, group, buf[:, 2:7])
    assert np.array_equal(buf[:, 2:7], beta_draws(mu, chol, z, group))
    assert np.isnan(buf[:, :2]).all() and np.isnan(buf[:, 7:]).all()


def test_weighted_shares_equal_numpy():
    """Segment shares per draw equal numpy's probability-scaled shares, averaged with the
    segment weights (hand formula: 100 p / Σp with p = 1 / (1 + (k − 1) e^(−u)))."""
    from wtp.hb_density import weighted_shares

    rng = np.random.default_rng(5)
    U = rng.normal(scale=2.0, size=(6, 9, 5))
    M = np.zeros((3, 9))
    M[0, :4] = 1 / 4
    M[1, 4:] = rng.random(5)
    M[1] /= M[1].sum()
    M[2] = 1 / 9
    u = U - U.mean(axis=-1, keepdims=True)
    p = 1.0 / (1.0 + 3 * np.exp(-u))
    shares = 100.0 * p / p.sum(axis=-1, keepdims=True)
    expected = np.einsum("gr,srk->sgk", M, shares)
    np.testing.assert_allclose(weighted_shares(U, M, 4), expected, rtol=1e-13, atol=1e-12)
