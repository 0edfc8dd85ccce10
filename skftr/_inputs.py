"""Input checks for texts and regression targets, shared by every text estimator.

numpy only (no torch), so :mod:`skftr.estimator` can use them without loading a model.
"""
import hashlib

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


def resolve_size(value, n, name):
    """The size rule used everywhere: an int is a count, a float in (0, 1) a share of ``n``.

    Returns ``int(value)`` or ``round(value * n)``; raises ``ValueError`` naming ``name``
    for anything else (bools included).
    """
    from numbers import Integral, Real

    if isinstance(value, Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, Real) and not isinstance(value, bool) and 0 < value < 1:
        return int(round(float(value) * n))
    raise ValueError(f"{name} must be an int (a count) or a float in (0, 1) (a share of {n}), "
                     f"got {value!r}")


def check_labels(y, n_samples, name="y"):
    """Labels with NaN marking unlabeled rows: 1-d float64, finite or NaN, one per row.

    Raises ``ValueError`` naming the first infinite value, a non-numeric label (with its
    row and value) or a length that differs from ``n_samples``.
    """
    if y is None:
        raise ValueError(f"this estimator requires {name} to be passed, but the target {name} "
                         "is None: give one label per row, NaN for an unlabeled row")
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        from sklearn.utils.validation import column_or_1d

        arr = column_or_1d(arr, warn=True)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (one label per row), got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        out = np.empty(arr.shape[0])
        for i, value in enumerate(arr):
            try:
                out[i] = np.nan if value is None else float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name}[{i}] = {value!r} is not a number; labels must be "
                                 "numeric (NaN or None for an unlabeled row)") from None
        arr = out
    arr = arr.astype(np.float64)
    if arr.shape[0] != n_samples:
        raise ValueError(f"X has {n_samples} rows but {name} has {arr.shape[0]}; they must "
                         "have the same length")
    bad = np.flatnonzero(np.isinf(arr))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is infinite; labels must be finite (NaN marks an "
                         "unlabeled row)")
    return arr


def looks_like_texts(X):
    """A str, a sequence holding a str, or a single non-numeric column."""
    if isinstance(X, str):
        return True
    if hasattr(X, "columns") and hasattr(X, "iloc"):
        return X.shape[1] == 1 and X.dtypes.iloc[0].kind in "OSU"
    if hasattr(X, "dtype") and hasattr(X, "shape") and getattr(X, "format", None) is None:
        one_col = len(X.shape) == 1 or (len(X.shape) == 2 and X.shape[1] == 1)
        return X.dtype.kind in "OSU" and one_col
    if isinstance(X, (list, tuple)):  # any str: texts (check_texts names a bad row)
        return any(isinstance(v, str) for v in X)
    return False


def table_columns(X, text_column, score_columns, name):
    """The text column and the numeric score columns of a DataFrame ``X``."""
    if not (hasattr(X, "columns") and hasattr(X, "iloc")):
        raise TypeError(f"{name} must be a DataFrame when text_column is set, "
                        f"got {type(X).__name__}")
    wanted = [text_column] + list(score_columns or ())
    missing = [c for c in wanted if c not in X.columns]
    if missing:
        raise ValueError(f"{name} has no column(s) {missing}; its columns are {list(X.columns)}")
    if not score_columns:
        return X[text_column], None
    scores = np.empty((len(X), len(score_columns)))
    for j, column in enumerate(score_columns):
        values = check_labels(X[column], len(X), name=f"{name}[{column!r}]")
        if np.isnan(values).any():
            raise ValueError(f"score column {column!r} is missing a value at row "
                             f"{int(np.flatnonzero(np.isnan(values))[0])}; every row needs a score")
        scores[:, j] = values
    return X[text_column], scores


def row_keys(X, key=b""):
    """A 64-bit fingerprint per row (text or numeric row), stable across processes.

    ``blake2b(row, key=key)``: UTF-8 bytes of a text, raw float64 bytes of a numeric row.
    """
    rows = X.tolist() if X.dtype == object else [r.tobytes() for r in np.ascontiguousarray(X)]
    digest = [hashlib.blake2b(r.encode() if isinstance(r, str) else r, digest_size=8,
                              key=key).digest() for r in rows]
    return np.frombuffer(b"".join(digest), dtype=np.uint64) if digest else np.empty(0, np.uint64)


def validate(est, X, y, X_unlabeled, reset, name):
    """The estimator's one validation of its input: ``(X, scores, y)``.

    ``X`` becomes an object array of texts (``est._text_input``; from the DataFrame column
    ``est.text_column`` when set, with the numeric ``est.score_columns`` as ``scores``) or a
    float array checked by scikit-learn; ``X_unlabeled`` rows are appended with NaN labels.
    """
    X, scores = _validate_X(est, X, name, reset)
    if X_unlabeled is not None:
        X_u, scores_u = _validate_X(est, X_unlabeled, "X_unlabeled", False)
        X = np.concatenate([X, X_u])
        scores = None if scores is None else np.vstack([scores, scores_u])
    if y is not None or reset:
        y = check_labels(y, X.shape[0] - (0 if X_unlabeled is None else X_u.shape[0]))
        if X_unlabeled is not None:
            y = np.concatenate([y, np.full(X_u.shape[0], np.nan)])
    return X, scores, y


def _validate_X(est, X, name, reset):
    if est.text_column is not None:
        texts, scores = table_columns(X, est.text_column, est.score_columns, name)
        return np.asarray(check_texts(texts, name), dtype=object), scores
    if est._text_input:
        return np.asarray(check_texts(X, name), dtype=object), None
    if X is None:
        raise ValueError(f"{name} is None; expected a 2-d numeric array")
    if looks_like_texts(X):
        raise TypeError(f"{name} holds texts but the estimator was fitted on numbers")
    from sklearn.utils.validation import validate_data

    return validate_data(est, X=X, reset=reset, dtype=[np.float64, np.float32]), None
