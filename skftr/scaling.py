"""The scaling law of fine-tuning (Wang, Ye & Zhao 2025; docs/method.md §4).

A model fine-tuned on ``s`` labeled units leaves an error variance

    sigma^2(s) = Var(Y - f_s(X)) ~= a * s^(-alpha) + b,      a > 0, alpha > 0, b >= 0,

with ``s`` in raw units (number of fine-tuning labels, as in the paper). The law is
fitted by constrained non-linear least squares on pilot fine-tunes at a few sizes.
"""
import time
import warnings
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from scipy.optimize import least_squares, nnls
from scipy.stats import linregress
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted, column_or_1d

from ._inputs import resolve_size
from .exceptions import ScalingLawWarning

__all__ = ["ScalingLaw", "ScalingLawWarning"]

# Bounds on the exponent. Below 1e-3 the law is numerically flat; above 3 it is a step
# at the smallest size (learning curves have exponents well below 1) and `a` (raw-size
# units, a = A * ref^alpha) explodes.
_ALPHA_MIN, _ALPHA_MAX = 1e-3, 3.0
_ALPHA_GRID = np.geomspace(0.02, _ALPHA_MAX, 24)


def _check_curve(sizes, error_variances, sample_weight=None):
    sizes = column_or_1d(np.asarray(sizes, dtype=float), warn=False)
    variances = column_or_1d(np.asarray(error_variances, dtype=float), warn=False)
    if sizes.shape != variances.shape:
        raise ValueError(
            f"sizes and error_variances must have the same length, got {sizes.size} "
            f"and {variances.size}"
        )
    if sizes.size == 0:
        raise ValueError("sizes is empty: need error variances at 3 or more distinct sizes")
    if not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise ValueError("sizes must be finite and positive (numbers of fine-tuning labels)")
    if not np.all(np.isfinite(variances)) or np.any(variances < 0):
        raise ValueError("error_variances must be finite and non-negative")
    if sample_weight is None:
        weights = np.ones_like(sizes)
    else:
        weights = column_or_1d(np.asarray(sample_weight, dtype=float), warn=False)
        if weights.shape != sizes.shape:
            raise ValueError(
                f"sample_weight must have the length of sizes ({sizes.size}), got {weights.size}"
            )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError("sample_weight must be finite, non-negative and not all zero")
    return sizes, variances, weights


def _flat(variances, weights):
    """Parameters of the flat fallback law: sigma^2(s) = weighted mean variance."""
    return 0.0, 0.0, float(np.average(variances, weights=weights))


def _fit_law(sizes, variances, weights, n_starts, ref):
    """Constrained NLS fit; returns (a, alpha, b) in raw-size units or None if flat.

    Parametrisation: theta = (log A, log alpha, b / scale) with
    sigma^2(s) = A * (s / ref)^(-alpha) + b, so A is of the order of the variances and
    a = A * ref^alpha. Starts come from the profile of the weighted non-negative least
    squares fit of (A, b) on a grid of alpha (the model is linear in A and b given alpha).
    """
    scale = float(np.average(variances, weights=weights)) or 1.0
    y = variances / scale
    sw = np.sqrt(weights)
    x = np.log(sizes / ref)

    profile = []
    for alpha in _ALPHA_GRID:
        design = np.column_stack([np.exp(-alpha * x), np.ones_like(x)])
        coef, norm = nnls(design * sw[:, None], y * sw)
        profile.append((norm, alpha, coef[0], coef[1]))
    profile.sort(key=lambda row: row[0])
    if profile[0][2] <= 1e-12:  # best curve has no decreasing part: flat data
        return None

    def residuals(theta):
        return sw * (np.exp(theta[0] - np.exp(theta[1]) * x) + theta[2] - y)

    lower = [-np.inf, np.log(_ALPHA_MIN), 0.0]
    upper = [np.inf, np.log(_ALPHA_MAX), np.inf]
    best = None
    for _, alpha, amp, floor in profile[: max(1, n_starts)]:
        if amp <= 1e-12:
            continue
        start = np.clip([np.log(amp), np.log(alpha), floor], lower, upper)
        fit = least_squares(residuals, start, bounds=(lower, upper), method="trf",
                            x_scale="jac")
        if best is None or fit.cost < best.cost:
            best = fit
    log_amp, log_alpha, floor = best.x
    alpha = float(np.exp(log_alpha))
    a = float(np.exp(log_amp + alpha * np.log(ref))) * scale
    floor = 0.0 if floor < 1e-9 else float(floor)  # solver round-off at the bound b = 0
    return a, alpha, floor * scale


def _r2(y, fitted, weights):
    mean = np.average(y, weights=weights)
    total = np.sum(weights * (y - mean) ** 2)
    if total <= 0:
        return 0.0
    return float(1.0 - np.sum(weights * (y - fitted) ** 2) / total)


def _run_pilot(model, X_train, y_train, X_hold, y_hold, size, repeat):
    start = time.perf_counter()
    fitted = clone(model).fit(X_train, y_train)
    pred = np.asarray(fitted.predict(X_hold), dtype=float).reshape(-1)
    seconds = time.perf_counter() - start
    if pred.shape[0] != y_hold.shape[0] or not np.all(np.isfinite(pred)):
        raise ValueError(
            f"the pilot model fitted on {size} rows returned {pred.shape[0]} predictions "
            "(expected one finite prediction per held-out row)"
        )
    return {
        "size": int(size),
        "repeat": int(repeat),
        "error_variance": float(np.var(y_hold - pred, ddof=1)),
        "prediction_variance": float(np.var(pred, ddof=1)),
        "seconds": seconds,
    }


class ScalingLaw(BaseEstimator):
    """Power law of the fine-tuned model's error variance (docs/method.md §4).

    ``sigma^2(s) = a * s^(-alpha) + b`` with ``a > 0``, ``alpha > 0``, ``b >= 0`` and ``s``
    the number of fine-tuning labels (raw units). Fitted by constrained non-linear least
    squares (``scipy.optimize.least_squares`` with bounds) in the parametrisation
    ``(log A, log alpha, b)``, ``A = a * ref^(-alpha)`` with ``ref`` the geometric mean
    of the pilot sizes, from the ``n_starts`` best points of a profile over alpha.

    Parameters
    ----------
    n_starts : int, default=5
        Number of starting points for the non-linear least squares.
    n_bootstrap : int, default=200
        Bootstrap replicates for the parameter intervals (0 disables them).
    bootstrap : {"auto", "cases", "residuals"}, default="auto"
        ``"cases"`` resamples the observations within each size (the pilot repeats),
        ``"residuals"`` adds resampled residuals to the fitted curve; ``"auto"`` uses
        cases when every size has at least two observations.
    alpha : float, default=0.05
        Level of the bootstrap percentile intervals (``1 - alpha`` coverage). This is
        not the exponent, which is the fitted ``alpha_``.
    random_state : int, RandomState instance or None, default=None
        Seeds the bootstrap (and, in :meth:`from_pilots`, the pilot subsets).

    Attributes
    ----------
    a_, alpha_, b_ : float
        Fitted law. When the data cannot identify it (fewer than 3 distinct sizes, or a
        curve that does not decrease) a :class:`ScalingLawWarning` is emitted and the
        flat law ``a_ = alpha_ = 0``, ``b_ = mean error variance`` is used: it predicts
        no gain from fine-tuning, so :func:`skftr.optimal_allocation` then spends the
        minimum on fine-tuning. The exponent is bounded to ``[0.001, 3]``; a fit at
        the upper bound (a step between the smallest sizes) also warns.
    identified_ : bool
        False when the flat fallback was used.
    r2_ : float
        Weighted coefficient of determination of the fit on the variance scale.
    intervals_ : dict
        ``{"a": (low, high), "alpha": (...), "b": (...)}`` bootstrap percentile
        intervals (NaN when ``n_bootstrap=0``).
    bootstrap_params_ : ndarray of shape (n_bootstrap, 3)
        Bootstrap replicates of ``(a, alpha, b)``.
    sizes_, error_variances_, sample_weight_ : ndarray
        The fitted data.
    pilots_ : pandas.DataFrame
        Only after :meth:`from_pilots`: columns ``size, repeat, error_variance,
        prediction_variance, seconds``, one row per pilot fit.
    pilot_indices_, holdout_indices_ : ndarray of int
        Only after :meth:`from_pilots`: positions (in ``X``) of every labeled row the
        pilots used (training and held-out), and of the held-out rows.
    prediction_variance_ : float
        Only after :meth:`from_pilots`: mean ``Var(f_s(X))`` of the pilots at the largest
        size, used by :func:`skftr.optimal_allocation` for the ``Var(f)/m`` term.

    Examples
    --------
    >>> law = ScalingLaw(n_bootstrap=0).fit([50, 100, 200, 400, 800],
    ...                                     [0.17, 0.15, 0.13, 0.115, 0.105])
    >>> round(law.alpha_, 2) > 0
    True
    """

    _parameter_constraints = {
        "n_starts": [Interval(Integral, 1, None, closed="left")],
        "n_bootstrap": [Interval(Integral, 0, None, closed="left")],
        "bootstrap": [StrOptions({"auto", "cases", "residuals"})],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(self, n_starts=5, n_bootstrap=200, bootstrap="auto", alpha=0.05,
                 random_state=None):
        self.n_starts = n_starts
        self.n_bootstrap = n_bootstrap
        self.bootstrap = bootstrap
        self.alpha = alpha
        self.random_state = random_state

    def fit(self, sizes, error_variances, sample_weight=None):
        """Fit the law to error variances measured at fine-tuning sizes.

        Parameters
        ----------
        sizes : array-like of shape (k,)
            Number of fine-tuning labels of each pilot (positive; repeats allowed).
        error_variances : array-like of shape (k,)
            Held-out residual variance ``Var(Y - f_s(X))`` of each pilot (non-negative).
        sample_weight : array-like of shape (k,), default=None
            Weights of the squared residuals.

        Returns
        -------
        self : ScalingLaw
        """
        self._validate_params()
        sizes, variances, weights = _check_curve(sizes, error_variances, sample_weight)
        self.sizes_, self.error_variances_, self.sample_weight_ = sizes, variances, weights
        self._ref = float(np.exp(np.mean(np.log(np.unique(sizes)))))

        params, reason = self._fit_or_flat(sizes, variances, weights)
        if params is None:
            warnings.warn(
                f"the scaling law is not identified: {reason}; using the flat law "
                "sigma^2(s) = mean error variance (no gain from fine-tuning assumed)",
                ScalingLawWarning,
                stacklevel=2,
            )
            params = _flat(variances, weights)
        self.a_, self.alpha_, self.b_ = params
        self.identified_ = reason is None
        if self.identified_ and self.alpha_ >= _ALPHA_MAX * (1 - 1e-6):
            warnings.warn(
                f"alpha_ reached its upper bound {_ALPHA_MAX}: the error variance falls "
                "faster than a plausible power law between the smallest sizes and is "
                "nearly flat after them, so a_ is not meaningful; add pilots at smaller "
                "or intermediate sizes",
                ScalingLawWarning,
                stacklevel=2,
            )
        self.r2_ = _r2(variances, self.predict(sizes), weights)
        self._bootstrap(sizes, variances, weights)
        return self

    def _fit_or_flat(self, sizes, variances, weights, n_starts=None):
        distinct = np.unique(sizes[weights > 0])
        if distinct.size < 3:
            return None, f"{distinct.size} distinct size(s), need at least 3"
        keep = weights > 0
        slope = linregress(np.log(sizes[keep]), variances[keep]).slope
        if not slope < 0:
            return None, "the error variance does not decrease with the size"
        n_starts = self.n_starts if n_starts is None else n_starts
        params = _fit_law(sizes, variances, weights, n_starts, self._ref)
        if params is None:
            return None, "the best fitting curve is flat"
        return params, None

    def _bootstrap(self, sizes, variances, weights):
        names = ("a", "alpha", "b")
        self.bootstrap_params_ = np.empty((self.n_bootstrap, 3))
        if self.n_bootstrap == 0:
            self.intervals_ = {name: (np.nan, np.nan) for name in names}
            return
        rng = check_random_state(self.random_state)
        by_size = [np.flatnonzero(sizes == s) for s in np.unique(sizes)]
        method = self.bootstrap
        if method == "auto":
            method = "cases" if all(len(rows) > 1 for rows in by_size) else "residuals"
        fitted = self.predict(sizes)
        residuals = variances - fitted
        for i in range(self.n_bootstrap):
            if method == "cases":
                rows = np.concatenate([rng.choice(r, size=len(r), replace=True) for r in by_size])
                s_b, v_b, w_b = sizes[rows], variances[rows], weights[rows]
            else:
                s_b, w_b = sizes, weights
                v_b = np.clip(fitted + rng.choice(residuals, size=residuals.size), 0.0, None)
            # one start (the best point of the alpha profile) keeps replicates cheap
            params, _ = self._fit_or_flat(s_b, v_b, w_b, n_starts=1)
            self.bootstrap_params_[i] = params if params is not None else _flat(v_b, w_b)
        low, high = np.percentile(
            self.bootstrap_params_, [50 * self.alpha, 100 - 50 * self.alpha], axis=0
        )
        self.intervals_ = {name: (float(lo), float(hi)) for name, lo, hi in zip(names, low, high)}

    def predict(self, sizes):
        """Predicted error variance ``a * s^(-alpha) + b`` at fine-tuning sizes ``s > 0``.

        Parameters
        ----------
        sizes : float or array-like
            Numbers of fine-tuning labels.

        Returns
        -------
        ndarray of float (same shape as ``sizes``)
        """
        check_is_fitted(self, "a_")
        s = np.asarray(sizes, dtype=float)
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("sizes must be finite and positive (numbers of fine-tuning labels)")
        return self.a_ * s ** (-self.alpha_) + self.b_

    def plot(self, ax=None):
        """Log-log plot of the pilot points and the fitted curve (with the floor ``b``).

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on (a new figure when None).

        Returns
        -------
        ax : matplotlib Axes
        """
        check_is_fitted(self, "a_")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        grid = np.geomspace(self.sizes_.min() / 1.5, self.sizes_.max() * 2.0, 200)
        ax.scatter(self.sizes_, self.error_variances_, s=18, color="C0", label="pilots")
        label = (f"{self.a_:.3g} s^(-{self.alpha_:.3g}) + {self.b_:.3g}  (R2 {self.r2_:.2f})"
                 if self.identified_ else f"flat fallback {self.b_:.3g}")
        ax.plot(grid, self.predict(grid), color="C1", label=label)
        if self.b_ > 0:
            ax.axhline(self.b_, color="C1", linestyle=":", linewidth=1, label="floor b")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # label decades and pilot sizes only
        ax.set_xticks(np.unique(self.sizes_), [f"{s:g}" for s in np.unique(self.sizes_)])
        ax.set_xlabel("fine-tuning labels s")
        ax.set_ylabel("error variance  Var(Y - f_s)")
        ax.legend(fontsize=8)
        return ax

    @classmethod
    def from_pilots(cls, model, X, y, sizes, n_repeats=3, holdout=0.25, n_jobs=None,
                    random_state=None, **params):
        """Fit the law from pilot fits of ``model`` at several sizes.

        One held-out set is drawn from the labeled rows (finite ``y``; rows with NaN
        ``y`` are ignored). For each repeat the remaining rows are shuffled and the
        pilot at size ``s`` fits ``sklearn.base.clone(model)`` on the first ``s`` of
        them (nested subsets, so the pilots touch few labels), then measures the
        held-out ``Var(y - f_s(X))`` (ddof=1). The fits run through
        ``joblib.Parallel(n_jobs)``, so a Dask or Ray joblib backend scales them out.

        Parameters
        ----------
        model : scikit-learn regressor
            Anything with ``fit(X, y)`` and ``predict(X)`` that ``clone`` accepts.
        X : list of str, array-like or DataFrame
            Inputs (indexed with ``sklearn.utils._safe_indexing``).
        y : array-like of shape (n_samples,)
            Labels; NaN marks unlabeled rows, which are not used.
        sizes : array-like of int
            Pilot fine-tuning sizes (at least 3 distinct, each at most the number of
            labeled rows minus the held-out rows).
        n_repeats : int, default=3
            Random subsets per size.
        holdout : float in (0, 1) or int, default=0.25
            Share or number of labeled rows held out to measure the error variance.
        n_jobs : int, default=None
            Parallel pilot fits (joblib semantics).
        random_state : int, RandomState instance or None, default=None
            Draws the held-out rows and subsets; also seeds the bootstrap.
        **params
            Parameters of the ScalingLaw (``n_starts``, ``n_bootstrap``, ...).

        Returns
        -------
        law : ScalingLaw
            Fitted, with ``pilots_``, ``pilot_indices_``, ``holdout_indices_`` and
            ``prediction_variance_``.
        """
        import pandas as pd
        from sklearn.utils import _safe_indexing

        if not hasattr(model, "fit") or not hasattr(model, "predict"):
            raise TypeError(f"model must have fit and predict methods, got {type(model).__name__}")
        if isinstance(X, str):
            raise TypeError("X must be a sequence of inputs (e.g. a list of texts), got a str")
        y = column_or_1d(np.asarray(y, dtype=float), warn=False)
        if _num_samples(X) != y.shape[0]:
            raise ValueError(f"X has {_num_samples(X)} rows but y has {y.shape[0]}")
        if not isinstance(n_repeats, Integral) or n_repeats < 1:
            raise ValueError(f"n_repeats must be a positive integer, got {n_repeats!r}")
        labeled = np.flatnonzero(np.isfinite(y))
        n_lab = labeled.size
        n_hold = resolve_size(holdout, n_lab, "holdout")
        if n_hold < 2 or n_hold >= n_lab:
            raise ValueError(
                f"holdout gives {n_hold} held-out rows out of {n_lab} labeled rows; need "
                "at least 2 and fewer than the labeled rows"
            )
        sizes = np.asarray(sizes)
        if sizes.ndim != 1 or sizes.size == 0 or not np.issubdtype(sizes.dtype, np.number) \
                or np.any(sizes != np.round(sizes)):
            raise ValueError(f"sizes must be a 1-d sequence of integers, got {sizes!r}")
        sizes = np.unique(sizes.astype(int))
        pool = n_lab - n_hold
        if sizes[0] < 1 or sizes[-1] > pool:
            raise ValueError(
                f"sizes must lie in [1, {pool}] (labeled rows {n_lab} minus {n_hold} "
                f"held out), got {sizes.tolist()}"
            )

        rng = check_random_state(random_state)
        order = rng.permutation(labeled)
        hold, rest = order[:n_hold], order[n_hold:]
        X_hold, y_hold = _safe_indexing(X, hold), y[hold]
        tasks, touched = [], [hold]
        for repeat in range(n_repeats):
            perm = rng.permutation(rest)
            touched.append(perm[: sizes[-1]])
            for size in sizes:
                rows = perm[:size]
                tasks.append(delayed(_run_pilot)(model, _safe_indexing(X, rows), y[rows],
                                                 X_hold, y_hold, size, repeat))
        pilots = pd.DataFrame(Parallel(n_jobs=n_jobs)(tasks))

        law = cls(**{"random_state": random_state, **params})
        law.fit(pilots["size"].to_numpy(), pilots["error_variance"].to_numpy())
        law.pilots_ = pilots
        law.holdout_indices_ = np.sort(hold)
        law.pilot_indices_ = np.unique(np.concatenate(touched))
        law.prediction_variance_ = float(
            pilots.loc[pilots["size"] == sizes[-1], "prediction_variance"].mean()
        )
        return law
