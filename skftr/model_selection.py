"""BudgetSplitter: random splits of a human-label budget for scikit-learn model selection.

Rows with a finite ``y`` are labeled, rows with NaN ``y`` unlabeled. Each split draws
``budget`` labeled rows and holds a ``test_size`` of them out (docs/method.md §5):

    train = every unlabeled row + the other budget rows   (the estimator fits on these)
    test  = the held-out budget rows                       (the estimator is scored on these)

Labeled rows beyond the budget are in neither. The only fine-tuning size in a grid search
is the estimator's ``n_finetune``: a candidate fine-tunes ``n_finetune`` of the train
labels, rectifies with the others, and its ``score`` adds the test labels to its
rectification rows, so it is scored as if fitted on the whole budget.
"""
import warnings
from numbers import Integral

import numpy as np
from sklearn.model_selection import BaseShuffleSplit
from sklearn.model_selection._split import GroupsConsumerMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (HasMethods, Interval, RealNotInt,
                                             validate_parameter_constraints)
from sklearn.utils.validation import _num_samples, check_array

from ._inputs import check_labels, resolve_size
from .allocation import optimal_allocation
from .exceptions import SkftrDeprecationWarning

__all__ = ["BudgetSplitter"]

_SIZE = [Interval(Integral, 1, None, closed="left"), Interval(RealNotInt, 0, 1, closed="neither")]


class BudgetSplitter(GroupsConsumerMixin, BaseShuffleSplit):
    """Random budget splits: the unlabeled rows and part of the budget train, the rest tests.

    Parameters
    ----------
    budget : int >= 2, default=None
        Labeled rows drawn per split (the human budget ``n``); None uses all of them.
    test_size : int or float in (0, 1), default=None
        Budget rows held out per split: a count, or a share of ``budget`` (rounded).
        None is 0.2: a 400-label budget leaves 320 train labels, room for any candidate
        ``n_finetune <= 320 - min_rectify`` of the estimator.
    scaling_law : fitted ScalingLaw, default=None
        The paper's single split (Wang, Ye & Zhao §4; docs/method.md §5): ``n - s*``
        test (rectification) rows with
        ``s* = optimal_allocation(n, scaling_law, min_rectify=...).n_finetune``, so the
        train fold holds the ``s*`` fine-tuning rows. Give ``test_size`` or
        ``scaling_law``, not both.
    n_splits : int, default=5
        Independent random splits.
    min_rectify : int, default=10
        With ``scaling_law``: the smallest rectification set of the allocation.
    random_state : int, RandomState instance or None, default=None
        An int gives the same splits on every call of :meth:`split`.
    n_finetune : int or float in (0, 1), default=None
        Deprecated: ``n_finetune=k`` means ``test_size = budget - k`` and emits a
        :class:`~skftr.exceptions.SkftrDeprecationWarning`; set ``n_finetune`` on the
        estimator instead.

    Notes
    -----
    With ``groups`` whole groups of labeled rows are assigned (a group never straddles
    train and test, nor the budget): groups are taken in random order while they fit in
    the budget, then in the test fold, so the sizes are met as closely as the group sizes
    allow, never exceeded. Unlabeled rows are always in train.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.r_[np.arange(100.0), np.full(50, np.nan)]
    >>> cv = BudgetSplitter(budget=60, test_size=40, random_state=0)
    >>> train, test = next(cv.split(np.zeros((150, 1)), y))
    >>> len(train), len(test)   # 50 unlabeled + 20 budget rows; 40 held out
    (70, 40)

    In a grid search the estimator's ``n_finetune`` is the only fine-tuning size::

        GridSearchCV(FineTuneRectifyEstimator(model, crossfit=None),
                     {"n_finetune": [50, 100, 200]}, cv=BudgetSplitter(budget=400))
    """

    _default_test_size = 0.2
    _parameter_constraints = {
        "budget": [Interval(Integral, 2, None, closed="left"), None],
        "test_size": _SIZE + [None],
        "scaling_law": [HasMethods(["predict"]), None],
        "n_splits": [Interval(Integral, 1, None, closed="left")],
        "min_rectify": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "n_finetune": _SIZE + [None],
    }

    def __init__(self, budget=None, *, test_size=None, scaling_law=None, n_splits=5,
                 min_rectify=10, random_state=None, n_finetune=None):
        self.budget = budget
        self.test_size = test_size
        self.scaling_law = scaling_law
        self.n_splits = n_splits
        self.min_rectify = min_rectify
        self.random_state = random_state
        self.n_finetune = n_finetune

    def _validate_params(self):
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        validate_parameter_constraints(self._parameter_constraints, params,
                                       caller_name=type(self).__name__)

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of splits, ``n_splits`` (the arguments are ignored)."""
        self._validate_params()
        return self.n_splits

    def split(self, X, y=None, groups=None):
        """Yield ``(train, test)`` index arrays.

        Parameters
        ----------
        X : array-like or list of texts, n_samples rows
        y : array-like of shape (n_samples,)
            Labels; NaN marks unlabeled rows (required).
        groups : array-like of shape (n_samples,), default=None
            Group labels; a group's labeled rows are never split between train and test.

        Yields
        ------
        train : ndarray of int
            Every unlabeled row and the budget rows not held out.
        test : ndarray of int
            The held-out budget rows (all labeled).
        """
        if y is None:
            raise ValueError("BudgetSplitter.split needs y: NaN marks the unlabeled rows")
        n_samples = _num_samples(X)
        y = check_labels(y, n_samples)
        if groups is not None:
            groups = check_array(groups, input_name="groups", ensure_2d=False, dtype=None)
            if groups.shape[0] != n_samples:
                raise ValueError(f"X has {n_samples} rows but groups has {groups.shape[0]}; "
                                 "they must have the same length")
        return super().split(X, y, groups)

    def _iter_indices(self, X, y, groups=None):
        """Draw the splits; ``y`` and ``groups`` come validated from :meth:`split`."""
        self._validate_params()
        labeled = np.isfinite(y)
        unlabeled, rows = np.flatnonzero(~labeled), np.flatnonzero(labeled)
        budget, n_test = self._sizes(rows.size)
        codes = np.arange(rows.size) if groups is None else np.unique(
            groups[rows], return_inverse=True)[1]
        counts = np.bincount(codes)
        rng = check_random_state(self.random_state)
        for _ in range(self.n_splits):
            chosen = _fill(rng.permutation(counts.size), counts, budget)
            test_groups = _fill(chosen, counts, n_test)
            train_groups = np.setdiff1d(chosen, test_groups)
            if test_groups.size == 0 or train_groups.size == 0:
                raise ValueError(
                    f"the groups are too large to put at least one labeled row in both train "
                    f"and test within budget={budget} and {n_test} test rows"
                )
            train = rows[np.isin(codes, train_groups)]
            test = rows[np.isin(codes, test_groups)]
            yield np.sort(np.concatenate([unlabeled, train])), np.sort(test)

    def _sizes(self, n_labeled):
        """``(budget, n_test)`` for ``n_labeled`` labeled rows, validated."""
        budget = n_labeled if self.budget is None else self.budget
        if budget > n_labeled:
            raise ValueError(f"budget={budget} exceeds the {n_labeled} labeled rows (finite y)")
        if budget < 2:
            raise ValueError(f"y has {n_labeled} labeled row(s); BudgetSplitter needs at least "
                             "2 (one for train, one for test)")
        given = [name for name in ("test_size", "scaling_law", "n_finetune")
                 if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of test_size and scaling_law (n_finetune is "
                             f"their deprecated alias), got {' and '.join(given)}")
        source = given[0] if given else "test_size"
        if self.n_finetune is not None:
            warnings.warn(
                "BudgetSplitter(n_finetune=k) is deprecated and will be removed in the next "
                "release: it means test_size=budget - k. Set n_finetune on the estimator and "
                "test_size (or nothing) on the splitter", SkftrDeprecationWarning, stacklevel=4)
            n_test = budget - resolve_size(self.n_finetune, budget, "n_finetune")
        elif self.scaling_law is not None:
            allocation = optimal_allocation(budget, self.scaling_law,
                                            min_rectify=self.min_rectify)
            n_test = allocation.n_rectify
        else:
            size = self._default_test_size if self.test_size is None else self.test_size
            n_test = resolve_size(size, budget, "test_size")
        if not 1 <= n_test <= budget - 1:
            value = getattr(self, source)
            raise ValueError(
                f"{source}={value!r} gives {n_test} test row(s) out of budget={budget}; "
                f"at least 1 must be held out and at least 1 left to train"
            )
        return budget, n_test


def _fill(order, counts, capacity):
    """Groups taken in ``order`` while their rows fit in ``capacity`` (greedy, skipping)."""
    sizes = counts[order]
    if np.all(sizes == 1):  # ungrouped rows: exactly the first `capacity`
        return order[:capacity]
    taken, total = [], 0
    for group, size in zip(order, sizes):
        if total + size <= capacity:
            taken.append(group)
            total += size
            if total == capacity:
                break
    return np.asarray(taken, dtype=int)
