"""The replication package ``benchmarks/replication`` (issue 14): design, cache, report.

The end-to-end test runs ``--quick`` with the tiny random BERT of ``conftest.py`` as the
backbone (seconds); everything is written under ``tmp_path``.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.replication import design, methods, report  # noqa: E402
from benchmarks.replication.__main__ import main  # noqa: E402


def test_draws_are_fresh_per_draw_seeded_by_cell_and_leave_every_other_row_unlabeled():
    rows = [design.labeled_rows("wine", 100, d, 1000) for d in range(5)]
    assert all(r.size == 100 and np.unique(r).size == 100 for r in rows)
    assert len({r.tobytes() for r in rows}) == 5  # a fresh draw each repetition
    np.testing.assert_array_equal(rows[3], design.labeled_rows("wine", 100, 3, 1000))
    assert not np.array_equal(rows[0], design.labeled_rows("emobank", 100, 0, 1000))
    assert len({design.method_seed("wine", 100, d) for d in range(5)}) == 5

    texts, y_all = design.load_corpus("wine", 300)
    draw = design.make_draw("wine", 40, 2, 300)
    assert len(draw.texts) == 300 and draw.texts == texts
    np.testing.assert_array_equal(np.flatnonzero(np.isfinite(draw.y)), draw.labeled)
    np.testing.assert_array_equal(draw.y[draw.labeled], y_all[draw.labeled])
    assert np.isnan(draw.y).sum() == 300 - 40  # unlabeled: every row not drawn, no cap
    assert draw.truth == pytest.approx(np.mean(y_all))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="budget n=1000"):
        design.labeled_rows("wine", 1000, 0, 1000)
    with pytest.raises(ValueError, match="corpus must be one of"):
        design.load_corpus("imdb")
    with pytest.raises(ValueError, match="method must be one of"):
        methods.make_estimator("ridge", 0, methods.REAL)
    with pytest.raises(SystemExit):
        main(["--budgets", "0", "--plan"])


def test_default_method_is_the_estimators_defaults():
    from skftr import FineTuneRectifyEstimator
    from skftr._stages import _make_model
    from skftr.predictors import default_predictors

    est = methods.make_estimator("default", 7, methods.REAL, feature_cache="somewhere")
    ref = FineTuneRectifyEstimator(random_state=7)
    params, expected = est.get_params(deep=False), ref.get_params(deep=False)
    for name in set(expected) - {"model", "predictors", "memory"}:
        assert params[name] == expected[name], name
    assert est.memory == "somewhere"  # the trunks run once per corpus, not per draw
    assert est.model.get_params()["random_state"] == 7
    assert {k: v for k, v in est.model.get_params(deep=False).items() if k != "random_state"} \
        == {k: v for k, v in _make_model(ref).get_params(deep=False).items()
            if k != "random_state"}
    assert len(est.predictors) == len(default_predictors())
    for mine, theirs in zip(est.predictors, default_predictors()):
        assert mine.get_params() == {**theirs.get_params(), "memory": "somewhere"}
    cheap = methods.make_estimator("cheap", 7, methods.REAL, feature_cache="somewhere")
    assert cheap.model == "drop" and cheap.memory == "somewhere"
    assert [p.get_params() for p in cheap.predictors] == [p.get_params() for p in est.predictors]


def test_describe_names_a_configuration_the_same_in_every_process():
    import subprocess

    configs = {m: methods.describe(m, methods.REAL) for m in methods.METHODS}
    assert len(set(configs.values())) == len(methods.METHODS)  # each method its own
    code = ("from benchmarks.replication import methods as m; "
            "print(*(m.describe(k, m.REAL) for k in m.METHODS))")
    for seed in ("0", "12345"):  # another process, another order of str hashes (sets)
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, check=True, env={"PYTHONHASHSEED": seed,
                                                         "PATH": "", "HOME": str(ROOT)})
        assert out.stdout.split() == list(configs.values())
    assert methods.describe("default", {**methods.REAL, "top": {"top_layers": 2}}) \
        != configs["default"]  # a nested parameter is part of the name

    assert methods.canonical((np.float64(0.5), np.int64(3), {"b", "a"})) == [0.5, 3, ["a", "b"]]
    assert methods.canonical(np.arange(2)) == [0, 1]
    assert methods.canonical(np.logspace) == "numpy.logspace"
    with pytest.raises(TypeError, match="type object has no stable name"):
        methods.canonical(object())


def _result(method, draw, width, value=0.0, corpus="wine", n=100):
    return {"corpus": corpus, "n": n, "method": method, "draw": draw, "value": value,
            "low": value - width / 2, "high": value + width / 2, "truth": 0.0,
            "seconds": 1.0}


def test_report_savings_formula_on_hand_made_results():
    results = [_result("classical", d, 2.0) for d in range(4)]
    # widths 1 and 1.4: mean 1.2, savings 1 - (1.2 / 2)^2 = 0.64, n_eff = 100 / 0.36
    results += [_result("default", d, w) for d, w in enumerate([1.0, 1.4, 1.0, 1.4])]
    results += [_result("cheap", d, 1.6, value=5.0 if d == 0 else 0.0) for d in range(4)]
    cells = methods.grid(["wine"], [100], ["default", "cheap"], 4, 5)
    rows = {r["method"]: r for r in report.summarize(results, cells)}
    assert rows["default"]["savings"] == pytest.approx(0.64)
    assert rows["default"]["n_eff"] == pytest.approx(100 / 0.36)
    assert rows["default"]["width"] == pytest.approx(1.2)
    assert rows["default"]["coverage"] == 1.0 and rows["cheap"]["coverage"] == 0.75
    assert rows["classical"]["savings"] == 0.0
    assert (rows["cheap"]["draws"], rows["cheap"]["wanted"]) == (4, 5)
    per_draw = 1 - (np.array([1.0, 1.4, 1.0, 1.4]) / 2) ** 2
    assert rows["default"]["savings_se"] == pytest.approx(np.std(per_draw, ddof=1) / 2)
    (gain,) = report.compare(results)
    assert gain["difference"] == pytest.approx(0.64 - (1 - 0.8 ** 2))
    assert (gain["only_first_missed"], gain["only_second_missed"]) == (0, 1)  # cheap's draw 0
    assert report.discordance([gain]) == {"only_first_missed": 0, "only_second_missed": 1,
                                          "p": 1.0}
    eight = report.discordance([{"only_first_missed": 8, "only_second_missed": 0}])
    assert eight["p"] == pytest.approx(2 * 0.5 ** 8)  # McNemar's exact test
    assert report.discordance([])["p"] == 1.0
    assert report.pooled_coverage(results, "cheap") == {"draws": 4, "coverage": 0.75}
    pooled = {m: report.pooled_coverage(results, m) for m in ("default", "cheap")}
    goals = {g["target"]: g for g in report.targets(list(rows.values()), [gain], pooled)}
    assert goals["default savings >= floor, wine n=100"]["met"] is True
    assert goals["cheap (model='drop') savings >= floor, wine n=100"]["measured"] == \
        pytest.approx(1 - 0.8 ** 2)
    assert goals["pooled coverage of cheap (model='drop')"]["measured"] == 0.75
    assert goals["pooled coverage of default"]["met"] is True
    assert goals["default - cheap savings, wine n=500"]["met"] is None


def test_quick_end_to_end_shares_draws_and_a_rerun_computes_nothing(tiny_bert_dir, tmp_path,
                                                                    monkeypatch, capsys):
    calls = []
    original = methods.estimate

    def counted(draw, method, *args, **kwargs):
        calls.append(method)
        return original(draw, method, *args, **kwargs)

    monkeypatch.setattr(methods, "estimate", counted)
    argv = ["--quick", "--draws-finetuned", "1", "--backbone", tiny_bert_dir, "--cache-dir", str(tmp_path / "cache"),
            "--feature-cache", str(tmp_path / "features"), "--out-dir", str(tmp_path / "out")]
    payload = main(argv)
    assert sorted(calls) == sorted(2 * methods.CHEAP + methods.FINETUNED)
    results = payload["results"]
    for d in (0, 1):  # one set of labeled rows per draw, the same for every method
        assert len({r["rows_digest"] for r in results if r["draw"] == d}) == 1
    assert results[0]["rows_digest"] != results[-1]["rows_digest"]
    cells = {r["method"]: r for r in payload["cells"]}
    assert set(cells) == set(methods.METHODS)
    assert all(r["draws"] == r["wanted"] and np.isfinite(r["savings"]) for r in cells.values())
    assert "TopLayersRegressor" in next(r for r in results if r["method"] == "default")["predictors"]
    assert any((tmp_path / "features" / "skftr-trunk").iterdir())  # the trunks, kept
    out = tmp_path / "out"
    text = (out / "replication.md").read_text()
    assert "python -m benchmarks.replication --quick --draws-finetuned 1" in text and "| wine | 50 | default |" in text
    assert json.loads((out / "replication.json").read_text())["cells"] == payload["cells"]
    assert (out / "replication.png").stat().st_size > 0

    calls.clear()
    assert main(argv)["cells"] == payload["cells"]  # from the cache
    assert calls == []
    capsys.readouterr()
    assert main(argv + ["--plan"]) == []
    assert "0 draws to fit" in capsys.readouterr().out

    plan = main(argv + ["--plan", "--draws-cheap", "3", "--methods", "cheap", "default"])
    assert {(p["method"], p["missing"]) for p in plan} == {("classical", 1), ("cheap", 1)}
    assert all(p["source"] == "measured, same cell" for p in plan)
    assert "2 draws to fit" in capsys.readouterr().out
    partial = main(argv + ["--cached-only", "--draws-cheap", "3"])
    assert calls == []
    assert {r["method"]: r["draws"] for r in partial["cells"]}["cheap"] == 2
    assert "| wine | 50 | tfidf_ridge | 2/3 |" in (out / "replication.md").read_text()

    report = out / "replication.json"  # an earlier report stands in for an empty cache
    elsewhere = ["--cache-dir", str(tmp_path / "other"), "--results-from", str(report)]
    assert main(argv + elsewhere)["cells"] == payload["cells"]
    assert calls == []
    saved = json.loads(report.read_text())
    for change, message in [({"settings": {**saved["settings"], "subsample": 100}}, "settings"),
                            ({"results": [{**saved["results"][0], "rows_digest": "0" * 12}]},
                             "labeled other rows"),
                            ({"configs": None}, "not a replication report")]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**saved, **change}))
        with pytest.raises(SystemExit, match=message):
            main(argv + ["--plan", "--results-from", str(bad)])
    stale = tmp_path / "stale.json"  # a method whose estimator changed is not read back
    stale.write_text(json.dumps({**saved, "configs": {**saved["configs"], "cheap": "other"}}))
    capsys.readouterr()
    plan = main(argv + ["--plan", "--cache-dir", str(tmp_path / "other"), "--results-from",
                        str(stale)])
    assert {(p["method"], p["missing"]) for p in plan} == {("cheap", 2)}
    assert f"{stale}: cheap ran with another estimator configuration" in capsys.readouterr().err

    from skftr import predictors  # a method whose estimator changed is not read back stale
    monkeypatch.setattr(predictors, "default_predictors",
                        lambda backbone=None: [predictors.TextRidge("tfidf")])
    plan = main(argv + ["--plan", "--methods", "cheap", "tfidf_ridge"])
    assert {(p["method"], p["missing"]) for p in plan} == {("cheap", 2)}


def test_plan_of_an_empty_cache_counts_every_cell(tmp_path, capsys):
    plan = main(["--plan", "--cache-dir", str(tmp_path)])
    assert sum(p["missing"] for p in plan) == 9 * (6 * 50 + 4 * 10)
    assert {p["source"] for p in plan} == {"default"}
    assert "3060 draws to fit" in capsys.readouterr().out
