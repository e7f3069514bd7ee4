"""One generator per stage from --seed (wtp.randomness)."""

import numpy as np
import pytest

from wtp.randomness import describe, stage_key, stage_rng, stage_seed


def test_stage_streams_are_reproducible_and_distinct():
    a = stage_rng(3, "vw").random(5)
    np.testing.assert_array_equal(a, stage_rng(3, "vw").random(5))
    assert not np.allclose(a, stage_rng(3, "maxdiff").random(5))
    assert not np.allclose(a, stage_rng(4, "vw").random(5))


def test_stage_seed_is_a_spawn_keyed_child_of_the_seed():
    # by hand: NumPy's SeedSequence with the stage's key as spawn key
    ss = stage_seed(7, "conjoint")
    assert ss.entropy == 7 and ss.spawn_key == (stage_key("conjoint"),)
    expected = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(7, spawn_key=(stage_key("conjoint"),)))
    )
    np.testing.assert_array_equal(
        stage_rng(7, "conjoint").integers(1000, size=8), expected.integers(1000, size=8)
    )
    # the key does not depend on the process (Python's hash() would)
    assert stage_key("vw") == int.from_bytes(
        __import__("hashlib").sha256(b"vw").digest()[:4], "big"
    )
    assert "SeedSequence(7" in describe(7, "conjoint")


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_seed_is_refused(bad):
    with pytest.raises(ValueError):
        stage_rng(bad, "vw")


def test_library_functions_refuse_integers_where_they_draw():
    from wtp.simulate import simulate_vw
    from wtp.vanwestendorp import van_westendorp

    sim = simulate_vw(60, seed=1)
    with pytest.raises(TypeError, match="Generator"):
        van_westendorp(sim.answers, bootstrap=10, rng=3)
    van_westendorp(sim.answers)  # no bootstrap: no randomness, no generator needed


def test_single_file_command_and_pipeline_stage_share_one_stream(tmp_path):
    """``wtp vw --seed 3`` draws its bootstrap from the same child of the seed as the ``vw`` stage
    of ``wtp run --seed 3``: the intervals agree to the last digit."""
    import pandas as pd
    from typer.testing import CliRunner

    from wtp.cli import app
    from wtp.simulate import simulate_vw
    from wtp.vanwestendorp import van_westendorp

    sim = simulate_vw(200, segments=2, seed=2)
    sim.answers.to_csv(tmp_path / "vw.csv", index=False)
    res = CliRunner().invoke(
        app,
        [
            "vw",
            str(tmp_path / "vw.csv"),
            "--out",
            str(tmp_path / "out"),
            "--seed",
            "3",
            "--bootstrap",
            "30",
        ],
    )
    assert res.exit_code == 0, res.output
    cli = pd.read_csv(tmp_path / "out" / "price_points.csv")
    from wtp.io import attach_segments, read_table, validate_vw
    from wtp.schema import segment_order, sort_by_segment

    # rows in the study's segment order, as both the loader and the command put them
    answers = attach_segments(validate_vw(read_table(tmp_path / "vw.csv")))
    answers = sort_by_segment(answers, segment_order(None, None, [answers]))
    lib = van_westendorp(answers, bootstrap=30, rng=stage_rng(3, "vw")).price_points
    assert cli["pmc_lower"].tolist() == pytest.approx(
        lib["pmc_lower"].tolist(), rel=1e-8
    )  # CSV keeps 10 digits
    other = van_westendorp(answers, bootstrap=30, rng=stage_rng(4, "vw")).price_points
    assert other["pmc_lower"].tolist() != lib["pmc_lower"].tolist()
