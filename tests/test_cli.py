"""The ``skftr`` command line end to end on small generated files (tiny backbone).

Most fits use the cheap predictors only (``--model-param model=drop``, frozen tiny BERT
embeddings and TF-IDF) and take about a second; two runs fine-tune the tiny BERT with
LoRA for a few steps.
"""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_WORDS
from scipy.stats import norm
from sklearn.linear_model import LinearRegression

from skftr import FineTuneRectifyEstimator, cli
from skftr.cli import draw_sample, main, plan_labels
from skftr.rectify import rectified_mean

POSITIVE, NEGATIVE = TINY_WORDS[:6], TINY_WORDS[6:12]


def make_data(path, n=300, labeled=1 / 3, seed=0):
    """Short texts whose label counts positive minus negative words, plus noise; a
    ``region`` (uneven sizes), a ``kind`` and a user ``score`` column. Returns the truth."""
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(TINY_WORDS, rng.integers(4, 9))) for _ in range(n)]
    truth = np.array([sum(w in POSITIVE for w in t.split()) - sum(w in NEGATIVE for w in t.split())
                      for t in texts], float) + rng.normal(0, 0.5, n)
    frame = pd.DataFrame({"text": texts, "region": rng.choice(["north", "south", "east"], n,
                                                               p=[0.5, 0.3, 0.2]),
                          "kind": rng.choice(["a", "b"], n), "score": truth + rng.normal(0, 1, n)})
    if labeled:
        frame.insert(1, "label", np.where(rng.random(n) < labeled, truth, np.nan))
    frame.to_csv(path, index=False)
    return truth


def run(capsys, *args):
    """(exit status, stdout, stderr) of ``skftr ARGS``."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cheap(tiny_bert_dir):
    """Fit options: cheap predictors on the tiny backbone, 2 folds, seeded, quiet."""
    return ["--backbone", tiny_bert_dir, "--folds", "2", "--seed", "0", "--quiet",
            "--model-param", "model=drop"]


@pytest.fixture
def lora(tiny_bert_dir):
    """Fit options: the default (LoRA and the cheap predictors) for a few steps."""
    return ["--backbone", tiny_bert_dir, "--folds", "2", "--seed", "0", "--quiet",
            "--model-param", "model__min_steps=4", "--model-param", "model__max_epochs=1"]


# ---------------------------------------------------------------------- help
def test_help_of_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and all(c in out for c in ("sample", "estimate", "plan"))
    for command, option in (("sample", "--budget"), ("estimate", "--estimand"),
                            ("plan", "--width")):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and option in out


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "skftr", "sample", "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "--strata" in done.stdout


# ---------------------------------------------------------------------- sample
def test_sample_simple_random(tmp_path, capsys):
    make_data(tmp_path / "data.csv", labeled=0)
    out = tmp_path / "to_label.csv"
    code, stdout, _ = run(capsys, "sample", tmp_path / "data.csv", "--text-column", "text",
                          "--budget", 30, "--seed", 5, "-o", out)
    assert code == 0 and "drew 30 of 300 rows" in stdout
    drawn, data = pd.read_csv(out), pd.read_csv(tmp_path / "data.csv")
    assert list(drawn.columns) == ["row_id", "text", "label"]
    assert drawn["row_id"].is_unique and drawn["label"].isna().all()
    assert drawn["text"].tolist() == data["text"].iloc[drawn["row_id"]].tolist()
    record = json.loads((tmp_path / "to_label.csv.skftr.json").read_text())
    assert record["data"]["rows"] == 300 and record["seed"] == 5
    assert record["design"] == "srs" and record["strata"][0]["inclusion_probability"] == 0.1
    assert record["ids"] == [str(i) for i in drawn["row_id"]]
    again = tmp_path / "again.csv"
    run(capsys, "sample", tmp_path / "data.csv", "--text-column", "text", "--budget", 30,
        "--seed", 5, "-o", again)
    assert pd.read_csv(again)["row_id"].tolist() == drawn["row_id"].tolist()


def test_sample_stratified_with_an_id_column(tmp_path, capsys):
    make_data(tmp_path / "data.csv", labeled=0)
    data = pd.read_csv(tmp_path / "data.csv")
    data.insert(0, "uid", [f"u{i:04d}" for i in range(len(data))])
    data.to_parquet(tmp_path / "data.parquet")
    out = tmp_path / "to_label.jsonl"
    code, _, _ = run(capsys, "sample", tmp_path / "data.parquet", "--text-column", "text",
                     "--budget", 40, "--strata", "region", "--id-column", "uid", "-o", out)
    assert code == 0
    drawn = pd.read_json(out, lines=True)
    assert list(drawn.columns) == ["uid", "text", "region", "label"]
    record = json.loads((tmp_path / "to_label.jsonl.skftr.json").read_text())
    assert record["design"] == "stratified" and record["id_column"] == "uid"
    sizes = data["region"].value_counts()
    for stratum in record["strata"]:
        assert stratum["N"] == sizes[stratum["value"]]
        assert stratum["n"] == (drawn["region"] == stratum["value"]).sum()
        assert stratum["inclusion_probability"] == stratum["n"] / stratum["N"]
    merged = drawn.merge(data, on="uid", suffixes=("", "_data"))
    assert (merged["text"] == merged["text_data"]).all()
    assert (merged["region"] == merged["region_data"]).all()


@pytest.mark.parametrize("sizes, budget", [([150, 100, 40, 10], 30), ([500, 7, 6, 5], 40),
                                           ([20, 20, 20], 31), ([9, 300], 12)])
def test_proportional_allocation_by_largest_remainder(sizes, budget):
    strata = np.repeat([f"s{h}" for h in range(len(sizes))], sizes)
    rows, design = draw_sample(strata.size, budget, strata, seed=None)
    n = np.array([s["n"] for s in design])
    assert rows.size == budget == n.sum() and np.unique(rows).size == budget
    assert (n >= 3).all()
    free = n > 3
    share = (budget - 3 * (~free).sum()) * np.array(sizes)[free] / np.array(sizes)[free].sum()
    assert (np.abs(n[free] - share) < 1).all()
    assert [np.sum(strata[rows] == s["value"]) for s in design] == n.tolist()


def test_stratified_draws_have_the_recorded_inclusion_probabilities():
    """Over fresh draws each row of stratum h is drawn with frequency n_h / N_h."""
    strata = np.repeat(["big", "small"], [60, 12])
    counts = np.zeros(72)
    for _ in range(600):
        rows, design = draw_sample(72, 12, strata)
        counts[rows] += 1
    pi = {s["value"]: s["inclusion_probability"] for s in design}
    assert pi == {"big": 9 / 60, "small": 3 / 12}
    for value, p in pi.items():
        freq = counts[strata == value] / 600
        se = np.sqrt(p * (1 - p) / 600)
        assert abs(freq.mean() - p) < 4 * se / np.sqrt(freq.size) + 1e-9
        assert np.all(np.abs(freq - p) < 5 * se)


# ---------------------------------------------------------------------- estimate
def test_estimate_end_to_end_with_lora_and_a_score_column(tmp_path, capsys, lora):
    make_data(tmp_path / "data.csv")
    report = tmp_path / "report"
    code, out, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                         "--label-column", "label", "--score-column", "score", *lora,
                         "-o", report)
    assert code == 0, err
    assert "overall" in out and "classical 95% CI" in out and "effective labels" in out
    assert "2 folds" in out and "LoRARegressor" in out and "score" in out
    result = json.loads((report / "estimate.json").read_text())
    assert result["fit"]["predictors"][0] == "LoRARegressor"
    assert result["fit"]["predictors"][-1] == "score"
    assert result["settings"]["score_column"] == ["score"]
    assert (report / "estimate.png").stat().st_size > 10_000
    est = FineTuneRectifyEstimator.load(report / "model")
    assert est.estimate_.value == pytest.approx(result["overall"]["value"])
    low, high = result["overall"]["ci"]
    assert low < result["overall"]["value"] < high


def test_estimate_from_a_labeled_sample(tmp_path, capsys, cheap):
    truth = make_data(tmp_path / "data.csv", labeled=0)
    run(capsys, "sample", tmp_path / "data.csv", "--text-column", "text", "--budget", 80,
        "-o", tmp_path / "to_label.csv")
    drawn = pd.read_csv(tmp_path / "to_label.csv")
    drawn["label"] = truth[drawn["row_id"]]
    drawn.loc[:4, "label"] = np.nan  # five rows not labeled (yet): they stay unlabeled
    drawn.to_csv(tmp_path / "to_label.csv", index=False)
    code, out, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                         "--label-column", "label", "--labels", tmp_path / "to_label.csv",
                         *cheap, "-o", f"{tmp_path / 'report'}/")
    assert code == 0, err
    assert f"report written to {tmp_path / 'report'}/ (estimate.json" in out
    result = json.loads((tmp_path / "report" / "estimate.json").read_text())
    assert result["overall"]["n_labeled"] == 75 and result["overall"]["n_unlabeled"] == 225
    assert result["design"]["design"] == "srs"
    est = FineTuneRectifyEstimator.load(tmp_path / "report" / "model")
    labeled = np.sort(drawn["row_id"].iloc[5:].to_numpy())
    np.testing.assert_array_equal(np.sort(est.labeled_indices_), labeled)


def _direct(est, rows):
    """rectified_mean on the fit's stored predictions of ``rows`` (positions in DATA)."""
    r = np.isin(est.labeled_indices_, rows)
    u = np.isin(est._unlabeled_rows, rows)
    return rectified_mean(est._y_rect[r], est._f_rect[r], est._f_unl[u], folds=est._folds[r],
                          folds_unlabeled=est._folds_unl[u])


def test_stratified_and_by_group_estimates_match_rectify(tmp_path, capsys, cheap):
    truth = make_data(tmp_path / "data.csv", labeled=0)
    run(capsys, "sample", tmp_path / "data.csv", "--text-column", "text", "--budget", 120,
        "--strata", "region", "-o", tmp_path / "to_label.csv")
    drawn = pd.read_csv(tmp_path / "to_label.csv")
    drawn["label"] = truth[drawn["row_id"]]
    drawn.to_csv(tmp_path / "to_label.csv", index=False)
    code, out, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                         "--label-column", "label", "--labels", tmp_path / "to_label.csv",
                         "--by", "kind", *cheap, "-o", tmp_path / "report")
    assert code == 0, err
    assert "stratified draw" in out and "kind = a" in out and "kind = b" in out
    result = json.loads((tmp_path / "report" / "estimate.json").read_text())
    est = FineTuneRectifyEstimator.load(tmp_path / "report" / "model")
    data = pd.read_csv(tmp_path / "data.csv")

    def combined(domain):
        """sum_h (N_dh / N_d) theta_dh, se^2 = sum_h (N_dh / N_d)^2 se_dh^2."""
        parts = [(np.flatnonzero(domain & (data["region"] == h).to_numpy()))
                 for h in sorted(data["region"].unique())]
        w = np.array([p.size for p in parts]) / domain.sum()
        fits = [_direct(est, p) for p in parts]
        return (w @ [f.value for f in fits], np.sqrt(w**2 @ [f.stderr**2 for f in fits]),
                w @ [np.mean(truth[p[np.isin(p, drawn["row_id"])]]) for p in parts])

    for key, domain in [("overall", np.ones(len(data), bool))] + \
            [(g, (data["kind"] == g).to_numpy()) for g in ("a", "b")]:
        found = result["overall"] if key == "overall" else result["groups"][key]
        value, stderr, classical = combined(domain)
        assert found["value"] == pytest.approx(value, rel=1e-9)
        assert found["stderr"] == pytest.approx(stderr, rel=1e-9)
        assert np.mean(found["classical_ci"]) == pytest.approx(classical, rel=1e-9)
        assert found["method"].startswith("stratified")
    weights = {s["value"]: s["N"] / 300 for s in result["design"]["strata"]}
    assert sum(weights.values()) == pytest.approx(1)
    for h, part in result["strata"].items():
        direct = _direct(est, np.flatnonzero(data["region"] == h))
        assert part["value"] == pytest.approx(direct.value, rel=1e-9)


def test_by_group_without_strata_matches_rectify(tmp_path, capsys, cheap):
    make_data(tmp_path / "data.csv", labeled=0.4)
    code, _, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                       "--label-column", "label", "--by", "region", *cheap,
                       "-o", tmp_path / "report")
    assert code == 0, err
    result = json.loads((tmp_path / "report" / "estimate.json").read_text())
    est = FineTuneRectifyEstimator.load(tmp_path / "report" / "model")
    region = pd.read_csv(tmp_path / "data.csv")["region"]
    assert sorted(result["groups"]) == ["east", "north", "south"]
    for g, found in result["groups"].items():
        direct = _direct(est, np.flatnonzero(region == g))
        assert found["value"] == pytest.approx(direct.value, rel=1e-9)
        assert found["ci"] == pytest.approx(list(direct.ci), rel=1e-9)
    assert result["overall"]["value"] == pytest.approx(est.estimate_.value)


def test_share_and_quantile_estimands(tmp_path, capsys, cheap):
    make_data(tmp_path / "data.csv", labeled=0.5)
    y = pd.read_csv(tmp_path / "data.csv")["label"].dropna().to_numpy()
    code, out, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                         "--label-column", "label", "--estimand", "share:>=1", *cheap,
                         "-o", tmp_path / "share")
    assert code == 0, err
    assert "share of 'label' >= 1" in out
    share = json.loads((tmp_path / "share" / "estimate.json").read_text())["overall"]
    assert np.mean(share["classical_ci"]) == pytest.approx(np.mean(y >= 1))
    assert 0 <= share["value"] <= 1
    code, out, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                         "--label-column", "label", "--estimand", "quantile:0.25", *cheap,
                         "-o", tmp_path / "quantile")
    assert code == 0, err
    assert "0.25-quantile of 'label'" in out
    quantile = json.loads((tmp_path / "quantile" / "estimate.json").read_text())
    assert quantile["estimand"] == {"kind": "quantile", "q": 0.25, "label_column": "label",
                                    "description": "0.25-quantile of 'label'"}
    low, high = quantile["overall"]["classical_ci"]
    assert low <= np.quantile(y, 0.25) <= high


def test_progress_bar_only_on_a_terminal(tmp_path, capsys, cheap, monkeypatch):
    make_data(tmp_path / "data.csv")
    seen = []
    make = cli.make_estimator
    monkeypatch.setattr(cli, "make_estimator",
                        lambda args, *a: seen.append(a[-1]) or make(args, *a))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    options = [o for o in cheap if o != "--quiet"]
    for extra in ([], ["--quiet"]):
        code, _, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                           "--label-column", "label", *options, *extra)
        assert code == 0, err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text", "--label-column",
        "label", *options)
    assert seen == [1, 0, 0]


def test_a_failure_midway_leaves_no_report(tmp_path, capsys, cheap, monkeypatch):
    make_data(tmp_path / "data.csv")

    def broken(self, path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(FineTuneRectifyEstimator, "save", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
            "--label-column", "label", *cheap, "-o", tmp_path / "report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]


# ---------------------------------------------------------------------- bad input
BAD = {
    "unknown extension": (["estimate", "{d}/data.xlsx", "--text-column", "text",
                           "--label-column", "label"], ["data.xlsx", "unknown file type"]),
    "missing file": (["estimate", "{d}/none.csv", "--text-column", "text",
                      "--label-column", "label"], ["none.csv: no such file"]),
    "unreadable": (["estimate", "{d}/broken.parquet", "--text-column", "text",
                    "--label-column", "label"], ["broken.parquet: cannot be read as PARQUET"]),
    "missing column": (["estimate", "{d}/data.csv", "--text-column", "body",
                        "--label-column", "label"],
                       ["no column 'body'", "'text', 'label', 'region'"]),
    "non-numeric label": (["estimate", "{d}/bad_label.csv", "--text-column", "text",
                           "--label-column", "label"], ["['label'][7] = 'high'", "not a number"]),
    "empty text": (["estimate", "{d}/empty_text.csv", "--text-column", "text",
                    "--label-column", "label"], ["['text'][4] is missing"]),
    "non-string text": (["estimate", "{d}/number_text.jsonl", "--text-column", "text",
                         "--label-column", "label"], ["['text'][2] must be a str"]),
    "duplicated ids": (["estimate", "{d}/nolabel.csv", "--text-column", "text",
                        "--label-column", "label", "--labels", "{d}/dup.csv"],
                       ["dup.csv['row_id'] has duplicated ids: '3' at rows 0 and 2"]),
    "unknown ids": (["estimate", "{d}/nolabel.csv", "--text-column", "text", "--label-column",
                     "label", "--labels", "{d}/unknown.csv"],
                    ["2 id(s) in column 'row_id' are not rows of nolabel.csv", "300, 301"]),
    "budget too large": (["sample", "{d}/data.csv", "--text-column", "text", "--budget", "301",
                          "-o", "{d}/out/s.csv"], ["--budget 301", "300 rows"]),
    "too few labels": (["estimate", "{d}/few.csv", "--text-column", "text", "--label-column",
                        "label", "--folds", "2"], ["3 labeled rows", "at least 4 are needed"]),
    "small group": (["estimate", "{d}/data.csv", "--text-column", "text", "--label-column",
                     "label", "--by", "tiny"],
                    ["group (tiny) 'rare' has 1 labeled", "at least 3 labeled"]),
    "bad estimand": (["estimate", "{d}/data.csv", "--text-column", "text", "--label-column",
                      "label", "--estimand", "median"], ["--estimand 'median'"]),
    "labels twice": (["estimate", "{d}/data.csv", "--text-column", "text", "--label-column",
                      "label", "--labels", "{d}/dup.csv"], ["use one source of labels"]),
    "other data": (["estimate", "{d}/other.csv", "--text-column", "text", "--label-column",
                    "label", "--labels", "{d}/drawn.csv"], ["drawn.csv was drawn from nolabel.csv"]),
    "undrawn id": (["estimate", "{d}/nolabel.csv", "--text-column", "text", "--label-column",
                    "label", "--labels", "{d}/undrawn.csv"], ["were not drawn by the sample"]),
    "quantile stratified": (["estimate", "{d}/nolabel.csv", "--text-column", "text",
                             "--label-column", "label", "--labels", "{d}/strat.csv",
                             "--estimand", "quantile:0.5"], ["quantile with a stratified draw"]),
    "unknown parameter": (["estimate", "{d}/data.csv", "--text-column", "text",
                           "--label-column", "label", "--model-param", "colour=red"],
                          ["colour"]),
    "small stratum": (["sample", "{d}/data.csv", "--text-column", "text", "--budget", "20",
                       "--strata", "tiny", "-o", "{d}/out/s.csv"],
                      ["stratum 'rare' has 4 rows", "at least 5"]),
    "overwrite data": (["sample", "{d}/data.csv", "--text-column", "text", "--budget", "20",
                        "-o", "{d}/data.csv"], ["is DATA itself"]),
    "plan width": (["plan", "{d}/data.csv", "--text-column", "text", "--label-column", "label",
                    "--width", "-1"], ["--width must be positive"]),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    truth = make_data(d / "data.csv")
    data = pd.read_csv(d / "data.csv")
    data["tiny"] = np.where(np.arange(300) < 4, "rare", "common")
    data.loc[:3, "label"] = [1.0, np.nan, np.nan, np.nan]
    data.to_csv(d / "data.csv", index=False)
    (d / "data.xlsx").write_bytes(b"PK")
    (d / "broken.parquet").write_bytes(b"garbage")
    data.assign(label=data["label"].astype(object).where(data.index != 7, "high")) \
        .to_csv(d / "bad_label.csv", index=False)
    data.assign(text=data["text"].where(data.index != 4, "")).to_csv(d / "empty_text.csv",
                                                                    index=False)
    data.assign(text=data["text"].astype(object).where(data.index != 2, 17)) \
        .to_json(d / "number_text.jsonl", orient="records", lines=True)
    nolabel = data.drop(columns="label")
    nolabel.to_csv(d / "nolabel.csv", index=False)
    nolabel.iloc[:-1].to_csv(d / "other.csv", index=False)
    pd.DataFrame({"row_id": [3, 4, 3], "label": [1, 2, 3]}).to_csv(d / "dup.csv", index=False)
    pd.DataFrame({"row_id": [1, 300, 301], "label": [1, 2, 3]}).to_csv(d / "unknown.csv",
                                                                      index=False)
    data.assign(label=np.where(np.arange(300) < 3, 1.0, np.nan)).to_csv(d / "few.csv",
                                                                      index=False)
    for name, strata in (("drawn.csv", []), ("undrawn.csv", []), ("strat.csv", ["--strata",
                                                                                  "region"])):
        main(["sample", str(d / "nolabel.csv"), "--text-column", "text", "--budget", "40",
              "--seed", "1", *strata, "-o", str(d / name)])
        drawn = pd.read_csv(d / name)
        drawn["label"] = truth[drawn["row_id"]]
        if name == "undrawn.csv":
            drawn.loc[0, "row_id"] = int(np.setdiff1d(np.arange(300), drawn["row_id"])[0])
        drawn.to_csv(d / name, index=False)
    return d


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(case, bad_files, capsys, cheap):
    args, fragments = BAD[case]
    args = [a.format(d=bad_files) for a in args]
    if args[0] != "sample":
        args += cheap + ["-o", str(bad_files / "out" / "report")]
    code, _, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skftr: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (bad_files / "out").exists()


def test_an_unknown_backbone_is_one_line(bad_files, capsys):
    code, _, err = run(capsys, "estimate", bad_files / "data.csv", "--text-column", "text",
                       "--label-column", "label", "--backbone", "no-such-model", "--folds", 2,
                       "--quiet", "--model-param", "model=drop")
    assert code == 2 and err.startswith("skftr: error: ") and len(err.splitlines()) == 1
    assert "'no-such-model' is neither a known backbone" in err and "minilm" in err


def test_a_malformed_model_param_is_a_usage_error(capsys):
    code, _, err = run(capsys, "estimate", "d.csv", "--text-column", "t", "--label-column", "l",
                       "--model-param", "crossfit")
    assert code == 2 and "expected KEY=VALUE" in err


# ---------------------------------------------------------------------- plan
def test_plan_end_to_end(tmp_path, capsys, lora):
    make_data(tmp_path / "pilot.csv")
    code, out, err = run(capsys, "plan", tmp_path / "pilot.csv", "--text-column", "text",
                         "--label-column", "label", "--width", 0.8, *lora, "-o",
                         tmp_path / "plan")
    assert code == 0, err
    assert "labels needed" in out and "conservative" in out and "scaling law" in out
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    y = pd.read_csv(tmp_path / "pilot.csv")["label"].dropna()
    classical = np.ceil((2 * norm.ppf(0.975) * y.std() / 0.8) ** 2)
    assert plan["classical"]["labels"] == classical
    assert plan["skftr"]["labels"] <= classical
    for key in ("classical", "skftr"):
        low, high = plan[key]["range"]
        assert low <= plan[key]["labels"] <= high
    assert (tmp_path / "plan" / "plan.png").stat().st_size > 10_000


def test_plan_predicts_the_width_obtained(rng):
    """Synthetic numeric problem, the estimator with a cheap predictor (linear regression,
    model disabled): fitting at the planned budget on fresh draws gives the target width.

    Eight fresh pilots of 150 labels among 3,000 rows; at each planned budget, eight fresh
    draws. The labels the realised widths call for, ``n (width / W)^2``, average within
    -20% / +15% of the plan (the plan errs on the side of more labels: its models saw
    fewer labels).
    """
    N, width = 3000, 0.25
    X = rng.normal(size=(N, 3))
    y_all = X @ [1.0, -0.5, 0.8] + rng.normal(0, 1.2, N)

    def fit(n):
        rows = rng.choice(N, n, replace=False)
        y = np.full(N, np.nan)
        y[rows] = y_all[rows]
        return FineTuneRectifyEstimator(model="drop", predictors=[LinearRegression()],
                                        random_state=rng.integers(2**31)).fit(X, y)

    ratios = []
    for _ in range(8):
        pilot = fit(150)
        y_r = y_all[pilot.labeled_indices_]
        plan = plan_labels(y_r, pilot.labeled_predictions_, pilot.estimate_.stderr,
                           N, width, random_state=rng.integers(2**31))
        n = plan["skftr"]["labels"]
        assert n < plan["classical"]["labels"]
        got = [np.diff(fit(n).estimate_.ci)[0] for _ in range(8)]
        ratios.append(np.mean(np.square(got)) / width**2)
    assert 0.8 < np.mean(ratios) < 1.15, ratios


def test_workers_without_a_local_scheduler_is_one_line(tmp_path, capsys, cheap):
    make_data(tmp_path / "data.csv", n=60)
    for extra in (["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"],
                  ["--scheduler", "local", "--workers", "0"]):
        code, out, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                             "--label-column", "label", *cheap, *extra)
        assert code == 2 and err.startswith("skftr: error: --workers") and out == ""


@pytest.mark.slow  # a local Dask cluster of worker processes: 30-90 s on 2 shared cores
def test_estimate_on_a_local_dask_cluster_equals_the_in_process_fit(tmp_path, capsys, lora):
    make_data(tmp_path / "data.csv", n=120)
    common = ["estimate", tmp_path / "data.csv", "--text-column", "text", "--label-column",
              "label", *lora, "--inference", "merged"]
    code, _, err = run(capsys, *common, "-o", tmp_path / "here")
    assert code == 0, err
    code, _, err = run(capsys, *common, "--scheduler", "local", "--workers", "2",
                       "-o", tmp_path / "there")
    assert code == 0, err
    here, there = (json.loads((tmp_path / d / "estimate.json").read_text())
                   for d in ("here", "there"))
    assert there["settings"]["scheduler"] == "local" and there["settings"]["inference"] == "merged"
    assert there["overall"]["value"] == pytest.approx(here["overall"]["value"], rel=1e-4)
    assert there["overall"]["stderr"] == pytest.approx(here["overall"]["stderr"], rel=1e-3)
