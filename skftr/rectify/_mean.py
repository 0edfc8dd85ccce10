"""Rectified means: classical, PPI, PPI++ and cross-PPI (METHOD.md §2)."""
import numpy as np

from ._result import RectifiedEstimate
from ._stats import Moments, clipped_lambda, wald_ci
from ._validation import (
    _numeric, as_1d, check_alpha, check_finite, check_method, check_same_length, is_chunked,
)

MEAN_METHODS = ("classical", "ppi", "ppi++")

# Block size for the one-pass moments of a large in-memory array: bounds the
# temporary (x - mean) to 8 MiB whatever the length of the array.
_BLOCK = 1 << 20


def _chunk_moments(chunk, name):
    """Moments of one 1-d float chunk, with the NaN/inf check folded into the sum."""
    k = chunk.shape[0]
    total = chunk.sum(dtype=np.float64)
    if not np.isfinite(total):
        check_finite(chunk, name)
        raise ValueError(f"{name} holds values so large that their sum overflows float64")
    mean = total / k
    dev = np.subtract(chunk, mean, dtype=np.float64)
    np.square(dev, out=dev)  # numpy's own loop and pairwise sum: no BLAS threads to contend
    return Moments(k, mean, float(dev.sum()))


def unlabeled_moments(yhat_unlabeled, name="yhat_unlabeled"):
    """Count, mean and M2 of the unlabelled predictions in one pass.

    ``yhat_unlabeled`` is a 1-d array (processed in blocks, no full-size
    temporary) or an iterable of 1-d chunks (streamed, each chunk read once).
    """
    acc = Moments()
    if is_chunked(yhat_unlabeled):
        for i, chunk in enumerate(yhat_unlabeled):
            chunk = as_1d(chunk, f"{name} (chunk {i})", min_len=0, float64=False, finite=False)
            if chunk.shape[0]:
                acc.merge(_chunk_moments(chunk, name))
    else:
        arr = as_1d(yhat_unlabeled, name, min_len=0, float64=False, finite=False)
        for start in range(0, arr.shape[0], _BLOCK):
            acc.merge(_chunk_moments(arr[start:start + _BLOCK], name))
    if acc.count < 2:
        raise ValueError(f"{name} needs at least 2 values, got {acc.count}")
    return acc


def _weight(method, y, yhat, ppipp_denominator):
    """``lam`` of the method: 0 (classical), 1 (ppi), ``Cov(Y, f) / denominator`` clipped (ppi++)."""
    if method == "classical":
        return 0.0
    if method == "ppi":
        return 1.0
    cov = float(np.mean((y - y.mean()) * (yhat - yhat.mean())))
    return clipped_lambda(cov, ppipp_denominator)


def _rectify(y, yhat, lam, f_unl_mean, f_unl_var, m, alpha, method, resid_var=None):
    """Shared final step: ``mean(Y) + lam (mean f~ - mean f)`` with its Wald interval.

    Variance ``Var(Y - lam f)/n + lam^2 Var(f~)/m`` with plug-in (ddof = 0)
    variances, the convention of ``ppi_py``; ``resid_var`` replaces
    ``Var(Y - lam f)`` when given.
    """
    n = y.shape[0]
    if resid_var is None:
        resid_var = (y - lam * yhat).var()
    value = float(y.mean() + lam * (f_unl_mean - yhat.mean()))
    stderr = float(np.sqrt(resid_var / n + lam * lam * f_unl_var / m))
    return RectifiedEstimate(value, stderr, wald_ci(value, stderr, alpha), alpha, method, n, m, lam)


def _within_folds(x, folds, sizes):
    """``x`` minus the mean of its fold (each unit's deviation from its fold's mean)."""
    means = np.bincount(folds, weights=x, minlength=sizes.size) / sizes
    return x - means[folds]


def rectified_mean(y, yhat, yhat_unlabeled, *, method="ppi", alpha=0.05):
    """Prediction-powered estimate of the mean of Y (METHOD.md §2).

    ``theta = mean(Y) + lam * (mean(f~) - mean(f))`` with
    ``Var = Var(Y - lam f) / n + lam^2 Var(f~) / m`` and a normal interval.

    Parameters
    ----------
    y, yhat : array-like of shape (n,)
        Labels of the rectification units and the predictions for them (from a
        predictor that did not see these labels).
    yhat_unlabeled : array-like of shape (m,) or iterable of 1-d chunks
        Predictions for the unlabelled units. An iterable (e.g. a generator
        reading from disk) is consumed once; only its running count, mean and
        sum of squares are kept (Chan et al. parallel update).
    method : {"classical", "ppi", "ppi++"}
        ``lam = 0`` (labels only; the predictions are still validated),
        ``lam = 1``, or ``lam* = Cov(Y, f) / ((1 + n/m) Var(f))`` estimated
        (``Var(f)`` pooled over labelled and unlabelled) and clipped to [0, 1].
    alpha : float in (0, 1)
        The interval has nominal coverage ``1 - alpha``.

    Returns
    -------
    RectifiedEstimate
    """
    check_method(method, MEAN_METHODS)
    alpha = check_alpha(alpha)
    y = as_1d(y, "y")
    yhat = as_1d(yhat, "yhat")
    check_same_length(y=y, yhat=yhat)
    unl = unlabeled_moments(yhat_unlabeled)
    n, m = y.shape[0], unl.count

    pooled = Moments.of(yhat).merge(unl).var
    lam = _weight(method, y, yhat, (1.0 + n / m) * pooled)
    return _rectify(y, yhat, lam, unl.mean, unl.var, m, alpha, method)


def crossfit_mean(y, yhat, folds, yhat_unlabeled_by_fold, *, method="ppi", alpha=0.05):
    """Cross-prediction-powered mean (cross-PPI; Zrnic & Candès 2024).

    Each labelled unit ``j`` in fold ``k`` carries ``yhat[j]`` from model
    ``k``, trained without fold ``k``; model ``k`` also predicts every
    unlabelled unit (row ``k`` of ``yhat_unlabeled_by_fold``). With
    ``fbar = sum_k (n_k / n) f_k(X~)`` (the plain average over models when the
    folds have equal sizes, and unbiased for unequal ones)::

        theta = mean(Y) + lam * (mean(fbar) - mean(yhat))
        Var   = Var_within(Y - lam * yhat) / n + lam^2 Var(fbar) / m

    the variance of Zrnic & Candès (Theorem 1, under stability of the
    training algorithm), with ``Var_within`` the residual variance pooled
    *within* folds, ``sum_k sum_{j in k} (r_j - mean_k r)^2 / (n - K)``.
    Adding a constant ``c_k`` to model ``k`` leaves ``theta`` unchanged (it
    enters ``mean(fbar)`` and ``mean(yhat)`` with the same weight ``n_k / n``),
    and the within-fold variance leaves the interval unchanged too. That matters
    for models trained on the error variance (METHOD.md §3), identified only up
    to such a shift: the residual variance pooled *across* folds
    (``ppi_py.crossppi_mean_ci``) adds the spread of the K shifts, which is not
    an error of ``theta``, and widens the interval for nothing. The PPI++
    weight uses the within-fold moments for the same reason.

    Parameters
    ----------
    y, yhat : array-like of shape (n,)
        Labels and out-of-fold predictions.
    folds : array-like of int, shape (n,)
        Fold id in ``0..K-1`` of each labelled unit; every fold non-empty.
    yhat_unlabeled_by_fold : array-like of shape (K, m)
        Predictions of each fold model on the unlabelled units.
    method : {"classical", "ppi", "ppi++"}
        ``lam = 0``, ``lam = 1``, or the variance-minimising
        ``lam = Cov_within(Y, yhat) / (Var_within(yhat) + (n/m) Var(fbar))``
        clipped to [0, 1] (the out-of-fold and the averaged predictions have
        different variances, so they are not pooled as in :func:`rectified_mean`).
    alpha : float in (0, 1)

    Returns
    -------
    RectifiedEstimate
        ``method`` is ``"classical"``, ``"cross-ppi"`` or ``"cross-ppi++"``.
    """
    check_method(method, MEAN_METHODS)
    alpha = check_alpha(alpha)
    y = as_1d(y, "y")
    yhat = as_1d(yhat, "yhat")
    folds = _numeric(folds, "folds")
    if folds.dtype.kind not in "iu":
        raise TypeError(f"folds must hold integer fold ids, got dtype {folds.dtype}")
    if folds.ndim != 1:
        raise ValueError(f"folds must be 1-dimensional, got shape {folds.shape}")
    check_same_length(y=y, yhat=yhat, folds=folds)
    f_unl = _numeric(yhat_unlabeled_by_fold, "yhat_unlabeled_by_fold")
    if f_unl.ndim != 2:
        raise ValueError(
            f"yhat_unlabeled_by_fold must be 2-dimensional (K folds, m units), got shape {f_unl.shape}")
    k, m = f_unl.shape
    if m < 2:
        raise ValueError(f"yhat_unlabeled_by_fold needs at least 2 unlabelled units (columns), got {m}")
    check_finite(f_unl, "yhat_unlabeled_by_fold")
    if folds.min() < 0 or folds.max() >= k:
        raise ValueError(f"folds must be fold ids in 0..{k - 1} (yhat_unlabeled_by_fold has {k} rows)")
    sizes = np.bincount(folds, minlength=k)
    if (sizes == 0).any():
        raise ValueError(f"folds has no labelled unit for fold id(s) {np.flatnonzero(sizes == 0).tolist()}")
    if y.shape[0] <= k:
        raise ValueError(f"folds: the residual variance is estimated within folds, which needs more "
                         f"labelled units than folds; got {y.shape[0]} units in {k} folds")

    n = y.shape[0]
    fbar = (sizes / n) @ f_unl
    fbar_mom = Moments.of(fbar)
    y_w, f_w = _within_folds(y, folds, sizes), _within_folds(yhat, folds, sizes)
    lam = _weight(method, y_w, f_w, f_w.var() + n / m * fbar_mom.var)
    if method == "classical":  # no model, no shift: Var(Y) / n as in rectified_mean
        label, resid_var = method, None
    else:
        label, resid_var = f"cross-{method}", float(np.square(y_w - lam * f_w).sum() / (n - k))
    return _rectify(y, yhat, lam, fbar_mom.mean, fbar_mom.var, m, alpha, label, resid_var)
