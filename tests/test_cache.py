"""skftr.cache: fold assignment by hash, resumable chunked prediction, damaged chunks."""
import pickle

import numpy as np
import pytest

from skftr import FineTuneRectifyEstimator, TextRidge
from skftr.cache import (assign_folds, fingerprint, iter_predictions, predict_assigned,
                         predict_cached)
from skftr.predictors import FoldEnsemble

WORDS = "good great fine bad awful dull wine film book taste".split()
SCORE = {"good": 1.0, "great": 2.0, "fine": 0.5, "bad": -1.0, "awful": -2.0, "dull": -0.5}


def make_texts(n, rng):
    texts = [" ".join(rng.choice(WORDS, 4)) + f" {rng.randint(10**9)}" for _ in range(n)]
    y = np.array([sum(SCORE.get(w, 0.0) for w in t.split()) for t in texts]) + rng.normal(size=n)
    return texts, y


def fit_tfidf(seed=0, n=120):
    rng = np.random.RandomState(seed)
    texts, y = make_texts(n, rng)
    y[n - 20:] = np.nan  # a few unlabeled rows at fit
    return FineTuneRectifyEstimator("drop", predictors=[TextRidge("tfidf")], crossfit=3,
                                    random_state=seed).fit(texts, y)


@pytest.fixture(scope="module")
def est():
    return fit_tfidf()


@pytest.fixture
def unlabeled(seed):
    return make_texts(500, np.random.RandomState(seed))[0]


class Counting:
    """Counts the texts each fold model predicts (to see what was recomputed)."""

    def __init__(self, monkeypatch):
        self.rows = 0
        original = FoldEnsemble.predict_fold

        def predict_fold(ensemble, k, X, scores=None):
            self.rows += len(X)
            return original(ensemble, k, X, scores)

        monkeypatch.setattr(FoldEnsemble, "predict_fold", predict_fold)


def test_assignment_depends_on_text_and_key_only_with_fold_shares(seed):
    rng = np.random.RandomState(seed)
    texts = make_texts(20_000, rng)[0]
    weights = np.array([0.5, 0.3, 0.2])
    folds = assign_folds(texts, weights, "a" * 64)
    np.testing.assert_array_equal(folds[100:200], assign_folds(texts[100:200], weights, "a" * 64))
    assert np.mean(folds != assign_folds(texts, weights, "b" * 64)) > 0.3
    shares = np.bincount(folds, minlength=3) / folds.size
    # multinomial shares: 5 standard errors of a share is about 0.018 at 20,000 texts
    np.testing.assert_allclose(shares, weights, atol=0.018)


def test_fingerprint_identifies_the_fitted_predictors(est):
    assert fingerprint(est) == fingerprint(est.model_) == fingerprint(pickle.loads(pickle.dumps(est)))
    assert fingerprint(est) != fingerprint(fit_tfidf(seed=1))
    with pytest.raises(TypeError, match="FineTuneRectifyEstimator or FoldEnsemble"):
        fingerprint(object())


def test_cached_predictions_equal_direct_ones_and_are_reused(est, unlabeled, tmp_path, monkeypatch):
    f, folds = predict_cached(est, unlabeled, tmp_path, chunk_size=128)
    expected = assign_folds(unlabeled, est.model_.fold_weights, est.assignment_key_)
    np.testing.assert_array_equal(folds, expected)
    np.testing.assert_allclose(f, predict_assigned(est.model_, unlabeled, expected), rtol=0, atol=0)
    bare, bare_folds = predict_cached(est.model_, unlabeled, None, chunk_size=128)  # its fingerprint
    np.testing.assert_array_equal(bare_folds, assign_folds(unlabeled, est.model_.fold_weights,
                                                           fingerprint(est)))
    assert len(list(tmp_path.glob("*/*.parquet"))) == 4
    counter = Counting(monkeypatch)
    f2, folds2 = predict_cached(est, unlabeled, tmp_path, chunk_size=128)
    assert counter.rows == 0
    np.testing.assert_array_equal(f2, f)
    np.testing.assert_array_equal(folds2, folds)


def test_interrupted_run_resumes_without_recomputing_finished_chunks(est, unlabeled,
                                                                     tmp_path, monkeypatch):
    reference = predict_cached(est, unlabeled, None, chunk_size=100)

    def stop_after_two(done, total):
        if done >= 200:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_cached(est, unlabeled, tmp_path, chunk_size=100, progress=stop_after_two)
    assert len(list(tmp_path.glob("*/*.parquet"))) == 2
    assert not list(tmp_path.glob("*/.*"))  # no temporary file left behind
    counter = Counting(monkeypatch)
    seen = []
    f, folds = predict_cached(est, unlabeled, tmp_path, chunk_size=100,
                              progress=lambda done, total: seen.append((done, total)))
    assert counter.rows == 300
    assert seen[-1] == (500, 500)
    np.testing.assert_array_equal(f, reference[0])
    np.testing.assert_array_equal(folds, reference[1])


def _damage_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damage_rows(path):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    pq.write_table(table.slice(0, 10), path)  # keeps the metadata, loses rows


def _damage_hash(path):
    import json

    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"skftr"])
    meta["texts_sha256"] = "0" * 64
    pq.write_table(table.replace_schema_metadata({b"skftr": json.dumps(meta)}), path)


def _damage_values(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    column = table.column("f0").to_numpy().copy()
    column[0] = np.nan
    pq.write_table(table.set_column(1, "f0", pa.array(column)), path)


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_rows, _damage_hash, _damage_values])
def test_damaged_chunk_is_recomputed_not_used(est, unlabeled, tmp_path, monkeypatch, damage):
    reference = predict_cached(est, unlabeled, tmp_path, chunk_size=250)
    victim = sorted(tmp_path.glob("*/*.parquet"))[0]
    damage(victim)
    counter = Counting(monkeypatch)
    with pytest.warns(UserWarning, match="damaged"):
        f, folds = predict_cached(est, unlabeled, tmp_path, chunk_size=250)
    assert counter.rows == 250
    np.testing.assert_array_equal(f, reference[0])
    np.testing.assert_array_equal(folds, reference[1])
    predict_cached(est, unlabeled, tmp_path, chunk_size=250)  # repaired: no warning now
    assert counter.rows == 250


def test_bad_arguments_are_named(est, unlabeled, tmp_path):
    with pytest.raises(ValueError, match="chunk_size"):
        predict_cached(est, unlabeled, tmp_path, chunk_size=0)
    with pytest.raises(TypeError, match="progress"):
        predict_cached(est, unlabeled, tmp_path, progress="yes")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        predict_cached(est, ["fine wine", " "], tmp_path)
    numeric = FineTuneRectifyEstimator("drop", predictors=None, text_column="t",
                                       score_columns=["s"], crossfit=2, random_state=0)
    import pandas as pd

    rng = np.random.RandomState(0)
    frame = pd.DataFrame({"t": make_texts(20, rng)[0], "s": rng.normal(size=20)})
    numeric.fit(frame, np.r_[frame["s"][:15] + rng.normal(size=15), [np.nan] * 5])
    with pytest.raises(ValueError, match="score columns"):
        next(iter_predictions(numeric, unlabeled))
