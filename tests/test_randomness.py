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
