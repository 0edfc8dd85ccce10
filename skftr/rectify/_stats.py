"""Statistical core shared by every :mod:`skftr.rectify` estimand (docs/method.md §2.5).

Every rectified estimate solves the estimating equation (Angelopoulos, Duchi &
Zrnic 2023; Wang, Ye & Zhao 2025, §2)::

    mean_lab g(theta) + sum_l lam_l [mean_unl g~_l(theta) - mean_lab g_l(theta)] = 0

with per-unit gradients ``g`` (labels), ``g_l`` (predictor ``l`` on the labeled
units) and ``g~_l`` (predictor ``l`` on the unlabeled units). Its sandwich
covariance is::

    Sigma(lam) = H^-1 [C_lab(g - sum_l lam_l g_l) + C_unl(sum_l lam_l g~_l)] H^-1

where ``C_lab`` and ``C_unl`` are the covariance matrices of the two sample
means. This module holds the pieces every estimand shares: streaming moments,
those covariances (pooled within folds for cross-fitting), the one power-tuning
weight function (the optimum over the predictors that pay for their weight) and
the sandwich.
"""
import numpy as np
from scipy.stats import norm

# Predictors whose gradient spread is below this fraction of the labels' carry
# no information (constant up to rounding): they get weight 0.
_NEGLIGIBLE = np.sqrt(np.finfo(float).eps)

# A predictor keeps its power-tuning weight only if dropping it would raise the
# estimated variance by more than _PRUNE / n of it (Mallows' Cp / AIC; see
# power_tuning_weights).
_PRUNE = 2.0


def z_crit(alpha):
    """Normal critical value ``z_{1 - alpha/2}``."""
    return float(norm.ppf(1.0 - alpha / 2.0))


def wald_ci(value, stderr, alpha):
    """``value -/+ z_{1-alpha/2} * stderr`` (elementwise for vectors)."""
    half = z_crit(alpha) * stderr
    return value - half, value + half


def fixed_weights(method, n_predictors):
    """Weights the method fixes: 0 (``"classical"``), 1 (``"ppi"``); None (``"ppi++"``, tuned)."""
    if method == "ppi++":
        return None
    return np.full(n_predictors, 1.0 if method == "ppi" else 0.0)


class Moments:
    """Count, mean vector and matrix of summed cross-deviations (M2) of a stream of rows.

    Chunks are merged with the parallel update of Chan, Golub & LeVeque (1979):
    one numerically stable pass, any chunk sizes. Each chunk is centered on its
    first row before averaging, so a constant column has exactly zero spread.
    """

    __slots__ = ("count", "mean", "m2")

    def __init__(self, count, mean, m2):
        self.count, self.mean, self.m2 = int(count), mean, m2

    @classmethod
    def of(cls, x):
        """Moments of the rows of a float array of shape (k,) or (k, q); k may be 0."""
        x = np.asarray(x, dtype=np.float64)
        x = x[:, None] if x.ndim == 1 else x
        if x.shape[0] == 0:
            return cls(0, np.zeros(x.shape[1]), np.zeros((x.shape[1],) * 2))
        dev = x - x[0]
        shift = dev.mean(axis=0)
        dev -= shift
        return cls(x.shape[0], x[0] + shift, dev.T @ dev)

    def merge(self, other):
        """Combine with the moments of a disjoint set of rows (in place)."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return self
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / n)
        self.m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.count * other.count / n)
        self.count = n
        return self


def pooled_mean_cov(groups):
    """Mean of all rows, and the covariance matrix of that mean pooled within groups.

    ``groups`` is a list of :class:`Moments`, one per group (a single one
    without groups). With ``N`` rows in ``G`` groups::

        cov = sum_g M2_g / (N (N - G))      (G >= 2: the G group means are estimated)
        cov = M2 / N^2                      (one group: the plug-in convention of ppi_py)

    Pooling within folds is what makes cross-fitting insensitive to a constant
    shift of one fold model (Zrnic & Candès 2024; docs/method.md §2.3); rows
    weighted per group give a stratified mean whose variance this is.
    """
    total = sum(g.count for g in groups)
    mean = sum(g.mean * g.count for g in groups) / total
    ddof = len(groups) if len(groups) > 1 else 0
    return mean, sum(g.m2 for g in groups) / (total * (total - ddof))


def mean_cov(values, groups=None, n_groups=0):
    """:func:`pooled_mean_cov` of the rows of ``values`` (N, ...), grouped by ``groups``."""
    values = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))
    if groups is None:
        return pooled_mean_cov([Moments.of(values)])
    return pooled_mean_cov([Moments.of(values[groups == k]) for k in range(n_groups)])


def weighted_mean_cov(values, weights, groups=None, n_groups=0):
    """Weighted (Hajek) mean ``sum_j w_j v_j / sum_j w_j`` of the rows of ``values`` (N, ...)
    and the covariance of that mean, linearized and pooled within ``groups``.

    With ``omega = w / sum(w)`` and ``vbar_g`` the ``w``-weighted mean of group ``g``::

        cov = sum_g sum_{j in g} omega_j^2 (v_j - vbar_g)(v_j - vbar_g)' N / (N - G)

    (``G = 1``, no factor, without groups), the variance of a ratio estimator under
    independent (Poisson) inclusion given the units (Sarndal, Swensson & Wretman 1992,
    §5.7; docs/method.md §7). It is :func:`mean_cov` of the linearized values
    ``N omega_j (v_j - vbar_g)``, whose group means are 0, so equal weights give
    :func:`mean_cov` of ``values`` itself.
    """
    n = values.shape[0]
    values = values.reshape(n, int(np.prod(values.shape[1:])))
    omega = weights / weights.sum()
    centered = values - values[0]  # a constant column stays exactly constant
    if groups is None:
        centered = centered - omega @ centered
    else:
        for k in range(n_groups):
            rows = groups == k
            centered[rows] -= omega[rows] @ centered[rows] / omega[rows].sum()
    mean = values[0] + omega @ (values - values[0])
    return mean, mean_cov(n * omega[:, None] * centered, groups, n_groups)[1]


def _trace_products(cov, n_blocks, hess_inv):
    """``T[a, b] = tr(H^-1 C_ab H^-1)`` for the (d, d) blocks ``C_ab`` of ``cov``."""
    d = cov.shape[0] // n_blocks
    blocks = cov.reshape(n_blocks, d, n_blocks, d)
    square = np.eye(d) if hess_inv is None else hess_inv @ hess_inv
    return np.einsum("aibj,ji->ab", blocks, square)


def power_tuning_weights(cov_labeled, cov_unlabeled, hess_inv=None, *, n_labeled):
    """PPI++ weights ``lam`` (one per predictor) minimizing ``tr Sigma(lam)`` over a pruned set.

    Angelopoulos, Duchi & Zrnic (2023), generalized to ``p`` predictors as in
    docs/method.md §2.4. With ``T(C)_ab = tr(H^-1 C_ab H^-1)``, the optimum over
    a set ``S`` of predictors is::

        lam_S = [T(C_lab)_ff + T(C_unl)]_S^-1 T(C_lab)_fg,S
        V(S)  = T(C_lab)_gg - T(C_lab)_gf,S lam_S           (= tr Sigma(lam_S))

    For the mean (``H = 1``) this is ``lam = (Cov_lab(f)/n + Cov_unl(f)/m)^-1
    Cov_lab(f, Y)/n``, i.e. ``((1 + n/m) Cov(f))^-1 Cov(f, Y)`` when one
    estimate of ``Cov(f)`` serves both sides. Each side is estimated on its own
    units, so ``lam`` minimizes exactly the variance the interval reports (and
    out-of-fold and fold-averaged predictions, whose spreads differ, are handled
    alike). Each system is solved on the correlation scale by least squares
    (minimum norm).

    ``S`` starts from the predictors with spread (a constant one gets weight 0)
    and is pruned backwards (Mallows' Cp / AIC): while its cheapest predictor
    ``j`` has ``V(S \\ j) - V(S) <= 2 V(S) / n``, ``j`` is dropped (weight 0).
    An estimated weight makes ``V(S)`` under-report the variance by about
    ``V/n`` and adds as much noise, so a predictor that lowers it by less than
    ``2/n`` does not pay for its weight (and, nearly constant or nearly
    collinear with the others, would get an extreme one fitted to noise). The
    kept weights are the plain optimum: not shrunk, not clipped (correlated or
    shrunk predictors have theirs outside [0, 1]); any fixed ``lam`` gives a
    consistent estimate, so pruning changes only the variance.

    Parameters
    ----------
    cov_labeled : ndarray of shape ((1 + p) d, (1 + p) d)
        Covariance of the labeled means of ``(g, g_1, ..., g_p)``.
    cov_unlabeled : ndarray of shape (p d, p d)
        Covariance of the unlabeled means of ``(g~_1, ..., g~_p)``.
    hess_inv : ndarray of shape (d, d) or None
        Inverse Hessian; None for the identity.
    n_labeled : int
        Number of labeled units ``n`` (the noise scale of the weights).

    Returns
    -------
    ndarray of shape (p,)
    """
    d = cov_labeled.shape[0] - cov_unlabeled.shape[0]
    lab = _trace_products(cov_labeled, cov_labeled.shape[0] // d, hess_inv)
    p = lab.shape[0] - 1
    var = lab[1:, 1:] + _trace_products(cov_unlabeled, p, hess_inv)
    cross = lab[1:, 0]
    scale = np.sqrt(np.clip(np.diag(var), 0.0, None))

    def optimum(subset):
        """``(lam_S, V(S))`` over the predictors ``subset`` (a list of indices)."""
        if not subset:
            return np.zeros(0), lab[0, 0]
        s = scale[subset]
        corr = var[np.ix_(subset, subset)] / np.outer(s, s)
        weights = np.linalg.lstsq(corr, cross[subset] / s, rcond=1e-10)[0] / s
        return weights, lab[0, 0] - cross[subset] @ weights

    keep = [j for j in range(p) if scale[j] > _NEGLIGIBLE * np.sqrt(max(lab[0, 0], 0.0))]
    weights, value = optimum(keep)
    while keep:
        costs = [optimum(keep[:i] + keep[i + 1:])[1] - value for i in range(len(keep))]
        i = int(np.argmin(costs))
        if costs[i] > _PRUNE * max(value, 0.0) / n_labeled:
            break
        del keep[i]
        weights, value = optimum(keep)
    lam = np.zeros(p)
    lam[keep] = weights
    return lam


def sandwich(cov_labeled, cov_unlabeled, lam, hess_inv=None):
    """Covariance ``Sigma(lam)`` of the rectified estimate (module docstring).

    ``H^-1 [a' C_lab a + lam' C_unl lam] H^-1`` over the (d, d) blocks, with
    ``a = (1, -lam)``; ``lam = 0`` gives the classical sandwich. Arguments as in
    :func:`power_tuning_weights`.
    """
    p = lam.shape[0]
    d = cov_labeled.shape[0] - cov_unlabeled.shape[0]
    a = np.concatenate([[1.0], -lam])
    meat = (np.einsum("a,aibj,b->ij", a, cov_labeled.reshape(p + 1, d, p + 1, d), a)
            + np.einsum("a,aibj,b->ij", lam, cov_unlabeled.reshape(p, d, p, d), lam))
    return meat if hess_inv is None else hess_inv @ meat @ hess_inv
