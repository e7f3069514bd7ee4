"""Sample size per segment and instrument: the thresholds, the counts and the flags.

A segment with fewer respondents than its instrument's minimum still gets its numbers, but every
table that carries them gets ``small_sample = True`` on its rows, the result's warnings say so
(reports and the command line print them), and the pricing stage can read
:func:`sample_sizes` to give such a segment no price book of its own.

================= ======= ==========================================================
setting           default why
================= ======= ==========================================================
``min_n``         30      the usual floor for a segment's shares and price points
``min_n_vw``      min_n   four price answers per respondent: 30 is the common rule
``min_n_conjoint`` min_n  aggregate logit per segment
``min_n_maxdiff`` min_n;  hierarchical Bayes by segment shrinks a small segment to the
                  50 (hb) population: it needs more respondents to speak for itself
================= ======= ==========================================================

Read from ``[sample]`` in study.toml by :func:`wtp.study.sample_settings`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from wtp.settings import Sample

DEFAULT_MIN_N = Sample.min_n  # study.toml [sample] min_n: the schema owns the default
DEFAULT_MIN_N_HB_MAXDIFF = 50
INSTRUMENTS = ("vw", "maxdiff", "conjoint")
FLAG = "small_sample"


@dataclass(frozen=True)
class SampleSettings:
    """Minimum respondents per segment, overall and per instrument (None: the default)."""

    min_n: int = DEFAULT_MIN_N
    min_n_vw: int | None = None
    min_n_maxdiff: int | None = None
    min_n_conjoint: int | None = None

    @classmethod
    def from_settings(cls, section) -> SampleSettings:
        """From the typed ``[sample]`` section (:class:`wtp.settings.Sample`)."""
        return cls(**{f.name: getattr(section, f.name) for f in dataclasses.fields(cls)})

    def threshold(self, instrument: str, method: str | None = None) -> int:
        """The minimum n for ``instrument`` (``vw``, ``maxdiff``, ``conjoint``) and its method."""
        own = getattr(self, f"min_n_{instrument}")
        if own is not None:
            return int(own)
        if instrument == "maxdiff" and method == "hb":
            return max(self.min_n, DEFAULT_MIN_N_HB_MAXDIFF)
        return int(self.min_n)


def respondents_per_segment(result: Any, instrument: str) -> pd.Series:
    """Respondents behind each segment's numbers (``all`` included), from a result object."""
    if instrument == "vw":
        pp = result.price_points
        return pd.Series(pp["n"].to_numpy(dtype=int), index=pp["segment"].astype(str))
    if instrument == "maxdiff":
        first = result.item_scores.drop_duplicates("segment")
        return pd.Series(
            first["n_respondents"].to_numpy(dtype=int), index=first["segment"].astype(str)
        )
    if instrument == "conjoint":
        fit = result.fit
        return pd.Series(fit["n_respondents"].to_numpy(dtype=int), index=fit["segment"].astype(str))
    raise ValueError(f"unknown instrument {instrument!r}")


# the tables of each result that carry per-segment numbers
_TABLES = {
    "vw": ("price_points", "curves", "nms"),
    "maxdiff": ("item_scores",),
    "conjoint": ("partworths", "importances", "wtp", "fit"),
}
_NAMES = {"vw": "Van Westendorp", "maxdiff": "MaxDiff", "conjoint": "conjoint"}


#: how :func:`flag_small_samples` begins the warning it adds to a result
SMALL_SAMPLE = "small sample:"


def is_small_sample_warning(warning: str) -> bool:
    """Is ``warning`` the one :func:`flag_small_samples` added?"""
    return warning.startswith(SMALL_SAMPLE)


def flag_small_samples(result: Any, instrument: str, min_n: int) -> Any:
    """The result with ``small_sample`` on every per-segment table and a warning per small segment."""
    n = respondents_per_segment(result, instrument)
    small = n < min_n
    changes: dict[str, Any] = {}
    for name in _TABLES[instrument]:
        frame = getattr(result, name, None)
        if isinstance(frame, pd.DataFrame) and "segment" in frame.columns:
            frame = frame.copy()
            frame[FLAG] = frame["segment"].astype(str).map(small).fillna(False).astype(bool)
            changes[name] = frame
    notes = [
        f"{SMALL_SAMPLE} segment {seg} has {int(n[seg])} respondents for {_NAMES[instrument]}, below the minimum "
        f"of {min_n} ([sample] min_n_{instrument}); its numbers are flagged small_sample and are fragile"
        for seg in n.index[small.to_numpy()]
    ]
    if hasattr(result, "warnings"):
        changes["warnings"] = tuple(
            w for w in result.warnings if not is_small_sample_warning(w)
        ) + tuple(notes)
    return dataclasses.replace(result, **changes)


def sample_sizes(
    results: dict[str, Any], settings: SampleSettings, methods: dict[str, str] | None = None
) -> pd.DataFrame:
    """``segment, instrument, n, min_n, small_sample`` for every instrument result given.

    ``results`` maps ``vw``/``maxdiff``/``conjoint`` to their result objects (missing ones are
    skipped); ``methods`` the estimation method per instrument (MaxDiff HB has its own floor).
    """
    methods = methods or {}
    rows = []
    for instrument in INSTRUMENTS:
        result = results.get(instrument)
        if result is None:
            continue
        method = methods.get(instrument) or getattr(result, "method", None)
        floor = settings.threshold(instrument, method)
        for seg, n in respondents_per_segment(result, instrument).items():
            rows.append(
                {
                    "segment": seg,
                    "instrument": instrument,
                    "n": int(n),
                    "min_n": floor,
                    FLAG: bool(n < floor),
                }
            )
    return pd.DataFrame(rows, columns=["segment", "instrument", "n", "min_n", FLAG])
