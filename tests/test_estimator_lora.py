"""FineTuneRectifyEstimator with LoRARegressor on the tiny random BERT (texts in).

Few rows and few optimizer steps: these check the wiring (loss, grid search over LoRA
parameters, pipelines, persistence), not the quality of the fine-tuning.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from skftr import BudgetSplitter, FineTuneRectifyEstimator, LoRARegressor, rectified_mean

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = {"good": 1.0, "great": 1.5, "excellent": 2.0, "superb": 2.0, "fine": 0.5, "nice": 1.0}
NEGATIVE = {"bad": -1.0, "poor": -1.0, "awful": -2.0, "terrible": -2.0, "dull": -0.5, "weak": -0.5}
FILLER = "the a wine film book review taste very quite".split()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; on a shared 2-core machine two OpenMP threads
    spin against the other processes and a 2-step fit takes seconds instead of 0.1 s."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def texts_and_labels(n_labeled=40, m=30, seed=0):
    rng = np.random.RandomState(seed)
    scores = {**POSITIVE, **NEGATIVE}
    words = list(scores)
    texts, y = [], []
    for _ in range(n_labeled + m):
        picked = rng.choice(words, size=2)
        texts.append("  The " + " ".join(list(picked) + list(rng.choice(FILLER, size=2))).upper())
        y.append(sum(scores[w] for w in picked) + 3.0 + 0.3 * rng.normal())
    y = np.asarray(y)
    y_obs = y.copy()
    y_obs[n_labeled:] = np.nan
    return texts, y_obs, y


def tiny_lora(backbone, **params):
    defaults = dict(backbone=backbone, lora_r=2, lora_alpha=4, max_length=16, batch_size=8,
                    max_epochs=1, min_steps=2, lr=5e-3, device="cpu", random_state=0)
    return LoRARegressor(**{**defaults, **params})


def test_default_model_is_the_mpnet_top_layer_with_cheap_predictors():
    from skftr import TopLayersRegressor, _stages
    from skftr.predictors import TextRidge

    est = FineTuneRectifyEstimator()
    model, *cheap = _stages.make_predictors(est, np.random.RandomState(0))
    assert isinstance(model, TopLayersRegressor) and model.backbone == "mpnet"
    # the model reads the same frozen trunk as the mpnet ridge: one pass serves both
    assert model.trunk_spec() == cheap[1].trunk_spec()
    assert model.get_params()["loss"] == "variance" and isinstance(model.random_state, int)
    assert [(c.features, c.backbone) for c in cheap] == [
        ("embedding", None), ("embedding", "mpnet"), ("tfidf", None), ("length", None)]
    assert all(isinstance(c, TextRidge) for c in cheap)
    tags = est.__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array


@pytest.mark.parametrize("loss", ["variance", "mse", "correlation"])
def test_lora_fit_applies_loss_and_rectifies(tiny_bert_dir, loss):
    texts, y, _ = texts_and_labels()
    est = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir, loss="mse"), predictors=None,
                                   loss=loss, crossfit=None, n_finetune=16, method="ppi",
                                   random_state=0).fit(texts, y)
    member = est.model_.members[0][0]
    assert member.get_params()["loss"] == loss and est.model.get_params()["loss"] == "mse"
    F, R = est.finetune_indices_, est.labeled_indices_
    assert np.intersect1d(F, R).size == 0 and (F.size, R.size) == (16, 24)
    texts = np.asarray(texts, dtype=object)
    ref = rectified_mean(y[R], member.predict(list(texts[R])), member.predict(list(texts[40:])),
                         method="ppi")
    assert est.estimate_.value == pytest.approx(ref.value)
    assert est.estimate_.stderr == pytest.approx(ref.stderr)
    assert est.predict(list(texts[40:])).mean() == pytest.approx(est.estimate_.value)
    new = est.estimate(list(texts[:40]))
    assert new.n_unlabeled == 40 and np.isfinite(new.value)


def _clean(texts):
    return [" ".join(t.lower().split()) for t in texts]


def test_pipeline_behind_text_cleaning_and_grid_search(tiny_bert_dir):
    """n_finetune x loss x model__lora_r, cv = BudgetSplitter: one n_finetune, one place."""
    texts, y, y_true = texts_and_labels(n_labeled=48, m=24)
    est = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir), predictors=None, crossfit=None,
                                   min_rectify=4, random_state=0)
    pipe = Pipeline([("clean", FunctionTransformer(_clean)), ("ftr", est)])
    grid = {"ftr__n_finetune": [8, 16], "ftr__loss": ["variance", "mse"],
            "ftr__model__lora_r": [2, 4]}
    search = GridSearchCV(pipe, grid, cv=BudgetSplitter(n_splits=1, random_state=0))
    search.fit(texts, y)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (8,) and np.all(np.isfinite(scores)) and np.all(scores < 0)
    best = search.best_estimator_.named_steps["ftr"]
    assert best.n_finetune_ == search.best_params_["ftr__n_finetune"]
    member = best.model_.members[0][0]
    assert member.lora_r == search.best_params_["ftr__model__lora_r"]
    assert member.get_params()["loss"] == search.best_params_["ftr__loss"]
    assert np.intersect1d(best.finetune_indices_, best.labeled_indices_).size == 0
    assert best.n_finetune_ + best.n_rectify_ == 48 and best.n_unlabeled_ == 24
    assert search.predict(texts[48:]).shape == (24,)


def test_random_state_reaches_the_lora_models(tiny_bert_dir):
    texts, y, _ = texts_and_labels()
    fit = lambda: FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir, random_state=None),  # noqa
                                           predictors=None, crossfit=2, random_state=3).fit(texts, y)
    assert fit().estimate_.value == fit().estimate_.value


def test_save_load_lora_without_pickle(tiny_bert_dir, tmp_path):
    texts, y, _ = texts_and_labels()
    est = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir), predictors=None, crossfit=2,
                                   random_state=0).fit(texts, y)
    est.save(tmp_path / "saved")
    back = FineTuneRectifyEstimator.load(tmp_path / "saved")
    assert isinstance(back.model_.members[1][0], LoRARegressor)
    assert back.model_.members[1][0].lora_r == 2
    np.testing.assert_allclose(back.predict(texts), est.predict(texts), rtol=1e-6, atol=1e-9)
    assert back.estimate_.to_dict() == est.estimate_.to_dict()
    assert back.estimate(texts[40:]).value == pytest.approx(est.estimate(texts[40:]).value)
    adapter = next((tmp_path / "saved").rglob("*.safetensors"))
    data = bytearray(adapter.read_bytes())
    data[-3] ^= 0x10
    adapter.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="altered"):
        FineTuneRectifyEstimator.load(tmp_path / "saved")


def test_joblib_lora_in_a_fresh_process(tiny_bert_dir, tmp_path):
    texts, y, _ = texts_and_labels()
    est = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir), predictors=None, crossfit=2,
                                   random_state=0).fit(texts, y)
    joblib.dump(est, tmp_path / "est.joblib")
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    code = (
        "import json, joblib\n"
        f"est = joblib.load({str(tmp_path / 'est.joblib')!r})\n"
        f"texts = json.loads(open({str(tmp_path / 'texts.json')!r}).read())\n"
        "print(json.dumps({'predict': est.predict(texts).tolist(),"
        " 'estimate': est.estimate_.to_dict()}))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=str(ROOT), timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(result["predict"], est.predict(texts), rtol=1e-6, atol=1e-9)
    assert result["estimate"] == json.loads(json.dumps(est.estimate_.to_dict()))


def test_auto_allocation_with_lora_pilots(tiny_bert_dir):
    texts, y, y_true = texts_and_labels(n_labeled=160, m=60)
    est = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir, max_epochs=2), predictors=None,
                                   crossfit=None, random_state=0, pilot_repeats=1).fit(texts, y)
    alloc = est.allocation_
    assert alloc.n_pilot == est.pilot_indices_.size == 60  # sizes 10, 20, 40 + 20 held out
    assert np.isin(est.pilot_indices_, est.finetune_indices_).all()
    assert not np.isin(est.pilot_indices_, est.labeled_indices_).any()
    assert est.n_finetune_ == alloc.n_finetune and est.n_rectify_ == 160 - alloc.n_finetune
    assert len(est.scaling_law_.pilots_) == 3


def test_crossfit_with_lora_and_a_cheap_predictor(tiny_bert_dir):
    from skftr import TextRidge

    texts, y, _ = texts_and_labels()
    est = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir), crossfit=2,
                                   predictors=[TextRidge(features="tfidf")],
                                   random_state=0).fit(texts, y)
    assert est.model_.n_folds == 2 and est.estimate_.method.startswith("cross-ppi++")
    assert est.predictor_names_ == ["LoRARegressor", "ridge on tfidf"]
    assert abs(est.predict(texts[40:]).mean() - est.estimate_.value) < est.estimate_.stderr


def test_default_predictors_name_their_backbones_and_take_one_backbone(tiny_bert_dir):
    from skftr.predictors import _name, default_predictors

    assert [_name(p) for p in default_predictors()] == [
        "ridge on embedding", "ridge on mpnet embedding", "ridge on tfidf", "ridge on length"]
    one = default_predictors(backbone=tiny_bert_dir)
    assert [(p.features, p.backbone) for p in one] == [("embedding", tiny_bert_dir),
                                                       ("tfidf", None), ("length", None)]
