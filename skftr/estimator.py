"""FineTuneRectifyEstimator: fine-tuning then rectification in one scikit-learn estimator.

The labelled rows are split into a fine-tuning set ``F`` and a rectification set ``R``
(disjoint). A clone of ``model`` is fitted on ``F``; its predictions on ``R`` and on
the unlabelled rows ``U`` give the rectified estimate (METHOD.md sections 2-5)::

    theta = mean_U f + mean_R (Y - f)
    Var   = Var_R(Y - f) / n_r + Var_U(f) / m

The split is fixed (``n_finetune`` an int, a fraction or a ``BudgetSplitter``), chosen
by a scaling law fitted on budget-faithful pilots (``n_finetune="auto"``), or replaced
by cross-fitting (``crossfit=K``: every label fine-tunes K - 1 fold models and rectifies
the one that did not see it).
"""
import sys
import warnings
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import KFold
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import (
    check_consistent_length, check_is_fitted, column_or_1d, validate_data,
)

from ._inputs import check_texts

__all__ = ["FineTuneRectifyEstimator", "NoUnlabeledWarning"]

_LOSSES = ("variance", "mse", "correlation")


class NoUnlabeledWarning(UserWarning):
    """``fit`` saw no unlabelled row: ``estimate_`` is the classical mean of the labels."""


# ----------------------------------------------------------------------------- inputs
def _is_dataframe(X):
    return hasattr(X, "columns") and hasattr(X, "iloc")


def _looks_like_texts(X):
    """True for a str, a 1-d sequence of str/None, or a single non-numeric column."""
    if isinstance(X, str):
        return True
    if _is_dataframe(X):
        return X.shape[1] == 1 and X.dtypes.iloc[0].kind in "OSU"
    if hasattr(X, "dtype") and hasattr(X, "shape"):  # ndarray, Series, sparse
        if getattr(X, "format", None) is not None:  # scipy sparse
            return False
        one_col = len(X.shape) == 1 or (len(X.shape) == 2 and X.shape[1] == 1)
        return X.dtype.kind in "OSU" and one_col
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and all(v is None or isinstance(v, str) for v in X)
    return False


def _check_texts(X, name):
    """Validate texts (see :func:`skftr._inputs.check_texts`); a 1-d object ndarray of str."""
    return np.asarray(check_texts(X, name), dtype=object)


def _check_y(y, n_samples, name="y"):
    """Numeric 1-d labels; NaN marks an unlabelled row, inf is refused."""
    if y is None:
        raise ValueError("FineTuneRectifyEstimator requires y to be passed, but the target y "
                         "is None (use NaN to mark unlabelled rows)")
    y = column_or_1d(y, warn=True)
    if y.dtype.kind not in "biuf":
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must hold numeric labels (NaN for an unlabelled row), "
                             f"got dtype {y.dtype}") from None
    y = y.astype(np.float64)
    if np.isinf(y).any():
        raise ValueError(f"Input {name} contains infinity; labels must be finite "
                         "(NaN marks an unlabelled row)")
    if y.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} rows but {name} has {y.shape[0]}; they must have "
                         "the same length")
    return y


def _is_lora(model):
    lora = sys.modules.get("skftr.lora")
    return model is None or (lora is not None and isinstance(model, lora.LoRARegressor))


def _rows(X, index):
    """Rows of a validated input (text object array or numeric ndarray)."""
    return X[np.asarray(index, dtype=int)]


def _concat(parts):
    parts = [p for p in parts if p is not None and p.shape[0]]
    if not parts:
        return None
    return np.concatenate(parts, axis=0)


def _to_model(X, text):
    return X.tolist() if text else X


def _predict_one(model, X, text):
    pred = np.asarray(model.predict(_to_model(X, text)), dtype=np.float64).reshape(-1)
    if pred.shape[0] != X.shape[0] or not np.all(np.isfinite(pred)):
        raise ValueError(f"{type(model).__name__}.predict returned {pred.shape[0]} values for "
                         f"{X.shape[0]} rows, or non-finite values")
    return pred


def _fit_one(model, X, y, text):
    return clone(model).fit(_to_model(X, text), y)


def _fold_stats(model, X_train, y_train, X_val, X_unl, text):
    fitted = _fit_one(model, X_train, y_train, text)
    f_unl = None if X_unl is None else _predict_one(fitted, X_unl, text)
    return fitted, _predict_one(fitted, X_val, text), f_unl


# -------------------------------------------------------------------------- estimator
class FineTuneRectifyEstimator(RegressorMixin, BaseEstimator):
    """Fine-tune on part of a label budget, rectify on the rest (METHOD.md 2-5).

    Rows of ``X`` whose ``y`` is NaN are the unlabelled sample (``X_unlabeled=`` adds
    more). The labelled rows are split into a fine-tuning set ``F`` and a disjoint
    rectification set ``R``; ``model`` is fitted on ``F`` and the prediction-powered
    estimate ``theta = mean_U f + mean_R (Y - f)`` with variance
    ``Var_R(Y - f) / n_r + Var_U(f) / m`` is stored in ``estimate_``.

    Parameters
    ----------
    model : regressor, default=None
        ``None`` is ``LoRARegressor()`` (MiniLM backbone, texts in). Any scikit-learn
        regressor works, e.g. ``Ridge()`` on numeric features or
        ``make_pipeline(SentenceEmbedder(), Ridge())`` on texts. Cloned, never modified.
        Its parameters are reachable as ``model__<name>`` (``model__lora_r``) when a model
        instance is given (with ``None`` there is no instance to reach).
    loss : {"variance", "mse", "correlation"}, default="variance"
        Fine-tuning objective (METHOD.md 3), given to the clone as ``criterion`` when the
        model is a ``LoRARegressor`` (it overrides the model's own ``criterion``). Other
        scikit-learn regressors keep their own objective: for least-squares fits with an
        intercept, minimising ``Var(Y - f)`` and ``MSE`` give the same fit (the intercept
        absorbs the bias), so both are accepted; ``"correlation"`` raises ``ValueError``.
    n_finetune : "auto", int, float in (0, 1) or BudgetSplitter, default="auto"
        How many labelled rows fine-tune. An int is a count, a float a share (rounded) of
        the labelled rows; the rest rectify. A ``BudgetSplitter``: its first split of
        ``(X, y)`` decides (train-fold labelled rows fine-tune, test fold rectifies,
        labelled rows in neither are unused). ``"auto"``: budget-faithful pilots
        (``ScalingLaw.from_pilots`` on a pilot pool drawn from the labelled rows, whose
        labels count inside the budget), then ``optimal_allocation(n, law,
        n_unlabeled=m, n_pilot=pool)``; the final fine-tuning set contains the whole
        pilot pool, so no rectification row ever touched a pilot. With ``scaling_law``
        given, no pilots are run. Must be ``"auto"`` when ``crossfit`` is set.
    scaling_law : fitted ScalingLaw, default=None
        Skips the pilots of ``n_finetune="auto"``.
    method : {"ppi", "ppi++", "classical"}, default="ppi"
        Rectification (see :func:`skftr.rectified_mean`). ``"classical"`` estimates from
        the labels alone (``Var(Y)/n``); the model is still fitted for ``predict``.
    crossfit : int >= 2, default=None
        Cross-PPI with K folds (:func:`skftr.crossfit_mean`): K fold models, each
        labelled row rectifies the model that did not see it; ``estimand="mean"`` only.
    estimand : {"mean", "quantile"}, default="mean"
        Target: the mean of Y, or its ``q``-quantile (:func:`skftr.rectified_quantile`).
    q : float in (0, 1), default=0.5
        Quantile level for ``estimand="quantile"``.
    alpha : float in (0, 1), default=0.05
        The intervals have coverage ``1 - alpha``.
    pilot_sizes : array-like of int, default=None
        Pilot fine-tuning sizes for ``"auto"``; None uses about n/16, n/8, n/4 of the
        ``n`` labelled rows. The pilot pool is ``max(pilot_sizes)`` rows plus
        ``max(pilot_sizes) // 2`` held-out rows that measure the pilots' error variance.
    pilot_repeats : int, default=2
        Random subsets per pilot size.
    min_rectify : int, default=10
        Smallest rectification set.
    random_state : int, RandomState instance or None, default=None
        Draws the split, the pilots and the folds (the model keeps its own seed).
    n_jobs : int, default=None
        Parallel pilot and fold fits (joblib).

    Attributes
    ----------
    estimate_ : RectifiedEstimate
        The estimate from the fit data, with ``allocation`` attached.
    allocation_ : Allocation or None
        The split used: projected by the scaling law for ``"auto"``; for a fixed split
        its ``variance``/``halfwidth`` are those estimated by the rectification. None with
        ``crossfit``.
    scaling_law_ : ScalingLaw or None
        The law that chose the split (fitted on pilots, or the one given).
    model_ : regressor or list of regressors
        The fitted model; with ``crossfit`` the list of K fold models.
    n_finetune_, n_rectify_, n_unlabeled_ : int
        Sizes of ``F``, ``R`` and ``U`` (``n_rectify_`` counts every labelled row with
        ``crossfit``).
    finetune_indices_, rectify_indices_ : ndarray of int
        Positions in the ``X`` given to ``fit`` of ``F`` and ``R`` (set by ``fit``;
        :meth:`rectify` sets ``rectify_indices_`` in its own ``X``). Disjoint; with
        ``crossfit`` every labelled row is in ``rectify_indices_`` and ``folds_`` gives
        its fold).
    pilot_indices_ : ndarray of int
        Only with ``n_finetune="auto"``: positions of the pilot pool (every row a pilot
        fitted on or held out), a subset of ``finetune_indices_``; empty when a
        ``scaling_law`` was given.
    offset_, prediction_scale_ : float
        ``predict(X) = prediction_scale_ * f(X) + offset_``.
    n_features_in_, feature_names_in_ :
        Numeric inputs only.

    Notes
    -----
    *No unlabelled row.* When ``y`` has no NaN and no ``X_unlabeled`` is given (as in
    ``check_estimator`` and plain cross-validation) there is nothing for the model to
    impute: ``estimate_`` is the classical mean of all labels, ``Var(Y)/n`` (method
    ``"classical"``), with a :class:`NoUnlabeledWarning`. The model is still fitted and
    rectified, so ``predict``, ``score`` and ``estimate(X_unlabeled)`` work.

    *Grid search.* :meth:`score` is minus the estimated variance of the estimate with
    the scored labels joining the rectification rows, so ``GridSearchCV(est, {"n_finetune":
    [s1, s2, ...], ...}, cv=BudgetSplitter(n_finetune=s0))`` with ints ``s_i <= s0 -
    min_rectify`` scores each candidate by the variance of exactly the configuration its
    refit has (``s`` labels fine-tune, the other ``n - s`` rectify); see :meth:`score`.

    *predict.* ``f(X) + mean_R(Y - f)``: a variance-trained model is identified only up
    to a shift, and the rectification supplies the level. With ``method="ppi++"`` the
    predictions are the power-tuned ``lam * f(X) + mean_R(Y - lam * f)``, the linear
    recalibration PPI++ uses, so their mean over the unlabelled rows is the estimate.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(600, 3)); y = X @ [1.0, 2.0, 0.5] + rng.normal(size=600)
    >>> y[200:] = np.nan                       # 200 labels, 400 unlabelled rows
    >>> est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, random_state=0).fit(X, y)
    >>> est.n_finetune_, est.n_rectify_, est.n_unlabeled_
    (100, 100, 400)
    """

    _parameter_constraints = {
        "model": [HasMethods(["fit", "predict"]), None],
        "loss": [StrOptions(set(_LOSSES)), HasMethods(["forward"])],
        "n_finetune": [
            StrOptions({"auto"}),
            Interval(Integral, 1, None, closed="left"),
            Interval(Real, 0, 1, closed="neither"),
            HasMethods(["split", "get_n_splits"]),
        ],
        "scaling_law": [HasMethods(["predict"]), None],
        "method": [StrOptions({"ppi", "ppi++", "classical"})],
        "crossfit": [Interval(Integral, 2, None, closed="left"), None],
        "estimand": [StrOptions({"mean", "quantile"})],
        "q": [Interval(Real, 0, 1, closed="neither")],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "pilot_sizes": ["array-like", None],
        "pilot_repeats": [Interval(Integral, 1, None, closed="left")],
        "min_rectify": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(self, model=None, *, loss="variance", n_finetune="auto", scaling_law=None,
                 method="ppi", crossfit=None, estimand="mean", q=0.5, alpha=0.05,
                 pilot_sizes=None, pilot_repeats=2, min_rectify=10, random_state=None,
                 n_jobs=None):
        self.model = model
        self.loss = loss
        self.n_finetune = n_finetune
        self.scaling_law = scaling_law
        self.method = method
        self.crossfit = crossfit
        self.estimand = estimand
        self.q = q
        self.alpha = alpha
        self.pilot_sizes = pilot_sizes
        self.pilot_repeats = pilot_repeats
        self.min_rectify = min_rectify
        self.random_state = random_state
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ validation
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # score is minus a variance, not R^2
        tags.regressor_tags.poor_score = True
        tags.target_tags.required = True
        if _is_lora(self.model):
            tags.input_tags.two_d_array = False
            tags.input_tags.string = True
        return tags

    def _check_params(self):
        self._validate_params()
        if self.crossfit is not None:
            if self.n_finetune != "auto":
                raise ValueError("n_finetune and crossfit exclude each other: cross-fitting "
                                 "fine-tunes and rectifies with every label; leave "
                                 "n_finetune='auto'")
            if self.estimand != "mean":
                raise ValueError("crossfit supports estimand='mean' only")

    def _make_model(self):
        """Clone of ``model`` (LoRARegressor() when None) with ``loss`` applied."""
        if self.model is None:
            from .lora import LoRARegressor

            model = LoRARegressor()
        else:
            model = clone(self.model)
        if _is_lora(model):
            model.set_params(criterion=self.loss)
        elif not (isinstance(self.loss, str) and self.loss in ("variance", "mse")):
            raise ValueError(
                f"loss={self.loss!r} needs a model that takes a criterion (LoRARegressor); "
                f"{type(model).__name__} is fitted with its own least-squares objective, for "
                "which 'variance' and 'mse' are equivalent"
            )
        return model

    def _validate_X(self, X, name="X", reset=False):
        """Texts -> 1-d object array; numbers -> 2-d float array (checked like sklearn)."""
        if reset:
            text = _looks_like_texts(X) or _is_lora(self.model)
            self._text_input = text
            if text:
                for attr in ("n_features_in_", "feature_names_in_"):
                    if hasattr(self, attr):
                        delattr(self, attr)
        text = self._text_input
        if text:
            return _check_texts(X, name)
        if X is None:
            raise ValueError(f"{name} is None; expected a 2-d numeric array")
        if _looks_like_texts(X):
            raise TypeError(f"{name} holds texts but the estimator was fitted on numeric features")
        return validate_data(self, X=X, reset=reset, dtype=[np.float64, np.float32])

    def _validate_Xy(self, X, y, reset):
        X = self._validate_X(X, reset=reset)
        y = _check_y(y, X.shape[0])
        check_consistent_length(X, y)
        return X, y

    def _validate_unlabeled(self, X_unlabeled, name="X_unlabeled"):
        if X_unlabeled is None:
            return None
        return self._validate_X(X_unlabeled, name=name)

    def _check_n_labelled(self, n, need, what):
        if n == 0:
            raise ValueError("every label in y is NaN (n_samples=0 labelled rows): at least "
                             f"{need} labelled rows are needed")
        if n < need:
            raise ValueError(f"y has {n} labelled rows (n_samples={n}); {what} needs at least "
                             f"{need}")

    # ------------------------------------------------------------------ allocation
    def _default_pilot_sizes(self, n):
        low, high = max(5.0, n / 16), n / 4
        sizes = np.unique(np.round(np.geomspace(low, max(high, low), 3)).astype(int))
        if high < 2 * low:
            raise ValueError(
                f"y has {n} labelled rows (n_samples={n}), too few for pilots at 3 distinct "
                "sizes (about n/16, n/8, n/4, at least 5); give n_finetune as an int or "
                "fraction, or a scaling_law"
            )
        return sizes

    def _allocate(self, X, y, labelled, m, model, rng):
        """Choose F and R (positions in X) per ``n_finetune``; returns F, R, allocation, law."""
        from .allocation import optimal_allocation

        n = labelled.size
        nf = self.n_finetune
        if not isinstance(nf, (str, Real)):  # a BudgetSplitter
            train, test = next(iter(nf.split(_to_model(X, self._text_input), y)))
            train, test = np.asarray(train, dtype=int), np.asarray(test, dtype=int)
            is_lab = np.isfinite(y)
            if not is_lab[test].all():
                raise ValueError("the BudgetSplitter given as n_finetune put unlabelled rows "
                                 "in its test (rectification) fold")
            finetune = np.intersect1d(train, labelled)
            rectify = np.unique(test)
            if np.intersect1d(finetune, rectify).size:
                raise ValueError("the BudgetSplitter given as n_finetune returned overlapping "
                                 "fine-tuning and rectification rows")
            self._check_split(finetune.size, rectify.size, n)
            return finetune, rectify, None, None
        if nf != "auto":
            k = int(nf) if isinstance(nf, Integral) else int(round(nf * n))
            if isinstance(nf, Integral) and k >= n:
                raise ValueError(f"n_finetune={k} must be smaller than the {n} labelled rows "
                                 "(the rest rectify)")
            self._check_split(k, n - k, n)
            order = rng.permutation(labelled)
            return np.sort(order[:k]), np.sort(order[k:]), None, None

        # "auto": a given scaling law, or budget-faithful pilots
        law, pool = self.scaling_law, np.empty(0, dtype=int)
        self.pilot_indices_ = pool
        if law is None:
            from .scaling import ScalingLaw

            if self.pilot_sizes is None:
                sizes = self._default_pilot_sizes(n)
            else:
                sizes = np.unique(np.asarray(self.pilot_sizes, dtype=int))
            holdout = max(2, int(sizes[-1]) // 2)
            n_pool = int(sizes[-1]) + holdout
            need = n_pool + self.min_rectify
            self._check_n_labelled(n, need, f"n_finetune='auto' with a pilot pool of {n_pool} "
                                            f"rows and min_rectify={self.min_rectify}")
            pool = np.sort(rng.choice(labelled, size=n_pool, replace=False))
            self.pilot_indices_ = pool
            law = ScalingLaw.from_pilots(
                model, _to_model(_rows(X, pool), self._text_input), y[pool], sizes,
                n_repeats=self.pilot_repeats, holdout=holdout, n_jobs=self.n_jobs,
                random_state=rng.randint(np.iinfo(np.int32).max),
            )
        var_f = getattr(law, "prediction_variance_", None)
        if var_f is None and m:
            var_f = float(np.var(y[labelled], ddof=1))  # Var(f) <~ Var(Y): conservative
        allocation = optimal_allocation(
            n, law, n_unlabeled=m or None, var_f=var_f if m else None,
            min_rectify=self.min_rectify, n_pilot=pool.size, alpha=self.alpha,
        )
        rest = rng.permutation(np.setdiff1d(labelled, pool))
        extra = allocation.n_finetune - pool.size
        finetune = np.sort(np.concatenate([pool, rest[:extra]]))
        rectify = np.sort(rest[extra:])
        return finetune, rectify, allocation, law

    def _check_split(self, k, n_r, n):
        if k < 1:
            raise ValueError(f"n_finetune={self.n_finetune!r} gives {k} fine-tuning rows out of "
                             f"{n} labelled rows (n_samples={n}); at least 1 is needed")
        if n_r < self.min_rectify:
            raise ValueError(
                f"n_finetune={self.n_finetune!r} leaves {n_r} of the {n} labelled rows "
                f"(n_samples={n}) to rectify, fewer than min_rectify={self.min_rectify}"
            )

    # ------------------------------------------------------------------ stages
    def _rectified(self, y_r, f_r, f_u):
        """RectifiedEstimate of the estimand from rectification data and unlabelled preds.

        ``method="classical"`` uses every label of the fit (fine-tuning ones included):
        the labels-only baseline needs no held-out rows.
        """
        from .rectify import rectified_mean, rectified_quantile

        if self.method == "classical":
            return self._classical_all(np.concatenate([self._y_ft, y_r]), f_u)
        if self.estimand == "quantile":
            return rectified_quantile(y_r, f_r, f_u, self.q, method=self.method, alpha=self.alpha)
        return rectified_mean(y_r, f_r, f_u, method=self.method, alpha=self.alpha)

    def _classical_all(self, y_all, f_u=None):
        """Classical estimate from the labels ``y_all`` (``Var(Y)/n`` for the mean)."""
        from .rectify import rectified_mean, rectified_quantile

        unl = y_all if f_u is None else f_u  # only counted by the classical method
        if self.estimand == "quantile":
            est = rectified_quantile(y_all, y_all, unl, self.q, method="classical",
                                     alpha=self.alpha)
        else:
            est = rectified_mean(y_all, y_all, unl, method="classical", alpha=self.alpha)
        return est if f_u is not None else replace(est, n_unlabeled=0)

    def _store_rectification(self, y_r, f_r, f_u, estimate, y_ft):
        self._y_rect, self._f_rect = y_r, f_r
        self._f_unl = np.empty(0) if f_u is None else f_u
        self._y_ft = y_ft
        lam = estimate.lam if (self.method == "ppi++" and estimate.method != "classical") else 1.0
        self.prediction_scale_ = float(lam)
        self.offset_ = float(np.mean(y_r - lam * f_r))
        self.n_rectify_ = int(y_r.shape[0])
        self.n_unlabeled_ = int(self._f_unl.shape[0])

    def _finish(self, estimate, allocation):
        if allocation is None and not self.crossfit:
            allocation = self._fixed_allocation(estimate)
        self.allocation_ = allocation
        self.estimate_ = replace(estimate, allocation=allocation)

    def _fixed_allocation(self, estimate):
        """An Allocation record of a fixed split, with the variance the rectification estimated."""
        from .allocation import Allocation

        variance = float(np.asarray(estimate.stderr) ** 2)
        halfwidth = float((estimate.ci[1] - estimate.ci[0]) / 2)
        return Allocation(
            n=self.n_finetune_ + self.n_rectify_, n_finetune=self.n_finetune_,
            n_rectify=self.n_rectify_, variance=variance, halfwidth=halfwidth,
            alpha=float(self.alpha), n_unlabeled=self.n_unlabeled_ or None,
            var_f=float(np.var(self._f_unl)) if self.n_unlabeled_ > 1 else 0.0,
            n_pilot=0, law={}, sizes=np.array([self.n_finetune_]), curve=np.array([variance]),
        )

    def _rectify_rows(self, X_r, y_r, X_u, y_ft):
        """Rectify the fitted ``model_`` on (X_r, y_r) with unlabelled rows X_u."""
        text = self._text_input
        f_r = _predict_one(self.model_, X_r, text)
        f_u = None if X_u is None else _predict_one(self.model_, X_u, text)
        if f_u is None or f_u.shape[0] < 2:
            warnings.warn(
                "fewer than 2 unlabelled rows (NaN y or X_unlabeled): estimate_ is the "
                "classical mean of all labels, Var(Y)/n; the model is fitted for predict, "
                "score and estimate",
                NoUnlabeledWarning, stacklevel=3,
            )
            f_u = None
            estimate = self._classical_all(np.concatenate([y_ft, y_r]))
        else:
            estimate = self._rectified(y_r, f_r, f_u)
        self._store_rectification(y_r, f_r, f_u, estimate, y_ft)
        return estimate

    def _reset_fitted(self):
        for attr in ("estimate_", "allocation_", "offset_", "prediction_scale_", "n_rectify_",
                     "n_unlabeled_", "rectify_indices_", "finetune_indices_", "folds_",
                     "scaling_law_", "pilot_indices_"):
            if hasattr(self, attr):
                delattr(self, attr)

    def fine_tune(self, X, y):
        """Stage 1: fit a clone of ``model`` (with ``loss``) on every labelled row given.

        Rows with NaN ``y`` are ignored. Invalidates a previous rectification: call
        :meth:`rectify` next, on labelled rows *not* given here (their disjointness is
        the caller's responsibility when the stages are called by hand).

        Parameters
        ----------
        X : texts or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        self._check_params()
        if self.crossfit is not None:
            raise ValueError("with crossfit the stages are fold-by-fold; use fit")
        X, y = self._validate_Xy(X, y, reset=True)
        labelled = np.flatnonzero(np.isfinite(y))
        self._check_n_labelled(labelled.size, 2, "fine_tune")
        self._reset_fitted()
        self.model_ = _fit_one(self._make_model(), _rows(X, labelled), y[labelled],
                               self._text_input)
        self.n_finetune_ = int(labelled.size)
        self._y_ft = y[labelled]
        return self

    def rectify(self, X, y, X_unlabeled=None):
        """Stage 2: rectify the fine-tuned model on the labelled rows of (X, y).

        Labelled rows are the rectification set; rows with NaN ``y`` and
        ``X_unlabeled`` the unlabelled sample. Sets ``estimate_``, ``allocation_``,
        ``offset_`` and the statistics :meth:`estimate` and :meth:`score` reuse.

        Parameters
        ----------
        X : texts or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        X_unlabeled : texts or array-like, default=None

        Returns
        -------
        self
        """
        check_is_fitted(self, "model_", msg="call fine_tune (or fit) before rectify")
        self._check_params()
        if self.crossfit is not None:
            raise ValueError("with crossfit the stages are fold-by-fold; use fit")
        X, y = self._validate_Xy(X, y, reset=False)
        X_extra = self._validate_unlabeled(X_unlabeled)
        labelled = np.isfinite(y)
        self._check_n_labelled(int(labelled.sum()), self.min_rectify,
                               f"rectification (min_rectify={self.min_rectify})")
        X_u = _concat([X[~labelled], X_extra])
        estimate = self._rectify_rows(X[labelled], y[labelled], X_u, self._y_ft)
        self.rectify_indices_ = np.flatnonzero(labelled)
        self.scaling_law_ = getattr(self, "scaling_law_", None)
        self._finish(estimate, None)
        return self

    def fit(self, X, y, X_unlabeled=None):
        """Allocate the labels, fine-tune on ``F``, rectify on ``R``.

        Parameters
        ----------
        X : texts (list, array, Series, 1-column DataFrame) or array-like of shape
            (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Labels; NaN marks an unlabelled row.
        X_unlabeled : same kind as X, default=None
            More unlabelled rows.

        Returns
        -------
        self
        """
        self._check_params()
        X, y = self._validate_Xy(X, y, reset=True)
        X_extra = self._validate_unlabeled(X_unlabeled)
        self._reset_fitted()
        labelled = np.flatnonzero(np.isfinite(y))
        self._check_n_labelled(labelled.size, self.min_rectify + 1,
                               f"fine-tuning and rectification (min_rectify={self.min_rectify})")
        X_u = _concat([X[~np.isfinite(y)], X_extra])
        m = 0 if X_u is None else X_u.shape[0]
        rng = check_random_state(self.random_state)
        model = self._make_model()
        if self.crossfit is not None:
            return self._fit_crossfit(model, X, y, labelled, X_u, rng)

        finetune, rectify, allocation, law = self._allocate(X, y, labelled, m, model, rng)
        text = self._text_input
        self.model_ = _fit_one(model, _rows(X, finetune), y[finetune], text)
        self.n_finetune_ = int(finetune.size)
        self._y_ft = y[finetune]
        estimate = self._rectify_rows(_rows(X, rectify), y[rectify], X_u, y[finetune])
        self.finetune_indices_, self.rectify_indices_ = finetune, rectify
        self.scaling_law_ = law
        self._finish(estimate, allocation)
        return self

    def _fit_crossfit(self, model, X, y, labelled, X_u, rng):
        """Cross-PPI: K fold models, each labelled row rectifies the model that missed it."""
        from .rectify import crossfit_mean

        text = self._text_input
        k = self.crossfit
        if labelled.size < 2 * k:
            raise ValueError(f"y has {labelled.size} labelled rows (n_samples={labelled.size}); "
                             f"crossfit={k} needs at least {2 * k}")
        folds = np.empty(labelled.size, dtype=int)
        splitter = KFold(k, shuffle=True, random_state=rng.randint(np.iinfo(np.int32).max))
        splits = list(splitter.split(labelled))
        for fold, (_, val) in enumerate(splits):
            folds[val] = fold
        results = Parallel(n_jobs=self.n_jobs)(
            delayed(_fold_stats)(model, _rows(X, labelled[tr]), y[labelled[tr]],
                                 _rows(X, labelled[val]), X_u, text)
            for tr, val in splits
        )
        self.model_ = [r[0] for r in results]
        f_oof = np.empty(labelled.size)
        for (_, val), r in zip(splits, results):
            f_oof[val] = r[1]
        y_l = y[labelled]
        self.n_finetune_ = int(labelled.size)
        self._y_ft = np.empty(0)
        if X_u is None or X_u.shape[0] < 2:
            warnings.warn("fewer than 2 unlabelled rows (NaN y or X_unlabeled): estimate_ is the "
                          "classical mean of all labels, Var(Y)/n", NoUnlabeledWarning,
                          stacklevel=3)
            estimate, f_u = self._classical_all(y_l), None
        else:
            f_by_fold = np.vstack([r[2] for r in results])
            estimate = crossfit_mean(y_l, f_oof, folds, f_by_fold, method=self.method,
                                     alpha=self.alpha)
            f_u = (np.bincount(folds, minlength=k) / labelled.size) @ f_by_fold
        self._store_rectification(y_l, f_oof, f_u, estimate, np.empty(0))
        self.folds_ = folds
        self.finetune_indices_ = np.empty(0, dtype=int)
        self.rectify_indices_ = labelled
        self.scaling_law_ = None
        self._finish(estimate, None)
        return self

    # ------------------------------------------------------------------ using the fit
    def _models(self):
        return self.model_ if isinstance(self.model_, list) else [self.model_]

    def _raw_predict(self, X):
        """``f(X)``: the model's predictions (the fold-size-weighted average with crossfit)."""
        preds = np.vstack([_predict_one(m, X, self._text_input) for m in self._models()])
        if len(preds) == 1:
            return preds[0]
        weights = np.bincount(self.folds_, minlength=len(preds)) / self.folds_.size
        return weights @ preds

    def predict(self, X):
        """Predictions on the label scale: ``prediction_scale_ * f(X) + offset_``.

        ``offset_ = mean_R(Y - lam f)``: the rectification supplies the level a
        variance-trained model lacks (``lam = 1``; the tuned PPI++ weight with
        ``method="ppi++"``). With ``crossfit`` ``f`` averages the fold models.

        Parameters
        ----------
        X : texts or array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self, ["model_", "offset_"])
        X = self._validate_X(X)
        return self.prediction_scale_ * self._raw_predict(X) + self.offset_

    def estimate(self, X_unlabeled):
        """A new estimate for another unlabelled sample, without refitting.

        Reuses the stored rectification labels and predictions (``R``); only the
        model's predictions on ``X_unlabeled`` are computed (with ``crossfit``, each
        fold model's, combined by :func:`skftr.crossfit_mean`).

        Parameters
        ----------
        X_unlabeled : texts or array-like of shape (m, n_features), m >= 2

        Returns
        -------
        RectifiedEstimate
            With ``allocation`` attached.
        """
        check_is_fitted(self, "estimate_")
        X_u = self._validate_X(X_unlabeled, name="X_unlabeled")
        if X_u.shape[0] < 2:
            raise ValueError(f"X_unlabeled needs at least 2 rows, got {X_u.shape[0]}")
        if isinstance(self.model_, list):
            from .rectify import crossfit_mean

            f_by_fold = np.vstack([_predict_one(m, X_u, self._text_input) for m in self.model_])
            estimate = crossfit_mean(self._y_rect, self._f_rect, self.folds_, f_by_fold,
                                     method=self.method, alpha=self.alpha)
        else:
            estimate = self._rectified(self._y_rect, self._f_rect,
                                       _predict_one(self.model_, X_u, self._text_input))
        return replace(estimate, allocation=self.allocation_)

    def score(self, X, y):
        """Minus the estimated variance of the rectified estimate, rectified with (X, y) too.

        The labelled rows ``H`` of ``(X, y)`` join the fit's own rectification rows
        ``R`` (neither ever fine-tuned the model), and the score is minus the variance
        of the estimate that rectifies with ``R + H`` and the fit's ``m`` unlabelled
        predictions. For the mean (``"ppi"``)::

            score = -( Var_{R+H}(Y - f) / (n_r + n_h) + Var_U(f) / m )

        computed by :func:`skftr.rectified_mean` (``"ppi++"``: with its tuned weight;
        ``estimand="quantile"``: :func:`skftr.rectified_quantile`); ``"classical"``:
        ``-Var(Y) / n`` over every label. Without unlabelled rows at fit the
        ``Var(f)/m`` term is dropped (``m`` infinite; for a quantile the predictions of
        the scored rows stand in for the unlabelled sample). With ``crossfit`` the residuals
        of ``R`` are the out-of-fold ones, ``H`` is predicted by the fold average, and the
        residual variance is pooled within folds (``H`` one more), as in
        :func:`skftr.crossfit_mean`.

        In a ``GridSearchCV`` with ``cv=BudgetSplitter(n_finetune=s0)`` each candidate is
        fitted on the train fold (the unlabelled rows and ``s0`` labelled rows, of which
        it fine-tunes ``n_finetune``) and scored on the test fold: ``R + H`` is then
        every budget label the candidate did not fine-tune on, so an int
        ``n_finetune=s`` is scored by exactly the variance ``sigma^2(s) / (n - s) +
        Var(f)/m`` its refit on the whole budget ``n`` targets. Higher is better.

        Parameters
        ----------
        X : texts or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            NaN rows are ignored; at least one row must be labelled.

        Returns
        -------
        float
        """
        check_is_fitted(self, "estimate_")
        X, y = self._validate_Xy(X, y, reset=False)
        labelled = np.isfinite(y)
        if not labelled.any():
            raise ValueError("score needs labelled rows in y; every label is NaN")
        y_h = y[labelled]
        f_h = self._raw_predict(X[labelled])
        y_all = np.concatenate([self._y_rect, y_h])
        f_all = np.concatenate([self._f_rect, f_h])
        if isinstance(self.model_, list) and self.method != "classical":
            return -self._crossfit_variance(y_all, f_all, y_h.size)
        return -self._variance(y_all, f_all)

    def _crossfit_variance(self, y_r, f_r, n_scored):
        """Estimated variance of the cross-fit estimate rectified with (y_r, f_r).

        The last ``n_scored`` rows (predicted by the fold average) form one more group
        beside the folds; :func:`skftr.crossfit_mean` pools the residual variance within
        groups, so a constant shift of a fold model, which leaves the estimate unchanged,
        leaves the score unchanged too. Without unlabelled rows a constant stand-in
        (``Var(f) = 0``) drops the ``Var(f)/m`` term, as an infinite ``m`` does.
        """
        from .rectify import crossfit_mean

        groups = np.concatenate([self.folds_, np.full(n_scored, len(self.model_))])
        f_u = self._f_unl if self._f_unl.size >= 2 else np.zeros(2)
        estimate = crossfit_mean(y_r, f_r, groups, np.tile(f_u, (len(self.model_) + 1, 1)),
                                 method=self.method, alpha=self.alpha)
        return float(estimate.stderr ** 2)

    def _variance(self, y_r, f_r):
        """Estimated variance of the estimate rectified with (y_r, f_r)."""
        if self.method == "classical":
            y_all = np.concatenate([self._y_ft, y_r])
            return float(np.var(y_all) / y_all.size)
        if self._f_unl.size >= 2:
            return float(np.asarray(self._rectified(y_r, f_r, self._f_unl).stderr) ** 2)
        if self.estimand == "quantile":  # stand-in unlabelled sample: the scored rows' f
            return float(np.asarray(self._rectified(y_r, f_r, f_r).stderr) ** 2)
        lam = 1.0
        if self.method == "ppi++":
            from .rectify._stats import clipped_lambda

            cov = np.mean((y_r - y_r.mean()) * (f_r - f_r.mean()))
            lam = clipped_lambda(cov, np.var(f_r))  # PPI++ weight with m infinite
        return float(np.var(y_r - lam * f_r) / y_r.size)

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write the fitted estimator to directory ``path`` without pickle.

        A JSON manifest (parameters, format and package version, rectification
        statistics, allocation, estimate, sha256 of every weight file) and safetensors
        weights: LoRA adapters, or ``coef_``/``intercept_`` of a scikit-learn linear
        model. Other models raise ``TypeError`` (use ``joblib.dump``).

        Parameters
        ----------
        path : str or Path
            Directory (created; existing files of the same names are overwritten).

        Returns
        -------
        path : Path
        """
        from ._persistence import save_estimator

        check_is_fitted(self, "estimate_")
        return save_estimator(self, path)

    @classmethod
    def load(cls, path):
        """Load an estimator written by :meth:`save`, checking hashes and format version.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        FineTuneRectifyEstimator
            Fitted: ``predict``, ``estimate`` and ``score`` work; ``estimate_`` is the
            saved one.
        """
        from ._persistence import load_estimator

        return load_estimator(path, cls)
