"""The one rectification recipe every estimand follows (docs/method.md §2.2, §2.5, §2.6).

1. The classical estimate (``lam = 0``, labels only) and its interval: the
   comparison every rectified estimate carries.
2. The weights: 1 for ``"ppi"``; for ``"ppi++"`` the power-tuning weights of
   :func:`~skftr.rectify._stats.power_tuning_weights` (predictors that do not
   lower the variance by more than 2/n of it get weight 0), with the gradients
   taken at the classical estimate (consistent whatever the predictors).
3. The rectified estimate at those weights and its sandwich covariance
   (Angelopoulos, Duchi & Zrnic 2023; Wang, Ye & Zhao 2025, §2).
"""
import numpy as np

from ._result import RectifiedEstimate
from ._stats import fixed_weights, power_tuning_weights, sandwich, wald_ci


class Problem:
    """What an estimand supplies to :func:`rectify`.

    Attributes
    ----------
    n_predictors : int

    Methods
    -------
    fit(lam) -> theta
        The rectified estimate at the weights ``lam`` (p,).
    covariances(theta, classical) -> (cov_labeled, cov_unlabeled, hess_inv)
        The arguments of :func:`~skftr.rectify._stats.sandwich` at ``theta``;
        ``classical=True``: the labeled covariance without fold pooling and the
        Hessian of the labeled units alone (what the labels-only estimate uses).
    interval(theta, lam, cov, alpha) -> (stderr, (low, high))
        Wald interval from the covariance ``cov`` of ``theta`` (scalar targets
        hold floats); the quantile inverts its rectified CDF instead.
    """

    n_predictors = 1

    def interval(self, theta, lam, cov, alpha):
        stderr = np.sqrt(np.diag(cov))
        if np.ndim(theta) == 0:
            stderr = float(stderr[0])
        return stderr, wald_ci(theta, stderr, alpha)


def rectify(problem, method, alpha, *, n_labeled, n_unlabeled, n_folds=0):
    """Run the recipe of the module docstring and return a :class:`RectifiedEstimate`.

    ``method`` is validated by the caller; with folds (``n_folds`` > 0) a
    rectified method is reported as ``"cross-ppi"`` / ``"cross-ppi++"``.
    """
    p = problem.n_predictors
    zero = np.zeros(p)
    theta0 = problem.fit(zero)
    lab, unl, hess_inv = problem.covariances(theta0, classical=True)
    classical_se, classical_ci = problem.interval(theta0, zero, sandwich(lab, unl, zero, hess_inv),
                                                  alpha)
    lam = fixed_weights(method, p)
    if method == "classical":
        theta, stderr, ci = theta0, classical_se, classical_ci
    else:
        if lam is None:
            lam = power_tuning_weights(*problem.covariances(theta0, classical=False),
                                       n_labeled=n_labeled)
        theta = problem.fit(lam)
        lab, unl, hess_inv = problem.covariances(theta, classical=False)
        stderr, ci = problem.interval(theta, lam, sandwich(lab, unl, lam, hess_inv), alpha)
    return RectifiedEstimate(
        value=theta, stderr=stderr, ci=ci, alpha=alpha,
        method=f"cross-{method}" if n_folds and method != "classical" else method,
        n_labeled=n_labeled, n_unlabeled=n_unlabeled, lam=lam[0] if p == 1 else lam,
        classical_stderr=classical_se, classical_ci=classical_ci, n_predictors=p,
        n_folds=n_folds or None,
    )
