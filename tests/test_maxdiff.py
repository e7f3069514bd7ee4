"""Tests for wtp.maxdiff: design, counts, logit, hierarchical Bayes wrapper, shares, CLI."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from wtp.cli import app
from wtp.errors import InputError
from wtp.maxdiff import (
    _bw_choices,
    _bw_loglik,
    _counts_utility,
    _fit_frame,
    counts_scores,
    d_efficiency,
    design_balance,
    design_maxdiff,
    estimate_maxdiff,
    fit_logit,
    prepare_maxdiff_data,
    probability_shares,
)
from wtp.simulate import simulate_maxdiff

# --------------------------------------------------------------------------------------------
# design


@pytest.mark.parametrize(
    ("n_items", "per_task", "n_tasks", "n_versions"),
    [(15, 5, 12, 10), (12, 4, 10, 3), (7, 3, 7, 1), (20, 5, 10, 2), (5, 2, 10, 2)],
)
def test_design_is_balanced(n_items, per_task, n_tasks, n_versions):
    d = design_maxdiff(n_items, per_task, n_tasks, n_versions, rng=np.random.default_rng(3))
    assert list(d.columns) == ["version", "task", "position", "item"]
    assert len(d) == n_items * 0 + per_task * n_tasks * n_versions
    assert set(d["item"]) <= {str(i) for i in range(1, n_items + 1)}
    assert d["item"].map(type).eq(str).all()
    # no item twice in a task; positions 1..k
    assert not d.duplicated(["version", "task", "item"]).any()
    assert (
        d.groupby(["version", "task"])["position"].apply(sorted).map(tuple)
        == tuple(range(1, per_task + 1))
    ).all()
    # items equally often (±1) within each version
    counts = d.groupby(["version", "item"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=[str(i) for i in range(1, n_items + 1)], fill_value=0)
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1
    b = design_balance(d)
    assert b.d_efficiency > 0.99
    # pooled pairs within 3 of each other; positions within 2
    assert b.pair_counts["together"].max() - b.pair_counts["together"].min() <= 3
    pos = b.position_counts.drop(columns="item").to_numpy()
    assert pos.max() - pos.min() <= 2


def test_design_finds_a_bibd_when_one_exists():
    # (7, 3, 7) is the Fano plane; (13, 4, 13) the projective plane of order 3
    for k, per, t in [(7, 3, 7), (13, 4, 13), (7, 4, 7)]:
        d = design_maxdiff(k, per, t, rng=np.random.default_rng(0))
        b = design_balance(d)
        assert b.pair_counts["together"].nunique() == 1
        assert b.d_efficiency == pytest.approx(1.0)


def test_design_seeded_and_labelled():
    a = design_maxdiff(8, 4, 6, 2, rng=np.random.default_rng(5))
    b = design_maxdiff(8, 4, 6, 2, rng=np.random.default_rng(5))
    pd.testing.assert_frame_equal(a, b)
    labels = list("ABCDEFGH")
    c = design_maxdiff(8, 4, 6, 2, items=labels, rng=np.random.default_rng(5))
    assert set(c["item"]) == set(labels)


def test_design_rejects_bad_arguments():
    with pytest.raises(InputError):
        design_maxdiff(5, 5, 4)
    with pytest.raises(InputError):
        design_maxdiff(5, 3, 4, items=["a", "b"])


def test_d_efficiency_hand_cases():
    # every pair once (BIBD) -> 1; an item never shown -> 0
    fano = [
        np.array(t) - 1
        for t in [(1, 2, 3), (1, 4, 5), (1, 6, 7), (2, 4, 6), (2, 5, 7), (3, 4, 7), (3, 5, 6)]
    ]
    assert d_efficiency(fano, 7) == pytest.approx(1.0)
    assert d_efficiency([np.array([0, 1]), np.array([1, 2])], 4) == 0.0
    # all pairs of 4 items in tasks of 2: complete block -> 1; a lopsided design is below 1
    assert d_efficiency(
        [np.array(p) for p in itertools.combinations(range(4), 2)], 4
    ) == pytest.approx(1.0)
    lop = [np.array([0, 1])] * 3 + [np.array([1, 2]), np.array([2, 3])]
    assert 0 < d_efficiency(lop, 4) < 0.95
    # for pairs the best-worst information at equal utilities is 1/4 (x_a - x_b)(x_a - x_b)'
    # per task (the worst pick is implied); check the trace through the figure's denominator
    from wtp.maxdiff import _bw_information

    info = _bw_information([np.array([0, 1])], 3)
    assert np.allclose(info, np.array([[0.25, -0.25, 0], [-0.25, 0.25, 0], [0, 0, 0]]))


def test_design_report_text():
    d = design_maxdiff(6, 3, 4, 2, rng=np.random.default_rng(1))
    text = design_balance(d).text()
    assert "D-efficiency" in text and "Position balance" in text and "Pairs shown together" in text


# --------------------------------------------------------------------------------------------
# data preparation, formulas


# PyTensor's C backend (unused: models run through numba) warns about BLAS on pip installs
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def _answers(rows):
    """rows: (respondent, task, item, best, worst[, segment])"""
    cols = ["respondent_id", "task", "item", "best", "worst", "segment"][: len(rows[0])]
    return pd.DataFrame(rows, columns=cols)


TINY = _answers(
    [
        ("r1", 1, "a", 1, 0),
        ("r1", 1, "b", 0, 0),
        ("r1", 1, "c", 0, 1),
        ("r1", 2, "a", 0, 1),
        ("r1", 2, "b", 1, 0),
        ("r1", 2, "d", 0, 0),
        ("r2", 1, "b", 0, 1),
        ("r2", 1, "c", 1, 0),
        ("r2", 1, "d", 0, 0),
    ]
)


def test_prepare_arrays():
    md = prepare_maxdiff_data(TINY)
    assert md.items == ["a", "b", "c", "d"]
    assert md.respondent_ids == ["r1", "r2"]
    assert md.k == 3 and md.n_tasks == 3
    assert md.shown.tolist() == [[0, 1, 2], [0, 1, 3], [1, 2, 3]]
    assert md.best.tolist() == [0, 1, 1] and md.worst.tolist() == [2, 0, 0]
    assert md.segments == ["all"] and md.weight.tolist() == [1.0, 1.0]
    ch = _bw_choices(md)
    # 3 best choices + 3 worst choices (among the two left), grouped by respondent
    assert len(ch.sign) == 6 and ch.resp.tolist() == [0, 0, 0, 0, 1, 1]
    worst_sets = ch.items[ch.sign < 0]
    assert (worst_sets >= 0).sum(axis=1).tolist() == [2, 2, 2]


def test_prepare_names_the_broken_task():
    bad = TINY.copy()
    bad.loc[1, "best"] = 1  # task (r1, 1) now has two best picks
    with pytest.raises(InputError, match=r"Task \('r1', '1'\): exactly one best pick"):
        prepare_maxdiff_data(bad)


def test_probability_shares_hand_case():
    # centred u = (ln2, 0, -ln2), k = 3: p = 2/4, 1/3, (1/2)/(5/2) -> rescaled to 100
    p = np.array([0.5, 1 / 3, 0.2])
    expected = 100 * p / p.sum()
    got = probability_shares(np.array([math.log(2) + 5, 5, 5 - math.log(2)]), 3)
    assert np.allclose(got, expected)
    assert np.allclose(probability_shares(np.zeros(4), 4), 25.0)


def test_counts_hand_case():
    md = prepare_maxdiff_data(TINY)
    sc = counts_scores(md, rng=np.random.default_rng(0), n_boot=50).set_index("item")
    # a: shown 2, best 1, worst 1; b: shown 3, best 1, worst 1; c: shown 2, best 1, worst 1;
    # d: shown 2, best 0, worst 0 -> all ratios 1 -> utilities 0, equal shares
    assert sc["shown"].tolist() == [2, 3, 2, 2]
    assert np.allclose(sc["utility"], 0.0) and np.allclose(sc["share"], 25.0)
    # the contract's formula on a lopsided item, zero-centred over items
    u = _counts_utility(np.array([4.0, 4.0]), np.array([3.0, 0.0]), np.array([0.0, 2.0]))
    raw = np.array([0.5 * math.log(7 / 1), 0.5 * math.log(2 / 6)])
    assert np.allclose(u, raw - raw.mean())


def test_counts_zero_cell_is_finite():
    u = _counts_utility(np.array([2.0, 2.0]), np.array([2.0, 0.0]), np.array([0.0, 2.0]))
    assert np.isfinite(u).all() and u[0] > 0 > u[1]


def test_bw_loglik_hand_case_and_derivatives():
    # one task {a, b, c}, u = (1, 0, -1): best a, then worst c among {b, c} with -u
    md = prepare_maxdiff_data(
        _answers([("r", 1, "a", 1, 0), ("r", 1, "b", 0, 0), ("r", 1, "c", 0, 1)])
    )
    ch = _bw_choices(md)
    u = np.array([1.0, 0.0, -1.0])
    ll, g, H = _bw_loglik(u, ch, np.ones(len(ch.sign)), 3)
    expected = math.log(math.e / (math.e + 1 + math.exp(-1))) + math.log(math.e / (1 + math.e))
    assert ll == pytest.approx(expected)
    eps = 1e-6
    for i in range(3):
        d = np.zeros(3)
        d[i] = eps
        lp, gp, _ = _bw_loglik(u + d, ch, np.ones(len(ch.sign)), 3)
        assert (lp - ll) / eps == pytest.approx(g[i], abs=1e-5)
        assert np.allclose((gp - g) / eps, H[:, i], atol=1e-5)


def test_logit_weights_equal_duplicated_respondents():
    sim = simulate_maxdiff(40, 6, 3, 6, n_versions=2, segments=None, seed=2)
    a = sim.answers.drop(columns="segment")
    first = a["respondent_id"] == a["respondent_id"].iloc[0]
    dup = pd.concat([a, a[first].assign(respondent_id="copy")], ignore_index=True)
    weighted = a.assign(weight=np.where(first, 2.0, 1.0))
    f1 = fit_logit(prepare_maxdiff_data(dup))
    f2 = fit_logit(prepare_maxdiff_data(weighted))
    assert np.allclose(f1.utility, f2.utility, atol=1e-6)
    c1 = counts_scores(prepare_maxdiff_data(dup), rng=np.random.default_rng(0), n_boot=20)
    c2 = counts_scores(prepare_maxdiff_data(weighted), rng=np.random.default_rng(0), n_boot=20)
    assert np.allclose(c1["share"], c2["share"])


def test_rlh_at_equal_utilities_is_chance():
    md = prepare_maxdiff_data(TINY)
    fit = _fit_frame(md, np.zeros((2, 4)), threshold=0.0)
    # every choice here is best among 3 then worst among 2: chance = sqrt(1/3 * 1/2)
    assert np.allclose(fit["rlh"], math.sqrt(1 / 6))
    assert np.allclose(fit["chance_rlh"], math.sqrt(1 / 6))
    assert np.allclose(fit["pct_certainty"], 0.0)


# --------------------------------------------------------------------------------------------
# recovery (fast versions)


@pytest.fixture(scope="module")
def sim300():
    return simulate_maxdiff(300, 12, 4, 10, seed=11)


def _share_r(result, sim):
    m = result.item_scores.merge(sim.segment_shares, on=["segment", "item"], suffixes=("", "_true"))
    return m.groupby("segment").apply(
        lambda g: np.corrcoef(g["share"], g["share_true"])[0, 1], include_groups=False
    )


@pytest.mark.parametrize("method", ["counts", "logit"])
def test_aggregate_recovery(sim300, method):
    res = estimate_maxdiff(sim300.answers, method=method, rng=np.random.default_rng(1))
    assert set(res.item_scores["segment"]) == {"Startups", "SMB", "Mid-market", "all"}
    sums = res.item_scores.groupby("segment")["share"].sum()
    assert np.allclose(sums, 100.0)
    assert (res.item_scores["lower"] <= res.item_scores["share"]).all()
    assert (res.item_scores["share"] <= res.item_scores["upper"]).all()
    r = _share_r(res, sim300)
    # aggregate utilities of a heterogeneous segment are attenuated but ordered right
    assert r["all"] >= 0.97 and r.min() >= 0.9
    assert res.individual_utilities.empty
    assert list(res.individual_utilities.columns) == ["respondent_id", "segment", "item", "utility"]
    assert {"rlh", "pct_certainty", "random_like"} <= set(res.respondent_fit.columns)
    assert res.converged


def test_logit_intervals_cover_truth(sim300):
    res = estimate_maxdiff(sim300.answers, method="logit", rng=np.random.default_rng(1))
    s = res.item_scores[res.item_scores["segment"] == "all"]
    assert (s["upper"] - s["lower"]).between(0.3, 5).all()
    # logit utilities and the counts utilities rank items the same way
    c = estimate_maxdiff(sim300.answers, method="counts", rng=np.random.default_rng(1)).item_scores
    a = s.set_index("item")["utility"].rank()
    b = c[c["segment"] == "all"].set_index("item")["utility"].rank()
    assert a.corr(b.loc[a.index]) > 0.95


# --------------------------------------------------------------------------------------------
# hierarchical Bayes (tiny by default; recovery in slow tests)


@pytest.fixture(scope="module")
def tiny_hb():
    sim = simulate_maxdiff(60, 8, 4, 8, n_versions=4, seed=3)
    res = estimate_maxdiff(
        sim.answers,
        method="hb",
        rng=np.random.default_rng(1),
        draws=150,
        tune=150,
        chains=2,
        progress=False,
        until_converged=False,
    )
    return sim, res


def test_hb_result_shape(tiny_hb):
    sim, res = tiny_hb
    s = res.item_scores
    assert list(s.columns[:2]) == ["segment", "item"]
    assert {"utility", "share", "lower", "upper"} <= set(s.columns)
    assert np.allclose(s.groupby("segment")["share"].sum(), 100.0)
    assert (s["lower"] <= s["share"]).all() and (s["share"] <= s["upper"]).all()
    iu = res.individual_utilities
    assert list(iu.columns) == ["respondent_id", "segment", "item", "utility"]
    assert len(iu) == 60 * 8
    assert np.allclose(iu.groupby("respondent_id")["utility"].sum(), 0.0, atol=1e-9)
    for key in (
        "max_rhat",
        "min_ess_bulk",
        "min_ess_tail",
        "divergences",
        "mean_rlh",
        "individual_max_rhat",
        "compile_s",
        "sample_s",
    ):
        assert key in res.diagnostics
    assert res.diagnostics["by_variable"]["share"]["max_rhat"] is not None
    assert len(res.respondent_fit) == 60
    assert isinstance(res.converged, bool)
    assert res.summary().columns[0] == "item"
    # segment 'all' utilities are the (weighted) mean of the individual ones
    mean_u = iu.groupby("item")["utility"].mean()
    all_u = s[s["segment"] == "all"].set_index("item")["utility"]
    assert np.allclose(mean_u.loc[all_u.index], all_u, atol=1e-9)
    iu_t = iu.merge(sim.individual_utilities, on=["respondent_id", "item"])
    assert np.corrcoef(iu_t["utility_x"], iu_t["utility_y"])[0, 1] > 0.6


def test_hb_shares_average_individual_shares(tiny_hb):
    _, res = tiny_hb
    # the segment share is the mean over draws of the mean individual share, so it differs from
    # the share of the mean utility (the rule the report states)
    iu = res.individual_utilities.pivot(index="respondent_id", columns="item", values="utility")
    of_mean = probability_shares(iu.mean().to_numpy(), res.k)
    s = res.item_scores[res.item_scores["segment"] == "all"].set_index("item").loc[iu.columns]
    assert not np.allclose(s["share"].to_numpy(), of_mean, atol=1e-3)
    assert np.corrcoef(s["share"], of_mean)[0, 1] > 0.98


def test_hb_shares_are_the_checked_share_draws(tiny_hb):
    """The reported shares reuse the share draws the convergence checks computed, and those
    equal numpy's probability shares of the reported individual draws."""
    from wtp.maxdiff import prepare_maxdiff_data
    from wtp.maxdiff.design import _contrast_basis

    sim, res = tiny_hb
    kept = res.hb.extra_draws["share"]
    assert kept.shape == (2, 150, 4, 8)  # chain × draw × (3 segments + all) × item
    md = prepare_maxdiff_data(sim.answers)
    u = res.hb.beta_draws @ _contrast_basis(md.n_items).T
    mean_all = probability_shares(u, md.k).mean(axis=1).mean(axis=0)
    np.testing.assert_allclose(kept[:, :, -1].mean(axis=(0, 1)), mean_all, rtol=1e-10)
    s = res.item_scores[res.item_scores["segment"] == "all"].set_index("item").loc[md.items]
    np.testing.assert_allclose(s["share"], mean_all, rtol=1e-10)


def test_hb_posterior_saved(tiny_hb, tmp_path):
    _, res = tiny_hb
    res.save_posterior(tmp_path / "p.nc")
    import arviz as az

    idata = az.from_netcdf(tmp_path / "p.nc")
    assert {"mu", "sd", "corr", "beta"} <= set(idata.posterior.data_vars)


# --------------------------------------------------------------------------------------------
# real data


def _rice():
    path = DATASETS / "supportBWS_ricebws1" / "ricebws1_long.csv"
    if not path.exists():
        pytest.skip("shared datasets not available")
    from wtp.io import attach_segments, read_table, validate_maxdiff

    raw = read_table(path).rename(columns={"respondent": "respondent_id", "age_group": "segment"})
    return attach_segments(
        validate_maxdiff(raw.drop(columns=["highest_price_paid_group", "values_low_chem"]))
    )


def _vdata():
    path = DATASETS / "bwsTools_vdata_issues" / "vdata_long.csv"
    if not path.exists():
        pytest.skip("shared datasets not available")
    from wtp.io import attach_segments, validate_maxdiff

    raw = pd.read_csv(path, dtype=str)
    value = raw["value"].astype(int)
    long = pd.DataFrame(
        {
            "respondent_id": raw["id"],
            "task": raw["block"],
            "item": raw["issue"],
            "best": (value == 1).astype(int),
            "worst": (value == -1).astype(int),
        }
    )
    return attach_segments(validate_maxdiff(long))


@pytest.mark.parametrize("loader", [_rice, _vdata], ids=["ricebws1", "vdata"])
def test_real_data_logit_ranks_agree_with_counts(loader):
    answers = loader()
    counts = estimate_maxdiff(answers, method="counts", rng=np.random.default_rng(0)).item_scores
    logit = estimate_maxdiff(answers, method="logit", rng=np.random.default_rng(0)).item_scores
    a = counts[counts["segment"] == "all"].set_index("item")["utility"]
    b = logit[logit["segment"] == "all"].set_index("item")["utility"].loc[a.index]
    assert a.rank().corr(b.rank()) >= 0.95
    assert a.idxmax() == b.idxmax() and a.idxmin() == b.idxmin()


def test_ricebws1_known_order():
    # in these answers safety has the highest best-minus-worst score and wash-free rice the
    # lowest; the count utility must order the extremes the same way
    res = estimate_maxdiff(_rice(), method="counts", rng=np.random.default_rng(0))
    s = res.item_scores[res.item_scores["segment"] == "all"].set_index("item")
    assert set(s.index) == {
        "Place_of_origin",
        "Variety",
        "Price",
        "Taste",
        "Safety",
        "Washfree_rice",
        "Milling_date",
    }
    assert s["bw_score"].idxmax() == s["utility"].idxmax() == "Safety"
    assert s["bw_score"].idxmin() == s["utility"].idxmin() == "Washfree_rice"
    assert set(res.item_scores["segment"]) == {"1", "2", "3", "all"}


# --------------------------------------------------------------------------------------------
# command line


def test_cli_design(tmp_path):
    out = tmp_path / "d"
    r = CliRunner().invoke(
        app,
        [
            "design",
            "maxdiff",
            "--items",
            "15",
            "--per-task",
            "5",
            "--tasks",
            "12",
            "--versions",
            "10",
            "--out",
            str(out),
            "--seed",
            "4",
        ],
    )
    assert r.exit_code == 0, r.output
    d = pd.read_csv(out / "design.csv", dtype={"item": str})
    assert list(d.columns) == ["version", "task", "position", "item"] and len(d) == 600
    text = (out / "design_report.txt").read_text()
    assert "D-efficiency" in text
    again = tmp_path / "d2"
    CliRunner().invoke(
        app,
        [
            "design",
            "maxdiff",
            "--items",
            "15",
            "--per-task",
            "5",
            "--tasks",
            "12",
            "--versions",
            "10",
            "--out",
            str(again),
            "--seed",
            "4",
        ],
    )
    assert (out / "design.csv").read_text() == (again / "design.csv").read_text()


@pytest.mark.parametrize("method", ["counts", "logit"])
def test_cli_aggregate(tmp_path, sim300, method):
    f = tmp_path / "maxdiff.csv"
    sim300.answers.to_csv(f, index=False)
    out = tmp_path / method
    r = CliRunner().invoke(
        app, ["maxdiff", str(f), "--method", method, "--out", str(out), "--seed", "2"]
    )
    assert r.exit_code == 0, r.output
    s = pd.read_csv(out / "item_scores.csv")
    assert list(s.columns[:6]) == ["segment", "item", "utility", "share", "lower", "upper"]
    assert np.allclose(s.groupby("segment")["share"].sum(), 100)
    html = (out / "report.html").read_text()
    assert "<svg" in html and "Diagnostics" in html
    assert json.loads((out / "diagnostics.json").read_text())["method"] == method


def test_cli_hb(tmp_path, tiny_hb):
    sim, _ = tiny_hb
    f = tmp_path / "maxdiff.csv"
    sim.answers.to_csv(f, index=False)
    out = tmp_path / "hb"
    r = CliRunner().invoke(
        app,
        [
            "maxdiff",
            str(f),
            "--out",
            str(out),
            "--draws",
            "150",
            "--tune",
            "150",
            "--chains",
            "2",
            "--no-progress",
            "--save-posterior",
            "--time-budget",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    for name in (
        "item_scores.csv",
        "individual_utilities.csv",
        "diagnostics.json",
        "posterior.nc",
        "report.html",
        "turf.csv",
    ):
        assert (out / name).exists(), name
    iu = pd.read_csv(out / "individual_utilities.csv")
    assert list(iu.columns[:3]) == ["respondent_id", "item", "utility"]
    diag = json.loads((out / "diagnostics.json").read_text())
    for key in ("max_rhat", "min_ess_bulk", "mean_rlh", "divergences", "converged"):
        assert key in diag
    html = (out / "report.html").read_text()
    if not diag["converged"]:
        # non-convergence is loud in the report and on the terminal
        assert "Not converged" in html and "NOT CONVERGED" in r.output


def test_cli_bad_input_exit_2(tmp_path):
    bad = TINY.copy()
    bad.loc[1, "best"] = 1
    f = tmp_path / "bad.csv"
    bad.to_csv(f, index=False)
    r = CliRunner().invoke(
        app, ["maxdiff", str(f), "--method", "counts", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2
    assert "bad.csv" in r.output and "best" in r.output
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(
        app, ["maxdiff", str(f), "--method", "nope", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 2


# --------------------------------------------------------------------------------------------
# slow: full recovery on a realistic design


@pytest.mark.slow
def test_hb_recovery_full():
    sim = simulate_maxdiff(750, 12, 4, 10, seed=21)
    res = estimate_maxdiff(sim.answers, method="hb", rng=np.random.default_rng(5), progress=False)
    r = _share_r(res, sim)
    iu = res.individual_utilities.merge(sim.individual_utilities, on=["respondent_id", "item"])
    r_ind = np.corrcoef(iu["utility_x"], iu["utility_y"])[0, 1]
    print(
        "segment share r",
        r.round(4).to_dict(),
        "individual r",
        round(r_ind, 4),
        res.diagnostics["max_rhat"],
        res.diagnostics["min_ess_bulk"],
    )
    assert r.min() >= 0.97
    assert r_ind >= 0.75
    assert res.diagnostics["divergences"] == 0


# --------------------------------------------------------------------------------------------
# random-answering flag: false alarms on honest respondents from a world the model does not assume


def _flag_on_honest_world(n_tasks: int, n: int = 600, seed: int = 7):
    """Honest respondents whose utilities are heavy-tailed (t, 3 df) and who differ in how
    consistently they answer (log-normal scale): the HB population (normal) is wrong for them.
    The flag gets the population a normal fit would report (moments of the true utilities)
    and each respondent's posterior mode as their estimate."""
    from wtp.hb import map_individual
    from wtp.maxdiff import (
        _contrast_basis,
        _honest_respondents,
        _random_flag,
        _random_respondents,
        maxdiff_choice_data,
    )

    md0 = prepare_maxdiff_data(simulate_maxdiff(n, 12, 4, n_tasks, seed=4).answers)
    rng = np.random.default_rng(seed)
    U = np.linspace(-1.5, 1.5, 12) + 0.5 * rng.standard_t(3, size=(n, 12))
    U *= rng.lognormal(0.0, 0.5, size=(n, 1))
    U -= U.mean(axis=1, keepdims=True)
    honest = _honest_respondents(md0, U, rng)
    Q = _contrast_basis(12)
    B = U @ Q
    centre, cov = B.mean(axis=0), np.cov(B.T)
    own, _ = maxdiff_choice_data(honest, segment_means=False)
    estimates = map_individual(own, centre, cov)
    randoms = _random_respondents(honest, 500, rng)
    flag = _random_flag(
        honest, centre[None], np.zeros(n, dtype=int), estimates, centre, cov, Q, randoms, 500, rng
    )
    return float(np.mean(flag["rlh_mode"] <= flag["rlh_random_threshold"])), flag


def test_random_flag_false_alarms_on_honest_respondents():
    # 600 honest respondents: a 5% rate has a standard error of 0.9 points
    fp, flag = _flag_on_honest_world(10)
    print("10 tasks: false alarms", fp, "detection", flag["random_detection_rate"])
    assert fp <= 0.065
    # this world is hard (noisy honest respondents look random); about half are still caught
    assert flag["random_detection_rate"] >= 0.4
    # three tasks of four cannot tell: the flag says so instead of flagging half the sample
    fp3, flag3 = _flag_on_honest_world(3)
    print("3 tasks: false alarms", fp3, "detection", flag3["random_detection_rate"])
    assert fp3 <= 0.065 and not flag3["random_flag_reliable"]


def test_straight_lining_screen():
    sim = simulate_maxdiff(40, 8, 4, 8, n_versions=4, seed=2)
    a = sim.answers.copy()
    # respondent r001 always picks the first item on screen as best (the second as worst)
    first = a["respondent_id"] == a["respondent_id"].iloc[0]
    pos = a[first].groupby("task").cumcount()
    a.loc[first, "best"] = (pos == 0).astype(int).to_numpy()
    a.loc[first, "worst"] = (pos == 1).astype(int).to_numpy()
    res = estimate_maxdiff(a, method="counts", rng=np.random.default_rng(0))
    fit = res.respondent_fit.set_index("respondent_id")
    assert fit.loc[a["respondent_id"].iloc[0], "straight_lining"]
    assert fit.loc[a["respondent_id"].iloc[0], "same_position_best"] == 1.0
    assert fit["straight_lining"].sum() == 1 and res.diagnostics["n_straight_lining"] == 1


# --------------------------------------------------------------------------------------------
# slow: converged by default on three study sizes


@pytest.mark.slow
@pytest.mark.parametrize(
    ("n_resp", "n_items", "n_tasks", "seed"),
    [(150, 8, 8, 31), (400, 12, 10, 32), (750, 12, 10, 33)],
)
def test_hb_converges_by_default(n_resp, n_items, n_tasks, seed):
    # library defaults, except a time budget generous enough for a shared, busy test machine
    sim = simulate_maxdiff(n_resp, n_items, 4, n_tasks, seed=seed)
    res = estimate_maxdiff(
        sim.answers, method="hb", rng=np.random.default_rng(seed), progress=False, time_budget=1800
    )
    d = res.diagnostics
    print(
        n_resp,
        "respondents:",
        d["draws_per_chain"],
        "draws per chain,",
        len(d["sampling"]),
        "checks,",
        d["total_s"],
        "s",
    )
    assert res.converged, d["limiting"]
    assert d["max_rhat"] <= 1.01 and d["min_ess_bulk"] >= 400 and d["min_ess_tail"] >= 400
    assert (
        d["individual_max_rhat"] <= 1.01
        and d["individual_min_ess_bulk"] >= 400
        and d["divergences"] == 0
    )
    assert d["sampling"][-1]["stopped_because"] == "converged"
    assert _share_r(res, sim).min() >= 0.95
    iu = res.individual_utilities.merge(sim.individual_utilities, on=["respondent_id", "item"])
    assert np.corrcoef(iu["utility_x"], iu["utility_y"])[0, 1] >= 0.7
    # honest simulated respondents: the random-answering flag marks about 5% of them
    assert res.diagnostics["share_random_like"] <= 0.08
