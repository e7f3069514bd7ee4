"""simulator.html for 2,000 respondents: file size and how long an edit takes to recompute.

Run: ``python benchmarks/simulator_page.py [N]`` (prints a table; needs /usr/bin/chromium and
chromedriver). Targets: the page under 5 MB; an edit (price or feature move) answered in under
100 ms in the browser (the page measures its own recompute with ``performance.now()``; the
price sweeps draw afterwards, one tier per tick). Timings on a shared machine: read with its load.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def main(n: int = 2000) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import Select

    from wtp.io import atomic_output_dir
    from wtp.pipeline import run_study, write_study
    from wtp.simulate import simulate_study

    tmp = Path(tempfile.mkdtemp())
    simulate_study(tmp / "study", n_respondents=n, seed=11)
    t0 = time.perf_counter()
    run = run_study(tmp / "study", seed=0, fast=True)
    with atomic_output_dir(tmp / "run") as out:
        write_study(run, out)
    t_run = time.perf_counter() - t0
    page = tmp / "run" / "simulator.html"
    inputs = run.price_books.simulator
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        t0 = time.perf_counter()
        driver.get(page.as_uri())
        t_load = time.perf_counter() - t0
        first = float(driver.find_element("id", "timing").get_attribute("data-ms"))
        times = {"price edit": [], "feature move": [], "book switch": []}
        Select(driver.find_element("id", "book")).select_by_value("single:all")
        for i in range(8):
            price = driver.find_element("id", "price-1")
            v = float(price.get_attribute("value"))
            driver.execute_script(
                "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('change'));",
                price,
                str(v * (1.05 if i % 2 == 0 else 1 / 1.05)),
            )
            times["price edit"].append(
                float(driver.find_element("id", "timing").get_attribute("data-ms"))
            )
            sel = driver.find_elements("css selector", "select[data-feature]")[i % 5]
            driver.execute_script(
                "arguments[0].value = '0'; arguments[0].dispatchEvent(new Event('change'));", sel
            )
            times["feature move"].append(
                float(driver.find_element("id", "timing").get_attribute("data-ms"))
            )
        for value in [
            o.get_attribute("value") for o in Select(driver.find_element("id", "book")).options
        ] * 2:
            Select(driver.find_element("id", "book")).select_by_value(value)
            times["book switch"].append(
                float(driver.find_element("id", "timing").get_attribute("data-ms"))
            )
    finally:
        driver.quit()
    rows = [
        {"measure": "respondents", "value": sum(s.n for s in inputs.segments), "target": ""},
        {
            "measure": "draws in the page / of the stage",
            "value": f"{inputs.draws} / {inputs.draws_total} ({inputs.dtype})",
            "target": "",
        },
        {
            "measure": "simulator.html MB",
            "value": round(page.stat().st_size / 1e6, 2),
            "target": "< 5",
        },
        {"measure": "wtp run --fast s", "value": round(t_run, 1), "target": ""},
        {"measure": "page load s (incl. first compute)", "value": round(t_load, 2), "target": ""},
        {"measure": "first compute ms (proposal + edited)", "value": round(first, 1), "target": ""},
    ]
    for k, v in times.items():
        rows.append(
            {
                "measure": f"{k} ms (median / max of {len(v)})",
                "value": f"{statistics.median(v):.1f} / {max(v):.1f}",
                "target": "< 100",
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
