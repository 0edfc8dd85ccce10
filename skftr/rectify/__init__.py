"""Rectification (prediction-powered inference) estimators (docs/method.md §2).

numpy/scipy only: importing this module never imports torch.

Every function estimates one target from labeled units ``(y, yhat)`` and the
predictions on unlabeled units, and returns a :class:`RectifiedEstimate` that
carries the classical (labels-only) interval beside its own:

* :func:`rectified_mean` — also streams chunked unlabeled predictions, or takes
  their merged moments (:class:`PredictionMoments`);
* :func:`rectified_quantile` — by inverting the rectified CDF;
* :func:`rectified_ols`, :func:`rectified_logistic` — M-estimation, sandwich variance;
* :func:`crossfit_mean` — the cross-PPI mean, kept for backward compatibility.

Shared by all of them (Wang, Ye & Zhao 2025, §2; Angelopoulos et al. 2023;
Zrnic & Candès 2024):

* ``method``: ``"ppi++"`` (default; weights tuned to minimize the variance),
  ``"ppi"`` (weight 1; one predictor only) or ``"classical"`` (labels only);
* several predictors: ``yhat`` of shape (n, p), one weight each (docs/method.md
  §2.4);
* cross-fitting: ``folds=`` the fold of each labeled unit, the unlabeled
  predictions by fold model (K, m[, p]) or, with ``folds_unlabeled=``, by
  assignment (m[, p]) (docs/method.md §2.3);
* unequal-probability (active) designs: ``weights=`` ``1 / pi`` of the labeled
  units and ``weights_unlabeled=`` ``1 / (1 - pi)`` of the unlabeled ones, every
  mean weighted and every covariance linearized (Zrnic & Candès 2024, §3;
  docs/method.md §7).
"""
from ._mean import crossfit_mean, rectified_mean
from ._moments import PredictionMoments
from ._mestimation import rectified_logistic, rectified_ols
from ._quantile import rectified_quantile
from ._result import RectifiedEstimate
from ._validation import METHODS

__all__ = [
    "METHODS",
    "PredictionMoments",
    "RectifiedEstimate",
    "crossfit_mean",
    "rectified_logistic",
    "rectified_mean",
    "rectified_ols",
    "rectified_quantile",
]
