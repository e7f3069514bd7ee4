"""Where every random number of a run comes from: one ``--seed``, one generator per stage.

Library functions take a ``numpy.random.Generator`` and never make their own from an integer;
the command line and the pipeline make those generators here, and only here:

=======================  =====================================================================
call                     gives
=======================  =====================================================================
``stage_rng(seed, s)``   ``Generator(PCG64(SeedSequence(seed, spawn_key=(key(s),))))``
``stage_key(s)``         the first 4 bytes of SHA-256 of the stage name, as an integer
``describe(seed, s)``    ``"SeedSequence(seed, spawn_key=(key,))"``, shown in the report
=======================  =====================================================================

Why keyed by the stage's name and not spawned in order: a stage's numbers then depend only on
the seed and the stage, not on which other stages ran before it (a study without a conjoint
file gets the same Van Westendorp bootstrap as one with it), and ``wtp vw --seed 3`` gives the
same intervals as the ``vw`` stage of ``wtp run --seed 3``. Children of one ``SeedSequence``
with different spawn keys are independent streams (NumPy's documented parallel-streams recipe).

Nothing draws random numbers while writing reports: writers get finished result objects.
"""

from __future__ import annotations

import hashlib

import numpy as np

# the stages of wtp run, and the single-file commands that share their streams
STAGES = ("vw", "maxdiff", "turf", "conjoint", "segments", "price_books", "design")


def stage_key(stage: str) -> int:
    """A stable 32-bit key for a stage name (``hash()`` is salted per process, so not that)."""
    return int.from_bytes(hashlib.sha256(stage.encode("utf-8")).digest()[:4], "big")


def stage_seed(seed: int, stage: str) -> np.random.SeedSequence:
    """The ``SeedSequence`` of one stage of a run seeded with ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed), spawn_key=(stage_key(stage),))


def stage_rng(seed: int, stage: str) -> np.random.Generator:
    """The generator a stage draws all its random numbers from."""
    return np.random.default_rng(stage_seed(seed, stage))


def describe(seed: int, stage: str) -> str:
    """How a stage's generator was made, for provenance (NumPy's default bit generator, PCG64)."""
    return f"SeedSequence({int(seed)}, spawn_key=({stage_key(stage)},))"


def int_seed(rng: np.random.Generator) -> int:
    """An integer seed drawn from ``rng``, for libraries that only take integers (PyMC, nutpie)."""
    return int(rng.integers(2**31 - 1))


__all__ = ["STAGES", "stage_key", "stage_seed", "stage_rng", "describe", "int_seed"]
