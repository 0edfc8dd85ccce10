import numpy as np
import pytest
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.model_selection import (GridSearchCV, check_cv, cross_val_score,
                                     cross_validate)

from skftr.allocation import optimal_allocation
from skftr.model_selection import BudgetSplitter


class LabelledRidge(RegressorMixin, BaseEstimator):
    """Ridge that learns from the labelled rows only (NaN y = unlabelled)."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def fit(self, X, y):
        labelled = np.isfinite(y)
        self.ridge_ = Ridge(alpha=self.alpha).fit(X[labelled], y[labelled])
        self.n_fit_ = int(labelled.sum())
        return self

    def predict(self, X):
        return self.ridge_.predict(X)


class Law:
    def __init__(self, a, alpha, b):
        self.a_, self.alpha_, self.b_ = a, alpha, b

    def predict(self, s):
        return self.a_ * np.asarray(s, float) ** -self.alpha_ + self.b_


def make_data(n_labelled=300, n_unlabelled=100, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_labelled + n_unlabelled, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=len(X))
    y[rng.permutation(len(X))[:n_unlabelled]] = np.nan
    return X, y


def test_sizes_disjointness_and_unlabelled_rows():
    X, y = make_data()
    unlabelled = np.flatnonzero(np.isnan(y))
    cv = BudgetSplitter(budget=200, n_finetune=50, n_splits=4, random_state=0)
    assert cv.get_n_splits() == 4
    splits = list(cv.split(X, y))
    assert len(splits) == 4
    for train, test in splits:
        finetune = np.setdiff1d(train, unlabelled)
        assert finetune.size == 50 and test.size == 150
        assert np.isin(unlabelled, train).all()  # every unlabelled row is in train
        assert np.isfinite(y[test]).all()
        assert np.intersect1d(train, test).size == 0
        # 100 labelled rows beyond the budget are in neither
        assert len(np.union1d(train, test)) == len(y) - 100
    assert not np.array_equal(splits[0][1], splits[1][1])  # independent draws


def test_share_budget_none_and_scaling_law():
    X, y = make_data()
    train, test = next(BudgetSplitter(n_finetune=0.25, random_state=0).split(X, y))
    assert test.size == 225 and train.size == 100 + 75
    law = Law(0.287, 0.297, 0.042)
    cv = BudgetSplitter(budget=250, scaling_law=law, min_rectify=20, random_state=0)
    train, test = next(cv.split(X, y))
    expected = optimal_allocation(250, law, min_rectify=20)
    assert test.size == expected.n_rectify and train.size == 100 + expected.n_finetune


def test_reproducible():
    X, y = make_data()
    first = list(BudgetSplitter(budget=100, n_finetune=30, n_splits=3, random_state=7).split(X, y))
    cv = BudgetSplitter(budget=100, n_finetune=30, n_splits=3, random_state=7)
    for (tr1, te1), (tr2, te2) in zip(first, list(cv.split(X, y))):
        np.testing.assert_array_equal(tr1, tr2)
        np.testing.assert_array_equal(te1, te2)
    # a RandomState instance moves on between calls, like scikit-learn's splitters
    cv = BudgetSplitter(budget=100, n_finetune=30, random_state=np.random.RandomState(0))
    assert not np.array_equal(next(cv.split(X, y))[1], next(cv.split(X, y))[1])


def test_groups_never_straddle():
    X, y = make_data()
    groups = np.random.default_rng(1).integers(0, 40, len(y))
    cv = BudgetSplitter(budget=200, n_finetune=60, n_splits=5, random_state=0)
    for train, test in cv.split(X, y, groups):
        finetune = train[np.isfinite(y[train])]
        assert not set(groups[finetune]) & set(groups[test])
        assert 0 < finetune.size <= 60 and finetune.size + test.size <= 200
        assert finetune.size + test.size >= 200 - 30  # greedy filling stays close
        assert np.isin(np.flatnonzero(np.isnan(y)), train).all()


def test_works_with_sklearn_model_selection():
    X, y = make_data()
    cv = BudgetSplitter(budget=150, n_finetune=40, n_splits=3, random_state=0)
    assert check_cv(cv) is cv
    scores = cross_val_score(LabelledRidge(), X, y, cv=cv)
    assert scores.shape == (3,) and np.all(scores > 0.8)
    result = cross_validate(LabelledRidge(), X, y, cv=cv, return_estimator=True)
    assert [est.n_fit_ for est in result["estimator"]] == [40, 40, 40]
    search = GridSearchCV(LabelledRidge(), {"alpha": [0.01, 1000.0]}, cv=cv).fit(X, y)
    assert search.best_params_ == {"alpha": 0.01}
    texts = [f"row {i}" for i in range(len(y))]  # X as a list of texts
    assert sum(1 for _ in cv.split(texts, y)) == 3


@pytest.mark.parametrize("params, match", [
    (dict(budget=301, n_finetune=10), "exceeds"),
    (dict(budget=30, n_finetune=25), "min_rectify"),
    (dict(budget=100, n_finetune=0), "n_finetune"),
    (dict(budget=100, n_finetune=1.5), "n_finetune"),
    (dict(budget=100), "exactly one"),
    (dict(budget=100, n_finetune=10, scaling_law=Law(1, 1, 0)), "exactly one"),
    (dict(budget=1, n_finetune=1), "budget"),
    (dict(budget=50.0, n_finetune=10), "budget"),
    (dict(budget=100, n_finetune=10, n_splits=0), "n_splits"),
])
def test_bad_input(params, match):
    X, y = make_data()
    with pytest.raises(ValueError, match=match):
        next(BudgetSplitter(**params).split(X, y))


def test_y_required_and_large_groups():
    X, y = make_data()
    with pytest.raises(ValueError, match="needs y"):
        next(BudgetSplitter(n_finetune=10).split(X))
    groups = np.arange(len(y)) % 2  # two huge groups cannot fill the budget
    with pytest.raises(ValueError, match="groups"):
        next(BudgetSplitter(budget=100, n_finetune=10).split(X, y, groups))
