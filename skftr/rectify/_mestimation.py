"""Rectified M-estimation: OLS and logistic-regression coefficients (METHOD.md §2).

For a convex loss ``l(theta; x, y)`` the rectified objective is::

    L_lam(theta) = lam * mean_unl l(theta; x~, f~) + mean_lab [l(theta; x, y) - lam * l(theta; x, f)]

and the sandwich covariance of its minimiser (Angelopoulos, Duchi & Zrnic
2023) is::

    Sigma = H^-1 [Cov(g - lam g_f) / n + lam^2 Cov(g~_f) / m] H^-1

with per-unit gradients ``g`` (labels), ``g_f`` (predictions, labelled units),
``g~_f`` (predictions, unlabelled units) at the estimate (for OLS the
prediction gradients are at the imputed fit, see :func:`rectified_ols`),
plug-in (ddof = 0) covariances, and
the Hessian ``H`` averaged over labelled and unlabelled covariates (the
labelled ones only for ``method="classical"``, where ``lam = 0``).
"""
import warnings

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from ._result import RectifiedEstimate
from ._stats import wald_ci
from ._validation import as_1d, as_2d, check_alpha, check_method, check_same_length

REGRESSION_METHODS = ("classical", "ppi", "ppi++")


def _check_inputs(X, y, yhat, X_unlabeled, yhat_unlabeled, method, alpha):
    check_method(method, REGRESSION_METHODS)
    alpha = check_alpha(alpha)
    X = as_2d(X, "X")
    y = as_1d(y, "y")
    yhat = as_1d(yhat, "yhat")
    check_same_length(X=X, y=y, yhat=yhat)
    X_unlabeled = as_2d(X_unlabeled, "X_unlabeled")
    yhat_unlabeled = as_1d(yhat_unlabeled, "yhat_unlabeled")
    check_same_length(X_unlabeled=X_unlabeled, yhat_unlabeled=yhat_unlabeled)
    if X_unlabeled.shape[1] != X.shape[1]:
        raise ValueError(f"X_unlabeled has {X_unlabeled.shape[1]} columns but X has {X.shape[1]}")
    return X, y, yhat, X_unlabeled, yhat_unlabeled, alpha


def _cov0(a, b=None):
    """Plug-in (ddof = 0) covariance matrix of the rows of ``a`` (with ``b``)."""
    a = a - a.mean(axis=0)
    b = a if b is None else b - b.mean(axis=0)
    return a.T @ b / a.shape[0]


def _inv(hessian):
    """Inverse Hessian; a (numerically) singular one means collinear columns of X."""
    if not np.linalg.cond(hessian) < 1e12:
        raise ValueError("X (with X_unlabeled) is rank deficient: the Hessian is singular; "
                         "remove collinear columns")
    return np.linalg.inv(hessian)


def _glm_lambda(grads, grads_f, grads_f_unl, hess_inv):
    """PPI++ weight minimising the trace of ``Sigma``, clipped to [0, 1].

    ``lam = tr(H^-1 (C + C') H^-1) / (2 (1 + n/m) tr(H^-1 V H^-1))`` with
    ``C = Cov(g, g_f)`` and ``V = Cov(g_f)`` pooled over labelled and
    unlabelled units; for a scalar mean it is ``Cov(Y, f) / ((1 + n/m) Var(f))``.
    """
    n, m = grads.shape[0], grads_f_unl.shape[0]
    cross = _cov0(grads, grads_f)
    pooled = _cov0(np.concatenate([grads_f, grads_f_unl]))
    num = np.trace(hess_inv @ (cross + cross.T) @ hess_inv)
    den = 2.0 * (1.0 + n / m) * np.trace(hess_inv @ pooled @ hess_inv)
    return float(np.clip(num / den, 0.0, 1.0)) if den > 0 else 0.0


def _sandwich_stderr(grads, grads_f, grads_f_unl, hess_inv, lam):
    n, m = grads.shape[0], grads_f_unl.shape[0]
    meat = _cov0(grads - lam * grads_f) / n
    if lam:
        meat = meat + lam * lam * _cov0(grads_f_unl) / m
    return np.sqrt(np.diag(hess_inv @ meat @ hess_inv))


def _fit(solve, stats, n, m, method, alpha):
    """Common PPI / PPI++ / classical driver for a GLM-type M-estimator.

    ``solve(lam) -> theta``; ``stats(theta, classical) -> (g, g_f, g~_f, H^-1)``.
    PPI++: fit with ``lam = 1``, estimate ``lam`` there, refit with it.
    """
    classical = method == "classical"
    lam = 0.0 if classical else 1.0
    theta = solve(lam)
    if method == "ppi++":
        lam = _glm_lambda(*stats(theta, False))
        theta = solve(lam)
    grads, grads_f, grads_f_unl, hess_inv = stats(theta, classical)
    stderr = _sandwich_stderr(grads, grads_f, grads_f_unl, hess_inv, lam)
    return RectifiedEstimate(theta, stderr, wald_ci(theta, stderr, alpha), alpha, method, n, m, lam)


def _lstsq(X, y):
    return np.linalg.lstsq(X, y, rcond=None)[0]


def rectified_ols(X, y, yhat, X_unlabeled, yhat_unlabeled, *, method="ppi", alpha=0.05):
    """Prediction-powered least-squares coefficients of Y on X (METHOD.md §2).

    ``theta = lam * theta_f + OLS(X, Y - lam f)`` with the imputed fit
    ``theta_f = OLS(X~, f~)``: the PPI estimator of Angelopoulos et al. (2023)
    (``lam = 0``: ordinary least squares; same point estimate as ``ppi_py``).
    Its influence function has the prediction gradients at ``theta_f``, so
    the sandwich of the module docstring uses ``g = x (x'theta - y)``,
    ``g_f = x (x'theta_f - f)``, ``g~_f = x~ (x~'theta_f - f~)`` (evaluating
    them at ``theta``, as ``ppi_py`` does, over-covers when ``f`` is biased).
    For ``"classical"`` this is the HC0 heteroskedasticity-robust covariance.
    No intercept is added: put a column of ones in ``X`` and ``X_unlabeled``.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y, yhat : array-like of shape (n,)
    X_unlabeled : array-like of shape (m, d)
    yhat_unlabeled : array-like of shape (m,)
    method : {"classical", "ppi", "ppi++"}
    alpha : float in (0, 1)

    Returns
    -------
    RectifiedEstimate
        Vector target: ``value``, ``stderr`` and ``ci`` hold arrays of length d.
    """
    X, y, yhat, X_unl, yhat_unl, alpha = _check_inputs(X, y, yhat, X_unlabeled, yhat_unlabeled,
                                                       method, alpha)
    n, m = y.shape[0], yhat_unl.shape[0]
    theta_f = _lstsq(X_unl, yhat_unl)

    def solve(lam):
        return lam * theta_f + _lstsq(X, y - lam * yhat)

    def stats(theta, classical):
        hessian = X.T @ X if classical else X.T @ X + X_unl.T @ X_unl
        hessian /= n if classical else n + m
        return (X * (X @ theta - y)[:, None], X * (X @ theta_f - yhat)[:, None],
                X_unl * (X_unl @ theta_f - yhat_unl)[:, None], _inv(hessian))

    return _fit(solve, stats, n, m, method, alpha)


def _check_unit_interval(a, name):
    if a.min() < 0 or a.max() > 1:
        raise ValueError(f"{name} must hold 0/1 labels or probabilities in [0, 1]")


def rectified_logistic(X, y, yhat, X_unlabeled, yhat_unlabeled, *, method="ppi", alpha=0.05):
    """Prediction-powered logistic-regression coefficients (METHOD.md §2).

    Minimises the rectified log-loss (module docstring) with
    ``l(theta; x, y) = log(1 + exp(x'theta)) - y x'theta``, convex for
    ``lam`` in [0, 1], by Newton trust-region steps
    (``scipy.optimize.minimize(method="trust-exact")``); sandwich covariance.
    ``y`` are 0/1 labels; ``yhat`` may be labels or probabilities. No
    intercept is added: put a column of ones in ``X`` and ``X_unlabeled``.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y, yhat : array-like of shape (n,), values in [0, 1]
    X_unlabeled : array-like of shape (m, d)
    yhat_unlabeled : array-like of shape (m,), values in [0, 1]
    method : {"classical", "ppi", "ppi++"}
    alpha : float in (0, 1)

    Returns
    -------
    RectifiedEstimate
        Vector target: ``value``, ``stderr`` and ``ci`` hold arrays of length d.
    """
    X, y, yhat, X_unl, yhat_unl, alpha = _check_inputs(X, y, yhat, X_unlabeled, yhat_unlabeled,
                                                       method, alpha)
    _check_unit_interval(y, "y")
    _check_unit_interval(yhat, "yhat")
    _check_unit_interval(yhat_unl, "yhat_unlabeled")
    n, m = y.shape[0], yhat_unl.shape[0]
    d = X.shape[1]

    def solve(lam):
        # L(theta) = lam mean_unl softplus(x~'theta) + (1 - lam) mean_lab softplus(x'theta) - theta'b
        b = lam * (X_unl.T @ yhat_unl) / m + X.T @ (y - lam * yhat) / n

        def fun(theta):
            z, z_unl = X @ theta, X_unl @ theta
            loss = (lam * np.logaddexp(0, z_unl).mean() + (1 - lam) * np.logaddexp(0, z).mean()
                    - theta @ b)
            grad = lam * (X_unl.T @ expit(z_unl)) / m + (1 - lam) * (X.T @ expit(z)) / n - b
            return loss, grad

        def hess(theta):
            p, p_unl = expit(X @ theta), expit(X_unl @ theta)
            return (lam * (X_unl.T * (p_unl * (1 - p_unl))) @ X_unl / m
                    + (1 - lam) * (X.T * (p * (1 - p))) @ X / n)

        res = minimize(fun, np.zeros(d), jac=True, hess=hess, method="trust-exact",
                       options={"gtol": 1e-10, "maxiter": 200})
        # Separable classes: no finite minimiser; the solver stops where the gradient
        # underflows, with most fitted probabilities at 0 or 1.
        saturated = np.mean(np.abs(X @ res.x) > 20) > 0.5
        if saturated or np.max(np.abs(fun(res.x)[1])) > 1e-6:
            warnings.warn("rectified_logistic: no reliable finite solution (are the classes "
                          "separable by X?); the estimate and interval are not meaningful",
                          RuntimeWarning, stacklevel=3)
        return res.x

    def stats(theta, classical):
        p, p_unl = expit(X @ theta), expit(X_unl @ theta)
        hessian = (X.T * (p * (1 - p))) @ X
        if not classical:
            hessian = (hessian + (X_unl.T * (p_unl * (1 - p_unl))) @ X_unl) / (n + m)
        else:
            hessian /= n
        return (X * (p - y)[:, None], X * (p - yhat)[:, None],
                X_unl * (p_unl - yhat_unl)[:, None], _inv(hessian))

    return _fit(solve, stats, n, m, method, alpha)
