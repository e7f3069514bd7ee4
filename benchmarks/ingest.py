"""Ingest at scale: reading, validating and analysing big survey files, end to end.

Targets (issue 16): 1,000,000 Van Westendorp rows read, validated and analysed in < 3 s;
MaxDiff on 50,000 respondents by counts in < 5 s and aggregate logit in < 15 s. The files are
simulated once (``wtp.simulate``) and written as CSV; the timed steps are those a user waits
for: ``read_table`` → ``validate_*`` → ``attach_segments`` → the analysis, plus the whole
``python -m wtp vw FILE --out DIR`` command (interpreter start, imports, tables and report).

Run: ``python benchmarks/ingest.py [--vw-rows N] [--maxdiff-respondents N] [--repeat R]``.
Prints a table; the machine's load average is printed with it, because timings on a shared
machine say as much about the neighbours as about wtp.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wtp.io import attach_segments, read_table, validate_maxdiff, validate_vw  # noqa: E402
from wtp.maxdiff import estimate_maxdiff  # noqa: E402
from wtp.simulate import simulate_maxdiff, simulate_vw  # noqa: E402
from wtp.vanwestendorp import van_westendorp  # noqa: E402


def best_of(fn, repeat: int):
    """(wall seconds, CPU seconds, result) of the fastest of ``repeat`` runs.

    CPU seconds (this process and its children, all threads) are printed next to wall time: on
    a machine shared with other work they say what the run would take on an idle one (at most
    that, for the parts Arrow runs on several threads).
    """
    best, out = (np.inf, np.inf), None
    for _ in range(repeat):
        c0 = _cpu()
        t0 = time.perf_counter()
        out = fn()
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        best = min(best, (wall, cpu))
    return best[0], best[1], out


def _cpu() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def row(case: str, step: str, wall: float, cpu: float, target: str = "") -> dict:
    return {"case": case, "step": step, "wall s": wall, "cpu s": cpu, "target s": target}


def vw_rows(path: Path, n: int, repeat: int) -> list[dict]:
    if not path.exists():
        simulate_vw(n, seed=1).answers.to_csv(path, index=False)
    t_read, c_read, raw = best_of(lambda: read_table(path), repeat)
    t_valid, c_valid, answers = best_of(lambda: attach_segments(validate_vw(raw)), repeat)
    core = answers.drop(columns=["buy_cheap", "buy_expensive"])
    t_core, c_core, _ = best_of(lambda: van_westendorp(core), repeat)
    t_nms, c_nms, _ = best_of(lambda: van_westendorp(answers), repeat)
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "wtp", "vw", str(path), "--out", out]
        t_cli, c_cli, proc = best_of(
            lambda: subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True), repeat
        )
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
    case = f"VW {n:,} rows"
    return [
        row(case, "read CSV", t_read, c_read),
        row(case, "validate + segments", t_valid, c_valid),
        row(case, "analyse (4 curves)", t_core, c_core),
        row(
            case,
            "read+validate+analyse",
            t_read + t_valid + t_core,
            c_read + c_valid + c_core,
            "< 3",
        ),
        row(case, "analyse with NMS", t_nms, c_nms),
        row(case, "wtp vw (whole command, NMS)", t_cli, c_cli),
    ]


def maxdiff_rows(path: Path, n: int, repeat: int) -> list[dict]:
    if not path.exists():
        simulate_maxdiff(n, seed=2).answers.drop(columns="segment").to_csv(path, index=False)
    t_read, c_read, raw = best_of(lambda: read_table(path), repeat)
    t_valid, c_valid, answers = best_of(lambda: attach_segments(validate_maxdiff(raw)), repeat)
    rng = np.random.default_rng(0)
    t_counts, c_counts, _ = best_of(
        lambda: estimate_maxdiff(answers, method="counts", rng=rng, progress=False), repeat
    )
    t_logit, c_logit, _ = best_of(
        lambda: estimate_maxdiff(answers, method="logit", rng=rng, progress=False), 1
    )
    case = f"MaxDiff {n:,} respondents ({len(raw):,} rows)"
    t_in, c_in = t_read + t_valid, c_read + c_valid
    return [
        row(case, "read CSV", t_read, c_read),
        row(case, "validate + segments", t_valid, c_valid),
        row(case, "counts (with 500 bootstrap)", t_counts, c_counts),
        row(case, "read+validate+counts", t_in + t_counts, c_in + c_counts, "< 5"),
        row(case, "logit", t_logit, c_logit),
        row(case, "read+validate+logit", t_in + t_logit, c_in + c_logit, "< 15"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vw-rows", type=int, default=1_000_000)
    parser.add_argument("--maxdiff-respondents", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "wtp-ingest-bench"
    )
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    rows = vw_rows(args.data / f"vw-{args.vw_rows}.csv", args.vw_rows, args.repeat)
    rows += maxdiff_rows(
        args.data / f"maxdiff-{args.maxdiff_respondents}.csv", args.maxdiff_respondents, args.repeat
    )
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 120, "display.float_format", "{:.2f}".format):
        print(table.to_string(index=False))
    load = os.getloadavg()
    print(
        f"\n{os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min); best of {args.repeat}"
    )


if __name__ == "__main__":
    main()
