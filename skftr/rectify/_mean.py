"""Rectified means: classical, PPI, PPI++, several predictors, cross-PPI.

docs/method.md §2.1-2.4.
"""
import numpy as np

from ._data import read_labeled, read_unlabeled
from ._engine import Problem, rectify
from ._moments import PredictionMoments
from ._stats import Moments, pooled_mean_cov
from ._validation import (
    as_numeric, check_alpha, check_finite, check_method, is_chunked, prediction_columns,
)

# Block size for the one-pass moments of a large in-memory array: bounds the
# temporary (x - mean) to 8 MiB per predictor whatever the length of the array.
_BLOCK = 1 << 20


def _chunk(chunk, name, p, units):
    """One block as a float (k, p) array, with the NaN/inf check folded into its sum."""
    arr = prediction_columns(as_numeric(chunk, name), name, units=units, n_predictors=p)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if not np.isfinite(arr.sum(dtype=np.float64)):
        check_finite(arr, name)
        raise ValueError(f"{name} holds values so large that their sum overflows float64")
    return arr


def unlabeled_moments(yhat_unlabeled, n_predictors=1, name="yhat_unlabeled"):
    """Count, mean vector and M2 matrix of the unlabeled predictions in one pass.

    ``yhat_unlabeled`` is an array of shape (m,) or (m, p) (processed in
    blocks, no full-size temporary) or an iterable of such chunks (streamed,
    each chunk read once).
    """
    if is_chunked(yhat_unlabeled):
        parts = ((f"{name} (chunk {i})", "k", chunk) for i, chunk in enumerate(yhat_unlabeled))
    else:
        arr = np.atleast_1d(as_numeric(yhat_unlabeled, name))
        parts = ((name, "m", arr[start:start + _BLOCK]) for start in range(0, arr.shape[0], _BLOCK))
    acc = Moments.of(np.empty((0, n_predictors)))
    for label, units, chunk in parts:
        acc.merge(Moments.of(_chunk(chunk, label, n_predictors, units)))
    if acc.count < 2:
        raise ValueError(f"{name} needs at least 2 values, got {acc.count}")
    return acc


class _Mean(Problem):
    """``theta = mean(Y) + lam' (mean f~ - mean f)``.

    Gradients ``(Y, f_1..f_p)`` (up to sign and a constant) and ``H = 1``.
    """

    def __init__(self, labeled, unlabeled_mean, unlabeled_cov):
        values = np.column_stack([labeled.y, labeled.preds])
        self.n_predictors = labeled.n_predictors
        self._lab_mean, self._lab_cov = labeled.mean_cov(values)
        self._plain_cov = labeled.mean_cov(values, within_folds=False)[1]
        self._unl_mean, self._unl_cov = unlabeled_mean, unlabeled_cov

    def fit(self, lam):
        return float(self._lab_mean[0] + lam @ (self._unl_mean - self._lab_mean[1:]))

    def covariances(self, theta, classical):
        return (self._plain_cov if classical else self._lab_cov), self._unl_cov, None


def _mean(y, yhat, yhat_unlabeled, folds, folds_unlabeled, method, alpha, name, weights=None,
          weights_unlabeled=None):
    """:func:`rectified_mean`, naming the unlabeled argument ``name`` in errors."""
    alpha = check_alpha(alpha)
    labeled = read_labeled(y, yhat, folds, weights)
    check_method(method, labeled.n_predictors)
    if weights_unlabeled is not None:
        if isinstance(yhat_unlabeled, PredictionMoments) or is_chunked(yhat_unlabeled):
            raise TypeError(f"weights_unlabeled needs {name} as one array (one weight per "
                            "unit), not moments or chunks")
        unl = read_unlabeled(yhat_unlabeled, labeled, folds_unlabeled, name, weights_unlabeled)
        m, (unl_mean, unl_cov) = unl.m, unl.mean_cov(unl.combined())
    elif isinstance(yhat_unlabeled, PredictionMoments):
        if folds_unlabeled is not None:
            raise ValueError(f"{name}: moments are grouped by fold already; leave "
                             "folds_unlabeled None")
        m, (unl_mean, unl_cov) = yhat_unlabeled.count, yhat_unlabeled.mean_cov(labeled, name)
    elif folds is None and folds_unlabeled is None:
        moments = unlabeled_moments(yhat_unlabeled, labeled.n_predictors, name)
        m, (unl_mean, unl_cov) = moments.count, pooled_mean_cov([moments])
    else:
        unl = read_unlabeled(yhat_unlabeled, labeled, folds_unlabeled, name)
        m, (unl_mean, unl_cov) = unl.m, unl.mean_cov(unl.combined())
    return rectify(_Mean(labeled, unl_mean, unl_cov), method, alpha,
                   n_labeled=labeled.n, n_unlabeled=m, n_folds=labeled.n_folds)


def rectified_mean(y, yhat, yhat_unlabeled, *, folds=None, folds_unlabeled=None,
                   weights=None, weights_unlabeled=None, method="ppi++", alpha=0.05):
    """Prediction-powered estimate of the mean of Y (docs/method.md §2.1-2.4).

    With ``p`` predictors (Wang, Ye & Zhao 2025, §2; Angelopoulos et al. 2023)::

        theta = mean(Y) + lam' (mean(f~) - mean(f))
        Var   = Cov(Y - lam' f) / n + lam' Cov(f~) lam / m

    (plug-in covariances, the convention of ``ppi_py``) and a normal interval.
    The classical estimate ``mean(Y)``, ``Var(Y)/n``, is reported beside it.

    Cross-fitting (cross-PPI, Zrnic & Candès 2024; docs/method.md §2.3):
    ``folds[j] = k`` says that ``yhat[j]`` is the out-of-fold prediction of
    model ``k``, trained without fold ``k``. The unlabeled predictions then
    come by fold model, ``f~ = sum_k (n_k/n) f~_k`` (shape (K, m) or
    (K, m, p)), or by assignment (``folds_unlabeled``: one model per unit,
    fold ``k``'s units weighted to count ``n_k/n`` in total)::

        Var = C_within(Y - lam' f) / n + lam' C~ lam
        C_within = sum_k sum_{j in k} (r_j - mean_k r)(r_j - mean_k r)' / (n - K)
        C~ = Cov(f~) / m                                      (by fold model)
        C~ = sum_k sum_{i in k} (w_i f~_i - mean_k)(...)' / (m (m - K))   (by assignment)

    with ``w_i = (n_k/n)(m/m_k)``: the residuals are pooled *within* folds, so
    adding a constant ``c_k`` to model ``k`` (a variance-trained model is
    identified only up to one, Wang, Ye & Zhao 2025, §3) changes neither the
    estimate nor the interval; the variance pooled across folds
    (``ppi_py.crossppi_mean_ci``) would add the spread of the shifts.

    Unequal-probability (active) designs (Zrnic & Candès 2024, "Active Statistical
    Inference", §3; docs/method.md §7): ``weights = 1 / pi`` of the labeled units,
    ``weights_unlabeled = 1 / (1 - pi)`` of the unlabeled ones, ``pi`` the probability
    each unit had of being labeled. Every mean above becomes the weighted (Hajek) mean,
    every covariance its linearized one
    (:func:`~skftr.rectify._stats.weighted_mean_cov`), and ``lam`` is tuned on them by
    the same function; equal weights give the unweighted estimate.

    Parameters
    ----------
    y : array-like of shape (n,)
        Labels of the rectification units.
    yhat : array-like of shape (n,) or (n, p)
        Predictions for them from ``p`` predictors that did not see these labels
        (out-of-fold ones with ``folds``).
    yhat_unlabeled : array-like
        Predictions for the unlabeled units: (m,) or (m, p), or an iterable of
        such chunks (e.g. a generator reading from disk; consumed once, only
        running moments kept, Chan et al. parallel update); with ``folds``
        (K, m) or (K, m, p) by fold model, or (m,) or (m, p) with
        ``folds_unlabeled``. Or their merged moments, a
        :class:`PredictionMoments` (per fold with ``folds``: the assignment
        layout), e.g. from workers that each predicted a part.
    folds : array-like of int, shape (n,), optional
        Fold id in ``0..K-1`` of each labeled unit; every fold non-empty.
    folds_unlabeled : array-like of int, shape (m,), optional
        Fold model that predicted each unlabeled unit (assignment layout).
    weights, weights_unlabeled : array-like of shape (n,) and (m,), optional
        Design weights (positive) of the labeled and of the unlabeled units; None: equal.
    method : {"ppi++", "ppi", "classical"}, default="ppi++"
        ``lam`` tuned (:func:`~skftr.rectify._stats.power_tuning_weights`), 1
        (one predictor only), or 0 (labels only; predictions still validated).
    alpha : float in (0, 1)
        The interval has nominal coverage ``1 - alpha``.

    Returns
    -------
    RectifiedEstimate
    """
    return _mean(y, yhat, yhat_unlabeled, folds, folds_unlabeled, method, alpha, "yhat_unlabeled",
                 weights, weights_unlabeled)


def crossfit_mean(y, yhat, folds, yhat_unlabeled_by_fold, *, method="ppi++", alpha=0.05):
    """Cross-PPI mean: ``rectified_mean(y, yhat, yhat_unlabeled_by_fold, folds=folds)``.

    Kept for backward compatibility; see :func:`rectified_mean` (Zrnic & Candès
    2024). ``yhat_unlabeled_by_fold`` has shape (K, m) or (K, m, p).
    """
    return _mean(y, yhat, yhat_unlabeled_by_fold, folds, None, method, alpha,
                 "yhat_unlabeled_by_fold")
