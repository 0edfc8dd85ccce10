"""skftr.trunk and skftr.finetune: the shared frozen pass, its disk cache, and the
fine-tune of the top layers on it (tiny random backbones from conftest)."""
import pickle

import numpy as np
import pytest
import torch

from skftr.exceptions import UntrustedFileError
from skftr.finetune import TopLayersRegressor, build_top_model
from skftr.trunk import (TrunkOutputs, TrunkSpec, cached_outputs, get_trunk, padded_shape,
                         resolve_precision)

from conftest import TINY_WORDS


def make_texts(rng, n):
    texts = [" ".join(rng.choice(TINY_WORDS, rng.integers(2, 12))) for _ in range(n)]
    score = {"good": 1.0, "great": 2.0, "excellent": 3.0, "bad": -1.0, "awful": -2.0}
    y = np.array([sum(score.get(w, 0.0) for w in t.split()) for t in texts])
    return texts, y + rng.normal(0, 0.3, n)


@pytest.fixture(params=["tiny_bert_dir", "tiny_llama_dir"])
def backbone(request):
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize("k", [1, 2])
def test_top_layers_on_the_trunk_states_give_the_last_layer(backbone, k, rng):
    trunk = get_trunk(TrunkSpec.of(backbone, precision="fp32"))
    texts, _ = make_texts(rng, 12)
    out = trunk.run(texts, (trunk.state_layer(k),))
    top = build_top_model(trunk, k, adapter="full").eval()
    from skftr.finetune import TopLayersModule

    module = TopLayersModule(top, trunk.spec.pooling, trunk.hidden_size).eval()
    for i in range(len(texts)):
        states = torch.tensor(np.asarray(out.token_states(trunk.state_layer(k), i), np.float32))
        with torch.no_grad():
            hidden = module.top(inputs_embeds=states[None], attention_mask=torch.ones(1, len(states),
                                dtype=torch.long)).last_hidden_state
        from skftr._hf import pool

        pooled = pool(hidden, torch.ones(1, len(states), dtype=torch.long), trunk.spec.pooling)
        # the states are kept in float16: agreement to its precision
        np.testing.assert_allclose(pooled[0].numpy(), out.embeddings[i], atol=2e-2)


def test_the_pass_keeps_the_input_order_and_lengths(tiny_bert_dir, rng):
    trunk = get_trunk(TrunkSpec.of(tiny_bert_dir, precision="fp32"))
    texts, _ = make_texts(rng, 30)
    whole = trunk.run(texts, (1,))
    one_by_one = TrunkOutputs.concat([trunk.run([t], (1,)) for t in texts])
    np.testing.assert_allclose(whole.embeddings, one_by_one.embeddings, atol=1e-5)
    np.testing.assert_array_equal(whole.offsets, one_by_one.offsets)
    np.testing.assert_allclose(whole.states[1].astype(float), one_by_one.states[1].astype(float),
                               atol=1e-2)
    part = whole.take([3, 0])
    np.testing.assert_array_equal(part.token_states(1, 0), whole.token_states(1, 3))
    assert len(part) == 2 and part.offsets[-1] == whole.offsets[4] - whole.offsets[3] + \
        whole.offsets[1]
    chunks = list(trunk.stream(texts, (1,), chunk_size=7))
    assert [start for start, _ in chunks] == [0, 7, 14, 21, 28]
    np.testing.assert_allclose(TrunkOutputs.concat([c for _, c in chunks]).embeddings,
                               whole.embeddings, atol=1e-5)


def test_the_disk_cache_is_read_back_and_never_recomputed(tiny_bert_dir, rng, tmp_path,
                                                          monkeypatch):
    trunk = get_trunk(TrunkSpec.of(tiny_bert_dir, precision="fp32"))
    texts, _ = make_texts(rng, 40)
    direct = trunk.run(texts, (1,))
    cached = cached_outputs(trunk, texts, (1,), memory=tmp_path)
    np.testing.assert_allclose(np.asarray(cached.embeddings), direct.embeddings, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(cached.states[1]), direct.states[1])
    assert isinstance(cached.states[1], np.memmap)
    monkeypatch.setattr(type(trunk), "run", lambda *a, **k: pytest.fail("recomputed"))
    again = cached_outputs(trunk, texts, (1,), memory=str(tmp_path))
    np.testing.assert_array_equal(np.asarray(again.embeddings), np.asarray(cached.embeddings))
    fewer = cached_outputs(trunk, texts, (), memory=tmp_path)  # the ridges read that entry
    np.testing.assert_array_equal(np.asarray(fewer.embeddings), np.asarray(cached.embeddings))
    with pytest.raises(pytest.fail.Exception):  # other texts: another entry
        cached_outputs(trunk, texts[:-1], (1,), memory=tmp_path)
    with pytest.raises(pytest.fail.Exception):  # more layers than the entry holds
        cached_outputs(trunk, texts, (0, 1), memory=tmp_path)
    assert not [p for p in (tmp_path / "skftr-trunk").iterdir() if p.name.startswith(".")]
    with pytest.raises(TypeError, match="memory"):
        cached_outputs(trunk, texts, (1,), memory=3)


def test_precision_is_resolved_and_checked():
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8")


def test_state_layer_is_checked(tiny_bert_dir):
    trunk = get_trunk(TrunkSpec.of(tiny_bert_dir))
    assert trunk.state_layer(1) == 1 and trunk.state_layer(2) == 0
    with pytest.raises(ValueError, match="top_layers=3 but the backbone has 2"):
        trunk.state_layer(3)


def test_padded_shape_rounds_rows_to_32ths_of_a_full_batch():
    assert [padded_shape(r, 13, full=256) for r in (1, 8, 9, 255, 256)] == \
        [(8, 13), (8, 13), (16, 13), (256, 13), (256, 13)]
    assert [padded_shape(3, w, full=64, steps=1, round_width=True) for w in (7, 8, 9, 17)] \
        == [(64, 8), (64, 8), (64, 16), (64, 24)]
    assert padded_shape(65, 9, full=100) == (66, 9) and padded_shape(3, 9, full=5) == (3, 9)


def _shapes_of(module, monkeypatch, key):
    """Record the shape of ``key`` in every forward call of ``module``."""
    shapes, forward = [], module.forward

    def recording(*args, **kwargs):
        shapes.append(tuple(kwargs[key].shape[:2]))
        return forward(*args, **kwargs)

    monkeypatch.setattr(module, "forward", recording)
    return shapes


def test_streamed_passes_meet_a_bounded_set_of_shapes(tiny_bert_dir, rng, monkeypatch):
    """Chunks and fold subsets of every size run on a bounded set of shapes (the per-shape
    kernel caches stay bounded: memory stays flat), with the same outputs as one text at
    a time."""
    trunk = get_trunk(TrunkSpec.of(tiny_bert_dir, precision="fp32"))
    texts, y = make_texts(rng, 400)
    single = TrunkOutputs.concat([trunk.run([t], (1,)) for t in texts[:40]])
    model = fit_tiny(tiny_bert_dir, texts[:120], y[:120], max_epochs=1)
    model.warm_start_kept_ = False  # run the top layer whatever the check decided
    each = np.concatenate([model.predict_trunk(single.take([i])) for i in range(40)])
    shapes = _shapes_of(trunk.model, monkeypatch, "input_ids")
    top_shapes = _shapes_of(model.module_, monkeypatch, "states")
    for _ in range(30):
        rows = np.sort(rng.choice(400, size=int(rng.integers(1, 200)), replace=False))
        out = trunk.run([texts[i] for i in rows], (1,))
        model.predict_trunk(out)
    # the trunk: one full batch per width (8192 // width rows), the last ones rounded up to
    # 32ths of it; the top layers: 64 rows, widths in eights (texts of <= 13 tokens)
    for n, width in shapes:
        assert n % ((8192 // width) // 32) == 0 and n <= 8192 // width, (n, width)
    for n, width in top_shapes:
        assert n == 64 and width % 8 == 0, (n, width)
    assert len(set(shapes)) <= 32 * 12 and len(set(top_shapes)) <= 2
    first = trunk.run(texts[:40], (1,))
    np.testing.assert_allclose(first.embeddings, single.embeddings, atol=1e-5)
    np.testing.assert_allclose(model.predict_trunk(first), each, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ the fine-tune
@pytest.fixture(scope="module")
def data():
    return make_texts(np.random.default_rng(0), 160)


def fit_tiny(backbone, texts, y, **params):
    params = {"max_epochs": 3, "batch_size": 8, "lr": 1e-2, "random_state": 0, **params}
    return TopLayersRegressor(backbone, **params).fit(texts, y)


@pytest.mark.parametrize("adapter", ["lora", "full"])
def test_fit_predict_and_the_warm_start_check(tiny_bert_dir, data, adapter):
    texts, y = data
    model = fit_tiny(tiny_bert_dir, texts[:120], y[:120], adapter=adapter)
    pred = model.predict(texts[120:])
    assert pred.shape == (40,) and pred.dtype == np.float64 and np.all(np.isfinite(pred))
    assert isinstance(model.warm_start_kept_, bool) and model.n_epochs_ >= 1
    if model.warm_start_kept_:
        assert model.best_epoch_ == 0 and not model.holdout_variance_ < model.warm_start_variance_
    else:
        assert model.holdout_variance_ < model.warm_start_variance_ and model.best_epoch_ >= 1
    assert model.score(texts[120:], y[120:]) > 0.2  # the warm start already sees words
    again = fit_tiny(tiny_bert_dir, texts[:120], y[:120], adapter=adapter)
    np.testing.assert_allclose(again.predict(texts[120:]), pred, rtol=1e-5, atol=1e-6)


def test_a_useless_fine_tune_keeps_the_ridge_and_skips_the_top_layers(tiny_bert_dir, data):
    texts, y = data
    model = fit_tiny(tiny_bert_dir, texts[:120], y[:120], lr=1e3, max_epochs=2)  # diverges
    assert model.warm_start_kept_ and not model.needs_states()
    trunk = get_trunk(model.trunk_spec())
    from sklearn.linear_model import RidgeCV

    from skftr.predictors import _ALPHAS

    emb = trunk.run(texts).embeddings
    ridge = RidgeCV(alphas=np.asarray(_ALPHAS)).fit(emb[:120], y[:120])
    np.testing.assert_allclose(model.predict(texts[120:]), ridge.predict(emb[120:]), rtol=1e-4,
                               atol=1e-4)


def test_decoder_backbone(tiny_llama_dir, data):
    texts, y = data
    model = fit_tiny(tiny_llama_dir, texts[:120], y[:120], top_layers=2)
    assert model.predict(texts[120:]).shape == (40,)


def test_save_load_and_pickle_give_the_same_predictions(tiny_bert_dir, data, tmp_path):
    texts, y = data
    model = fit_tiny(tiny_bert_dir, texts[:120], y[:120], lr=1e-3)
    pred = model.predict(texts[120:])
    model.save_adapter(tmp_path / "m")
    loaded = TopLayersRegressor().load_adapter(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict(texts[120:]), pred, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(model)).predict(texts[120:]), pred,
                               rtol=1e-6, atol=1e-6)
    weights = tmp_path / "m" / "top_layers.safetensors"
    damaged = bytearray(weights.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    with pytest.raises(UntrustedFileError, match="damaged or altered"):
        TopLayersRegressor().load_adapter(tmp_path / "m")
    with pytest.raises(ValueError, match="not a directory written by save_adapter"):
        TopLayersRegressor().load_adapter(tmp_path)


def test_bad_input_is_named(tiny_bert_dir, data):
    texts, y = data
    with pytest.raises(ValueError, match="at least 16 rows"):
        TopLayersRegressor(tiny_bert_dir).fit(texts[:10], y[:10])
    with pytest.raises(ValueError, match="y"):
        TopLayersRegressor(tiny_bert_dir).fit(texts[:40], y[:39])
    with pytest.raises(ValueError, match="top_layers"):
        TopLayersRegressor(tiny_bert_dir, top_layers=5).fit(texts[:40], y[:40])
    with pytest.raises(ValueError, match="adapter"):
        TopLayersRegressor(tiny_bert_dir, adapter="qlora").fit(texts[:40], y[:40])
    with pytest.raises(ValueError, match=r"X\[1\]"):
        TopLayersRegressor(tiny_bert_dir).fit(["good", ""] * 10, y[:20])


def test_inside_the_estimator_saved_and_loaded(tiny_bert_dir, data, tmp_path):
    from skftr import FineTuneRectifyEstimator, TextRidge

    texts, y = data
    y = y.copy()
    y[100:] = np.nan
    est = FineTuneRectifyEstimator(TopLayersRegressor(tiny_bert_dir, max_epochs=2, batch_size=8),
                                   predictors=[TextRidge("tfidf")], crossfit=2,
                                   random_state=0).fit(texts, y)
    assert est.estimate_.ci[0] < est.estimate_.value < est.estimate_.ci[1]
    est.save(tmp_path / "model")
    loaded = FineTuneRectifyEstimator.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict(texts[:20]), est.predict(texts[:20]), rtol=1e-6,
                               atol=1e-6)


# ------------------------------------------------------------------ shared inside the estimator
@pytest.fixture(autouse=False)
def fp32(monkeypatch):
    """``precision="auto"`` resolves to float32 (exact comparisons on any CPU)."""
    import skftr.trunk

    monkeypatch.setattr(skftr.trunk, "native_bf16", lambda device="cpu": False)
    skftr.trunk._resolved_spec.cache_clear()  # specs resolved before the patch
    yield
    skftr.trunk._resolved_spec.cache_clear()


def _shared_estimator(backbone, **params):
    from skftr import FineTuneRectifyEstimator, TextRidge

    model = TopLayersRegressor(backbone, max_epochs=2, batch_size=8, lr=1e-2)
    return FineTuneRectifyEstimator(model, predictors=[TextRidge("embedding", backbone=backbone),
                                                       TextRidge("length")],
                                    crossfit=2, random_state=0, **params)


@pytest.fixture
def counted(monkeypatch):
    """Counts the texts each trunk pass runs, by layers asked."""
    from skftr.trunk import Trunk

    seen, run = [], Trunk._run_ids

    def counting(self, ids, layers, module, max_rows):
        seen.append((len(ids), tuple(layers)))
        return run(self, ids, layers, module, max_rows)

    monkeypatch.setattr(Trunk, "_run_ids", counting)
    return seen


def test_one_trunk_pass_serves_the_ridge_and_the_fine_tune(tiny_bert_dir, data, counted, fp32):
    texts, y = data
    y = y.copy()
    y[100:] = np.nan
    est = _shared_estimator(tiny_bert_dir).fit(texts, y)
    # every text went through the trunk once: the labeled rows with the states of layer
    # L - 1, the unlabeled ones streamed (with the states only if a fold kept its tune)
    assert sum(n for n, _ in counted) == len(texts)
    assert counted[0] == (100, (1,))
    # each fold's readers are the standalone models fitted on that fold's texts
    k = 0
    train = np.setdiff1d(np.arange(100), est.labeled_indices_[est.folds_ == k])
    alone = est.model_.members[k][0].__class__(**est.model_.members[k][0].get_params())
    alone.fit([texts[i] for i in train], y[train])
    rect = est.labeled_indices_[est.folds_ == k]
    shared = est.model_.members[k][0].predict([texts[i] for i in rect])
    np.testing.assert_allclose(shared, alone.predict([texts[i] for i in rect]), atol=1e-4)
    ridge_alone = est.model_.members[k][1].fit([texts[i] for i in train], y[train])
    np.testing.assert_allclose(est.model_.members[k][1].predict([texts[i] for i in rect]),
                               ridge_alone.predict([texts[i] for i in rect]), atol=1e-5)
    # and the fit says what it did
    info = est.estimate_.fit_info
    assert set(info["trunks"].values()) == {"fp32"}
    (tune,) = info["fine_tunes"]
    assert tune["top_layers"] == 1 and len(tune["fine_tune_kept"]) == 2
    assert any("trunk, labeled rows" in stage for stage in info["seconds"])
    # each stage is rounded to 0.01 s: their sum exceeds the fit time by at most 0.005 each
    assert 0 <= sum(info["seconds"].values()) <= est.fit_time_ + 0.005 * len(info["seconds"])
    from skftr.report import fit_summary

    summary = fit_summary(est)
    assert "top 1 layer(s) fine-tuned (lora), kept in" in summary and "(fp32)" in summary


def test_streaming_the_unlabeled_rows_changes_nothing(tiny_bert_dir, data, monkeypatch, fp32):
    from skftr import _stages

    texts, y = data
    y = y.copy()
    y[60:] = np.nan
    whole = _shared_estimator(tiny_bert_dir).fit(texts, y)
    monkeypatch.setattr(_stages, "_CHUNK", 7)
    chunked = _shared_estimator(tiny_bert_dir).fit(texts, y)
    np.testing.assert_allclose(chunked._f_unl, whole._f_unl, rtol=1e-5, atol=1e-5)
    assert chunked.estimate_.value == pytest.approx(whole.estimate_.value, rel=1e-6)


def test_feature_ridges_stream_the_unlabeled_rows_and_fit_a_bounded_sample(data, monkeypatch):
    from sklearn.feature_extraction.text import TfidfVectorizer

    from skftr import FineTuneRectifyEstimator, TextRidge, _stages

    texts, y = data
    y = y.copy()
    y[60:] = np.nan

    def fit():
        return FineTuneRectifyEstimator("drop", predictors=[TextRidge("tfidf"),
                                                            TextRidge("length")],
                                        crossfit=2, random_state=0).fit(texts, y)

    def vocabulary(rows):
        tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        return tfidf.fit([texts[i] for i in rows]).vocabulary_

    whole = fit()  # 160 texts, under the bound: the featurizer saw every text
    assert whole.model_.members[1][0].features_.vocabulary_ == vocabulary(range(160))
    monkeypatch.setattr(_stages, "_CHUNK", 7)
    chunked = fit()
    np.testing.assert_allclose(chunked._f_unl, whole._f_unl, rtol=1e-10, atol=1e-12)
    assert chunked.estimate_.value == pytest.approx(whole.estimate_.value, rel=1e-12)
    monkeypatch.setattr(_stages, "_FEATURIZER_ROWS", 80)
    bounded = fit()  # the 60 labeled rows and 20 evenly spaced unlabeled ones
    sample = list(range(60)) + list(60 + np.unique(np.linspace(0, 99, 20).astype(int)))
    assert bounded.model_.members[0][0].features_.vocabulary_ == vocabulary(sample)
    assert vocabulary(sample) != vocabulary(range(160))
    assert bounded._f_unl.shape == whole._f_unl.shape and np.all(np.isfinite(bounded._f_unl))


def test_memory_runs_the_trunk_once_for_every_refit(tiny_bert_dir, data, tmp_path, monkeypatch,
                                                    fp32):
    from skftr.trunk import Trunk

    texts, y = data
    y = y.copy()
    y[100:] = np.nan
    first = _shared_estimator(tiny_bert_dir, memory=str(tmp_path)).fit(texts, y)
    plain = _shared_estimator(tiny_bert_dir).fit(texts, y)
    assert first.estimate_.value == pytest.approx(plain.estimate_.value, rel=1e-6)

    def fail(*args, **kwargs):
        raise AssertionError("the trunk ran again")

    monkeypatch.setattr(Trunk, "_run_ids", fail)
    y2 = y.copy()
    y2[:10] = np.nan  # a refit on fewer labels, same texts
    again = _shared_estimator(tiny_bert_dir, memory=str(tmp_path)).fit(texts, y2)
    assert again.n_rectify_ == 90


def test_the_default_model_fine_tunes_the_top_layer_of_mpnet():
    from skftr import FineTuneRectifyEstimator
    from skftr._stages import _make_model

    model = _make_model(FineTuneRectifyEstimator())
    assert isinstance(model, TopLayersRegressor)
    assert (model.backbone, model.top_layers, model.adapter) == ("mpnet", 1, "lora")
    assert _make_model(FineTuneRectifyEstimator(loss="mse")).loss == "mse"


def test_a_ridges_own_memory_keeps_the_trunk_pass_on_disk(tiny_bert_dir, data, tmp_path,
                                                          monkeypatch, fp32):
    from skftr import FineTuneRectifyEstimator, TextRidge
    from skftr.trunk import Trunk

    texts, y = data
    y = y.copy()
    y[100:] = np.nan

    def cheap():
        ridge = TextRidge("embedding", backbone=tiny_bert_dir, memory=str(tmp_path))
        return FineTuneRectifyEstimator("drop", predictors=[ridge], crossfit=2, random_state=0)

    first = cheap().fit(texts, y)
    assert any((tmp_path / "skftr-trunk").iterdir())
    monkeypatch.setattr(Trunk, "_run_ids", lambda *a, **k: pytest.fail("the trunk ran again"))
    assert cheap().fit(texts, y).estimate_.value == pytest.approx(first.estimate_.value)
