"""Reading and validating input files: formats, sniffing, and clear errors for mangled files."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wtp.errors import InputError
from wtp.io import (
    atomic_output_dir,
    attach_segments,
    neutralise_formulas,
    read_table,
    validate_conjoint,
    validate_customers,
    validate_maxdiff,
    validate_respondents,
    validate_segments,
    validate_vw,
)
from wtp.study import load_study

VW = "respondent_id,too_cheap,cheap,expensive,too_expensive\nr1,5,10,20,30\nr2,10,15,25,40\n"


def write(tmp_path, name, text, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def test_csv_with_bom_semicolons_and_decimal_commas(tmp_path):
    text = "\ufeffrespondent_id;too_cheap;cheap;expensive;too_expensive\nr1;5,5;10;20,25;30\nr2;10;15;25;40\n"
    df = validate_vw(read_table(write(tmp_path, "vw.csv", text)))
    assert df.too_cheap.tolist() == [5.5, 10.0]
    assert df.expensive.tolist() == [20.25, 25.0]
    assert df.row.tolist() == [2, 3]


@pytest.mark.parametrize("fmt", ["xlsx", "parquet", "sav"])
def test_other_formats_read_the_same(tmp_path, fmt):
    df = pd.read_csv(pd.io.common.StringIO(VW))
    path = tmp_path / f"vw.{fmt}"
    if fmt == "xlsx":
        df.to_excel(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        import pyreadstat

        pyreadstat.write_sav(df, str(path))
    out = validate_vw(read_table(path))
    assert out.respondent_id.tolist() == ["r1", "r2"]
    assert out.too_expensive.tolist() == [30.0, 40.0]


def test_sav_value_labels_become_text(tmp_path):
    import pyreadstat

    df = pd.DataFrame({"respondent_id": [1.0, 2.0], "segment": [1.0, 2.0]})
    path = tmp_path / "respondents.sav"
    pyreadstat.write_sav(
        df, str(path), variable_value_labels={"segment": {1.0: "SMB", 2.0: "Enterprise"}}
    )
    out = validate_respondents(read_table(path))
    assert out.segment.tolist() == ["SMB", "Enterprise"]
    assert out.respondent_id.tolist() == ["1", "2"]


def test_error_names_file_row_column_and_expectation(tmp_path):
    text = VW + "r3,5,ten,20,30\n"
    with pytest.raises(InputError) as err:
        validate_vw(read_table(write(tmp_path, "vw.csv", text)))
    p = err.value.problems[0]
    assert (p.file, p.row, p.column) == ("vw.csv", 4, "cheap")
    assert "vw.csv, row 4, column 'cheap': expected a price" in str(err.value)
    assert "'ten'" in str(err.value)


def test_all_problems_are_collected(tmp_path):
    text = "respondent_id,too_cheap,cheap,expensive,too_expensive\nr1,x,10,20,30\nr1,5,10,,30\nr3,-5,10,20,y\n"
    with pytest.raises(InputError) as err:
        validate_vw(read_table(write(tmp_path, "vw.csv", text)))
    found = {(p.row, p.column) for p in err.value.problems}
    assert {
        (2, "too_cheap"),
        (3, "expensive"),
        (4, "too_cheap"),
        (4, "too_expensive"),
        (3, "respondent_id"),
    } <= found


def test_missing_column_and_empty_file(tmp_path):
    with pytest.raises(InputError, match="column 'too_expensive'"):
        validate_vw(
            read_table(
                write(tmp_path, "vw.csv", "respondent_id,too_cheap,cheap,expensive\nr1,1,2,3\n")
            )
        )
    with pytest.raises(InputError, match="empty file"):
        read_table(write(tmp_path, "vw.csv", ""))
    with pytest.raises(InputError, match="at least one data row"):
        validate_vw(
            read_table(
                write(tmp_path, "vw.csv", "respondent_id,too_cheap,cheap,expensive,too_expensive\n")
            )
        )


def test_maxdiff_long_two_best_names_the_task(tmp_path):
    text = "respondent_id,task,item,best,worst\nr1,1,a,1,0\nr1,1,b,1,0\nr1,1,c,0,1\n"
    with pytest.raises(InputError, match=r"exactly one best pick in task \('r1', '1'\)"):
        validate_maxdiff(read_table(write(tmp_path, "maxdiff.csv", text)))


def test_maxdiff_wide_layout_becomes_long(tmp_path):
    text = "respondent_id,task,item_1,item_2,item_3,best,worst\nr1,1,a,b,c,b,c\nr1,2,a,c,d,d,a\n"
    out = validate_maxdiff(read_table(write(tmp_path, "maxdiff.csv", text)))
    assert len(out) == 6
    assert out.loc[out.best == 1, "item"].tolist() == ["b", "d"]
    assert out.loc[out.worst == 1, "item"].tolist() == ["c", "a"]
    bad = "respondent_id,task,item_1,item_2,item_3,best,worst\nr1,1,a,b,c,z,c\n"
    with pytest.raises(InputError, match="row 2, column 'best'"):
        validate_maxdiff(read_table(write(tmp_path, "maxdiff.csv", bad)))


def test_conjoint_checks(tmp_path):
    head = "respondent_id,task,alt,colour,price,chosen,none\n"
    good = (
        head
        + "r1,1,1,red,10,1,0\nr1,1,2,blue,20,0,0\nr1,1,3,,,0,1\nr1,2,1,blue,10,0,0\nr1,2,2,red,20,0,0\nr1,2,3,,,1,1\n"
    )
    out = validate_conjoint(read_table(write(tmp_path, "conjoint.csv", good)))
    assert out.attrs["attributes"] == ["colour"]
    assert out["none"].sum() == 2 and out.price.isna().sum() == 2
    two = good.replace("r1,1,2,blue,20,0,0", "r1,1,2,blue,20,1,0")
    with pytest.raises(InputError, match="exactly one chosen"):
        validate_conjoint(read_table(write(tmp_path, "conjoint.csv", two)))
    text_price = good.replace("r1,1,2,blue,20", "r1,1,2,blue,cheap")
    with pytest.raises(InputError, match="row 3, column 'price'"):
        validate_conjoint(read_table(write(tmp_path, "conjoint.csv", text_price)))
    lonely = good.replace("r1,2,2,red,20", "r1,2,2,green,20")
    with pytest.raises(InputError, match="more than one task"):
        validate_conjoint(read_table(write(tmp_path, "conjoint.csv", lonely)))


def test_segments_and_customers_ranges(tmp_path):
    seg = "segment,customers,arpa,churn_rate,cac\nSMB,100,50,0.03,300\nEnt,10,500,1.2,9000\n"
    with pytest.raises(InputError, match="row 3, column 'churn_rate'"):
        validate_segments(read_table(write(tmp_path, "segments.csv", seg)))
    cust = "customer_id,segment,start_date,end_date\nc1,SMB,2024-01-01,\nc2,Nope,2024-01-01,2024-03-01\n"
    with pytest.raises(InputError, match="row 3, column 'segment'"):
        validate_customers(read_table(write(tmp_path, "customers.csv", cust)), segments=["SMB"])


def test_segment_join_must_agree_and_all_is_reserved(tmp_path):
    answers = validate_vw(
        read_table(
            write(
                tmp_path,
                "vw.csv",
                "respondent_id,too_cheap,cheap,expensive,too_expensive,segment\nr1,5,10,20,30,SMB\nr2,10,15,25,40,Ent\n",
            )
        )
    )
    resp = validate_respondents(
        read_table(
            write(
                tmp_path, "respondents.csv", "respondent_id,segment,weight\nr1,SMB,1.5\nr2,SMB,1\n"
            )
        )
    )
    with pytest.raises(InputError, match="respondents file says SMB"):
        attach_segments(answers, resp)
    # the same names up to case and spaces agree; the respondents file's spelling is kept
    loose = answers.assign(segment=[" smb", "SMB "])
    loose.attrs.update(answers.attrs)
    assert attach_segments(loose, resp).segment.tolist() == ["SMB", "SMB"]
    plain = validate_vw(read_table(write(tmp_path, "vw.csv", VW)))
    joined = attach_segments(plain, resp)
    assert joined.segment.tolist() == ["SMB", "SMB"] and joined.weight.tolist() == [1.5, 1.0]
    assert attach_segments(plain).segment.tolist() == ["all", "all"]
    missing = validate_respondents(
        read_table(write(tmp_path, "respondents.csv", "respondent_id,segment\nr1,SMB\n"))
    )
    with pytest.raises(InputError, match="row 3, column 'respondent_id'"):
        attach_segments(plain, missing)
    # the reserved name is refused where it is written: in the respondents file
    with pytest.raises(InputError, match="respondents.csv, row 2, column 'segment'.*reserved"):
        validate_respondents(
            read_table(
                write(tmp_path, "respondents.csv", "respondent_id,segment\nr1,all\nr2,SMB\n")
            )
        )


def test_study_reports_problems_of_every_file_together(tmp_path):
    (tmp_path / "study.toml").write_text(
        '[study]\nname="x"\n[data]\nvan_westendorp="vw.csv"\nsegments="segments.csv"\n'
    )
    write(tmp_path, "vw.csv", VW.replace("r2,10", "r2,abc"))
    write(tmp_path, "segments.csv", "segment,customers,arpa,churn_rate,cac\nA,-1,5,0.1,1\n")
    with pytest.raises(InputError) as err:
        load_study(tmp_path)
    files = {p.file for p in err.value.problems}
    assert files == {"vw.csv", "segments.csv"}
    (tmp_path / "study.toml").write_text('[data]\nmaxdiff="nope.csv"\n')
    with pytest.raises(InputError, match="data.maxdiff"):
        load_study(tmp_path)


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "price_points.csv").write_text("x")
        raise RuntimeError("boom")
    assert not out.exists() or not any(out.iterdir())
    assert not list(tmp_path.glob(".out.tmp-*"))
    with atomic_output_dir(out) as tmp:
        (tmp / "a.csv").write_text("ok")
    assert (out / "a.csv").read_text() == "ok"


def test_formula_neutralising_only_for_people():
    df = pd.DataFrame(
        {"feature": ["=HYPERLINK(1)", "+1", "plain", "@x"], "price": [1.0, -2.0, 3.0, 4.0]}
    )
    out = neutralise_formulas(df)
    assert out.feature.tolist() == ["'=HYPERLINK(1)", "'+1", "plain", "'@x"]
    assert out.price.tolist() == [1.0, -2.0, 3.0, 4.0]


# --------------------------------------------------------------------------------------------
# Mangled files never produce a traceback: either a clean frame or an InputError.

CELL = st.one_of(
    st.text(alphabet=string.printable, max_size=6),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-5, 500).map(str),
    st.just(""),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(
        st.sampled_from(
            [
                "respondent_id",
                "too_cheap",
                "cheap",
                "expensive",
                "too_expensive",
                "segment",
                "weight",
                "buy_cheap",
                "junk",
            ]
        ),
        min_size=0,
        max_size=8,
    ),
    rows=st.lists(st.lists(CELL, min_size=0, max_size=9), max_size=6),
    sep=st.sampled_from([",", ";", "\t"]),
    bom=st.booleans(),
)
def test_mangled_vw_files_fail_cleanly(tmp_path, header, rows, sep, bom):
    text = (
        ("\ufeff" if bom else "") + sep.join(header) + "\n" + "\n".join(sep.join(r) for r in rows)
    )
    path = tmp_path / "vw.csv"
    path.write_text(text, encoding="utf-8")
    try:
        df = attach_segments(validate_vw(read_table(path)))
    except InputError as exc:
        assert exc.problems and all(p.file == "vw.csv" for p in exc.problems)
        return
    from wtp.vanwestendorp import van_westendorp

    try:
        van_westendorp(df)
    except InputError:
        pass
    assert np.isfinite(df[["too_cheap", "cheap", "expensive", "too_expensive"]].to_numpy()).all()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2", ""]),
            st.sampled_from(["1", "2", "x"]),
            st.sampled_from(["a", "b", "c", ""]),
            st.sampled_from(["0", "1", "2", "", "yes"]),
            st.sampled_from(["0", "1", ""]),
        ),
        max_size=8,
    )
)
def test_mangled_maxdiff_files_fail_cleanly(tmp_path, rows):
    text = "respondent_id,task,item,best,worst\n" + "\n".join(",".join(r) for r in rows)
    path = tmp_path / "maxdiff.csv"
    path.write_text(text)
    try:
        out = validate_maxdiff(read_table(path))
    except InputError as exc:
        assert exc.problems
        return
    g = out.groupby(["respondent_id", "task"])
    assert (g.best.sum() == 1).all() and (g.worst.sum() == 1).all()


def test_errors_point_at_the_offending_row(tmp_path):
    two_best = "respondent_id,task,item,best,worst\nr1,1,a,0,1\nr1,1,b,1,0\nr1,1,c,1,0\n"
    with pytest.raises(InputError) as err:
        validate_maxdiff(read_table(write(tmp_path, "maxdiff.csv", two_best)))
    assert (err.value.problems[0].row, err.value.problems[0].column) == (4, "best")
    seg = "respondent_id,task,item,best,worst,segment\nr1,1,a,1,0,X\nr1,1,b,0,1,X\nr1,2,a,1,0,Y\nr1,2,b,0,1,X\n"
    with pytest.raises(InputError) as err:
        validate_maxdiff(read_table(write(tmp_path, "maxdiff.csv", seg)))
    assert [(p.row, p.found) for p in err.value.problems] == [(4, "Y")]
    wide = "respondent_id,task,item_1,item_2,item_3,best,worst\nr1,1,a,b,a,b,a\n"
    with pytest.raises(
        InputError, match="row 2, column 'item_3': expected an item not already shown"
    ):
        validate_maxdiff(read_table(write(tmp_path, "maxdiff.csv", wide)))
    none_filled = "respondent_id,task,alt,colour,price,chosen,none\nr1,1,1,red,10,1,0\nr1,1,2,,5,0,1\nr1,2,1,red,10,0,0\nr1,2,2,,,1,1\n"
    with pytest.raises(
        InputError, match="row 3, column 'price': expected an empty cell on the no-choice row"
    ):
        validate_conjoint(read_table(write(tmp_path, "conjoint.csv", none_filled)))


def test_rows_are_numbered_alike_in_every_format(tmp_path):
    df = pd.read_csv(pd.io.common.StringIO(VW)).astype({"cheap": object})
    df.loc[1, "cheap"] = "ten"
    rows = []
    for fmt in ("csv", "xlsx", "parquet"):
        path = tmp_path / f"vw.{fmt}"
        {
            "csv": lambda p: df.to_csv(p, index=False),
            "xlsx": lambda p: df.to_excel(p, index=False),
            "parquet": lambda p: df.astype(str).to_parquet(p),
        }[fmt](path)
        with pytest.raises(InputError) as err:
            validate_vw(read_table(path))
        rows.append(err.value.problems[0].row)
    assert rows == [3, 3, 3]


def test_output_folder_rules(tmp_path):
    from wtp.output import read_manifest

    out = tmp_path / "out"
    with atomic_output_dir(out) as tmp:
        (tmp / "a.csv").write_text("1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.csv").write_text("2")
    (out / "mine.txt").write_text("the analyst's own file")
    with atomic_output_dir(out) as tmp:
        (tmp / "a.csv").write_text("3")
    # results of the earlier run that this run did not write again are gone; other files stay
    assert (out / "a.csv").read_text() == "3" and not (out / "sub").exists()
    assert (out / "mine.txt").exists() and list(read_manifest(out)) == ["a.csv"]
    # an input file is never overwritten by a result
    src = write(tmp_path / "out", "a.csv", VW)
    read_table(src)
    with pytest.raises(InputError, match="would be overwritten"), atomic_output_dir(out) as tmp:
        (tmp / "a.csv").write_text("x")
    assert src.read_text() == VW
    # --out must be a folder
    with pytest.raises(InputError, match="existing file"), atomic_output_dir(src):
        pass


@pytest.mark.parametrize("spelling", ["all", "All", " ALL "])
def test_reserved_all_is_refused_in_any_case_in_the_file_that_holds_it(tmp_path, spelling):
    """Contract §5: `all` is reserved and names match after trimming and case-folding, so `All`
    is `all`; the error names the respondents file (where the value is), its rows and the value."""
    resp = write(
        tmp_path,
        "resp.csv",
        f"respondent_id,segment\nr1,{spelling}\nr2,SMB\nr3,{spelling}\n",
    )
    with pytest.raises(InputError) as err:
        validate_respondents(read_table(resp))
    text = str(err.value)
    assert "resp.csv, row 2, column 'segment'" in text and "resp.csv, row 4" in text
    assert f"found {spelling.strip()!r}" in text and "vw.csv" not in text
    assert len(err.value.problems) == 2
    # in an instrument's own segment column: the instrument file, once per respondent
    own = validate_vw(
        read_table(
            write(
                tmp_path,
                "vw.csv",
                "respondent_id,too_cheap,cheap,expensive,too_expensive,segment\n"
                f"r1,5,10,20,30,{spelling}\nr2,10,15,25,40,SMB\n",
            )
        )
    )
    with pytest.raises(InputError, match=r"vw.csv, row 2, column 'segment'.*reserved"):
        attach_segments(own)
    # segments.csv and customers.csv
    seg = write(
        tmp_path, "segments.csv", f"segment,customers,arpa,churn_rate,cac\n{spelling},10,5,0.1,9\n"
    )
    with pytest.raises(InputError, match=r"segments.csv, row 2, column 'segment'.*reserved"):
        validate_segments(read_table(seg))
    cust = write(
        tmp_path,
        "customers.csv",
        f"customer_id,segment,start_date,end_date\nc1,{spelling},2024-01-01,\n",
    )
    with pytest.raises(InputError, match=r"customers.csv, row 2, column 'segment'.*reserved"):
        validate_customers(read_table(cust))


def test_a_file_whose_only_segment_is_all_in_any_case_has_no_segments(tmp_path):
    """Every row `All` means "no segments": one segment spelled `all`, never `All` beside `all`."""
    resp = validate_respondents(
        read_table(write(tmp_path, "resp.csv", "respondent_id,segment\nr1,All\nr2, ALL\n"))
    )
    assert resp.segment.tolist() == ["all", "all"]
    plain = validate_vw(read_table(write(tmp_path, "vw.csv", VW)))
    assert attach_segments(plain, resp).segment.tolist() == ["all", "all"]


def test_a_missing_data_file_offers_the_closest_file_in_the_folder(tmp_path):
    """`van_westendorp = "vww.csv"` beside a vw.csv: exit 2 naming study.toml and the key, and
    now "did you mean 'vw.csv'?"; a missing FILE of a single-file command likewise."""
    write(tmp_path, "vw.csv", VW)
    (tmp_path / "study.toml").write_text('[study]\nname="x"\n[data]\nvan_westendorp="vww.csv"\n')
    with pytest.raises(InputError) as err:
        load_study(tmp_path)
    text = str(err.value)
    assert "column 'data.van_westendorp'" in text and "did you mean 'vw.csv'?" in text
    assert "found 'vww.csv'" in text
    with pytest.raises(
        InputError, match=r"vww.csv: expected an existing file \(did you mean 'vw.csv'\?\)"
    ):
        read_table(tmp_path / "vww.csv")
    # nothing close: no guess
    with pytest.raises(InputError) as err:
        read_table(tmp_path / "answers.csv")
    assert "did you mean" not in str(err.value)
