"""Rectified M-estimation: OLS and logistic-regression coefficients (docs/method.md §2.5).

For a convex loss ``l(theta; x, y)`` and ``p`` predictors the rectified
objective is (Angelopoulos, Duchi & Zrnic 2023; Wang, Ye & Zhao 2025, §2)::

    L_lam(theta) = mean_lab l(theta; x, y)
                   + sum_l lam_l [mean_unl l(theta; x~, f~_l) - mean_lab l(theta; x, f_l)]

and its minimizer has the sandwich covariance of
:func:`~skftr.rectify._stats.sandwich`, with per-unit gradients ``g``
(labels), ``g_l`` (predictor ``l``, labeled units) and ``g~_l`` (predictor
``l``, unlabeled units), plug-in covariances (pooled within folds when
cross-fitting) and the Hessian ``H`` averaged over labeled and unlabeled
covariates (the labeled ones only for the classical estimate). Cross-fitting
(Zrnic & Candès 2024): both losses are linear in the prediction, so the K
fold models' unlabeled predictions enter through their ``n_k/n``-weighted
average (the average of the K gradients); by assignment, each fold's
unlabeled units count ``n_k/n`` in total (see :func:`~skftr.rectify.rectified_mean`).
"""
import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from ._data import read_labeled, read_unlabeled
from ._engine import Problem, rectify
from ._validation import as_2d, check_alpha, check_method, check_same_length


def _inv(hessian):
    """Inverse Hessian; a (numerically) singular one means collinear columns of X."""
    if not np.linalg.cond(hessian) < 1e12:
        raise ValueError("X (with X_unlabeled) is rank deficient: the Hessian is singular; "
                         "remove collinear columns")
    return np.linalg.inv(hessian)


def _read(X, y, yhat, X_unlabeled, yhat_unlabeled, folds, folds_unlabeled, method, alpha,
          weights, weights_unlabeled):
    """Validated ``(X, labeled, X_unlabeled, unlabeled, alpha)``."""
    alpha = check_alpha(alpha)
    labeled = read_labeled(y, yhat, folds, weights)
    check_method(method, labeled.n_predictors)
    X = as_2d(X, "X")
    check_same_length(X=X, y=labeled.y)
    unlabeled = read_unlabeled(yhat_unlabeled, labeled, folds_unlabeled,
                               weights=weights_unlabeled)
    X_unl = as_2d(X_unlabeled, "X_unlabeled")
    if X_unl.shape[0] != unlabeled.m:
        raise ValueError(f"yhat_unlabeled has {unlabeled.m} units but X_unlabeled has "
                         f"{X_unl.shape[0]} rows; they must match")
    if X_unl.shape[1] != X.shape[1]:
        raise ValueError(f"X_unlabeled has {X_unl.shape[1]} columns but X has {X.shape[1]}")
    return X, labeled, X_unl, unlabeled, alpha


class _Regression(Problem):
    """Shared state of the GLM-type problems: covariates, predictions, both samples."""

    def __init__(self, X, labeled, X_unl, unlabeled):
        self._X, self._lab, self._X_unl, self._unl = X, labeled, X_unl, unlabeled
        self._f_unl = unlabeled.combined()  # (m, p): the average of the fold models' predictions
        self.n_predictors = labeled.n_predictors

    def _stats(self, classical, residual, residuals_f, residuals_f_unl, curvature, curvature_unl):
        """Covariances and inverse Hessian of gradients ``x * residual`` (the GLM form)."""
        X, X_unl, lab, unl = self._X, self._X_unl, self._lab, self._unl
        grads = X[:, None, :] * np.column_stack([residual, residuals_f])[:, :, None]
        grads_unl = X_unl[:, None, :] * residuals_f_unl[:, :, None]
        hessian = (X.T * (curvature * lab.unit_weights)) @ X / lab.n
        if not classical:
            hessian = (lab.n * hessian + unl.m * unl.gram(X_unl, curvature_unl)) / (lab.n + unl.m)
        return (lab.mean_cov(grads, within_folds=not classical)[1], unl.mean_cov(grads_unl)[1],
                _inv(hessian))


class _OLS(_Regression):
    """``theta = Theta_f lam + OLS(X, Y - f lam)``, ``Theta_f`` the imputed fits (d, p)."""

    def __init__(self, X, labeled, X_unl, unlabeled):
        super().__init__(X, labeled, X_unl, unlabeled)
        root = np.sqrt(unlabeled.unit_weights)[:, None]
        self._theta_f = np.linalg.lstsq(root * X_unl, root * self._f_unl, rcond=None)[0]

    def fit(self, lam):
        y = self._lab.y - self._lab.preds @ lam
        root = np.sqrt(self._lab.unit_weights)
        return self._theta_f @ lam + np.linalg.lstsq(root[:, None] * self._X, root * y,
                                                     rcond=None)[0]

    def covariances(self, theta, classical):
        X, X_unl, lab = self._X, self._X_unl, self._lab
        return self._stats(classical, X @ theta - lab.y, X @ self._theta_f - lab.preds,
                           X_unl @ self._theta_f - self._f_unl, 1.0, 1.0)


class _Logistic(_Regression):
    """Log-loss ``l(theta; x, y) = log(1 + exp(x'theta)) - y x'theta``."""

    def fit(self, lam):
        X, X_unl, lab, unl = self._X, self._X_unl, self._lab, self._unl
        s = lam.sum()  # L = (1 - s) mean_lab softplus + s mean_unl softplus - theta'b
        w, w_lab = unl.unit_weights, lab.unit_weights
        b = (X.T @ (w_lab * (lab.y - lab.preds @ lam)) / lab.n
             + X_unl.T @ (w * (self._f_unl @ lam)) / unl.m)

        def fun(theta):
            z, z_unl = X @ theta, X_unl @ theta
            loss = ((1 - s) * (w_lab * np.logaddexp(0, z)).mean()
                    + s * (w * np.logaddexp(0, z_unl)).mean() - theta @ b)
            grad = ((1 - s) * (X.T @ (w_lab * expit(z))) / lab.n
                    + s * (X_unl.T @ (w * expit(z_unl))) / unl.m - b)
            return loss, grad

        def hess(theta):
            p, p_unl = expit(X @ theta), expit(X_unl @ theta)
            return ((1 - s) * (X.T * (w_lab * p * (1 - p))) @ X / lab.n
                    + s * unl.gram(X_unl, p_unl * (1 - p_unl)))

        res = minimize(fun, np.zeros(X.shape[1]), jac=True, hess=hess, method="trust-exact",
                       options={"gtol": 1e-10, "maxiter": 200})
        # Separable classes: no finite minimizer; the solver stops where the gradient
        # underflows, with most fitted probabilities at 0 or 1.
        saturated = np.mean(np.abs(X @ res.x) > 20) > 0.5
        if saturated or np.max(np.abs(fun(res.x)[1])) > 1e-6:
            warnings.warn(f"rectified_logistic: no reliable finite solution at lam={lam} (are the "
                          "classes separable by X?); the estimate and interval are not meaningful",
                          RuntimeWarning, stacklevel=4)
        return res.x

    def covariances(self, theta, classical):
        p, p_unl = expit(self._X @ theta), expit(self._X_unl @ theta)
        return self._stats(classical, p - self._lab.y, p[:, None] - self._lab.preds,
                           p_unl[:, None] - self._f_unl, p * (1 - p), p_unl * (1 - p_unl))


def rectified_ols(X, y, yhat, X_unlabeled, yhat_unlabeled, *, folds=None, folds_unlabeled=None,
                  weights=None, weights_unlabeled=None, method="ppi++", alpha=0.05):
    """Prediction-powered least-squares coefficients of Y on X (docs/method.md §2.5).

    ``theta = sum_l lam_l theta_f,l + OLS(X, Y - sum_l lam_l f_l)`` with the
    imputed fits ``theta_f,l = OLS(X~, f~_l)`` (weighted least squares in the
    assignment layout): the PPI estimator of Angelopoulos et al. (2023)
    (``lam = 0``: ordinary least squares; the point estimate of ``ppi_py``).
    Its influence function has the prediction gradients at ``theta_f,l``, so
    the sandwich (module docstring) uses ``g = x (x'theta - y)``,
    ``g_l = x (x'theta_f,l - f_l)``, ``g~_l = x~ (x~'theta_f,l - f~_l)``
    (evaluating them at ``theta``, as ``ppi_py`` does, over-covers when ``f``
    is biased). The classical interval is the HC0 heteroskedasticity-robust
    one. No intercept is added: put a column of ones in ``X`` and
    ``X_unlabeled``.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,)
    yhat : array-like of shape (n,) or (n, p)
    X_unlabeled : array-like of shape (m, d)
    yhat_unlabeled : array-like of shape (m,) or (m, p); with ``folds`` (K, m) or (K, m, p)
        (or (m,) or (m, p) with ``folds_unlabeled``).
    folds, folds_unlabeled : array-like of int, optional
        Cross-fitting fold ids, as in :func:`rectified_mean`.
    weights, weights_unlabeled : array-like of shape (n,) and (m,), optional
        Design weights of an unequal-probability (active) design, as in
        :func:`rectified_mean`: every labeled mean (losses, gradients, the Hessian) is
        weighted by ``1 / pi``, every unlabeled one by ``1 / (1 - pi)``
        (docs/method.md §7).
    method : {"ppi++", "ppi", "classical"}, default="ppi++"
    alpha : float in (0, 1)

    Returns
    -------
    RectifiedEstimate
        Vector target: ``value``, ``stderr`` and ``ci`` hold arrays of length d.
    """
    X, labeled, X_unl, unlabeled, alpha = _read(X, y, yhat, X_unlabeled, yhat_unlabeled, folds,
                                                folds_unlabeled, method, alpha, weights,
                                                weights_unlabeled)
    return rectify(_OLS(X, labeled, X_unl, unlabeled), method, alpha, n_labeled=labeled.n,
                   n_unlabeled=unlabeled.m, n_folds=labeled.n_folds)


def _check_unit_interval(a, name):
    if a.min() < 0 or a.max() > 1:
        raise ValueError(f"{name} must hold 0/1 labels or probabilities in [0, 1]")


def rectified_logistic(X, y, yhat, X_unlabeled, yhat_unlabeled, *, folds=None,
                       folds_unlabeled=None, weights=None, weights_unlabeled=None,
                       method="ppi++", alpha=0.05):
    """Prediction-powered logistic-regression coefficients (docs/method.md §2.5).

    Minimizes the rectified log-loss (module docstring) by Newton trust-region
    steps (``scipy.optimize.minimize(method="trust-exact")``, which also
    handles the non-convex objective of weights summing outside [0, 1]);
    sandwich covariance with ``g = x (p - y)``, ``g_l = x (p - f_l)``,
    ``g~_l = x~ (p~ - f~_l)`` at the estimate. ``y`` are 0/1 labels; ``yhat``
    may be labels or probabilities. No intercept is added: put a column of
    ones in ``X`` and ``X_unlabeled``.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,), values in [0, 1]
    yhat : array-like of shape (n,) or (n, p), values in [0, 1]
    X_unlabeled : array-like of shape (m, d)
    yhat_unlabeled : array-like of shape (m,) or (m, p), values in [0, 1]; with ``folds``
        (K, m) or (K, m, p) (or (m,) or (m, p) with ``folds_unlabeled``).
    folds, folds_unlabeled : array-like of int, optional
        Cross-fitting fold ids, as in :func:`rectified_mean`.
    weights, weights_unlabeled : array-like of shape (n,) and (m,), optional
        Design weights of an unequal-probability (active) design, as in
        :func:`rectified_mean`: every labeled mean (losses, gradients, the Hessian) is
        weighted by ``1 / pi``, every unlabeled one by ``1 / (1 - pi)``
        (docs/method.md §7).
    method : {"ppi++", "ppi", "classical"}, default="ppi++"
    alpha : float in (0, 1)

    Returns
    -------
    RectifiedEstimate
        Vector target: ``value``, ``stderr`` and ``ci`` hold arrays of length d.
    """
    X, labeled, X_unl, unlabeled, alpha = _read(X, y, yhat, X_unlabeled, yhat_unlabeled, folds,
                                                folds_unlabeled, method, alpha, weights,
                                                weights_unlabeled)
    _check_unit_interval(labeled.y, "y")
    _check_unit_interval(labeled.preds, "yhat")
    _check_unit_interval(unlabeled.preds, "yhat_unlabeled")
    return rectify(_Logistic(X, labeled, X_unl, unlabeled), method, alpha, n_labeled=labeled.n,
                   n_unlabeled=unlabeled.m, n_folds=labeled.n_folds)
