"""Persistence of FineTuneRectifyEstimator: joblib in a fresh process, save/load without pickle."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import Lasso, Ridge

from skftr import BudgetSplitter, FineTuneRectifyEstimator

ROOT = Path(__file__).resolve().parents[1]


def make_data(n_labelled=320, m=300, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_labelled + m, 4))
    y = X @ [1.0, -2.0, 0.5, 0.0] + rng.normal(size=n_labelled + m) + 3.0
    y[n_labelled:] = np.nan
    return X, y


def run_fresh(code):
    """Run ``code`` in a fresh interpreter (the repository importable), return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(ROOT), timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


FRESH = """
import json, sys, numpy as np, joblib
from skftr import FineTuneRectifyEstimator
est = {loader}
X = np.load(sys.argv[1] if len(sys.argv) > 1 else {x!r})
print(json.dumps({{"predict": est.predict(X).tolist(), "estimate": est.estimate_.to_dict()}}))
"""


def test_joblib_round_trip_in_a_fresh_process(tmp_path):
    X, y = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, method="ppi++", random_state=0)
    est.fit(X, y)
    joblib.dump(est, tmp_path / "est.joblib")
    np.save(tmp_path / "X.npy", X)
    code = FRESH.format(loader=f"joblib.load({str(tmp_path / 'est.joblib')!r})",
                        x=str(tmp_path / "X.npy"))
    result = json.loads(run_fresh(code))
    assert result["predict"] == est.predict(X).tolist()
    assert result["estimate"] == json.loads(json.dumps(est.estimate_.to_dict()))


@pytest.mark.filterwarnings("ignore::skftr.scaling.ScalingLawWarning")
@pytest.mark.parametrize("kwargs", [
    {"n_finetune": 0.4},
    {"pilot_sizes": [10, 20, 40]},
    {"crossfit": 3, "method": "ppi++"},
    {"n_finetune": BudgetSplitter(budget=200, n_finetune=80, random_state=1)},
    {"n_finetune": 60, "estimand": "quantile", "q": 0.3},
])
def test_save_load_round_trip(tmp_path, kwargs):
    X, y = make_data()
    est = FineTuneRectifyEstimator(Ridge(alpha=0.3), random_state=0, **kwargs).fit(X, y)
    est.save(tmp_path / "saved")
    back = FineTuneRectifyEstimator.load(tmp_path / "saved")
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    assert back.estimate_.to_dict() == est.estimate_.to_dict()
    assert back.estimate(X[320:]).to_dict() == est.estimate(X[320:]).to_dict()
    assert back.score(X[:40], y[:40]) == est.score(X[:40], y[:40])
    assert back.get_params()["model__alpha"] == 0.3
    np.testing.assert_array_equal(back.rectify_indices_, est.rectify_indices_)
    if est.scaling_law_ is not None:
        assert back.scaling_law_.predict(50) == pytest.approx(est.scaling_law_.predict(50))


def test_saved_directory_loads_in_a_fresh_process(tmp_path):
    X, y = make_data()
    est = FineTuneRectifyEstimator(Lasso(alpha=0.01), n_finetune=100, random_state=0).fit(X, y)
    est.save(tmp_path / "saved")
    np.save(tmp_path / "X.npy", X)
    code = FRESH.format(loader=f"FineTuneRectifyEstimator.load({str(tmp_path / 'saved')!r})",
                        x=str(tmp_path / "X.npy"))
    result = json.loads(run_fresh(code))
    assert result["predict"] == est.predict(X).tolist()
    assert result["estimate"] == json.loads(json.dumps(est.estimate_.to_dict()))


def test_manifest_is_json_without_pickle(tmp_path):
    X, y = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, random_state=0).fit(X, y)
    est.save(tmp_path / "saved")
    names = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert names == ["manifest.json", "model_0.safetensors", "rectification.safetensors"]
    manifest = json.loads((tmp_path / "saved" / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["skftr_version"]
    assert set(manifest["files"]) == {"model_0.safetensors", "rectification.safetensors"}
    assert manifest["allocation"]["n_finetune"] == 100


def test_altered_weights_are_refused(tmp_path):
    X, y = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, random_state=0).fit(X, y)
    est.save(tmp_path / "saved")
    weights = tmp_path / "saved" / "model_0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="altered"):
        FineTuneRectifyEstimator.load(tmp_path / "saved")
    weights.unlink()
    with pytest.raises(ValueError, match="missing"):
        FineTuneRectifyEstimator.load(tmp_path / "saved")


def test_incompatible_format_version_is_refused(tmp_path):
    X, y = make_data()
    est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, random_state=0).fit(X, y)
    est.save(tmp_path / "saved")
    path = tmp_path / "saved" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format version 99"):
        FineTuneRectifyEstimator.load(tmp_path / "saved")
    with pytest.raises(FileNotFoundError, match="manifest"):
        FineTuneRectifyEstimator.load(tmp_path)


def test_unsupported_models_and_directories(tmp_path):
    X, y = make_data()
    est = FineTuneRectifyEstimator(DummyRegressor(), n_finetune=100, random_state=0).fit(X, y)
    with pytest.raises(TypeError, match="joblib"):
        est.save(tmp_path / "dummy")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("keep me")
    ridge = FineTuneRectifyEstimator(Ridge(), n_finetune=100, random_state=0).fit(X, y)
    with pytest.raises(FileExistsError):
        ridge.save(tmp_path / "busy")
    # an earlier save is replaced cleanly (no stale fold models)
    cross = FineTuneRectifyEstimator(Ridge(), crossfit=3, random_state=0).fit(X, y)
    cross.save(tmp_path / "again")
    ridge.save(tmp_path / "again")
    assert not (tmp_path / "again" / "model_2.safetensors").exists()
    np.testing.assert_array_equal(FineTuneRectifyEstimator.load(tmp_path / "again").predict(X),
                                  ridge.predict(X))


def test_no_unlabelled_fit_round_trips(tmp_path):
    X, y = make_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = FineTuneRectifyEstimator(Ridge(), n_finetune=100, random_state=0).fit(
            X[:320], y[:320])
    est.save(tmp_path / "saved")
    back = FineTuneRectifyEstimator.load(tmp_path / "saved")
    assert back.estimate_.to_dict() == est.estimate_.to_dict()
    assert back.score(X[:10], y[:10]) == est.score(X[:10], y[:10])


def test_staged_estimator_round_trips(tmp_path):
    X, y = make_data()
    est = FineTuneRectifyEstimator(Ridge()).fine_tune(X[:100], y[:100])
    est.rectify(X[100:], y[100:])
    est.save(tmp_path / "saved")
    back = FineTuneRectifyEstimator.load(tmp_path / "saved")
    assert back.estimate_.to_dict() == est.estimate_.to_dict()
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
