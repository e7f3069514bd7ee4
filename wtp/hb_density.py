"""The log density of :mod:`wtp.hb`'s model written out for nutpie, compiled once and cached.

nutpie's PyMC path compiles PyTensor's logp + gradient to numba and then wraps it in a numba
C callback that refers to run-time objects, so the wrapper (about 8 s on the benchmark study)
is compiled again in every process. Here the log density and its gradient are plain numba
functions (``cache=True``) behind C callbacks of nutpie's signature that read the data through
a table of addresses (``user_data``), so a new process loads them from numba's cache.

The unconstrained point ``x`` is ``[μ (G × P), y (P(P+1)/2), z (R × P)]``; ``y`` holds the
population covariance Σ = L Lᵀ, L = diag(σ) C, in one of two coordinates (the same prior,
Gamma or half-normal σ and LKJ(η) correlations; ``c_i = 2η − 2 + P − i``):

* ``packed`` (PyMC's ``CholeskyCovPacked``): the lower triangle of L in ``np.tril_indices``
  order, diagonal on the log scale; ``σ_i = ‖L_i·‖``.
* ``scales`` (the default): ``s = log σ`` (P), then the correlations' partial correlations
  ``tanh(u_ij)`` unconstrained (Stan's ``cholesky_corr_constrain``): C_ij = tanh(u_ij) √rem_j,
  rem_{j+1} = rem_j / cosh² u_ij, C_ii = √rem_i. On the chocolate CBC the scales mixed faster
  (see :data:`wtp.hb.PARAMETERISATION`).

Terms (constants dropped):

=============== ===========================================================================
term            log density
=============== ===========================================================================
means           Σ_gp −μ_gp² / (2 mu_sd²)
scales          Σ_i (α − 1) log σ_i − β σ_i  (Gamma(α, β));  or −σ_i² / (2 sd_scale²)
LKJ + Jacobian  packed: Σ_i c_i (y_ii − log σ_i) − i log σ_i + y_ii  (PyMC's logp);
                scales: Σ_i s_i + Σ_{i>k} a_ik log(1 − tanh² u_ik),
                a_ik = ½ (c_i − 1) + ½ (i − 1 − k) + 1  (Stan's LKJ Cholesky + Jacobian)
z               Σ_rp −z_rp² / 2
choices         Σ_n x_n,chosen·β_r − log Σ_available exp(x_na·β_r),  β_r = μ_g(r) + L z_r
=============== ===========================================================================

``packed`` equals PyMC's ``model.logp()`` of :func:`wtp.hb.build_model` up to a constant,
with the same gradient; ``scales`` equals it carried over to its coordinates (plus the log
Jacobian of the map), tests/test_hb_density.py, to 1e-8. The likelihood loops
(:func:`hier_choices`, :func:`dense_choices`; factorised layout: one ``exp`` per distinct design
row per respondent, a mirrored row's ``exp`` a division; dense layout: sparse design rows) are
also the kernels of the fused PyTensor Ops in :mod:`wtp.hb`, which PyMC's own sampler uses.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.extending import intrinsic

__all__ = ["Density", "make_density", "logp_and_grad"]

# error_model="numpy": a point far out in warm-up (σ underflowing to 0) gives inf/nan, which
# the callback reports to nutpie (a rejected step), instead of an exception C cannot pass on
# the address table (int64) the C callbacks read: sizes, then data addresses
_N_DIM, _R, _P, _G, _LAYOUT, _SD_PRIOR, _A, _K, _N, _U = range(10)
_F_PTR, _GROUP_PTR, _D0, _D1, _D2, _D3, _D4, _PARAM = range(10, 18)
_META_LEN = 18
FACTORISED, DENSE = 0, 1
PACKED, SCALES = 0, 1
GAMMA, HALFNORMAL = 0, 1
_LOGP_SIG = types.int64(
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)
_EXPAND_SIG = types.int64(
    types.uint64,
    types.uint64,
    types.CPointer(types.double),
    types.CPointer(types.double),
    types.voidptr,
)


@intrinsic
def _as_void_pointer(typingctx, src):
    """An integer address as a void pointer (for ``numba.carray``)."""
    from numba.core import cgutils

    def codegen(cgctx, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(src), codegen


@nb.njit(cache=True, error_model="numpy")
def _floats(addr, n):
    return nb.carray(_as_void_pointer(addr), (n,), np.float64)


@nb.njit(cache=True, error_model="numpy")
def _ints(addr, n):
    return nb.carray(_as_void_pointer(addr), (n,), np.int64)


@nb.njit(cache=True, error_model="numpy")
def _chol(y, P):
    L = np.zeros((P, P))
    k = 0
    for i in range(P):
        for j in range(i):
            L[i, j] = y[k]
            k += 1
        L[i, i] = np.exp(y[k])
        k += 1
    return L


@nb.njit(cache=True, error_model="numpy")
def _population(x, out, G, P, R, mu_sd):
    """The normal terms (μ and z); their gradient is written to ``out``."""
    lp = 0.0
    gp = G * P
    inv_var = 1.0 / (mu_sd * mu_sd)
    for m in range(gp):
        lp -= 0.5 * x[m] * x[m] * inv_var
        out[m] = -x[m] * inv_var
    T = P * (P + 1) // 2
    off = gp + T
    for m in range(off, off + R * P):
        lp -= 0.5 * x[m] * x[m]
        out[m] = -x[m]
    return lp


@nb.njit(cache=True, error_model="numpy")
def _chol_terms(y, L, gL, gy, P, sd_prior, sd_scale, eta):
    """LKJCholeskyCov's log density (with the log-diagonal Jacobian) and the gradient in y,
    adding the likelihood's gradient in L (``gL``, lower triangle)."""
    alpha = 2.0
    beta = 2.0 / sd_scale
    lp = 0.0
    k = 0
    for i in range(P):
        ss = 0.0
        for j in range(i + 1):
            ss += L[i, j] * L[i, j]
        sd = np.sqrt(ss)
        s = np.log(sd)
        c = 2.0 * eta - 2.0 + P - i
        kd = k + i
        lp += c * (y[kd] - s) - i * s + y[kd]
        if sd_prior == GAMMA:
            lp += (alpha - 1.0) * s - beta * sd
            ds = -c - i + (alpha - 1.0) - beta * sd
        else:
            lp -= 0.5 * ss / (sd_scale * sd_scale)
            ds = -c - i - ss / (sd_scale * sd_scale)
        for j in range(i):
            gy[k + j] = ds * L[i, j] / ss + gL[i, j]
        gy[kd] = c + 1.0 + ds * L[i, i] * L[i, i] / ss + gL[i, i] * L[i, i]
        k += i + 1
    return lp


@nb.njit(cache=True, error_model="numpy")
def _log_cosh(u):
    a = abs(u)
    return a + np.log1p(np.exp(-2.0 * a)) - np.log(2.0)


@nb.njit(cache=True, error_model="numpy")
def _scaled_corr_chol(s, u, P):
    """``L = diag(σ) C``, σ = exp(s), C the Cholesky factor of the correlation matrix from
    unconstrained partial correlations u (Stan's ``cholesky_corr_constrain``, row by row:
    C_ij = tanh(u_ij) √rem_j, rem_{j+1} = rem_j / cosh²(u_ij), C_ii = √rem_i); returns L, C."""
    C = np.zeros((P, P))
    C[0, 0] = 1.0
    k = 0
    for i in range(1, P):
        rem = 1.0
        for j in range(i):
            C[i, j] = np.tanh(u[k]) * np.sqrt(rem)
            ch = np.cosh(u[k])
            rem /= ch * ch
            k += 1
        C[i, i] = np.sqrt(rem)
    L = np.zeros((P, P))
    for i in range(P):
        sig = np.exp(s[i])
        for j in range(i + 1):
            L[i, j] = sig * C[i, j]
    return L, C


@nb.njit(cache=True, error_model="numpy")
def _scaled_corr_terms(s, u, C, gL, gs, gu, P, sd_prior, sd_scale, eta):
    """Scale priors (with the log Jacobian s) and LKJ(η) on C with the Jacobian of the
    partial correlations, and the gradient in s and u (adding the likelihood's gL).

    With ℓ_ik = log(1 − tanh² u_ik) = −2 log cosh u_ik, log C_ii = ½ Σ_k ℓ_ik, so LKJ's
    (P − i − 1 + 2η − 2) log C_ii and Stan's Jacobian Σ_j ½ log rem_j + Σ_k ℓ_ik add up to
    Σ_k a_ik ℓ_ik with a_ik = ½ c + ½ (i − 1 − k) + 1, c = P − i − 1 + 2η − 2."""
    alpha = 2.0
    beta = 2.0 / sd_scale
    lp = 0.0
    for i in range(P):
        sig = np.exp(s[i])
        t = 0.0
        for j in range(i + 1):
            t += gL[i, j] * C[i, j]
        if sd_prior == GAMMA:
            lp += alpha * s[i] - beta * sig
            gs[i] = alpha - beta * sig + sig * t
        else:
            lp += s[i] - 0.5 * sig * sig / (sd_scale * sd_scale)
            gs[i] = 1.0 - sig * sig / (sd_scale * sd_scale) + sig * t
    root = np.empty(P)
    k = 0
    for i in range(1, P):
        c = P - i - 1 + 2.0 * eta - 2.0
        sig = np.exp(s[i])
        rem = 1.0
        for m in range(i):
            root[m] = np.sqrt(rem)
            ch = np.cosh(u[k + m])
            rem /= ch * ch
        # d/du_im of Σ_j gC_ij C_ij: gC_im (1 − w²) √rem_m − w Σ_{j>m} gC_ij C_ij
        tail = gL[i, i] * sig * C[i, i]
        for m in range(i - 1, -1, -1):
            uu = u[k + m]
            w = np.tanh(uu)
            a = 0.5 * c + 0.5 * (i - 1 - m) + 1.0
            lp -= 2.0 * a * _log_cosh(uu)
            g = gL[i, m] * sig
            gu[k + m] = g * (1.0 - w * w) * root[m] - w * tail - 2.0 * a * w
            tail += g * C[i, m]
        k += i
    return lp


@nb.njit(cache=True, error_model="numpy")
def hier_choices(mu, L, z, group, rows, mirror, alts, alt_chosen, start, gmu, gL, gz):
    """The factorised likelihood with β_r = μ_g(r) + L z_r; gradients added to gmu, gL (lower
    triangle), gz (gz is overwritten). Also the kernel of :func:`wtp.hb._hier_loglik_op`
    (PyMC's sampler, no mirrors).

    Rows ``K ..`` are mirrors: row ``K + m`` is ``−rows[mirror[m]]`` (MaxDiff's worst picks
    are its best picks negated), so its utility is the negated one and its ``exp`` a
    division, ``exp(−w − mx) = exp(−2 mx) / exp(w − mx)``: half the dot products and exps.

    The row utilities are ``W_r = D μ_g + (D L) z_r``: ``M = D L`` (K × P) is formed once per
    call, so a respondent costs one K × P product forward and two back (``gz_r = Mᵀ gW_r``,
    ``gM += gW_r z_rᵀ``), each an axpy over a contiguous row that the compiler vectorises;
    ``gL = Dᵀ gM`` and ``gμ_g = Dᵀ Σ_{r∈g} gW_r`` once at the end. Choices among four
    alternatives (MaxDiff's tasks of 4) take an unrolled path. Together −18% per gradient on
    the benchmark study against β built per respondent and dot products per row."""
    R, P = z.shape
    G = mu.shape[0]
    K = rows.shape[0]
    U = K + mirror.shape[0]
    A = alts.shape[1]
    MT = np.zeros((P, K))
    for u in range(K):
        for i in range(P):
            d = rows[u, i]
            if d != 0.0:
                for j in range(i + 1):
                    MT[j, u] += d * L[i, j]
    M = np.ascontiguousarray(MT.T)
    base = np.zeros((G, K))
    for g in range(G):
        for u in range(K):
            t = 0.0
            for i in range(P):
                t += rows[u, i] * mu[g, i]
            base[g, u] = t
    gM = np.zeros((K, P))
    gA = np.zeros((G, K))
    W = np.empty(U)
    E = np.empty(U + 1)
    gW = np.empty(U + 1)
    E[U] = 0.0
    ll = 0.0
    for r in range(R):
        g = group[r]
        for u in range(K):
            W[u] = base[g, u]
        for j in range(P):
            zj = z[r, j]
            for u in range(K):
                W[u] += MT[j, u] * zj
        mx = -np.inf
        for u in range(K):
            if W[u] > mx:
                mx = W[u]
        for m in range(U - K):
            t = -W[mirror[m]]
            W[K + m] = t
            if t > mx:
                mx = t
        for u in range(K):
            E[u] = np.exp(W[u] - mx)
        scale = np.exp(-2.0 * mx)
        # far out in warm-up exp(−2 mx) over- or underflows: then the exps themselves
        exact = mx > 300.0 or mx < -300.0
        for m in range(U - K):
            if exact:
                E[K + m] = np.exp(W[K + m] - mx)
            else:
                E[K + m] = scale / E[mirror[m]]
        for u in range(U + 1):
            gW[u] = 0.0
        prod = 1.0
        if A == 4:
            for c in range(start[r], start[r + 1]):
                k0, k1, k2, k3 = alts[c, 0], alts[c, 1], alts[c, 2], alts[c, 3]
                e0, e1, e2, e3 = E[k0], E[k1], E[k2], E[k3]
                s = (e0 + e1) + (e2 + e3)
                j = alt_chosen[c]
                ll += W[j] - mx
                prod *= s
                if prod < 1e-250:
                    ll -= np.log(prod)
                    prod = 1.0
                inv = 1.0 / s
                gW[j] += 1.0
                gW[k0] -= e0 * inv
                gW[k1] -= e1 * inv
                gW[k2] -= e2 * inv
                gW[k3] -= e3 * inv
        else:
            for c in range(start[r], start[r + 1]):
                s = 0.0
                for a in range(A):
                    s += E[alts[c, a]]
                j = alt_chosen[c]
                ll += W[j] - mx
                prod *= s
                if prod < 1e-250:
                    ll -= np.log(prod)
                    prod = 1.0
                gW[j] += 1.0
                inv = 1.0 / s
                for a in range(A):
                    k = alts[c, a]
                    gW[k] -= E[k] * inv
        ll -= np.log(prod)
        for m in range(U - K):
            gW[mirror[m]] -= gW[K + m]
        for j in range(P):
            gz[r, j] = 0.0
        for u in range(K):
            w = gW[u]
            gA[g, u] += w
            for j in range(P):
                gz[r, j] += M[u, j] * w
                gM[u, j] += w * z[r, j]
    for u in range(K):
        for i in range(P):
            d = rows[u, i]
            if d != 0.0:
                for j in range(i + 1):
                    gL[i, j] += d * gM[u, j]
                for g in range(G):
                    gmu[g, i] += d * gA[g, u]
    return ll


@nb.njit(cache=True, error_model="numpy")
def dense_choices(beta, idx, val, avail, chosen, resp, gb):
    """Log-likelihood of choices over sparse design rows given β (R × P); its gradient in β
    added to ``gb``. Also the kernel of :func:`wtp.hb._dense_loglik_op` (PyMC's sampler)."""
    N, A, K = idx.shape
    v = np.empty(A)
    ll = 0.0
    for c in range(N):
        r = resp[c]
        mx = -np.inf
        for a in range(A):
            if avail[c, a] > 0:
                t = 0.0
                for k in range(K):
                    t += val[c, a, k] * beta[r, idx[c, a, k]]
                v[a] = t
                if t > mx:
                    mx = t
        s = 0.0
        for a in range(A):
            if avail[c, a] > 0:
                v[a] = np.exp(v[a] - mx)
                s += v[a]
            else:
                v[a] = 0.0
        j = chosen[c]
        ll += np.log(v[j] / s)
        inv = 1.0 / s
        for a in range(A):
            w = (1.0 if a == j else 0.0) - v[a] * inv
            if w != 0.0:
                for k in range(K):
                    gb[r, idx[c, a, k]] += w * val[c, a, k]
    return ll


@nb.njit(cache=True, error_model="numpy")
def _dense_loglik(mu, L, z, group, idx, val, avail, chosen, resp, gmu, gL, gz):
    """The dense likelihood over sparse design rows (:func:`dense_choices`), β built first;
    gradients added to gmu and gL, gz overwritten."""
    R, P = z.shape
    beta = np.empty((R, P))
    for r in range(R):
        g = group[r]
        for i in range(P):
            t = mu[g, i]
            for j in range(i + 1):
                t += L[i, j] * z[r, j]
            beta[r, i] = t
    gb = np.zeros((R, P))
    ll = dense_choices(beta, idx, val, avail, chosen, resp, gb)
    for r in range(R):
        g = group[r]
        for i in range(P):
            gmu[g, i] += gb[r, i]
            gz[r, i] = 0.0
        for i in range(P):
            for j in range(i + 1):
                gz[r, j] += L[i, j] * gb[r, i]
                gL[i, j] += gb[r, i] * z[r, j]
    return ll


@nb.njit(cache=True, error_model="numpy")
def _logp_grad(x, out, meta):
    """log density at ``x`` (constants dropped); its gradient into ``out``."""
    R, P, G = meta[_R], meta[_P], meta[_G]
    fl = _floats(meta[_F_PTR], 3)
    mu_sd, sd_scale, eta = fl[0], fl[1], fl[2]
    gp = G * P
    T = P * (P + 1) // 2
    lp = _population(x, out, G, P, R, mu_sd)
    mu = x[:gp].copy().reshape((G, P))
    y = x[gp : gp + T].copy()
    z = x[gp + T :].copy().reshape((R, P))
    scales = meta[_PARAM] == SCALES
    if scales:
        L, C = _scaled_corr_chol(y[:P], y[P:], P)
    else:
        L = _chol(y, P)
        C = L
    gmu = np.zeros((G, P))
    gL = np.zeros((P, P))
    gz = np.empty((R, P))
    group = _ints(meta[_GROUP_PTR], R)
    A, N = meta[_A], meta[_N]
    if meta[_LAYOUT] == FACTORISED:
        U, K = meta[_U], meta[_K]
        rows = _floats(meta[_D0], K * P).reshape((K, P))
        alts = _ints(meta[_D1], N * A).reshape((N, A))
        alt_chosen = _ints(meta[_D2], N)
        start = _ints(meta[_D3], R + 1)
        mirror = _ints(meta[_D4], U - K)
        lp += hier_choices(mu, L, z, group, rows, mirror, alts, alt_chosen, start, gmu, gL, gz)
    else:
        K = meta[_K]
        idx = _ints(meta[_D0], N * A * K).reshape((N, A, K))
        val = _floats(meta[_D1], N * A * K).reshape((N, A, K))
        avail = _floats(meta[_D2], N * A).reshape((N, A))
        chosen = _ints(meta[_D3], N)
        resp = _ints(meta[_D4], N)
        lp += _dense_loglik(mu, L, z, group, idx, val, avail, chosen, resp, gmu, gL, gz)
    gy = np.empty(T)
    if scales:
        gs = np.empty(P)
        gu = np.empty(T - P)
        lp += _scaled_corr_terms(y[:P], y[P:], C, gL, gs, gu, P, meta[_SD_PRIOR], sd_scale, eta)
        gy[:P] = gs
        gy[P:] = gu
    else:
        lp += _chol_terms(y, L, gL, gy, P, meta[_SD_PRIOR], sd_scale, eta)
    gmuf = gmu.ravel()
    for m in range(gp):
        out[m] += gmuf[m]
    for m in range(T):
        out[gp + m] = gy[m]
    gzf = gz.ravel()
    for m in range(R * P):
        out[gp + T + m] += gzf[m]
    return lp


@nb.cfunc(_LOGP_SIG, cache=True, error_model="numpy")
def _logp_cfunc(dim, x_, out_, logp_, user_data_):
    meta = nb.carray(user_data_, (_META_LEN,), np.int64)
    if dim != meta[_N_DIM]:
        return -1
    x = nb.carray(x_, (dim,))
    out = nb.carray(out_, (dim,))
    logp = nb.carray(logp_, (1,))
    value = _logp_grad(x, out, meta)
    logp[0] = value
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    if not np.isfinite(value):
        return 4
    return 0


@nb.cfunc(_EXPAND_SIG, cache=True, error_model="numpy")
def _expand_cfunc(dim, expanded, x_, out_, user_data_):
    """The stored draw: the packed Cholesky factor of the population covariance (diagonal back
    from the log scale). μ and z are read from the unconstrained draw, which nutpie stores
    in any case; storing them again cost a third of the trace's writes."""
    meta = nb.carray(user_data_, (_META_LEN,), np.int64)
    P = meta[_P]
    T = P * (P + 1) // 2
    if dim != meta[_N_DIM] or expanded != T:
        return -1
    x = nb.carray(x_, (dim,))
    out = nb.carray(out_, (T,))
    gp = meta[_G] * P
    if meta[_PARAM] == SCALES:
        L, _ = _scaled_corr_chol(x[gp : gp + P].copy(), x[gp + P : gp + T].copy(), P)
        k = 0
        for i in range(P):
            for j in range(i + 1):
                out[k] = L[i, j]
                k += 1
        return 0
    k = 0
    for i in range(P):
        for j in range(i + 1):
            out[k] = np.exp(x[gp + k]) if j == i else x[gp + k]
            k += 1
    return 0


@nb.njit(cache=True)
def beta_draws_into(mu, chol, z, group, out):
    """β = μ_g(r) + L z_r for every draw: ``mu`` (C, D, G, P), ``chol`` (C, D, P, P) lower,
    ``z`` (C, D, R, P), written into ``out`` (C, D, R, P; e.g. the next draws' slots of
    :class:`wtp.hb._KeptDraws`' buffer, which saves a temporary and a copy). numpy's
    batched matmul of many 11 × 11 factors took 0.4 s per 250 draws of the benchmark study."""
    C, D, R, P = z.shape
    for c in range(C):
        for d in range(D):
            for r in range(R):
                g = group[r]
                for i in range(P):
                    t = mu[c, d, g, i]
                    for j in range(i + 1):
                        t += chol[c, d, i, j] * z[c, d, r, j]
                    out[c, d, r, i] = t


def beta_draws(mu, chol, z, group):
    """:func:`beta_draws_into` a new array."""
    out = np.empty(z.shape)
    beta_draws_into(mu, chol, z, group, out)
    return out


@nb.njit(cache=True, error_model="numpy")
def weighted_shares(U, M, k):
    """Probability-scaled shares (0–100) of every draw's respondents, averaged with weights:
    item utilities ``U`` (S, R, K), weights ``M`` (G × R), ``k`` items per task → (S, G, K).
    Per respondent, with ``u`` centred, ``p = 1 / (1 + (k − 1) e^{−u})`` and ``share = 100 p /
    Σ p`` (:func:`wtp.maxdiff.probability_shares`), then ``M @ share``. One pass per
    respondent: numpy's version (five temporaries of draws × R × K) cost 0.9 s per run of the
    benchmark study's convergence checks, this one 0.2 s."""
    S, R, K = U.shape
    G = M.shape[0]
    out = np.zeros((S, G, K))
    p = np.empty(K)
    for s in range(S):
        for r in range(R):
            mean = 0.0
            for j in range(K):
                mean += U[s, r, j]
            mean /= K
            total = 0.0
            for j in range(K):
                p[j] = 1.0 / (1.0 + (k - 1) * np.exp(-(U[s, r, j] - mean)))
                total += p[j]
            scale = 100.0 / total
            for g in range(G):
                w = M[g, r]
                if w != 0.0:
                    w *= scale
                    for j in range(K):
                        out[s, g, j] += w * p[j]
    return out


@nb.njit(cache=True, error_model="numpy")
def mnl_gradient_hessian(X, available, chosen, respondent, beta):
    """Per respondent, the gradient and the negated Hessian of the MNL log-likelihood at
    ``beta`` (R × P): ``Σ_n x_n,chosen − x̄_n`` and ``Σ_n Σ_a p_na x_na x_naᵀ − x̄_n x̄_nᵀ``
    with ``x̄_n = Σ_a p_na x_na`` (for :func:`wtp.hb.map_individual`'s Newton steps; numpy's
    ``add.at`` scatter and three-operand einsum cost 0.7 s per benchmark run)."""
    N, A, P = X.shape
    R = beta.shape[0]
    grad = np.zeros((R, P))
    H = np.zeros((R, P, P))
    v = np.empty(A)
    xbar = np.empty(P)
    for n in range(N):
        r = respondent[n]
        m = -np.inf
        for a in range(A):
            if available[n, a]:
                t = 0.0
                for i in range(P):
                    t += X[n, a, i] * beta[r, i]
                v[a] = t
                if t > m:
                    m = t
        total = 0.0
        for a in range(A):
            if available[n, a]:
                v[a] = np.exp(v[a] - m)
                total += v[a]
            else:
                v[a] = 0.0
        for i in range(P):
            xbar[i] = 0.0
        for a in range(A):
            if v[a] != 0.0:
                w = v[a] / total
                for i in range(P):
                    xi = w * X[n, a, i]
                    xbar[i] += xi
                    for j in range(P):
                        H[r, i, j] += xi * X[n, a, j]
        c = chosen[n]
        for i in range(P):
            grad[r, i] += X[n, c, i] - xbar[i]
            for j in range(P):
                H[r, i, j] -= xbar[i] * xbar[j]
    return grad, H


@nb.njit(cache=True, nogil=True)
def normal_scores(rows, order, table):
    """Rank-normal scores of each row of ``rows`` (V × n) given its ``argsort``: tied values
    share their average rank ``(i + j) / 2 + 1`` (positions i..j in sorted order), whose
    score is ``table[i + j]`` (:func:`wtp.hb._blom_table`: the normal quantile of every
    possible average rank, computed once instead of once per draw). Returns the scores as
    n × V and the sorted rows (V × n; their median and quantiles need no further sort).
    For :func:`wtp.hb._z_scale`; a numba loop, as :func:`geyer_tau`."""
    v, n = rows.shape
    scores = np.empty((n, v))
    ordered = np.empty((v, n))
    for r in range(v):
        i = 0
        while i < n:
            x = rows[r, order[r, i]]
            j = i
            while j + 1 < n and rows[r, order[r, j + 1]] == x:
                j += 1
            z = table[i + j]
            for k in range(i, j + 1):
                scores[order[r, k], r] = z
                ordered[r, k] = x
            i = j + 1
    return scores, ordered


@nb.njit(cache=True, error_model="numpy", nogil=True)
def geyer_tau(rho):
    """Integrated autocorrelation time of each row of ``rho`` (V × lags) by Geyer's initial
    positive and monotone sequences, step for step as ArviZ's ``_ess`` (used by
    :func:`wtp.hb.rank_diagnostics`; here because it is a numba loop)."""
    v, n = rho.shape
    tau = np.empty(v)
    r = np.empty(n)
    for j in range(v):
        for t in range(n):
            r[t] = 0.0
        r[0] = 1.0
        even = 1.0
        odd = rho[j, 1]
        r[1] = odd
        t = 1
        while t < n - 3 and even + odd > 0.0:
            even = rho[j, t + 1]
            odd = rho[j, t + 2]
            if even + odd >= 0:
                r[t + 1] = even
                r[t + 2] = odd
            t += 2
        tau[j] = _geyer_tau(r, t, even, n)
    return tau


@nb.njit(cache=True, error_model="numpy")
def _geyer_tau(r, t, even, n):
    """τ = −1 + 2 Σ ρ from the autocorrelations ``r`` kept while Geyer's pairs stayed positive
    (``t`` where the pair sum turned negative, ``even`` the last even-lag value read): his
    initial monotone sequence, then the sum ArviZ takes (``n`` draws per chain)."""
    max_t = t - 2
    if even > 0:
        r[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if r[t + 1] + r[t + 2] > r[t - 1] + r[t]:
            r[t + 1] = (r[t - 1] + r[t]) / 2.0
            r[t + 2] = r[t + 1]
        t += 2
    total = 0.0
    for t in range(max_t + 1):
        total += r[t]
    if max_t + 1 < n:
        total = 2.0 * total + r[max_t + 1]
    else:
        total = 2.0 * total
    return -1.0 + total


@nb.njit(cache=True, error_model="numpy")
def _lag_rho(xc, lag, mean_var, var_plus):
    """ArviZ's ``ρ_t = 1 − (W − mean_c acov_c(t)) / var⁺`` at one lag (for :func:`lag_tau`)."""
    C, D = xc.shape
    a = 0.0
    for c in range(C):
        s = 0.0
        for i in range(D - lag):
            s += xc[c, i] * xc[c, i + lag]
        a += s / D
    return 1.0 - (mean_var - a / C) / var_plus


@nb.njit(cache=True, error_model="numpy", nogil=True)
def lag_tau(x, max_lag):
    """:func:`geyer_tau` of each variable of ``x`` (V × chains × draws), with the
    autocorrelations computed lag by lag only as far as Geyer's initial positive sequence
    reads them: ``ρ_t = 1 − (W − mean_c acov_c(t)) / var⁺`` with ``acov_c(t) = Σ_i x̃_ci
    x̃_c,i+t / D`` (x̃ centred per chain), ``W = mean_c acov_c(0) · D / (D − 1)`` and ``var⁺ = W
    (D − 1) / D`` + the variance of the chain means (ArviZ's ``_ess``, which computes every
    lag by FFT). Draws that mix well need a handful of lags. A variable whose sequence needs
    more than ``max_lag`` lags is left to the FFT: ``done`` False. Returns (tau, done)."""
    V, C, D = x.shape
    tau = np.full(V, np.nan)
    done = np.zeros(V, dtype=np.bool_)
    if D < 4 or max_lag < 3:
        return tau, done
    xc = np.empty((C, D))
    means = np.empty(C)
    rho = np.empty(max_lag + 1)
    r = np.empty(max_lag + 1)
    for v in range(V):
        for c in range(C):
            m = 0.0
            for i in range(D):
                m += x[v, c, i]
            m /= D
            means[c] = m
            for i in range(D):
                xc[c, i] = x[v, c, i] - m
        acov0 = 0.0
        for c in range(C):
            s = 0.0
            for i in range(D):
                s += xc[c, i] * xc[c, i]
            acov0 += s / D
        mean_var = acov0 / C * D / (D - 1.0)
        var_plus = mean_var * (D - 1.0) / D
        if C > 1:
            grand = 0.0
            for c in range(C):
                grand += means[c]
            grand /= C
            between = 0.0
            for c in range(C):
                between += (means[c] - grand) ** 2
            var_plus += between / (C - 1.0)
        # Geyer's initial positive and monotone sequences, step for step as geyer_tau
        rho[1] = _lag_rho(xc, 1, mean_var, var_plus)
        if np.isnan(rho[1]):  # a non-finite draw (ArviZ: NaN), or a constant (the caller's)
            done[v] = True
            continue
        known = 2  # rho[1 .. known - 1] computed (rho[0] is 1 by construction)
        for k in range(max_lag + 1):
            r[k] = 0.0
        r[0] = 1.0
        even = 1.0
        odd = rho[1]
        r[1] = odd
        t = 1
        ok = True
        while t < D - 3 and even + odd > 0.0:
            if t + 2 > max_lag:
                ok = False
                break
            while known <= t + 2:
                rho[known] = _lag_rho(xc, known, mean_var, var_plus)
                known += 1
            even = rho[t + 1]
            odd = rho[t + 2]
            if even + odd >= 0:
                r[t + 1] = even
                r[t + 2] = odd
            t += 2
        if not ok:
            continue
        tau[v] = _geyer_tau(r, t, even, D)
        done[v] = True
    return tau, done


def _mirrored(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows reordered as (rows without a mirror or first of a ± pair: K × P),
    ``mirror`` (for each later row, the index of the row it negates) and the new index of
    every old row. A zero row is its own negation and is kept among the first K."""
    key = {tuple(r): u for u, r in enumerate(rows)}
    first, second = [], []
    for u, r in enumerate(rows):
        v = key.get(tuple(-r))
        if v is None or v == u or u < v:
            first.append(u)
        else:
            second.append(u)
    position = {u: k for k, u in enumerate(first)}
    order = np.array(first + second, dtype=np.int64)
    new_index = np.empty(len(rows), dtype=np.int64)
    new_index[order] = np.arange(len(rows))
    mirror = np.array([position[key[tuple(-rows[u])]] for u in second], dtype=np.int64)
    return rows[first], mirror, new_index


class Density:
    """The data of one fit laid out for the C callbacks, kept alive with their address table.

    ``meta`` is the table (int64) nutpie hands to the callbacks as ``user_data``; the arrays it
    points at are held in ``arrays``."""

    def __init__(self, meta: np.ndarray, arrays: list[np.ndarray], n_dim: int):
        self.meta = meta
        self.arrays = arrays
        self.n_dim = n_dim

    def logp_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=float)
        out = np.empty_like(x)
        return float(_logp_grad(x, out, self.meta)), out


def make_density(data, layout, priors, parameterisation: str = "scales") -> Density:
    """The address table for ``data`` (a :class:`wtp.hb.ChoiceData`) in ``layout`` (a
    :class:`wtp.hb._Layout`) with ``priors`` (:class:`wtp.hb.HBPriors`).

    ``parameterisation``: ``"packed"`` is PyMC's (the Cholesky factor of the covariance,
    diagonal on the log scale); ``"scales"`` samples log σ and the correlations' unconstrained
    partial correlations (the same prior; see the module docstring)."""
    if parameterisation not in ("packed", "scales"):
        raise ValueError(f"unknown parameterisation {parameterisation!r}")
    R, P, G = data.n_respondents, data.n_params, data.n_groups
    n_dim = G * P + P * (P + 1) // 2 + R * P
    if priors.sd_prior not in ("gamma", "halfnormal"):
        raise ValueError(f"unknown sd_prior {priors.sd_prior!r}")

    def keep(a, dtype):
        return np.ascontiguousarray(a, dtype=dtype)

    floats = keep([priors.mu_sd, priors.sd_scale, priors.lkj_eta], np.float64)
    group = keep(data.group, np.int64)
    meta = np.zeros(_META_LEN, dtype=np.int64)
    meta[[_N_DIM, _R, _P, _G]] = n_dim, R, P, G
    meta[_SD_PRIOR] = GAMMA if priors.sd_prior == "gamma" else HALFNORMAL
    meta[_PARAM] = SCALES if parameterisation == "scales" else PACKED
    if layout.factorised:
        rows, mirror, new_index = _mirrored(layout.rows)
        # the unavailable slot (index U) stays last
        new_index = np.append(new_index, len(layout.rows))
        arrays = [
            keep(rows, np.float64),
            keep(new_index[layout.alts], np.int64),
            keep(new_index[layout.alt_chosen], np.int64),
            keep(layout.start, np.int64),
            keep(mirror, np.int64),
        ]
        meta[_LAYOUT] = FACTORISED
        meta[_U] = len(layout.rows)
        meta[_K] = len(rows)
        meta[_N], meta[_A] = arrays[1].shape
    else:
        from wtp.hb import _sparse_rows

        idx, val = _sparse_rows(np.asarray(data.X, dtype=float))
        arrays = [
            keep(idx, np.int64),
            keep(val, np.float64),
            keep(data.available, np.float64),
            keep(data.chosen, np.int64),
            keep(data.respondent, np.int64),
        ]
        meta[_LAYOUT] = DENSE
        meta[_N], meta[_A], meta[_K] = idx.shape
    meta[_F_PTR] = floats.ctypes.data
    meta[_GROUP_PTR] = group.ctypes.data
    for slot, a in zip((_D0, _D1, _D2, _D3, _D4), arrays, strict=False):
        meta[slot] = a.ctypes.data
    return Density(meta, [floats, group, *arrays], n_dim)


def logp_and_grad(density: Density, x: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density (constants dropped) and its gradient at ``x`` (for tests and checks)."""
    return density.logp_and_grad(x)
