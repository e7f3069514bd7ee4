"""The command line as an analyst meets it: outputs, exit codes, messages, nothing half-written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.simulate import simulate_study, simulate_vw

runner = CliRunner()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    simulate_study(folder, n_respondents=240, seed=3, customers_per_segment=80)
    return folder


def test_help_is_fast_and_lists_every_contract_command():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "wtp", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for cmd in ("vw", "maxdiff", "conjoint", "segments", "run", "demo", "design"):
        assert cmd in out.stdout
    heavy = [
        m
        for m in ("pymc", "matplotlib", "pandas", "pytensor")
        if re.search(rf"\|\s+{m}$", out.stderr, re.M)
    ]
    assert heavy == [], f"--help imported {heavy}"


def test_single_instrument_commands_meet_segments_in_the_study_order(tmp_path):
    """With --study, a single-instrument command lists segments in segments.csv's order, as
    `wtp run` does, not in the order respondents.csv happens to start with."""
    from wtp.pipeline import demo_study_path

    demo = demo_study_path()
    assert pd.read_csv(demo / "respondents.csv")["segment"].iloc[0] == "Mid-market"
    res = runner.invoke(
        app, ["vw", str(demo / "vw.csv"), "--study", str(demo), "--out", str(tmp_path / "vw")]
    )
    assert res.exit_code == 0, res.output
    order = list(pd.read_csv(demo / "segments.csv")["segment"])
    assert list(pd.read_csv(tmp_path / "vw" / "price_points.csv")["segment"]) == [*order, "all"]


def test_vw_writes_the_contract_tables(tmp_path, study):
    out = tmp_path / "vw"
    res = runner.invoke(
        app,
        [
            "vw",
            str(study / "vw.csv"),
            "--study",
            str(study),
            "--out",
            str(out),
            "--seed",
            "1",
            "--bootstrap",
            "50",
        ],
    )
    assert res.exit_code == 0, res.output
    pp = pd.read_csv(out / "price_points.csv")
    assert list(pp.columns[:7]) == ["segment", "n", "n_excluded", "pmc", "opp", "ipp", "pme"]
    assert list(pp.segment) == ["Startups", "SMB", "Mid-market", "Enterprise", "all"]
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns) == [
        "segment",
        "price",
        "too_cheap",
        "cheap",
        "not_cheap",
        "expensive",
        "not_expensive",
        "too_expensive",
        "small_sample",
    ]
    nms = pd.read_csv(out / "nms.csv")
    assert list(nms.columns[:4]) == ["segment", "price", "trial", "revenue_index"]
    html = (out / "report.html").read_text()
    assert "<svg" in html and not re.search(r"(src|href)=\"https?:|url\(https?:|@import", html)
    assert "<metadata>" not in html
    again = tmp_path / "vw2"
    runner.invoke(
        app,
        [
            "vw",
            str(study / "vw.csv"),
            "--study",
            str(study),
            "--out",
            str(again),
            "--seed",
            "1",
            "--bootstrap",
            "50",
        ],
    )
    assert (out / "price_points.csv").read_text() == (again / "price_points.csv").read_text()


def test_vw_without_segments_has_one_all_row(tmp_path):
    sim = simulate_vw(100, seed=2)
    path = tmp_path / "vw.csv"
    sim.answers.drop(columns="segment").to_csv(path, index=False)
    res = runner.invoke(app, ["vw", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "o" / "price_points.csv").segment.tolist() == ["all"]


def test_single_commands_take_the_study_settings_and_an_option_wins(tmp_path):
    # one owner of each default: [van_westendorp] in study.toml, else the schema; a flag wins
    sim = simulate_vw(60, seed=3, nms=False)
    answers = sim.answers.drop(columns="segment")
    first = answers.index[0]
    answers.loc[first, ["too_cheap", "too_expensive"]] = answers.loc[
        first, ["too_expensive", "too_cheap"]
    ].to_numpy()
    (tmp_path / "s").mkdir()
    answers.to_csv(tmp_path / "s" / "answers.csv", index=False)
    (tmp_path / "s" / "study.toml").write_text(
        '[van_westendorp]\ninconsistent = "repair"\nbootstrap = 0\n', encoding="utf-8"
    )
    base = ["vw", str(tmp_path / "s" / "answers.csv"), "--study", str(tmp_path / "s")]
    res = runner.invoke(app, [*base, "--out", str(tmp_path / "o1")])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "o1" / "price_points.csv").n_excluded.tolist() == [0]
    res = runner.invoke(app, [*base, "--inconsistent", "exclude", "--out", str(tmp_path / "o2")])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "o2" / "price_points.csv").n_excluded.iloc[0] >= 1


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (lambda t: t.replace("too_expensive", "too_pricey", 1), "column 'too_expensive'"),
        (lambda t: t.replace("\nR0003,", "\nR0003,abc", 1), "row 4"),
        (lambda t: t.replace("\nR0002,", "\nR0001,", 1), "row 3, column 'respondent_id'"),
    ],
    ids=["missing column", "text in a price", "duplicate respondent"],
)
def test_bad_input_exits_2_naming_the_cell_and_writes_nothing(tmp_path, edit, where):
    sim = simulate_vw(20, seed=1, nms=False)
    good = sim.answers.drop(columns="segment").to_csv(index=False)
    path = tmp_path / "vw.csv"
    path.write_text(edit(good))
    out = tmp_path / "out"
    res = runner.invoke(app, ["vw", str(path), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "vw.csv" in res.output and where in res.output
    assert "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())
    assert path.read_text() == edit(good)  # inputs are never modified


def test_ambiguous_nms_scale_asks_for_the_option(tmp_path):
    sim = simulate_vw(30, seed=1)
    df = sim.answers.drop(columns="segment")
    df["buy_cheap"] = (df.buy_cheap > 3).astype(int)
    df["buy_expensive"] = (df.buy_expensive > 3).astype(int)
    path = tmp_path / "vw.csv"
    df.to_csv(path, index=False)
    res = runner.invoke(app, ["vw", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--nms-scale" in res.output
    res = runner.invoke(
        app, ["vw", str(path), "--out", str(tmp_path / "o"), "--nms-scale", "probability"]
    )
    assert res.exit_code == 0, res.output


def test_respondents_join_and_conflict(tmp_path):
    sim = simulate_vw(40, segments=2, seed=5, nms=False)
    vw = tmp_path / "vw.csv"
    sim.answers.drop(columns="segment").to_csv(vw, index=False)
    resp = tmp_path / "respondents.csv"
    sim.answers[["respondent_id", "segment"]].to_csv(resp, index=False)
    res = runner.invoke(
        app, ["vw", str(vw), "--respondents", str(resp), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "o" / "price_points.csv")) == 3
    clash = sim.answers.copy()
    clash.loc[0, "segment"] = "Other"
    clash.drop(columns=["buy_cheap", "buy_expensive"], errors="ignore").to_csv(vw, index=False)
    res = runner.invoke(
        app, ["vw", str(vw), "--respondents", str(resp), "--out", str(tmp_path / "o2")]
    )
    assert res.exit_code == 2 and "respondents file says" in res.output


def test_run_and_demo_write_index_and_segment_pages(tmp_path, study):
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", str(study), "--out", str(out), "--fast"])
    assert res.exit_code == 0, res.output
    assert (out / "index.html").exists() and (out / "vw" / "price_points.csv").exists()
    for seg in ("startups", "smb", "mid-market", "enterprise"):
        assert (out / f"segment-{seg}.html").exists()
    index = (out / "index.html").read_text()
    assert 'href="segment-mid-market.html"' in index


def test_run_with_a_broken_file_exits_2_and_leaves_no_result(tmp_path, study):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(study, broken)
    text = (broken / "segments.csv").read_text().splitlines()
    text[2] = text[2].replace(",0.0296,", ",1.3,")
    (broken / "segments.csv").write_text("\n".join(text) + "\n")
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(broken), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "segments.csv, row 3, column 'churn_rate'" in res.output
    assert not out.exists() or not any(out.iterdir())


def test_nms_calibration_option_changes_the_curve(tmp_path):
    sim = simulate_vw(300, segments=1, seed=8)
    path = tmp_path / "vw.csv"
    sim.answers.drop(columns="segment").to_csv(path, index=False)
    base = runner.invoke(app, ["vw", str(path), "--out", str(tmp_path / "a")])
    steep = runner.invoke(
        app,
        [
            "vw",
            str(path),
            "--out",
            str(tmp_path / "b"),
            "--nms-calibration",
            "5=0.9,4=0.7,3=0.4,2=0.1,1=0",
        ],
    )
    assert base.exit_code == 0 and steep.exit_code == 0, steep.output
    a = pd.read_csv(tmp_path / "a" / "nms.csv")
    b = pd.read_csv(tmp_path / "b" / "nms.csv")
    assert b.trial.max() > a.trial.max()
    assert "5→0.9" in (tmp_path / "b" / "report.html").read_text()
    bad = runner.invoke(
        app, ["vw", str(path), "--out", str(tmp_path / "c"), "--nms-calibration", "5=high"]
    )
    assert bad.exit_code == 2 and "--nms-calibration" in bad.output


def test_run_with_only_some_instruments_says_what_was_missing(tmp_path, study):
    import shutil

    part = tmp_path / "part"
    part.mkdir()
    for name in ("vw.csv", "respondents.csv"):
        shutil.copy(study / name, part / name)
    (part / "study.toml").write_text(
        '[study]\nname = "Only VW"\ncurrency = "EUR"\n[data]\nvan_westendorp = "vw.csv"\nrespondents = "respondents.csv"\n'
    )
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(part), "--out", str(out), "--fast"])
    assert res.exit_code == 0, res.output
    for stage in ("maxdiff", "conjoint", "segments"):
        assert re.search(rf"not run\s+{stage}\s+no {stage} file", res.output), stage
    assert (out / "vw" / "price_points.csv").exists() and not (out / "maxdiff").exists()
    sc = pd.read_csv(out / "scenarios.csv")
    assert set(sc.scenario) == {"single", "multiple"}
    index = (out / "index.html").read_text()
    assert "no maxdiff file in the study" in index
    # without respondents.csv there are no segments: every key of the tables is still one row
    (part / "respondents.csv").unlink()
    (part / "study.toml").write_text(
        '[study]\nname = "Only VW"\ncurrency = "EUR"\n[data]\nvan_westendorp = "vw.csv"\n'
    )
    res = runner.invoke(app, ["run", str(part), "--out", str(tmp_path / "one"), "--fast"])
    assert res.exit_code == 0, res.output
    for name, key in (
        ("price_books.csv", ["scenario", "segment", "package"]),
        ("take_up.csv", ["scenario", "segment", "package"]),
        ("scenarios.csv", ["scenario", "segment"]),
    ):
        table = pd.read_csv(tmp_path / "one" / name)
        assert len(table) and not table.duplicated(key).any(), name


def test_design_commands_write_a_report_and_segments_take_respondents(tmp_path, study):
    res = runner.invoke(
        app,
        [
            "design",
            "maxdiff",
            "--items",
            "8",
            "--per-task",
            "4",
            "--tasks",
            "6",
            "--versions",
            "2",
            "--out",
            str(tmp_path / "dm"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert {"design.csv", "design_report.txt", "report.html"} <= {
        p.name for p in (tmp_path / "dm").iterdir()
    }
    res = runner.invoke(app, ["design", "conjoint", str(study), "--out", str(tmp_path / "dc")])
    assert res.exit_code == 0, res.output
    assert "Balance report" in (tmp_path / "dc" / "report.html").read_text()
    res = runner.invoke(
        app,
        [
            "segments",
            str(study / "segments.csv"),
            "--respondents",
            str(study / "respondents.csv"),
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "segment_scores.csv").exists()


def test_out_that_is_a_file_or_holds_the_input(tmp_path):
    sim = simulate_vw(20, seed=1, nms=False)
    folder = tmp_path / "clash"
    folder.mkdir()
    path = folder / "price_points.csv"
    sim.answers.drop(columns="segment").to_csv(path, index=False)
    before = path.read_text()
    res = runner.invoke(app, ["vw", str(path), "--out", str(folder)])
    assert res.exit_code == 2 and "would be overwritten" in res.output
    assert path.read_text() == before
    res = runner.invoke(app, ["vw", str(path), "--out", str(path)])
    assert res.exit_code == 2 and "existing file" in res.output and "Traceback" not in res.output


def test_run_study_api_summary(study):
    from wtp.pipeline import run_study

    run = run_study(study, seed=1, fast=True)
    s = run.summary()
    assert list(s.columns) == ["stage", "status", "seconds", "note"]
    assert set(s.stage) >= {"vw", "maxdiff", "conjoint", "segments", "price_books", "turf"}
    assert (
        s.set_index("stage").loc["turf", "status"] == "not run"
    )  # --fast MaxDiff has no individual utilities
    assert set(run.price_books.scenarios.scenario) == {"single", "multiple"}


def test_vw_refuses_a_respondents_segment_all_in_another_case(tmp_path):
    """`All` in respondents.csv used to give rows `All` and `all`; it is the reserved name."""
    from wtp.pipeline import demo_study_path

    demo = demo_study_path()
    resp = pd.read_csv(demo / "respondents.csv")
    resp.loc[:2, "segment"] = "All"
    resp.to_csv(tmp_path / "resp.csv", index=False)
    out = tmp_path / "vw"
    res = runner.invoke(
        app,
        [
            "vw",
            str(demo / "vw.csv"),
            "--respondents",
            str(tmp_path / "resp.csv"),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 2, res.output
    assert "resp.csv" in res.output and "row 2, column 'segment'" in res.output
    assert "'All'" in res.output and not out.exists()


@pytest.mark.parametrize(
    ("command", "file", "old", "new", "key", "close"),
    [
        (
            "conjoint",
            "conjoint.csv",
            "Support = ",
            "Suport = ",
            "conjoint.attributes.Suport",
            "Support",
        ),
        ("maxdiff", "maxdiff.csv", "sso = ", "ssoo = ", "maxdiff.items.ssoo", "sso"),
    ],
)
def test_a_misspelt_study_name_is_refused_by_run_and_single_file_commands_alike(
    tmp_path, command, file, old, new, key, close
):
    """A `[conjoint.attributes]` name that is no column (or a `[maxdiff.items]` code that is no
    item) was silently ignored by the single-file command (and, for attributes, by run): the level
    order changed without a word. Both now exit 2 naming the key and the closest name."""
    import shutil

    from wtp.errors import InputError
    from wtp.pipeline import demo_study_path
    from wtp.study import load_study

    folder = tmp_path / "study"
    shutil.copytree(demo_study_path(), folder)
    toml = folder / "study.toml"
    text = toml.read_text()
    assert f"\n{old}" in text
    toml.write_text(text.replace(f"\n{old}", f"\n{new}", 1))
    out = tmp_path / "out"
    extra = ["--method", "counts"] if command == "maxdiff" else []
    res = runner.invoke(
        app, [command, str(folder / file), "--study", str(folder), "--out", str(out), *extra]
    )
    assert res.exit_code == 2, res.output
    assert f"column '{key}'" in res.output and f"did you mean '{close}'" in res.output
    assert not out.exists()
    with pytest.raises(InputError, match=re.escape(key) + ".*did you mean"):
        load_study(folder)


@pytest.mark.parametrize("files", [(), ("respondents.csv",), ("customers.csv",)])
def test_run_on_a_study_with_no_instrument_exits_2_and_writes_nothing(tmp_path, study, files):
    """A study.toml with only `[study] name` (or only respondents / customers) gave exit 0 and a
    complete-looking result set computed from nothing; it is bad input now. A study with one
    instrument still runs (the test above)."""
    import shutil

    part = tmp_path / "part"
    part.mkdir()
    data = "".join(f'{f.split(".")[0]} = "{f}"\n' for f in files)
    for f in files:
        shutil.copy(study / f, part / f)
    (part / "study.toml").write_text(
        '[study]\nname = "Nothing"\n' + ("[data]\n" + data if data else "")
    )
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(part), "--out", str(out), "--fast"])
    assert res.exit_code == 2, res.output
    assert (
        "study.toml, column 'data': expected at least one of van_westendorp (vw.csv)" in res.output
    )
    assert ("found 'no data files'" if not files else f"found 'only {files[0]}'") in res.output
    assert not out.exists()


def test_a_level_missing_from_the_study_counts_every_row_that_holds_it(tmp_path):
    """Every row with one bad level used to count as one problem ("3 problems" for thousands
    of rows); the count is now the rows (contract: the true count of problems)."""
    import shutil

    from wtp.pipeline import demo_study_path

    folder = tmp_path / "study"
    shutil.copytree(demo_study_path(), folder)
    cj = pd.read_csv(folder / "conjoint.csv", dtype=str, keep_default_na=False)
    cj["Support"] = cj["Support"].replace("Phone 24/7", "Phone")
    cj.to_csv(folder / "conjoint.csv", index=False)
    n = int((cj["Support"] == "Phone").sum())
    assert n > 1000
    res = runner.invoke(
        app,
        [
            "conjoint",
            str(folder / "conjoint.csv"),
            "--study",
            str(folder),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2, res.output
    first = int(cj.index[cj["Support"] == "Phone"][0]) + 2  # header is row 1
    assert f"conjoint.csv, {n:,} rows, column 'Support'" in res.output
    assert f"row {first}: 'Phone'" in res.output and "did you mean 'Phone 24/7'" in res.output
    assert f"{n:,} problems in all" in res.output


def test_a_bad_respondents_file_is_reported_once_not_through_every_instrument(tmp_path):
    """With respondents.csv refused, the instruments have no segments to join: that is not
    reported again for each of them (it used to add three 'no segment column' problems)."""
    import shutil

    from wtp.pipeline import demo_study_path

    study = tmp_path / "study"
    shutil.copytree(demo_study_path(), study)
    resp = pd.read_csv(study / "respondents.csv")
    resp.loc[:2, "segment"] = "All"
    resp.to_csv(study / "respondents.csv", index=False)
    res = runner.invoke(app, ["run", str(study), "--out", str(tmp_path / "o"), "--fast"])
    assert res.exit_code == 2, res.output
    assert "3 problems in all" in res.output and "no segment column" not in res.output
    assert not (tmp_path / "o").exists()


def test_arviz_daily_notice_stays_out_of_the_terminal(tmp_path):
    """ArviZ prints a refactor notice on its first import each day (in the middle of an HB
    run's progress); the CLI filters that one warning."""
    import subprocess

    def stderr(code: str, home: str) -> str:
        env = {**os.environ, "HOME": str(tmp_path / home), "XDG_CACHE_HOME": str(tmp_path / home)}
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        ).stderr

    if "ArviZ is undergoing" not in stderr("import arviz", "plain"):
        pytest.skip("this ArviZ prints no notice")
    assert "ArviZ is undergoing" not in stderr("import wtp.cli, arviz", "cli")
