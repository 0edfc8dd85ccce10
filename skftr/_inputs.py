"""Input checks for texts and regression targets, shared by every text estimator.

numpy only (no torch), so :mod:`skftr.estimator` can use them without loading a model.
"""
import numpy as np

__all__ = ["check_texts", "check_target"]


def check_texts(X, name="X"):
    """Validate a collection of texts and return it as a list of ``str``.

    Accepts a list or tuple, a 1-d ndarray (or 2-d with one column), a pandas
    Series or a one-column DataFrame. Raises ``TypeError`` for a single string
    or a non-text element, ``ValueError`` for an empty collection, ``None``,
    empty or whitespace-only texts, naming the argument and the first bad row.
    """
    if X is None:
        raise ValueError(f"{name} must be a sequence of texts, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of texts, got a single {type(X).__name__}; wrap it in a list")
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(f"{name} as a DataFrame must have exactly one column of texts, got {X.shape[1]}")
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas Series
        X = X.to_numpy(dtype=object)
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"{name} must be 1-dimensional (one text per row), got an array of shape {X.shape}")
        X = X.tolist()
    if not isinstance(X, (list, tuple)):
        try:
            X = list(X)
        except TypeError:
            raise TypeError(f"{name} must be a sequence of texts, got {type(X).__name__}") from None
    if len(X) == 0:
        raise ValueError(f"{name} is empty: at least one text is required")
    texts = []
    for i, text in enumerate(X):
        if text is None or (isinstance(text, float) and np.isnan(text)):
            raise ValueError(f"{name}[{i}] is missing (None/NaN); every row needs a text")
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{name}[{i}] is empty or whitespace only; every row needs a text")
        texts.append(str(text))
    return texts


def check_target(y, n_samples, name="y"):
    """Validate regression targets: 1-d, finite floats, one per text.

    Returns
    -------
    ndarray of float64, shape (n_samples,)
    """
    if y is None:
        raise ValueError(f"{name} is required (one float per text), got None")
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric (one float per text)") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different lengths: {n_samples} texts but {arr.shape[0]} targets")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} must be finite; {bad.size} value(s) are NaN or infinite, first at {name}[{bad[0]}]")
    return arr
