import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.model_selection import (BaseShuffleSplit, GridSearchCV, check_cv,
                                     cross_val_score, cross_validate)

from skftr import FineTuneRectifyEstimator
from skftr.allocation import optimal_allocation
from skftr.exceptions import SkftrDeprecationWarning
from skftr.model_selection import BudgetSplitter


class LabeledRidge(RegressorMixin, BaseEstimator):
    """Ridge that learns from the labeled rows only (NaN y = unlabeled)."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        labeled = np.isfinite(y)
        self.ridge_ = Ridge(alpha=self.alpha).fit(X[labeled], y[labeled])
        self.n_fit_ = int(labeled.sum())
        return self

    def predict(self, X):
        return self.ridge_.predict(X)


class Law:
    def __init__(self, a, alpha, b):
        self.a_, self.alpha_, self.b_ = a, alpha, b

    def predict(self, s):
        return self.a_ * np.asarray(s, float) ** -self.alpha_ + self.b_


def make_data(n_labeled=300, n_unlabeled=100, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_labeled + n_unlabeled, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=len(X))
    y[rng.permutation(len(X))[:n_unlabeled]] = np.nan
    return X, y


def test_sizes_disjointness_and_unlabeled_rows():
    X, y = make_data()
    unlabeled = np.flatnonzero(np.isnan(y))
    cv = BudgetSplitter(budget=200, test_size=150, n_splits=4, random_state=0)
    assert isinstance(cv, BaseShuffleSplit) and cv.get_n_splits() == 4
    splits = list(cv.split(X, y))
    assert len(splits) == 4
    for train, test in splits:
        assert np.setdiff1d(train, unlabeled).size == 50 and test.size == 150
        assert np.isin(unlabeled, train).all()  # every unlabeled row is in train
        assert np.isfinite(y[test]).all()
        assert np.intersect1d(train, test).size == 0
        # 100 labeled rows beyond the budget are in neither
        assert len(np.union1d(train, test)) == len(y) - 100
    assert not np.array_equal(splits[0][1], splits[1][1])  # independent draws


@pytest.mark.parametrize("test_size, n_test", [(None, 60), (0.25, 75), (0.1, 30), (1, 1),
                                               (299, 299)])
def test_test_size_share_count_and_default(test_size, n_test):
    X, y = make_data()  # 300 labeled rows, budget None: all of them
    cv = BudgetSplitter(test_size=test_size, random_state=0)
    assert cv.get_n_splits() == 5
    for train, test in cv.split(X, y):
        assert test.size == n_test and train.size == 100 + 300 - n_test


def test_scaling_law_gives_the_optimal_allocation():
    X, y = make_data()
    law = Law(0.287, 0.297, 0.042)
    cv = BudgetSplitter(budget=250, scaling_law=law, min_rectify=20, random_state=0)
    train, test = next(cv.split(X, y))
    expected = optimal_allocation(250, law, min_rectify=20)
    assert test.size == expected.n_rectify and train.size == 100 + expected.n_finetune
    # a law whose error falls fast pushes the rectification set to its minimum
    steep = BudgetSplitter(budget=250, scaling_law=Law(5.0, 1.5, 0.0), min_rectify=40)
    assert next(steep.split(X, y))[1].size == optimal_allocation(
        250, Law(5.0, 1.5, 0.0), min_rectify=40).n_rectify


def test_deprecated_n_finetune_alias():
    X, y = make_data()
    with pytest.warns(SkftrDeprecationWarning, match="test_size=budget - k"):
        old = list(BudgetSplitter(budget=200, n_finetune=50, n_splits=3, random_state=0)
                   .split(X, y))
    new = list(BudgetSplitter(budget=200, test_size=150, n_splits=3, random_state=0)
               .split(X, y))
    for (tr1, te1), (tr2, te2) in zip(old, new):  # the same splits as test_size=budget - k
        np.testing.assert_array_equal(tr1, tr2)
        np.testing.assert_array_equal(te1, te2)
    with pytest.warns(SkftrDeprecationWarning):  # a share of the budget, as before
        train, test = next(BudgetSplitter(n_finetune=0.25, random_state=0).split(X, y))
    assert test.size == 225 and train.size == 100 + 75
    with warnings.catch_warnings():  # the new API does not warn
        warnings.simplefilter("error")
        next(BudgetSplitter(budget=200, random_state=0).split(X, y))


def test_reproducible():
    X, y = make_data()
    cv = BudgetSplitter(budget=100, test_size=70, n_splits=3, random_state=7)
    first, second = list(cv.split(X, y)), list(cv.split(X, y))
    for (tr1, te1), (tr2, te2) in zip(first, second):
        np.testing.assert_array_equal(tr1, tr2)
        np.testing.assert_array_equal(te1, te2)
    # a RandomState instance moves on between calls, like scikit-learn's splitters
    cv = BudgetSplitter(budget=100, random_state=np.random.RandomState(0))
    assert not np.array_equal(next(cv.split(X, y))[1], next(cv.split(X, y))[1])


def test_groups_never_straddle():
    X, y = make_data()
    groups = np.random.default_rng(1).integers(0, 40, len(y))
    cv = BudgetSplitter(budget=200, test_size=140, n_splits=5, random_state=0)
    for train, test in cv.split(X, y, groups):
        train_labeled = train[np.isfinite(y[train])]
        assert not set(groups[train_labeled]) & set(groups[test])
        assert 0 < test.size <= 140 and train_labeled.size + test.size <= 200
        assert train_labeled.size + test.size >= 200 - 30  # greedy filling stays close
        assert np.isin(np.flatnonzero(np.isnan(y)), train).all()
    search = GridSearchCV(LabeledRidge(), {"alpha": [0.01, 1.0]}, cv=cv)
    search.fit(X, y, groups=groups)  # groups reach the splitter through scikit-learn
    assert search.n_splits_ == 5


def test_works_with_sklearn_model_selection():
    X, y = make_data()
    cv = BudgetSplitter(budget=150, test_size=110, n_splits=3, random_state=0)
    assert check_cv(cv) is cv
    scores = cross_val_score(LabeledRidge(), X, y, cv=cv)
    assert scores.shape == (3,) and np.all(scores > 0.8)
    result = cross_validate(LabeledRidge(), X, y, cv=cv, return_estimator=True)
    assert [est.n_fit_ for est in result["estimator"]] == [40, 40, 40]
    search = GridSearchCV(LabeledRidge(), {"alpha": [0.01, 1000.0]}, cv=cv).fit(X, y)
    assert search.best_params_ == {"alpha": 0.01}
    texts = [f"row {i}" for i in range(len(y))]  # X as a list of texts
    assert sum(1 for _ in cv.split(texts, y)) == 3


def _ftr_problem(rng, n_labeled, n_unlabeled, d=3):
    """Linear data: OLS on s rows leaves an error variance of about 1 + d / s."""
    X = rng.normal(size=(n_labeled + n_unlabeled, d))
    y = X @ np.full(d, 0.3) + rng.normal(size=len(X))
    y[n_labeled:] = np.nan
    return X, y


def test_grid_search_over_the_estimators_n_finetune(rng):
    """The one-knob contract: candidates fine-tune n_finetune of the train labels, rectify
    with the rest, and are scored with the test labels joining their rectification, so the
    score is minus the variance of an estimate from the whole budget whatever test_size."""
    X, y = _ftr_problem(rng, 400, 3000)
    grid = [50, 100, 200]
    scores = {}
    for test_size in (0.1, 0.3):
        cv = BudgetSplitter(budget=400, n_splits=5, test_size=test_size,
                            random_state=rng.integers(2**31))
        est = FineTuneRectifyEstimator(Ridge(), crossfit=None, random_state=0)
        search = GridSearchCV(est, {"n_finetune": grid}, cv=cv).fit(X, y)
        assert search.best_params_["n_finetune"] in grid
        scores[test_size] = -search.cv_results_["mean_test_score"]
        best = search.best_estimator_  # refitted on every row: the whole budget
        assert best.n_finetune_ + best.n_rectify_ == 400
    # V(s) ~ sigma^2 (1 + d/s) / (400 - s) + Var(f) / m, Var(f) = 0.27, m = 3000, with
    # sigma^2 the noise variance of this draw's budget (its sd over draws is 0.035 V(s));
    # scoring with the train or the test labels alone would be off by 50% or more at 0.3
    sigma2 = np.var(y[:400] - X[:400] @ np.full(3, 0.3))
    for s, v_small, v_large in zip(grid, scores[0.1], scores[0.3]):
        target = sigma2 * (1 + 3 / s) / (400 - s) + 0.27 / 3000
        assert v_small == pytest.approx(target, rel=0.2)
        assert v_large == pytest.approx(target, rel=0.2)
    assert scores[0.1][0] < scores[0.1][2] and scores[0.3][0] < scores[0.3][2]


def test_grid_search_candidate_that_does_not_fit_is_named(rng):
    X, y = _ftr_problem(rng, 400, 500)
    est = FineTuneRectifyEstimator(Ridge(), crossfit=None)
    search = GridSearchCV(est, {"n_finetune": [315]}, error_score="raise",
                          cv=BudgetSplitter(budget=400, n_splits=2))  # 320 train labels
    with pytest.raises(ValueError, match="n_finetune"):
        search.fit(X, y)


def test_splitter_as_the_estimators_single_split(rng):
    X, y = _ftr_problem(rng, 300, 500)
    law = Law(0.5, 0.3, 0.1)
    splitter = BudgetSplitter(scaling_law=law, random_state=0)
    est = FineTuneRectifyEstimator(Ridge(), crossfit=None, n_finetune=splitter).fit(X, y)
    s_star = optimal_allocation(300, law).n_finetune
    assert (est.n_finetune_, est.n_rectify_) == (s_star, 300 - s_star)


@pytest.mark.parametrize("params, match", [
    (dict(budget=301), "exceeds"),
    (dict(budget=100, test_size=100), "test_size=100 gives 100"),
    (dict(budget=100, test_size=150), "test_size"),
    (dict(budget=100, test_size=0), "test_size"),
    (dict(budget=100, test_size=1.5), "test_size"),
    (dict(budget=100, test_size=0.001), "test_size=0.001 gives 0"),
    (dict(budget=100, test_size="half"), "test_size"),
    (dict(budget=100, test_size=10, scaling_law=Law(1, 1, 0)), "at most one"),
    (dict(budget=100, test_size=10, n_finetune=10), "at most one"),
    (dict(budget=100, scaling_law="law"), "scaling_law"),
    (dict(budget=30, scaling_law=Law(1, 1, 0), min_rectify=30), "too small"),
    (dict(budget=100, min_rectify=0, scaling_law=Law(1, 1, 0)), "min_rectify"),
    (dict(budget=1), "budget"),
    (dict(budget=50.0), "budget"),
    (dict(budget=100, n_splits=0), "n_splits"),
    (dict(budget=100, random_state="seed"), "random_state"),
])
def test_bad_input(params, match):
    X, y = make_data()
    with pytest.raises(ValueError, match=match):
        next(BudgetSplitter(**params).split(X, y))


@pytest.mark.filterwarnings("ignore::skftr.exceptions.SkftrDeprecationWarning")
@pytest.mark.parametrize("n_finetune, match", [(0, "n_finetune"), (100, "n_finetune=100 gives 0"),
                                               (1.5, "n_finetune")])
def test_bad_deprecated_n_finetune(n_finetune, match):
    X, y = make_data()
    with pytest.raises(ValueError, match=match):
        next(BudgetSplitter(budget=100, n_finetune=n_finetune).split(X, y))


def test_bad_y_and_groups():
    X, y = make_data()
    with pytest.raises(ValueError, match="needs y"):
        next(BudgetSplitter().split(X))
    with pytest.raises(ValueError, match="X has 400 rows but y has 2"):
        next(BudgetSplitter().split(X, y[:2]))
    with pytest.raises(ValueError, match="infinite"):
        next(BudgetSplitter().split(X, np.r_[np.inf, y[1:]]))
    y_text = y.astype(object)
    y_text[3] = "x"
    with pytest.raises(ValueError, match=r"y\[3\] = 'x' is not a number"):
        next(BudgetSplitter().split(X, y_text))
    with pytest.raises(ValueError, match="at least 2"):
        next(BudgetSplitter().split(X[:3], [1.0, np.nan, np.nan]))
    groups = np.arange(len(y)) % 2  # two huge groups cannot fill the budget
    with pytest.raises(ValueError, match="groups"):
        next(BudgetSplitter(budget=100).split(X, y, groups))
    with pytest.raises(ValueError, match="but groups has 10"):
        next(BudgetSplitter(budget=100).split(X, y, groups[:10]))
    with pytest.raises(ValueError, match="n_splits"):
        BudgetSplitter(n_splits=-1).get_n_splits()
