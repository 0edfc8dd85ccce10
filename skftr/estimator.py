"""FineTuneRectifyEstimator: fine-tuning then rectification in one scikit-learn estimator.

The face only: it holds the parameters, validates the data once, and hands it down to
the stages (:mod:`skftr._stages`: folds or the paper's split, the fitted
:class:`~skftr.predictors.FoldEnsemble`) and to the rectification (:mod:`skftr.rectify`).
The method is in docs/method.md (Wang, Ye & Zhao 2025).
"""
import os
import sys
import time
import warnings
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _stages
from ._inputs import looks_like_texts, row_keys, validate
from .exceptions import NoUnlabeledWarning

__all__ = ["FineTuneRectifyEstimator", "NoUnlabeledWarning"]

_LOSSES = ("variance", "mse", "correlation")


class FineTuneRectifyEstimator(RegressorMixin, BaseEstimator):
    """Estimate a mean or quantile of human labels from texts and a few labels.

    Rows of ``X`` whose ``y`` is NaN are unlabeled. By default (``crossfit=5``) the
    labeled rows are cut into K folds; the fine-tuned model and the cheap predictors are
    fitted K times, each time without one fold, and every labeled row rectifies the
    predictors that did not see it (cross-PPI with a vector of power-tuning weights,
    docs/method.md §2). ``crossfit=None`` is the paper's single split (Wang, Ye & Zhao
    §4; docs/method.md §5): ``n_finetune`` rows fine-tune, the rest rectify.

    Parameters
    ----------
    model : regressor, "drop" or None, default=None
        The model to fine-tune: None is ``TopLayersRegressor("mpnet")`` (LoRA on the top
        layer of all-mpnet-base-v2, reading the frozen trunk it shares with the mpnet
        ridge; docs/method.md §3.4); any scikit-learn regressor (``LoRARegressor`` for
        every layer); ``"drop"`` uses only ``predictors``.
    predictors : "auto", list of regressors or None, default="auto"
        More predictors fitted on the same folds and rectified together with the model:
        ``"auto"`` is ridges on frozen MiniLM and all-mpnet-base-v2 sentence embeddings,
        on TF-IDF word n-grams and on the texts' length
        (:func:`~skftr.predictors.default_predictors`) for texts, none for numbers.
    loss : {"variance", "mse", "correlation"}, default="variance"
        Fine-tuning objective of a ``LoRARegressor`` model (docs/method.md §3). For other
        least-squares regressors "variance" and "mse" give the same fit.
    crossfit : int >= 2 or None, default=5
        Number of folds; None for the single split.
    n_finetune : "auto", int, float in (0, 1) or BudgetSplitter, default="auto"
        Single split only: a count, a share, a splitter's first split, or ``"auto"``
        (``scaling_law``, or one fitted on budget-faithful pilots, then the optimal
        allocation, §4-§5).
    scaling_law : fitted ScalingLaw, default=None
        For ``n_finetune="auto"``: skips the pilots.
    method : {"ppi++", "ppi", "classical"}, default="ppi++"
        Power-tuned, plain (one predictor) or labels-only rectification.
    estimand : {"mean", "quantile"}, default="mean"
    q : float in (0, 1), default=0.5
        Quantile level for ``estimand="quantile"``.
    alpha : float in (0, 1), default=0.05
        Intervals have coverage ``1 - alpha``.
    text_column, score_columns : str and list of str, default=None
        With a DataFrame ``X``: the column of texts, and numeric columns of scores the
        user already has (another model's or an LLM's answers), used as ready predictors.
    pilot_sizes, pilot_repeats, min_rectify : default=None, 2, 10
        Pilots for ``n_finetune="auto"``; the smallest rectification set.
    random_state : int, RandomState or None, default=None
        Draws folds, splits and pilots, and seeds every model fitted (unless it has
        its own seed).
    n_jobs : int, default=None
        Folds and pilots fitted in parallel (joblib; a Dask backend scales out).
    n_threads : int, default=None
        Torch threads of every model that takes ``n_threads`` (None: the models' own
        default, which never oversubscribes the cores; see ``skftr._hf.default_threads``).
    inference : {None, "merged", "int8"}, default=None
        How fitted torch models predict (:func:`skftr.inference.optimize`), applied
        right after each fit, so the rectification rows and the unlabeled rows see the
        same predictor and validity holds: None, as trained; "merged", LoRA merged into
        the weights (same numbers, 1.15x faster); "int8", also dynamic int8 quantisation
        (1.7x, residual variance +2-4%; ``benchmarks/RESULTS.md``).
    memory : str, joblib.Memory or None, default=None
        A directory (or ``joblib.Memory``) where the frozen trunks' passes over ``X`` are
        kept (:func:`skftr.trunk.cached_outputs`, keyed by backbone, settings and the
        texts), so refits, draws and grid searches on the same texts never run a trunk
        twice. None: each fit makes its pass and streams the unlabeled rows.
    verbose : int, default=0
        A progress bar over the fit when positive.

    Attributes
    ----------
    estimate_ : RectifiedEstimate
        Value, standard error, interval, the classical interval of the same labels and
        the effective number of labels (``n_effective``).
    model_ : FoldEnsemble
        The fitted predictors of every fold (one fold for the single split).
    lam_, offset_ : ndarray (p,), float
        ``predict(X) = f(X) @ lam_ + offset_``: the power-tuned combination.
    predictor_names_ : list of str
    labeled_indices_, labeled_predictions_ : ndarray
        Positions of the rectification rows in ``X`` and their out-of-fold predictions
        on the label scale, each fold at its own level (for calibration plots).
    folds_ : ndarray of int
        Fold of each rectification row (zeros for the single split).
    design_weights_ : ndarray or None
        ``1 / pi`` of the rectification rows when ``fit`` was given
        ``inclusion_probability`` (an active design, docs/method.md §7); None otherwise.
    n_folds_, n_finetune_, n_rectify_, n_unlabeled_ : int
    finetune_indices_, pilot_indices_ : ndarray of int
        Single split only: the fine-tuning rows and the pilot pool.
    allocation_, scaling_law_ : Allocation, ScalingLaw or None
    assignment_key_ : str
        Keys the hash that sends each new unlabeled row to one fold
        (:func:`skftr.cache.assign_folds`) in ``estimate``, ``score``, the prediction
        cache and :mod:`skftr.distributed`, so they all agree.
    """

    _parameter_constraints = {
        "model": [HasMethods(["fit", "predict"]), StrOptions({"drop"}), None],
        "predictors": [StrOptions({"auto"}), list, tuple, None],
        "loss": [StrOptions(set(_LOSSES)), HasMethods(["forward"])],
        "crossfit": [Interval(Integral, 2, None, closed="left"), None],
        "n_finetune": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left"),
                       Interval(Real, 0, 1, closed="neither"), HasMethods(["split"])],
        "scaling_law": [HasMethods(["predict"]), None],
        "method": [StrOptions({"ppi", "ppi++", "classical"})],
        "estimand": [StrOptions({"mean", "quantile"})],
        "q": [Interval(Real, 0, 1, closed="neither")],
        "alpha": [Interval(Real, 0, 1, closed="neither")],
        "text_column": [str, None],
        "score_columns": [list, tuple, None],
        "pilot_sizes": ["array-like", None],
        "pilot_repeats": [Interval(Integral, 1, None, closed="left")],
        "min_rectify": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "inference": [StrOptions({"merged", "int8"}), None],
        "memory": [None, str, os.PathLike, HasMethods(["cache"])],
        "verbose": ["verbose"],
    }

    def __init__(self, model=None, *, predictors="auto", loss="variance", crossfit=5,
                 n_finetune="auto", scaling_law=None, method="ppi++", estimand="mean", q=0.5,
                 alpha=0.05, text_column=None, score_columns=None, pilot_sizes=None,
                 pilot_repeats=2, min_rectify=10, random_state=None, n_jobs=None, n_threads=None,
                 inference=None, memory=None, verbose=0):
        self.model = model
        self.predictors = predictors
        self.loss = loss
        self.crossfit = crossfit
        self.n_finetune = n_finetune
        self.scaling_law = scaling_law
        self.method = method
        self.estimand = estimand
        self.q = q
        self.alpha = alpha
        self.text_column = text_column
        self.score_columns = score_columns
        self.pilot_sizes = pilot_sizes
        self.pilot_repeats = pilot_repeats
        self.min_rectify = min_rectify
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.n_threads = n_threads
        self.inference = inference
        self.memory = memory
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True  # score is minus a variance, not R^2
        tags.target_tags.required = True
        if self._takes_texts():
            tags.input_tags.two_d_array = False
            tags.input_tags.string = True
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, X_unlabeled=None, *, inclusion_probability=None):
        """Fit the predictors (per fold, or on the fine-tuning rows) and rectify.

        Parameters
        ----------
        X : texts (list, array, Series, one-column DataFrame), a DataFrame with
            ``text_column`` / ``score_columns``, or numbers of shape (n, d)
        y : array-like of shape (n,)
            Labels; NaN marks an unlabeled row.
        X_unlabeled : same kind as X, default=None
            More unlabeled rows.
        inclusion_probability : array-like of shape (n_rows,), default=None
            Under an unequal-probability design (an active second batch,
            :class:`skftr.sampling.ActiveSampler`), the probability each row (of ``X``,
            then ``X_unlabeled``) had of being labeled, in (0, 1] (below 1 for unlabeled
            rows). The labeled rows then rectify with weights ``1 / pi`` and the
            unlabeled ones with ``1 / (1 - pi)`` (docs/method.md §7); the predictors are
            cross-fitted as without it. None: every row equally likely (a simple random
            sample).

        Returns
        -------
        self
        """
        self._check_params()
        start = time.perf_counter()
        X, scores, y = self._validate(X, y, X_unlabeled, reset=True)
        pi = _check_inclusion(inclusion_probability, y)
        labeled, unlabeled = np.flatnonzero(np.isfinite(y)), np.flatnonzero(np.isnan(y))
        need = 2 * self.crossfit if self.crossfit else self.min_rectify + 1
        if labeled.size < need:
            why = (f"crossfit={self.crossfit}" if self.crossfit
                   else f"min_rectify={self.min_rectify}")
            raise ValueError(f"y has {labeled.size} labeled rows (n_samples={labeled.size}); "
                             f"at least {need} are needed ({why})")
        rng = check_random_state(self.random_state)
        predictors = _stages.make_predictors(self, rng)
        if self.crossfit:
            split = _stages.crossfit_split(labeled, unlabeled, self.crossfit, rng)
        else:
            split = _stages.single_split(self, X, y, labeled, unlabeled, predictors[0], rng)
        split_seconds = time.perf_counter() - start
        self.model_, f_r, f_u, seconds = _stages.fit_folds(
            predictors, X, y, scores, split, text_input=X.dtype == object,
            score_names=list(self.score_columns or ()), inference=self.inference, n_jobs=self.n_jobs,
            memory=self.memory, verbose=self.verbose)
        rectify_start = time.perf_counter()
        self.assignment_key_ = f"{rng.randint(np.iinfo(np.int32).max):08x}"
        self._unlabeled_rows, self._n_rows = split.unlabeled, X.shape[0]
        self._seen = row_keys(X[np.unique(np.concatenate(split.train))])
        other = np.setdiff1d(labeled, split.rectify)
        self._w_rect, self._w_unl, w_other = (None, None, None) if pi is None else \
            (1 / pi[split.rectify], 1 / (1 - pi[split.unlabeled]), 1 / pi[other])
        self._store(y[split.rectify], f_r, split.folds, f_u, split.folds_unlabeled,
                    y[other], w_other)
        self.labeled_indices_ = split.rectify
        self.finetune_indices_ = np.empty(0, int) if self.crossfit else split.train[0]
        self.pilot_indices_ = split.pilot_indices if split.pilot_indices is not None \
            else np.empty(0, int)
        self.scaling_law_, allocation = split.scaling_law, split.allocation
        self.n_folds_ = len(split.train)
        self.n_finetune_ = int(labeled.size if self.crossfit else split.train[0].size)
        self.allocation_ = allocation
        seconds = {"split": split_seconds, **seconds,
                   "rectify": time.perf_counter() - rectify_start}
        self.estimate_ = replace(self.estimate_, allocation=allocation,
                                 fit_info=_stages.fit_info(self.model_, seconds))
        self.fit_time_ = time.perf_counter() - start
        return self

    def _store(self, y_r, f_r, folds, f_u, folds_u, y_other, w_other=None):
        """Rectify and keep what predict, estimate, estimate_by and score reuse."""
        w_r, w_u = self._w_rect, self._w_unl
        self._y_rect, self._f_rect, self._folds = y_r, f_r, folds
        self._f_unl, self._folds_unl, self._y_other = f_u, folds_u, y_other
        if f_u.shape[0] < 2:
            warnings.warn("fewer than 2 unlabeled rows (NaN y or X_unlabeled): estimate_ is the "
                          "classical estimate from all labels", NoUnlabeledWarning, stacklevel=3)
            y_all = np.concatenate([y_other, y_r])
            w_all = None if w_r is None else np.concatenate([w_other, w_r])
            estimate = replace(self._rectify(y_all, y_all[:, None], y_all[:, None], None, None,
                                             method="classical", weights=w_all), n_unlabeled=0)
            lam = np.zeros(f_r.shape[1])
        else:
            estimate = self._rectify(y_r, f_r, f_u, folds, folds_u, weights=w_r, weights_u=w_u)
            lam = np.atleast_1d(np.asarray(estimate.lam, dtype=float)) * np.ones(f_r.shape[1])
        self.estimate_ = estimate
        self.lam_ = lam
        self.offset_ = float(np.mean(y_r - f_r @ lam))
        r = y_r - f_r @ lam  # each fold model at its own level (free for a variance loss)
        levels = np.bincount(folds, weights=r) / np.maximum(np.bincount(folds), 1)
        self.labeled_predictions_ = f_r @ lam + levels[folds]
        self.folds_ = folds
        self.predictor_names_ = list(self.model_.names)
        self.n_rectify_, self.n_unlabeled_ = int(y_r.size), int(estimate.n_unlabeled)

    def _rectify(self, y, f, f_u, folds, folds_u, method=None, weights=None, weights_u=None):
        """The rectified estimate (docs/method.md §2) of the estimand; ``weights`` and
        ``weights_u``: design weights of the labeled and unlabeled rows (§7)."""
        from .rectify import rectified_mean, rectified_quantile

        method = method or self.method
        crossfit = {} if not self.crossfit or folds is None else {"folds": folds,
                                                                  "folds_unlabeled": folds_u}
        crossfit.update(weights=weights, weights_unlabeled=weights_u)
        if self.estimand == "quantile":
            return rectified_quantile(y, f, f_u, self.q, method=method, alpha=self.alpha,
                                      **crossfit)
        return rectified_mean(y, f, f_u, method=method, alpha=self.alpha, **crossfit)

    # ------------------------------------------------------------------ using the fit
    def predict(self, X):
        """The power-tuned prediction ``f(X) @ lam_ + offset_`` on the label scale.

        ``f`` averages the fold models (weights ``n_k / n``); the rectification supplies
        the level a variance-trained model lacks.
        """
        check_is_fitted(self, "estimate_")
        X, scores, _ = self._validate(X)
        return self.model_.predict(X, scores) @ self.lam_ + self.offset_

    def estimate(self, X_unlabeled):
        """A new estimate for another unlabeled sample, without refitting.

        The stored rectification rows are reused; each new row is predicted by one fold's
        predictors (assigned in proportion to the fold sizes).
        """
        check_is_fitted(self, "estimate_")
        X, scores, _ = self._validate(X_unlabeled, name="X_unlabeled")
        if X.shape[0] < 2:
            raise ValueError(f"X_unlabeled needs at least 2 rows, got {X.shape[0]}")
        folds_u, f_u = _stages.predict_by_fold(self, X, scores)
        estimate = self._rectify(self._y_rect, self._f_rect, f_u, self._folds, folds_u,
                                 weights=self.design_weights_)
        return replace(estimate, allocation=self.allocation_)

    def estimate_by(self, groups):
        """One rectified estimate per group of rows (``groups``: one label per row of the
        ``X`` given to ``fit``, then ``X_unlabeled``); a dict group -> RectifiedEstimate,
        see :func:`skftr._stages.estimate_by`."""
        check_is_fitted(self, "estimate_")
        return _stages.estimate_by(self, groups)

    def score(self, X, y):
        """Minus the estimated variance of the estimate with the labeled rows of (X, y)
        joining the rectification rows (higher is better).

        Only rows that no fitted predictor saw are scored (their residuals are honest);
        rows used for fitting are left out with a warning, and when none is left the
        score is minus the fit's own (out-of-fold) variance, ``-estimate_.stderr**2``.
        """
        check_is_fitted(self, "estimate_")
        X, scores, y = self._validate(X, y)
        rows = np.flatnonzero(np.isfinite(y))
        if rows.size == 0:
            raise ValueError("score needs labeled rows in y; every label is NaN")
        seen = np.isin(row_keys(X[rows]), self._seen)
        if seen.any():
            warnings.warn(f"score: {int(seen.sum())} of the {rows.size} scored rows were used to "
                          "fit the predictors and are left out", UserWarning, stacklevel=2)
            rows = rows[~seen]
        if rows.size == 0:
            return -float(np.max(np.asarray(self.estimate_.stderr)) ** 2)
        if self.method == "classical" and self.design_weights_ is None:
            y_all = np.concatenate([self._y_other, self._y_rect, y[rows]])
            return -float(np.var(y_all) / y_all.size)
        s_h = None if scores is None else scores[rows]
        folds_h, f_h = _stages.predict_by_fold(self, X[rows], s_h)
        y_r, f_r = np.concatenate([self._y_rect, y[rows]]), np.vstack([self._f_rect, f_h])
        folds = np.concatenate([self._folds, folds_h])
        f_u, folds_u, w_u = self._f_unl, self._folds_unl, getattr(self, "_w_unl", None)
        w_r = self.design_weights_
        if w_r is not None:  # the scored rows: a simple random sample, the average weight
            w_r = np.concatenate([w_r, np.full(rows.size, w_r.mean())])
        if f_u.shape[0] < 2:  # no unlabeled rows at fit: the scored rows stand in
            f_u, folds_u, w_u = f_r, folds, w_r
        est = self._rectify(y_r, f_r, f_u, folds, folds_u, weights=w_r, weights_u=w_u)
        return -float(np.max(np.asarray(est.stderr)) ** 2)

    @property
    def design_weights_(self):
        """Design weights ``1 / pi`` of the rectification rows (None: equal; see ``fit``)."""
        check_is_fitted(self, "estimate_")
        return getattr(self, "_w_rect", None)

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write the fitted estimator to directory ``path`` (skops + safetensors, no pickle)."""
        from .persistence import save

        check_is_fitted(self, "estimate_")
        return save(self, path)

    @classmethod
    def load(cls, path, trusted=None):
        """Load an estimator written by :meth:`save`, refusing altered or untrusted files."""
        from .persistence import load

        return load(path, trusted=trusted)

    def _check_params(self):
        self._validate_params()
        if self.crossfit and self.n_finetune != "auto":
            raise ValueError("n_finetune sets the paper's single split; set crossfit=None to "
                             f"use n_finetune={self.n_finetune!r}")
        if self.model == "drop" and not self.predictors and not self.score_columns:
            raise ValueError("model='drop' with no predictors and no score_columns leaves "
                             "nothing to predict with")
        if self.score_columns and self.text_column is None:
            raise ValueError("score_columns needs text_column: the DataFrame column of texts")

    def _takes_texts(self):
        lora = sys.modules.get("skftr.lora")  # not imported: no LoRARegressor exists yet
        model = self.model
        return (model is None or self.text_column is not None
                or (lora is not None and isinstance(model, lora.LoRARegressor)))

    def _validate(self, X, y=None, X_unlabeled=None, reset=False, name="X"):
        """Validate once (:func:`skftr._inputs.validate`): texts or numbers, scores, labels."""
        if reset:
            self._text_input = self._takes_texts() or looks_like_texts(X)
        return validate(self, X, y, X_unlabeled, reset, name)


def _check_inclusion(pi, y):
    """The validated ``inclusion_probability`` of ``fit`` (None passes through)."""
    if pi is None:
        return None
    from .rectify._validation import as_numeric

    pi = np.asarray(as_numeric(pi, "inclusion_probability"), dtype=float)
    if pi.ndim != 1 or pi.shape[0] != y.shape[0]:
        raise ValueError(f"inclusion_probability must have one value per row ({y.shape[0]}, "
                         f"X then X_unlabeled), got shape {pi.shape}")
    bad = np.flatnonzero(~((pi > 0) & (pi <= 1)))
    if bad.size:
        raise ValueError(f"inclusion_probability must be in (0, 1] (a row that could not be "
                         f"labeled cannot be estimated for); row {bad[0]} has {float(pi[bad[0]])}")
    sure = np.flatnonzero((pi == 1) & np.isnan(y))
    if sure.size:
        raise ValueError(f"inclusion_probability is 1 for row {sure[0]}, which is unlabeled; "
                         "a row labeled with certainty must have a label")
    return pi
