"""Smoke test of the replication program ``benchmarks/replicate.py`` (issue 6).

The default test runs ``--quick`` end to end (fine-tunes, cross-fitting, zero-shot,
evaluation, JSON, Markdown, plots) with the tiny random BERT of ``conftest.py`` as the
backbone, so it takes seconds of compute; the slow test runs the real ``--quick`` (MiniLM).
Both write to a temporary directory, never to ``benchmarks/results``.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "replicate.py"
FIELDS = {
    "dataset",
    "n",
    "method",
    "s",
    "coverage",
    "mean_width",
    "rmse",
    "n_eff",
    "label_savings",
    "n_reps",
    "bias",
    "seeds",
    "n_eff_fpc",
    "label_savings_fpc",
}


@pytest.fixture(scope="module")
def replicate():
    spec = importlib.util.spec_from_file_location("replicate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_outputs(module, out, n_seeds=2):
    payload = json.loads((out / "replication.json").read_text())
    records = payload["records"]
    methods = {r["method"] for r in records}
    assert methods == set(module.METHODS)
    for r in records:
        assert FIELDS <= set(r), r["method"]
        assert r["dataset"] == "wine" and r["n"] == 100
        assert 0.0 <= r["coverage"] <= 1.0
        assert r["mean_width"] > 0 and r["rmse"] > 0 and r["n_reps"] >= 1
        assert np.isclose(r["label_savings"], 1 - r["n"] / r["n_eff"])
        assert r["seeds"] and set(r["seeds"]) <= set(range(n_seeds))
    by = {r["method"]: r for r in records}
    # classical: labels only, the interval's nominal level and no savings against itself
    assert by["classical"]["n_reps"] == payload["metadata"]["config"]["draws"] * n_seeds
    assert by["classical"]["coverage"] > 0.8
    assert abs(by["classical"]["label_savings_fpc"]) < 0.5
    # one estimate per seed for the methods that use all n labels at once
    assert by["finetune_only"]["n_reps"] == n_seeds and by["ftr_var_crossfit"]["n_reps"] == n_seeds
    assert by["ftr_var"]["s"] in (20, 40, 80) and by["ftr_var_oracle"]["s"] in (20, 40, 80)
    (run,) = payload["metadata"]["runs"]
    assert run["wall_seconds"] > 0 and run["datasets"] == ["wine"]
    assert "| ftr_var |" in (out / "replication.md").read_text()
    adjusted = json.loads((out / "replication_adjusted.json").read_text())["records"]
    assert {r["method"] for r in adjusted} == methods
    return payload


def test_quick_runs_end_to_end_and_resumes(replicate, tiny_bert_dir, tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = [
        "--quick",
        "--threads",
        "1",
        "--backbone",
        tiny_bert_dir,
        "--cache-dir",
        str(cache),
        "--out-dir",
        str(out),
    ]
    replicate.main(argv)
    first = _check_outputs(replicate, out)
    assert first["metadata"]["runs"][0]["fine_tunes_run"] > 0
    assert (out / "replication_coverage_width.png").stat().st_size > 0
    assert (out / "replication_law_wine.png").stat().st_size > 0
    assert "plan:" in capsys.readouterr().out

    # resumed from the cache: nothing is fitted again and the numbers are identical
    replicate.main(argv + ["--no-plots"])
    second = _check_outputs(replicate, out)
    assert second["metadata"]["runs"][0]["fine_tunes_run"] == 0
    assert second["records"] == first["records"]

    # a cache made with other fine-tuning settings is refused
    with pytest.raises(SystemExit, match="cache"):
        replicate.main(argv + ["--min-steps", "9", "--plan"])


def _fake_models(replicate, argv, name, noise_sd):
    """Cache fake fine-tuned models of dataset ``name`` for the run ``argv``: y plus
    independent noise of variance ``noise_sd**2 s^-0.5 + noise_sd**2 / 8``."""
    cfg, _ = replicate.parse_args(argv)
    ds = replicate.load_dataset(name, cfg)
    rng = np.random.default_rng(0)
    for job in replicate.model_jobs(cfg, ds):
        noise = rng.normal(0.0, noise_sd * np.sqrt(job.size**-0.5 + 1 / 8), ds.y.size)
        pred = np.full(ds.y.size, np.nan)
        pred[job.predict] = ds.y[job.predict] + noise[job.predict]
        job.path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            job.path, pred=pred, train=job.train, fit_seconds=1.0, predict_seconds=1.0, steps=4
        )
    return cfg, ds


@pytest.mark.parametrize("pool", [0, 600])
def test_evaluation_with_models_of_known_error_variance(replicate, tiny_bert_dir, tmp_path, pool):
    """Fake fine-tuned models (y plus independent noise of variance 8 s^-0.5 + 1) in the
    cache; ``--eval-only`` must keep the coverage, beat the classical mean and pick the best
    grid size as the oracle, with and without the unlabelled cap (``--pool``)."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    options = "--quick --threads 1 --max-rows 1500 --holdout 100 --draws 100 --eval-only --no-plots"
    argv = options.split() + ["--backbone", tiny_bert_dir, "--cache-dir", str(cache)]
    argv += ["--out-dir", str(out), "--pool", str(pool)]
    cfg, ds = _fake_models(replicate, argv, "wine", noise_sd=np.sqrt(8))
    records = replicate.main(argv)
    by = {r["method"]: r for r in records}
    assert set(by) == set(replicate.METHODS)
    for method in ("ftr_var", "ftr_mse", "ftr_var_ppipp", "ftr_var_oracle", "ftr_var_faithful"):
        assert by[method]["coverage"] >= 0.85, method
        assert by[method]["rmse"] < by["classical"]["rmse"], method
        assert by[method]["label_savings_fpc"] > 0.15, method
    assert by["finetune_only"]["n_reps"] == 2 and by["ftr_var_crossfit"]["n_reps"] == 2
    payload = json.loads((out / "replication.json").read_text())
    grid = [g for g in payload["grid"] if g["method"] == "grid_variance"]
    assert by["ftr_var_oracle"]["rmse"] == min(g["rmse"] for g in grid)
    law = payload["scaling_laws"]["wine"]["variance"]
    assert len(law["pilots"]) == 6 and all(p[2] > 0 for p in law["pilots"])
    assert payload["metadata"]["runs"][0]["fine_tunes_run"] == 0
    if pool:  # models predicted perm_g[:100 + pool] and the hold-out, minus their training rows
        job = replicate.model_jobs(cfg, ds)[-1]
        assert len(job.predict) + len(job.train) == 100 + pool + 100
    assert payload["metadata"]["compute_seconds"]["wine"] == 2.0 * len(
        replicate.model_jobs(cfg, ds)
    )


def test_runs_split_by_dataset_combine_their_outputs(replicate, tiny_bert_dir, tmp_path):
    """A run split by ``--datasets`` ends with one set of outputs holding every dataset,
    each from the last run that evaluated it; outputs made with other settings are replaced."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    options = "--quick --threads 1 --max-rows 1500 --holdout 100 --draws 20 --eval-only"
    argv = options.split() + ["--backbone", tiny_bert_dir, "--cache-dir", str(cache)]
    argv += ["--out-dir", str(out)]
    for name in ("wine", "emobank"):
        _fake_models(replicate, argv + ["--datasets", name], name, noise_sd=0.1)
    wine = replicate.main(argv + ["--datasets", "wine", "--no-plots"])
    emobank = replicate.main(argv + ["--datasets", "emobank"])
    payload = json.loads((out / "replication.json").read_text())
    meta = payload["metadata"]
    assert meta["datasets_done"] == ["wine", "emobank"]
    assert payload["records"] == json.loads(json.dumps(wine + emobank, default=float))
    assert set(payload["scaling_laws"]) == set(meta["truth"]) == {"wine", "emobank"}
    assert {g["dataset"] for g in payload["grid"]} == {"wine", "emobank"}
    assert [run["datasets"] for run in meta["runs"]] == [["wine"], ["emobank"]]
    assert "--datasets wine" in meta["runs"][0]["command"]
    text = (out / "replication.md").read_text()
    assert "### wine" in text and "### emobank" in text and "--datasets emobank`" in text
    assert (out / "replication_law_wine.png").exists()  # plots cover the kept dataset too

    # evaluating wine again replaces its results and its run, and keeps emobank's
    replicate.main(argv + ["--datasets", "wine", "--no-plots"])
    meta = json.loads((out / "replication.json").read_text())["metadata"]
    assert meta["datasets_done"] == ["wine", "emobank"]
    assert [run["datasets"] for run in meta["runs"]] == [["emobank"], ["wine"]]

    # other settings (here the number of draws) change the numbers: nothing is kept
    replicate.main(argv + ["--datasets", "wine", "--draws", "10", "--no-plots"])
    payload = json.loads((out / "replication.json").read_text())
    assert payload["metadata"]["datasets_done"] == ["wine"]
    assert {r["dataset"] for r in payload["records"]} == {"wine"}
    assert "### emobank" not in (out / "replication.md").read_text()


def test_plan_and_bad_arguments(replicate, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert replicate.main(["--plan", "--cache-dir", str(cache), "--out-dir", str(tmp_path)]) is None
    text = capsys.readouterr().out
    assert "estimated total" in text and "emobank_reader" in text
    assert not (tmp_path / "replication.json").exists()
    with pytest.raises(SystemExit, match="budget n=60"):
        replicate.main(["--plan", "--budgets", "60", "--cache-dir", str(cache)])
    with pytest.raises(SystemExit, match="at least 3"):
        replicate.main(["--plan", "--sizes", "25", "50", "--cache-dir", str(cache)])
    with pytest.raises(SystemExit, match="--jobs"):
        replicate.main(["--plan", "--jobs", "0", "--cache-dir", str(cache)])
    # planning does not claim the cache for its settings (a later run may use others)
    assert not (cache / "config.json").exists()


def test_parallel_jobs_cache_the_same_models(replicate, tiny_bert_dir, tmp_path):
    """``--jobs 2`` (two worker processes, one torch thread each) caches the same
    predictions as a serial run; training rows are never predicted."""
    caches = {}
    for n_jobs in (1, 2):
        argv = ["--quick", "--seeds", "0", "--backbone", tiny_bert_dir, "--jobs", str(n_jobs)]
        cfg, _ = replicate.parse_args(argv + ["--cache-dir", str(tmp_path / f"jobs{n_jobs}")])
        ds = replicate.load_dataset("wine", cfg)
        jobs = replicate.model_jobs(cfg, ds)[:4]
        assert replicate.finetune_stage(cfg, ds, jobs, progress=False) == 4
        caches[n_jobs] = [replicate.load_pred(job.path) for job in jobs]
        for job, (pred, train) in zip(jobs, caches[n_jobs]):
            assert np.array_equal(train, job.train)
            assert np.isnan(pred[train]).all() and np.isfinite(pred[job.predict]).all()
    for (serial, _), (parallel, _) in zip(caches[1], caches[2]):
        np.testing.assert_allclose(parallel, serial, rtol=1e-4, atol=1e-5)


def test_savings_range_covers_the_true_savings(replicate):
    """The chi-square range of the savings from 5 independent runs holds the true savings
    (1 - n sigma^2 / Var(Y)) in about 95% of simulated records, and the point estimate in all."""
    rng = np.random.default_rng(0)
    n, var_y, sigma2, k = 1000, 8.0, 0.004, 5
    truth = 1 - n * sigma2 / var_y
    hits = 0
    for _ in range(2000):
        mse = float(np.mean(rng.normal(0, np.sqrt(sigma2), k) ** 2))
        record = {"n": n, "n_reps": k, "rmse": np.sqrt(mse), "n_eff": var_y / mse}
        low, high = replicate.savings_range(record)
        assert low < 1 - n * mse / var_y < high
        hits += low <= truth <= high
    assert 0.93 <= hits / 2000 <= 0.97


def test_crossfit_folds_partition_the_budget(replicate):
    perm = np.random.default_rng(0).permutation(1000)
    parts = replicate.crossfit_folds(perm, 500, 5)
    folds = np.concatenate([fold for _, fold in parts])
    assert np.array_equal(np.sort(folds), np.sort(perm[:500]))
    for train, fold in parts:
        assert len(train) == 400 and not set(train) & set(fold)
    # the last fold's model is the grid model on perm[:400]
    assert np.array_equal(parts[-1][0], perm[:400])


@pytest.mark.slow
def test_quick_with_minilm(replicate, tmp_path):
    out = tmp_path / "out"
    replicate.main(["--quick", "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(out)])
    _check_outputs(replicate, out)


def test_crossfit_variance_verification(tiny_bert_dir, tmp_path):
    """``benchmarks/verify_crossfit_variance.py`` end to end on the tiny BERT: both
    intervals on the same fold models; pooled within folds the residual sum of squares can
    only be smaller than across folds."""
    spec = importlib.util.spec_from_file_location(
        "verify_crossfit_variance", SCRIPT.parent / "verify_crossfit_variance.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "crossfit_variance.md"
    argv = ["--quick", "--datasets", "wine", "--seeds", "0", "1", "--budget", "100"]
    argv += ["--backbone", tiny_bert_dir, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    rows = module.main(argv)
    assert [r["seed"] for r in rows] == [0, 1]
    for r in rows:
        assert r["var_within"] * (100 - 5) <= r["var_across"] * 100 + 1e-9
        assert r["width_within"] > 0 and r["width_across"] > 0 and r["level_sd"] >= 0
        assert r["m"] > 0 and np.isfinite(r["error"])
    text = out.read_text()
    assert "| wine | 1 |" in text and "fine-tunes run" in text
    expected = 1 - 100 * np.mean([r["se_within"] ** 2 for r in rows]) / rows[0]["var_y"]
    assert module.interval_savings(rows, "se_within", 100) == pytest.approx(expected)
    assert f"savings (interval) {100 * expected:.0f}% within" in text
