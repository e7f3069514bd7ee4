"""Reserved names, the study's segment order and slugs (wtp.schema)."""

import hashlib

import pandas as pd
import pytest

from wtp.schema import ALL, TOTAL, first_seen, ordered, segment_order, slug, sort_by_segment


def test_reserved_names_are_distinct_and_owned_here():
    import wtp.conjoint.estimate
    import wtp.io
    import wtp.vanwestendorp

    assert (ALL, TOTAL) == ("all", "total")
    # the modules that used to define their own copy now use this one
    assert (
        wtp.io.RESERVED_SEGMENT is ALL
        and wtp.conjoint.estimate.RESERVED_SEGMENT is ALL
        and wtp.vanwestendorp.ALL is ALL
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SMB", "smb"),
        ("Small & Medium  Business", "small-medium-business"),
        ("  Start-ups (EU) ", "-start-ups-eu-"),
        ("Ünternehmen", "-nternehmen"),
        ("a" * 60, "a" * 60),
    ],
)
def test_slug_by_hand(name, expected):
    assert slug(name) == expected


def test_long_slug_is_cut_and_keeps_names_apart():
    a, b = (
        "Enterprise customers in " + "x" * 50 + " A",
        "Enterprise customers in " + "x" * 50 + " B",
    )
    sa, sb = slug(a), slug(b)
    assert len(sa) == 60 and sa[:51] == slug(a.replace(" A", ""))[:51]
    assert sa.endswith("-" + hashlib.sha1(a.encode()).hexdigest()[:8])
    assert sa != sb


def test_first_seen_puts_reserved_last():
    assert first_seen(["b", "all", "a", "total", "b", None]) == ["b", "a", "all", "total"]


def test_segment_order_prefers_segments_then_respondents_then_answers():
    segs = pd.DataFrame({"segment": ["Enterprise", "SMB", "Startups"]})
    resp = pd.DataFrame({"segment": ["Startups", "SMB", "Startups", "Enterprise"]})
    answers = pd.DataFrame({"segment": ["smb ", "Solo", "Startups"]})
    assert segment_order(segs, resp, [answers]) == ["Enterprise", "SMB", "Startups", "Solo"]
    assert segment_order(None, resp, [answers]) == ["Startups", "SMB", "Enterprise", "Solo"]
    assert segment_order(None, None, [answers]) == ["smb ", "Solo", "Startups"]
    assert segment_order(None, None, [pd.DataFrame({"segment": ["all"]})]) == []


def test_ordered_and_sort_by_segment_follow_the_order_matching_case_and_spaces():
    order = ["Enterprise", "SMB"]
    assert ordered(["total", "SMB", "all", "New", "enterprise"], order) == [
        "enterprise",
        "SMB",
        "New",
        "all",
        "total",
    ]
    frame = pd.DataFrame(
        {"segment": ["all", " smb", "New", "Enterprise", "SMB"], "row": [2, 3, 4, 5, 6]},
        index=[10, 11, 12, 13, 14],
    )
    frame.attrs["source"] = "vw.csv"
    out = sort_by_segment(frame, order)
    assert out["row"].tolist() == [
        5,
        3,
        6,
        4,
        2,
    ]  # stable within a segment; index (row numbers) kept
    assert out.index.tolist() == [13, 11, 14, 12, 10] and out.attrs["source"] == "vw.csv"


def test_study_tables_and_pages_use_the_segments_csv_order(tmp_path):
    """segments.csv lists Enterprise first; every instrument's table and the pages follow it."""
    from types import SimpleNamespace

    import numpy as np

    from wtp.conjoint import estimate_conjoint
    from wtp.maxdiff import estimate_maxdiff
    from wtp.report.study import segment_names
    from wtp.simulate import simulate_study
    from wtp.study import load_study
    from wtp.vanwestendorp import van_westendorp

    folder = tmp_path / "study"
    simulate_study(folder, n_respondents=240, seed=11)
    segs = pd.read_csv(folder / "segments.csv")
    segs = segs.iloc[::-1].reset_index(
        drop=True
    )  # a different order than the answers' first appearance
    segs.to_csv(folder / "segments.csv", index=False)
    want = segs["segment"].tolist()
    study = load_study(folder)
    assert list(study.segment_order) == want
    assert segment_names(SimpleNamespace(study=study)) == want
    vw = van_westendorp(study.vw)
    md = estimate_maxdiff(study.maxdiff, method="counts", rng=np.random.default_rng(0))
    cj = estimate_conjoint(study.conjoint, levels=study.attribute_levels or None)
    assert vw.price_points["segment"].tolist() == [*want, ALL]
    assert list(dict.fromkeys(md.item_scores["segment"])) == [*want, ALL]
    assert list(dict.fromkeys(cj.partworths["segment"])) == [*want, ALL]
