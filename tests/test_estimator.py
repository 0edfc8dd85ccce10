"""FineTuneRectifyEstimator on numbers (scikit-learn models) and on texts (cheap predictors).

Fast: Ridge on synthetic data; the LoRA path is in test_estimator_lora.py.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skftr import BudgetSplitter, FineTuneRectifyEstimator, ScalingLaw, TextRidge, rectified_mean
from skftr.exceptions import NoUnlabeledWarning
from skftr.predictors import FoldEnsemble
from skftr.rectify import rectified_quantile


def make_data(n_labeled=200, m=400, d=3, seed=0, shift=0.0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_labeled + m, d))
    y_true = X @ np.linspace(1.0, 2.0, d) + rng.normal(size=n_labeled + m) + shift
    y = y_true.copy()
    y[n_labeled:] = np.nan
    return X, y, y_true


def text_data(n_labeled=120, m=200, seed=0):
    rng = np.random.RandomState(seed)
    words = np.array(["good", "bad", "fine", "awful", "great", "dull", "nice", "poor"])
    score = np.array([2.0, -2.0, 1.0, -3.0, 3.0, -1.0, 1.5, -1.5])
    texts, y = [], []
    for _ in range(n_labeled + m):
        pick = rng.randint(0, len(words), size=4)
        texts.append("  " + " ".join(words[pick]).upper() + " ")
        y.append(score[pick].sum() + rng.normal())
    y = np.asarray(y)
    y_obs = y.copy()
    y_obs[n_labeled:] = np.nan
    return texts, y_obs, y


def single(model=None, **kwargs):
    return FineTuneRectifyEstimator(Ridge() if model is None else model, crossfit=None,
                                    **{"method": "ppi", "random_state": 0, **kwargs})


# ----------------------------------------------------------------------------- single split
@pytest.mark.parametrize("n_finetune, expected", [(60, 60), (0.25, 50)])
def test_fixed_split_estimate_is_rectified_mean(n_finetune, expected):
    X, y, _ = make_data()
    est = single(n_finetune=n_finetune).fit(X, y)
    F, R = est.finetune_indices_, est.labeled_indices_
    assert np.intersect1d(F, R).size == 0 and np.isfinite(y[np.r_[F, R]]).all()
    assert (est.n_finetune_, est.n_rectify_, est.n_unlabeled_) == (expected, 200 - expected, 400)
    assert isinstance(est.model_, FoldEnsemble) and est.model_.n_folds == 1
    model = Ridge().fit(X[F], y[F])
    ref = rectified_mean(y[R], model.predict(X[R]), model.predict(X[200:]), method="ppi")
    assert est.estimate_.value == pytest.approx(ref.value)
    assert est.estimate_.stderr == pytest.approx(ref.stderr)
    assert est.predict(X[200:]).mean() == pytest.approx(est.estimate_.value)


def test_budget_splitter_decides_the_split():
    X, y, _ = make_data()
    splitter = BudgetSplitter(budget=150, test_size=100, random_state=3)
    train, test = next(splitter.split(X, y))
    est = single(n_finetune=splitter).fit(X, y)
    np.testing.assert_array_equal(est.finetune_indices_, np.intersect1d(train, np.arange(200)))
    np.testing.assert_array_equal(est.labeled_indices_, test)
    assert (est.n_finetune_, est.n_rectify_) == (50, 100)


def test_auto_pilots_are_budget_faithful_and_reproducible():
    X, y, _ = make_data(n_labeled=320, m=500)
    est = single(pilot_sizes=[10, 20, 40]).fit(X, y)
    law, alloc = est.scaling_law_, est.allocation_
    assert isinstance(law, ScalingLaw) and len(law.pilots_) == 3 * 2
    assert est.pilot_indices_.size == 60 == alloc.n_pilot
    assert np.isin(est.pilot_indices_, est.finetune_indices_).all()
    assert not np.isin(est.pilot_indices_, est.labeled_indices_).any()
    assert alloc.n == 320 and alloc.n_finetune == est.n_finetune_ >= 60
    again = single(pilot_sizes=[10, 20, 40]).fit(X, y)
    assert again.estimate_.value == est.estimate_.value


def test_quantile_estimand():
    X, y, _ = make_data()
    est = single(n_finetune=80, estimand="quantile", q=0.25).fit(X, y)
    R, F = est.labeled_indices_, est.finetune_indices_
    model = Ridge().fit(X[F], y[F])
    ref = rectified_quantile(y[R], model.predict(X[R]), model.predict(X[200:]), 0.25,
                             method="ppi")
    assert est.estimate_.value == pytest.approx(ref.value)
    assert est.estimate_.ci == pytest.approx(ref.ci)


# ----------------------------------------------------------------------------- cross-fitting
def test_default_is_crossfit_power_tuned_and_every_label_rectifies():
    X, y, _ = make_data()
    est = FineTuneRectifyEstimator(Ridge(), random_state=0).fit(X, y)
    assert est.n_folds_ == 5 and est.model_.n_folds == 5
    assert est.estimate_.method.startswith("cross-ppi++")
    np.testing.assert_array_equal(np.sort(est.labeled_indices_), np.arange(200))
    # recompute by hand: fold k's model never saw fold k; the unlabeled rows are
    # predicted by the fold they were assigned to
    f_oof = np.empty(200)
    for k in range(5):
        rows = est.labeled_indices_[est.folds_ != k]
        model = Ridge().fit(X[rows], y[rows])
        f_oof[est.folds_ == k] = model.predict(X[est.labeled_indices_[est.folds_ == k]])
    np.testing.assert_allclose(est._f_rect[:, 0], f_oof)
    ref = rectified_mean(y[est.labeled_indices_], f_oof, est._f_unl[:, 0], folds=est.folds_,
                         folds_unlabeled=est._folds_unl, method="ppi++")
    assert est.estimate_.value == pytest.approx(ref.value)
    assert est.estimate_.stderr == pytest.approx(ref.stderr)
    assert est.estimate_.n_effective > 200  # the model helps: more than 200 labels' worth


class ShiftedRidge(Ridge):
    """Ridge moved by a constant that depends on its training labels: like a model trained
    on the error variance, identified only up to a shift (docs/method.md §3)."""

    def fit(self, X, y):
        super().fit(X, y)
        self.intercept_ += 5 * np.sin(np.sum(y))
        return self


@pytest.mark.parametrize("method", ["ppi", "ppi++"])
def test_crossfit_estimate_and_score_ignore_fold_model_shifts(method):
    X, y, _ = make_data()
    fit = lambda model: FineTuneRectifyEstimator(model, predictors=None, crossfit=4,
                                                 method=method, random_state=0).fit(X, y)
    plain, shifted = fit(Ridge()), fit(ShiftedRidge())
    assert shifted.estimate_.value == pytest.approx(plain.estimate_.value, rel=1e-9)
    assert shifted.estimate_.stderr == pytest.approx(plain.estimate_.stderr, rel=1e-9)
    X_new, _, y_new = make_data(seed=1)
    assert shifted.score(X_new[:50], y_new[:50]) == pytest.approx(
        plain.score(X_new[:50], y_new[:50]), rel=1e-9)


def test_several_predictors_are_rectified_together():
    X, y, y_true = make_data(d=4)
    weak = make_pipeline(FunctionTransformer(lambda Z: Z[:, :1]), Ridge())
    est = FineTuneRectifyEstimator(weak, predictors=[Ridge()], random_state=0).fit(X, y)
    assert est.lam_.shape == (2,) and len(est.predictor_names_) == 2
    alone = FineTuneRectifyEstimator(weak, predictors=None, random_state=0).fit(X, y)
    assert est.estimate_.stderr < alone.estimate_.stderr
    assert abs(est.predict(X[200:]).mean() - est.estimate_.value) < 0.2 * est.estimate_.stderr


def test_noise_predictor_gives_the_classical_width():
    rng = np.random.RandomState(0)
    ratios = []
    for rep in range(20):
        X = rng.normal(size=(1300, 2))
        y = rng.normal(size=1300)  # no signal in X
        y[300:] = np.nan
        est = FineTuneRectifyEstimator(Ridge(), random_state=rep).fit(X, y)
        ratios.append(est.estimate_.stderr / est.estimate_.classical_stderr)
    assert np.mean(ratios) < 1.02


class ThreadedRidge(Ridge):
    def __init__(self, alpha=1.0, n_threads=None):
        super().__init__(alpha=alpha)
        self.n_threads = n_threads

    def fit(self, X, y):
        assert self.n_threads == 1
        return super().fit(X, y)


def test_n_threads_reaches_every_model():
    X, y, _ = make_data()
    est = FineTuneRectifyEstimator(ThreadedRidge(), n_threads=1, random_state=0).fit(X, y)
    assert all(m[0].n_threads == 1 for m in est.model_.members)
    assert est.model.n_threads is None  # the template is never touched


def test_random_state_seeds_every_model_it_fits():
    X, y, _ = make_data()
    fit = lambda: FineTuneRectifyEstimator(RandomForestRegressor(n_estimators=5), predictors=None,
                                           random_state=0).fit(X, y)
    assert fit().estimate_.value == fit().estimate_.value


def test_estimate_new_batch_and_estimate_by_groups():
    X, y, y_true = make_data()
    est = FineTuneRectifyEstimator(Ridge(), random_state=0).fit(X, y)
    assert est.estimate(X[200:]).value == pytest.approx(est.estimate_.value, abs=3 * est.estimate_.stderr)
    groups = np.where(X[:, 0] > 0, "high", "low")
    by = est.estimate_by(groups)
    assert set(by) == {"high", "low"} and by["high"].value > by["low"].value
    r = groups[est.labeled_indices_] == "high"
    u = groups[est._unlabeled_rows] == "high"
    ref = rectified_mean(y[est.labeled_indices_][r], est._f_rect[r], est._f_unl[u],
                         folds=est.folds_[r], folds_unlabeled=est._folds_unl[u])
    assert by["high"].value == pytest.approx(ref.value)
    with pytest.raises(ValueError, match="groups has 3 entries"):
        est.estimate_by(["a", "b", "c"])


# ----------------------------------------------------------------------------- texts
def test_texts_with_cheap_predictors_and_score_columns():
    texts, y, y_true = text_data()
    est = FineTuneRectifyEstimator("drop", predictors=[TextRidge(features="tfidf")],
                                   random_state=0).fit(texts, y)
    assert est.predictor_names_ == ["ridge on tfidf"]
    assert abs(est.estimate_.value - y_true.mean()) < 4 * est.estimate_.stderr
    assert est.estimate_.n_effective > 120
    frame = pd.DataFrame({"text": texts, "llm": y_true + np.random.RandomState(1).normal(size=320)})
    est2 = FineTuneRectifyEstimator("drop", predictors=[TextRidge(features="tfidf")],
                                    text_column="text", score_columns=["llm"],
                                    random_state=0).fit(frame, y)
    assert est2.predictor_names_ == ["ridge on tfidf", "llm"]
    assert est2.estimate_.stderr < est.estimate_.stderr
    assert est2.predict(frame.iloc[:5]).shape == (5,)
    with pytest.raises(ValueError, match=r"no column\(s\) \['llm'\]"):
        est2.predict(frame[["text"]])


def test_length_ridge_follows_a_rating_that_grows_with_length():
    from skftr.predictors import length_features

    np.testing.assert_allclose(length_features(["ab cd", "x"]),
                               [[np.log(6), np.log(3), np.log(6) ** 2, np.log(3) ** 2],
                                [np.log(2), np.log(2), np.log(2) ** 2, np.log(2) ** 2]])
    with pytest.raises(ValueError, match=r"X\[1\] is empty"):
        length_features(["fine", "  "])
    rng = np.random.RandomState(0)
    texts = [" ".join(["word"] * k) for k in rng.randint(1, 60, size=300)]
    rating = np.log([len(t.split()) for t in texts]) + 0.3 * rng.normal(size=300)
    y = rating.copy()
    y[150:] = np.nan
    est = FineTuneRectifyEstimator("drop", predictors=[TextRidge(features="length")],
                                   random_state=0).fit(texts, y)
    assert est.predictor_names_ == ["ridge on length"]
    assert np.corrcoef(est.predict(texts[150:]), rating[150:])[0, 1] > 0.9
    assert est.estimate_.n_effective > 2 * 150  # word counts explain ~90% of the variance


def test_pipeline_behind_a_text_cleaning_step():
    texts, y, y_true = text_data()
    model = make_pipeline(HashingVectorizer(n_features=64, alternate_sign=False), Ridge())
    pipe = Pipeline([("clean", FunctionTransformer(lambda t: [" ".join(s.lower().split()) for s in t])),
                     ("ftr", FineTuneRectifyEstimator(model, predictors=None, random_state=0))])
    pipe.fit(texts, y)
    ftr = pipe.named_steps["ftr"]
    assert ftr.estimate_.n_unlabeled == 200 and ftr.estimate_.n_labeled == 120
    assert abs(ftr.estimate_.value - y_true.mean()) < 4 * ftr.estimate_.stderr
    assert np.corrcoef(pipe.predict(texts[120:]), y_true[120:])[0, 1] > 0.8


# ----------------------------------------------------------------------------- score
def test_score_uses_only_rows_no_model_saw():
    X, y, y_true = make_data()
    est = single(n_finetune=100).fit(X, y)
    X_h, y_h = X[200:300], y_true[200:300]
    R = est.labeled_indices_
    model = Ridge().fit(X[est.finetune_indices_], y[est.finetune_indices_])
    ref = rectified_mean(np.r_[y[R], y_h], model.predict(np.r_[X[R], X_h]),
                         model.predict(X[200:]), method="ppi")
    assert est.score(X_h, y_h) == pytest.approx(-ref.stderr ** 2)
    weak = single(DummyRegressor(), n_finetune=100).fit(X, y)
    assert weak.score(X_h, y_h) < est.score(X_h, y_h)
    with pytest.warns(UserWarning, match="100 of the 100 scored rows were used to fit"):
        own = est.score(X[est.finetune_indices_], y[est.finetune_indices_])
    assert own == pytest.approx(-est.estimate_.stderr ** 2)
    with pytest.raises(ValueError, match="labeled rows"):
        est.score(X_h, np.full(100, np.nan))


def test_no_unlabeled_rows_gives_classical_estimate():
    X, y, _ = make_data()
    with pytest.warns(NoUnlabeledWarning):
        est = FineTuneRectifyEstimator(Ridge(), random_state=0).fit(X[:200], y[:200])
    assert est.estimate_.method == "classical" and est.estimate_.n_unlabeled == 0
    assert est.estimate_.value == pytest.approx(y[:200].mean())
    assert est.estimate(X[200:]).n_unlabeled == 400


# ----------------------------------------------------------------------------- ecosystem
def test_clone_get_set_params_nested():
    est = FineTuneRectifyEstimator(Ridge(alpha=2.0), n_finetune=0.3, crossfit=None)
    assert est.get_params()["model__alpha"] == 2.0
    est.set_params(model__alpha=5.0, method="ppi")
    twin = clone(est)
    assert twin.get_params()["model__alpha"] == 5.0 and twin.model is not est.model
    X, y, _ = make_data()
    twin.fit(X, y)
    assert not hasattr(est.model, "coef_")  # the given model is never fitted


def test_grid_search_one_knob_for_the_split():
    X, y, _ = make_data(n_labeled=300, m=600)
    search = GridSearchCV(single(), {"n_finetune": [30, 100, 200]},
                          cv=BudgetSplitter(budget=300, n_splits=3, random_state=0))
    search.fit(X, y)
    assert search.best_params_["n_finetune"] in (30, 100, 200)
    assert search.best_estimator_.n_finetune_ == search.best_params_["n_finetune"]


def test_grid_search_over_folds_and_predictors():
    X, y, _ = make_data()
    search = GridSearchCV(FineTuneRectifyEstimator(Ridge(), random_state=0),
                          {"crossfit": [2, 5], "model__alpha": [0.1, 100.0]},
                          cv=KFold(3, shuffle=True, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, X, y, error, match", [
    ({}, np.zeros((5, 2)), np.full(5, np.nan), ValueError, "0 labeled rows"),
    ({}, np.zeros((5, 2)), [1.0, np.inf, 2, 3, 4], ValueError, r"y\[1\] is infinite"),
    ({}, np.zeros((5, 2)), [1.0, 2.0], ValueError, "X has 5 rows but y has 2"),
    ({}, np.zeros((3, 2)), ["1", "x", None], ValueError, r"y\[1\] = 'x' is not a number"),
    ({"n_finetune": 50}, np.zeros((5, 2)), np.ones(5), ValueError, "set crossfit=None"),
    ({"predictors": None, "model": "drop"}, np.zeros((5, 2)), np.ones(5), ValueError,
     "nothing to predict"),
    ({"loss": "correlation"}, *make_data()[:2], ValueError, "correlation"),
])
def test_bad_input(kwargs, X, y, error, match):
    est = FineTuneRectifyEstimator(**{"model": Ridge(), **kwargs})
    with pytest.raises(error, match=match):
        est.fit(X, y)


def test_bad_texts_and_columns():
    texts, y, _ = text_data()
    est = FineTuneRectifyEstimator("drop", predictors=[TextRidge(features="tfidf")])
    with pytest.raises(ValueError, match=r"X\[3\] is empty"):
        est.fit(texts[:3] + ["  "] + texts[4:], y)
    with pytest.raises(TypeError, match=r"X\[2\] must be a str"):
        est.fit(texts[:2] + [5] + texts[3:], y)
    frame = pd.DataFrame({"body": texts})
    with pytest.raises(ValueError, match=r"no column\(s\) \['text'\]; its columns are \['body'\]"):
        est.set_params(text_column="text").fit(frame, y)


@pytest.mark.parametrize("call", ["predict", "estimate", "score", "estimate_by", "save"])
def test_not_fitted(call, tmp_path):
    est = FineTuneRectifyEstimator(Ridge())
    args = {"predict": (np.zeros((2, 2)),), "estimate": (np.zeros((2, 2)),),
            "score": (np.zeros((2, 2)), np.zeros(2)), "estimate_by": ([0, 1],),
            "save": (tmp_path / "m",)}[call]
    with pytest.raises(NotFittedError):
        getattr(est, call)(*args)
