"""Merged sufficient statistics of unlabeled predictions, for a rectified mean.

A rectified mean needs of its unlabeled predictions only, per fold, their count, mean
vector and matrix of summed cross-deviations (M2): workers that each predict a part of
the unlabeled texts send these back and the parts merge exactly (Chan, Golub & LeVeque
1979; docs/method.md §2).
"""
import numpy as np

from ._stats import Moments, pooled_mean_cov

__all__ = ["PredictionMoments"]


class PredictionMoments:
    """Count, mean and M2 of unlabeled predictions per fold, mergeable.

    Accepted by :func:`~skftr.rectify.rectified_mean` as ``yhat_unlabeled`` in place of
    the predictions: with ``folds``, fold ``k`` holds the units its model predicted (the
    assignment layout); without, one fold holds them all. The estimate equals that of
    the arrays up to rounding.

    Parameters
    ----------
    folds : list of Moments
        One per fold (see :meth:`of` and :meth:`empty`).
    """

    def __init__(self, folds):
        self.folds = list(folds)

    @classmethod
    def empty(cls, n_folds, n_predictors):
        """No unit yet, in ``n_folds`` folds of ``n_predictors`` predictions."""
        return cls([Moments.of(np.empty((0, n_predictors))) for _ in range(n_folds)])

    @classmethod
    def of(cls, yhat, folds=None, n_folds=1):
        """The moments of predictions ``yhat`` (m,) or (m, p), grouped by fold ids ``folds``."""
        yhat = np.asarray(yhat, dtype=np.float64).reshape(len(yhat), -1)
        if folds is None:
            return cls([Moments.of(yhat)])
        folds = np.asarray(folds)
        return cls([Moments.of(yhat[folds == k]) for k in range(n_folds)])

    @property
    def count(self):
        return sum(part.count for part in self.folds)

    @property
    def n_predictors(self):
        return self.folds[0].mean.shape[0]

    def merge(self, other):
        """The moments of both sets of units (a new object; Chan's parallel update)."""
        if len(other.folds) != len(self.folds) or other.n_predictors != self.n_predictors:
            raise ValueError(f"cannot merge moments of {len(other.folds)} fold(s) and "
                             f"{other.n_predictors} predictor(s) into {len(self.folds)} and "
                             f"{self.n_predictors}")
        merged = [Moments(a.count, a.mean, a.m2).merge(b) for a, b in zip(self.folds, other.folds)]
        return PredictionMoments(merged)

    def mean_cov(self, labeled, name="yhat_unlabeled"):
        """Mean of the unlabeled predictions and the covariance of that mean, as
        :meth:`~skftr.rectify._data.Unlabeled.mean_cov` gives it from the arrays."""
        if self.n_predictors != labeled.n_predictors:
            raise ValueError(f"{name} holds moments of {self.n_predictors} predictor(s); yhat "
                             f"has {labeled.n_predictors}")
        if labeled.folds is None:
            merged = PredictionMoments.empty(1, self.n_predictors)
            for part in self.folds:
                merged.folds[0].merge(part)
            return pooled_mean_cov(merged.folds)
        counts = np.array([part.count for part in self.folds])
        if counts.size != labeled.n_folds or (counts == 0).any() or counts.sum() <= counts.size:
            raise ValueError(f"{name} must hold moments for each of the {labeled.n_folds} folds "
                             f"of the labeled units, each with units and more units than "
                             f"folds in all; got counts {counts.tolist()}")
        weights = labeled.fold_weights() * counts.sum() / counts  # (n_k / n)(m / m_k)
        scaled = [Moments(part.count, w * part.mean, w * w * part.m2)
                  for w, part in zip(weights, self.folds)]
        return pooled_mean_cov(scaled)
