"""``benchmarks/replication_adjusted.py``: the pool-luck adjustment of the replication (issue 6)."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "replication_adjusted.py"


@pytest.fixture(scope="module")
def adjusted():
    spec = importlib.util.spec_from_file_location("replication_adjusted", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dataset(rep, size=1000, holdout=100, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.gamma(2.0, 1.5, size)  # skewed, so a normal shortcut would not do
    rows = rng.permutation(size)
    return rep.Dataset("wine", [""] * size, y, np.sort(rows[:holdout]), np.sort(rows[holdout:]))


def test_expected_pool_error_matches_the_realised_one_on_average(adjusted):
    """Over many seeds, the realised squared error of the pools' label means averages to the
    closed form (offset^2 + S^2/N_P (1 - N_P/N_E)); a missing FPC factor would be 2x off."""
    rep = adjusted.load_replicate()
    ds = _dataset(rep)
    record = {"s": 50, "seeds": list(range(600))}
    realised, expected = adjusted.pool_terms(rep, ds, 500, record)  # N_P = 450 of N_E = 900
    assert realised == pytest.approx(expected, rel=0.2)
    offset2 = (ds.y[ds.population].mean() - ds.truth) ** 2
    without_fpc = offset2 + ds.y[ds.population].var(ddof=1) / 450
    assert realised != pytest.approx(without_fpc, rel=0.2)


def test_adjustment_replaces_only_the_pool_term(adjusted):
    rep = adjusted.load_replicate()
    ds = _dataset(rep)
    var_y, z = float(ds.y.var()), 1.959963984540054
    se = np.sqrt(var_y / 200)
    record = {"dataset": "wine", "n": 200, "method": "ftr_var", "s": 50, "rmse": 0.2,
              "mean_width": 2 * z * se, "seeds": [0, 1]}
    same = adjusted.adjust(record, ds, var_y, z, terms=(0.01, 0.01))
    assert same["rmse_adj"] == pytest.approx(0.2)
    assert same["label_savings_interval"] == pytest.approx(0.0, abs=1e-12)  # classical width
    lucky = adjusted.adjust(record, ds, var_y, z, terms=(0.0, 0.01))
    assert lucky["rmse_adj"] ** 2 == pytest.approx(0.04 + 0.01)
    assert lucky["n_eff_adj"] < var_y / 0.04 and lucky["coverage_normal_adj"] < 1
    unpooled = adjusted.adjust(dict(record, method="finetune_only"), ds, var_y, z)
    assert "rmse_adj" not in unpooled and unpooled["label_savings_interval"] is None


def test_unlimited_savings_from_the_models_error_variance(adjusted):
    record = {"n": 500, "s": 100, "seeds": [0, 1]}
    pilots = [[100, 0, 2.0, 9.0], [100, 1, 4.0, 9.0], [50, 0, 8.0, 9.0]]  # Var(Y) = 8
    # per seed 1 - 500 sigma^2 / (400 * 8): 0.6875 and 0.375
    assert adjusted.unlimited_savings(record, pilots, 8.0) == pytest.approx((0.6875 + 0.375) / 2)
    faithful = dict(record, s_by_seed=[50, 100], seeds=[0, 1])
    assert adjusted.unlimited_savings(faithful, pilots, 8.0) == pytest.approx(
        ((1 - 500 * 8 / (450 * 8)) + 0.375) / 2)


def test_main_on_a_replication_json(adjusted, tmp_path):
    """End to end on a small hand-made replication.json over the real wine file."""
    rep = adjusted.load_replicate()
    config = dict(rep.FULL, datasets=["wine"])
    base = {"dataset": "wine", "n": 500, "coverage": 0.95, "mean_width": 0.5, "rmse": 0.13,
            "bias": 0.0, "n_eff": 500.0, "label_savings": 0.0, "n_eff_fpc": 480.0,
            "label_savings_fpc": -0.04, "n_reps": 400, "seeds": [0, 1]}
    records = [dict(base, method="classical", s=0), dict(base, method="ftr_var", s=100)]
    grid = [dict(base, method="grid_variance", s=s) for s in (50, 100)]
    path = tmp_path / "replication.json"
    pilots = [[s, g, 4.0, 5.0] for s in (50, 100) for g in (0, 1)]
    laws = {"wine": {"variance": {"pilots": pilots}}}
    path.write_text(json.dumps({"metadata": {"config": config, "datasets_done": ["wine"]},
                                "records": records, "grid": grid, "scaling_laws": laws}))
    out, grid_out = adjusted.main(["--results", str(path), "--out-dir", str(tmp_path)])
    by = {r["method"]: r for r in out}
    assert "rmse_adj" not in by["classical"] and "rmse_adj" in by["ftr_var"]
    assert by["ftr_var"]["pool_error_expected"] > 0 and all("rmse_adj" in g for g in grid_out)
    var_y = 8.46591164263644  # the wine points over the whole file
    assert by["ftr_var"]["label_savings_m_inf"] == pytest.approx(1 - 500 * 4 / (400 * var_y))
    assert "label_savings_m_inf" not in by["classical"]
    text = (tmp_path / "replication_adjusted.md").read_text()
    assert "| 500 | ftr_var | 100 |" in text and "oracle with the adjusted MSE" in text
    assert "(1 records adjusted): adjusted within a median" in text
    assert (tmp_path / "replication_adjusted.png").stat().st_size > 0
    saved = json.loads((tmp_path / "replication_adjusted.json").read_text())
    assert saved["records"][1]["n_eff_adj"] == pytest.approx(by["ftr_var"]["n_eff_adj"])
