"""Saving and loading: skops + safetensors round trips, tampering refused, joblib still works."""
import json
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor

from skftr import BudgetSplitter, FineTuneRectifyEstimator, TextRidge
from skftr.exceptions import UntrustedFileError

from test_estimator import make_data, text_data


def fitted(**kwargs):
    X, y, _ = make_data(n_labeled=320, m=300)
    est = FineTuneRectifyEstimator(**{"model": Ridge(), "random_state": 0, **kwargs})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y), X


def same(a, b, X):
    np.testing.assert_allclose(a.predict(X), b.predict(X))
    assert a.estimate_.to_dict() == b.estimate_.to_dict()
    assert a.estimate(X[:50]).to_dict() == b.estimate(X[:50]).to_dict()


@pytest.mark.parametrize("kwargs", [
    {},
    {"model": KNeighborsRegressor(), "predictors": [Ridge()]},
    {"crossfit": None, "n_finetune": 100, "method": "ppi"},
    {"crossfit": None, "pilot_sizes": [10, 20, 40]},
    {"crossfit": None, "n_finetune": BudgetSplitter(budget=200, test_size=120, random_state=1)},
    {"estimand": "quantile", "q": 0.3},
])
def test_save_load_round_trip(tmp_path, kwargs):
    est, X = fitted(**kwargs)
    loaded = FineTuneRectifyEstimator.load(est.save(tmp_path / "model"))
    same(est, loaded, X)
    if est.scaling_law_ is not None:  # the whole law travels: its plot works after loading
        np.testing.assert_array_equal(loaded.scaling_law_.sizes_, est.scaling_law_.sizes_)
        import matplotlib
        matplotlib.use("Agg")
        loaded.scaling_law_.plot()


def test_text_predictors_round_trip(tmp_path):
    texts, y, _ = text_data()
    est = FineTuneRectifyEstimator("drop", predictors=[TextRidge(features="tfidf"),
                                                       TextRidge(features="length")],
                                   random_state=0).fit(texts, y)
    loaded = FineTuneRectifyEstimator.load(est.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.predict(texts[:20]), est.predict(texts[:20]))


def test_saved_directory_loads_in_a_fresh_process_and_joblib_works(tmp_path):
    est, X = fitted()
    est.save(tmp_path / "model")
    joblib.dump(est, tmp_path / "model.joblib")
    np.save(tmp_path / "X.npy", X[:10])
    code = ("import numpy as np, joblib; from skftr import FineTuneRectifyEstimator as E;"
            f"X = np.load(r'{tmp_path / 'X.npy'}');"
            f"a = E.load(r'{tmp_path / 'model'}'); b = joblib.load(r'{tmp_path / 'model.joblib'}');"
            "print(repr(a.predict(X).tolist())); print(repr(b.predict(X).tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = [np.array(eval(line)) for line in out.stdout.splitlines()]
    np.testing.assert_allclose(first, est.predict(X[:10]))
    np.testing.assert_allclose(second, est.predict(X[:10]))


def test_altered_bytes_are_refused(tmp_path):
    est, _ = fitted()
    path = est.save(tmp_path / "model")
    state = path / "estimator.skops"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    with pytest.raises(UntrustedFileError, match="estimator.skops.*altered"):
        FineTuneRectifyEstimator.load(path)


def test_untrusted_type_is_refused_before_anything_runs(tmp_path):
    est, _ = fitted()
    path = est.save(tmp_path / "model")
    evil = {"model": est, "payload": subprocess.Popen}
    sio.dump(evil, path / "estimator.skops")
    manifest = json.loads((path / "manifest.json").read_text())
    from skftr._atomic import file_sha256
    manifest["files"]["estimator.skops"] = file_sha256(path / "estimator.skops")
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UntrustedFileError, match="untrusted types.*Popen"):
        FineTuneRectifyEstimator.load(path)


@pytest.mark.parametrize("damage, match", [
    (lambda p: (p / "manifest.json").write_text('{"format": "skftr.Fine'), "damaged or truncated"),
    (lambda p: (p / "manifest.json").unlink(), "manifest.json is missing"),
    (lambda p: (p / "estimator.skops").unlink(), "missing or was altered"),
    (lambda p: (p / "manifest.json").write_text(json.dumps(
        {**json.loads((p / "manifest.json").read_text()), "format_version": 99})), "version 99"),
])
def test_damaged_saves_name_the_file(tmp_path, damage, match):
    est, _ = fitted()
    path = est.save(tmp_path / "model")
    damage(path)
    with pytest.raises(UntrustedFileError, match=match):
        FineTuneRectifyEstimator.load(path)


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    est, _ = fitted()
    import skftr.persistence

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sio, "dump", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        skftr.persistence.save(est, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []
