"""Beyond one machine with Dask: prediction as a map over partitions, folds in parallel.

* :func:`estimate` — the unlabeled texts arrive in partitions (a Dask bag or data frame,
  files, or lists); each worker loads the fitted model once, predicts its partitions in
  the assignment layout of cross-PPI (:func:`skftr.cache.assign_folds`) and returns per
  fold the count, mean and summed cross-deviations of the predictions; the driver merges
  them (Chan, Golub & LeVeque 1979) and rectifies (Wang, Ye & Zhao 2025, §2;
  docs/method.md §2). No process holds all texts or all predictions.
* :func:`cluster` — start or join a Dask cluster and make it joblib's backend, so that
  ``FineTuneRectifyEstimator(n_jobs=...)`` fits its folds and pilots on the workers.

Dask is optional (``pip install skftr[dask]``): it is imported inside these functions
only.
"""
import os
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

__all__ = ["cluster", "estimate"]

_LOADED = {}  # (directory, sha256 of its manifest) -> (estimator, fingerprint), once a process


def _dask():
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as error:
        raise ImportError("skftr.distributed needs Dask: pip install skftr[dask]") from error
    return distributed


@contextmanager
def cluster(scheduler=None, **cluster_kwargs):
    """A Dask client for the block, with joblib's Dask backend in force.

    Parameters
    ----------
    scheduler : None, "local" or str, default=None
        None: join the client already running in this process, else as ``"local"``;
        ``"local"``: start a ``LocalCluster`` of worker processes (one thread each
        unless ``threads_per_worker`` is given), closed on exit; any other string: the
        address of a running scheduler (``"tcp://host:8786"``).
    **cluster_kwargs
        Passed to ``LocalCluster`` (``n_workers``, ``memory_limit``, ...).

    Yields
    ------
    distributed.Client
    """
    distributed = _dask()
    import joblib

    if scheduler is not None and not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be None, 'local' or an address string, got "
                        f"{type(scheduler).__name__}")
    if cluster_kwargs and scheduler not in (None, "local"):
        raise ValueError(f"cluster options {sorted(cluster_kwargs)} start a local cluster; "
                         f"scheduler={scheduler!r} joins a running one")
    owned = []
    client = None
    if scheduler is None:
        try:
            client = distributed.Client.current()
        except ValueError:
            scheduler = "local"
    if client is None and scheduler == "local":
        cluster_kwargs = {"processes": True, "threads_per_worker": 1, "dashboard_address": ":0",
                          **cluster_kwargs}
        owned.append(distributed.LocalCluster(**cluster_kwargs))
        client = distributed.Client(owned[0])
        owned.insert(0, client)
    elif client is None:
        client = distributed.Client(scheduler)
        owned.append(client)
    try:
        with joblib.parallel_config(backend="dask"):
            yield client
    finally:
        for resource in owned:
            resource.close()


def estimate(model, partitions, *, client=None, text_column=None, cache_dir=None,
             chunk_size=10_000, return_predictions=False, trusted=None):
    """The rectified estimate for unlabeled texts given in partitions.

    Each partition's texts are predicted by the fitted model in the assignment layout
    (:func:`skftr.cache.assign_folds`); per fold only the count, mean and M2 matrix of
    the predictions travel back (or the predictions with ``return_predictions``); the
    merged moments give the unlabeled term of the rectified mean (docs/method.md §2)
    with the model's stored rectification rows.

    Parameters
    ----------
    model : str, Path or fitted FineTuneRectifyEstimator
        A directory written by ``est.save`` (each worker loads it once: it must be
        readable at the same path there), or the estimator itself (sent to every
        worker once).
    partitions : dask.bag.Bag, dask DataFrame or Series, or a list
        A bag of texts; a data frame (``text_column``) or series of texts; or a list
        whose items are sequences of texts, or paths of ``.parquet`` / ``.csv``
        (``text_column``) or ``.txt`` (one text per line) files read by the workers.
    client : distributed.Client or None, default=None
        Where the partitions run; None runs them one after another in this process.
    text_column : str, default=None
        The column of texts of data-frame partitions and of table files.
    cache_dir : str or Path, default=None
        Predictions cached per chunk (:func:`skftr.cache.predict_cached`); must be shared
        by the workers to be reused across them.
    chunk_size : int, default=10_000
        Texts per cached chunk.
    return_predictions : bool, default=False
        Also return the predictions and fold ids, in partition order (they then all
        come to this process).
    trusted : list of str, default=None
        Passed to ``FineTuneRectifyEstimator.load`` for a directory.

    Returns
    -------
    estimate : RectifiedEstimate
    predictions, folds : ndarray of shape (m, p) and (m,)
        Only with ``return_predictions``.
    """
    from .rectify import PredictionMoments

    est, key, path = _load(model, trusted)
    if not return_predictions and est.estimand != "mean":
        raise ValueError(f"the merged moments give a mean; estimand={est.estimand!r} needs "
                         "every prediction: pass return_predictions=True")
    n_folds = est.model_.n_folds
    ref = path if path is not None else est
    if client is not None and path is None:
        ref = client.scatter(est, broadcast=True)
    task = dict(model_key=key, n_folds=n_folds, text_column=text_column, cache_dir=cache_dir,
                chunk_size=chunk_size, keep=return_predictions, trusted=trusted)
    moments, kept = PredictionMoments.empty(n_folds, est.model_.n_predictors), {}
    for index, (part_moments, part_preds) in _run(client, _sources(partitions), ref, task):
        moments = moments.merge(part_moments)
        if return_predictions:
            kept[index] = part_preds
    if moments.count < 2:
        raise ValueError(f"partitions hold {moments.count} text(s); at least 2 are needed")
    if return_predictions:
        f_u = np.concatenate([kept[i][0] for i in sorted(kept)])
        folds_u = np.concatenate([kept[i][1] for i in sorted(kept)])
        result = est._rectify(est._y_rect, est._f_rect, f_u, est._folds, folds_u,
                              weights=est.design_weights_)
    else:
        result = est._rectify(est._y_rect, est._f_rect, moments, est._folds, None,
                              weights=est.design_weights_)
    result = replace(result, allocation=est.allocation_)
    return (result, f_u, folds_u) if return_predictions else result


def _load(model, trusted):
    """(estimator, its fingerprint, its directory or None)."""
    from .cache import fingerprint

    if isinstance(model, (str, os.PathLike)):
        return (*_load_saved(os.fspath(model), trusted), os.fspath(model))
    if not hasattr(model, "model_"):
        raise TypeError(f"model must be a fitted FineTuneRectifyEstimator or the directory of "
                        f"a saved one, got {type(model).__name__}")
    return model, fingerprint(model), None


def _sources(partitions):
    """The partitions as a list: Dask delayed objects, lists of texts or file paths."""
    if hasattr(partitions, "to_delayed"):  # dask bag, data frame or series
        return list(partitions.to_delayed())
    if isinstance(partitions, (str, bytes, os.PathLike)) or not hasattr(partitions, "__len__"):
        raise TypeError("partitions must be a dask bag or data frame, or a list of partitions "
                        f"(lists of texts or file paths), got {type(partitions).__name__}")
    return list(partitions)


def _run(client, sources, ref, task):
    """Yield ``(index, (moments, predictions))`` per partition as each completes."""
    if client is None:
        for index, source in enumerate(sources):
            if hasattr(source, "compute"):
                source = source.compute(scheduler="sync")
            yield index, _partition(source, ref, index=index, **task)
        return
    from distributed import as_completed

    futures = {}
    for index, source in enumerate(sources):
        if hasattr(source, "dask"):  # a Delayed partition: computed on a worker
            source = client.compute(source)
        futures[client.submit(_partition, source, ref, index=index, **task, pure=False)] = index
    for future, result in as_completed(futures, with_results=True):
        yield futures.pop(future), result


def _partition(source, model, *, index, model_key, n_folds, text_column, cache_dir, chunk_size,
               keep, trusted):
    """On a worker: one partition's per-fold moments (and predictions when ``keep``)."""
    from .cache import iter_predictions
    from .rectify import PredictionMoments

    est = _worker_model(model, model_key, trusted)
    moments = PredictionMoments.empty(n_folds, est.model_.n_predictors)
    preds = []
    try:
        texts = _read_texts(source, text_column)
        chunks = iter_predictions(est, texts, cache_dir, chunk_size=chunk_size, key=model_key)
        for f, folds in chunks if len(texts) else ():
            moments = moments.merge(PredictionMoments.of(f, folds, n_folds))
            if keep:
                preds.append((f, folds))
    except (TypeError, ValueError) as error:
        raise type(error)(f"partition {index}: {error}") from None
    if not keep:
        return moments, None
    if not preds:
        return moments, (np.empty((0, est.model_.n_predictors)), np.empty(0, dtype=np.int64))
    return moments, (np.concatenate([f for f, _ in preds]), np.concatenate([k for _, k in preds]))


def _load_saved(path, trusted):
    """The estimator saved in directory ``path`` and its fingerprint, loaded once per
    process (again only when its manifest, which holds the sha256 of every file, changes)."""
    import hashlib

    from .cache import fingerprint
    from .estimator import FineTuneRectifyEstimator

    manifest = Path(path) / "manifest.json"
    key = (path, hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else "")
    if key not in _LOADED:
        est = FineTuneRectifyEstimator.load(path, trusted=trusted)
        _LOADED[key] = est, fingerprint(est)
    return _LOADED[key]


def _worker_model(model, key, trusted):
    """On a worker: the estimator of a directory (checked against the driver's
    fingerprint ``key``), or the estimator itself."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    est, found = _load_saved(model, trusted)
    if found != key:
        raise ValueError(f"the model at {model!r} on this worker differs from the driver's "
                         "(fingerprint mismatch): every worker must read the same files")
    return est


def _read_texts(source, text_column):
    """Texts of one partition: a file, a pandas object, or a sequence of texts."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix == ".txt":
            return [line for line in path.read_text(encoding="utf-8").splitlines()]
        if suffix not in (".parquet", ".csv"):
            raise ValueError(f"partition file {os.fspath(path)!r}: expected a .parquet, .csv "
                             "or .txt file")
        if text_column is None:
            raise ValueError(f"partition file {os.fspath(path)!r} is a table: give "
                             "text_column, the column of texts")
        import pandas as pd

        if suffix == ".parquet":
            source = pd.read_parquet(path, columns=[text_column])
        else:
            source = pd.read_csv(path, usecols=[text_column], keep_default_na=False,
                                 na_values=[""])
    if hasattr(source, "columns"):  # a data frame
        if text_column is not None:
            if text_column not in source.columns:
                raise ValueError(f"text_column {text_column!r} is not a column of the "
                                 f"partition (columns: {list(source.columns)})")
            source = source[text_column]
    return list(source)
