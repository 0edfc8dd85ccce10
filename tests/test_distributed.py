"""skftr.distributed: prediction as a map over partitions with merged moments, Dask
clusters (2 worker processes) and joblib's Dask backend; PredictionMoments in rectify."""
import sys

import numpy as np
import pytest

from skftr import FineTuneRectifyEstimator, TextRidge, rectified_mean
from skftr.cache import predict_cached
from skftr.distributed import cluster, estimate
from skftr.rectify import PredictionMoments

from conftest import assert_same_estimate
from test_cache import make_texts


def fit_tfidf(seed, n=150, crossfit=4, **params):
    rng = np.random.RandomState(seed)
    texts, y = make_texts(n, rng)
    y[n - 30:] = np.nan
    return FineTuneRectifyEstimator("drop", predictors=[TextRidge("tfidf")], crossfit=crossfit,
                                    random_state=seed, **params).fit(texts, y)


def by_arrays(est, texts):
    """The reference: every prediction in memory, rectified as arrays."""
    f, folds = predict_cached(est, texts, None)
    return est._rectify(est._y_rect, est._f_rect, f, est._folds, folds)


# ------------------------------------------------------------------ PredictionMoments
@pytest.mark.parametrize("folds", [None, 3])
def test_moments_give_the_same_mean_as_the_arrays(folds, seed):
    rng = np.random.RandomState(seed)
    n, m, p = 90, 2_000, 2
    f = rng.normal(size=(n, p))
    y = f @ [1.0, 0.5] + rng.normal(size=n)
    f_u = rng.normal(size=(m, p)) + 0.1
    kw_lab = {} if folds is None else {"folds": np.arange(n) % folds}
    folds_u = None if folds is None else rng.randint(folds, size=m)
    kw_unl = {} if folds is None else {"folds_unlabeled": folds_u}
    arrays = rectified_mean(y, f, f_u, **kw_lab, **kw_unl)
    parts = np.array_split(np.arange(m), 7)
    moments = PredictionMoments.empty(folds or 1, p)
    for rows in parts[::-1]:  # any order, any split
        moments = moments.merge(PredictionMoments.of(
            f_u[rows], None if folds is None else folds_u[rows], folds or 1))
    merged = rectified_mean(y, f, moments, **kw_lab)
    assert_same_estimate(merged, arrays)
    np.testing.assert_allclose(merged.lam, arrays.lam, rtol=1e-9, atol=1e-12)
    assert merged.n_unlabeled == m


def test_moments_that_do_not_fit_are_refused():
    y, f = np.arange(10.0), np.arange(10.0)
    with pytest.raises(ValueError, match="each of the 2 folds"):
        rectified_mean(y, f, PredictionMoments.of(np.ones(5), np.zeros(5, int), 2),
                       folds=np.arange(10) % 2)
    with pytest.raises(ValueError, match="predictor"):
        rectified_mean(y, f, PredictionMoments.of(np.ones((5, 2))))
    with pytest.raises(ValueError, match="cannot merge"):
        PredictionMoments.empty(2, 1).merge(PredictionMoments.empty(3, 1))


# ------------------------------------------------------------------ in process
def test_partitions_in_process_equal_the_arrays(seed):
    est = fit_tfidf(seed)
    texts = make_texts(700, np.random.RandomState(seed + 1))[0]
    reference = by_arrays(est, texts)
    result = estimate(est, [texts[:100], texts[100:450], [], texts[450:]])
    assert_same_estimate(result, reference)
    direct = est.estimate(texts)  # the same hash assignment of texts to folds
    assert_same_estimate(direct, reference)
    result, f, folds = estimate(est, [texts[:300], texts[300:]], return_predictions=True)
    assert_same_estimate(result, reference)
    assert f.shape == (700, 1) and folds.shape == (700,)


def test_single_split_and_files_and_quantile(tmp_path):
    import pandas as pd

    est = fit_tfidf(3, n=200, crossfit=None, n_finetune=100)
    texts = make_texts(300, np.random.RandomState(4))[0]
    pd.DataFrame({"review": texts[:120]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"review": texts[120:200]}).to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / "c.txt").write_text("\n".join(texts[200:]), encoding="utf-8")
    files = [tmp_path / "a.parquet", tmp_path / "b.csv", tmp_path / "c.txt"]
    result = estimate(est, files, text_column="review")
    assert_same_estimate(result, by_arrays(est, texts))
    quantile = fit_tfidf(3, estimand="quantile")
    with pytest.raises(ValueError, match="return_predictions=True"):
        estimate(quantile, [texts])
    result, _, _ = estimate(quantile, [texts[:150], texts[150:]], return_predictions=True)
    assert result.value == by_arrays(quantile, texts).value


def test_bad_partitions_are_named(tmp_path):
    est = fit_tfidf(5)
    with pytest.raises(ValueError, match=r"partition 1: texts\[0\]"):
        estimate(est, [["fine wine"], [""]])
    with pytest.raises(ValueError, match="text_column"):
        estimate(est, [tmp_path / "a.parquet"])
    with pytest.raises(ValueError, match=".parquet, .csv or .txt"):
        estimate(est, [tmp_path / "a.json"])
    with pytest.raises(TypeError, match="list of partitions"):
        estimate(est, "texts.txt")
    with pytest.raises(TypeError, match="fitted FineTuneRectifyEstimator"):
        estimate(object(), [["fine wine"]])
    with pytest.raises(ValueError, match="at least 2"):
        estimate(est, [["fine wine"]])


def test_cluster_arguments_are_checked():
    with pytest.raises(TypeError, match="scheduler"):
        with cluster(8786):
            pass
    with pytest.raises(ValueError, match="running one"):
        with cluster("tcp://127.0.0.1:1", n_workers=2):
            pass


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"pip install skftr\[dask\]"):
        with cluster("local"):
            pass


# ------------------------------------------------------------------ a real cluster
def test_threaded_cluster_gives_the_in_process_estimate(seed):
    """The client path (scatter, submit, merge as completed), fast: worker threads."""
    est = fit_tfidf(seed)
    texts = make_texts(400, np.random.RandomState(seed + 1))[0]
    reference = estimate(est, [texts])
    with cluster("local", n_workers=2, processes=False) as client:
        with cluster() as joined:  # None joins the running client and leaves it open
            assert joined is client
        result = estimate(est, [texts[:150], texts[150:]], client=client)
    assert_same_estimate(result, reference)


@pytest.mark.slow  # starting and stopping two worker processes: 20-70 s on 2 shared cores
def test_two_worker_processes_give_the_in_process_estimate(tmp_path, seed):
    import dask.bag as db
    from sklearn.linear_model import Ridge

    est = fit_tfidf(seed)
    texts = make_texts(900, np.random.RandomState(seed + 1))[0]
    reference = estimate(est, [texts])
    est.save(tmp_path / "model")
    rng = np.random.RandomState(7)
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    y[40:] = np.nan
    numeric = FineTuneRectifyEstimator(Ridge(), predictors=None, crossfit=3, random_state=0)
    with cluster("local", n_workers=2, processes=True) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        scattered = estimate(est, [texts[:300], texts[300:600], texts[600:]], client=client)
        saved = estimate(tmp_path / "model", db.from_sequence(texts, npartitions=4),
                         client=client, cache_dir=tmp_path / "cache", chunk_size=100)
        parallel = FineTuneRectifyEstimator(Ridge(), predictors=None, crossfit=3,
                                            random_state=0, n_jobs=2).fit(X, y)
    for result in (scattered, saved):
        assert_same_estimate(result, reference)
    assert len(list((tmp_path / "cache").glob("*/*.parquet"))) == 12  # 4 partitions x 3 chunks
    numeric.fit(X, y)
    assert_same_estimate(parallel.estimate_, numeric.estimate_)
