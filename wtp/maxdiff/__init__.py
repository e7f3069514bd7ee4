"""MaxDiff (best-worst scaling, case 1): designs, counts, aggregate logit, hierarchical Bayes.

The module follows the data one way:

1. :func:`design_maxdiff` makes a balanced design a survey tool can field and
   :func:`design_balance` says how balanced it is.
2. :func:`prepare_maxdiff_data` turns validated answers (the long layout of
   :func:`wtp.io.validate_maxdiff` with ``segment`` and ``weight`` from
   :func:`wtp.io.attach_segments`) into index arrays.
3. :func:`estimate_maxdiff` estimates item utilities by counts, aggregate sequential
   best-worst logit or hierarchical Bayes (:mod:`wtp.hb`) and returns a :class:`MaxDiffResult`
   with probability-scaled shares per segment, individual utilities and fit diagnostics.

Heavy libraries (PyMC, ArviZ) are imported only by the hierarchical Bayes path.
"""

from __future__ import annotations

from wtp.maxdiff.counts import _counts_utility as _counts_utility
from wtp.maxdiff.counts import counts_scores
from wtp.maxdiff.data import MaxDiffData, prepare_maxdiff_data, probability_shares
from wtp.maxdiff.data import _bw_choices as _bw_choices
from wtp.maxdiff.design import DesignBalance, d_efficiency, design_balance, design_maxdiff
from wtp.maxdiff.design import _bw_information as _bw_information
from wtp.maxdiff.design import _contrast_basis as _contrast_basis
from wtp.maxdiff.fit import _fit_frame as _fit_frame
from wtp.maxdiff.fit import _honest_respondents as _honest_respondents
from wtp.maxdiff.fit import _random_respondents as _random_respondents
from wtp.maxdiff.hb import maxdiff_choice_data as maxdiff_choice_data
from wtp.maxdiff.logit import LogitFit, fit_logit
from wtp.maxdiff.logit import _bw_loglik as _bw_loglik
from wtp.maxdiff.result import METHODS, MaxDiffResult, estimate_maxdiff
from wtp.maxdiff.result import _random_flag as _random_flag

__all__ = [
    "design_maxdiff",
    "design_balance",
    "DesignBalance",
    "d_efficiency",
    "MaxDiffData",
    "prepare_maxdiff_data",
    "probability_shares",
    "counts_scores",
    "fit_logit",
    "LogitFit",
    "estimate_maxdiff",
    "MaxDiffResult",
    "METHODS",
]
