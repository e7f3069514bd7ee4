"""Survey-tool exports read as they come: column maps, header rows, text numbers, counted errors,
checked segment joins, swapped and empty instruments, small samples and logit separation."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.columns import InputLayout, parse_column_map, parse_numbers
from wtp.errors import InputError
from wtp.io import (
    attach_segments,
    read_table,
    validate_conjoint,
    validate_maxdiff,
    validate_vw,
)
from wtp.pipeline import demo_study_path
from wtp.sample import SampleSettings, flag_small_samples, sample_sizes
from wtp.study import load_study, sample_settings
from wtp.vanwestendorp import van_westendorp

runner = CliRunner()
EXPORTS = Path(__file__).parent / "fixtures" / "exports"
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
VW_MAP = {
    "too_cheap": "Q1",
    "cheap": "Q2",
    "expensive": "Q3",
    "too_expensive": "Q4",
    "segment": "Q5",
}
ANSWERS = ["too_cheap", "cheap", "expensive", "too_expensive"]


def dataset(*parts: str) -> Path:
    path = DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared dataset {path} is absent")
    return path


def plain_vw() -> pd.DataFrame:
    return validate_vw(read_table(EXPORTS / "vw_plain.csv"))


def same_answers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    # a study puts rows in its segment order; compare them in file order
    a, b = a.sort_values("row"), b.sort_values("row")
    for c in [*ANSWERS, "segment"]:
        assert a[c].tolist() == b[c].tolist(), c


# --------------------------------------------------------------------------------------------
# Numbers written as text


def test_one_rule_per_column_reads_currency_thousands_and_percent():
    cells = pd.Series(
        ["$1.49", "6 dollars", "12,000", "USD 12", "12 €", "70%", "abc12", "1,5", "", None]
    )
    money, bad, wrong = parse_numbers(cells, "money", currency="USD")
    assert money[:4].tolist() == [1.49, 6.0, 12000.0, 12.0]
    assert wrong.tolist() == [False, False, False, False, True, False, False, False, False, False]
    assert bad.tolist() == [False, False, False, False, False, True, True, True, False, False]
    share, bad_share, _ = parse_numbers(cells, "share")
    assert share[5] == pytest.approx(0.7) and bad_share[0] and not bad_share[5]
    number, bad_number, _ = parse_numbers(cells, "number")
    assert number[2] == 12000.0 and bad_number[0] and bad_number[1]
    # the file's decimal mark decides: 12.000,50 in a decimal-comma file
    euro, bad_euro, _ = parse_numbers(pd.Series(["€1.234,50", "12,000"]), "money", decimal=",")
    assert euro.tolist() == [1234.5, 12.0] and not bad_euro.any()


def test_column_map_flag_parses_pairs_and_attribute_lists():
    assert parse_column_map("respondent_id=Response ID, cheap=bargain") == {
        "respondent_id": "Response ID",
        "cheap": "bargain",
    }
    assert parse_column_map("attributes=Brand|Cocoa strength")["attributes"] == [
        "Brand",
        "Cocoa strength",
    ]
    with pytest.raises(InputError, match="pairs"):
        parse_column_map("cheap")


# --------------------------------------------------------------------------------------------
# Survey-tool layouts (fixtures written after the tools' documented export layouts)


def test_qualtrics_export_with_three_header_rows():
    out = validate_vw(
        read_table(EXPORTS / "qualtrics_vw.csv"), layout=InputLayout(columns=VW_MAP, currency="USD")
    )
    same_answers(out, plain_vw())
    assert out["respondent_id"].iloc[0] == "R_001xYz"  # ResponseId found by its own name
    assert out["row"].iloc[0] == 4  # rows 2 and 3 (question text, ImportId) are header rows


def test_surveymonkey_export_with_two_header_rows():
    header = pd.read_csv(EXPORTS / "surveymonkey_vw.csv", nrows=0).columns
    columns = dict(
        zip(
            ["too_cheap", "cheap", "expensive", "too_expensive", "segment"],
            header[9:14],
            strict=True,
        )
    )
    out = validate_vw(
        read_table(EXPORTS / "surveymonkey_vw.csv"), layout=InputLayout(columns=columns)
    )
    same_answers(out, plain_vw())
    assert out["row"].iloc[0] == 3


def test_xlsx_title_block_and_loose_header_names(tmp_path):
    df = pd.read_csv(EXPORTS / "vw_plain.csv").rename(
        columns={
            "respondent_id": "Respondent",
            "too_cheap": " Too cheap ",
            "cheap": "CHEAP",
            "too_expensive": "too-expensive",
            "segment": "Segment",
        }
    )
    path = tmp_path / "export.xlsx"
    with pd.ExcelWriter(path) as xl:
        pd.DataFrame([["Acme Analytics pricing survey"], ["Exported 2026-03-02"], [None]]).to_excel(
            xl, index=False, header=False
        )
        df.to_excel(xl, index=False, startrow=3)
    out = validate_vw(read_table(path))
    same_answers(out, plain_vw())
    assert out["row"].iloc[0] == 5
    # the same with the header row given instead of found
    assert validate_vw(read_table(path), layout=InputLayout(header_row=4))["row"].iloc[0] == 5


def test_csv_title_lines_are_skipped(tmp_path):
    text = (EXPORTS / "vw_plain.csv").read_text()
    path = tmp_path / "vw.csv"
    path.write_text("Acme pricing survey\nExported 2026-03-02\n\n" + text)
    out = validate_vw(read_table(path))
    same_answers(out, plain_vw())
    assert out["row"].iloc[0] == 5


def test_study_columns_and_currency_settings(tmp_path):
    shutil.copy(EXPORTS / "qualtrics_vw.csv", tmp_path / "vw.csv")
    toml = (
        '[study]\ncurrency = "{cur}"\n[data]\nvan_westendorp = "vw.csv"\n[columns.vw]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in VW_MAP.items())
    )
    (tmp_path / "study.toml").write_text(toml.format(cur="USD"))
    same_answers(load_study(tmp_path).vw, plain_vw())
    (tmp_path / "study.toml").write_text(toml.format(cur="EUR"))
    with pytest.raises(InputError) as err:
        load_study(tmp_path)
    # written in dollars in a euro study: one line per column, with its count
    assert len(err.value.problems) == 4 and all(p.count == 12 for p in err.value.problems)
    assert "study's currency (EUR)" in str(err.value) and "'$12'" in str(err.value)


def test_cli_columns_flag_reads_the_export(tmp_path):
    out = tmp_path / "out"
    flag = ",".join(f"{k}={v}" for k, v in VW_MAP.items())
    res = runner.invoke(
        app, ["vw", str(EXPORTS / "qualtrics_vw.csv"), "--columns", flag, "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    direct = van_westendorp(attach_segments(plain_vw())).price_points
    got = pd.read_csv(out / "price_points.csv")
    assert np.allclose(got["pmc"], direct["pmc"], equal_nan=True)


# --------------------------------------------------------------------------------------------
# Did you mean, and errors that count


def test_typos_in_maps_and_settings_name_the_closest(tmp_path):
    with pytest.raises(InputError, match=r"did you mean 'Q2'"):
        validate_vw(
            read_table(EXPORTS / "qualtrics_vw.csv"),
            layout=InputLayout(columns={**VW_MAP, "cheap": "Q22"}),
        )
    with pytest.raises(InputError, match=r"did you mean 'respondent_id'"):
        validate_vw(
            read_table(EXPORTS / "vw_plain.csv"),
            layout=InputLayout(columns={"respondnet_id": "respondent_id"}),
        )
    with pytest.raises(InputError, match=r"did you mean 'min_n'"):
        sample_settings({"sample": {"min_m": 20}})
    (tmp_path / "study.toml").write_text(
        '[data]\nvan_westendorp = "vw.csv"\n[columns.wv]\nrespondent_id = "x"\n'
    )
    shutil.copy(EXPORTS / "vw_plain.csv", tmp_path / "vw.csv")
    with pytest.raises(InputError, match=r"columns.wv.*did you mean 'vw'"):
        load_study(tmp_path)


def test_thousands_of_bad_cells_are_counted_exactly(tmp_path):
    n = 3000
    header = ["respondent_id", *ANSWERS] + [f"profile_{i}" for i in range(15)]
    df = pd.DataFrame(
        {
            "respondent_id": range(n),
            "too_cheap": "cheap-ish",
            "cheap": 10,
            "expensive": "n/a",
            "too_expensive": 40,
        }
    )
    df.loc[::3, "expensive"] = "20"  # a third of the column is fine
    for c in header[5:]:
        df[c] = 1
    path = tmp_path / "vw.csv"
    df[header].to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        validate_vw(read_table(path))
    problems = err.value.problems
    assert [(p.column, p.count) for p in problems] == [("too_cheap", n), ("expensive", n - n // 3)]
    assert err.value.total == n + n - n // 3
    text = str(err.value)
    assert text.count("\n") == 2 and "5,000 problems in all" in text
    assert "row 2: 'cheap-ish'" in text
    # a missing column lists the header in full, however long
    df[header].drop(columns="cheap").to_csv(path, index=False)
    with pytest.raises(InputError) as err:
        validate_vw(read_table(path))
    assert "the header has 19 columns" in str(err.value) and "'profile_14'" in str(err.value)


# --------------------------------------------------------------------------------------------
# Segment joins


def _demo_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    shutil.copytree(demo_study_path(), folder)
    return folder


def test_misspelt_segment_exits_2_listing_both_sides(tmp_path):
    folder = _demo_copy(tmp_path)
    seg = folder / "segments.csv"
    seg.write_text(seg.read_text().replace("Mid-market", "Midmarket"))
    cust = folder / "customers.csv"
    cust.write_text(cust.read_text().replace("Mid-market", "Midmarket"))
    res = runner.invoke(app, ["run", str(folder), "--out", str(tmp_path / "out"), "--fast"])
    assert res.exit_code == 2, res.output
    # both sides listed, with the closest match
    assert (
        "'Mid-market'" in res.output
        and "did you mean 'Midmarket'" in res.output
        and "Startups" in res.output
    )
    assert not (tmp_path / "out").exists()


def test_case_and_spaces_are_forgiven_and_unanswered_segments_reported(tmp_path):
    folder = _demo_copy(tmp_path)
    seg = pd.read_csv(folder / "segments.csv")
    seg["segment"] = seg["segment"].str.upper() + " "
    extra = seg.iloc[[0]].assign(segment="Agencies")
    pd.concat([seg, extra]).to_csv(folder / "segments.csv", index=False)
    cust = pd.read_csv(folder / "customers.csv")
    cust["segment"] = cust["segment"].str.lower()
    cust.to_csv(folder / "customers.csv", index=False)
    study = load_study(folder)
    # the survey's names are spelled as segments.csv spells them, so every join finds them
    assert set(study.vw["segment"]) <= set(study.segments["segment"])
    assert set(study.customers["segment"]) <= set(study.segments["segment"])
    assert study.unpriced_segments == ("Agencies",)


def test_survey_without_segments_against_several_says_how_to_join(tmp_path):
    folder = _demo_copy(tmp_path)
    toml = (folder / "study.toml").read_text().replace('respondents    = "respondents.csv"\n', "")
    (folder / "study.toml").write_text(toml)
    with pytest.raises(InputError) as err:
        load_study(folder)
    text = str(err.value)
    assert (
        "no segment column" in text
        and "respondents.csv (respondent_id, segment)" in text
        and "[columns.vw] segment" in text
    )


# --------------------------------------------------------------------------------------------
# Nothing complete from nothing


def test_all_inconsistent_file_exits_2(tmp_path):
    path = tmp_path / "vw.csv"
    path.write_text(
        "respondent_id,too_cheap,cheap,expensive,too_expensive\n"
        + "".join(f"r{i},{40 + i},30,20,10\n" for i in range(40))
    )
    res = runner.invoke(app, ["vw", str(path), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "look swapped" in res.output and not (tmp_path / "out").exists()
    # out of order without one dominant pair: no usable answer, still an error
    rows = "".join(
        f"r{i},{10 if i % 2 else 50},{40 if i % 2 else 20},{30 if i % 2 else 60},{50 if i % 2 else 40}\n"
        for i in range(40)
    )
    path.write_text("respondent_id,too_cheap,cheap,expensive,too_expensive\n" + rows)
    with pytest.raises(InputError, match="nothing to compute"):
        van_westendorp(attach_segments(validate_vw(read_table(path))))


def test_hoekstra_mapped_by_its_labels_names_the_swapped_columns():
    path = dataset("vw_hoekstra_pricesensitivity", "example_data.csv")
    by_labels = InputLayout(
        columns={"respondent_id": "resp_id", "cheap": "bargain", "expensive": "getting_expensive"}
    )
    with pytest.raises(InputError) as err:
        van_westendorp(attach_segments(validate_vw(read_table(path), layout=by_labels)))
    text = str(err.value)
    assert "'cheap' and 'expensive'" in text and "'bargain' and 'getting_expensive'" in text
    # mapped by content (the datasets README): the numbers of the hand-renamed file
    by_content = InputLayout(
        columns={"respondent_id": "resp_id", "cheap": "getting_expensive", "expensive": "bargain"}
    )
    mapped = van_westendorp(
        attach_segments(validate_vw(read_table(path), layout=by_content))
    ).price_points
    hand = pd.read_csv(path).rename(
        columns={"resp_id": "respondent_id", "getting_expensive": "cheap", "bargain": "expensive"}
    )
    expected = van_westendorp(
        attach_segments(validate_vw(hand.astype(str).assign(row=0).drop(columns="row")))
    ).price_points
    assert mapped[["n", "n_excluded", "pmc", "opp", "ipp", "pme"]].equals(
        expected[["n", "n_excluded", "pmc", "opp", "ipp", "pme"]]
    )
    assert int(mapped["n_excluded"].iloc[0]) == 275


@pytest.mark.parametrize(
    "folder", ["vw_rational_designer_smartphone", "vw_arnelienemann112", "vw_psm_japan36"]
)
def test_public_vw_files_read_directly(folder):
    path = dataset(folder, "vw_responses.csv")
    direct = van_westendorp(attach_segments(validate_vw(read_table(path)))).price_points
    hand = pd.read_csv(path, dtype=str).rename(columns={"respondent": "respondent_id"})
    expected = van_westendorp(attach_segments(validate_vw(hand))).price_points
    cols = ["n", "n_excluded", "pmc", "opp", "ipp", "pme"]
    assert direct[cols].equals(expected[cols])


def test_chocolate_conjoint_read_with_a_column_map():
    from wtp.conjoint import estimate_conjoint

    path = dataset("displayr_chocolate_cbc", "chocolate_cbc_long.csv")
    attributes = ["Brand", "Cocoa strength", "Sugar", "Origin", "Nuts", "Ethical"]
    layout = InputLayout(
        columns={"respondent_id": "respondent", "alt": "alt"}, attributes=tuple(attributes)
    )
    mapped = attach_segments(validate_conjoint(read_table(path), layout=layout))
    raw = pd.read_csv(path, dtype=str)
    hand = raw.rename(columns={"respondent": "respondent_id", "Price": "price"})
    hand["price"] = hand["price"].str.lstrip("$")
    hand = hand[["respondent_id", "task", "alt", *attributes, "price", "chosen"]]
    expected = attach_segments(validate_conjoint(hand))
    assert mapped["price"].tolist() == expected["price"].tolist()
    a = estimate_conjoint(mapped, rng=np.random.default_rng(0)).partworths
    b = estimate_conjoint(expected, rng=np.random.default_rng(0)).partworths
    assert np.allclose(a["utility"], b["utility"]) and (a["level"] == b["level"]).all()


def test_every_price_cell_of_an_unmapped_export_is_one_line(tmp_path):
    path = dataset("displayr_eggs_cbc", "eggs_cbc_long.csv")
    text = path.read_text()
    bad = tmp_path / "eggs.csv"
    bad.write_text(text.replace(" dollars", " bucks"))
    layout = InputLayout(
        columns={"respondent_id": "respondent"},
        attributes=("Weight", "Organic", "Charity", "Quality", "Uniformity", "Feed"),
    )
    with pytest.raises(InputError) as err:
        validate_conjoint(read_table(bad), layout=layout)
    rows = len(pd.read_csv(path))
    assert [(p.column, p.count) for p in err.value.problems] == [("price", rows)]
    eggs = validate_conjoint(read_table(path), layout=layout)
    assert sorted(eggs["price"].unique()) == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_rice_maxdiff_wide_export_with_a_segment_map():
    from wtp.maxdiff import estimate_maxdiff

    path = dataset("supportBWS_ricebws1", "ricebws1_long.csv")
    mapped = attach_segments(
        validate_maxdiff(read_table(path), layout=InputLayout(columns={"segment": "age_group"}))
    )
    hand = pd.read_csv(path, dtype=str).rename(
        columns={"respondent": "respondent_id", "age_group": "segment"}
    )
    hand = hand.rename(columns={f"item{i}": f"item_{i}" for i in range(1, 5)})
    expected = attach_segments(
        validate_maxdiff(hand.drop(columns=["highest_price_paid_group", "values_low_chem"]))
    )
    a = estimate_maxdiff(mapped, method="logit", rng=np.random.default_rng(0)).item_scores
    b = estimate_maxdiff(expected, method="logit", rng=np.random.default_rng(0)).item_scores
    assert np.allclose(a["share"], b["share"]) and set(a["segment"]) == {"1", "2", "3", "all"}


# --------------------------------------------------------------------------------------------
# Sample size and separation


def test_five_respondent_segment_is_flagged_everywhere(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for i, seg in enumerate(["Big"] * 60 + ["Tiny"] * 5):
        tc = int(rng.integers(5, 15))
        rows.append(f"r{i},{tc},{tc + 10},{tc + 30},{tc + 50},{seg}\n")
    path = tmp_path / "vw.csv"
    path.write_text(
        "respondent_id,too_cheap,cheap,expensive,too_expensive,segment\n" + "".join(rows)
    )
    result = van_westendorp(attach_segments(validate_vw(read_table(path))))
    flagged = flag_small_samples(result, "vw", SampleSettings().threshold("vw"))
    small = flagged.price_points.set_index("segment")["small_sample"]
    assert small.to_dict() == {"Big": False, "Tiny": True, "all": False}
    assert flagged.curves.groupby("segment")["small_sample"].first().to_dict() == {
        "Big": False,
        "Tiny": True,
        "all": False,
    }
    assert any("segment Tiny has 5 respondents" in w for w in flagged.warnings)
    sizes = sample_sizes({"vw": flagged}, SampleSettings(min_n_vw=4))
    assert sizes.set_index("segment")["min_n"].eq(4).all() and not sizes["small_sample"].any()
    assert (
        SampleSettings().threshold("maxdiff", "hb") == 50
        and SampleSettings().threshold("maxdiff", "logit") == 30
    )
    out = tmp_path / "out"
    res = runner.invoke(app, ["vw", str(path), "--out", str(out)])
    assert res.exit_code == 0 and "segment Tiny has 5 respondents" in res.output
    assert pd.read_csv(out / "price_points.csv").set_index("segment")["small_sample"]["Tiny"]
    assert "segment Tiny has 5 respondents" in (out / "report.html").read_text()


def test_item_always_worst_is_separation_not_convergence():
    from wtp.maxdiff import estimate_maxdiff

    rng = np.random.default_rng(1)
    items, rows = list("abcdef"), []
    for r in range(40):
        for t in range(6):
            shown = rng.choice(items, 4, replace=False)
            u = {i: (-99.0 if i == "f" else rng.normal()) for i in shown}
            best, worst = max(shown, key=u.get), min(shown, key=u.get)
            rows += [
                {
                    "respondent_id": f"r{r}",
                    "task": t,
                    "item": i,
                    "best": int(i == best),
                    "worst": int(i == worst),
                }
                for i in shown
            ]
    answers = attach_segments(validate_maxdiff(pd.DataFrame(rows).astype(str)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = estimate_maxdiff(answers, method="logit", rng=np.random.default_rng(0))
    assert not result.converged
    scores = result.item_scores.set_index("item")
    assert scores["separated"].to_dict() == {
        "a": False,
        "b": False,
        "c": False,
        "d": False,
        "e": False,
        "f": True,
    }
    assert any("item f was picked worst every time" in w for w in result.warnings)


def test_typo_in_a_level_or_an_item_code_names_the_closest(tmp_path):
    folder = _demo_copy(tmp_path)
    toml = (folder / "study.toml").read_text()
    first_item = next(
        line.split("=")[0].strip()
        for line in toml.split("[maxdiff.items]")[1].splitlines()
        if "=" in line
    )
    (folder / "study.toml").write_text(toml.replace(f"\n{first_item} =", f"\n{first_item}x =", 1))
    with pytest.raises(
        InputError, match=rf"maxdiff.items.{first_item}x.*did you mean '{first_item}'"
    ):
        load_study(folder)
    from wtp.conjoint import conjoint_levels, estimate_conjoint

    answers = attach_segments(validate_conjoint(read_table(demo_study_path() / "conjoint.csv")))
    levels = conjoint_levels(load_study(demo_study_path()).settings)
    attribute = next(iter(levels))
    levels[attribute] = [levels[attribute][0] + "s", *levels[attribute][1:]]
    with pytest.raises(
        InputError,
        # every row that holds the level is counted: "found e.g. row 3: 'Email'; ..."
        match=rf"did you mean '{levels[attribute][0]}'.*found e.g. row \d+: '{levels[attribute][0][:-1]}'",
    ):
        estimate_conjoint(answers, levels=levels)


def test_misspelt_data_key_is_an_error_not_a_missing_instrument(tmp_path):
    shutil.copy(EXPORTS / "vw_plain.csv", tmp_path / "vw.csv")
    (tmp_path / "study.toml").write_text('[data]\nvanwestendorp = "vw.csv"\n')
    with pytest.raises(InputError, match=r"data.vanwestendorp.*did you mean 'van_westendorp'"):
        load_study(tmp_path)


def test_a_respondent_answering_text_is_not_taken_for_a_header_row(tmp_path):
    path = tmp_path / "vw.csv"
    path.write_text(
        "respondent_id,too_cheap,cheap,expensive,too_expensive\nr1,don't know,don't know,no idea,no idea\nr2,5,10,20,30\n"
    )
    with pytest.raises(InputError) as err:
        validate_vw(read_table(path))
    assert {p.row for p in err.value.problems} == {2}


def test_study_run_flags_small_segments_with_the_study_threshold(tmp_path):
    from wtp.pipeline import run_study

    rng = np.random.default_rng(3)
    rows = []
    for i, seg in enumerate(["Big"] * 60 + ["Tiny"] * 5):
        tc = int(rng.integers(5, 15))
        rows.append(f"r{i},{tc},{tc + 10},{tc + 30},{tc + 50},{seg}\n")
    (tmp_path / "vw.csv").write_text(
        "respondent_id,too_cheap,cheap,expensive,too_expensive,segment\n" + "".join(rows)
    )
    (tmp_path / "study.toml").write_text(
        '[data]\nvan_westendorp = "vw.csv"\n[sample]\nmin_n_vw = 10\n'
    )
    run = run_study(tmp_path, fast=True)
    sizes = run.sample_sizes().set_index("segment")
    assert sizes["small_sample"].to_dict() == {"Big": False, "Tiny": True, "all": False}
    assert (sizes["min_n"] == 10).all()
    assert any(
        "segment Tiny has 5 respondents, below the minimum of 10" in a for a in run.attention
    )
    assert run.vw.price_points.set_index("segment")["small_sample"]["Tiny"]


def test_message_beyond_twenty_lines_says_exactly_what_is_left():
    from wtp.errors import MAX_PROBLEMS, Problem

    problems = [
        Problem(
            "f.csv",
            i + 2,
            f"c{i}",
            "a number",
            count=1 + i % 3,
            examples=((i + 2, "x"),) * (1 + i % 3),
        )
        for i in range(30)
    ]
    err = InputError(problems)
    lines = str(err).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1
    left = problems[MAX_PROBLEMS:]
    assert (
        lines[-1]
        == f"... and 10 more lines ({sum(p.count for p in left)} problems); {err.total} problems in all"
    )
    assert err.total == sum(1 + i % 3 for i in range(30))
