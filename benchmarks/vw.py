"""Van Westendorp speed: 1,000,000 respondents in one segment; 1,000 bootstrap replicates of 10,000.

Run: ``python benchmarks/vw.py`` (prints a table). Targets on 2 cores: < 2 s and < 5 s. The peer
(R's pricesensitivitymeter) is run on the 10,000-respondent sample when Rscript has it installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd

from wtp.simulate import simulate_vw
from wtp.vanwestendorp import van_westendorp


def timed(fn, repeat=3):
    best = np.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peer_psm(answers: pd.DataFrame) -> float | None:
    """Seconds for R pricesensitivitymeter::psm_analysis on the same answers, if installed."""
    if shutil.which("Rscript") is None:
        return None
    ok = subprocess.run(["Rscript", "-e", "library(pricesensitivitymeter)"], capture_output=True)
    if ok.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "vw.csv")
        answers.to_csv(path, index=False)
        code = (
            f"d <- read.csv('{path}'); t <- system.time(psm_analysis(toocheap='too_cheap', cheap='cheap', "
            "expensive='expensive', tooexpensive='too_expensive', data=d))[['elapsed']]; cat(t)"
        )
        r = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True)
        return float(r.stdout.strip()) if r.returncode == 0 else None


def main() -> None:
    rows = []
    big = simulate_vw(1_000_000, segments=1, nms=False, seed=1).answers.drop(columns="segment")
    secs, res = timed(lambda: van_westendorp(big))
    rows.append(
        (
            "1,000,000 respondents, one segment",
            secs,
            2.0,
            f"PMC {res.price_points.pmc.iloc[0]:.2f}, PME {res.price_points.pme.iloc[0]:.2f}",
        )
    )

    big_nms = simulate_vw(1_000_000, segments=1, seed=2).answers.drop(columns="segment")
    secs, res = timed(lambda: van_westendorp(big_nms))
    rows.append(
        (
            "1,000,000 respondents with NMS",
            secs,
            None,
            f"revenue-optimal {res.price_points.revenue_optimal_price.iloc[0]:.2f}",
        )
    )

    sample = simulate_vw(10_000, segments=1, nms=False, seed=3).answers.drop(columns="segment")
    secs, res = timed(
        lambda: van_westendorp(sample, bootstrap=1000, rng=np.random.default_rng(0)), repeat=2
    )
    pp = res.price_points.iloc[0]
    rows.append(
        (
            "1,000 bootstrap replicates of 10,000",
            secs,
            5.0,
            f"OPP {pp.opp:.2f} [{pp.opp_lower:.2f}, {pp.opp_upper:.2f}]",
        )
    )

    sample_nms = simulate_vw(10_000, segments=1, seed=4).answers.drop(columns="segment")
    secs, res = timed(
        lambda: van_westendorp(sample_nms, bootstrap=1000, rng=np.random.default_rng(0)), repeat=1
    )
    pp = res.price_points.iloc[0]
    rows.append(
        (
            "1,000 replicates of 10,000 with NMS",
            secs,
            None,
            f"revenue-optimal {pp.revenue_optimal_price:.2f} [{pp.revenue_optimal_price_lower:.2f}, {pp.revenue_optimal_price_upper:.2f}]",
        )
    )

    peer = peer_psm(sample)
    ours, _ = timed(lambda: van_westendorp(sample))
    if peer is not None:
        rows.append(
            (
                "10,000 respondents: R pricesensitivitymeter",
                peer,
                None,
                f"wtp {ours:.3f} s, ratio peer/wtp {peer / ours:.1f}x",
            )
        )
    else:
        rows.append(
            (
                "10,000 respondents: R pricesensitivitymeter",
                float("nan"),
                None,
                "not installed (Rscript + pricesensitivitymeter)",
            )
        )

    print(f"{'case':<45} {'seconds':>9} {'target':>8}  {'ok':<4} result")
    for case, s, target, note in rows:
        ok = "" if target is None else ("yes" if s < target else "NO")
        tgt = "" if target is None else f"< {target:g}"
        print(f"{case:<45} {s:9.3f} {tgt:>8}  {ok:<4} {note}")
    print(f"(cores available: {os.cpu_count()}; best of repeated runs)")


if __name__ == "__main__":
    main()
