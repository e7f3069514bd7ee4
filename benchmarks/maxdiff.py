"""MaxDiff hierarchical Bayes: wtp (nutpie on its own log density) against R bayesm's rhierMnlRwMixture.

A simulated world (wtp.simulate.simulate_maxdiff: 750 respondents, 12 items, 10 tasks of 4,
10 design versions, 3 segments) is estimated end to end by ``wtp.maxdiff.estimate_maxdiff``
(data preparation, loading the numba-compiled log density, sampling, diagnostics, shares) and,
when ``Rscript`` with bayesm is available, by ``bayesm::rhierMnlRwMixture`` (R = 20000,
keep = 10) on the same answers in the same run. Both get the segments (wtp: segment-specific
population means; bayesm: centred segment dummies as Z). Printed side by side: wall time,
convergence (ArviZ rank-normalised R-hat and ESS on both sets of draws) and recovery of the
true individual utilities and segment shares.

Usage::

    python benchmarks/maxdiff.py                 # warm numba cache (second and later runs)
    python benchmarks/maxdiff.py --cold          # fresh numba cache: first-run cost
    python benchmarks/maxdiff.py --no-r          # wtp only

bayesm cannot express "worst among the items left after the best": every choice set needs the
same number of alternatives, so its worst choice is coded over all 4 items shown (negated),
the usual practice with bayesm and Sawtooth. wtp uses the exact sequential model the simulator
draws from. Both are scored on the same truth.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

R_SCRIPT = r"""
suppressMessages(library(bayesm))
args <- commandArgs(trailingOnly = TRUE)
folder <- args[1]; R <- as.integer(args[2]); keep <- as.integer(args[3]); seed <- as.integer(args[4])
t_start <- Sys.time()
X <- as.matrix(read.csv(file.path(folder, "X.csv"), header = FALSE))
y <- scan(file.path(folder, "y.txt"), quiet = TRUE)
resp <- scan(file.path(folder, "resp.txt"), quiet = TRUE)
Z <- as.matrix(read.csv(file.path(folder, "Z.csv"), header = FALSE))
p <- 4
lgt <- lapply(split(seq_along(y), resp), function(ix) {
  rows <- as.vector(t(outer((ix - 1) * p, 1:p, "+")))
  list(y = y[ix], X = X[rows, , drop = FALSE])
})
t_prep <- as.numeric(Sys.time() - t_start, units = "secs")
set.seed(seed)
t0 <- Sys.time()
out <- rhierMnlRwMixture(Data = list(p = p, lgtdata = lgt, Z = Z), Prior = list(ncomp = 1),
                         Mcmc = list(R = R, keep = keep, nprint = 0))
t_fit <- as.numeric(Sys.time() - t0, units = "secs")
b <- out$betadraw  # respondents x params x draws
writeBin(as.vector(b), file.path(folder, "betadraw.bin"), size = 8)
cat(dim(b), "\n", file = file.path(folder, "dims.txt"))
cat(t_prep, t_fit, "\n", file = file.path(folder, "times.txt"))
"""


def _r_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    try:
        r = subprocess.run(["Rscript", "-e", "library(bayesm)"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def _bayesm_inputs(md, folder: Path):
    """Reference-coded design (last item = 0), best over the k shown and worst over the same
    k with negated utilities, one block of 4 rows per choice; Z = centred segment dummies."""
    import numpy as np

    K = md.n_items
    n = md.n_tasks
    shown = md.shown
    D = np.zeros((n, shown.shape[1], K - 1))
    for j in range(shown.shape[1]):
        idx = shown[:, j]
        rows = np.flatnonzero(idx < K - 1)
        D[rows, j, idx[rows]] = 1.0
    X = np.concatenate([D, -D], axis=0)  # best block then worst block
    y = np.concatenate([md.best, md.worst]) + 1
    resp = np.concatenate([md.task_resp, md.task_resp]) + 1
    order = np.argsort(resp, kind="stable")
    X, y, resp = X[order], y[order], resp[order]
    np.savetxt(folder / "X.csv", X.reshape(-1, K - 1), delimiter=",", fmt="%d")
    np.savetxt(folder / "y.txt", y, fmt="%d")
    np.savetxt(folder / "resp.txt", resp, fmt="%d")
    G = len(md.segments)
    Z = np.zeros((md.n_respondents, max(G - 1, 1)))
    for g in range(1, G):
        Z[:, g - 1] = md.segment == g
    Z -= Z.mean(axis=0)
    np.savetxt(folder / "Z.csv", Z, delimiter=",")


def run_bayesm(md, R: int, keep: int, seed: int, burn: float):
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _bayesm_inputs(md, folder)
        (folder / "run.R").write_text(R_SCRIPT)
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["Rscript", str(folder / "run.R"), str(folder), str(R), str(keep), str(seed)],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        dims = [int(x) for x in (folder / "dims.txt").read_text().split()]
        t_prep, t_fit = (float(x) for x in (folder / "times.txt").read_text().split())
        b = np.fromfile(folder / "betadraw.bin", dtype=np.float64).reshape(
            dims[::-1]
        )  # draws × params × resp
    draws = b.transpose(0, 2, 1)  # draws × respondents × params
    start = int(burn * len(draws))
    draws = draws[start:]
    util = np.concatenate([draws, np.zeros(draws.shape[:2] + (1,))], axis=2)
    util -= util.mean(axis=2, keepdims=True)
    return {
        "wall_s": wall,
        "prep_s": t_prep,
        "fit_s": t_fit,
        "utility_draws": util,
        "n_kept": len(draws),
    }


def recovery(md, sim, util_draws):
    """Correlations of posterior-mean individual utilities and of segment shares with truth."""
    import numpy as np
    import pandas as pd

    from wtp.maxdiff import probability_shares

    truth = (
        sim.individual_utilities.pivot(index="respondent_id", columns="item", values="utility")
        .loc[md.respondent_ids, md.items]
        .to_numpy()
    )
    est = util_draws.mean(axis=0)
    r_ind = float(np.corrcoef(est.ravel(), truth.ravel())[0, 1])
    per_resp = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(est, truth, strict=True)])
    shares = np.stack([probability_shares(u, md.k) for u in util_draws]).mean(axis=0)  # R × K
    seg = np.asarray(md.segments)[md.segment]
    rows = []
    for s in [*md.segments, "all"]:
        mask = np.ones(md.n_respondents, bool) if s == "all" else seg == s
        true = (
            sim.segment_shares.set_index(["segment", "item"])
            .loc[s]
            .loc[md.items, "share"]
            .to_numpy()
        )
        rows.append(np.corrcoef(shares[mask].mean(axis=0), true)[0, 1])
    return {
        "individual_r": r_ind,
        "mean_respondent_r": float(per_resp),
        "min_segment_share_r": float(np.min(rows)),
        "segment_share_r": dict(zip([*md.segments, "all"], rows, strict=True)),
        "table": pd.DataFrame(),
    }


def arviz_checks(util_draws_by_chain):
    """Rank-normalised R-hat and bulk ESS (ArviZ) of individual utilities, chains × draws × ..."""
    import arviz as az
    import numpy as np

    ds = az.convert_to_dataset({"u": util_draws_by_chain})
    return {
        "max_rhat": float(np.nanmax(az.rhat(ds)["u"].to_numpy())),
        "p99_rhat": float(np.nanquantile(az.rhat(ds)["u"].to_numpy(), 0.99)),
        "min_ess_bulk": float(np.nanmin(az.ess(ds)["u"].to_numpy())),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--respondents", type=int, default=750)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--draws",
        type=int,
        default=None,
        help="draws per chain at the first convergence check (default: wtp's)",
    )
    ap.add_argument("--tune", type=int, default=None, help="warm-up per chain (default: wtp's)")
    ap.add_argument(
        "--chains", type=int, default=None, help="chains (default: wtp's, one per core, 2 to 4)"
    )
    ap.add_argument(
        "--low-rank", action="store_true", help="nutpie's low-rank modified mass matrix"
    )
    ap.add_argument(
        "--target-accept", type=float, default=None, help="NUTS target acceptance (default: wtp's)"
    )
    ap.add_argument(
        "--nutpie",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a nutpie setting (e.g. mass_matrix_switch_freq=60), repeatable",
    )
    ap.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="seconds before wtp stops unconverged (default: wtp's)",
    )
    ap.add_argument("--bayesm-R", type=int, default=20000)
    ap.add_argument("--bayesm-keep", type=int, default=10)
    ap.add_argument(
        "--bayesm-burn",
        type=float,
        default=0.5,
        help="share of bayesm's kept draws dropped as burn-in",
    )
    ap.add_argument(
        "--cold",
        action="store_true",
        help="use an empty PyTensor/numba cache (first-run compile cost)",
    )
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument(
        "--full-diagnostics",
        action="store_true",
        help="also R-hat/ESS of every individual utility (ArviZ, slow)",
    )
    args = ap.parse_args(argv)

    cold_dir = None
    if args.cold:
        cold_dir = tempfile.mkdtemp(prefix="wtp-cold-")
        os.environ["PYTENSOR_FLAGS"] = f"base_compiledir={cold_dir}"
        # wtp.hb_density's numba functions (what nutpie samples) are cached by numba
        os.environ["NUMBA_CACHE_DIR"] = cold_dir

    import numpy as np

    from wtp.maxdiff import _contrast_basis, estimate_maxdiff, prepare_maxdiff_data
    from wtp.simulate import simulate_maxdiff

    sim = simulate_maxdiff(args.respondents, 12, 4, 10, n_versions=10, seed=args.seed)
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    md = prepare_maxdiff_data(sim.answers)
    print(
        f"world: {md.n_respondents} respondents, {md.n_items} items, {md.n_tasks // md.n_respondents} tasks of {md.k}, segments {md.segments}"
    )

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    hb = {
        k: v
        for k, v in {
            "draws": args.draws,
            "tune": args.tune,
            "time_budget": args.time_budget,
            "target_accept": args.target_accept,
        }.items()
        if v is not None
    }
    if args.low_rank or args.nutpie:
        import json

        import wtp.hb

        wtp.hb.DEFAULT_SAMPLER_KWARGS = {
            **({"low_rank_modified_mass_matrix": True} if args.low_rank else {}),
            **{k: json.loads(v) for k, v in (a.split("=", 1) for a in args.nutpie)},
        }
    res = estimate_maxdiff(
        sim.answers,
        method="hb",
        rng=np.random.default_rng(args.seed),
        chains=args.chains,
        progress=True,
        **hb,
    )
    wtp_wall = time.perf_counter() - t0
    wtp_cpu = time.process_time() - cpu0
    d = res.diagnostics
    Q = _contrast_basis(md.n_items)
    beta = (
        res.hb.idata.posterior["beta"].transpose("chain", "draw", "respondent", "param").to_numpy()
    )
    util_chains = beta @ Q.T
    ours = recovery(md, sim, util_chains.reshape(-1, *util_chains.shape[2:]))
    ours_checks = {
        "max_rhat": d["individual_max_rhat"],
        "p99_rhat": d["individual_rhat_p99"],
        "min_ess_bulk": d["individual_min_ess_bulk"],
    }
    full_s = None
    if args.full_diagnostics:
        t1 = time.perf_counter()
        ours_checks = arviz_checks(util_chains)
        full_s = time.perf_counter() - t1

    print()
    print("wtp hierarchical Bayes (log density of wtp.hb_density, nutpie sampler)")
    print(
        f"  settings: {d['chains']} chains, sampled until converged: {d['draws_per_chain']} draws per chain, {len(d['sampling'])} checks, {d['sampling'][-1]['round']} round(s), {os.cpu_count()} cores, numba cache {'cold' if args.cold else 'warm'}"
    )
    print(f"  load average before the run: {load_before}")
    checks_s = sum(r.get("check_s", 0.0) for r in d["sampling"])
    read_s = sum(r.get("read_s", 0.0) for r in d["sampling"])
    print(
        f"  time: total {wtp_wall:.1f} s = import nutpie's core {d.get('import_s', 0.0):.1f} + build {d['build_s']:.1f} + compile {d['compile_s']:.1f} + sampling with checks {d['sample_s']:.1f}"
        f" (of which {checks_s:.1f} s convergence checks, {read_s:.1f} s of them reading draws) + shares, respondent fit and the rest {wtp_wall - d.get('import_s', 0.0) - d['build_s'] - d['compile_s'] - d['sample_s']:.1f}"
    )
    print(
        f"  CPU time (all threads): {wtp_cpu:.1f} s over {wtp_wall:.1f} s wall ({wtp_cpu / wtp_wall:.2f} cores busy on average)"
    )
    for r in d["sampling"]:
        print(
            f"    check round {r['round']} at {r['draws_per_chain']} draws/chain ({r['elapsed_s']:.0f} s; check {r.get('check_s', 0):.1f} s, reading draws {r.get('read_s', 0):.1f} s): {r['stopped_because']}; {r['limiting'] or 'all checks pass'}"
        )
    print(
        f"  sampler: {d['mean_leapfrog_steps']:.1f} leapfrog steps per draw, step size {d['mean_step_size']:.3f}, {d['divergences']} divergences"
    )
    warm = sum(r.get("warmup_leapfrog_steps") or 0 for r in d["sampling"])
    kept_steps = sum(r.get("kept_leapfrog_steps") or 0 for r in d["sampling"])
    print(
        f"  gradient evaluations (all chains, rounds): warm-up {warm:,}, kept draws {kept_steps:,}, total {warm + kept_steps:,}"
    )
    for name, v in d["by_variable"].items():
        print(
            f"  {name:>5}: max R-hat {v['max_rhat']:.4f}  min bulk ESS {v['min_ess_bulk']:.0f}  min tail ESS {v['min_ess_tail']:.0f}"
        )
    print(
        f"  converged (population + shares, R-hat <= 1.01, ESS >= 400, no divergences): {res.converged}"
    )
    print(
        f"  individual utilities ({'all' if args.full_diagnostics else d['individual_checked']} respondents): max R-hat {ours_checks['max_rhat']:.4f},"
        f" 99th pct {ours_checks['p99_rhat']:.4f}, min bulk ESS {ours_checks['min_ess_bulk']:.0f}"
        + (f"  ({full_s:.1f} s)" if full_s else "")
    )
    print(
        f"  mean RLH {d['mean_rlh']:.3f} (chance {d['chance_rlh']:.3f}); random-answering flag on these honest respondents: {100 * d['share_random_like']:.1f}% flagged (target <= 5%), catches {100 * d['random_detection_rate']:.0f}% of simulated random answerers"
    )

    theirs = None
    if not args.no_r and _r_available():
        theirs = run_bayesm(md, args.bayesm_R, args.bayesm_keep, args.seed, args.bayesm_burn)
        theirs_rec = recovery(md, sim, theirs["utility_draws"])
        u = theirs["utility_draws"]
        # one chain: cut in two so ArviZ can compute (split) R-hat
        half = len(u) // 2
        theirs_checks = arviz_checks(np.stack([u[:half], u[half : 2 * half]]))
        print()
        print(
            f"bayesm rhierMnlRwMixture (R = {args.bayesm_R}, keep = {args.bayesm_keep}, first {args.bayesm_burn:.0%} of kept draws dropped)"
        )
        print(
            f"  time: Rscript wall {theirs['wall_s']:.1f} s (data {theirs['prep_s']:.1f} s, sampler {theirs['fit_s']:.1f} s)"
        )
        print(
            f"  individual utilities: max split R-hat {theirs_checks['max_rhat']:.4f}, 99th pct {theirs_checks['p99_rhat']:.4f}, min bulk ESS {theirs_checks['min_ess_bulk']:.0f}"
        )
    elif not args.no_r:
        print("\n(bayesm not run: Rscript with bayesm not found)")

    print()
    header = f"{'':32}{'wtp':>12}" + (f"{'bayesm':>12}{'ratio':>10}" if theirs else "")
    print(header)
    print("-" * len(header))

    def row(label, a, b=None, fmt="{:.3f}", ratio=False):
        line = f"{label:32}{fmt.format(a):>12}"
        if theirs is not None and b is not None:
            line += f"{fmt.format(b):>12}"
            if ratio:
                line += f"{b / a:>9.2f}x"
        print(line)

    row("end-to-end time (s)", wtp_wall, theirs["wall_s"] if theirs else None, "{:.1f}", ratio=True)
    row("  of which compile (s)", d["compile_s"], fmt="{:.1f}")
    row("  of which sampling + checks (s)", d["sample_s"], fmt="{:.1f}")
    row("  of which checks (s)", checks_s, fmt="{:.1f}")
    row("wtp CPU time, all threads (s)", wtp_cpu, fmt="{:.1f}")
    row("chains x draws per chain", f"{d['chains']} x {d['draws_per_chain']}", fmt="{}")
    row(
        "sampler time (s)", d["sample_s"], theirs["fit_s"] if theirs else None, "{:.1f}", ratio=True
    )
    row("posterior draws kept", d["n_draws"], theirs["n_kept"] if theirs else None, "{:.0f}")
    row(
        "individual utility r (truth)",
        ours["individual_r"],
        theirs_rec["individual_r"] if theirs else None,
    )
    row(
        "mean per-respondent r",
        ours["mean_respondent_r"],
        theirs_rec["mean_respondent_r"] if theirs else None,
    )
    row(
        "min segment share r",
        ours["min_segment_share_r"],
        theirs_rec["min_segment_share_r"] if theirs else None,
        "{:.4f}",
    )
    row(
        "individual max R-hat",
        ours_checks["max_rhat"],
        theirs_checks["max_rhat"] if theirs else None,
        "{:.4f}",
    )
    row(
        "individual min bulk ESS",
        ours_checks["min_ess_bulk"],
        theirs_checks["min_ess_bulk"] if theirs else None,
        "{:.0f}",
    )
    if theirs:
        target = theirs["wall_s"] / 4
        print(
            f"\ntarget: converged in <= 1/4 of bayesm's time ({target:.1f} s) with equal or better individual recovery"
        )
        print(f"  load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(
            f"  converged: {res.converged}; time {wtp_wall:.1f} s ({'met' if wtp_wall <= target else 'NOT met'}); recovery {ours['individual_r']:.3f} vs {theirs_rec['individual_r']:.3f} ({'met' if ours['individual_r'] >= theirs_rec['individual_r'] else 'NOT met'})"
        )
    if cold_dir:
        shutil.rmtree(cold_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
