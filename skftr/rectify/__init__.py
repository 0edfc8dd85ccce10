"""Rectification (prediction-powered inference) estimators, METHOD.md §2.

numpy/scipy only: importing this module never imports torch.

* :func:`rectified_mean` — classical, PPI, PPI++; streams chunked predictions.
* :func:`crossfit_mean` — cross-PPI (Zrnic & Candès 2024).
* :func:`rectified_quantile` — by test inversion of the rectified CDF.
* :func:`rectified_ols`, :func:`rectified_logistic` — M-estimation, sandwich variance.

All return a :class:`RectifiedEstimate`.
"""
from ._mean import crossfit_mean, rectified_mean
from ._mestimation import rectified_logistic, rectified_ols
from ._quantile import rectified_quantile
from ._result import RectifiedEstimate

__all__ = [
    "RectifiedEstimate",
    "crossfit_mean",
    "rectified_logistic",
    "rectified_mean",
    "rectified_ols",
    "rectified_quantile",
]
