"""Shared input checks for :mod:`skftr.rectify` (numpy only).

Every public function of the package validates its arguments through these
helpers, so that bad input always raises a ``ValueError`` or ``TypeError``
naming the offending argument.
"""
from collections.abc import Iterable
from numbers import Real

import numpy as np

_NUMERIC_KINDS = "biuf"  # bool, signed int, unsigned int, float


def check_alpha(alpha, name="alpha"):
    """Return ``alpha`` as a float strictly inside (0, 1)."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, Real):
        raise TypeError(f"{name} must be a real number in (0, 1), got {alpha!r}")
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {alpha!r}")
    return alpha


# The one registry of methods, shared by every estimand: lam = 0, lam = 1, lam tuned.
METHODS = ("classical", "ppi", "ppi++")


def check_method(method, n_predictors):
    """Return ``method`` if it is one of :data:`METHODS` and fits ``n_predictors``.

    ``"ppi"`` fixes every weight at 1, which is ambiguous with several
    predictors (their sum would be counted p times).
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    if method == "ppi" and n_predictors > 1:
        raise ValueError(f"method='ppi' (every weight fixed at 1) is ambiguous with {n_predictors} "
                         "predictors; use method='ppi++' (weights tuned) or 'classical'")
    return method


def as_numeric(x, name):
    """``np.asarray(x)`` with a numeric dtype; no copy for numeric arrays."""
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array, got a string")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a numeric array ({exc})") from None
    if arr.dtype.kind == "O":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a numeric array, got non-numeric objects") from None
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr


def check_finite(arr, name):
    """Raise ``ValueError`` naming ``name`` if ``arr`` holds NaN or inf."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")


def as_1d(x, name, *, min_len=2):
    """Validate a finite 1-d numeric array as float64."""
    arr = as_numeric(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.shape[0] < min_len:
        raise ValueError(f"{name} needs at least {min_len} values, got {arr.shape[0]}")
    arr = np.asarray(arr, dtype=np.float64)
    check_finite(arr, name)
    return arr


def as_2d(x, name, *, min_len=2):
    """Validate a 2-d numeric float64 design matrix (a 1-d array is one column)."""
    arr = as_numeric(x, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-dimensional (n_samples, n_features), "
                         f"got shape {arr.shape}")
    if arr.shape[0] < min_len:
        raise ValueError(f"{name} needs at least {min_len} rows, got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least one column")
    arr = np.asarray(arr, dtype=np.float64)
    check_finite(arr, name)
    return arr


def prediction_columns(arr, name, *, units="n", by_model=False, n_predictors=None):
    """``arr`` with its predictor axis: shape (units, p), or (K, units, p) with ``by_model``.

    A missing predictor axis is added (p = 1). ``units`` names the units axis in
    messages; ``n_predictors`` is the p of ``yhat``, which the unlabeled
    predictions must match.
    """
    lead = "K, " if by_model else ""
    base = 1 + by_model
    if arr.ndim == base:
        arr = arr[..., None]
    if arr.ndim != base + 1:
        raise ValueError(f"{name} must have shape ({lead}{units},) or ({lead}{units}, p), "
                         f"got shape {arr.shape}")
    if arr.shape[-1] < 1:
        raise ValueError(f"{name} needs at least one predictor (column)")
    if n_predictors is not None and arr.shape[-1] != n_predictors:
        raise ValueError(f"{name} holds {arr.shape[-1]} predictor(s) per unit (last axis) but yhat "
                         f"holds {n_predictors}; expected shape ({lead}{units}, {n_predictors})")
    return arr


def as_predictions(x, name, *, units="n", by_model=False, n_predictors=None, min_len=2):
    """Validate predictions as a finite float64 array (see :func:`prediction_columns`)."""
    arr = prediction_columns(as_numeric(x, name), name, units=units, by_model=by_model,
                             n_predictors=n_predictors)
    if arr.shape[-2] < min_len:
        raise ValueError(f"{name} needs predictions for at least {min_len} units, "
                         f"got {arr.shape[-2]}")
    arr = np.asarray(arr, dtype=np.float64)
    check_finite(arr, name)
    return arr


def as_weights(x, name, n):
    """Design weights (inverse inclusion probabilities): ``n`` finite values > 0, float64."""
    arr = as_1d(x, name, min_len=1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but there are {n} units; one "
                         "weight per unit")
    if not (arr > 0).all():
        bad = int(np.flatnonzero(~(arr > 0))[0])
        raise ValueError(f"{name} must be positive (an inverse inclusion probability); unit "
                         f"{bad} has {float(arr[bad])}")
    return arr


def as_fold_ids(x, name):
    """Validate a 1-d array of non-negative integer fold ids."""
    arr = as_numeric(x, name)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer fold ids, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must hold fold ids 0..K-1, got {arr.min()}")
    return arr.astype(np.intp, copy=False)


def check_same_length(**arrays):
    """Raise ``ValueError`` unless all arrays have the same first dimension."""
    names = list(arrays)
    first = names[0]
    for name in names[1:]:
        if arrays[name].shape[0] != arrays[first].shape[0]:
            raise ValueError(
                f"{name} has {arrays[name].shape[0]} rows but {first} has "
                f"{arrays[first].shape[0]}; they must have the same length"
            )


def is_chunked(x):
    """True when ``x`` is an iterable of 1-d chunks rather than one array.

    Arrays, array-likes (``__array__``) and lists/tuples of numbers are single
    arrays; generators, iterators, and lists/tuples of arrays are chunks.
    """
    if isinstance(x, (np.ndarray, str, bytes)) or hasattr(x, "__array__"):
        return False
    if isinstance(x, (list, tuple)):
        return any(np.ndim(el) > 0 for el in x)
    return isinstance(x, Iterable)
