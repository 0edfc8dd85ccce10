"""skftr.inference: merged-LoRA and int8 copies of fitted torch predictors."""
import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from skftr import SentenceEmbedder, TextRidge
from skftr.inference import OptimizedPredictor, optimize
from skftr.predictors import FoldEnsemble

from test_estimator_lora import texts_and_labels, tiny_lora


@pytest.fixture(autouse=True)
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted(tiny_bert_dir):
    """A tiny LoRA model whose adapter is not zero (no inner check: the tuned one is kept)."""
    texts, _, y = texts_and_labels(40, 0)
    model = tiny_lora(tiny_bert_dir, holdout=0, min_steps=6, lr=2e-2).fit(texts, y)
    return model, texts_and_labels(0, 60, seed=1)[0]


def lora_weights_nonzero(model):
    return any(float(p.detach().abs().max()) > 0 for n, p in model.module_.named_parameters()
               if "lora_B" in n)


def test_merged_equals_the_fitted_model(fitted):
    from peft.tuners.tuners_utils import BaseTunerLayer

    model, texts = fitted
    assert lora_weights_nonzero(model)
    before = model.predict(texts)
    fast = optimize(model, "merged")
    assert isinstance(fast, OptimizedPredictor)
    assert not any(isinstance(m, BaseTunerLayer) for m in fast.module_.modules())
    np.testing.assert_allclose(fast.predict(texts), before, rtol=1e-5, atol=1e-5 * before.std())
    np.testing.assert_array_equal(model.predict(texts), before)  # the model is untouched
    assert any(isinstance(m, BaseTunerLayer) for m in model.module_.modules())


def test_int8_is_close_and_keeps_the_head_in_float32(fitted):
    import torch

    model, texts = fitted
    exact = model.predict(texts)
    fast = optimize(model, "int8")
    pred = fast.predict(texts)
    # stated tolerance on the tiny model: int8 error below 5% of the prediction spread
    assert np.max(np.abs(pred - exact)) < 0.05 * exact.std()
    assert np.corrcoef(pred, exact)[0, 1] > 0.99
    assert type(fast.module_.head) is torch.nn.Linear
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in fast.module_.modules())
    assert not any(type(m) is torch.nn.Linear for m in fast.module_.backbone.modules())


def test_pickle_rebuilds_the_fast_module(fitted):
    model, texts = fitted
    fast = optimize(model, "int8")
    again = pickle.loads(pickle.dumps(fast))
    assert again.module_ is not fast.module_
    np.testing.assert_array_equal(again.predict(texts), fast.predict(texts))


def test_embeddings_ridges_and_ensembles(fitted, tiny_bert_dir):
    model, texts = fitted
    labels = np.random.RandomState(0).normal(size=len(texts))
    embedder = SentenceEmbedder(backbone=tiny_bert_dir).fit()
    fast = optimize(embedder, "int8")
    exact = embedder.transform(texts)
    np.testing.assert_allclose(fast.transform(texts), exact, atol=0.05 * exact.std())
    assert not hasattr(fast, "predict")
    ridge = TextRidge("embedding", backbone=tiny_bert_dir).fit(texts, labels)
    tfidf = TextRidge("tfidf").fit(texts, labels)
    assert optimize(tfidf) is tfidf
    fast_ridge = optimize(ridge, "merged")
    assert fast_ridge is not ridge and fast_ridge.ridge_ is ridge.ridge_
    np.testing.assert_allclose(fast_ridge.predict(texts), ridge.predict(texts), rtol=1e-5,
                               atol=1e-6)
    ensemble = FoldEnsemble([[model, ridge, tfidf], [model, ridge, tfidf]], [0.5, 0.5],
                            ["lora", "ridge", "tfidf"])
    fast_ensemble = optimize(ensemble, "merged")
    assert isinstance(fast_ensemble.members[0][0], OptimizedPredictor)
    assert fast_ensemble.members[1][2] is tfidf
    np.testing.assert_allclose(fast_ensemble.predict_fold(1, np.asarray(texts, dtype=object)),
                               ensemble.predict_fold(1, np.asarray(texts, dtype=object)),
                               rtol=1e-5, atol=1e-5)


def test_bad_arguments(fitted, tiny_bert_dir):
    from skftr import FineTuneRectifyEstimator

    model, _ = fitted
    with pytest.raises(ValueError, match="method"):
        optimize(model, "bf16")
    with pytest.raises(NotFittedError):
        optimize(tiny_lora(tiny_bert_dir))
    with pytest.raises(TypeError, match="est.model_"):
        optimize(FineTuneRectifyEstimator())
    with pytest.raises(TypeError, match="LoRARegressor or SentenceEmbedder"):
        OptimizedPredictor(TextRidge()).fit()
    with pytest.raises(TypeError, match="fitted predictor"):
        optimize(object())


def test_estimator_fits_with_the_fast_path_and_saves_it(tiny_bert_dir, tmp_path):
    """inference= applies the fast copy inside fit; "merged" gives the same estimate as the
    trained module, the saved estimator rebuilds it, and int8 stays a valid fit."""
    from skftr import FineTuneRectifyEstimator
    from skftr.estimator import FineTuneRectifyEstimator as Loaded

    texts, y, _ = texts_and_labels(40, 30, seed=2)
    params = dict(predictors=None, crossfit=2, random_state=0)
    plain = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir, min_steps=4), **params)
    merged = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir, min_steps=4), inference="merged",
                                      **params)
    plain.fit(texts, y)
    merged.fit(texts, y)
    assert all(isinstance(fold[0], OptimizedPredictor) for fold in merged.model_.members)
    np.testing.assert_allclose(merged.estimate_.value, plain.estimate_.value, rtol=1e-5)
    np.testing.assert_allclose(merged.predict(texts[:5]), plain.predict(texts[:5]), rtol=1e-4)
    loaded = Loaded.load(merged.save(tmp_path / "merged"))
    assert all(isinstance(fold[0], OptimizedPredictor) and fold[0].method == "merged"
               for fold in loaded.model_.members)
    np.testing.assert_allclose(loaded.predict(texts[:5]), merged.predict(texts[:5]), rtol=1e-6)
    int8 = FineTuneRectifyEstimator(tiny_lora(tiny_bert_dir, min_steps=4), inference="int8",
                                    **params).fit(texts, y)
    assert int8.model_.members[0][0].method == "int8" and np.isfinite(int8.estimate_.stderr)
    with pytest.raises(ValueError, match="inference"):
        FineTuneRectifyEstimator(inference="fp16").fit(texts, y)
