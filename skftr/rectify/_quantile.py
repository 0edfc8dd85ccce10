"""Rectified quantiles from the rectified CDF (docs/method.md §2.5)."""
import numpy as np

from ._data import read_labeled, read_unlabeled
from ._engine import Problem, rectify
from ._stats import z_crit
from ._validation import check_alpha, check_method


class _ECDF:
    """``theta -> sum of the weights of the values <= theta``, exact by binary search.

    Without weights each value weighs ``1 / len(values)`` (counts, no rounding).
    """

    def __init__(self, values, weights=None):
        order = np.argsort(values, kind="stable")
        self.values = values[order]
        if weights is None:
            self._cum = np.arange(values.shape[0] + 1) / values.shape[0]
        else:
            self._cum = np.concatenate([[0.0], np.cumsum(weights[order])])

    def __call__(self, theta):
        return self._cum[np.searchsorted(self.values, theta, side="right")]


class _Quantile(Problem):
    """The ``q``-quantile: gradients ``1{Y <= theta} - q`` and ``1{f_l <= theta} - q``.

    Rectified CDF ``F(theta) = F_Y + sum_l lam_l (F~_l - F_l)`` with ``F~_l`` the
    weighted empirical CDF of predictor ``l`` over the unlabeled units (by fold
    model: the ``n_k/n``-weighted average of the K models' CDFs). The density
    (the Hessian) cancels in the weights and the interval needs none.
    """

    def __init__(self, labeled, unlabeled, q):
        self._lab, self._unl, self._q = labeled, unlabeled, q
        self.n_predictors = labeled.n_predictors
        omega = None if labeled.weights is None else labeled.weights / labeled.weights.sum()
        self._f_y = _ECDF(labeled.y, omega)
        self._f_lab = [_ECDF(f, omega) for f in labeled.preds.T]
        k, m, _ = unlabeled.preds.shape
        weights = None
        if k > 1 or unlabeled.groups is not None or unlabeled.weighted:
            weights = np.outer(unlabeled.model_weights, unlabeled.unit_weights).ravel() / m
        self._f_unl = [_ECDF(unlabeled.preds[:, :, l].ravel(), weights)
                       for l in range(self.n_predictors)]

    def _cdf(self, theta, lam):
        cdf = self._f_y(theta)
        for weight, f_lab, f_unl in zip(lam, self._f_lab, self._f_unl):
            if weight:
                cdf = cdf + weight * (f_unl(theta) - f_lab(theta))
        return cdf

    def _inverse(self, lam):
        """``p -> Q(p) = min{theta : F*(theta) >= p}``, ``F*`` the monotone rearrangement of ``F``.

        ``F`` steps up at each ``Y_j`` and ``f~`` and down at each ``f_j``, so it
        need not be monotone; its rearrangement (values sorted over its jump
        points, Chernozhukov, Fernández-Val & Galichon 2010) has the
        generalized inverse ``Q(p)`` = the ``#{jump points with F < p}``-th
        jump point.
        """
        parts = [self._f_y.values]
        for weight, f_lab, f_unl in zip(lam, self._f_lab, self._f_unl):
            if weight:
                parts += [f_lab.values, f_unl.values]
        candidates = np.sort(np.concatenate(parts))
        cdf = np.sort(self._cdf(candidates, lam))
        last = candidates.shape[0] - 1
        return lambda p: float(candidates[min(np.searchsorted(cdf, p, side="left"), last)])

    def fit(self, lam):
        return self._inverse(lam)(self._q)

    def covariances(self, theta, classical):
        lab = np.column_stack([self._lab.y, self._lab.preds]) <= theta
        unl = np.tensordot(self._unl.model_weights, self._unl.preds <= theta, axes=1)
        return (self._lab.mean_cov(lab.astype(float), within_folds=not classical)[1],
                self._unl.mean_cov(unl)[1], None)

    def interval(self, theta, lam, cov, alpha):
        """Woodruff (1952) interval ``[Q(q - z s), Q(q + z s)]``, ``s^2 = cov`` (Var F(theta))."""
        inverse = self._inverse(lam)
        half = z_crit(alpha) * np.sqrt(cov[0, 0])
        low, high = inverse(self._q - half), inverse(self._q + half)
        return (high - low) / (2 * z_crit(alpha)), (low, high)


def rectified_quantile(y, yhat, yhat_unlabeled, q, *, folds=None, folds_unlabeled=None,
                       weights=None, weights_unlabeled=None, method="ppi++", alpha=0.05):
    """Prediction-powered estimate of the ``q``-quantile of Y (docs/method.md §2.5).

    The quantile is the M-estimator of the pinball loss; its rectified
    estimating equation is ``F(theta) = q`` with the rectified CDF
    ``F = F_Y + sum_l lam_l (F~_l - F_l)`` (Angelopoulos et al. 2023). ``F`` is
    a step function, so it is solved exactly over its jump points rather than
    with a numerical optimizer:

    * point estimate ``Q(q)``, ``Q`` the generalized inverse of the monotone
      rearrangement of ``F``;
    * Woodruff interval ``[Q(q - z s), Q(q + z s)]``, ``s^2`` the variance of
      ``F(theta)``: ``Var(1{Y<=theta} - lam' 1{f<=theta}) / n +
      lam' Cov(1{f~<=theta}) lam / m`` (pooled within folds when
      cross-fitting, as for :func:`rectified_mean`). It needs no density
      estimate. (Inverting the pointwise test and taking the hull of the
      accepted set, as ``ppi_py`` does, over-covers: the 1/n steps of the
      labeled term widen the hull; 0.97 in our simulations at n = 200.)

    Cross-fitting (Zrnic & Candès 2024): by fold model ``F~`` averages the K
    models' CDFs with weights ``n_k/n``, and each unlabeled unit contributes
    ``sum_k (n_k/n) 1{f~_k <= theta}`` to the variance; by assignment each
    fold's units count ``n_k/n`` in total (see :func:`rectified_mean`).
    ``stderr`` is the interval half-width over ``z_{1-alpha/2}``, so
    ``pvalue`` is a normal approximation.

    Unequal-probability (active) designs (Zrnic & Candès 2024, §3; docs/method.md
    §7): ``weights`` (``1 / pi``) and ``weights_unlabeled`` (``1 / (1 - pi)``) as in
    :func:`rectified_mean`; the CDFs are then weighted and their variance linearized.

    Parameters
    ----------
    y : array-like of shape (n,)
    yhat : array-like of shape (n,) or (n, p)
    yhat_unlabeled : array-like of shape (m,) or (m, p); with ``folds`` (K, m) or (K, m, p)
        (or (m,) or (m, p) with ``folds_unlabeled``).
    q : float in (0, 1)
    folds, folds_unlabeled : array-like of int, optional
        Cross-fitting fold ids, as in :func:`rectified_mean`.
    weights, weights_unlabeled : array-like of shape (n,) and (m,), optional
        Design weights of the labeled and unlabeled units, as in :func:`rectified_mean`.
    method : {"ppi++", "ppi", "classical"}, default="ppi++"
        Weights tuned at the classical quantile, 1, or 0 (the usual
        order-statistic interval).
    alpha : float in (0, 1)

    Returns
    -------
    RectifiedEstimate
    """
    alpha = check_alpha(alpha)
    q = check_alpha(q, "q")
    labeled = read_labeled(y, yhat, folds, weights)
    check_method(method, labeled.n_predictors)
    unlabeled = read_unlabeled(yhat_unlabeled, labeled, folds_unlabeled,
                               weights=weights_unlabeled)
    return rectify(_Quantile(labeled, unlabeled, q), method, alpha, n_labeled=labeled.n,
                   n_unlabeled=unlabeled.m, n_folds=labeled.n_folds)
