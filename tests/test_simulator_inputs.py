"""The price-book simulator: its inputs record, `wtp simulate`, and simulator.html in a browser.

The page and the CLI must give the same numbers: the proposal's books reproduce the pricing
stage's scenarios.csv, an edited book exported from the page gives the page's revenue back
through `wtp simulate`, and prices beyond what was tested are marked in both.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.errors import InputError
from wtp.pricing.simulator_inputs import (
    BookSpec,
    SimulatorInputs,
    SimulatorSegment,
    book_rows,
    evaluate_book,
    guardrails,
    proposal_books,
    read_book_file,
    read_inputs,
    rfc_gumbel,
    simulate_books,
)

runner = CliRunner()


def _simulate(source, book, out):
    """``wtp simulate SOURCE --book BOOK --out OUT``."""
    return runner.invoke(app, ["simulate", str(source), "--book", str(book), "--out", str(out)])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from wtp.simulate import simulate_study

    root = tmp_path_factory.mktemp("sim")
    simulate_study(root / "study", n_respondents=240, seed=7, customers_per_segment=60)
    res = runner.invoke(
        app, ["run", str(root / "study"), "--out", str(root / "run"), "--fast", "--seed", "4"]
    )
    assert res.exit_code == 0, res.output
    return root / "run"


# --------------------------------------------------------------------------------------------
# by hand


def _one_segment(
    base, fv, boot, *, described=None, factor=None, scale=None, shock=None, too_cheap=None
):
    base = np.asarray(base, dtype=float)
    n, d = base.shape
    fv = np.asarray(fv, dtype=float)
    return SimulatorSegment(
        name="S", base=base, boot=np.asarray(boot, dtype=float), feature_values=fv, valued=np.ones(fv.shape[1], bool),
        described=np.zeros(fv.shape[1], bool) if described is None else np.asarray(described), reference=np.full(n, 10.0),
        factor=np.ones(d) if factor is None else np.asarray(factor, float), prospects=100.0, seats=1.0, own_book=True,
        too_cheap=too_cheap, shock=shock, scale=scale, tested=(5.0, 20.0, "conjoint price levels"),
    )  # fmt: skip


def test_first_choice_by_hand():
    # respondent 1 values the product at 10 and feature A at 6; respondent 2 at 12 and 1
    seg = _one_segment([[10.0], [12.0]], [[6.0], [1.0]], [[1.0, 3.0]])
    book = BookSpec(
        "single", "all", ("Basic", "Plus"), np.array([[False], [True]]), np.array([9.0, 14.0])
    )
    out = evaluate_book(seg, book, "ignore")
    # 1: surplus 1 vs 2 → Plus; 2: 3 vs −1 → Basic. Weights 1:3
    assert out.shares[0].tolist() == pytest.approx([0.75, 0.25])
    assert out.revenue[0] == pytest.approx(100 * (0.75 * 9 + 0.25 * 14))
    # a calibration factor of 2 would sell to more than everyone: capped at everyone
    capped = evaluate_book(
        _one_segment([[10.0], [12.0]], [[6.0], [1.0]], [[1.0, 3.0]], factor=[2.0]), book, "ignore"
    )
    assert capped.shares[0].sum() == pytest.approx(1.0)


def test_share_of_preference_by_hand():
    seg = _one_segment([[10.0]], [[6.0]], [[1.0]], scale=np.array([2.0]))
    book = BookSpec(
        "single", "all", ("Basic", "Plus"), np.array([[False], [True]]), np.array([9.0, 14.0])
    )
    out = evaluate_book(seg, book, "ignore", "share-of-preference")
    e = np.exp(np.array([1.0, 2.0]) / 2.0)
    assert out.shares[0] == pytest.approx(e / (1 + e.sum()))


def test_rfc_errors_are_gumbel_and_reproducible():
    g = rfc_gumbel(3, 1, 200, 50, 4)
    assert g.shape == (200, 50, 4)
    assert np.array_equal(g, rfc_gumbel(3, 1, 200, 50, 4))
    assert not np.array_equal(g, rfc_gumbel(4, 1, 200, 50, 4))
    assert g.mean() == pytest.approx(np.euler_gamma, abs=0.02)
    assert g.std() == pytest.approx(np.pi / np.sqrt(6), abs=0.03)


def test_scenario_file_round_trip_and_errors(tmp_path, run_dir):
    inputs = read_inputs(run_dir / "pricing" / "simulator_inputs.json")
    books = proposal_books(inputs)
    rows = book_rows(books, inputs.features)
    rows.to_csv(tmp_path / "book.csv", index=False)
    again = read_book_file(tmp_path / "book.csv", inputs)
    for k, b in books.items():
        assert again[k].tiers == b.tiers and np.array_equal(again[k].membership, b.membership)
        assert np.array_equal(again[k].prices, b.prices, equal_nan=True)
    bad = rows.astype(object)
    bad.loc[0, "scenario"] = "singel"
    bad.loc[1, "feature"] = "ssoo"
    bad.loc[2, "price"] = "cheap"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError) as e:
        read_book_file(tmp_path / "bad.csv", inputs)
    msg = e.value.message()
    assert "row 2" in msg and "did you mean 'single'" in msg
    assert "row 3" in msg and "row 4" in msg and "'cheap'" in msg
    res = _simulate(run_dir, tmp_path / "bad.csv", tmp_path / "o")
    assert res.exit_code == 2 and not (tmp_path / "o").exists()


def test_add_on_rows_round_trip_and_an_empty_price_is_not_offered(tmp_path, run_dir):
    inputs = read_inputs(run_dir / "pricing" / "simulator_inputs.json")
    books = proposal_books(inputs)
    single = books[("single", "all")]
    assert single.add_ons  # the proposal's add-ons travel in the record and the scenario file
    rows = book_rows(books, inputs.features)
    rows.to_csv(tmp_path / "book.csv", index=False)
    again = read_book_file(tmp_path / "book.csv", inputs)
    for k, b in books.items():
        assert [f for f, _ in again[k].add_ons] == [f for f, _ in b.add_ons]
        assert np.allclose(
            [p for _, p in again[k].add_ons], [p for _, p in b.add_ons], equal_nan=True
        )
    # an add-on row without a price: not offered (as a tier's empty price), said in the note
    f0 = single.add_ons[0][0]
    blank = rows.astype(object)
    blank.loc[(blank["package"] == "add-on") & (blank["feature"] == f0), "price"] = ""
    blank.to_csv(tmp_path / "blank.csv", index=False)
    res = _simulate(run_dir, tmp_path / "blank.csv", tmp_path / "o")
    assert res.exit_code == 0, res.output
    ao = pd.read_csv(tmp_path / "o" / "add_ons.csv")
    off = ao[(ao["feature"] == f0) & (ao["price_book"] == "all")]
    assert len(off) and off["price"].isna().all() and (off["revenue"] == 0).all()
    sc = pd.read_csv(tmp_path / "o" / "scenarios.csv", keep_default_na=False)
    assert sc["note"].str.contains(f"add-ons without a price, not offered: {f0}").any()
    # a feature both in a tier and sold as an add-on: exit 2 naming the file, row and column
    twice = pd.concat(
        [rows, rows[rows["feature"] != ""].head(1).assign(package="add-on", price=5.0)]
    )
    twice.to_csv(tmp_path / "twice.csv", index=False)
    res = _simulate(run_dir, tmp_path / "twice.csv", tmp_path / "t")
    assert (
        res.exit_code == 2 and "twice.csv" in res.output and f"row {len(twice) + 1}" in res.output
    )
    assert "feature" in res.output


def test_simulate_gives_the_books_in_the_file(tmp_path, run_dir):
    import dataclasses

    inputs = read_inputs(run_dir / "pricing" / "simulator_inputs.json")
    books = proposal_books(inputs)
    rows = book_rows(books, inputs.features)
    # only the single book, names typed loosely, its prices raised, and an add-on listed
    single = rows[rows["scenario"] == "single"].copy()
    single["scenario"] = "Single"
    single["segment"] = " ALL "
    single["package"] = single["package"].str.lower()
    single["price"] = single["price"] * 1.5
    addon = pd.DataFrame(
        [
            {
                "scenario": "single",
                "segment": "all",
                "package": "Add-on",
                "feature": inputs.features[-1],
                "price": 9.0,
            }
        ]
    )
    lowest = single[single["feature"] != inputs.features[-1]]
    pd.concat([lowest, addon]).to_csv(tmp_path / "single.csv", index=False)
    res = _simulate(run_dir, tmp_path / "single.csv", tmp_path / "o")
    assert res.exit_code == 0, res.output
    sc = pd.read_csv(tmp_path / "o" / "scenarios.csv")
    tu = pd.read_csv(tmp_path / "o" / "take_up.csv")
    assert set(sc["scenario"]) == {"single"} and set(tu["scenario"]) == {"single"}
    want = books[("single", "all")].prices * 1.5
    got = tu[tu["segment"] == inputs.segments[0].name]["price"].to_numpy(float)
    np.testing.assert_allclose(got, want[np.isfinite(want)])
    # the add-on is simulated on top of the file's tiers (pricing/add_ons.csv's layout)
    assert sc["add_on_revenue"].notna().all()
    ao = pd.read_csv(tmp_path / "o" / "add_ons.csv")
    listed = dict(books[("single", "all")].add_ons) | {inputs.features[-1]: 9.0 / 1.5}
    assert set(ao["feature"]) == set(listed)
    assert len(ao) == len(inputs.segments) * len(listed)
    for r in ao.itertuples():
        assert r.price == pytest.approx(listed[r.feature] * 1.5)
    per_segment = sc[sc["segment"] != "total"].set_index("segment")
    np.testing.assert_allclose(
        per_segment["add_on_revenue"],
        ao.groupby("segment")["revenue"].sum().loc[per_segment.index],
    )
    assert sc.loc[sc["segment"] == "total", "add_on_revenue"].iloc[0] == pytest.approx(
        ao["revenue"].sum()
    )
    assert not per_segment["note"].astype(str).str.contains("not simulated").any()
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "Books from single.csv" in html and "Balance report" not in html
    assert f"seed {inputs.seed}" in html and "Take-up per package" in html
    assert '<h2 id="add-ons">Add-ons</h2>' in html and inputs.features[-1] in html

    # a segment the run offered the single book (under min_n) is simulated on the file's own book
    small = inputs.segments[0]
    narrowed = dataclasses.replace(
        inputs,
        segments=(dataclasses.replace(small, own_book=False), *inputs.segments[1:]),
        books=tuple(b for b in inputs.books if (b.scenario, b.name) != ("multiple", small.name)),
    )
    own = rows[(rows["scenario"] == "multiple") & (rows["segment"] == small.name)].copy()
    own["price"] = own["price"] * 2
    own.to_csv(tmp_path / "own.csv", index=False)
    sim = simulate_books(narrowed, read_book_file(tmp_path / "own.csv", narrowed))
    assert set(sim.scenarios["scenario"]) == {"multiple"}
    mine = sim.take_up[sim.take_up["segment"] == small.name]
    np.testing.assert_allclose(
        mine["price"].to_numpy(float),
        own[own["package"] != "add-on"].drop_duplicates("package")["price"],
    )
    note = sim.scenarios.set_index("segment").loc[small.name, "note"]
    assert "single book ([sample] min_n)" in note
    others = sim.scenarios[~sim.scenarios["segment"].isin([small.name, "total"])]
    assert others["note"].str.contains("the proposed book").all()


# --------------------------------------------------------------------------------------------
# the run's record


def test_proposal_reproduces_the_pricing_stage(run_dir):
    inputs = read_inputs(run_dir / "pricing" / "simulator_inputs.json")
    assert (
        inputs.draws == inputs.draws_total and inputs.dtype == "f8"
    )  # a small study keeps every draw
    sim = simulate_books(inputs)
    for table, keys in (
        ("scenarios", ["scenario", "segment"]),
        ("take_up", ["scenario", "segment", "package"]),
    ):
        want = pd.read_csv(run_dir / f"{table}.csv").set_index(keys)
        got = getattr(sim, table).set_index(keys).reindex(want.index)
        for col in ("revenue", "revenue_lower", "revenue_upper", "customers"):
            np.testing.assert_allclose(
                got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9
            )
    # add-ons too: the same respondents, draws, calibration and buying noise
    want = pd.read_csv(run_dir / "pricing" / "add_ons.csv").set_index(
        ["scenario", "segment", "feature"]
    )
    assert len(want) and want["revenue"].gt(0).any()
    got = sim.add_ons.set_index(["scenario", "segment", "feature"]).reindex(want.index)
    for col in ("price", "share", "customers", "revenue", "revenue_lower", "revenue_upper"):
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9)
    sc = pd.read_csv(run_dir / "scenarios.csv").set_index(["scenario", "segment"])
    np.testing.assert_allclose(
        sim.scenarios.set_index(["scenario", "segment"]).loc[sc.index, "add_on_revenue"],
        sc["add_on_revenue"],
        rtol=1e-9,
    )
    assert sim.guardrails.empty or "above" not in " ".join(sim.guardrails["note"])


def test_cli_on_a_run_and_on_a_study_agree(run_dir, tmp_path):
    inputs = read_inputs(run_dir / "pricing" / "simulator_inputs.json")
    book_rows(proposal_books(inputs), inputs.features).to_csv(tmp_path / "book.csv", index=False)
    res = _simulate(run_dir, tmp_path / "book.csv", tmp_path / "a")
    assert res.exit_code == 0, res.output
    a = pd.read_csv(tmp_path / "a" / "scenarios.csv")
    assert (tmp_path / "a" / "take_up.csv").exists() and (tmp_path / "a" / "report.html").exists()
    pd.testing.assert_series_equal(
        a["revenue"], pd.read_csv(run_dir / "scenarios.csv")["revenue"], rtol=1e-9
    )
    res = runner.invoke(
        app,
        [
            "simulate",
            str(run_dir.parent / "study"),
            "--book",
            str(tmp_path / "book.csv"),
            "--out",
            str(tmp_path / "b"),
            "--fast",
            "--seed",
            "4",
        ],
    )
    assert res.exit_code == 0, res.output
    pd.testing.assert_series_equal(
        pd.read_csv(tmp_path / "b" / "scenarios.csv")["revenue"], a["revenue"], rtol=1e-9
    )


def test_price_beyond_the_tested_range_is_marked_with_how_far(run_dir, tmp_path):
    inputs = read_inputs(run_dir / "pricing" / "simulator_inputs.json")
    books = proposal_books(inputs)
    single = books[("single", "all")]
    hi = max(s.tested[1] for s in inputs.segments)
    prices = single.prices.copy()
    prices[0] = 3 * hi
    books[("single", "all")] = BookSpec("single", "all", single.tiers, single.membership, prices)
    marks = guardrails(inputs, books)
    row = marks[(marks["book"] == "all") & (marks["package"] == single.tiers[0])].iloc[0]
    assert row["outside"] == pytest.approx(3 * hi / row["tested_high"] - 1)
    assert "above the highest price tested" in row["note"]
    book_rows(books, inputs.features).to_csv(tmp_path / "book.csv", index=False)
    res = _simulate(run_dir, tmp_path / "book.csv", tmp_path / "o")
    assert res.exit_code == 0 and "above the highest price tested" in res.output
    s = pd.read_csv(tmp_path / "o" / "scenarios.csv")
    assert (
        s.loc[s["scenario"] == "single", "note"].fillna("").str.contains("above the highest").any()
    )


def test_file_stays_small_for_2000_respondents():
    # 2,000 respondents, 200 draws, 12 features, conjoint shocks: thinned to fit
    from wtp.pricing import simulator_inputs as si

    rng = np.random.default_rng(0)
    segs, n = [], 500
    for j in range(4):
        segs.append(
            _one_segment(
                rng.normal(50, 10, (n, 200)),
                rng.random((n, 12)),
                rng.random((200, n)),
                shock=rng.gumbel(size=(n, 200, 4)),
                scale=np.ones(n),
            )
        )
        segs[-1] = SimulatorSegment(**{**segs[-1].__dict__, "name": f"S{j}"})
    dtype, d = si._thin(sum(s.n * 6 for s in segs), sum(s.n * 15 for s in segs), 200)
    assert dtype == "f4" and 20 <= d < 200
    thinned = tuple(
        SimulatorSegment(
            **{
                **s.__dict__,
                "base": s.base[:, :d],
                "boot": s.boot[:d],
                "shock": s.shock[:, :d],
                "factor": s.factor[:d],
            }
        )
        for s in segs
    )
    book = BookSpec(
        "single", "all", ("A", "B", "C"), np.tri(3, 12, 4, dtype=bool), np.array([10.0, 20.0, 30.0])
    )
    rec = SimulatorInputs(
        tuple(f"f{i}" for i in range(12)),
        {},
        ("A", "B", "C"),
        thinned,
        (book,),
        "ignore",
        0.9,
        d,
        200,
        dtype,
    )
    text = json.dumps(rec.to_json())
    assert len(text) < 4.6e6
    back = SimulatorInputs.from_json(json.loads(text))
    assert np.allclose(back.segments[0].base, thinned[0].base.astype(np.float32))


# --------------------------------------------------------------------------------------------
# the page in a browser


@pytest.mark.browser
def test_page_matches_the_cli_after_edits_offline(run_dir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("headless Chromium not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import Select

    for page in ("index.html", "segment-smb.html"):
        assert 'href="simulator.html"' in (run_dir / page).read_text(encoding="utf-8")
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
    ):
        opts.add_argument(arg)
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    want = pd.read_csv(run_dir / "scenarios.csv").set_index(["scenario", "segment"])["revenue"]

    def shown(id_):
        return float(driver.find_element("id", id_).text.replace(",", ""))

    try:
        driver.get((run_dir / "simulator.html").as_uri())
        assert driver.execute_script("return document.body.getAttribute('data-ready')") == "1"
        # the proposal's own books reproduce scenarios.csv to the displayed precision (whole units)
        for sc in ("single", "multiple"):
            assert shown(f"total-{sc}") == round(want[(sc, "total")])
            assert shown(f"proposal-total-{sc}") == round(want[(sc, "total")])
        # edit the single book: the price of its most-taken tier far beyond what was tested (a
        # tier nobody takes would change nothing), and a feature moved down to the first tier
        tiers = pd.read_csv(run_dir / "price_books.csv").query(
            "scenario == 'single' and segment == 'all' and package != 'add-on'"
        )["package"]
        taken = (
            pd.read_csv(run_dir / "take_up.csv")
            .query("scenario == 'single'")
            .groupby("package")["customers"]
            .sum()
        )
        top = int(np.argmax(taken.reindex(tiers).fillna(0).to_numpy()))
        Select(driver.find_element("id", "book")).select_by_value("single:all")
        price = driver.find_element("id", f"price-{top}")
        old = float(price.get_attribute("value"))
        price.clear()
        price.send_keys(str(round(old * 12 + 0.5, 2)))
        price.send_keys("\t")
        sel = driver.find_elements("css selector", "select[data-feature]")
        moved = next(
            s
            for s in sel
            if Select(s).first_selected_option.get_attribute("value") not in ("0", "-1")
        )
        Select(moved).select_by_value("0")
        marks = [e.text for e in driver.find_elements("css selector", ".extrapolated")]
        assert any("above the highest price tested" in m for m in marks), marks
        assert "outside" in driver.find_element("id", f"mark-{top}").text
        page = {sc: shown(f"total-{sc}") for sc in ("single", "multiple")}
        assert page["single"] != round(want[("single", "total")])
        segs = {
            e.get_attribute("data-revenue"): float(e.text.replace(",", ""))
            for e in driver.find_elements("css selector", "[data-revenue]")
        }
        driver.find_element("id", "export").click()
        text = driver.find_element("id", "export-text").get_attribute("value")
        (tmp_path / "scenario.csv").write_text(text, encoding="utf-8")
        # the share-of-preference rule in the page, for the CLI to check too
        Select(driver.find_element("id", "rule")).select_by_value("share-of-preference")
        logit = shown("total-single")
        Select(driver.find_element("id", "rule")).select_by_value("rfc")
        rfc = shown("total-single")
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == [], errors
        requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        urls = [
            m["params"]["request"]["url"]
            for m in requests
            if m["method"] == "Network.requestWillBeSent"
        ]
        assert urls and all(u.startswith(("file:", "data:", "blob:")) for u in urls), urls
    finally:
        driver.quit()

    res = _simulate(run_dir, tmp_path / "scenario.csv", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "above the highest price tested" in res.output
    cli = pd.read_csv(tmp_path / "o" / "scenarios.csv").set_index(["scenario", "segment"])[
        "revenue"
    ]
    for sc in ("single", "multiple"):
        assert abs(cli[(sc, "total")] - page[sc]) <= 0.5 + 1e-9 * page[sc]
    for k, v in segs.items():
        sc, seg = k.split(":", 1)
        assert abs(cli[(sc, seg)] - v) <= 0.5 + 1e-9 * v, k
    res = runner.invoke(
        app,
        [
            "simulate",
            str(run_dir),
            "--book",
            str(tmp_path / "scenario.csv"),
            "--rule",
            "share-of-preference",
            "--out",
            str(tmp_path / "l"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        abs(
            pd.read_csv(tmp_path / "l" / "scenarios.csv").set_index(["scenario", "segment"])[
                "revenue"
            ][("single", "total")]
            - logit
        )
        <= 0.5 + 1e-9 * logit
    )
    res = runner.invoke(
        app,
        [
            "simulate",
            str(run_dir),
            "--book",
            str(tmp_path / "scenario.csv"),
            "--rule",
            "rfc",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        abs(
            pd.read_csv(tmp_path / "r" / "scenarios.csv").set_index(["scenario", "segment"])[
                "revenue"
            ][("single", "total")]
            - rfc
        )
        <= 0.5 + 1e-9 * rfc
    )
    assert Path(tmp_path / "o" / "guardrails.csv").read_text().count("above the highest") >= 1


def _chrome():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium or not shutil.which("chromedriver"):
        pytest.skip("headless Chromium not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"):
        opts.add_argument(arg)
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


@pytest.mark.browser
def test_page_add_ons_match_the_pricing_stage_and_the_cli(run_dir, tmp_path):
    """The page's add-on arithmetic against Python: the proposal's add-on revenue per segment as
    pricing/add_ons.csv has it, and an edited add-on price as `wtp simulate` computes it."""
    from selenium.webdriver.support.ui import Select

    want = pd.read_csv(run_dir / "pricing" / "add_ons.csv")
    sc = pd.read_csv(run_dir / "scenarios.csv").set_index(["scenario", "segment"])
    single = want[want["scenario"] == "single"]
    assert len(single) and single["revenue"].gt(0).any()
    driver = _chrome()

    def number(el):
        return float(el.text.replace(",", "").replace("−", "-"))

    try:
        driver.get((run_dir / "simulator.html").as_uri())
        assert driver.execute_script("return document.body.getAttribute('data-ready')") == "1"
        Select(driver.find_element("id", "book")).select_by_value("single:all")
        for r in single.itertuples():
            shown = driver.find_element(
                "css selector", f'[data-addon="single:{r.segment}:{r.feature}"]'
            )
            assert abs(number(shown) - r.revenue) <= 0.5 + 1e-9 * r.revenue, r
        for s in ("single", "multiple"):
            total = number(driver.find_element("id", f"addon-total-{s}"))
            assert abs(total - sc.loc[(s, "total"), "add_on_revenue"]) <= 0.5 + 1e-9 * total
        # edit the first add-on's price, export the books, and let the CLI simulate them
        f = single["feature"].iloc[0]
        price = driver.find_element("id", f"addon-price-{f}")
        new = round(float(price.get_attribute("value")) * 0.6 + 0.01, 2)
        price.clear()
        price.send_keys(str(new))
        price.send_keys("\t")
        edited = number(driver.find_element("id", "addon-total-single"))
        assert abs(edited - sc.loc[("single", "total"), "add_on_revenue"]) > 0.5
        driver.find_element("id", "export").click()
        text = driver.find_element("id", "export-text").get_attribute("value")
        assert f"single,all,add-on,{f},{new:g}" in text
        (tmp_path / "scenario.csv").write_text(text, encoding="utf-8")
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == [], errors
    finally:
        driver.quit()
    res = _simulate(run_dir, tmp_path / "scenario.csv", tmp_path / "o")
    assert res.exit_code == 0, res.output
    cli = pd.read_csv(tmp_path / "o" / "scenarios.csv").set_index(["scenario", "segment"])
    assert abs(cli.loc[("single", "total"), "add_on_revenue"] - edited) <= 0.5 + 1e-9 * edited
    ao = pd.read_csv(tmp_path / "o" / "add_ons.csv")
    assert (ao.loc[(ao["scenario"] == "single") & (ao["feature"] == f), "price"] == new).all()


# A DOM just big enough for simulator.js, so node can run the page's arithmetic where no browser is
NODE_PAGE = r"""
const fs = require("fs");
const [script, data, book, feature, price] = process.argv.slice(2);
const made = [];
function node(tag) {
  const e = { tag, attrs: {}, children: [], handlers: {}, textContent: "", className: "", style: {},
    setAttribute(k, v) { this.attrs[k] = String(v); if (k === "id") this.id = String(v); },
    getAttribute(k) { return this.attrs[k] === undefined ? null : this.attrs[k]; },
    appendChild(c) { this.children.push(c); c.parent = this; return c; },
    removeChild(c) { this.children = this.children.filter((x) => x !== c); return c; },
    get firstChild() { return this.children[0] || null; },
    addEventListener(t, f) { (this.handlers[t] = this.handlers[t] || []).push(f); },
    fire(t) { (this.handlers[t] || []).forEach((f) => f()); },
    click() {},
    get value() { return this._value !== undefined ? this._value : (this.tag === "select" && this.children.length ? this.children[0].attrs.value : ""); },
    set value(v) { this._value = String(v); } };
  made.push(e);
  return e;
}
const fixed = {};
function byId(id) {
  if (id === "wtp-data") return { textContent: fs.readFileSync(data, "utf8") };
  const live = made.filter((e) => e.id === id);
  if (live.length) return live[live.length - 1];
  return fixed[id] || (fixed[id] = Object.assign(node(id === "book" || id === "rule" ? "select" : "div"), { id }));
}
global.document = { getElementById: byId, createElement: node, createElementNS: (ns, t) => node(t), body: node("body") };
global.URL = { createObjectURL: () => "blob:" };
global.Blob = function () {};
new Function(fs.readFileSync(script, "utf8"))();
const sel = byId("book");
sel.value = book;
sel.fire("change");
function revenue() {
  const out = {};
  made.filter((e) => e.attrs["data-addon"]).forEach((e) => { out[e.attrs["data-addon"]] = e.textContent; });
  return { cells: out, single: byId("addon-total-single").textContent, multiple: byId("addon-total-multiple").textContent,
    totals: { single: byId("total-single").textContent, multiple: byId("total-multiple").textContent } };
}
const before = revenue();
const inp = byId("addon-price-" + feature);
inp.value = price;
inp.fire("change");
console.log(JSON.stringify({ before, after: revenue(), exported: byId("export-text").value }));
process.exit(0);
"""


def _page_for_node(run_dir, tmp_path) -> str:
    """node's path, with the run's page data (data.json) and script (page.js) in tmp_path;
    skips where node is not installed."""
    import re

    node = shutil.which("node")
    if not node:
        pytest.skip("node not installed")
    html = (run_dir / "simulator.html").read_text(encoding="utf-8")
    data = re.search(r'<script type="application/json" id="wtp-data">(.*?)</script>', html, re.S)
    script = re.search(r'<script id="wtp-simulator">(.*?)</script>', html, re.S)
    (tmp_path / "data.json").write_text(data.group(1), encoding="utf-8")
    (tmp_path / "page.js").write_text(script.group(1), encoding="utf-8")
    return node


def test_page_add_ons_in_node_match_python(run_dir, tmp_path):
    """The page's add-on arithmetic run by node (no browser): the proposal's add-on revenue as
    pricing/add_ons.csv has it, and an edited add-on price as `wtp simulate` computes it."""
    import subprocess

    node = _page_for_node(run_dir, tmp_path)
    (tmp_path / "run.js").write_text(NODE_PAGE, encoding="utf-8")
    want = pd.read_csv(run_dir / "pricing" / "add_ons.csv")
    single = want[want["scenario"] == "single"]
    f = single["feature"].iloc[0]
    price = round(float(single["price"].iloc[0]) * 0.6 + 0.01, 2)
    out = subprocess.run(
        [node, str(tmp_path / "run.js"), str(tmp_path / "page.js"), str(tmp_path / "data.json"), "single:all", f, str(price)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    got = json.loads(out.stdout)

    def number(text):
        return float(text.replace(",", "").replace("−", "-"))

    for r in single.itertuples():
        shown = number(got["before"]["cells"][f"single:{r.segment}:{r.feature}"])
        assert abs(shown - r.revenue) <= 0.5 + 1e-9 * r.revenue, r
    sc = pd.read_csv(run_dir / "scenarios.csv").set_index(["scenario", "segment"])
    for s in ("single", "multiple"):
        total = sc.loc[(s, "total"), "add_on_revenue"]
        assert abs(number(got["before"][s]) - total) <= 0.5 + 1e-9 * total
    assert f"single,all,add-on,{f},{price:g}" in got["exported"]
    (tmp_path / "scenario.csv").write_text(got["exported"], encoding="utf-8")
    res = _simulate(run_dir, tmp_path / "scenario.csv", tmp_path / "o")
    assert res.exit_code == 0, res.output
    ao = pd.read_csv(tmp_path / "o" / "add_ons.csv")
    ao = ao[ao["scenario"] == "single"].set_index(["segment", "feature"])
    for key, text in got["after"]["cells"].items():
        scenario, seg, feat = key.split(":")
        if scenario != "single":
            continue  # cells of the book shown first, left over in the DOM stand-in
        assert abs(number(text) - ao.loc[(seg, feat), "revenue"]) <= 0.5 + 1e-9 * number(text)
    edited = number(got["after"]["single"])
    assert abs(edited - number(got["before"]["single"])) > 0.5
    assert abs(edited - ao["revenue"].sum()) <= 0.5 + 1e-9 * edited


def test_page_sweeps_each_add_on_price_in_node(run_dir, tmp_path):
    """The page sweeps each offered add-on's price as it sweeps each tier's; at the proposed
    price the add-on's revenue is pricing/add_ons.csv's (summed over the segments served)."""
    import subprocess

    node = _page_for_node(run_dir, tmp_path)
    wait = NODE_PAGE[: NODE_PAGE.index("function revenue()")] + (
        "const timer = setInterval(() => {\n"
        "  const figs = made.filter((e) => e.attrs['data-addon-sweep']);\n"
        "  const want = Number(process.argv[process.argv.length - 1]);\n"
        "  if (figs.length < want) return;\n"
        "  clearInterval(timer);\n"
        "  console.log(JSON.stringify(figs.map((e) => [e.attrs['data-addon-sweep'], e.attrs['data-at-price']])));\n"
        "  process.exit(0);\n"
        "}, 20);\n"
    )
    (tmp_path / "run.js").write_text(wait, encoding="utf-8")
    want = pd.read_csv(run_dir / "pricing" / "add_ons.csv")
    single = want[want["scenario"] == "single"].groupby("feature")["revenue"].sum()
    assert len(single)
    out = subprocess.run(
        [node, str(tmp_path / "run.js"), str(tmp_path / "page.js"), str(tmp_path / "data.json"), "single:all", "x", "1", str(len(single))],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    got = dict(json.loads(out.stdout))
    assert set(got) == set(single.index)
    for f, revenue in single.items():
        assert abs(float(got[f]) - revenue) <= 1e-6 * max(revenue, 1.0), (f, got[f], revenue)
