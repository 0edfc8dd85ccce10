"""BudgetSplitter: a scikit-learn cross-validator for fine-tuning then rectification.

Rows with a finite ``y`` are labelled, rows with NaN ``y`` unlabelled. Each split draws
``budget`` labelled rows, gives ``n_finetune`` of them to fine-tuning and the rest to
rectification (METHOD.md section 5):

    train = every unlabelled row + the fine-tuning rows     (the model learns from these)
    test  = the rectification rows                            (the model is scored on these)

Labelled rows beyond the budget are in neither.
"""
from numbers import Integral, Real

import numpy as np
from sklearn.model_selection import BaseCrossValidator
from sklearn.model_selection._split import GroupsConsumerMixin
from sklearn.utils import check_random_state, indexable
from sklearn.utils.validation import _num_samples

from .allocation import optimal_allocation

__all__ = ["BudgetSplitter"]


class BudgetSplitter(GroupsConsumerMixin, BaseCrossValidator):
    """Random budget-constrained fine-tuning / rectification splits.

    Parameters
    ----------
    budget : int, default=None
        Labelled rows used per split (the human budget ``n``); None uses all of them.
    scaling_law : fitted ScalingLaw, default=None
        Chooses ``n_finetune = optimal_allocation(budget, scaling_law).n_finetune``.
    n_finetune : int or float, default=None
        Fine-tuning rows per split: an int, or a float in (0, 1) as a share of the
        budget. Give exactly one of ``scaling_law`` and ``n_finetune``.
    n_splits : int, default=1
        Independent random splits.
    min_rectify : int, default=10
        Smallest admissible rectification set.
    random_state : int, RandomState instance or None, default=None
        An int gives the same splits on every call of :meth:`split`.

    Notes
    -----
    With ``groups`` whole groups are assigned (a group never straddles fine-tuning and
    rectification, nor the budget): groups are taken in random order while they fit
    in the budget, then in the fine-tuning share, so the sizes are met as closely as
    the group sizes allow, never exceeded.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.r_[np.arange(100.0), np.full(50, np.nan)]
    >>> cv = BudgetSplitter(budget=60, n_finetune=20, random_state=0)
    >>> train, test = next(cv.split(np.zeros((150, 1)), y))
    >>> len(train), len(test)   # 50 unlabelled + 20 fine-tuning; 40 rectification
    (70, 40)
    """

    def __init__(self, budget=None, scaling_law=None, n_finetune=None, n_splits=1,
                 min_rectify=10, random_state=None):
        self.budget = budget
        self.scaling_law = scaling_law
        self.n_finetune = n_finetune
        self.n_splits = n_splits
        self.min_rectify = min_rectify
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of splits, ``n_splits``."""
        if not isinstance(self.n_splits, Integral) or self.n_splits < 1:
            raise ValueError(f"n_splits must be a positive integer, got {self.n_splits!r}")
        return int(self.n_splits)

    def _sizes(self, n_labelled):
        """(budget, n_finetune) for ``n_labelled`` labelled rows, validated."""
        if not isinstance(self.min_rectify, Integral) or self.min_rectify < 1:
            raise ValueError(f"min_rectify must be a positive integer, got {self.min_rectify!r}")
        budget = n_labelled if self.budget is None else self.budget
        if not isinstance(budget, Integral) or isinstance(budget, bool) or budget < 2:
            raise ValueError(f"budget must be an integer >= 2 or None, got {self.budget!r}")
        if budget > n_labelled:
            raise ValueError(f"budget={budget} exceeds the {n_labelled} labelled rows "
                             "(finite y)")
        if (self.scaling_law is None) == (self.n_finetune is None):
            raise ValueError("give exactly one of scaling_law and n_finetune")
        if self.scaling_law is not None:
            return budget, optimal_allocation(budget, self.scaling_law,
                                              min_rectify=self.min_rectify).n_finetune
        share = self.n_finetune
        if isinstance(share, Integral) and not isinstance(share, bool):
            n_ft = int(share)
        elif isinstance(share, Real) and 0 < share < 1:
            n_ft = int(round(share * budget))
        else:
            raise ValueError(f"n_finetune must be an int or a float in (0, 1), got {share!r}")
        if n_ft < 1 or budget - n_ft < self.min_rectify:
            raise ValueError(
                f"n_finetune={n_ft} does not fit the budget {budget}: need n_finetune >= 1 "
                f"and at least min_rectify={self.min_rectify} rectification rows"
            )
        return budget, n_ft

    def split(self, X, y=None, groups=None):
        """Yield ``(train, test)`` index arrays.

        Parameters
        ----------
        X : array-like or list of texts, n_samples rows
        y : array-like of shape (n_samples,) or (n_samples, k)
            Labels; NaN marks unlabelled rows (required).
        groups : array-like of shape (n_samples,), default=None
            Group labels; a group is never split between fine-tuning and rectification.

        Yields
        ------
        train : ndarray of int
            Every unlabelled row and the fine-tuning rows.
        test : ndarray of int
            The rectification rows.
        """
        if y is None:
            raise ValueError("BudgetSplitter.split needs y: NaN marks the unlabelled rows")
        X, y, groups = indexable(X, y, groups)
        n_samples = _num_samples(X)
        y = np.asarray(y, dtype=float).reshape(n_samples, -1)
        labelled = np.isfinite(y).all(axis=1)
        unlabelled_rows = np.flatnonzero(~labelled)
        rows = np.flatnonzero(labelled)
        budget, n_ft = self._sizes(rows.size)
        n_splits = self.get_n_splits()

        if groups is None:
            codes = np.arange(rows.size)
        else:
            _, codes = np.unique(np.asarray(groups)[rows], return_inverse=True)
        counts = np.bincount(codes)
        rng = check_random_state(self.random_state)
        for _ in range(n_splits):
            order = rng.permutation(counts.size)
            chosen = _fill(order, counts, budget)
            finetune_groups = _fill(chosen, counts, n_ft)
            rectify_groups = np.setdiff1d(chosen, finetune_groups)
            n_rect = counts[rectify_groups].sum()
            if finetune_groups.size == 0 or n_rect < self.min_rectify:
                raise ValueError(
                    f"the groups are too large to give a non-empty fine-tuning set and at "
                    f"least min_rectify={self.min_rectify} rectification rows within "
                    f"budget={budget}"
                )
            finetune = rows[np.isin(codes, finetune_groups)]
            rectify = rows[np.isin(codes, rectify_groups)]
            yield np.sort(np.concatenate([unlabelled_rows, finetune])), np.sort(rectify)


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
