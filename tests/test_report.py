"""The study report: every page exists, numbers match the tables, data is escaped, no network."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.report import slug
from wtp.simulate import DEMO_SEGMENTS, simulate_study

runner = CliRunner()
EVIL_SEGMENT = 'Mid <script>alert("seg")</script>'
EVIL_LABEL = '<img src=x onerror=alert("label")>'
FORMULA_LABEL = "=HYPERLINK(1)"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A fast run of a small study whose segment name and an item label carry HTML."""
    from dataclasses import replace

    folder = tmp_path_factory.mktemp("study")
    specs = [replace(s, name=EVIL_SEGMENT) if s.name == "Mid-market" else s for s in DEMO_SEGMENTS]
    simulate_study(folder, n_respondents=240, seed=5, segments=specs, customers_per_segment=60)
    toml = (folder / "study.toml").read_text()
    toml = toml.replace('sso = "Single sign-on (SAML)"', f"sso = '{EVIL_LABEL}'")
    toml = toml.replace('audit_log = "Audit log"', f'audit_log = "{FORMULA_LABEL}"')
    (folder / "study.toml").write_text(toml)
    out = tmp_path_factory.mktemp("out") / "report"
    res = runner.invoke(app, ["run", str(folder), "--out", str(out), "--fast", "--seed", "3"])
    assert res.exit_code == 0, res.output
    (out / "run.txt").write_text(f"study={folder}\n")
    return out


def pages(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.html")}


def test_every_segment_has_a_page_linked_from_the_index(report):
    html = pages(report)
    segs = [s.name for s in DEMO_SEGMENTS if s.name != "Mid-market"] + [EVIL_SEGMENT]
    for s in segs:
        name = f"segment-{slug(s)}.html"
        assert name in html, name
        assert f'href="{name}"' in html["index.html"]
    assert slug(EVIL_SEGMENT) == "mid-script-alert-seg-script-"


def test_slug_follows_the_contract_and_pages_never_collide():
    from wtp.report.study import segment_pages

    assert slug("Start-ups (EU)") == "start-ups-eu-"
    assert slug("Mid-market") == "mid-market"
    assert [p["href"] for p in segment_pages(["A b", "A-b", "a.b"])] == ["segment-a-b.html", "segment-a-b-2.html", "segment-a-b-3.html"]


def test_contract_tables_exist(report):
    for path in ("vw/price_points.csv", "vw/curves.csv", "segments/segment_scores.csv", "conjoint/partworths.csv",
                 "conjoint/importances.csv", "conjoint/wtp.csv", "packages.csv", "price_books.csv", "scenarios.csv"):
        assert (report / path).exists(), path
    sc = pd.read_csv(report / "scenarios.csv")
    assert set(sc.scenario) == {"single", "multiple"}
    assert list(sc.columns[:6]) == ["scenario", "segment", "price_book", "customers", "conversion", "revenue"]
    assert (sc[sc.scenario == "single"].price_book == "all").all()


def test_data_strings_are_escaped(report):
    for name, html in pages(report).items():
        assert "<script>" not in html, name
        assert "<img src=x" not in html, name
    seg_page = pages(report)[f"segment-{slug(EVIL_SEGMENT)}.html"]
    assert "Mid &lt;script&gt;" in seg_page


def test_no_external_resources(report):
    for name, html in pages(report).items():
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", html), name
        assert "@import" not in html and "url(http" not in html, name


def test_numbers_in_pages_match_the_tables(report):
    html = pages(report)
    pp = pd.read_csv(report / "vw" / "price_points.csv").set_index("segment")
    books = pd.read_csv(report / "price_books.csv")
    sc = pd.read_csv(report / "scenarios.csv")
    for s in pp.index.drop("all"):
        page = html[f"segment-{slug(s)}.html"]
        for point in ("pmc", "opp", "ipp", "pme"):
            assert f"{pp.loc[s, point]:,.2f}" in page, (s, point)
        own = books[(books.scenario == "multiple") & (books.segment == s)]
        for price in own.price:
            assert f"{price:,.0f}" in page or f"{price:,.2f}" in page, (s, price)
    total = sc[(sc.scenario == "multiple") & (sc.segment == "total")].revenue.iloc[0]
    assert f"{total:,.0f}" in html["index.html"]


def test_same_seed_same_tables(report, tmp_path):
    study = Path(re.search(r"^study=(.*)$", (report / "run.txt").read_text(), re.M).group(1))
    again = tmp_path / "again"
    res = runner.invoke(app, ["run", str(study), "--out", str(again), "--fast", "--seed", "3"])
    assert res.exit_code == 0, res.output
    for table in ("scenarios.csv", "price_books.csv", "packages.csv", "vw/price_points.csv", "segments/segment_scores.csv"):
        assert (report / table).read_text() == (again / table).read_text(), table


@pytest.mark.browser
def test_pages_open_in_headless_chromium_without_console_errors(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless Chromium not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,2200"):
        opts.add_argument(arg)
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        for name in ("index.html", f"segment-{slug('SMB')}.html"):
            driver.get((report / name).as_uri())
            assert "Price-book proposal" in driver.page_source
            errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
            assert errors == [], errors
            assert driver.execute_script("return document.querySelectorAll('svg').length") > 0
            driver.save_screenshot(str(tmp_path / f"{name}.png"))
            assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    finally:
        driver.quit()


def test_excel_price_book_neutralises_formulas_but_csv_stays_exact(report):
    packages = pd.read_csv(report / "packages.csv")
    assert FORMULA_LABEL in set(packages["label"].dropna())
    xl = pd.read_excel(report / "price_book.xlsx", sheet_name="Packages")
    assert "'" + FORMULA_LABEL in set(xl["label"].dropna())
    assert FORMULA_LABEL not in set(xl["label"].dropna())
    assert (report / "report.html").read_text() == (report / "index.html").read_text()


def test_every_internal_link_resolves(report):
    for name, html in pages(report).items():
        ids = set(re.findall(r'\sid="([^"]+)"', html))
        for target in re.findall(r'href="([^"]+)"', html):
            path, _, anchor = target.partition("#")
            if path:
                assert (report / path).exists(), (name, target)
            elif anchor:
                assert anchor in ids, (name, target)
