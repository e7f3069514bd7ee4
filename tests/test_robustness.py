"""Hostile and careless input: every failure is one located line and exit 2 (bad input) or 1
(environment), never a traceback; study paths stay inside the study; settings are typed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.errors import InputError, printable
from wtp.hb import sampler_settings
from wtp.io import read_table, validate_customers, validate_vw
from wtp.report import slug
from wtp.settings import SECTIONS, parse_settings, sampler_keys
from wtp.study import load_study

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
HEADER = "respondent_id,segment,too_cheap,cheap,expensive,too_expensive\n"


def _vw(folder: Path, segment: str = "a", n: int = 12, name: str = "vw.csv") -> Path:
    rows = [f"r{i},{segment},{5 + i % 3},{10 + i % 4},{20 + i % 5},{30 + i % 6}" for i in range(n)]
    path = folder / name
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _run(*args: str):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    return res


def _study(folder: Path, toml: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    _vw(folder)
    (folder / "study.toml").write_text(toml, encoding="utf-8")
    return folder


# ---- command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("option", [["--seed", "-1"], ["--bootstrap", "-5"]])
def test_negative_counts_are_usage_errors(tmp_path, option):
    res = _run("vw", _vw(tmp_path), "--out", tmp_path / "o", *option)
    assert res.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_unusable_out_is_refused_before_any_work(tmp_path):
    src = _vw(tmp_path)
    res = _run("vw", src, "--out", "/dev/null/x")
    assert res.exit_code == 2 and "--out /dev/null/x" in res.output and "is a file" in res.output
    res = _run("vw", src, "--out", src)
    assert res.exit_code == 2
    assert src.read_text().startswith(HEADER)


def test_a_concurrent_run_into_the_same_out_exits_1(tmp_path):
    out = tmp_path / "o"
    code = f"import time; from wtp.output import prepare_output; prepare_output({str(out)!r}); print('locked', flush=True); time.sleep(60)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = _run("vw", _vw(tmp_path), "--out", out)
    finally:
        holder.kill()
        holder.wait()
    assert res.exit_code == 1
    assert "another wtp run is writing into this folder" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_control_characters_from_data_are_escaped_on_the_terminal(tmp_path):
    res = _run("vw", _vw(tmp_path, segment="evil\x1b[31mred"), "--out", tmp_path / "o")
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\\x1b[31mred" in res.output
    assert printable("a\rb\u202ec\nd") == "a\\x0db\\u202ec\nd"


def test_long_segment_names_give_short_file_names():
    name = "Segment " * 40
    s = slug(name)
    assert len(s) == 60 and s[51] == "-" and s.startswith("segment-segment")
    assert slug("Small Teams") == "small-teams"


# ---- study.toml ----------------------------------------------------------------------------------


def test_study_toml_encodings_and_folders(tmp_path):
    latin = tmp_path / "latin"
    latin.mkdir()
    _vw(latin)
    (latin / "study.toml").write_bytes('[study]\nname = "Caf\u00e9"\n'.encode("latin-1"))
    res = _run("run", latin, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "study.toml, row 2" in res.output and "UTF-8" in res.output
    utf16 = _study(tmp_path / "u16", "")
    (utf16 / "study.toml").write_bytes('[study]\nname = "Caf\u00e9"\n'.encode("utf-16"))
    assert load_study(utf16).name == "Caf\u00e9"
    folder = tmp_path / "dir"
    (folder / "study.toml").mkdir(parents=True)
    res = _run("run", folder, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "regular file" in res.output


@pytest.mark.parametrize(
    ("toml", "key", "words"),
    [
        ('[maxdiff]\ndraws = "many"\n', "maxdiff.draws", "a whole number"),
        ("[maxdiff]\ndraws = -5\n", "maxdiff.draws", "1 or more"),
        ("[maxdiff]\ndrawz = 5\n", "maxdiff.drawz", "did you mean 'draws'"),
        ("[maxdif]\ndraws = 5\n", "maxdif", "did you mean 'maxdiff'"),
        ("[study]\nname = 5\n", "study.name", "text in quotes"),
        ('[study]\ncurrency = ["USD"]\n', "study.currency", "text in quotes"),
        ('[conjoint]\nprices = "cheap"\n', "conjoint.prices", "an array of numbers"),
        ("[conjoint]\nprices = [10, 1e308]\n", "conjoint.prices", "at most"),
        ('[van_westendorp]\nties = "dorp"\n', "van_westendorp.ties", "did you mean 'drop'"),
        ("[study]\nbootstrap = 5\n", "study.bootstrap", "belongs in [van_westendorp]"),
        ('[study]\nas_of = "30/06/2026"\n', "study.as_of", "YYYY-MM-DD"),
        ("[sample]\nmin_n = 0\n", "sample.min_n", "1 or more"),
    ],
)
def test_settings_errors_name_study_toml_and_the_key(tmp_path, toml, key, words):
    folder = _study(tmp_path / "s", toml)
    with pytest.raises(InputError) as err:
        load_study(folder)
    p = err.value.problems[0]
    assert p.file.endswith("study.toml") and p.column == key
    assert words in str(p)
    res = _run("run", folder, "--out", tmp_path / "o")
    assert res.exit_code == 2 and key in res.output and "--method" not in res.output


def test_settings_are_typed_with_one_set_of_defaults():
    s = parse_settings(
        {
            "maxdiff": {"draws": 2000},
            "data": {"vw": "answers.csv"},
            "pricing": {"too_cheap": "exclude"},
        }
    )
    assert s.maxdiff.draws == 2000 and s.data.van_westendorp == "answers.csv"
    # the sampler owns its defaults (wtp.hb.fit_hb): an unset key stays unset all the way down
    assert s.maxdiff.tune is None
    assert sampler_settings(sampler_keys(s.maxdiff)) == {"draws": 2000}
    assert s.pricing.too_cheap == "exclude" and s.pricing.vw_describes == "core"
    assert s.min_n("vw") == 30
    assert parse_settings({"sample": {"min_n": 50, "min_n_conjoint": 80}}).min_n("conjoint") == 80
    fast = parse_settings({"van_westendorp": {"bootstrap": 10}}, fast=True)
    assert (
        fast.van_westendorp.bootstrap == 10
        and fast.maxdiff.method == "logit"
        and fast.conjoint.method == "mnl"
    )
    cols = parse_settings({"columns": {"vw": {"respondent_id": "Response ID"}}})
    assert cols.columns.vw == {"respondent_id": "Response ID"}
    # the contract's keys other engineers build on are declared
    for section, key in [
        ("conjoint", "numeric"),
        ("maxdiff", "time_budget"),
        ("maxdiff", "target_accept"),
        ("sample", "min_n_maxdiff"),
        ("data", "allow_outside"),
    ]:
        assert key in {f for f in SECTIONS[section].__dataclass_fields__}


# ---- study paths ---------------------------------------------------------------------------------


def test_data_paths_stay_inside_the_study(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:the first line of a private file\n")
    study = tmp_path / "study"
    for toml, key in [
        ('[data]\nvan_westendorp = "../secret.csv"\n', "data.van_westendorp"),
        (f'[data]\nvan_westendorp = "{secret}"\n', "data.van_westendorp"),
        ('[data]\nvan_westendorp = "link.csv"\n', "data.van_westendorp"),
        ('[data]\nvan_westendorp = "/dev/zero"\nallow_outside = true\n', "data.van_westendorp"),
        ('[data]\nvan_westendorp = "sub"\n', "data.van_westendorp"),
    ]:
        _study(study, toml)
        (study / "sub").mkdir(exist_ok=True)
        if not (study / "link.csv").is_symlink():
            (study / "link.csv").symlink_to(secret)
        res = _run("run", study, "--out", tmp_path / "o")
        assert res.exit_code == 2, (toml, res.output)
        assert key in res.output and "private file" not in res.output
    # allowed when the study says so, or given on the command line
    _study(
        study,
        f'[data]\nvan_westendorp = "{_vw(tmp_path, name="outside.csv")}"\nallow_outside = true\n',
    )
    assert load_study(study).vw is not None
    res = _run("vw", tmp_path / "outside.csv", "--out", tmp_path / "o2")
    assert res.exit_code == 0, res.output


def test_a_device_given_on_the_command_line_is_refused(tmp_path):
    res = _run("vw", "/dev/zero", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "regular file" in res.output


# ---- input files ---------------------------------------------------------------------------------


def test_input_file_details(tmp_path):
    blank = tmp_path / "blank.csv"
    blank.write_text(HEADER + "r1,a,1,2,3,4\n\n\nr2,a,1,x,3,4\n")
    with pytest.raises(InputError, match="row 5, column 'cheap'"):
        validate_vw(read_table(blank))
    u16 = tmp_path / "u16.csv"
    u16.write_bytes((HEADER + "r1,a,1,2,3,4\n").replace(",", "\t").encode("utf-16"))
    assert validate_vw(read_table(u16)).shape[0] == 1
    u16le = tmp_path / "u16le.csv"
    u16le.write_bytes((HEADER + "r1,a,1,2,3,4\n").encode("utf-16-le"))
    assert validate_vw(read_table(u16le)).shape[0] == 1
    dup = tmp_path / "dup.csv"
    dup.write_text("respondent_id,cheap,cheap,expensive,too_expensive\nr1,1,2,3,4\n")
    with pytest.raises(InputError, match="row 1, column 'cheap': expected each column name once"):
        read_table(dup)
    huge = tmp_path / "huge.csv"
    huge.write_text(
        "respondent_id,too_cheap,cheap,expensive,too_expensive,weight\nr1,1,2,3,1e308,1e308\n"
    )
    with pytest.raises(InputError) as err:
        validate_vw(read_table(huge))
    assert {p.column for p in err.value.problems} == {"too_expensive", "weight"}
    assert all("at most 1e+12" in str(p) for p in err.value.problems)
    old = tmp_path / "customers.csv"
    old.write_text("customer_id,segment,start_date,end_date\nc1,a,1066-10-14,\nc2,a,2020-01-01,\n")
    with pytest.raises(InputError, match="row 2, column 'start_date'.*1677"):
        validate_customers(read_table(old))


def test_duplicated_headers_in_a_workbook_are_an_error(tmp_path):
    import openpyxl

    path = tmp_path / "vw.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["respondent_id", "cheap", "cheap"])
    wb.active.append(["r1", 1, 2])
    wb.save(path)
    with pytest.raises(InputError, match="row 1, column 'cheap': expected each column name once"):
        read_table(path)
    ok = tmp_path / "ok.csv"
    ok.write_text("price,price.1\n1,2\n")  # a name that merely looks like pandas' renaming
    assert list(read_table(ok).columns) == ["price", "price.1"]
