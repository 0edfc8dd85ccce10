"""FineTuneRectifyEstimator in the numeric-feature configuration (scikit-learn models).

Fast: Ridge on synthetic data; the LoRA path is in test_estimator_lora.py.
"""
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.dummy import DummyRegressor
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skftr import BudgetSplitter, FineTuneRectifyEstimator, ScalingLaw, rectified_mean
from skftr.estimator import NoUnlabeledWarning
from skftr.rectify import crossfit_mean, rectified_quantile


def make_data(n_labelled=200, m=400, d=3, seed=0, shift=0.0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_labelled + m, d))
    y_true = X @ np.linspace(1.0, 2.0, d) + rng.normal(size=n_labelled + m) + shift
    y = y_true.copy()
    y[n_labelled:] = np.nan
    return X, y, y_true


def check_disjoint(est, y):
    F, R = est.finetune_indices_, est.rectify_indices_
    assert np.intersect1d(F, R).size == 0
    assert np.isfinite(y[F]).all() and np.isfinite(y[R]).all()
    assert (len(F), len(R)) == (est.n_finetune_, est.n_rectify_)


@pytest.mark.parametrize("n_finetune, expected", [(60, 60), (0.25, 50)])
def test_fixed_split_estimate_is_rectified_mean(n_finetune, expected):
    X, y, _ = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=n_finetune, random_state=0).fit(X, y)
    check_disjoint(est, y)
    assert est.n_finetune_ == expected and est.n_rectify_ == 200 - expected
    assert est.n_unlabeled_ == 400
    # the estimate is PPI with the fitted model on R and U, recomputed independently
    F, R = est.finetune_indices_, est.rectify_indices_
    model = Ridge().fit(X[F], y[F])
    ref = rectified_mean(y[R], model.predict(X[R]), model.predict(X[200:]))
    assert est.estimate_.value == pytest.approx(ref.value)
    assert est.estimate_.stderr == pytest.approx(ref.stderr)
    assert est.estimate_.allocation is est.allocation_
    assert (est.allocation_.n_finetune, est.allocation_.n_rectify) == (expected, 200 - expected)
    assert est.allocation_.variance == pytest.approx(ref.stderr ** 2)


def test_budget_splitter_decides_the_split():
    X, y, _ = make_data()
    splitter = BudgetSplitter(budget=150, n_finetune=50, random_state=3)
    train, test = next(splitter.split(X, y))
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=splitter, random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.finetune_indices_, np.intersect1d(train, np.arange(200)))
    np.testing.assert_array_equal(est.rectify_indices_, test)
    check_disjoint(est, y)
    assert (est.n_finetune_, est.n_rectify_) == (50, 100)


def test_auto_pilots_are_budget_faithful():
    X, y, _ = make_data(n_labelled=320, m=500)
    est = FineTuneRectifyEstimator(Ridge(), pilot_sizes=[10, 20, 40], random_state=0).fit(X, y)
    check_disjoint(est, y)
    law, alloc = est.scaling_law_, est.allocation_
    assert isinstance(law, ScalingLaw) and len(law.pilots_) == 3 * 2
    # pool = 40 pilot rows + 20 held out; all of it fine-tunes, none rectifies
    assert est.pilot_indices_.size == 60 == alloc.n_pilot
    assert np.isin(est.pilot_indices_, est.finetune_indices_).all()
    assert not np.isin(est.pilot_indices_, est.rectify_indices_).any()
    assert alloc.n == 320 and alloc.n_finetune == est.n_finetune_ >= 60
    assert alloc.n_unlabeled == 500


def test_auto_with_given_scaling_law_runs_no_pilots():
    X, y, _ = make_data(n_labelled=300, m=500)
    # a steep law with no floor favours a large fine-tuning set
    law = ScalingLaw(n_bootstrap=0).fit([10, 20, 40, 80], [8.0, 2.0, 0.5, 0.125])
    est = FineTuneRectifyEstimator(Ridge(), scaling_law=law, random_state=0).fit(X, y)
    assert est.scaling_law_ is law and est.pilot_indices_.size == 0
    from skftr import optimal_allocation

    expected = optimal_allocation(300, law, n_unlabeled=500, var_f=np.var(y[:300], ddof=1))
    assert est.n_finetune_ == expected.n_finetune
    check_disjoint(est, y)


def test_crossfit_uses_every_label_in_both_stages():
    X, y, _ = make_data()
    est = FineTuneRectifyEstimator(Ridge(), crossfit=4, random_state=0).fit(X, y)
    assert len(est.model_) == 4 and est.allocation_ is None
    np.testing.assert_array_equal(est.rectify_indices_, np.arange(200))
    assert est.estimate_.method == "cross-ppi"
    # recompute: each fold model fitted without its fold
    f_oof, f_unl = np.empty(200), []
    for k in range(4):
        rows = np.flatnonzero(est.folds_ != k)
        model = Ridge().fit(X[rows], y[rows])
        f_oof[est.folds_ == k] = model.predict(X[:200][est.folds_ == k])
        f_unl.append(model.predict(X[200:]))
    ref = crossfit_mean(y[:200], f_oof, est.folds_, np.vstack(f_unl))
    assert est.estimate_.value == pytest.approx(ref.value)
    assert est.estimate_.stderr == pytest.approx(ref.stderr)
    # predictions average the fold models, mean over U equals the estimate
    assert est.predict(X[200:]).mean() == pytest.approx(est.estimate_.value)


class ShiftedRidge(Ridge):
    """Ridge moved by a constant that depends on its training labels: like a model trained
    on the error variance, identified only up to a shift (METHOD.md §3)."""

    def fit(self, X, y):
        super().fit(X, y)
        self.intercept_ += 5 * np.sin(np.sum(y))
        return self


@pytest.mark.parametrize("method", ["ppi", "ppi++"])
@pytest.mark.parametrize("m", [400, 0])
def test_crossfit_estimate_and_score_ignore_fold_model_shifts(method, m):
    X, y, y_true = make_data()
    X, y = X[:200 + m], y[:200 + m]
    fit = lambda model: FineTuneRectifyEstimator(model, crossfit=4, method=method,
                                                 random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoUnlabeledWarning)
        plain, shifted = fit(Ridge()), fit(ShiftedRidge())
    shifts = [s.intercept_ - p.intercept_ for s, p in zip(shifted.model_, plain.model_)]
    assert np.ptp(shifts) > 1.0
    assert shifted.estimate_.value == pytest.approx(plain.estimate_.value, rel=1e-9)
    assert shifted.estimate_.stderr == pytest.approx(plain.estimate_.stderr, rel=1e-9)
    X_new, _, y_new = make_data(seed=1)
    X_h, y_h = X_new[:50], y_new[:50]
    assert shifted.score(X_h, y_h) == pytest.approx(plain.score(X_h, y_h), rel=1e-9)
    if method == "ppi" and m:  # by hand: residual variance within folds, the scored rows a group
        folds = np.r_[plain.folds_, np.full(50, 4)]
        R = plain.rectify_indices_
        f_oof = np.empty(200)
        for k, model in enumerate(plain.model_):
            f_oof[plain.folds_ == k] = model.predict(X[R][plain.folds_ == k])
        weights = np.bincount(plain.folds_) / 200
        fbar = lambda Z: weights @ np.vstack([model.predict(Z) for model in plain.model_])
        r = np.r_[y[R] - f_oof, y_h - fbar(X_h)]
        means = np.bincount(folds, weights=r) / np.bincount(folds)
        within = np.sum((r - means[folds]) ** 2) / (250 - 5)
        expected = within / 250 + fbar(X[200:]).var() / m
        assert plain.score(X_h, y_h) == pytest.approx(-expected, rel=1e-9)


def test_quantile_estimand():
    X, y, _ = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=80, estimand="quantile", q=0.25,
                                   random_state=0).fit(X, y)
    R = est.rectify_indices_
    ref = rectified_quantile(y[R], est.model_.predict(X[R]), est.model_.predict(X[200:]), 0.25)
    assert est.estimate_.value == pytest.approx(ref.value)
    assert est.estimate_.ci == pytest.approx(ref.ci)


def test_predict_supplies_the_level():
    # a model without intercept is biased by the shift; rectification restores the level
    X, y, y_true = make_data(shift=5.0)
    est = FineTuneRectifyEstimator(Ridge(fit_intercept=False), n_finetune=100,
                                   random_state=0).fit(X, y)
    raw = est.model_.predict(X[200:])
    R = est.rectify_indices_
    offset = np.mean(y[R] - est.model_.predict(X[R]))
    np.testing.assert_allclose(est.predict(X[200:]), raw + offset)
    assert abs(est.predict(X[200:]).mean() - y_true[200:].mean()) < 0.3
    assert abs(raw.mean() - y_true[200:].mean()) > 3
    assert est.predict(X[200:]).mean() == pytest.approx(est.estimate_.value)


def test_ppi_plus_plus_predictions_are_power_tuned():
    X, y, _ = make_data()
    rng = np.random.RandomState(1)
    X_noisy = X + rng.normal(scale=3.0, size=X.shape)  # weak model: lam < 1
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, method="ppi++",
                                   random_state=0).fit(X_noisy, y)
    lam = est.estimate_.lam
    assert 0 < lam < 1 and est.prediction_scale_ == lam
    assert est.predict(X_noisy[200:]).mean() == pytest.approx(est.estimate_.value)


def test_classical_method_uses_every_label():
    X, y, _ = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, method="classical",
                                   random_state=0).fit(X, y)
    assert est.estimate_.value == pytest.approx(y[:200].mean())
    assert est.estimate_.n_labeled == 200
    assert -est.score(X[:1], y[:1]) == pytest.approx(np.var(np.r_[y[:200], y[0]]) / 201)


def test_estimate_new_batch_without_refitting():
    X, y, y_true = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, random_state=0).fit(X, y)
    before = est.estimate_.to_dict()
    rng = np.random.RandomState(5)
    X_new = rng.normal(loc=0.5, size=(300, 3))
    new = est.estimate(X_new)
    R = est.rectify_indices_
    ref = rectified_mean(y[R], est.model_.predict(X[R]), est.model_.predict(X_new))
    assert new.value == pytest.approx(ref.value) and new.n_unlabeled == 300
    assert new.allocation is est.allocation_
    assert est.estimate_.to_dict() == before
    assert est.estimate(X[200:]).value == pytest.approx(est.estimate_.value)


def test_stages_reproduce_fit():
    X, y, _ = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=70, random_state=0).fit(X, y)
    F, R = est.finetune_indices_, est.rectify_indices_
    staged = FineTuneRectifyEstimator(Ridge()).fine_tune(X[F], y[F])
    with pytest.raises(NotFittedError):
        staged.predict(X)
    staged.rectify(X[R], y[R], X_unlabeled=X[200:])
    assert staged.estimate_.value == pytest.approx(est.estimate_.value)
    assert (staged.n_finetune_, staged.n_rectify_) == (70, 130)
    np.testing.assert_allclose(staged.predict(X[:5]), est.predict(X[:5]))


def test_no_unlabelled_rows_gives_classical_estimate():
    X, y, y_true = make_data()
    with pytest.warns(NoUnlabeledWarning):
        est = FineTuneRectifyEstimator(Ridge(), n_finetune=50, random_state=0).fit(
            X[:200], y[:200])
    assert est.estimate_.method == "classical" and est.estimate_.n_unlabeled == 0
    assert est.estimate_.value == pytest.approx(y[:200].mean())
    assert est.estimate_.stderr == pytest.approx(np.sqrt(np.var(y[:200]) / 200))
    # the model is rectified all the same: estimate() of a later batch is PPI
    later = est.estimate(X[200:])
    assert later.method == "ppi" and later.n_labeled == 150
    # score drops the Var(f)/m term (m infinite)
    R = est.rectify_indices_
    resid = np.r_[y[R], y_true[200:]] - est.model_.predict(np.r_[X[R], X[200:]])
    assert -est.score(X[200:], y_true[200:]) == pytest.approx(np.var(resid) / resid.size)


def test_score_is_minus_variance_with_heldout_rows_joining_rectification():
    X, y, y_true = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, random_state=0).fit(X, y)
    X_h, y_h = X[200:300], y_true[200:300]
    R = est.rectify_indices_
    yy = np.r_[y[R], y_h]
    ff = est.model_.predict(np.r_[X[R], X_h])
    ref = rectified_mean(yy, ff, est.model_.predict(X[200:]))
    assert est.score(X_h, y_h) == pytest.approx(-ref.stderr ** 2)
    # NaN rows are ignored; a better model scores higher
    y_h_nan = y_h.copy()
    y_h_nan[:10] = np.nan
    assert np.isfinite(est.score(X_h, y_h_nan))
    weak = FineTuneRectifyEstimator(DummyRegressor(), n_finetune=100, random_state=0).fit(X, y)
    assert weak.score(X_h, y_h) < est.score(X_h, y_h)
    with pytest.raises(ValueError, match="labelled rows"):
        est.score(X_h, np.full(100, np.nan))


def test_loss_for_scikit_learn_models():
    X, y, _ = make_data()
    a = FineTuneRectifyEstimator(Ridge(), loss="variance", n_finetune=60, random_state=0).fit(X, y)
    b = FineTuneRectifyEstimator(Ridge(), loss="mse", n_finetune=60, random_state=0).fit(X, y)
    assert a.estimate_.value == b.estimate_.value
    with pytest.raises(ValueError, match="correlation"):
        FineTuneRectifyEstimator(Ridge(), loss="correlation", n_finetune=60).fit(X, y)


# ----------------------------------------------------------------------------- ecosystem
def test_clone_get_set_params_nested():
    est = FineTuneRectifyEstimator(Ridge(alpha=2.0), n_finetune=0.3, crossfit=None)
    params = est.get_params()
    assert params["model__alpha"] == 2.0 and params["n_finetune"] == 0.3
    est.set_params(model__alpha=5.0, method="ppi++")
    assert est.model.alpha == 5.0 and est.method == "ppi++"
    twin = clone(est)
    assert twin.get_params()["model__alpha"] == 5.0 and twin.model is not est.model
    X, y, _ = make_data()
    twin.fit(X, y)
    assert est.model.alpha == 5.0 and not hasattr(est.model, "coef_")  # model never fitted


def _clean(texts):
    return [" ".join(t.lower().split()) for t in texts]


def text_data(n_labelled=120, m=200, seed=0):
    rng = np.random.RandomState(seed)
    words = np.array(["good", "bad", "fine", "awful", "great", "dull", "nice", "poor"])
    score = np.array([2.0, -2.0, 1.0, -3.0, 3.0, -1.0, 1.5, -1.5])
    texts, y = [], []
    for _ in range(n_labelled + m):
        pick = rng.randint(0, len(words), size=4)
        texts.append("  " + " ".join(words[pick]).upper() + " ")
        y.append(score[pick].sum() + rng.normal())
    y = np.asarray(y)
    y_obs = y.copy()
    y_obs[n_labelled:] = np.nan
    return texts, y_obs, y


def test_pipeline_behind_a_text_cleaning_step():
    texts, y, y_true = text_data()
    text_model = make_pipeline(HashingVectorizer(n_features=64, alternate_sign=False), Ridge())
    pipe = Pipeline([
        ("clean", FunctionTransformer(_clean)),
        ("ftr", FineTuneRectifyEstimator(text_model, n_finetune=60, random_state=0)),
    ])
    pipe.fit(texts, y)
    ftr = pipe.named_steps["ftr"]
    assert ftr.estimate_.n_unlabeled == 200 and ftr.estimate_.n_labeled == 60
    assert abs(ftr.estimate_.value - y_true.mean()) < 4 * ftr.estimate_.stderr
    pred = pipe.predict(texts[120:])
    assert pred.shape == (200,) and np.corrcoef(pred, y_true[120:])[0, 1] > 0.8
    assert pipe.score(texts[:120], y_true[:120]) < 0
    assert pipe.get_params()["ftr__model__ridge__alpha"] == 1.0


def test_cross_validate_with_budget_splitter():
    X, y, _ = make_data()
    cv = BudgetSplitter(n_finetune=120, n_splits=3, random_state=0)
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=60, random_state=0)
    result = cross_validate(est, X, y, cv=cv, return_estimator=True)
    assert result["test_score"].shape == (3,) and (result["test_score"] < 0).all()
    for fitted, (train, test) in zip(result["estimator"], cv.split(X, y)):
        # unlabelled rows of the train fold are the unlabelled sample; 120 labels split 60/60
        assert fitted.n_unlabeled_ == 400 and fitted.n_finetune_ == 60
        assert fitted.n_rectify_ == 60


def _true_variance(s, n, m, d, beta, reps=60, seed=123):
    """Monte Carlo V(s) = sigma^2(s) / (n - s) + Var(f_s) / m for OLS on the model below."""
    rng = np.random.RandomState(seed)
    X_test = rng.normal(size=(4000, d))
    y_test = X_test @ beta + rng.normal(size=4000)
    sig, var_f = [], []
    for _ in range(reps):
        X = rng.normal(size=(s, d))
        model = LinearRegression().fit(X, X @ beta + rng.normal(size=s))
        pred = model.predict(X_test)
        sig.append(np.var(y_test - pred))
        var_f.append(np.var(pred))
    return np.mean(sig) / (n - s) + np.mean(var_f) / m


def test_grid_search_over_budgets_picks_smallest_true_variance():
    """Known learning curve: OLS with d features, sigma^2(s) ~ 1 + d / (s - d - 1)."""
    n, m, d = 300, 2000, 20
    rng = np.random.RandomState(0)
    beta = rng.normal(size=d) / np.sqrt(d)
    X = rng.normal(size=(n + m, d))
    y = X @ beta + rng.normal(size=n + m)
    y[n:] = np.nan
    grid = [30, 90, 210]
    truth = {s: _true_variance(s, n, m, d, beta) for s in grid}
    best_true = min(truth, key=truth.get)
    assert best_true == 90  # the trade-off is interior: too few fine-tune, too few rectify

    est = FineTuneRectifyEstimator(LinearRegression(), random_state=0)
    cv = BudgetSplitter(n_finetune=max(grid) + est.min_rectify, n_splits=3, random_state=0)
    search = GridSearchCV(est, {"n_finetune": grid, "loss": ["variance", "mse"]}, cv=cv)
    search.fit(X, y)
    assert search.best_params_["n_finetune"] == best_true
    # CV scores estimate each candidate's own V(s) (every budget label not fine-tuned rectifies);
    # at s = 30 (OLS with 20 features on 30 rows) the error variance is too heavy-tailed to test
    for s in (90, 210):
        score = search.cv_results_["mean_test_score"][
            search.cv_results_["param_n_finetune"] == s].mean()
        assert -score == pytest.approx(truth[s], rel=0.35)
    best = search.best_estimator_
    check_disjoint(best, y)
    assert (best.n_finetune_, best.n_rectify_, best.n_unlabeled_) == (90, 210, m)
    assert best.estimate_.stderr ** 2 == pytest.approx(truth[90], rel=0.5)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, X, y, error, match", [
    ({}, np.ones((20, 2)), np.full(20, np.nan), ValueError, "every label in y is NaN"),
    ({"n_finetune": 5}, np.ones((12, 2)), np.r_[np.arange(8.0), [np.nan] * 4], ValueError,
     "min_rectify"),
    ({"n_finetune": 30}, np.ones((40, 2)), np.r_[np.arange(30.0), [np.nan] * 10], ValueError,
     "must be smaller than the 30 labelled rows"),
    ({"n_finetune": 0.99}, np.ones((40, 2)), np.arange(40.0), ValueError, "min_rectify"),
    ({}, np.ones((40, 2)), np.r_[np.arange(30.0), [np.nan] * 10], ValueError,
     "too few for pilots"),
    ({"pilot_sizes": [10, 20, 40]}, np.ones((60, 2)), np.arange(60.0), ValueError,
     "pilot pool of 60"),
    ({"n_finetune": 5}, np.ones((30, 2)), np.arange(29.0), ValueError, "same length"),
    ({"n_finetune": 5}, np.ones((30, 2)), np.array(["a"] * 30), ValueError, "numeric labels"),
    ({"n_finetune": 5}, np.ones((30, 2)), None, ValueError, "requires y"),
    ({"n_finetune": 5}, np.ones((30, 2)), np.r_[np.inf, np.arange(29.0)], ValueError, "infinity"),
    ({"n_finetune": 5, "crossfit": 3}, np.ones((30, 2)), np.arange(30.0), ValueError,
     "exclude each other"),
    ({"n_finetune": "half"}, np.ones((30, 2)), np.arange(30.0), ValueError, "n_finetune"),
    ({"method": "ppi+"}, np.ones((30, 2)), np.arange(30.0), ValueError, "method"),
])
def test_bad_input(kwargs, X, y, error, match):
    est = FineTuneRectifyEstimator(Ridge(), **kwargs)
    with pytest.raises(error, match=match), warnings.catch_warnings():
        warnings.simplefilter("ignore", NoUnlabeledWarning)
        est.fit(X, y)


@pytest.mark.parametrize("texts, error, match", [
    (["fine", None, "good", "nice"], ValueError, r"X\[1\] is missing"),
    (["fine", "  ", "good", "nice"], ValueError, r"X\[1\] is empty"),
    ("one long text", TypeError, "single str"),
])
def test_bad_texts(texts, error, match):
    model = make_pipeline(HashingVectorizer(n_features=8), Ridge())
    est = FineTuneRectifyEstimator(model, n_finetune=1, min_rectify=2)
    with pytest.raises(error, match=match):
        est.fit(texts, np.arange(4.0))


def test_text_validation_messages():
    from skftr.estimator import _check_texts

    with pytest.raises(ValueError, match=r"X\[1\] is missing"):
        _check_texts(["a", None], "X")
    with pytest.raises(ValueError, match=r"X\[0\] is empty"):
        _check_texts([""], "X")
    with pytest.raises(TypeError, match="single str"):
        _check_texts("abc", "X")
    with pytest.raises(TypeError, match=r"X\[1\] must be a str"):
        _check_texts(["a", 1], "X")


def test_numeric_model_on_texts_after_numeric_fit():
    X, y, _ = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=50, random_state=0).fit(X, y)
    with pytest.raises(TypeError, match="texts"):
        est.predict(["a text", "another"])
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :2])


@pytest.mark.parametrize("call", ["predict", "estimate", "score", "rectify", "save"])
def test_not_fitted(call, tmp_path):
    est = FineTuneRectifyEstimator(Ridge())
    X, y, _ = make_data()
    args = {"predict": (X,), "estimate": (X,), "score": (X, y), "rectify": (X, y),
            "save": (tmp_path,)}[call]
    with pytest.raises(NotFittedError):
        getattr(est, call)(*args)
