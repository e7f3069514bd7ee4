"""Choice-based conjoint: designs, part-worths, importances, willingness to pay, market simulator.

The module follows the analyst's workflow:

1. :func:`design_conjoint` builds a design a survey tool can field and :func:`evaluate_design`
   reports its level balance, overlap and D-error.
2. :func:`prepare_choice_data` turns the validated long layout (``wtp.io.validate_conjoint``)
   into padded arrays; :func:`estimate_conjoint` fits an aggregate multinomial logit (MNL) per
   segment (or a hierarchical MNL with ``method="hb"``) and returns a :class:`ConjointResult`
   with part-worths, importances and willingness to pay.
3. :func:`simulate_market` and :func:`demand_curve` turn the part-worths into shares of
   preference for products described by levels and price.
"""

from __future__ import annotations

from wtp.conjoint.data import ChoiceData, Coding, order_levels, prepare_choice_data
from wtp.conjoint.design import DesignReport, design_conjoint, evaluate_design
from wtp.conjoint.estimate import (
    ConjointResult,
    IndividualDraws,
    estimate_conjoint,
    result_from_draws,
)
from wtp.conjoint.mnl import MNLFit, cluster_covariance, fit_mnl
from wtp.conjoint.simulator import demand_curve, extrapolation, simulate_market
from wtp.conjoint.study_settings import SimulatorTables as SimulatorTables
from wtp.conjoint.study_settings import (
    conjoint_levels,
    conjoint_numeric,
    conjoint_prices,
    simulator_tables,
)

__all__ = [
    "design_conjoint",
    "evaluate_design",
    "DesignReport",
    "prepare_choice_data",
    "ChoiceData",
    "Coding",
    "fit_mnl",
    "MNLFit",
    "estimate_conjoint",
    "result_from_draws",
    "ConjointResult",
    "IndividualDraws",
    "simulate_market",
    "demand_curve",
    "simulator_tables",
    "conjoint_levels",
    "order_levels",
    "conjoint_prices",
    "conjoint_numeric",
    "extrapolation",
    "cluster_covariance",
]
