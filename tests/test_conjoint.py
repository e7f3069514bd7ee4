"""Choice-based conjoint: designs, MNL estimation, WTP, importances, simulator, CLI, real data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wtp.conjoint import (
    demand_curve,
    design_conjoint,
    estimate_conjoint,
    evaluate_design,
    extrapolation,
    prepare_choice_data,
    simulate_market,
)
from wtp.errors import InputError
from wtp.io import attach_segments, validate_conjoint

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

ATTRS = {
    "brand": ["A", "B", "C", "D"],
    "speed": ["slow", "fast"],
    "support": ["email", "chat", "phone"],
}
PRICES = [10.0, 20.0, 30.0, 40.0]


def _answers(frame: pd.DataFrame) -> pd.DataFrame:
    return attach_segments(validate_conjoint(frame))


# ----------------------------------------------------------------------------------------------
# Design


def test_design_layout_and_none_rows():
    d = design_conjoint(
        ATTRS, PRICES, n_tasks=6, n_alts=3, n_versions=4, rng=np.random.default_rng(1)
    )
    assert list(d.columns) == [
        "version",
        "task",
        "alt",
        "brand",
        "speed",
        "support",
        "price",
        "none",
    ]
    assert len(d) == 4 * 6 * 4
    blank = d[d["none"] == 1]
    assert len(blank) == 4 * 6
    assert blank[["brand", "speed", "support"]].isna().all().all() and blank["price"].isna().all()
    assert (blank["alt"] == 4).all()
    real = d[d["none"] == 0]
    assert set(real["price"]) == set(PRICES)
    no_none = design_conjoint(ATTRS, PRICES, n_tasks=6, none=False, rng=np.random.default_rng(1))
    assert "none" not in no_none.columns and len(no_none) == 10 * 6 * 3


def test_design_level_balance_and_reproducible():
    d = design_conjoint(
        ATTRS, PRICES, n_tasks=12, n_alts=3, n_versions=10, rng=np.random.default_rng(7)
    )
    again = design_conjoint(
        ATTRS, PRICES, n_tasks=12, n_alts=3, n_versions=10, rng=np.random.default_rng(7)
    )
    pd.testing.assert_frame_equal(d, again)
    report = evaluate_design(d)
    summary = report.summary()
    # greedy least-used-first keeps every attribute within two showings of perfect balance
    assert (summary["max_count"] - summary["min_count"] <= 2).all()
    rnd = design_conjoint(ATTRS, PRICES, method="random", rng=np.random.default_rng(7))
    s2 = evaluate_design(rnd).summary()
    assert (s2["max_count"] - s2["min_count"] <= 1).all()


def test_balanced_overlap_is_minimal_but_not_zero():
    rng = np.random.default_rng(3)
    bal = evaluate_design(
        design_conjoint(ATTRS, PRICES, method="balanced", rng=rng)
    ).overlap.set_index("attribute")
    rnd = evaluate_design(
        design_conjoint(ATTRS, PRICES, method="random", rng=rng)
    ).overlap.set_index("attribute")
    for a in ("brand", "support", "price"):
        assert 0 < bal.loc[a, "tasks_with_repeat"] < rnd.loc[a, "tasks_with_repeat"]
    # a 2-level attribute in triples must repeat
    assert bal.loc["speed", "tasks_with_repeat"] == 1.0


def test_design_has_no_identical_alternatives():
    d = design_conjoint(
        {"a": ["x", "y"], "b": ["u", "v"]},
        [1, 2],
        n_tasks=12,
        n_alts=3,
        rng=np.random.default_rng(0),
    )
    real = d[d["none"] == 0]
    assert not real.duplicated(["version", "task", "a", "b", "price"]).any()


def test_d_error_hand_computed():
    # one 2-level attribute and two prices, two tasks of two alternatives, p = 1/2:
    # info = [[.25,.25],[.25,.25]] + [[.25,-.25],[-.25,.25]] = diag(.5,.5); D = det^(-1/2) = 2
    d = pd.DataFrame(
        {
            "version": 1,
            "task": [1, 1, 2, 2],
            "alt": [1, 2, 1, 2],
            "a": ["A", "B", "A", "B"],
            "price": [10.0, 20.0, 20.0, 10.0],
        }
    )
    r = evaluate_design(d, {"a": ["A", "B"]}, [10, 20])
    assert r.d_error == pytest.approx(2.0)
    assert r.n_parameters == 2
    assert "D-error" in r.text()


def test_balanced_design_is_more_efficient_than_random():
    rng = np.random.default_rng(11)
    bal = evaluate_design(design_conjoint(ATTRS, PRICES, rng=rng)).d_error
    rnd = evaluate_design(design_conjoint(ATTRS, PRICES, method="random", rng=rng)).d_error
    assert bal < rnd


def test_design_rejects_bad_attributes():
    with pytest.raises(InputError, match="at least two levels"):
        design_conjoint({"a": ["only"]}, PRICES)
    with pytest.raises(InputError, match="price"):
        design_conjoint(ATTRS, [10])
    with pytest.raises(InputError, match="balanced"):
        design_conjoint(ATTRS, PRICES, method="optimal")


# ----------------------------------------------------------------------------------------------
# Estimation: hand-computed cases


def _two_task_types(n1=4, k1=3, n2=5, k2=1, weights=None) -> pd.DataFrame:
    """Type 1 tasks: B vs A at the same price (B chosen k1 of n1); type 2: A at 20 vs A at 10
    (the dearer chosen k2 of n2). The two types are orthogonal, so the MLE is closed form:
    β_B = logit(k1/n1), 10 β_price = logit(k2/n2)."""
    rows = []
    r = 0
    for i in range(n1):
        r += 1
        rows += [(f"r{r}", 1, 1, "B", 10, int(i < k1)), (f"r{r}", 1, 2, "A", 10, int(i >= k1))]
    for i in range(n2):
        r += 1
        rows += [(f"r{r}", 1, 1, "A", 20, int(i < k2)), (f"r{r}", 1, 2, "A", 10, int(i >= k2))]
    frame = pd.DataFrame(
        rows, columns=["respondent_id", "task", "alt", "feature", "price", "chosen"]
    )
    if weights is not None:
        frame["weight"] = frame["respondent_id"].map(weights).fillna(1.0)
    return frame


def test_mnl_closed_form_partworths_wtp_importances():
    res = estimate_conjoint(_answers(_two_task_types()), levels={"feature": ["A", "B"]}, se="plain")
    b_b = math.log(3)
    b_p = math.log(1 / 4) / 10
    pw = res.partworths.set_index(["attribute", "level"])
    assert pw.loc[("feature", "A"), "utility"] == 0.0
    assert pw.loc[("feature", "B"), "utility"] == pytest.approx(b_b, abs=1e-6)
    assert pw.loc[("price", "per_unit"), "utility"] == pytest.approx(b_p, abs=1e-7)
    # se of a logit of k of n: 1 / sqrt(n p (1 - p))
    var_b = 1 / (4 * 0.75 * 0.25)
    var_p = 1 / (5 * 0.2 * 0.8) / 100
    assert pw.loc[("feature", "B"), "se"] == pytest.approx(math.sqrt(var_b), rel=1e-5)
    assert pw.loc[("price", "per_unit"), "se"] == pytest.approx(math.sqrt(var_p), rel=1e-5)
    w = res.wtp.set_index(["attribute", "level"])
    assert w.loc[("feature", "B"), "wtp"] == pytest.approx(-b_b / b_p, rel=1e-6)
    se = math.sqrt(var_b / b_p**2 + b_b**2 * var_p / b_p**4)  # delta method, independent estimates
    assert w.loc[("feature", "B"), "se"] == pytest.approx(se, rel=1e-4)
    assert w.loc[("feature", "B"), "lower"] == pytest.approx(-b_b / b_p - 1.959964 * se, rel=1e-4)
    assert w.loc[("feature", "A"), "wtp"] == 0.0
    imp = res.importances.set_index("attribute")["importance"]
    assert imp["feature"] == pytest.approx(100 * b_b / (b_b + abs(b_p) * 10), rel=1e-6)
    assert imp.sum() == pytest.approx(100)
    assert list(res.partworths.columns[:5]) == ["segment", "attribute", "level", "utility", "se"]
    assert set(res.partworths["segment"]) == {"all"}


def test_weights_act_like_duplicated_respondents():
    weighted = estimate_conjoint(
        _answers(_two_task_types(weights={"r1": 2.0, "r6": 3.0})), levels={"feature": ["A", "B"]}
    )
    base = _two_task_types()
    dup = pd.concat(
        [base]
        + [base[base.respondent_id == "r1"].assign(respondent_id="r1b")]
        + [base[base.respondent_id == "r6"].assign(respondent_id=f"r6{c}") for c in "bc"],
        ignore_index=True,
    )
    plain = estimate_conjoint(_answers(dup), levels={"feature": ["A", "B"]})
    a = weighted.partworths.set_index(["attribute", "level"])["utility"]
    b = plain.partworths.set_index(["attribute", "level"])["utility"]
    pd.testing.assert_series_equal(a, b, atol=1e-6)


def _small_sim(n=300, seed=5, none=True, segments=1, **kw):
    from wtp.simulate import simulate_conjoint

    return simulate_conjoint(n, n_tasks=8, n_alts=3, none=none, segments=segments, seed=seed, **kw)


def test_effects_coding_same_wtp_and_importances_as_dummy():
    sim = _small_sim()
    ans = _answers(sim.answers)
    dummy = estimate_conjoint(ans, levels=sim.attributes)
    effects = estimate_conjoint(ans, levels=sim.attributes, coding="effects")
    pw = effects.partworths[~effects.partworths["attribute"].isin(["price", "none"])]
    assert pw.groupby(["segment", "attribute"])["utility"].sum().abs().max() < 1e-8
    pd.testing.assert_series_equal(dummy.wtp["wtp"], effects.wtp["wtp"], atol=1e-6)
    pd.testing.assert_series_equal(dummy.wtp["se"], effects.wtp["se"], atol=1e-6)
    pd.testing.assert_series_equal(
        dummy.importances["importance"], effects.importances["importance"], atol=1e-6
    )
    assert effects.fit["loglik"].iloc[0] == pytest.approx(dummy.fit["loglik"].iloc[0])


def test_partworth_price_coding():
    sim = _small_sim()
    res = estimate_conjoint(_answers(sim.answers), levels=sim.attributes, price="partworth")
    price_rows = res.partworths[res.partworths["attribute"] == "price"]
    assert list(price_rows["level"].iloc[: len(sim.prices)]) == [f"{p:g}" for p in sim.prices]
    u = price_rows[price_rows.segment == "all"]["utility"].to_numpy()
    assert u[0] == 0.0 and u[-1] < 0  # dearer is worse
    # WTP uses the slope between the lowest and highest tested price
    slope = (u[-1] - u[0]) / (max(sim.prices) - min(sim.prices))
    pw = res.partworths.set_index(["segment", "attribute", "level"])["utility"]
    w = res.wtp.set_index(["segment", "attribute", "level"])["wtp"]
    assert w[("all", "Users", "Unlimited")] == pytest.approx(
        -pw[("all", "Users", "Unlimited")] / slope
    )


def test_matches_statsmodels_conditional_logit():
    from statsmodels.discrete.conditional_models import ConditionalLogit

    sim = _small_sim(n=200)
    # forced choice: keep the tasks where a product was chosen, without the none rows
    a = sim.answers
    none_chosen = a[(a["none"] == 1) & (a["chosen"] == 1)][["respondent_id", "task"]]
    a = a.merge(none_chosen.assign(drop=1), on=["respondent_id", "task"], how="left")
    a = a[a["drop"].isna() & (a["none"] == 0)].drop(columns=["drop", "none"])
    ans = _answers(a)
    res = estimate_conjoint(ans, levels=sim.attributes, se="plain")
    data = prepare_choice_data(ans, levels=sim.attributes)
    flat = data.X[data.available]
    endog = (np.arange(data.X.shape[1])[None, :] == data.chosen[:, None])[data.available].astype(
        float
    )
    groups = np.repeat(np.arange(data.n_choices), data.available.sum(axis=1))
    # statsmodels' default BFGS stops ~1e-3 short of the optimum; Newton reaches it
    sm = ConditionalLogit(endog, flat, groups=groups).fit(disp=0, method="newton", maxiter=100)
    ours = res.parameters[res.parameters.segment == "all"]
    np.testing.assert_allclose(ours["estimate"].to_numpy(), sm.params, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours["se"].to_numpy(), sm.bse, rtol=1e-6)
    assert res.fit["loglik"].iloc[0] == pytest.approx(sm.llf, rel=1e-10)


def test_clustered_se_hand_computed_saturated_and_repeated_tasks():
    """Saturated one-task-per-respondent model: the score variance equals the information, so the
    clustered covariance is the plain one × G/(G−1). Answering every task twice, identically,
    halves the plain variance (twice the 'evidence') but leaves the clustered one unchanged."""
    frame = _two_task_types()
    levels = {"feature": ["A", "B"]}
    plain = estimate_conjoint(_answers(frame), levels=levels, se="plain")
    cluster = estimate_conjoint(_answers(frame), levels=levels)
    assert cluster.se_type == "cluster" and plain.se_type == "plain"
    g = frame["respondent_id"].nunique()
    ratio = cluster.parameters["se"].to_numpy() / plain.parameters["se"].to_numpy()
    np.testing.assert_allclose(ratio, math.sqrt(g / (g - 1)), rtol=1e-6)
    twice = pd.concat([frame, frame.assign(task=2)], ignore_index=True)
    plain2 = estimate_conjoint(_answers(twice), levels=levels, se="plain")
    cluster2 = estimate_conjoint(_answers(twice), levels=levels)
    np.testing.assert_allclose(
        plain2.parameters["se"], plain.parameters["se"] / math.sqrt(2), rtol=1e-6
    )
    np.testing.assert_allclose(cluster2.parameters["se"], cluster.parameters["se"], rtol=1e-6)
    w2 = cluster2.wtp.set_index(["attribute", "level"])
    assert w2.loc[("feature", "B"), "se"] == pytest.approx(
        cluster.wtp.set_index(["attribute", "level"]).loc[("feature", "B"), "se"], rel=1e-6
    )


def test_clustered_se_matches_statsmodels_binary_logit_cluster():
    """Two alternatives: the conditional logit is a binary logit on the attribute differences
    without intercept, and statsmodels' Logit gives its respondent-clustered covariance
    (without its (N−1)/(N−K) least-squares factor, with G/(G−1))."""
    import statsmodels.api as sm

    from wtp.simulate import simulate_conjoint

    sim = simulate_conjoint(
        150, n_tasks=8, n_alts=2, none=False, segments=1, seed=11, heterogeneity=1.0
    )
    ans = _answers(sim.answers)
    res = estimate_conjoint(ans, levels=sim.attributes)
    data = prepare_choice_data(ans, levels=sim.attributes)
    diff = data.X[:, 0, :] - data.X[:, 1, :]
    y = (data.chosen == 0).astype(float)
    g = data.respondents.size
    fit = sm.Logit(y, diff).fit(
        disp=0,
        method="newton",
        cov_type="cluster",
        cov_kwds={"groups": data.respondent, "use_correction": False},
    )
    ours = res.parameters[res.parameters.segment == "all"]
    np.testing.assert_allclose(ours["estimate"].to_numpy(), fit.params, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        ours["se"].to_numpy(), np.sqrt(np.diag(fit.cov_params()) * g / (g - 1)), rtol=1e-6
    )


def test_clustered_se_matches_statsmodels_conditional_logit_group_scores():
    """More than two alternatives: statsmodels' ConditionalLogit gives the Hessian and each task's
    score (``score_grp``); summed per respondent they make the same sandwich."""
    from statsmodels.discrete.conditional_models import ConditionalLogit

    from wtp.conjoint import cluster_covariance

    sim = _small_sim(n=60, none=False, heterogeneity=1.0)
    ans = _answers(sim.answers)
    res = estimate_conjoint(ans, levels=sim.attributes)
    data = prepare_choice_data(ans, levels=sim.attributes)
    flat = data.X[data.available]
    endog = (np.arange(data.X.shape[1])[None, :] == data.chosen[:, None])[data.available].astype(
        float
    )
    groups = np.repeat(np.arange(data.n_choices), data.available.sum(axis=1))
    model = ConditionalLogit(endog, flat, groups=groups)
    smfit = model.fit(disp=0, method="newton", maxiter=100)
    task_scores = np.array([model.score_grp(i, smfit.params) for i in range(data.n_choices)])
    per_resp = np.zeros((data.respondents.size, flat.shape[1]))
    np.add.at(per_resp, data.respondent, task_scores)
    bread = np.linalg.inv(-model.hessian(smfit.params))
    oracle = cluster_covariance(bread, per_resp)
    ours = res.parameters[res.parameters.segment == "all"]
    np.testing.assert_allclose(ours["se"].to_numpy(), np.sqrt(np.diag(oracle)), rtol=1e-5)
    # heterogeneous respondents: the clustered errors are wider than the plain ones
    plain = estimate_conjoint(ans, levels=sim.attributes, se="plain").parameters
    assert (ours["se"].to_numpy() > plain[plain.segment == "all"]["se"].to_numpy()).mean() > 0.5


def test_segments_get_their_own_fit_and_all():
    sim = _small_sim(n=400, segments=2)
    answers = _answers(sim.answers)
    res = estimate_conjoint(answers, levels=sim.attributes)
    # segments in the order the answers first name them (the study loader puts rows in the
    # study's order), the pooled 'all' last
    assert res.segments == [*pd.unique(answers["segment"]), "all"]
    assert sorted(res.segments[:-1]) == ["SMB", "Startups"]
    assert set(res.wtp["segment"]) == set(res.segments)
    assert res.fit.set_index("segment").loc["all", "n_respondents"] == 400
    summary = res.summary()
    assert {"segment", "price_coef", "wtp_meaningful"} <= set(summary.columns)
    frame = res.to_frame()
    assert {"utility", "wtp", "importance"} <= set(frame.columns)


def test_positive_price_coefficient_warns_and_marks_wtp_invalid():
    # respondents always pick the dearer alternative
    frame = _two_task_types(n2=6, k2=5)
    res = estimate_conjoint(_answers(frame), levels={"feature": ["A", "B"]})
    assert any("not negative" in w for w in res.warnings)
    assert not res.wtp["valid"].any()
    assert res.summary()["wtp_meaningful"].eq(False).all()


def test_insignificant_price_coefficient_warns():
    frame = _two_task_types(n2=5, k2=2)  # negative but far from significant
    res = estimate_conjoint(_answers(frame), levels={"feature": ["A", "B"]})
    assert any("not significant" in w for w in res.warnings)


def test_study_level_unknown_in_data_is_an_input_error():
    frame = _two_task_types()
    with pytest.raises(InputError, match="levels in study.toml"):
        estimate_conjoint(_answers(frame), levels={"feature": ["A", "C"]})
    res = estimate_conjoint(_answers(frame), levels={"feature": ["A", "B", "Z"]})
    assert any("not in the data" in n for n in res.notes)


# ----------------------------------------------------------------------------------------------
# Recovery on the simulator


def _true_importances(sim) -> pd.Series:
    t = sim.partworths[sim.partworths.segment == "all"]
    rng = (
        t[~t.attribute.isin(["price", "none"])]
        .groupby("attribute")["utility"]
        .agg(lambda u: u.max() - u.min())
    )
    price = abs(t.loc[t.attribute == "price", "utility"].iloc[0]) * (
        max(sim.prices) - min(sim.prices)
    )
    rng["price"] = price
    return rng / rng.sum() * 100


def test_recovery_wtp_within_15_percent_and_importance_order():
    from wtp.simulate import SegmentSpec, simulate_conjoint

    # one segment, 4,000 respondents × 12 tasks × 3 alternatives + none, heterogeneous part-worths.
    # Aggregate MNL carries ~5% heterogeneity bias plus the noise of the smallest WTP (8.4):
    # over seeds 2020-2029 the worst level is within 15% for 8 of 10 (benchmarks/conjoint.py).
    sim = simulate_conjoint(
        4000, n_tasks=12, n_alts=3, none=True, segments=[SegmentSpec("Core", 1.0, 60.0)], seed=2020
    )
    res = estimate_conjoint(_answers(sim.answers), levels=sim.attributes)
    got = res.wtp[res.wtp.segment == "all"].merge(
        sim.wtp[sim.wtp.segment == "all"], on=["attribute", "level"], suffixes=("", "_true")
    )
    got = got[got["wtp_true"] != 0]
    rel = (got["wtp"] / got["wtp_true"] - 1).abs()
    assert rel.max() < 0.15, got.assign(rel=rel)
    # the true value lies inside most intervals (aggregate MNL is slightly biased by heterogeneity)
    assert ((got["lower"] <= got["wtp_true"]) & (got["wtp_true"] <= got["upper"])).mean() >= 0.5
    truth = _true_importances(sim)
    est = res.importances[res.importances.segment == "all"].set_index("attribute")["importance"]
    assert list(est.sort_values().index) == list(truth.sort_values().index)
    assert not res.warnings


# ----------------------------------------------------------------------------------------------
# Market simulator and demand curve


def _level_world(noise_follows_level: bool, n=500, k=0.12, seed=3):
    """Choices of a product with or without feature B against not buying, by people whose own
    price level is lognormal around 50 (spread 0.5): in money, utility = 0.9·level (+ 0.3·level
    with B) − price, with Gumbel noise of scale ``k``·level, or ``k``·50 for everyone."""
    rng = np.random.default_rng(seed)
    level = 50 * np.exp(0.5 * rng.standard_normal(n))
    tasks, alts = 10, 2
    feat = rng.integers(0, 2, (n, tasks, alts))
    price = rng.choice([20.0, 35.0, 50.0, 70.0, 100.0], (n, tasks, alts))
    value = level[:, None, None] * (0.9 + 0.3 * feat) - price
    scale = k * (level if noise_follows_level else np.full(n, 50.0))
    u = np.concatenate([value, np.zeros((n, tasks, 1))], axis=2) / scale[:, None, None]
    chosen = np.argmax(u + rng.gumbel(size=u.shape), axis=2)
    r, t, a = np.meshgrid(np.arange(n), np.arange(tasks), np.arange(alts + 1), indexing="ij")
    is_none = a == alts
    frame = pd.DataFrame(
        {
            "respondent_id": [f"r{i}" for i in r.ravel()],
            "task": t.ravel() + 1,
            "alt": a.ravel() + 1,
            "feature": np.where(
                is_none, None, np.where(np.pad(feat, ((0, 0), (0, 0), (0, 1))) == 1, "B", "A")
            ).ravel(),
            "price": np.where(is_none, np.nan, np.pad(price, ((0, 0), (0, 0), (0, 1)))).ravel(),
            "none": is_none.ravel().astype(int),
            "chosen": (a == chosen[:, :, None]).ravel().astype(int),
        }
    )
    levels = pd.Series(level, index=[f"r{i}" for i in range(n)])
    return _answers(frame), levels


def test_level_noise_recovers_noise_that_follows_the_level():
    """Where each person's noise is k × their price level, the MNL whose price coefficient
    follows the levels recovers it (elasticity 1, scale k × the mean level); the plain MNL's
    one coefficient, 1/−β, overstates it (it averages people who differ)."""
    answers, levels = _level_world(True)
    res = estimate_conjoint(answers, levels={"feature": ["A", "B"]}, price_levels=levels)
    ln = res.level_noise["all"]
    assert ln.mean_level == pytest.approx(np.exp(np.log(levels).mean()))
    assert ln.elasticity == pytest.approx(1.0, abs=0.25)
    assert ln.scale == pytest.approx(0.12 * ln.mean_level, rel=0.15)
    assert np.median(np.abs(np.log(ln.at(levels) / (0.12 * levels)))) < 0.1
    np.testing.assert_allclose(ln.at(levels), ln.scale * (levels / ln.mean_level) ** ln.elasticity)
    assert ln.at([np.nan])[0] == ln.scale  # no level: the mean level's
    plain = -1 / float(res.betas["all"] @ res.coding.price_slope_row())
    assert plain > 1.3 * ln.scale
    # levels of people who did not answer the conjoint are ignored; missing ones at the mean
    more = pd.concat([levels.iloc[:-5], pd.Series([1e6], index=["nobody"])])
    again = estimate_conjoint(answers, levels={"feature": ["A", "B"]}, price_levels=more)
    assert again.level_noise["all"].scale == pytest.approx(ln.scale, rel=0.05)
    # without levels the MNL has none (HB has its own per respondent)
    assert estimate_conjoint(answers, levels={"feature": ["A", "B"]}).level_noise == {}
    # levels under other ids (two files naming the same people differently): a warning
    other = pd.Series(levels.to_numpy(), index="x" + levels.index)
    res = estimate_conjoint(answers, levels={"feature": ["A", "B"]}, price_levels=other)
    assert res.level_noise == {}
    assert any("no respondent_id in common" in w for w in res.warnings)


def test_level_noise_is_flat_where_noise_does_not_follow_the_level():
    """Where everyone's noise is the same (only their values follow the level), the
    elasticity comes out near 0 and the scale is everyone's; with levels shuffled among the
    people, too."""
    answers, levels = _level_world(False)
    res = estimate_conjoint(answers, levels={"feature": ["A", "B"]}, price_levels=levels)
    ln = res.level_noise["all"]
    assert abs(ln.elasticity) < 0.25
    error = np.log(ln.at(levels) / (0.12 * 50))  # everyone's true noise is 0.12 × 50
    assert np.median(np.abs(error)) < 0.1
    answers, _ = _level_world(True)
    shuffled = pd.Series(np.random.default_rng(1).permutation(levels.to_numpy()), levels.index)
    res = estimate_conjoint(answers, levels={"feature": ["A", "B"]}, price_levels=shuffled)
    assert abs(res.level_noise["all"].elasticity) < 0.25


def test_simulate_market_hand_computed_logit_share():
    res = estimate_conjoint(_answers(_two_task_types()), levels={"feature": ["A", "B"]})
    products = pd.DataFrame({"product": ["a", "b"], "feature": ["A", "B"], "price": [10, 15]})
    out = simulate_market(res, products)
    b_b, b_p = math.log(3), math.log(1 / 4) / 10
    va, vb = b_p * 10, b_b + b_p * 15
    expected = math.exp(vb) / (math.exp(va) + math.exp(vb))
    assert out.set_index("product").loc["b", "share"] == pytest.approx(expected, rel=1e-6)
    assert out["share"].sum() == pytest.approx(1.0)
    assert list(out.columns) == ["segment", "product", "share", "lower", "upper", "extrapolated"]
    assert not out["extrapolated"].any()  # 10 and 15 lie within the tested 10–20


def test_simulator_none_rfc_and_demand_curve():
    sim = _small_sim(n=400)
    res = estimate_conjoint(_answers(sim.answers), levels=sim.attributes)
    products = pd.DataFrame(
        {
            "product": ["basic", "pro"],
            "Support": ["Email", "Chat"],
            "SSO": ["Not included", "Included"],
            "Users": ["5 users", "Unlimited"],
            "History": ["90 days", "1 year"],
            "price": [30, 50],
        }
    )
    logit = simulate_market(res, products)
    assert set(logit["product"]) == {"basic", "pro", "none"}
    assert logit.groupby("segment")["share"].sum().to_numpy() == pytest.approx(1.0)
    assert (logit["lower"] <= logit["share"]).all() and (logit["share"] <= logit["upper"]).all()
    rfc = simulate_market(res, products, method="rfc", n_draws=4000, rng=np.random.default_rng(1))
    # with an aggregate model RFC only adds parameter uncertainty: close to logit
    np.testing.assert_allclose(rfc["share"], logit["share"], atol=0.03)
    no_none = simulate_market(res, products, none=False)
    assert "none" not in set(no_none["product"])

    entry = demand_curve(res, {}, [30.0], segment="all")
    ref = products.iloc[[0]].assign(
        Support="Email", SSO="Not included", Users="5 users", History="90 days", price=30.0
    )
    assert entry["share"].iloc[0] == pytest.approx(
        simulate_market(res, ref, segment="all")["share"].iloc[0]
    )
    curve = demand_curve(res, products.iloc[1], segment="all")
    assert list(curve.columns) == ["segment", "price", "share", "lower", "upper", "extrapolated"]
    assert not curve["extrapolated"].any()
    assert curve["price"].min() == min(sim.prices) and curve["price"].max() == max(sim.prices)
    assert (np.diff(curve["share"]) < 0).all()
    # the curve at a price equals the simulator with the product alone against none
    at = simulate_market(
        res, products.iloc[[1]].assign(price=curve["price"].iloc[3]), segment="all"
    )
    assert curve["share"].iloc[3] == pytest.approx(at.set_index("product").loc["pro", "share"])


def test_simulator_rejects_unknown_levels_and_segments():
    res = estimate_conjoint(_answers(_two_task_types()), levels={"feature": ["A", "B"]})
    bad = pd.DataFrame({"product": ["x"], "feature": ["Q"], "price": [10]})
    with pytest.raises(InputError, match="tested levels"):
        simulate_market(res, bad)
    with pytest.raises(InputError, match="segment"):
        simulate_market(res, bad.assign(feature="A"), segment="nobody")
    with pytest.raises(InputError, match="product"):
        simulate_market(res, bad.drop(columns="product"))


# ----------------------------------------------------------------------------------------------
# Individual draws (the HB path): segment summaries, per-respondent importances, RFC


def test_tables_from_draws_hand_computed():
    from wtp.conjoint import result_from_draws

    ans = _answers(_two_task_types(weights={"r1": 3.0}))
    data = prepare_choice_data(ans, levels={"feature": ["A", "B"]})
    n = data.respondents.size
    scale = data.coding.price_scale  # price enters as price / scale
    b_feature = np.linspace(0.5, 1.5, n)
    b_price = -np.linspace(2.0, 4.0, n)  # per price / scale
    draws = np.stack([b_feature, b_price], axis=1)[:, None, :].repeat(4, axis=1)
    res = result_from_draws(data, draws)
    w = np.ones(n)
    w[list(data.respondents).index("r1")] = 3.0
    w /= w.sum()
    mean_f, mean_p = w @ b_feature, w @ b_price / scale
    pw = res.partworths.set_index(["attribute", "level"])["utility"]
    assert pw[("feature", "B")] == pytest.approx(mean_f)
    assert pw[("price", "per_unit")] == pytest.approx(mean_p)
    # WTP: each respondent's ratio, then the weighted median over respondents (r1 weighs 3)
    ratios = -b_feature / (b_price / scale)
    order = np.argsort(ratios)
    cum = np.cumsum(w[order])
    median = ratios[order][np.argmax(cum >= 0.5 - 1e-12)]
    wtp = res.wtp.set_index("level").loc["B"]
    assert wtp["wtp"] == pytest.approx(median)
    assert wtp["wtp"] != pytest.approx(-mean_f / mean_p)  # not the ratio of the means
    assert wtp["respondents_p25"] == pytest.approx(ratios[order][np.argmax(cum >= 0.25 - 1e-12)])
    assert wtp["respondents_p25"] <= wtp["wtp"] <= wtp["respondents_p75"]
    # importances: per respondent, normalised, then the weighted mean
    rf, rp = np.abs(b_feature), np.abs(b_price / scale) * 10
    assert res.importances.set_index("attribute").loc["feature", "importance"] == pytest.approx(
        100 * w @ (rf / (rf + rp))
    )
    assert res.method == "hb" and res.individual is not None


def _draws_from_truth(sim, data, noise=0.05, n_draws=100, seed=0):
    """Posterior-like draws around each simulated respondent's true part-worths."""
    b = sim.individual_betas.pivot(index="respondent_id", columns="parameter", values="value").loc[
        list(data.respondents)
    ]
    cols = [b[p] for p in data.coding.parameters if p not in ("price", "none")]
    true = np.column_stack(
        cols + [b["price"] * data.coding.price_scale, np.full(len(b), sim.none_utility)]
    )
    rng = np.random.default_rng(seed)
    return true[:, None, :] + noise * rng.standard_normal((len(b), n_draws, true.shape[1]))


def test_individual_draws_recover_wtp_and_drive_rfc(tmp_path):
    from wtp.conjoint import result_from_draws
    from wtp.report.conjoint import write_outputs

    sim = _small_sim(n=600, segments=2, seed=3)
    data = prepare_choice_data(_answers(sim.answers), levels=sim.attributes)
    res = result_from_draws(data, _draws_from_truth(sim, data))
    b = sim.individual_betas.pivot(index="respondent_id", columns="parameter", values="value")
    got = res.wtp.set_index(["segment", "attribute", "level"])["wtp"]
    # the money value of the median respondent (their true ratios' median)
    assert got[("all", "Users", "Unlimited")] == pytest.approx(
        (-b["Users=Unlimited"] / b["price"]).median(), rel=0.02
    )
    assert list(res.segments) == [*pd.unique(data.segment), "all"] and len(res.segments) == 3
    products = pd.DataFrame(
        {
            "product": ["basic", "pro"],
            "Support": ["Email", "Chat"],
            "SSO": ["Not included", "Included"],
            "Users": ["5 users", "Unlimited"],
            "History": ["90 days", "1 year"],
            "price": [30, 50],
        }
    )
    rfc = simulate_market(res, products, method="rfc", rng=np.random.default_rng(1))
    assert rfc.groupby("segment")["share"].sum().to_numpy() == pytest.approx(1.0)
    assert (rfc["lower"] <= rfc["share"]).all() and (rfc["share"] <= rfc["upper"]).all()
    logit = simulate_market(res, products)
    # first choice over heterogeneous individuals is close to, not equal to, the logit share
    assert np.abs(rfc["share"] - logit["share"]).max() < 0.08
    entry = demand_curve(res, {}, [30.0], segment="all")
    ref = products.iloc[[0]].assign(
        Support="Email", SSO="Not included", Users="5 users", History="90 days", price=30.0
    )
    assert entry["share"].iloc[0] == pytest.approx(
        simulate_market(res, ref, segment="all")["share"].iloc[0]
    )
    curve = demand_curve(res, products.iloc[1], segment="all")
    assert (np.diff(curve["share"]) < 0).all()
    from wtp.conjoint import simulator_tables

    tables = simulator_tables(res, products, rng=np.random.default_rng(1))
    write_outputs(res, tmp_path, meta={"name": "hb", "currency": "USD"}, tables=tables, seed=1)
    assert "Randomized first choice" in (tmp_path / "report.html").read_text()
    assert pd.read_csv(tmp_path / "simulation.csv")["share"].between(0, 1).all()
    ind = pd.read_csv(tmp_path / "individual_partworths.csv")
    assert list(ind.columns) == ["respondent_id", "segment", "attribute", "level", "utility"]
    assert ind["respondent_id"].nunique() == 600
    assert "mean_rlh" in (tmp_path / "diagnostics.json").read_text()


@pytest.mark.slow
def test_hb_through_wtp_hb_plumbing():
    # small and short: checks the wiring to wtp.hb, not convergence
    sim = _small_sim(n=80, segments=2, seed=4)
    res = estimate_conjoint(
        _answers(sim.answers),
        levels=sim.attributes,
        method="hb",
        draws=150,
        tune=150,
        chains=2,
        until_converged=False,  # exactly 2 × 150 draws
        rng=np.random.default_rng(1),
    )
    assert res.method == "hb" and res.individual.draws.shape == (80, 300, res.coding.n_parameters)
    assert {"check", "value", "threshold", "ok"} <= set(res.diagnostics.columns)
    assert res.segments[-1] == "all" and len(res.segments) == 3
    assert res.importances.groupby("segment")["importance"].sum().to_numpy() == pytest.approx(100)
    products = pd.DataFrame(
        {
            "product": ["p"],
            "Support": ["Chat"],
            "SSO": ["Included"],
            "Users": ["5 users"],
            "History": ["1 year"],
            "price": [40],
        }
    )
    sim_rfc = simulate_market(res, products, method="rfc", rng=np.random.default_rng(2))
    assert sim_rfc.groupby("segment")["share"].sum().to_numpy() == pytest.approx(1.0)


@pytest.mark.slow
def test_hb_recovery_wtp_within_15_percent():
    from wtp.simulate import SegmentSpec, simulate_conjoint

    sim = simulate_conjoint(
        1000, n_tasks=12, n_alts=3, none=True, segments=[SegmentSpec("Core", 1.0, 60.0)], seed=2020
    )
    res = estimate_conjoint(
        _answers(sim.answers),
        levels=sim.attributes,
        method="hb",
        draws=500,
        chains=4,
        rng=np.random.default_rng(7),
    )
    got = res.wtp[res.wtp.segment == "all"].merge(
        sim.wtp[sim.wtp.segment == "all"], on=["attribute", "level"], suffixes=("", "_true")
    )
    got = got[got["wtp_true"] != 0]
    assert (got["wtp"] / got["wtp_true"] - 1).abs().max() < 0.15, got
    assert ((got["lower"] <= got["wtp_true"]) & (got["wtp_true"] <= got["upper"])).mean() >= 0.7
    truth = _true_importances(sim)
    est = res.importances[res.importances.segment == "all"].set_index("attribute")["importance"]
    assert list(est.sort_values().index) == list(truth.sort_values().index)


# ----------------------------------------------------------------------------------------------
# Command line


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from wtp.simulate import simulate_conjoint

    folder = tmp_path_factory.mktemp("study")
    sim = simulate_conjoint(240, n_tasks=10, segments=3, seed=7)
    sim.answers.drop(columns="segment").to_csv(folder / "conjoint.csv", index=False)
    sim.answers[["respondent_id", "segment"]].drop_duplicates().to_csv(
        folder / "respondents.csv", index=False
    )
    attrs = "\n".join(
        f"{a} = [{', '.join(chr(34) + x + chr(34) for x in lv)}]"
        for a, lv in sim.attributes.items()
    )
    (folder / "study.toml").write_text(
        f'[study]\nname = "Test"\ncurrency = "USD"\n[data]\nconjoint = "conjoint.csv"\nrespondents = "respondents.csv"\n'
        f"[conjoint]\nprices = [{', '.join(f'{p:g}' for p in sim.prices)}]\n[conjoint.attributes]\n{attrs}\n"
    )
    return folder


def _run(*args):
    from typer.testing import CliRunner

    from wtp.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_conjoint_writes_contract_tables_report_and_simulation(study, tmp_path):
    scenario = tmp_path / "scenario.csv"
    pd.DataFrame(
        {
            "product": ["Basic", "Pro"],
            "Support": ["Email", "Chat"],
            "SSO": ["Not included", "Included"],
            "Users": ["5 users", "Unlimited"],
            "History": ["90 days", "1 year"],
            "price": ["49", "99"],
        }
    ).to_csv(scenario, index=False)
    out = tmp_path / "out"
    r = _run(
        "conjoint",
        study / "conjoint.csv",
        "--study",
        study,
        "--scenario",
        scenario,
        "--out",
        out,
        "--seed",
        3,
    )
    assert r.exit_code == 0, r.output
    pw = pd.read_csv(out / "partworths.csv")
    assert list(pw.columns[:5]) == ["segment", "attribute", "level", "utility", "se"]
    assert {"Startups", "all"} <= set(pw["segment"])
    assert ((pw.attribute == "price") & (pw.level == "per_unit")).sum() == pw["segment"].nunique()
    assert ((pw.attribute == "none") & (pw.level == "none")).sum() == pw["segment"].nunique()
    # level order comes from study.toml: the first level is the reference
    assert pw[(pw.segment == "all") & (pw.attribute == "Users")]["level"].tolist() == [
        "5 users",
        "25 users",
        "Unlimited",
    ]
    imp = pd.read_csv(out / "importances.csv")
    assert list(imp.columns[:3]) == ["segment", "attribute", "importance"]
    assert imp.groupby("segment")["importance"].sum().to_numpy() == pytest.approx(100)
    wtp = pd.read_csv(out / "wtp.csv")
    assert list(wtp.columns[:4]) == ["segment", "attribute", "level", "wtp"]
    sim = pd.read_csv(out / "simulation.csv")
    assert list(sim.columns[:3]) == ["segment", "product", "share"]
    assert set(sim["product"]) == {"Basic", "Pro", "none"}
    html = (out / "report.html").read_text()
    assert (
        "Willingness to pay" in html
        and "Demand curve" in html
        and "<svg" in html
        and "Market simulation" in html
    )
    again = tmp_path / "again"
    _run(
        "conjoint",
        study / "conjoint.csv",
        "--study",
        study,
        "--scenario",
        scenario,
        "--out",
        again,
        "--seed",
        3,
    )
    assert (again / "wtp.csv").read_text() == (out / "wtp.csv").read_text()


def test_cli_conjoint_options(study, tmp_path):
    out = tmp_path / "o"
    r = _run(
        "conjoint",
        study / "conjoint.csv",
        "--respondents",
        study / "respondents.csv",
        "--coding",
        "effects",
        "--price",
        "partworth",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    pw = pd.read_csv(out / "partworths.csv")
    assert (pw.attribute == "price").sum() > pw["segment"].nunique()  # one row per tested price
    r = _run("conjoint", study / "conjoint.csv", "--coding", "nonsense", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "coding" in r.output
    assert not (tmp_path / "x").exists()


def _cli_bad(tmp_path, frame, *expected):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    r = _run("conjoint", path, "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    for e in expected:
        assert e in r.output, r.output
    assert not (tmp_path / "out").exists()


def _good_frame():
    sim = _small_sim(n=40, seed=1)
    return sim.answers.drop(columns="segment")


def test_cli_bad_input_no_chosen_row(tmp_path):
    f = _good_frame()
    first = (f["respondent_id"] == f["respondent_id"].iloc[0]) & (f["task"] == f["task"].iloc[0])
    f.loc[first, "chosen"] = 0
    _cli_bad(tmp_path, f, "bad.csv", "row 2", "chosen", "exactly one chosen", "0 chosen")


def test_cli_bad_input_two_chosen_rows(tmp_path):
    f = _good_frame()
    first = (f["respondent_id"] == f["respondent_id"].iloc[0]) & (f["task"] == f["task"].iloc[0])
    f.loc[first, "chosen"] = 1
    _cli_bad(tmp_path, f, "chosen", "exactly one chosen")


def test_cli_bad_input_non_numeric_price(tmp_path):
    f = _good_frame().astype({"price": object})
    f.loc[4, "price"] = "cheap"
    _cli_bad(tmp_path, f, "row 6", "price", "numeric price", "'cheap'")


def test_cli_bad_input_level_in_one_task(tmp_path):
    f = _good_frame()
    f.loc[0, "Support"] = "Carrier pigeon"
    _cli_bad(tmp_path, f, "row 2", "Support", "more than one task", "Carrier pigeon")


def test_cli_bad_scenario_level(study, tmp_path):
    scenario = tmp_path / "scenario.csv"
    pd.DataFrame(
        {
            "product": ["X"],
            "Support": ["Fax"],
            "SSO": ["Included"],
            "Users": ["5 users"],
            "History": ["1 year"],
            "price": [50],
        }
    ).to_csv(scenario, index=False)
    r = _run("conjoint", study / "conjoint.csv", "--scenario", scenario, "--out", tmp_path / "out")
    assert r.exit_code == 2
    assert "scenario.csv, row 2, column 'Support'" in r.output
    assert not (tmp_path / "out").exists()


def test_cli_design_conjoint(study, tmp_path):
    out = tmp_path / "design"
    r = _run("design", "conjoint", study, "--out", out, "--tasks", 8, "--versions", 5, "--seed", 2)
    assert r.exit_code == 0, r.output
    d = pd.read_csv(out / "design.csv")
    assert list(d.columns) == [
        "version",
        "task",
        "alt",
        "Support",
        "SSO",
        "Users",
        "History",
        "price",
        "none",
    ]
    assert d["version"].nunique() == 5 and d["task"].nunique() == 8
    assert "D-error" in (out / "design_report.txt").read_text()
    # the design answers like a survey: a simulated fielding of it estimates
    r2 = _run(
        "design", "conjoint", study, "--out", tmp_path / "d2", "--method", "random", "--no-none"
    )
    assert r2.exit_code == 0 and "none" not in pd.read_csv(tmp_path / "d2" / "design.csv").columns


def test_cli_design_conjoint_needs_attributes(tmp_path):
    (tmp_path / "study.toml").write_text('[study]\nname = "x"\n')
    r = _run("design", "conjoint", tmp_path, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "conjoint.attributes" in r.output
    (tmp_path / "study.toml").write_text('[conjoint.attributes]\nSupport = ["Email", "Chat"]\n')
    r = _run("design", "conjoint", tmp_path, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "price" in r.output
    (tmp_path / "study.toml").write_text(
        '[conjoint]\nprices = [10, 20]\n[conjoint.attributes]\nSupport = ["Email", "Chat"]\n'
    )
    assert _run("design", "conjoint", tmp_path, "--out", tmp_path / "o").exit_code == 0


# ----------------------------------------------------------------------------------------------
# Real data (skipped when the datasets are absent)


def _dataset(path: str) -> Path:
    p = DATASETS / path
    if not p.exists():
        pytest.skip(f"{p} not available")
    return p


def _chocolate() -> pd.DataFrame:
    f = pd.read_csv(_dataset("displayr_chocolate_cbc/chocolate_cbc_long.csv"))
    f = f.rename(columns={"respondent": "respondent_id", "Price": "price"}).drop(
        columns=["version", "design_task_id", "would_buy_chosen"]
    )
    f["price"] = f["price"].str.replace("$", "", regex=False).astype(float)
    return f


def _eggs() -> pd.DataFrame:
    f = pd.read_csv(_dataset("displayr_eggs_cbc/eggs_cbc_long.csv"))
    f = f.rename(columns={"respondent": "respondent_id", "Price": "price"}).drop(
        columns=["version", "design_task_id"]
    )
    f["price"] = f["price"].str.extract(r"([\d.]+)")[0].astype(float)  # "6 dollars"
    return f


def _cars() -> pd.DataFrame:
    a = pd.read_csv(_dataset("logitr_cars_us_cbc/cars_us.csv"))
    trains = ["hev", "phev10", "phev20", "phev40", "bev75", "bev100", "bev150"]
    origins = ["american", "japanese", "chinese", "skorean"]
    return pd.DataFrame(
        {
            "respondent_id": a["id"],
            "task": a["obsnum"],
            "alt": a.groupby("obsnum").cumcount() + 1,
            "powertrain": np.select([a[k] == 1 for k in trains], trains, "conventional"),
            "fastcharge": np.where(
                (a["phevFastcharge"] == 1) | (a["bevFastcharge"] == 1), "yes", "no"
            ),
            "opcost": a["opCost"].astype(str),
            "accel": a["accelTime"].astype(str),
            "origin": np.select([a[k] == 1 for k in origins], origins, "other"),
            "price": a["price"],  # thousand USD
            "chosen": a["choice"],
            "weight": a["weights"],
        }
    )


def _price_ok(res):
    fit = res.fit.set_index("segment").loc["all"]
    assert fit["price_coef"] < 0 and fit["price_p_value"] < 1e-6
    assert fit["converged"] and not res.warnings


def test_real_chocolate():
    res = estimate_conjoint(_answers(_chocolate()))
    _price_ok(res)
    w = res.wtp.set_index(["attribute", "level"])["wtp"]
    # plausible: no level worth more than twice the tested price range ($0.99–2.49)
    assert w.abs().max() < 2 * 1.5
    assert (
        w[("Sugar", "Sugar free")] < w[("Sugar", "50% reduced sugar")] < 0
    )  # "Standard" is the reference
    assert w[("Ethical", "Fair trade")] > 0  # BLANK is a real level: no claim
    assert "BLANK" in set(res.partworths["level"])


def test_real_eggs():
    res = estimate_conjoint(
        _answers(_eggs()), levels={"Quality": ["Free Range", "Barn Raised", "Fresh Eggs (Caged)"]}
    )
    _price_ok(res)
    w = res.wtp.set_index(["attribute", "level"])["wtp"]
    assert w[("Quality", "Fresh Eggs (Caged)")] < w[("Quality", "Barn Raised")] < 0
    assert w.abs().max() < 2 * (6 - 2)


def test_real_cars_weighted():
    levels = {
        "opcost": ["6", "9", "12", "19"],
        "accel": ["5.5", "7.0", "8.5", "10.0"],
        "powertrain": [
            "conventional",
            "hev",
            "phev10",
            "phev20",
            "phev40",
            "bev75",
            "bev100",
            "bev150",
        ],
    }
    res = estimate_conjoint(_answers(_cars()), levels=levels)
    _price_ok(res)
    w = res.wtp.set_index(["attribute", "level"])["wtp"]
    # dearer to run and slower to accelerate are worth less, monotonically (thousand USD)
    assert list(w.loc["opcost"]) == sorted(w.loc["opcost"], reverse=True)
    assert list(w.loc["accel"]) == sorted(w.loc["accel"], reverse=True)
    assert w[("fastcharge", "yes")] > 0
    assert w.abs().max() < 50  # within the tested 15–50 k range


def test_real_eggs_through_cli(tmp_path):
    path = tmp_path / "eggs.csv"
    _eggs().to_csv(path, index=False)
    r = _run("conjoint", path, "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "wtp.csv").exists()


# ----------------------------------------------------------------------------------------------
# Numeric attributes (seats, GB, minutes): a utility per unit


NUM_ATTRS = {"Support": ["Email", "Chat"], "Seats": ["1", "5", "10", "20"]}


def _numeric_sim(n=600, seed=3, **kw):
    from wtp.simulate import SegmentSpec, simulate_conjoint

    return simulate_conjoint(
        n,
        n_tasks=10,
        n_alts=3,
        none=True,
        segments=[SegmentSpec("Core", 1.0, 60.0)],
        attributes=NUM_ATTRS,
        numeric={"Seats": 0.06},
        seed=seed,
        **kw,
    )


def test_numeric_attribute_is_one_column_as_statsmodels_sees_it():
    """Linear seats = one regressor holding the number of seats: statsmodels' ConditionalLogit on
    that column gives the same coefficient per seat; WTP per seat, per level and importance
    follow by hand."""
    from statsmodels.discrete.conditional_models import ConditionalLogit

    sim = _numeric_sim(n=100)
    a = sim.answers
    none_chosen = a[(a["none"] == 1) & (a["chosen"] == 1)][["respondent_id", "task"]]
    a = a.merge(none_chosen.assign(drop=1), on=["respondent_id", "task"], how="left")
    a = a[a["drop"].isna() & (a["none"] == 0)].drop(columns=["drop", "none", "segment"])
    ans = _answers(a)
    res = estimate_conjoint(
        ans, levels={"Support": ["Email", "Chat"]}, numeric=["Seats"], se="plain"
    )
    x = np.column_stack(
        [
            (a["Support"] == "Chat").to_numpy(float),
            a["Seats"].astype(float).to_numpy(),
            a["price"].to_numpy(float),
        ]
    )
    groups = a.groupby(["respondent_id", "task"], sort=False).ngroup().to_numpy()
    sm = ConditionalLogit(a["chosen"].to_numpy(float), x, groups=groups).fit(
        disp=0, method="newton", maxiter=100
    )
    pw = res.partworths.set_index(["attribute", "level"])
    assert set(res.partworths.loc[res.partworths.attribute == "Seats", "level"]) == {"per_unit"}
    assert pw.loc[("Seats", "per_unit"), "utility"] == pytest.approx(sm.params[1], rel=1e-6)
    assert pw.loc[("Seats", "per_unit"), "se"] == pytest.approx(sm.bse[1], rel=1e-5)
    assert pw.loc[("price", "per_unit"), "utility"] == pytest.approx(sm.params[2], rel=1e-6)
    w = res.wtp.set_index(["attribute", "level"])["wtp"]
    per_seat = -sm.params[1] / sm.params[2]
    assert w[("Seats", "per_unit")] == pytest.approx(per_seat, rel=1e-6)
    assert w[("Seats", "10")] == pytest.approx(per_seat * 9, rel=1e-6) and w[("Seats", "1")] == 0
    imp = res.importances.set_index("attribute")["importance"]
    raw = {
        "Support": abs(sm.params[0]),
        "Seats": abs(sm.params[1]) * 19,
        "price": abs(sm.params[2]) * (max(sim.prices) - min(sim.prices)),
    }
    assert imp["Seats"] == pytest.approx(100 * raw["Seats"] / sum(raw.values()), rel=1e-6)


def test_piecewise_with_every_knot_is_the_partworth_model():
    """Knots at every inner tested value: the piecewise line passes through every level's
    part-worth, so it is the categorical model in another basis (same fit, same utilities)."""
    sim = _numeric_sim(n=300)
    ans = _answers(sim.answers)
    cat = estimate_conjoint(ans, levels={"Seats": ["1", "5", "10", "20"]})
    pw = estimate_conjoint(ans, numeric={"Seats": [5, 10]})
    assert pw.fit["loglik"].iloc[0] == pytest.approx(cat.fit["loglik"].iloc[0], rel=1e-9)
    levels = pw.partworths[pw.partworths.attribute == "Seats"]["level"].unique().tolist()
    assert levels == ["per_unit:1-5", "per_unit:5-10", "per_unit:10-20"]
    wc = cat.wtp.set_index(["segment", "attribute", "level"])["wtp"]
    wp = pw.wtp.set_index(["segment", "attribute", "level"])["wtp"]
    for lv in ["5", "10", "20"]:
        assert wp[("all", "Seats", lv)] == pytest.approx(wc[("all", "Seats", lv)], rel=1e-6)
    # slope of a piece = the part-worth difference over its width
    u = cat.partworths.set_index(["segment", "attribute", "level"])["utility"]
    slope = pw.partworths.set_index(["segment", "attribute", "level"])["utility"][
        ("all", "Seats", "per_unit:5-10")
    ]
    assert slope == pytest.approx(
        (u[("all", "Seats", "10")] - u[("all", "Seats", "5")]) / 5, rel=1e-6
    )
    assert pw.importances.set_index(["segment", "attribute"])["importance"][
        ("all", "Seats")
    ] == pytest.approx(
        cat.importances.set_index(["segment", "attribute"])["importance"][("all", "Seats")],
        rel=1e-6,
    )


def test_numeric_recovery_money_per_unit_within_10_percent():
    """Heterogeneous respondents (normal part-worths, lognormal value per seat, lognormal price
    sensitivity): the aggregate MNL recovers the money value of a seat within 10%."""
    from wtp.simulate import SegmentSpec, simulate_conjoint

    for seed in (21, 22):
        sim = simulate_conjoint(
            1500, n_tasks=10, n_alts=3, none=True, segments=[SegmentSpec("Core", 1.0, 60.0)],
            attributes={**NUM_ATTRS, "SSO": ["Not included", "Included"]}, numeric={"Seats": 0.06}, seed=seed,
        )  # fmt: skip
        res = estimate_conjoint(_answers(sim.answers), numeric=["Seats"])
        got = res.wtp.set_index(["segment", "attribute", "level"])
        truth = sim.wtp.set_index(["segment", "attribute", "level"])["wtp"][
            ("all", "Seats", "per_unit")
        ]
        est = got.loc[("all", "Seats", "per_unit")]
        assert est["wtp"] == pytest.approx(truth, rel=0.10), (seed, est["wtp"], truth)
        assert est["lower"] < est["wtp"] < est["upper"]


def test_simulator_interpolates_numeric_levels_and_marks_extrapolation():
    sim = _numeric_sim(n=300)
    res = estimate_conjoint(
        _answers(sim.answers), levels={"Support": ["Email", "Chat"]}, numeric=["Seats"]
    )
    products = pd.DataFrame(
        {
            "product": ["mid", "big", "dear"],
            "Support": ["Email"] * 3,
            "Seats": [7.5, 40, 10],
            "price": [60, 60, 2 * max(sim.prices)],
        }
    )
    out = simulate_market(res, products, segment="all").set_index("product")
    assert out.loc[["mid", "big", "dear"], "extrapolated"].tolist() == [False, True, True]
    # 7.5 seats lies halfway between 5 and 10: its utility is the average of theirs
    pw = res.partworths.set_index(["segment", "attribute", "level"])["utility"]
    b_seat, b_price, b_none = (
        pw[("all", "Seats", "per_unit")],
        pw[("all", "price", "per_unit")],
        pw[("all", "none", "none")],
    )
    v = np.array(
        [
            6.5 * b_seat + 60 * b_price,
            39 * b_seat + 60 * b_price,
            9 * b_seat + 2 * max(sim.prices) * b_price,
            b_none,
        ]
    )
    np.testing.assert_allclose(out["share"].to_numpy(), np.exp(v) / np.exp(v).sum(), rtol=1e-6)
    ext = extrapolation(res, products).set_index(["product", "attribute"])
    assert ext.loc[("big", "Seats"), "outside_by"] == pytest.approx(20.0)
    assert ext.loc[("big", "Seats"), "outside_share"] == pytest.approx(20 / 19)
    assert ext.loc[("dear", "price"), "outside_by"] == pytest.approx(max(sim.prices))
    assert len(ext) == 2
    curve = demand_curve(res, {"Seats": 12}, [min(sim.prices), 3 * max(sim.prices)], segment="all")
    assert curve["extrapolated"].tolist() == [False, True]


def test_numeric_attribute_errors_are_located(tmp_path):
    sim = _numeric_sim(n=40)
    frame = sim.answers.copy()
    frame["Seats"] = frame["Seats"].astype(object)
    frame.loc[3, "Seats"] = "ten"
    with pytest.raises(InputError) as err:
        estimate_conjoint(_answers(frame), numeric=["Seats"])
    assert err.value.row == 5 and err.value.column == "Seats"
    with pytest.raises(InputError, match="an attribute of the conjoint"):
        estimate_conjoint(_answers(sim.answers), numeric=["Seats", "Storage"])
    with pytest.raises(InputError, match="knots among the tested values"):
        estimate_conjoint(_answers(sim.answers), numeric={"Seats": [7]})


def test_cli_numeric_from_study_and_extrapolated_scenario(tmp_path):
    sim = _numeric_sim(n=300)
    sim.answers.drop(columns="segment").to_csv(tmp_path / "conjoint.csv", index=False)
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "n"\ncurrency = "USD"\n[conjoint]\nnumeric = ["Seats"]\n'
    )
    scen = tmp_path / "scenario.csv"
    pd.DataFrame(
        {
            "product": ["in", "out"],
            "Support": ["Chat", "Chat"],
            "Seats": [8, 8],
            "price": [50, 4 * max(sim.prices)],
        }
    ).to_csv(scen, index=False)
    out = tmp_path / "out"
    r = _run(
        "conjoint", tmp_path / "conjoint.csv", "--study", tmp_path, "--scenario", scen, "--out", out
    )
    assert r.exit_code == 0, r.output
    assert "out: price" in r.output and "above the tested range" in r.output
    pw = pd.read_csv(out / "partworths.csv")
    assert pw[pw.attribute == "Seats"]["level"].tolist() == ["per_unit"]
    w = pd.read_csv(out / "wtp.csv")
    assert {"per_unit", "20"} <= set(w.loc[w.attribute == "Seats", "level"].astype(str))
    ext = pd.read_csv(out / "extrapolation.csv")
    assert ext["product"].tolist() == ["out"] and ext["attribute"].tolist() == ["price"]
    assert pd.read_csv(out / "simulation.csv").set_index(["segment", "product"])["extrapolated"][
        ("all", "out")
    ]
    html = (out / "report.html").read_text()
    assert "extrapolated" in html and "per unit" in html


def test_real_cars_numeric_operating_cost_and_acceleration():
    """Operating cost (cents/mile) and 0–60 time as quantities: a money value per unit, close to
    the banded model where the bands are well measured; survey weights make the clustered
    errors much wider than the plain ones (the plain ones ignore the weights' variability)."""
    levels = {
        "powertrain": [
            "conventional",
            "hev",
            "phev10",
            "phev20",
            "phev40",
            "bev75",
            "bev100",
            "bev150",
        ]
    }
    ans = _answers(_cars())
    banded = estimate_conjoint(
        ans,
        levels={**levels, "opcost": ["6", "9", "12", "19"], "accel": ["5.5", "7.0", "8.5", "10.0"]},
    )
    res = estimate_conjoint(ans, levels=levels, numeric=["opcost", "accel"])
    _price_ok(res)
    assert len(res.parameters) == len(banded.parameters) - 4
    w = res.wtp.set_index(["attribute", "level"])
    assert w.loc[("opcost", "per_unit"), "upper"] < 0 and w.loc[("accel", "per_unit"), "upper"] < 0
    b = banded.wtp.set_index(["attribute", "level"])
    assert (
        b.loc[("opcost", "19"), "lower"]
        < w.loc[("opcost", "19"), "wtp"]
        < b.loc[("opcost", "19"), "upper"]
    )
    plain = estimate_conjoint(ans, levels=levels, numeric=["opcost", "accel"], se="plain")
    assert (res.parameters["se"] > plain.parameters["se"]).all()


def test_clustered_intervals_cover_where_plain_ones_under_cover():
    """Quick version of benchmarks/conjoint_coverage.py: heterogeneous respondents answering
    10 tasks each; 25 replicate studies of 80 respondents against the pseudo-true MNL value from
    15 further blocks. The clustered errors are wider for the attribute part-worths and their
    intervals cover about 95%; the plain ones cover less (full run: see the benchmark)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "conjoint_coverage.py"
    spec = importlib.util.spec_from_file_location("conjoint_coverage", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = bench.coverage(
        n_reps=25, n_respondents=80, n_tasks=10, truth_reps=15, seed=3
    ).set_index("parameter")
    attrs = table.loc[["Support=Chat", "Support=Phone 24/7", "SSO=Included"]]
    assert (attrs["se_ratio"] > 1.15).all(), table
    assert attrs["coverage_cluster"].mean() >= 0.85, table
    assert attrs["coverage_plain"].mean() < attrs["coverage_cluster"].mean(), table


def _true_median_wtp(sim, parameter: str) -> float:
    """The money value of the median simulated respondent: median of −β_r / β_price,r."""
    b = sim.individual_betas.pivot(index="respondent_id", columns="parameter", values="value")
    return float((-b[parameter] / b["price"]).median())


@pytest.mark.slow
def test_hb_numeric_money_per_unit_within_10_percent():
    """HB on a numeric attribute with lognormal (skewed) value per seat: the median respondent's
    money value of a seat within 10%, and the respondents' spread brackets it."""
    sim = _numeric_sim(n=400, seed=8)
    res = estimate_conjoint(
        _answers(sim.answers), levels={"Support": ["Email", "Chat"]}, numeric=["Seats"], method="hb",
        draws=300, tune=300, chains=2, rng=np.random.default_rng(3),
    )  # fmt: skip
    w = res.wtp.set_index(["segment", "attribute", "level"]).loc[("all", "Seats", "per_unit")]
    truth = _true_median_wtp(sim, "Seats")
    assert w["wtp"] == pytest.approx(truth, rel=0.10), (w, truth)
    assert w["respondents_p25"] < truth < w["respondents_p75"]
    assert set(res.partworths.loc[res.partworths.attribute == "Seats", "level"]) == {"per_unit"}


def test_run_says_which_conjoint_model_priced_and_why(tmp_path):
    from wtp.pipeline import conjoint_method_reason, run_study

    sim = _small_sim(n=120, segments=1)
    sim.answers.drop(columns="segment").to_csv(tmp_path / "conjoint.csv", index=False)
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "cj"\n[data]\nconjoint = "conjoint.csv"\n'
    )
    run = run_study(tmp_path, fast=True)
    assert run.conjoint.method == "mnl" and "--fast" in run.conjoint.method_reason
    assert "--fast" in (run.conjoint.method_reason or "") and run.conjoint.se_type == "cluster"
    # without --fast the default is hierarchical Bayes; an unconverged sampler falls back to the
    # MNL and says why
    from wtp.settings import parse_settings

    assert parse_settings({}).conjoint.method == "hb"
    assert parse_settings({}, fast=True).conjoint.method == "mnl"
    assert "hierarchical Bayes" in conjoint_method_reason("hb", fast=False, chosen=False)
    assert "study.toml" in conjoint_method_reason("mnl", fast=False, chosen=True)
    fallback = conjoint_method_reason("hb", fast=False, chosen=False, unsettled="R-hat 1.2")
    assert "did not converge" in fallback and "R-hat 1.2" in fallback
    (tmp_path / "study.toml").write_text(
        '[study]\nname = "cj"\n[data]\nconjoint = "conjoint.csv"\n'
        "[conjoint]\ndraws = 10\ntune = 10\nuntil_converged = false\n"
    )
    starved = run_study(tmp_path, fast=False)
    assert starved.conjoint.method == "mnl"
    assert "did not converge" in starved.conjoint.method_reason
    from wtp.report.conjoint import _methods

    assert run.conjoint.method_reason in _methods(run.conjoint)


def test_real_chocolate_scenario_priced_beyond_the_tested_range_is_marked(tmp_path):
    """Chocolate was tested at $0.99–2.49; a bar at $4.99 gets a share, marked as extrapolated."""
    path = tmp_path / "chocolate.csv"
    _chocolate().to_csv(path, index=False)
    scen = tmp_path / "scenario.csv"
    bar = {
        "Brand": "Godiva",
        "Cocoa strength": "Milk",
        "Sugar": "Standard",
        "Origin": "Switzerland",
        "Nuts": "Almonds",
        "Ethical": "BLANK",
    }
    pd.DataFrame(
        [{"product": "usual", **bar, "price": 1.99}, {"product": "luxury", **bar, "price": 4.99}]
    ).to_csv(scen, index=False)
    r = _run("conjoint", path, "--scenario", scen, "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert "luxury: price 4.99 is 2.5 above the tested range 0.99-2.49" in r.output
    sim = pd.read_csv(tmp_path / "out" / "simulation.csv").set_index("product")
    assert sim.loc["luxury", "extrapolated"] and not sim.loc["usual", "extrapolated"]


@pytest.mark.slow
def test_real_chocolate_hb_converges_by_default():
    # 403 respondents x 6 tasks x 4 alternatives: converged with the library defaults (a longer
    # time budget only because the test machine is shared)
    res = estimate_conjoint(
        _answers(_chocolate()), method="hb", rng=np.random.default_rng(0), time_budget=1800
    )
    d = res.diagnostics.attrs["hb"]
    print(
        "chocolate HB:",
        d["draws_per_chain"],
        "draws per chain,",
        d["total_s"],
        "s,",
        d["stopped_because"],
    )
    assert bool(res.diagnostics["ok"].all()) and d["converged"], d["limiting"]
    assert res.fit.set_index("segment").loc["all", "price_coef"] < 0
    w = res.wtp.set_index(["attribute", "level"])["wtp"]
    assert w[("Sugar", "Sugar free")] < 0


# Level order (contract §5)


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (["yes", "no"], ["no", "yes"]),
        (["Included", "Not included"], ["Not included", "Included"]),
        (["With SSO", "WITHOUT"], ["WITHOUT", "With SSO"]),
        (["10", "5", "unlimited"], ["5", "10", "unlimited"]),
        (["25", "5", "100"], ["5", "25", "100"]),
        (["none", "10", "5"], ["none", "5", "10"]),
        (["Phone", "Email", "Chat"], ["Phone", "Email", "Chat"]),
        (["true", "false"], ["false", "true"]),
    ],
)
def test_default_level_order(seen, expected):
    from wtp.conjoint import order_levels

    assert order_levels(seen)[0] == expected


def test_presence_read_first_is_still_not_the_reference():
    # the file shows "yes" first: the reference must still be "no", so "has it" is positive
    frame = _two_task_types().replace({"feature": {"A": "no", "B": "yes"}})
    res = estimate_conjoint(_answers(frame))
    pw = res.partworths.set_index(["attribute", "level"])
    assert res.attributes["feature"] == ["no", "yes"]
    assert (
        pw.loc[("feature", "no"), "level_order"] == 1
        and pw.loc[("feature", "yes"), "level_order"] == 2
    )
    assert pw.loc[("feature", "yes"), "utility"] == pytest.approx(math.log(3), abs=1e-6)
    assert res.wtp.set_index(["attribute", "level"]).loc[("feature", "yes"), "wtp"] > 0
    assert any("level order no < yes" in n for n in res.notes)
    # study.toml's order still wins
    flipped = estimate_conjoint(_answers(frame), levels={"feature": ["yes", "no"]})
    assert flipped.attributes["feature"] == ["yes", "no"]


# ----------------------------------------------------------------------------------------------
# HB priors on each parameter's own scale


def test_prior_units_are_the_largest_segment_mnl_magnitude_at_least_one():
    from wtp.conjoint.estimate import _estimate_mnl, prior_units

    sim = _small_sim(n=120, segments=2, seed=3)
    data = prepare_choice_data(_answers(sim.answers), levels=sim.attributes)
    units = prior_units(data)
    betas, _, fits, _ = _estimate_mnl(data, "plain")
    assert all(f["converged"] for f in fits)
    mnl = np.array(list(betas.values()))
    assert units == pytest.approx(np.maximum(1.0, np.abs(mnl).max(axis=0)))
    price = list(data.coding.parameters).index("price")
    # price per price / (highest tested price): a coefficient of order ten, not one
    assert units[price] > 3


def test_prior_units_ignore_a_level_the_data_do_not_pin_down():
    # segment 2 takes a Chat-support profile whenever one is shown: its MNL drifts to a large
    # coefficient with a larger standard error, which must not widen that level's prior
    sim = _small_sim(n=160, segments=2, seed=3)
    a = sim.answers.copy()
    seg2 = a["segment"] == sorted(a["segment"].unique())[1]
    chat = a["Support"].eq("Chat")
    task = ["respondent_id", "task"]
    first_chat = a[chat & seg2].groupby(task).head(1).index
    has_chat = a.assign(c=chat).groupby(task)["c"].transform("any")
    a.loc[seg2 & has_chat, "chosen"] = 0
    a.loc[first_chat, "chosen"] = 1
    data = prepare_choice_data(_answers(a), levels=sim.attributes)
    from wtp.conjoint.estimate import _estimate_mnl, prior_units

    betas, covs, fits, _ = _estimate_mnl(data, "plain")
    k = list(data.coding.parameters).index("Support=Chat")
    seg = sorted(a["segment"].unique())[1]
    assert abs(betas[seg][k]) > 5  # the drift
    assert prior_units(data)[k] < 5


def _low_value_world(folder, n):
    from wtp.simulate import simulate_tier_world

    w = simulate_tier_world(
        folder, process="expensive-below", n_respondents=n, seed=1, draws=20, population=200
    )
    answers = attach_segments(
        validate_conjoint(pd.read_csv(w.folder / "conjoint.csv")),
        pd.read_csv(w.folder / "respondents.csv"),
    )
    return w, answers


def _price_coefficient_ratios(res, world) -> dict[str, float]:
    """Per segment: the median of each respondent's posterior mean price coefficient over the
    world's true one (−1 / their noise in money)."""
    ind, slope = res.individual, res.coding.price_slope_row()
    out = {}
    for seg, people in world.respondents.items():
        mask = np.asarray(ind.segment).astype(str) == seg
        est = ind.draws[mask].mean(axis=1) @ slope
        out[seg] = float(np.median(est / (-1.0 / people.noise)))
    return out


def test_hb_price_coefficient_of_a_low_value_segment_is_not_shrunk(tmp_path, monkeypatch):
    # Three segments whose values differ tenfold, priced on one wide grid: per price / (highest
    # tested price) the low-value segment's coefficient is about −150 and differs by tens
    # between people. With priors stated on the coding's unit (scales about 1) the HB shrank
    # it to 0.3× the truth, which inflated that segment's money and choice noise threefold.
    import wtp.conjoint.estimate as est

    w, answers = _low_value_world(tmp_path / "w", 240)
    fit = dict(method="hb", rng=np.random.default_rng(2), draws=150, tune=200, chains=2)
    ratios = _price_coefficient_ratios(estimate_conjoint(answers, **fit), w)
    assert 0.75 <= ratios["Startups"] <= 1.33 and 0.75 <= ratios["SMB"] <= 1.33, ratios
    # the population covariance is common to the segments, so the high-value segment (60
    # respondents here) borrows the low-value one's wide spread: 1.1–1.2× in 600-respondent
    # worlds, more in this small one
    assert 0.75 <= ratios["Enterprise"] <= 1.7, ratios
    monkeypatch.setattr(est, "prior_units", lambda data: np.ones(data.coding.n_parameters))
    shrunk = _price_coefficient_ratios(estimate_conjoint(answers, **fit), w)
    assert shrunk["Startups"] < 0.5 and shrunk["SMB"] < 0.75, shrunk
