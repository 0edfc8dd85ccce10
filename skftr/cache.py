"""Resumable, reusable prediction of many unlabeled texts, chunk by chunk on disk.

Cross-fitting by assignment (Wang, Ye & Zhao 2025, §2; docs/method.md §2 cross-fitting)
predicts each unlabeled text with one fold's predictors. Here the fold of a text is a
function of the text and of the fitted model only (:func:`assign_folds`), so chunks,
workers and reruns agree on it, and every chunk's predictions are written as one Parquet
file under ``cache_dir/<model fingerprint>/<sha256 of the chunk's texts>.parquet``
(atomically). A rerun, after an interruption or with a new rectification sample for the
same model, reads the chunks already there; a damaged one (unreadable or truncated file,
other rows, model or texts than its metadata promises) is recomputed with a warning,
never used.
"""
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np

from ._atomic import atomic_path
from ._inputs import check_texts

__all__ = ["assign_folds", "fingerprint", "iter_predictions", "predict_assigned",
           "predict_cached", "texts_digest"]

_FORMAT, _VERSION = "skftr.prediction-chunk", 1
_META_KEY = b"skftr"
_TORCH_PREDICTORS = ("LoRARegressor", "SentenceEmbedder")


# ------------------------------------------------------------------ identities
def fingerprint(model):
    """sha256 (hex) of everything that fixes a fitted model's predictions.

    The weights of every torch module (backbone, LoRA, head), the simple parameters and
    target scale of the torch predictors, and ``joblib.hash`` of the other (numpy,
    scikit-learn) fitted parts, fold by fold. Equal models give equal fingerprints in
    any process; a refitted or reloaded model may give another one (then the cache is
    simply not reused).

    Parameters
    ----------
    model : fitted FineTuneRectifyEstimator or FoldEnsemble
    """
    ensemble = _ensemble(model)
    digest = hashlib.sha256()
    _feed(digest, [ensemble.fold_weights, ensemble.names, ensemble.n_scores,
                   ensemble.text_input])
    seen = {}
    for fold in ensemble.members:
        for member in fold:
            _feed(digest, _member_digest(member, seen))
    return digest.hexdigest()


def _member_digest(member, seen):
    """sha256 of one fitted predictor (memoised: folds often share a featurizer)."""
    if id(member) in seen:
        return seen[id(member)]
    import joblib

    digest = hashlib.sha256(type(member).__name__.encode())
    kind = type(member).__name__
    if kind == "OptimizedPredictor":
        _feed(digest, [member.method, _member_digest(member.estimator, seen)])
    elif kind == "TextRidge":
        _feed(digest, [_member_digest(member.features_, seen), joblib.hash(member.ridge_)])
    elif kind in _TORCH_PREDICTORS:
        params = {k: v for k, v in member.get_params(deep=False).items()
                  if v is None or isinstance(v, (str, int, float, bool))}
        scale = [getattr(member, key, None) for key in ("y_mean_", "y_scale_")]
        module = getattr(member, "module_", None) or getattr(member, "model_")
        _feed(digest, [json.dumps(params, sort_keys=True, default=str), scale])
        for name, tensor in module.state_dict().items():
            _feed(digest, [name, tensor])
    else:
        digest.update(joblib.hash(member).encode())
    seen[id(member)] = digest.hexdigest()
    return seen[id(member)]


def _feed(digest, values):
    """Add ``values`` (a list of str, numbers, arrays, tensors, lists) to ``digest``."""
    for value in values:
        if hasattr(value, "detach"):  # a torch tensor: its raw bytes, any dtype
            import torch

            value = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
        if isinstance(value, np.ndarray):
            digest.update(f"{value.dtype}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, (list, tuple)):
            digest.update(b"[")
            _feed(digest, value)
            digest.update(b"]")
        else:
            digest.update(repr(value).encode())
        digest.update(b"\x00")


def texts_digest(texts):
    """sha256 (hex) of a sequence of texts (each length-prefixed, UTF-8)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


# ------------------------------------------------------------------ assignment
def assign_folds(rows, fold_weights, key):
    """The fold whose predictors predict each row, from the row and ``key`` only.

    ``u = blake2b(row, key) / 2^64`` (:func:`skftr._inputs.row_keys`) is uniform on
    [0, 1) for each distinct row, and the row goes to the fold ``k`` with
    ``w_0 + ... + w_{k-1} <= u < w_0 + ... + w_k``: fold ``k`` receives a share
    ``w_k = n_k / n`` of the rows in expectation, the assignment layout of cross-PPI
    (docs/method.md §2 cross-fitting; its rectification weights each fold by
    ``(n_k / n)(m / m_k)``, so the shares need not be exact). Chunks, workers, processes
    and ``FineTuneRectifyEstimator.estimate`` all agree on it.

    Parameters
    ----------
    rows : sequence of str, or ndarray of shape (m, d)
        Texts, or numeric rows (their float64 bytes are hashed).
    fold_weights : array-like of shape (K,)
        Non-negative, summing to 1.
    key : str
        The model's ``assignment_key_``, or its :func:`fingerprint` (at most 64 bytes
        are used).

    Returns
    -------
    ndarray of int, shape (m,)
    """
    from ._inputs import row_keys

    weights = np.asarray(fold_weights, dtype=float)
    X = np.asarray(rows)
    X = X.astype(object) if X.dtype.kind in "OUS" else \
        X.astype(np.float64).reshape(X.shape[0], -1)
    u = row_keys(X, key=key.encode()[:64]).astype(np.float64) / 2.0 ** 64
    bounds = np.cumsum(weights)[:-1] / weights.sum()
    return np.searchsorted(bounds, u, side="right").astype(np.int64)


def predict_assigned(ensemble, rows, folds, scores=None):
    """Predictions (m, p) of each row by its fold's predictors (``FoldEnsemble.predict_fold``).

    ``rows``: texts, or the validated array the ensemble was fitted on; ``scores``: its
    score columns, if any.
    """
    X = rows if isinstance(rows, np.ndarray) else np.asarray(rows, dtype=object)
    out = np.empty((X.shape[0], ensemble.n_predictors))
    for k in np.unique(folds):
        at = folds == k
        out[at] = ensemble.predict_fold(int(k), X[at], None if scores is None else scores[at])
    return out


# ------------------------------------------------------------------ the cache
def iter_predictions(model, texts, cache_dir=None, *, chunk_size=10_000, progress=False,
                     key=None):
    """Predict ``texts`` chunk by chunk in the assignment layout; yield each chunk's
    ``(predictions (k, p), folds (k,))``.

    With ``cache_dir``, a chunk already on disk for this model and these texts is read
    instead of predicted, and a new one is written there (atomically) before it is
    yielded. Parameters as in :func:`predict_cached`; ``key`` is the model's
    :func:`fingerprint` when the caller already has it. The folds come from
    :func:`assign_folds` with the estimator's ``assignment_key_`` (a bare
    ``FoldEnsemble``: its fingerprint), as in ``FineTuneRectifyEstimator.estimate``.
    """
    ensemble = _ensemble(model)
    texts = check_texts(texts, "texts")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    key = fingerprint(ensemble) if key is None else key
    assign = getattr(model, "assignment_key_", None) or key
    key = hashlib.sha256(f"{key}/{assign}".encode()).hexdigest()  # model and assignment
    folder = None if cache_dir is None else Path(cache_dir) / key[:32]
    bar, report = _progress(progress, len(texts))
    try:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start:start + chunk_size]
            yield _chunk(ensemble, chunk, key, assign, folder)
            bar.update(len(chunk))
            if report is not None:
                report(start + len(chunk), len(texts))
    finally:
        bar.close()


def predict_cached(model, texts, cache_dir, *, chunk_size=10_000, progress=False):
    """Predictions of unlabeled texts in the assignment layout, resumable and reusable.

    Parameters
    ----------
    model : fitted FineTuneRectifyEstimator or FoldEnsemble
        Texts in, no score columns.
    texts : sequence of str
    cache_dir : str or Path or None
        Where the chunks live (one sub-folder per model fingerprint); None: no cache.
    chunk_size : int, default=10_000
        Texts per chunk (and per file).
    progress : bool or callable, default=False
        True: a tqdm bar; a callable is called as ``progress(done, total)`` (texts) after
        each chunk.

    Returns
    -------
    predictions : ndarray of shape (m, p)
        Column ``j`` from predictor ``j`` (``model.predictor_names_``) of the text's fold.
    folds : ndarray of int, shape (m,)
        The fold of each text (:func:`assign_folds`), for
        ``rectified_mean(..., folds=..., folds_unlabeled=folds)``.
    """
    parts = list(iter_predictions(model, texts, cache_dir, chunk_size=chunk_size,
                                  progress=progress))
    return np.concatenate([f for f, _ in parts]), np.concatenate([k for _, k in parts])


def _ensemble(model):
    ensemble = getattr(model, "model_", model)
    if type(ensemble).__name__ != "FoldEnsemble":
        raise TypeError(f"model must be a fitted FineTuneRectifyEstimator or FoldEnsemble, got "
                        f"{type(model).__name__}")
    if not ensemble.text_input or ensemble.n_scores:
        raise ValueError("model must take texts alone: it was fitted on numbers or with score "
                         "columns, which cached prediction of texts cannot supply")
    return ensemble


def _progress(progress, total):
    from tqdm.auto import tqdm

    if progress is not None and not isinstance(progress, bool) and not callable(progress):
        raise TypeError(f"progress must be a bool or a callable(done, total), got "
                        f"{type(progress).__name__}")
    report = progress if callable(progress) else None
    return tqdm(total=total, desc="predict", unit="text", disable=progress is not True,
                leave=False), report


def _chunk(ensemble, texts, key, assign, folder):
    """One chunk's (predictions, folds): read from ``folder`` when intact, else computed."""
    digest = texts_digest(texts)
    path = None if folder is None else folder / f"{digest}.parquet"
    if path is not None and path.exists():
        try:
            return _read(path, key, digest, len(texts), ensemble)
        except ValueError as error:
            warnings.warn(f"prediction chunk {os.fspath(path)!r} is damaged ({error}); "
                          "recomputing it", UserWarning, stacklevel=4)
    folds = assign_folds(texts, ensemble.fold_weights, assign)
    preds = predict_assigned(ensemble, texts, folds)
    if path is not None:
        _write(path, preds, folds, key, digest)
    return preds, folds


def _write(path, preds, folds, key, digest):
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {"format": _FORMAT, "version": _VERSION, "model": key, "texts_sha256": digest,
            "rows": int(preds.shape[0]), "predictors": int(preds.shape[1])}
    columns = {"fold": pa.array(folds, pa.int64())}
    columns.update({f"f{j}": pa.array(preds[:, j]) for j in range(preds.shape[1])})
    table = pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)


def _read(path, key, digest, rows, ensemble):
    """A chunk file's contents, or ``ValueError`` saying why it cannot be trusted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, page_checksum_verification=True)
        meta = json.loads((table.schema.metadata or {})[_META_KEY])
    except (OSError, pa.ArrowException, KeyError, ValueError) as error:
        raise ValueError(f"unreadable: {error}") from None
    p = ensemble.n_predictors
    expected = {"format": _FORMAT, "version": _VERSION, "model": key, "texts_sha256": digest,
                "rows": rows, "predictors": p}
    wrong = [name for name, value in expected.items() if meta.get(name) != value]
    if wrong:
        raise ValueError(f"its metadata has another {', '.join(wrong)}")
    if table.num_rows != rows or table.column_names != ["fold"] + [f"f{j}" for j in range(p)]:
        raise ValueError(f"{table.num_rows} rows and columns {table.column_names}; expected "
                         f"{rows} rows, a fold and {p} prediction column(s)")
    folds = table.column("fold").to_numpy()
    preds = np.column_stack([table.column(f"f{j}").to_numpy() for j in range(p)])
    if not (np.isfinite(preds).all() and ((folds >= 0) & (folds < ensemble.n_folds)).all()):
        raise ValueError("non-finite predictions or fold ids out of range")
    return preds.astype(np.float64), folds.astype(np.int64)
