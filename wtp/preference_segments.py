"""Preference segments: respondents grouped by what they value (latent classes from MaxDiff).

Sawtooth's latent class and bayesm's mixtures find segments in the choices themselves. Here the
choices have already been modelled — hierarchical Bayes gives every respondent a utility per
item — so grouping respondents is a clustering of those utilities, done by scikit-learn's
``GaussianMixture``; nothing is re-estimated.

=================== ========================================================================
step                what is computed
=================== ========================================================================
utilities           U (respondents × items): the MaxDiff result's individual utilities
                    (posterior means for hb), each row zero-centred
mixture             U ~ Σ_k π_k N(μ_k, diag σ²_k), fitted by EM (``n_init`` starts)
K                   given, or ``auto``: the K in 1…``k_max`` with the lowest
                    BIC = −2 log L + p log n
membership          each respondent's most probable group; ``probability`` its posterior
                    probability; groups named P1, P2 … by size
shares              per group, the mean over its respondents of the contract share
                    exp(u) / (exp(u) + k − 1), rescaled to 100 (k = items per task);
                    ``lower``/``upper``: mean ± 1.96 standard errors over respondents
cross-table         given segment × preference segment counts; adjusted Rand index between
                    the two groupings (1 = the same partition, 0 = chance agreement)
=================== ========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from wtp.errors import InputError, Problem

__all__ = ["PreferenceSegments", "preference_segments", "parse_latent_segments"]


@dataclass(frozen=True)
class PreferenceSegments:
    """Respondents grouped by their individual utilities.

    Attributes
    ----------
    respondents : DataFrame
        ``respondent_id, segment, given_segment, probability``: ``segment`` is the preference
        segment (P1 …), so the frame is a respondents.csv a study can use for pricing.
    sizes : DataFrame
        ``segment, respondents, share, top_items`` (the items the group values most above
        the sample).
    shares : DataFrame
        ``segment, item, label, utility, share, lower, upper`` per preference segment.
    crosstab : DataFrame
        Given segment (rows) × preference segment (columns), respondent counts.
    bic : DataFrame
        ``k, bic, chosen`` for every K tried.
    k : int
        Groups found.
    adjusted_rand : float
        Agreement of the preference segments with the given segments (NaN with one given
        segment).
    """

    respondents: pd.DataFrame
    sizes: pd.DataFrame
    shares: pd.DataFrame
    crosstab: pd.DataFrame
    bic: pd.DataFrame
    k: int
    adjusted_rand: float
    method: str
    covariance: str

    def summary(self) -> pd.DataFrame:
        return self.sizes.copy()

    def to_frame(self) -> pd.DataFrame:
        """respondents.csv: respondent_id, segment (the preference segment), …"""
        return self.respondents.copy()


def parse_latent_segments(
    value: str | int | None, *, source: str = "--latent-segments"
) -> int | Literal["auto"] | None:
    """``"auto"`` or a whole number ≥ 1."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise InputError(Problem(source, None, None, "a number of groups (1 or more) or 'auto'", value))


def _utility_matrix(
    individual: pd.DataFrame, items: list[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    wide = individual.pivot_table(
        index="respondent_id", columns="item", values="utility", aggfunc="mean", sort=False
    )
    cols = [c for c in (items or list(wide.columns)) if c in wide.columns]
    wide = wide[cols]
    given = (
        individual.groupby("respondent_id", sort=False)["segment"].first().reindex(wide.index)
        if "segment" in individual.columns
        else pd.Series("all", index=wide.index)
    )
    U = wide.to_numpy(dtype=float)
    U = U - U.mean(axis=1, keepdims=True)
    return U, wide.index.to_numpy(dtype=object), given.to_numpy(dtype=object), cols


def preference_segments(
    result,
    k: int | Literal["auto"] = "auto",
    *,
    k_max: int = 6,
    per_task: int | None = None,
    rng: np.random.Generator,
    n_init: int = 5,
    covariance: Literal["diag", "spherical", "full"] = "diag",
    labels: dict[str, str] | None = None,
) -> PreferenceSegments:
    """Group respondents by their individual MaxDiff utilities with a Gaussian mixture.

    Parameters
    ----------
    result : MaxDiffResult or DataFrame
        A :class:`wtp.maxdiff.MaxDiffResult` with individual utilities (``method="hb"``), or
        its ``individual_utilities`` frame (``respondent_id, item, utility[, segment]``).
    k : int or "auto"
        Number of groups, or ``auto`` for the lowest BIC among 1 … ``k_max``.
    per_task : int, optional
        Items shown per task (k of the share formula); taken from the result when given one.
    rng : Generator
        Seeds the mixture's starts (``random_state``).
    covariance : str
        The mixture's covariance per group (scikit-learn ``covariance_type``).
    """
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    from wtp.maxdiff import probability_shares
    from wtp.randomness import int_seed

    if isinstance(result, pd.DataFrame):
        individual, items, method = result, None, "given utilities"
        if per_task is None:
            raise InputError(
                Problem(
                    "preference segments", None, "per_task", "the number of items shown per task"
                )
            )
    else:
        individual, items, method = result.individual_utilities, list(result.items), result.method
        per_task = per_task or result.k
        labels = labels or dict(result.labels)
    if individual is None or individual.empty:
        raise InputError(
            Problem(
                "--latent-segments",
                None,
                None,
                "individual utilities: run MaxDiff with --method hb",
            )
        )
    U, ids, given, items = _utility_matrix(individual, items)
    n = len(U)
    if k != "auto" and (not isinstance(k, int) or k < 1 or k > n):
        raise InputError(
            Problem(
                "--latent-segments",
                None,
                None,
                f"between 1 and {n} groups (respondents), or 'auto'",
                k,
            )
        )
    seed = int_seed(rng)  # scikit-learn takes an integer random_state
    candidates = range(1, min(k_max, n) + 1) if k == "auto" else [k]
    fits, rows = {}, []
    for kk in candidates:
        gm = GaussianMixture(
            n_components=kk,
            covariance_type=covariance,
            n_init=n_init,
            random_state=seed,
            reg_covar=1e-4,
        )
        gm.fit(U)
        fits[kk] = gm
        rows.append({"k": kk, "bic": float(gm.bic(U))})
    bic = pd.DataFrame(rows)
    chosen = int(bic.loc[bic["bic"].idxmin(), "k"]) if k == "auto" else int(k)
    bic["chosen"] = bic["k"] == chosen
    gm = fits[chosen]
    post = gm.predict_proba(U)
    raw = post.argmax(axis=1)
    # name groups by size (P1 the largest), ties by first appearance, so names are stable
    sizes = np.bincount(raw, minlength=chosen)
    order = sorted(range(chosen), key=lambda j: (-sizes[j], j))
    rename = {old: new for new, old in enumerate(order)}
    group = np.array([rename[g] for g in raw])
    names = np.array([f"P{j + 1}" for j in range(chosen)], dtype=object)
    respondents = pd.DataFrame(
        {
            "respondent_id": ids,
            "segment": names[group],
            "given_segment": given,
            "probability": post.max(axis=1),
        }
    )

    S = probability_shares(U, per_task)
    overall = S.mean(axis=0)
    share_rows, size_rows = [], []
    for j in range(chosen):
        m = group == j
        mean = S[m].mean(axis=0)
        se = (
            S[m].std(axis=0, ddof=1) / np.sqrt(m.sum())
            if m.sum() > 1
            else np.full(len(items), np.nan)
        )
        u = U[m].mean(axis=0)
        for i, item in enumerate(items):
            share_rows.append(
                {
                    "segment": names[j],
                    "item": item,
                    "label": (labels or {}).get(item, item),
                    "utility": u[i],
                    "share": mean[i],
                    "lower": mean[i] - 1.96 * se[i],
                    "upper": mean[i] + 1.96 * se[i],
                }
            )
        lift = mean - overall
        top = [(labels or {}).get(items[i], items[i]) for i in np.argsort(-lift)[:3] if lift[i] > 0]
        size_rows.append(
            {
                "segment": names[j],
                "respondents": int(m.sum()),
                "share": float(m.mean()),
                "top_items": "; ".join(top),
            }
        )
    crosstab = pd.crosstab(
        pd.Series(given, name="given_segment"), pd.Series(names[group], name="segment")
    )
    ari = float(adjusted_rand_score(given, group)) if len(set(given)) > 1 else float("nan")
    return PreferenceSegments(
        respondents=respondents,
        sizes=pd.DataFrame(size_rows),
        shares=pd.DataFrame(share_rows),
        crosstab=crosstab,
        bic=bic,
        k=chosen,
        adjusted_rand=ari,
        method=method,
        covariance=covariance,
    )


def write_outputs(
    folder, pref: PreferenceSegments, *, meta: dict | None = None, provenance: dict | None = None
) -> list[str]:
    """``preference_segments.csv`` (sizes), ``preference_shares.csv``, ``preference_crosstab.csv``,
    ``preference_bic.csv``, ``preference_respondents.csv`` (a respondents.csv for pricing) and
    ``preference_segments.html``."""
    from pathlib import Path

    from wtp.io import write_csv
    from wtp.report import records, render

    folder = Path(folder)
    tables = {
        "preference_segments.csv": pref.sizes,
        "preference_shares.csv": pref.shares,
        "preference_crosstab.csv": pref.crosstab.reset_index(),
        "preference_bic.csv": pref.bic,
        "preference_respondents.csv": pref.respondents,
    }
    for name, frame in tables.items():
        write_csv(frame, folder / name)
    wide = pref.shares.pivot(index="label", columns="segment", values="share")
    wide = wide.loc[wide.max(axis=1).sort_values(ascending=False).index]
    ctx = {
        "meta": dict(meta or {}) | {"name": (meta or {}).get("name", "wtp study")},
        "pref": pref,
        "sizes": records(pref.sizes),
        "bic": records(pref.bic),
        "segments": list(pref.sizes["segment"]),
        "share_rows": [
            {"label": lab, "cells": [float(v) for v in row]}
            for lab, row in zip(wide.index, wide.to_numpy(), strict=True)
        ],
        "cross_cols": [str(c) for c in pref.crosstab.columns],
        "cross_rows": [
            {"given": str(i), "cells": [int(v) for v in row]}
            for i, row in zip(pref.crosstab.index, pref.crosstab.to_numpy(), strict=True)
        ],
    }
    if provenance is not None:
        ctx["provenance"] = provenance
    render("preference_segments.html.j2", folder / "preference_segments.html", **ctx)
    return [*tables, "preference_segments.html"]
