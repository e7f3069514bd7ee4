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
EPOCH = "1700000000"  # 2023-11-14 22:13 UTC


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
    res = runner.invoke(
        app,
        ["run", str(folder), "--out", str(out), "--fast", "--seed", "3"],
        env={"SOURCE_DATE_EPOCH": EPOCH},
    )
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
    assert [p["href"] for p in segment_pages(["A b", "A-b", "a.b"])] == [
        "segment-a-b.html",
        "segment-a-b-2.html",
        "segment-a-b-3.html",
    ]


def test_contract_tables_exist(report):
    for path in (
        "vw/price_points.csv",
        "vw/curves.csv",
        "segments/segment_scores.csv",
        "conjoint/partworths.csv",
        "conjoint/importances.csv",
        "conjoint/wtp.csv",
        "packages.csv",
        "price_books.csv",
        "scenarios.csv",
    ):
        assert (report / path).exists(), path
    sc = pd.read_csv(report / "scenarios.csv")
    assert set(sc.scenario) == {"single", "multiple"}
    assert list(sc.columns[:6]) == [
        "scenario",
        "segment",
        "price_book",
        "customers",
        "conversion",
        "revenue",
    ]
    assert (sc[sc.scenario == "single"].price_book == "all").all()
    # --fast with Van Westendorp answers: the MNL's noise at each respondent's price level
    noise = pd.read_csv(report / "conjoint" / "level_noise.csv")
    assert list(noise.columns) == ["segment", "mean_level", "noise_scale", "elasticity"]
    assert (noise["noise_scale"] > 0).all()
    # one row per segment pricing values; the pooled fit only in a study without segments
    assert (
        "all" not in set(noise["segment"]) and len(noise) == len(sc[sc.scenario == "multiple"]) - 1
    )


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


def test_same_seed_same_bytes(report, tmp_path):
    """Same data and seed: every table and page byte for byte (SOURCE_DATE_EPOCH fixes the date)."""
    study = Path(re.search(r"^study=(.*)$", (report / "run.txt").read_text(), re.M).group(1))
    again = tmp_path / "again"
    res = runner.invoke(
        app,
        ["run", str(study), "--out", str(again), "--fast", "--seed", "3"],
        env={"SOURCE_DATE_EPOCH": EPOCH},
    )
    assert res.exit_code == 0, res.output
    files = sorted(
        p.relative_to(report) for p in report.rglob("*") if p.suffix in (".csv", ".html")
    )
    assert len(files) > 20 and Path("conjoint/demand.csv") in files
    for rel in files:
        assert (report / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert "2023-11-14 22:13 UTC" in (report / "index.html").read_text()
    other = tmp_path / "other"
    res = runner.invoke(
        app,
        ["run", str(study), "--out", str(other), "--fast", "--seed", "4"],
        env={"SOURCE_DATE_EPOCH": EPOCH},
    )
    assert (report / "vw/price_points.csv").read_bytes() != (
        other / "vw/price_points.csv"
    ).read_bytes()


@pytest.mark.browser
def test_pages_open_in_headless_chromium_without_console_errors(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless Chromium not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2200",
    ):
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
    from openpyxl import load_workbook

    packages = pd.read_csv(report / "packages.csv")
    assert FORMULA_LABEL in set(packages["label"].dropna())
    wb = load_workbook(report / "price_book.xlsx")
    ws = wb["Packages"]
    cells = [c for row in ws.iter_rows(min_row=2) for c in row if c.value == FORMULA_LABEL]
    # the text exactly as the data has it (no apostrophe added), stored as text, never a formula
    assert cells and all(c.data_type == "s" and c.quotePrefix for c in cells)
    assert not any(
        str(c.value).startswith("'") for row in ws.iter_rows() for c in row if c.value is not None
    )
    assert (report / "report.html").read_text() == (report / "index.html").read_text()


def test_excel_price_book_is_formatted_for_people(report):
    from openpyxl import load_workbook

    wb = load_workbook(report / "price_book.xlsx")
    books = pd.read_csv(report / "price_books.csv")
    scenarios = list(dict.fromkeys(books["scenario"]))
    assert wb.sheetnames == [
        "Summary",
        "One book for all",
        "One book per segment",
        "Packages",
        "Notes",
    ]
    assert scenarios == ["single", "multiple"]
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        assert all(c.font.b for c in ws[1]), ws.title
        assert all(
            ws.column_dimensions[c.column_letter].width >= len(str(c.value)) for c in ws[1]
        ), ws.title
    ws = wb["One book per segment"]
    header = [c.value for c in ws[1]]
    price = ws.cell(row=2, column=header.index("Price") + 1)
    assert (
        isinstance(price.value, int | float)
        and "USD" in price.number_format
        and "#,##0" in price.number_format
    )
    own = books[books.scenario == "multiple"]
    assert ws.max_row - 1 == len(own)
    assert price.value == pytest.approx(own["price"].iloc[0])
    summary = wb["Summary"]
    header = [c.value for c in summary[1]]
    conv = summary.cell(row=2, column=header.index("Conversion") + 1)
    assert conv.number_format == "0.0%" and 0 <= conv.value <= 1
    cust = summary.cell(row=2, column=header.index("Customers") + 1)
    assert cust.number_format == "#,##0"
    notes = [r[1].value for r in wb["Notes"].iter_rows(min_row=2)]
    assert notes and all(isinstance(n, str) and not n.startswith("'") for n in notes)


def test_every_internal_link_resolves(report):
    for name, html in pages(report).items():
        ids = set(re.findall(r'\sid="([^"]+)"', html))
        for target in re.findall(r'href="([^"]+)"', html):
            path, _, anchor = target.partition("#")
            if path:
                assert (report / path).exists(), (name, target)
            elif anchor:
                assert anchor in ids, (name, target)


# --------------------------------------------------------------------------------------------
# Charts, print layout and the workbook: what a client sees


def _chromium():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("headless Chromium not installed")
    return chromium


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    driver_path = shutil.which("chromedriver")
    if not driver_path:
        pytest.skip("chromedriver not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2200",
    ):
        opts.add_argument(arg)
    opts.binary_location = chromium
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield driver
    driver.quit()


def _overlaps(boxes: list[dict]) -> list[tuple[str, str]]:
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            if (
                a["left"] < b["right"]
                and b["left"] < a["right"]
                and a["top"] < b["bottom"]
                and b["top"] < a["bottom"]
            ):
                out.append((a["text"], b["text"]))
    return out


LABEL_BOXES_JS = """
const out = [];
for (const svg of document.querySelectorAll('svg')) {
  const labels = [...svg.querySelectorAll('g[id*="price-point-"] text')];
  if (!labels.length) continue;
  out.push(labels.map(t => { const r = t.getBoundingClientRect();
    return {text: t.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom}; }));
}
return out;
"""


def test_price_point_labels_never_overlap_even_when_the_points_are_close():
    # matplotlib's own measure of the text boxes, on points closer than a label is wide
    from wtp.report import new_figure
    from wtp.report.vw import place_labels

    fig, ax = new_figure(7.2, 3.6)
    ax.set_xlim(0, 300)
    labels = [
        ax.annotate(
            f"{n} {v:,.2f}",
            (v, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
        for n, v in (("PMC", 20.58), ("OPP", 34.57), ("IPP", 39.02), ("PME", 54.78), ("X", 250.0))
    ]
    before = [a.get_window_extent(fig.canvas.get_renderer()) for a in labels]
    assert any(before[i].overlaps(before[i + 1]) for i in range(3))  # the case the fix is for
    place_labels(fig, ax, labels)
    after = [a.get_window_extent(fig.canvas.get_renderer()) for a in labels]
    assert not any(after[i].overlaps(after[j]) for i in range(5) for j in range(i + 1, 5))
    assert labels[4].xyann == (0, 3)  # a label with room stays on the first line
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.browser
def test_price_point_labels_do_not_overlap_in_the_browser(report, browser):
    """The rendered SVG text boxes (the browser's fonts, not matplotlib's) of every VW chart."""
    checked = 0
    for name in ("index.html", f"segment-{slug('SMB')}.html", "vw/report.html"):
        browser.get((report / name).as_uri())
        for chart in browser.execute_script(LABEL_BOXES_JS):
            assert _overlaps(chart) == [], (name, chart)
            checked += len(chart)
    assert checked >= 8


def test_price_axis_stops_at_the_too_expensive_quantile_not_the_largest_answer():
    from wtp.report.vw import AXIS_PME_MULTIPLE, price_axis
    from wtp.vanwestendorp import van_westendorp

    rng = __import__("numpy").random.default_rng(0)
    n = 400
    base = rng.uniform(20, 30, n)
    answers = pd.DataFrame(
        {
            "respondent_id": range(n),
            "too_cheap": base * 0.6,
            "cheap": base * 0.9,
            "expensive": base * 1.4,
            "too_expensive": base * 1.9,
        }
    )
    answers.loc[:5, "too_expensive"] = 900.0  # a handful of answers far out
    r = van_westendorp(answers)
    pp = r.price_points.iloc[-1]
    low, high, cut_at = price_axis(
        r.curves[r.curves.segment == "all"], [pp.pmc, pp.opp, pp.ipp, pp.pme], pme=pp.pme
    )
    assert low == 0 and cut_at == 900
    # the 95% too-expensive price is inside the honest answers (6 of 400 said 900)
    assert (
        pp.pme * 1.1
        < high
        <= min(AXIS_PME_MULTIPLE * pp.pme, float((base * 1.9).max())) * 1.05
        < 100
    )


def test_price_axis_on_real_answers():
    """On real answers with a long tail (up to 1,000 for a product whose range is ~20–55)."""
    folder = (
        Path(__file__).resolve().parents[2] / "shared" / "datasets" / "vw_hoekstra_pricesensitivity"
    )
    if not folder.exists():
        pytest.skip("shared datasets not present")
    from wtp.report.vw import price_axis
    from wtp.vanwestendorp import van_westendorp

    # the two middle columns are swapped against their names (datasets README)
    raw = pd.read_csv(folder / "example_data.csv").rename(
        columns={"resp_id": "respondent_id", "getting_expensive": "cheap", "bargain": "expensive"}
    )
    r = van_westendorp(raw[["respondent_id", "too_cheap", "cheap", "expensive", "too_expensive"]])
    pp = r.price_points.iloc[-1]
    low, high, cut_at = price_axis(r.curves, [pp.pmc, pp.opp, pp.ipp, pp.pme], pme=pp.pme)
    assert 20 < pp.pmc < pp.pme < 60
    assert cut_at == 1000 and pp.pme < high < 150


PRINT_OVERFLOW_JS = """
const bad = [];
const width = document.documentElement.clientWidth;
for (const el of document.querySelectorAll('body *')) {
  const s = getComputedStyle(el);
  if (s.display === 'none') continue;
  const scrolls = ['auto', 'scroll'].includes(s.overflowX) && el.scrollWidth > el.clientWidth + 1;
  const r = el.getBoundingClientRect();
  if (scrolls || (el.tagName === 'TABLE' && r.right > width + 1)) bad.push(el.tagName + '.' + el.className + ' ' + (el.textContent || '').slice(0, 40));
}
return bad;
"""


@pytest.mark.browser
def test_no_scrollbars_or_cut_tables_in_print(report, browser):
    """Print media at the width of an A4 page: nothing scrolls and no table runs off the page."""
    browser.set_window_size(720, 1200)  # ≈ A4 at 96 dpi less 12 mm margins
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        for name in ("index.html", f"segment-{slug('SMB')}.html", "segments/report.html"):
            browser.get((report / name).as_uri())
            assert browser.execute_script(PRINT_OVERFLOW_JS) == [], name
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
        browser.set_window_size(1280, 2200)


def _print_pdf(html: Path, pdf: Path) -> None:
    import subprocess

    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            html.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.browser
def test_printed_pdf_keeps_every_word_on_the_page_and_no_heading_ends_a_page(report, tmp_path):
    """Chromium's print to PDF, read back with poppler: every word inside the page (the MAP
    table's LTV/CAC and payback are not cut off) and no page ends with a heading."""
    import html as html_lib
    import subprocess

    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) not installed")
    for name in ("index.html", f"segment-{slug('SMB')}.html"):
        pdf = tmp_path / (name + ".pdf")
        _print_pdf(report / name, pdf)
        box = subprocess.run(
            ["pdftotext", "-bbox", str(pdf), "-"], check=True, capture_output=True, text=True
        ).stdout
        for page in re.findall(r'<page width="([\d.]+)" height="[\d.]+">(.*?)</page>', box, re.S):
            width = float(page[0])
            words = re.findall(r'<word xMin="([\d.]+)" yMin="[\d.]+" xMax="([\d.]+)"', page[1])
            assert all(float(x1) <= width + 0.5 for _, x1 in words), name
        text = subprocess.run(
            ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
        ).stdout
        if name == "index.html":
            assert "LTV/CAC" in text and "Payback" in text
        page_html = (report / name).read_text(encoding="utf-8")
        headings = {
            html_lib.unescape(re.sub(r"<[^>]+>", "", h)).strip()
            for h in re.findall(r"<h[1-4][^>]*>(.*?)</h[1-4]>", page_html, re.S)
        }
        pages_text = text.split("\f")
        for k, page_text in enumerate(pages_text[:-1], start=1):
            lines = [ln.strip() for ln in page_text.splitlines() if ln.strip()]
            assert lines and lines[-1] not in headings, (name, k, lines[-1:])


def test_counts_agree_with_their_noun():
    from wtp.report import environment, plural

    assert [plural(x, "customer") for x in (0, 1, 0.6, 2, 1500)] == [
        "0 customers",
        "1 customer",
        "1 customer",
        "2 customers",
        "1,500 customers",
    ]
    assert plural(float("nan"), "customer") == "– customers"
    assert (
        environment().from_string('{{ n | plural("respondent") }} left out').render(n=1)
        == "1 respondent left out"
    )


def test_money_has_one_number_of_decimals_per_report_fitted_to_the_price_level():
    from wtp.report import environment, fmt_money, money_digits

    assert money_digits([20.58, 34.57, 39.02, 54.78]) == 2  # a 20–55 product: cents matter
    assert money_digits([83, 280, 135, 69]) == 0  # a SaaS price book: whole units
    assert money_digits([]) == 2 and money_digits([float("nan")]) == 2
    # the same report shows LTV 639.60 and 1,896 with the same decimals
    assert [fmt_money(x, "USD", 0) for x in (639.6, 1896.0)] == ["USD 640", "USD 1,896"]
    assert [fmt_money(x, "", 2) for x in (639.6, 1896.0)] == ["639.60", "1,896.00"]
    tpl = environment().from_string(
        "{{ a | money(meta.currency) }} / {{ b | money(meta.currency) }} / {{ b | money('', 1) }}"
    )
    assert (
        tpl.render(meta={"currency": "EUR", "money_digits": 0}, a=639.6, b=1896.0)
        == "EUR 640 / EUR 1,896 / 1,896.0"
    )


def test_study_price_unit_and_labelled_conversion_reach_the_pages(report):
    html = pages(report)
    study = Path(re.search(r"^study=(.*)$", (report / "run.txt").read_text(), re.M).group(1))
    import tomllib

    unit = tomllib.loads((study / "study.toml").read_text())["study"]["price_unit"]
    assert f"Prices {unit}" in html["index.html"]
    assert "Trial → paid" in html["index.html"]
    assert ">Conversion<" not in (report / "segments" / "report.html").read_text()


def test_run_defaults_to_a_folder_named_after_the_study(tmp_path, monkeypatch):
    from wtp.cli import default_run_out

    assert default_run_out(tmp_path / "acme-2026") == Path("reports") / "acme-2026"
    assert default_run_out(tmp_path / "acme-2026" / "study.toml") == Path("reports") / "acme-2026"
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"wtp {__import__('wtp').__version__}"
