"""The labeled and unlabeled predictions every estimand rectifies, read and checked once.

Three layouts of the unlabeled predictions (docs/method.md §2.3):

* without folds: one prediction per unit and predictor, shape (m, p);
* by fold model (``folds`` only): model ``k`` predicts every unlabeled unit,
  shape (K, m, p); the models are combined with the fold-size weights ``n_k / n``
  (cross-PPI, Zrnic & Candès 2024);
* by assignment (``folds`` and ``folds_unlabeled``): one model predicts each
  unit, shape (m, p); unit ``i`` of fold ``k`` carries the weight
  ``(n_k / n) (m / m_k)``, so fold ``k`` counts ``n_k / n`` in total (a
  stratified mean, one prediction pass instead of K).

Design weights (docs/method.md §7): when unit ``j`` was labeled with probability
``pi_j`` (an active or any unequal-probability design), the labeled units carry
``w_j = 1 / pi_j`` and the unlabeled units ``1 / (1 - pi_i)``; every mean below is
then the weighted (Hajek) mean and its covariance the linearized one
(:func:`~skftr.rectify._stats.weighted_mean_cov`). Equal weights are read as no
weights, so they give the unweighted estimate exactly.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ._stats import mean_cov, weighted_mean_cov
from ._validation import (
    as_1d, as_fold_ids, as_predictions, as_weights, check_same_length, is_chunked,
)


@dataclass(frozen=True)
class Labeled:
    """Labels ``y`` (n,), predictions ``preds`` (n, p), when cross-fitting fold ids, and
    design ``weights`` (n,) or None."""

    y: np.ndarray
    preds: np.ndarray
    folds: Optional[np.ndarray] = None
    n_folds: int = 0
    weights: Optional[np.ndarray] = None

    @property
    def n(self):
        return self.y.shape[0]

    @property
    def n_predictors(self):
        return self.preds.shape[1]

    @property
    def unit_weights(self):
        """Design weights scaled to mean 1, ``n w_j / sum(w)`` (ones without weights)."""
        if self.weights is None:
            return np.ones(self.n)
        return self.n * self.weights / self.weights.sum()

    def fold_weights(self):
        """``n_k / n`` for each fold (with design weights: fold ``k``'s share of them)."""
        if self.weights is None:
            return np.bincount(self.folds, minlength=self.n_folds) / self.n
        return np.bincount(self.folds, self.weights, minlength=self.n_folds) / self.weights.sum()

    def mean_cov(self, values, within_folds=True):
        """Mean of per-unit ``values`` (n, ...) and the covariance of that mean.

        Pooled within folds when cross-fitting and ``within_folds`` (see
        :func:`skftr.rectify._stats.pooled_mean_cov`); plug-in otherwise. Weighted
        (:func:`~skftr.rectify._stats.weighted_mean_cov`) with design weights.
        """
        if self.weights is not None:
            pooled = within_folds and self.folds is not None
            return weighted_mean_cov(values, self.weights, self.folds if pooled else None,
                                     self.n_folds if pooled else 0)
        if within_folds and self.folds is not None:
            return mean_cov(values, self.folds, self.n_folds)
        return mean_cov(values)


@dataclass(frozen=True)
class Unlabeled:
    """Predictions ``preds`` (K', m, p) of K' models combined with ``model_weights`` (K',).

    K' = K in the fold-model layout, 1 otherwise. ``unit_weights`` (m,) are 1,
    or in the assignment layout the stratified weights ``(n_k / n) (m / m_k)``
    with ``groups`` (m,) the fold ids (strata). With design weights ``v`` (``weighted``)
    they are ``m v_i / sum(v)``, and in the assignment layout
    ``m (n_k / n) v_i / sum_{fold k} v``; they always sum to ``m``.
    """

    preds: np.ndarray
    model_weights: np.ndarray
    unit_weights: np.ndarray
    groups: Optional[np.ndarray] = None
    n_groups: int = 0
    weighted: bool = False

    @property
    def m(self):
        return self.preds.shape[1]

    def combined(self):
        """Per-unit predictions ``sum_k w_k f_k(X~_i)``, shape (m, p)."""
        return np.tensordot(self.model_weights, self.preds, axes=1)

    def gram(self, X, curvature=1.0):
        """``sum_i w_i c_i x_i x_i' / m``: the unlabeled units' Hessian term."""
        return (X.T * (self.unit_weights * curvature)) @ X / self.m

    def mean_cov(self, values):
        """Weighted mean of per-unit ``values`` (m, ...) and its covariance (strata pooled)."""
        if self.weighted:
            return weighted_mean_cov(values, self.unit_weights, self.groups, self.n_groups)
        weights = self.unit_weights.reshape((-1,) + (1,) * (values.ndim - 1))
        return mean_cov(values * weights, self.groups, self.n_groups)


def read_labeled(y, yhat, folds=None, weights=None):
    """Validate the labeled units: ``y`` (n,), ``yhat`` (n,) or (n, p), ``folds`` (n,) or
    None, design ``weights`` (n,) or None."""
    y = as_1d(y, "y")
    preds = as_predictions(yhat, "yhat")
    check_same_length(y=y, yhat=preds)
    if weights is not None:
        weights = as_weights(weights, "weights", y.shape[0])
        if np.ptp(weights) == 0:  # equal weights: the unweighted estimate, exactly
            weights = None
    if folds is None:
        return Labeled(y, preds, weights=weights)
    folds = as_fold_ids(folds, "folds")
    check_same_length(y=y, folds=folds)
    sizes = np.bincount(folds)
    if (sizes == 0).any():
        empty = np.flatnonzero(sizes == 0).tolist()
        raise ValueError(f"folds has no labeled unit for fold id(s) {empty}; fold ids must be "
                         "0..K-1, each fold non-empty")
    if y.shape[0] <= sizes.size:
        raise ValueError(f"folds: the variance is pooled within folds, which needs more labeled "
                         f"units than folds; got {y.shape[0]} units in {sizes.size} folds")
    return Labeled(y, preds, folds, sizes.size, weights)


def read_unlabeled(yhat_unlabeled, labeled, folds_unlabeled=None, name="yhat_unlabeled",
                   weights=None):
    """Validate the unlabeled predictions in the layout of ``labeled`` and ``folds_unlabeled``,
    with design ``weights`` (m,) of the unlabeled units or None."""
    unlabeled = _read_unlabeled(yhat_unlabeled, labeled, folds_unlabeled, name)
    if weights is None:
        return unlabeled
    m = unlabeled.m
    v = as_weights(weights, "weights_unlabeled", m)
    if np.ptp(v) == 0:
        return unlabeled
    if unlabeled.groups is None:
        unit = m * v / v.sum()
    else:
        share = np.bincount(unlabeled.groups, v, minlength=unlabeled.n_groups)
        unit = m * labeled.fold_weights()[unlabeled.groups] * v / share[unlabeled.groups]
    return Unlabeled(unlabeled.preds, unlabeled.model_weights, unit, unlabeled.groups,
                     unlabeled.n_groups, weighted=True)


def _read_unlabeled(yhat_unlabeled, labeled, folds_unlabeled, name):
    if is_chunked(yhat_unlabeled):
        raise TypeError(f"{name} must be one array here; chunks (an iterable of arrays) are "
                        "streamed by rectified_mean without folds only")
    p, k = labeled.n_predictors, labeled.n_folds
    if labeled.folds is None:
        if folds_unlabeled is not None:
            raise ValueError("folds_unlabeled (the fold model that predicted each unlabeled unit) "
                             "needs folds, the fold ids of the labeled units")
        preds = as_predictions(yhat_unlabeled, name, units="m", n_predictors=p)
        return Unlabeled(preds[None], np.ones(1), np.ones(preds.shape[0]))
    if folds_unlabeled is None:
        preds = as_predictions(yhat_unlabeled, name, units="m", by_model=True, n_predictors=p)
        if preds.shape[0] != k:
            raise ValueError(f"{name} holds predictions of {preds.shape[0]} fold models (first "
                             f"axis) but folds names {k} folds (ids 0..{k - 1}); each fold needs "
                             "labeled units and its model's predictions")
        return Unlabeled(preds, labeled.fold_weights(), np.ones(preds.shape[1]))
    preds = as_predictions(yhat_unlabeled, name, units="m", n_predictors=p)
    groups = as_fold_ids(folds_unlabeled, "folds_unlabeled")
    check_same_length(**{name: preds, "folds_unlabeled": groups})
    if groups.max() >= k:
        raise ValueError(f"folds_unlabeled must hold fold ids in 0..{k - 1} (the folds of the "
                         f"labeled units), got {groups.max()}")
    counts = np.bincount(groups, minlength=k)
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"folds_unlabeled assigns no unlabeled unit to fold id(s) {empty}; each "
                         "fold model must predict some")
    m = groups.shape[0]
    if m <= k:
        raise ValueError(f"folds_unlabeled: the variance is pooled within folds, which needs more "
                         f"unlabeled units than folds; got {m} units in {k} folds")
    weights = (labeled.fold_weights() * m / counts)[groups]
    return Unlabeled(preds[None], np.ones(1), weights, groups, k)
