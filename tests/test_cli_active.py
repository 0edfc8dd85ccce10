"""``skftr sample --labels FIRST [--design active]`` then ``skftr estimate --labels FIRST
SECOND``: the two-stage round trip on a small generated file (tiny backbone, cheap
predictors), and damaged or mismatched draw records refused with one line."""
import json

import numpy as np
import pandas as pd
import pytest
from test_cli import cheap, make_data, run  # noqa: F401 (cheap is a fixture)

from skftr import FineTuneRectifyEstimator


def _label(path, truth):
    frame = pd.read_csv(path)
    frame["label"] = truth[frame["row_id"]]
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture
def two_batches(tmp_path, capsys, tiny_bert_dir):
    """DATA (300 rows), a labeled first batch of 60 and a labeled active second batch of 90."""
    truth = make_data(tmp_path / "data.csv", labeled=0)
    data = tmp_path / "data.csv"
    code, _, err = run(capsys, "sample", data, "--text-column", "text", "--budget", 60,
                       "--seed", 1, "-o", tmp_path / "batch1.csv")
    assert code == 0, err
    first = _label(tmp_path / "batch1.csv", truth)
    code, out, err = run(capsys, "sample", data, "--text-column", "text", "--budget", 90,
                         "--labels", tmp_path / "batch1.csv", "--design", "active",
                         "--backbone", tiny_bert_dir, "--folds", 2, "--seed", 2,
                         "-o", tmp_path / "batch2.csv")
    assert code == 0, err
    assert "second batch after 60 labeled rows, active" in out
    second = _label(tmp_path / "batch2.csv", truth)
    return tmp_path, truth, first, second


def test_active_round_trip(two_batches, capsys, cheap):  # noqa: F811
    tmp_path, truth, first, second = two_batches
    record = json.loads((tmp_path / "batch2.csv.skftr.json").read_text())
    assert record["stage"] == 2 and record["design"] == "active"
    pi2 = np.array(record["second_probability"])
    assert pi2.shape == (300,) and np.all((pi2 > 0) & (pi2 <= 1))
    assert record["first_batch"]["probability"] == pytest.approx(60 / 300)
    rest = np.setdiff1d(np.arange(300), first["row_id"])
    assert pi2[rest].sum() == pytest.approx(90)
    assert not set(first["row_id"]) & set(second["row_id"]) and len(second) == 90
    code, out, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                         "--label-column", "label", "--labels", tmp_path / "batch1.csv",
                         tmp_path / "batch2.csv", *cheap, "-o", tmp_path / "report")
    assert code == 0, err
    assert "two-stage, second batch active (weighted" in out
    result = json.loads((tmp_path / "report" / "estimate.json").read_text())
    assert result["overall"]["n_labeled"] == 150
    assert result["design"]["batches"][1]["error_model"] == "ridge"
    est = FineTuneRectifyEstimator.load(tmp_path / "report" / "model")
    pi = 1 - (1 - 60 / 300) * (1 - pi2)
    np.testing.assert_allclose(est.design_weights_, 1 / pi[est.labeled_indices_])
    code, out, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                         "--label-column", "label", "--labels", tmp_path / "batch1.csv",
                         tmp_path / "batch2.csv", "--estimand", "quantile:0.5", *cheap)
    assert code == 0 and "0.5-quantile of 'label', two-stage, second batch active" in out, err


def test_a_uniform_second_batch_is_the_plain_estimate(tmp_path, capsys, cheap):  # noqa: F811
    """Two uniform batches: every row has probability 150 / 300, and the estimate equals the
    one from the same labels in DATA's own column."""
    truth = make_data(tmp_path / "data.csv", labeled=0)
    run(capsys, "sample", tmp_path / "data.csv", "--text-column", "text", "--budget", 60,
        "-o", tmp_path / "b1.csv")
    first = _label(tmp_path / "b1.csv", truth)
    code, _, err = run(capsys, "sample", tmp_path / "data.csv", "--text-column", "text",
                       "--budget", 90, "--labels", tmp_path / "b1.csv", "-o", tmp_path / "b2.csv")
    assert code == 0, err
    second = _label(tmp_path / "b2.csv", truth)
    record = json.loads((tmp_path / "b2.csv.skftr.json").read_text())
    assert record["design"] == "srs" and set(record["second_probability"]) == {90 / 240}
    code, _, err = run(capsys, "estimate", tmp_path / "data.csv", "--text-column", "text",
                       "--label-column", "label", "--labels", tmp_path / "b1.csv",
                       tmp_path / "b2.csv", *cheap, "-o", tmp_path / "two")
    assert code == 0, err
    frame = pd.read_csv(tmp_path / "data.csv")
    rows = np.concatenate([first["row_id"], second["row_id"]])
    frame["label"] = np.nan
    frame.loc[rows, "label"] = truth[rows]
    frame.to_csv(tmp_path / "labeled.csv", index=False)
    code, _, err = run(capsys, "estimate", tmp_path / "labeled.csv", "--text-column", "text",
                       "--label-column", "label", *cheap, "-o", tmp_path / "one")
    assert code == 0, err
    two, one = (json.loads((tmp_path / d / "estimate.json").read_text())["overall"]
                for d in ("two", "one"))
    assert two["value"] == pytest.approx(one["value"], rel=1e-9)
    assert two["stderr"] == pytest.approx(one["stderr"], rel=1e-9)


def _one_line(code, err, *fragments):
    assert code == 2 and err.startswith("skftr: error:") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_damaged_and_mismatched_records_are_refused(two_batches, capsys, cheap):  # noqa: F811
    tmp_path, truth, _, _ = two_batches
    estimate = ["estimate", tmp_path / "data.csv", "--text-column", "text", "--label-column",
                "label", *cheap]
    batch1, batch2 = tmp_path / "batch1.csv", tmp_path / "batch2.csv"
    _one_line(*run(capsys, *estimate, "--labels", batch2, batch1)[::2],
              "batch1.csv was not drawn as a second batch")
    run(capsys, "sample", tmp_path / "data.csv", "--text-column", "text", "--budget", 60,
        "--seed", 7, "-o", tmp_path / "other.csv")
    _label(tmp_path / "other.csv", truth)
    _one_line(*run(capsys, *estimate, "--labels", tmp_path / "other.csv", batch2)[::2],
              "batch2.csv was drawn after another first batch than other.csv")
    _one_line(*run(capsys, *estimate, "--labels", batch1, batch2, batch2)[::2],
              "one file, or a first and a second batch; got 3")
    _one_line(*run(capsys, *estimate, "--labels", batch2)[::2],
              "batch2.csv is a second batch; give its first batch too, first: --labels "
              "batch1.csv batch2.csv")
    frame = pd.read_csv(batch2)
    frame.loc[:2, "label"] = np.nan
    frame.to_csv(tmp_path / "partial.csv", index=False)
    (tmp_path / "partial.csv.skftr.json").write_text(
        (tmp_path / "batch2.csv.skftr.json").read_text())
    _one_line(*run(capsys, *estimate, "--labels", batch1, tmp_path / "partial.csv")[::2],
              "partial.csv: 3 drawn row(s) have no label")
    side = tmp_path / "batch2.csv.skftr.json"
    record = json.loads(side.read_text())
    side.write_text(json.dumps(dict(record, second_probability=record["second_probability"][:9])))
    _one_line(*run(capsys, *estimate, "--labels", batch1, batch2)[::2],
              "batch2.csv.skftr.json: the second batch's probabilities are damaged")
    side.write_text(side.read_text()[:100])
    _one_line(*run(capsys, *estimate, "--labels", batch1, batch2)[::2],
              "batch2.csv.skftr.json is not a readable skftr draw record")
    side.unlink()
    _one_line(*run(capsys, *estimate, "--labels", batch1, batch2)[::2],
              "two batches need both draw records; batch2.csv.skftr.json is missing")
    assert not (tmp_path / "report").exists()


def test_bad_second_batch_requests_are_refused(tmp_path, capsys):
    truth = make_data(tmp_path / "data.csv", labeled=0)
    sample = ["sample", tmp_path / "data.csv", "--text-column", "text"]
    _one_line(*run(capsys, *sample, "--budget", 50, "--design", "active", "-o",
                   tmp_path / "x.csv")[::2], "--design active draws a second batch")
    run(capsys, *sample, "--budget", 60, "--strata", "region", "-o", tmp_path / "s.csv")
    _label(tmp_path / "s.csv", truth)
    _one_line(*run(capsys, *sample, "--budget", 50, "--labels", tmp_path / "s.csv", "-o",
                   tmp_path / "x.csv")[::2], "the first batch must be a simple random sample")
    run(capsys, *sample, "--budget", 60, "-o", tmp_path / "b1.csv")
    _one_line(*run(capsys, *sample, "--budget", 50, "--labels", tmp_path / "b1.csv", "-o",
                   tmp_path / "x.csv")[::2], "60 drawn row(s) have no label")
    _label(tmp_path / "b1.csv", truth)
    _one_line(*run(capsys, *sample, "--budget", 240, "--labels", tmp_path / "b1.csv", "-o",
                   tmp_path / "x.csv")[::2], "--budget 240 must be between 1 and 239")
    assert not (tmp_path / "x.csv").exists()


def test_plan_reports_the_active_design(tmp_path, capsys, cheap):  # noqa: F811
    make_data(tmp_path / "pilot.csv")
    code, out, err = run(capsys, "plan", tmp_path / "pilot.csv", "--text-column", "text",
                         "--label-column", "label", "--width", 0.5, "--design", "active",
                         *cheap, "-o", tmp_path / "plan")
    assert code == 0, err
    assert "skftr, active 2nd batch" in out
    plan = json.loads((tmp_path / "plan" / "plan.json").read_text())
    active = plan["active"]
    assert 0 < active["variance_ratio"] <= 5 and active["labels"] <= plan["classical"]["labels"]
    assert active["range"][0] <= active["labels"] <= active["range"][1]
