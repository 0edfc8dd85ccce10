"""Which rows to label: uniform, stratified and active designs, and their weights.

* :func:`draw_sample` — a simple random or a proportionally stratified sample (what
  ``skftr sample`` draws first).
* :class:`ActiveSampler` — the second batch of a two-stage active design (Zrnic &
  Candès 2024, "Active Statistical Inference", §3): fitted on the first, uniform
  batch, it draws the next rows with probabilities that grow with the predicted error
  of the cross-fitted predictors.
* :func:`active_probabilities`, :func:`draw_fixed_size`, :func:`inclusion_probability`
  — the pieces: the working probabilities, the fixed-size (conditional Poisson) draw
  and the probability that a row was labeled by either batch, which
  ``FineTuneRectifyEstimator.fit(..., inclusion_probability=...)`` turns into weights.

* :func:`read_record`, :func:`two_stage_inclusion` — the draw record ``skftr sample``
  writes beside each batch (``OUTPUT.skftr.json``), checked, and the inclusion
  probabilities two batches' records give every row.

The design and its estimator are in docs/method.md §7.
"""
import json
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

__all__ = ["ActiveSampler", "active_probabilities", "draw_fixed_size", "draw_sample",
           "inclusion_probability", "read_record", "two_stage_inclusion"]

SIDECAR = ".skftr.json"
_KEYS = ("data", "id_column", "text_column", "label_column", "design", "ids")

# the fewest labels a stratum needs for its own interval, and rows it keeps unlabeled
GROUP_MIN = (3, 2)


# ---------------------------------------------------------------------- uniform, stratified
def draw_sample(n_rows, budget, strata=None, seed=None):
    """The rows to label: simple random, or stratified with proportional allocation.

    Stratified: ``n_h`` proportional to the stratum size ``N_h``, rounded by largest
    remainder, each stratum at least 3 labels (the fewest that give a stratum its own
    interval); strata whose share falls below 3 get exactly 3 and the rest of the budget
    is shared proportionally among the others. Every stratum must keep at least 2 rows
    unlabeled (so it has at least 5). Rows are drawn without replacement within each
    stratum, so the inclusion probability of a row of stratum ``h`` is ``n_h / N_h``.

    Parameters
    ----------
    n_rows : int
    budget : int
        Number of rows to draw, at most ``n_rows``.
    strata : array-like of shape (n_rows,), default=None
        Stratum of each row; None for a simple random sample.
    seed : int, default=None
        Seeds ``numpy.random.default_rng``.

    Returns
    -------
    rows : ndarray of int
        Sorted 0-based positions of the drawn rows.
    strata : list of dict
        ``value``, ``N``, ``n`` and ``inclusion_probability`` per stratum (one entry with
        value None for a simple random sample).
    """
    from ._stages import assign_folds

    if not 1 <= budget <= n_rows:
        raise ValueError(f"--budget {budget} must be between 1 and the {n_rows} rows of DATA")
    rng = np.random.default_rng(seed)
    if strata is None:
        rows = np.sort(rng.choice(n_rows, size=budget, replace=False))
        return rows, [_stratum(None, n_rows, budget)]
    keys = np.array([str(v) for v in strata], dtype=object)
    values, first, codes = np.unique(keys, return_index=True, return_inverse=True)
    sizes = np.bincount(codes)
    minimum, spare = GROUP_MIN
    low = sizes < minimum + spare
    if low.any():
        raise ValueError(f"stratum {values[low][0]!r} has {sizes[low][0]} rows; every stratum "
                         f"needs at least {minimum + spare} ({minimum} to label, {spare} left "
                         "unlabeled)")
    if budget < minimum * values.size:
        raise ValueError(f"--budget {budget} is too small for {values.size} strata: at least "
                         f"{minimum} labels per stratum, {minimum * values.size} in all")
    fixed = np.zeros(values.size, dtype=bool)
    while True:  # fix the strata whose proportional share is below the minimum
        rest = budget - minimum * fixed.sum()
        share = rest * sizes / sizes[~fixed].sum()
        below = ~fixed & (share < minimum)
        if not below.any():
            break
        fixed |= below
    alloc = np.full(values.size, minimum)
    # the largest-remainder rule that also shares unlabeled rows among folds
    alloc[~fixed] = np.bincount(assign_folds(rest, sizes[~fixed], rng), minlength=(~fixed).sum())
    full = alloc > sizes - spare
    if full.any():
        raise ValueError(f"--budget {budget} leaves fewer than {spare} unlabeled rows in "
                         f"stratum {values[full][0]!r} ({sizes[full][0]} rows, "
                         f"{alloc[full][0]} to label); lower the budget")
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(codes == h), size=alloc[h],
                                              replace=False) for h in range(values.size)]))
    original = np.asarray(strata, dtype=object)[first]
    return rows, [_stratum(_plain(v), int(N), int(n)) for v, N, n in zip(original, sizes, alloc)]


def _stratum(value, size, n):
    return {"value": value, "N": size, "n": n, "inclusion_probability": n / size}


def _plain(value):
    """A NumPy scalar as the Python value JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------- active
def active_probabilities(error, budget, candidates=None, max_weight=5.0, tau=None):
    """Working probabilities ``pi ∝ sqrt(error)``, mixed with uniform and capped at 1.

    The variance-optimal rule of Zrnic & Candès (2024, §3) for a mean, ``pi(x) ∝
    sqrt(E[(Y - f(X))^2 | x])``, made safe (docs/method.md §7): with
    ``s = sqrt(error) / mean_candidates sqrt(error)`` and ``u = budget / m`` (``m``
    candidate rows),

        pi = u ((1 - tau) s + tau),   tau >= the smallest in [0, 1] with
                                      (1 - tau) min(s) + tau >= 1 / max_weight,

    so no row's inverse probability exceeds ``max_weight`` times the uniform one
    ``1 / u``; probabilities above 1 are set to 1 and the excess is shared by the
    others in proportion (which only raises them), so they sum to ``budget`` over the
    candidates. A flat ``error`` gives exactly the uniform ``u``.

    Parameters
    ----------
    error : array-like of shape (N,)
        Predicted squared error of each row, >= 0.
    budget : int
        Expected number of candidate rows to draw, ``1 <= budget < m``.
    candidates : array-like of int, default=None
        Positions of the rows that may be drawn (the others, e.g. labeled already, get
        the probability the same rule gives them); None: every row.
    max_weight : float >= 1, default=5.0
    tau : float in [0, 1] or None, default=None
        The share of uniform in the mixture; raised to the bound above when below it.
        None: the bound.

    Returns
    -------
    pi : ndarray of shape (N,)
    tau : float
    """
    error = np.asarray(error, dtype=float)
    if error.ndim != 1 or not np.isfinite(error).all() or (error < 0).any():
        raise ValueError("error must be a 1-d array of finite predicted squared errors >= 0")
    if not max_weight >= 1:
        raise ValueError(f"max_weight must be >= 1, got {max_weight!r}")
    cand = np.arange(error.size) if candidates is None else np.asarray(candidates, dtype=int)
    m = cand.size
    if not 1 <= budget < m:
        raise ValueError(f"budget {budget} must be at least 1 and below the {m} rows that "
                         "can be drawn")
    u = budget / m
    root = np.sqrt(error)
    mean = root[cand].mean()
    if np.ptp(root[cand]) <= 1e-12 * mean or mean == 0:  # flat: exactly uniform
        return np.full(error.size, u), 1.0
    s = root / mean
    low = s[cand].min()
    bound = 0.0 if low >= 1 / max_weight else (1 / max_weight - low) / (1 - low)
    tau = bound if tau is None else max(float(tau), bound)
    if tau >= 1:
        return np.full(error.size, u), 1.0
    pi = u * ((1 - tau) * s + tau)
    capped = np.zeros(m, dtype=bool)
    while True:  # cap at 1, share the excess over the others (the capped set only grows)
        scale = (budget - capped.sum()) / pi[cand][~capped].sum()
        now = pi[cand] * scale >= 1
        if (now == capped).all():
            break
        capped = now
    return np.minimum(pi * scale, 1.0), float(tau)


def draw_fixed_size(pi, budget, random_state=None, max_tries=100_000):
    """Exactly ``budget`` rows by conditional Poisson (rejective) sampling.

    Independent draws ``xi_i ~ Bernoulli(pi_i)`` repeated until ``sum(xi) = budget``
    (Hájek 1964; ``random_state``: a seed, RandomState or Generator): the budget is met
    exactly, and since a Poisson sample of iid rows is,
    given its size, an iid sample from the population tilted by ``pi``, the weighted
    estimators of docs/method.md §7 stay valid with the working ``pi`` (``sum(pi)``
    should equal ``budget``).

    Returns
    -------
    rows : ndarray of int
        Sorted positions of the drawn rows.
    """
    pi = np.asarray(pi, dtype=float)
    if isinstance(random_state, np.random.Generator):
        uniform = random_state.random
    else:
        uniform = check_random_state(random_state).random_sample
    for _ in range(max_tries):
        drawn = np.flatnonzero(uniform(pi.size) < pi)
        if drawn.size == budget:
            return drawn
    raise RuntimeError(f"no Poisson draw of size {budget} in {max_tries} tries; the "
                       f"probabilities sum to {pi.sum():.1f}")


def inclusion_probability(first, second):
    """``1 - (1 - pi_1)(1 - pi_2)``: the probability a row was labeled by either batch.

    With a uniform first batch of ``n_1`` of ``N`` rows (``pi_1 = n_1 / N``) and a
    second batch drawn with ``pi_2`` from the rest, the labeled rows are a sample tilted
    by this probability and the unlabeled rows one tilted by ``(1 - pi_1)(1 - pi_2)``
    (the balance heuristic of multiple importance sampling, Veach & Guibas 1995;
    docs/method.md §7).
    """
    return 1 - (1 - np.asarray(first, dtype=float)) * (1 - np.asarray(second, dtype=float))


class ActiveSampler(BaseEstimator):
    """The second batch of a two-stage active design (docs/method.md §7).

    ``fit`` on every row of the population with the first batch's labels (NaN for the
    rows not labeled yet): it cross-fits ``estimator`` as ``FineTuneRectifyEstimator``
    does, fits ``error_model`` to the squared out-of-fold residuals of the first batch
    and predicts the squared error of every row (out of fold for the first batch's
    rows). ``sample(n)`` then draws ``n`` of the unlabeled rows with
    :func:`active_probabilities` (``pi ∝ sqrt(predicted squared error)``, mixed with
    uniform, capped) by :func:`draw_fixed_size`. When the error model predicts no better
    than a constant out of fold (``error_score_ <= 0``), the predicted error is flat
    and the draw is uniform. The share ``tau`` of uniform is chosen on the first batch:
    the one (of ``TAUS``, at least the weight bound's) with the smallest estimated
    variance ratio ``mean_j(e_j u / pi_j) / mean_j(e_j)`` against the uniform ``u``,
    ``e_j`` the first batch's squared out-of-fold residuals and ``pi_j`` their rows'
    probabilities from out-of-fold predicted errors; uniform (``tau = 1``) unless a
    mixture does better (docs/method.md §7).

    Parameters
    ----------
    estimator : FineTuneRectifyEstimator or None, default=None
        Cross-fits the predictors; None: ``FineTuneRectifyEstimator(model="drop")``, the
        cheap default predictors.
    error_model : "ridge", "boosting" or a regressor, default="ridge"
        Regressor of the squared out-of-fold residual on the predictions and the
        texts' length features (numeric ``X`` itself): ``"ridge"`` is ``RidgeCV`` on standardized features,
        ``"boosting"`` a small ``HistGradientBoostingRegressor``
        (``benchmarks/RESULTS.md`` compares them).
    max_weight : float >= 1, default=5.0
        No second-batch inverse probability exceeds ``max_weight`` times the uniform one.
    random_state : int, RandomState or None, default=None

    Attributes
    ----------
    estimator_ : fitted FineTuneRectifyEstimator
    labeled_ : ndarray of int
        The first batch (rows with a label).
    first_probability_ : float
        ``n_1 / N``, the first batch's (uniform) inclusion probability.
    error_ : ndarray of shape (N,)
        Predicted squared error of every row (flat when the error model found nothing).
    error_score_ : float
        Out-of-fold R^2 of the error model on the first batch.
    variance_ratio_ : dict
        ``{tau: estimated variance ratio}`` of the last :meth:`probabilities` call.
    predictions_ : ndarray of shape (N,)
        The cross-fitted predictions of every row on the label scale (out of fold for
        the first batch).
    """

    TAUS = (1.0, 0.0, 0.25, 0.5, 0.75)  # uniform first: it wins ties

    def __init__(self, estimator=None, *, error_model="ridge", max_weight=5.0,
                 random_state=None):
        self.estimator = estimator
        self.error_model = error_model
        self.max_weight = max_weight
        self.random_state = random_state

    def fit(self, X, y):
        """Fit the predictors and the error model on the first batch.

        Parameters
        ----------
        X : texts (or what ``estimator`` takes), every row of the population
        y : array-like of shape (N,)
            The first batch's labels; NaN for the rows not labeled yet.

        Returns
        -------
        self
        """
        from sklearn.model_selection import cross_val_predict

        from .estimator import FineTuneRectifyEstimator

        if not (isinstance(self.max_weight, (int, float)) and self.max_weight >= 1):
            raise ValueError(f"max_weight must be a number >= 1, got {self.max_weight!r}")
        y = np.asarray(y, dtype=float)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-dimensional, got shape {y.shape}")
        est = (FineTuneRectifyEstimator(model="drop") if self.estimator is None
               else clone(self.estimator))
        if est.get_params().get("random_state") is None and self.random_state is not None:
            est.set_params(random_state=self.random_state)
        est.fit(X, y)  # validates X and y
        n_rows = est._n_rows
        if n_rows != y.shape[0]:
            raise ValueError(f"X has {n_rows} rows but y has {y.shape[0]}; ActiveSampler fits "
                             "on the population (no X_unlabeled)")
        pred = np.empty(n_rows)
        pred[est.labeled_indices_] = est.labeled_predictions_
        unl = est._unlabeled_rows
        pred[unl] = est._f_unl @ est.lam_ + est.offset_
        f = np.empty((n_rows, est._f_rect.shape[1]))
        f[est.labeled_indices_], f[unl] = est._f_rect, est._f_unl
        Z = np.column_stack([pred, f, _covariates(X, est)])
        labeled = est.labeled_indices_
        target = (y[labeled] - pred[labeled]) ** 2
        model = self._error_model()
        folds = est.folds_
        oof = cross_val_predict(model, Z[labeled], target, groups=None,
                                cv=[(np.flatnonzero(folds != k), np.flatnonzero(folds == k))
                                    for k in range(est.n_folds_)])
        self.error_score_ = float(1 - np.sum((target - oof) ** 2)
                                  / np.sum((target - target.mean()) ** 2))
        if self.error_score_ > 0:
            error = np.empty(n_rows)
            error[labeled] = oof
            error[unl] = clone(model).fit(Z[labeled], target).predict(Z[unl])
            # never 0, never above the largest error seen (no extrapolated outlier takes
            # the budget)
            error = np.clip(error, 0.05 * target.mean(), target.max())
        else:
            error = np.full(n_rows, target.mean())
        self.estimator_, self.labeled_, self.error_ = est, np.sort(labeled), error
        self.predictions_ = pred
        self._target, self._target_rows = target, labeled
        self.first_probability_ = labeled.size / n_rows
        self.unlabeled_ = np.sort(unl)
        return self

    def _error_model(self):
        if self.error_model == "ridge":
            from sklearn.linear_model import RidgeCV
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
        if self.error_model == "boosting":
            from sklearn.ensemble import HistGradientBoostingRegressor

            return HistGradientBoostingRegressor(max_iter=100, learning_rate=0.05, max_depth=3,
                                                 min_samples_leaf=20,
                                                 random_state=self.random_state)
        if hasattr(self.error_model, "fit") and hasattr(self.error_model, "predict"):
            return clone(self.error_model)
        raise ValueError(f"error_model must be 'ridge', 'boosting' or a regressor, got "
                         f"{self.error_model!r}")

    def probabilities(self, n):
        """Second-batch working probability of every row for a batch of ``n`` rows (N,).

        :func:`active_probabilities` of ``error_`` with the unlabeled rows as candidates
        and the ``tau`` of the class docstring (its estimated variance ratios are kept
        in ``variance_ratio_``); the first batch's rows get the probability the same rule
        gives their out-of-fold predicted error (they are not drawn again).
        """
        check_is_fitted(self, "error_")
        n = _check_budget(n, self.unlabeled_.size)
        u, target = n / self.unlabeled_.size, self._target
        best, self.variance_ratio_ = None, {}
        for tau in self.TAUS:
            pi, used = active_probabilities(self.error_, n, self.unlabeled_, self.max_weight, tau)
            ratio = float(np.mean(target * u / pi[self._target_rows]) / np.mean(target))
            self.variance_ratio_[used] = ratio
            if best is None or ratio < best[0]:
                best = (ratio, pi)
        return best[1]

    def inclusion_probabilities(self, n):
        """The probability every row had of being labeled by the two batches (N,):
        :func:`inclusion_probability` of ``first_probability_`` and
        :meth:`probabilities` ``(n)``, for ``FineTuneRectifyEstimator.fit``."""
        return inclusion_probability(self.first_probability_, self.probabilities(n))

    def variance_ratio(self, n_total):
        """The labeled term's variance under the two batches against a uniform draw of the
        same ``n_total`` labels (1 when the first batch alone has them all).

        ``E[e n_total / (N pi)] / E[e]`` with ``pi`` :meth:`inclusion_probabilities`
        ``(n_total - n_1)``, estimated on the first batch's squared out-of-fold residuals
        ``e`` (docs/method.md §7): what ``skftr plan`` multiplies the residual variance by.
        """
        check_is_fitted(self, "error_")
        n2 = int(n_total) - self.labeled_.size
        if n2 < 1:
            return 1.0
        n2 = min(n2, self.unlabeled_.size - 1)
        pi = self.inclusion_probabilities(n2)[self._target_rows]
        n_rows = self.error_.size
        return float(np.mean(self._target * (n2 + self.labeled_.size) / (n_rows * pi))
                     / np.mean(self._target))

    def sample(self, n, random_state=None):
        """Draw the second batch: exactly ``n`` of the unlabeled rows.

        Returns
        -------
        rows : ndarray of int
            Sorted positions (in ``X``) of the drawn rows.
        probabilities : ndarray
            Their working probabilities (:meth:`probabilities`).
        """
        pi = self.probabilities(n)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        rows = self.unlabeled_[draw_fixed_size(pi[self.unlabeled_], n, rng)]
        return rows, pi[rows]


def _check_budget(n, available):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n < available:
        raise ValueError(f"n must be an integer between 1 and {available - 1} (the rows not "
                         f"labeled yet, less one), got {n!r}")
    return int(n)


def _covariates(X, est):
    """What the error model reads beside the predictions: the length features of texts
    (:func:`~skftr.predictors.length_features`), or numeric ``X`` itself."""
    from ._inputs import validate
    from .predictors import length_features

    X, _, _ = validate(est, X, None, None, False, "X")
    return length_features(X.tolist()) if X.dtype == object else X


# ---------------------------------------------------------------------- draw records
def sidecar_path(path):
    """Where the draw record of the sample file ``path`` lives."""
    return Path(str(path) + SIDECAR)


def read_record(path):
    """The draw record beside the sample file ``path`` (None if there is none), checked.

    A record that is not valid JSON, lacks a field, or (second batch) holds
    probabilities that are not one per row of DATA in (0, 1] is refused with one line.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        record = json.loads(side.read_text())
        ok = (isinstance(record, dict) and record.get("format") == "skftr.sample"
              and all(key in record for key in _KEYS) and isinstance(record["ids"], list)
              and {"file", "rows", "sha256"} <= set(record["data"]))
    except (ValueError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise ValueError(f"{side.name} is not a readable skftr draw record (damaged or edited); "
                         "draw the sample again, or remove the record to use the labels as a "
                         "simple random sample")
    if record.get("stage", 1) == 2:
        first, probs = record.get("first_batch"), record.get("second_probability")
        n_rows = record["data"]["rows"]
        try:
            pi = np.asarray(probs, dtype=float)
            pi1 = float(first["probability"])
            ok = (pi.shape == (n_rows,) and bool(np.all((pi > 0) & (pi <= 1)))
                  and 0 < pi1 < 1 and isinstance(first["ids"], list))
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{side.name}: the second batch's probabilities are damaged (one "
                             f"per row of DATA, {n_rows}, in (0, 1], and the first batch's "
                             "ids and probability are needed); draw the batch again")
    return record


def two_stage_inclusion(first, second, names=("the first batch", "the second batch")):
    """Every row's probability of being labeled by two batches, from their draw records.

    ``second`` must have been drawn after ``first`` (its record names ``first``'s ids),
    from the same DATA, ``first`` a simple random sample:
    :func:`inclusion_probability` of ``n_1 / N`` and the recorded second-batch
    probabilities.
    """
    if second.get("stage", 1) != 2:
        raise ValueError(f"{names[1]} was not drawn as a second batch (skftr sample --labels "
                         f"FIRST); give the first batch first")
    if first.get("stage", 1) != 1 or first["design"] != "srs":
        raise ValueError(f"{names[0]} must be a simple random first batch (skftr sample "
                         f"without --strata or --labels), got design {first['design']!r}")
    if (first["data"]["sha256"], sorted(first["ids"])) != (
            second["data"]["sha256"], sorted(second["first_batch"]["ids"])):
        raise ValueError(f"{names[1]} was drawn after another first batch than {names[0]} "
                         "(its record names other rows or another DATA)")
    return inclusion_probability(second["first_batch"]["probability"],
                                 np.asarray(second["second_probability"], dtype=float))
