"""What the pricing stage gets from the earlier stages: segments, volumes, today's book.

=================== ============================================================================
column              per segment
=================== ============================================================================
prospects           ``market_size`` if given, else ``customers`` (segments.csv); without
                    segments.csv the survey's weighted segment mix per one prospect
customers, arpa     today's customers and revenue per account (the baseline book)
conversion          today's trial → paid conversion (``conversions / trials`` or
                    ``conversion_rate``), for calibration
trials, conversions the counts behind it, where segments.csv has them (the calibration draws
                    the observed conversion from its Beta posterior)
seats               ``seats_per_account`` (prices are then per seat), else 1
churn_rate, margin  for LTV
=================== ============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from wtp.pricing.settings import ALL


@dataclass(frozen=True)
class Volumes:
    table: pd.DataFrame  # indexed by segment
    source: str
    notes: tuple[str, ...] = ()
    flags: dict[str, str] = field(default_factory=dict)  # MAP "too small"/"too costly" flags

    @property
    def per_prospect(self) -> bool:
        return "per one prospect" in self.source

    def get(self, segment: str, column: str, default: float = float("nan")) -> float:
        if segment not in self.table.index or column not in self.table.columns:
            return default
        v = self.table.loc[segment, column]
        return float(v) if pd.notna(v) else default


def _column(m: pd.DataFrame, name: str, segs: list[str]) -> np.ndarray:
    return (
        m[name].reindex(segs).astype(float).to_numpy()
        if name in m.columns
        else np.full(len(segs), np.nan)
    )


def volumes(segments, segs: list[str], mix: pd.Series | None) -> Volumes:
    """Volumes per segment from a :class:`wtp.segments.SegmentScores` (or a frame)."""
    notes: list[str] = []
    metrics = getattr(segments, "metrics", None) if segments is not None else None
    if metrics is None and isinstance(segments, pd.DataFrame):
        metrics = segments
    flags: dict[str, str] = {}
    if (
        segments is not None
        and getattr(segments, "flags", None) is not None
        and len(segments.flags)
    ):
        for r in segments.flags.itertuples(index=False):
            flags[str(r.segment)] = f"{r.flag}: {r.reason}"
    if metrics is not None:
        m = metrics.drop_duplicates("segment")
        m = m.set_index(m["segment"].astype(str))
        out = pd.DataFrame(index=pd.Index(segs, name="segment"))
        market, cust = _column(m, "market_size", segs), _column(m, "customers", segs)
        out["prospects"] = np.where(np.isfinite(market), market, cust)
        out["prospects_source"] = np.where(
            np.isfinite(market), "market_size", np.where(np.isfinite(cust), "customers", "missing")
        )
        out["customers"] = cust
        out["arpa"] = _column(m, "arpa", segs)
        conv = _column(m, "conversion_rate", segs)
        if not np.isfinite(conv).any() and {"trials", "conversions"} <= set(m.columns):
            t, c = _column(m, "trials", segs), _column(m, "conversions", segs)
            conv = np.where(t > 0, c / np.where(t > 0, t, 1), np.nan)
        out["conversion"] = conv
        out["trials"] = _column(m, "trials", segs)
        out["conversions"] = _column(m, "conversions", segs)
        out["churn_rate"] = _column(m, "churn_rate", segs)
        out["gross_margin"] = _column(m, "gross_margin", segs)
        seats = _column(m, "seats_per_account", segs)
        out["seats"] = np.where(np.isfinite(seats) & (seats > 0), seats, 1.0)
        src = (
            "market_size"
            if (out["prospects_source"] == "market_size").all()
            else "market_size where given, else customers"
        )
        if (out["prospects_source"] == "customers").all():
            src = "customers (no market_size)"
        lost = [s for s in segs if out.loc[s, "prospects_source"] == "missing"]
        if lost:
            notes.append(
                "No volume in segments.csv for " + ", ".join(lost) + ": left out of the scenarios."
            )
        unsurveyed = [str(s) for s in m.index if str(s) not in segs]
        if unsurveyed and segs != [ALL]:
            notes.append(
                "segments.csv lists "
                + ", ".join(unsurveyed)
                + " but no survey answers come from it: not priced."
            )
        return Volumes(out, src, tuple(notes), flags)
    out = pd.DataFrame(index=pd.Index(segs, name="segment"))
    if mix is None or len(segs) == 1:
        out["prospects"] = 1.0 / len(segs)
    else:
        mix = mix.reindex(segs).fillna(0.0)
        out["prospects"] = (mix / mix.sum()).to_numpy()
    out["prospects_source"] = "survey mix"
    for c in (
        "customers",
        "arpa",
        "conversion",
        "trials",
        "conversions",
        "churn_rate",
        "gross_margin",
    ):
        out[c] = np.nan
    out["seats"] = 1.0
    return Volumes(
        out,
        "the survey's weighted segment mix, per one prospect (no segments.csv)",
        tuple(notes),
        flags,
    )


def survey_mix(*frames: pd.DataFrame | None) -> pd.Series | None:
    """Weighted respondents per segment in the first answer frame that has segments."""
    for frame in frames:
        if frame is not None and "segment" in frame.columns and "respondent_id" in frame.columns:
            f = frame.drop_duplicates("respondent_id")
            w = (
                f["weight"].astype(float)
                if "weight" in f.columns
                else pd.Series(1.0, index=f.index)
            )
            return w.groupby(f["segment"].astype(str)).sum()
    return None
