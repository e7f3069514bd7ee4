"""Conjoint settings of a study (levels, numeric attributes, tested prices) and the tables the report shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from wtp.conjoint.estimate import ConjointResult
from wtp.conjoint.simulator import demand_curve, extrapolation, simulate_market
from wtp.errors import InputError, Problem
from wtp.settings import StudySettings, as_settings

# ----------------------------------------------------------------------------------------------
# Study settings


def conjoint_levels(
    settings: StudySettings | Mapping, *, source: str = "study.toml", required: bool = False
) -> dict[str, list[str]]:
    """Attribute → ordered levels from ``[conjoint.attributes]`` (price excluded).

    ``settings``: the typed settings (:mod:`wtp.settings`) or a parsed study.toml."""
    attrs = as_settings(settings, source=source).conjoint.attributes
    if required and not any(k != "price" for k in attrs):
        raise InputError(
            Problem(
                source,
                None,
                "conjoint.attributes",
                "a [conjoint.attributes] table listing each attribute's levels",
                "none",
            )
        )
    return {str(k): [str(x) for x in v] for k, v in attrs.items() if k != "price"}


def conjoint_numeric(
    settings: StudySettings | Mapping, *, source: str = "study.toml"
) -> dict[str, tuple[float, ...]]:
    """Numeric attributes from ``[conjoint] numeric = ["seats"]`` (linear) and, for piecewise
    linear ones, ``[conjoint.piecewise] storage_gb = [100]`` (knots among the tested values)."""
    cj = as_settings(settings, source=source).conjoint
    names = [cj.numeric] if isinstance(cj.numeric, str) else list(cj.numeric)
    out: dict[str, tuple[float, ...]] = {str(a): () for a in names}
    out.update({str(a): tuple(knots) for a, knots in cj.piecewise.items()})
    return out


def conjoint_prices(
    settings: StudySettings | Mapping, *, source: str = "study.toml"
) -> list[float]:
    """Tested price levels: ``price = [...]`` in ``[conjoint.attributes]`` or ``[conjoint] prices``."""
    cj = as_settings(settings, source=source).conjoint
    prices = cj.attributes.get("price", cj.prices)
    if prices is None:
        raise InputError(
            Problem(
                source,
                None,
                "conjoint.attributes.price",
                "tested price levels, e.g. price = [29, 49, 79] (or [conjoint] prices = [...])",
                "none",
            )
        )
    try:
        values = [float(p) for p in prices]
    except (TypeError, ValueError):
        raise InputError(
            Problem(source, None, "conjoint.attributes.price", "numeric price levels", prices)
        ) from None
    return values


@dataclass(frozen=True)
class SimulatorTables:
    """What the conjoint report shows beyond the estimates: the scenario's shares and the demand
    curve of one product, computed before any report is written (writers draw nothing)."""

    simulation: pd.DataFrame | None
    demand: pd.DataFrame | None
    demand_product: dict[str, str] | None
    extrapolation: pd.DataFrame | None = None  # scenario cells outside the tested range


def simulator_tables(
    result: ConjointResult, scenario: pd.DataFrame | None = None, *, rng: np.random.Generator
) -> SimulatorTables:
    """Shares of the scenario's products (RFC with HB draws, else logit) and the demand curve of
    the scenario's first product — or of every attribute's first level — against no-choice."""
    simulation = outside = None
    if scenario is not None:
        method = "rfc" if result.individual is not None else "logit"
        simulation = simulate_market(result, scenario, method=method, rng=rng)
        outside = extrapolation(result, scenario)
    demand = product = None
    if result.coding.none:
        if scenario is not None:
            first = scenario.iloc[0]
            product = {a: str(first[a]).strip() for a in result.attributes}
        else:
            product = {a: levels[0] for a, levels in result.attributes.items()}
        demand = demand_curve(result, product, rng=rng)
    return SimulatorTables(simulation, demand, product, outside)
