"""LoRARegressor on tiny random BERT-like and Llama-like models (conftest)."""
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("skorch")

from skorch.callbacks import Callback  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import RidgeCV  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from skftr._text import TextLoader, TokenDataset, check_texts, length_chunks  # noqa: E402
from skftr.embedding import SentenceEmbedder  # noqa: E402
from skftr.exceptions import ConstantPredictionWarning, SkftrDeprecationWarning, UntrustedFileError  # noqa: E402
from skftr.losses import CorrelationLoss, ErrorVarianceLoss, MSELoss  # noqa: E402
from skftr.lora import LoRARegressor, WarmupDecay  # noqa: E402
from skftr.predictors import _ALPHAS  # noqa: E402

POSITIVE = ["good", "great", "excellent", "superb"]
NEGATIVE = ["bad", "poor", "awful", "terrible"]
NEUTRAL = ["the", "wine", "film", "is", "very", "with", "fruit", "oak", "a", "of"]


def make_texts(n, seed):
    """Texts of 3-20 words; y = (#positive - #negative words) + small noise."""
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for _ in range(n):
        n_pos, n_neg = rng.integers(0, 3, size=2)
        words = list(rng.choice(NEUTRAL, rng.integers(3, 15)))
        words += list(rng.choice(POSITIVE, n_pos)) + list(rng.choice(NEGATIVE, n_neg))
        rng.shuffle(words)
        texts.append(" ".join(words))
        y.append(n_pos - n_neg + 0.1 * rng.standard_normal())
    return texts, np.array(y)


@pytest.fixture(scope="module")
def data():
    X, y = make_texts(160, seed=0)
    X_test, y_test = make_texts(80, seed=1)
    return X, y, X_test, y_test


def fast(backbone, **params):
    """Few steps, one thread (tiny models are overhead-bound; the cores are shared)."""
    params = {"random_state": 0, "max_epochs": 1, "min_steps": 30, "lr": 5e-3, "batch_size": 16,
              "n_threads": 1, **params}
    return LoRARegressor(backbone, **params)


class Probe(Callback):
    """Records the learning rate and the torch thread count at every training batch."""

    def initialize(self):
        self.lrs, self.threads = [], set()
        return self

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            self.lrs.append(net.optimizer_.param_groups[0]["lr"])
            self.threads.add(torch.get_num_threads())


def frozen_ridge(backbone, X, y, X_test, pooling="mean"):
    """The warm start computed independently: RidgeCV on frozen SentenceEmbedder features."""
    model = make_pipeline(SentenceEmbedder(backbone, max_length=256, pooling=pooling,
                                           precision="fp32"),
                          RidgeCV(alphas=np.asarray(_ALPHAS)))
    return model.fit(X, y).predict(X_test)


@pytest.fixture(scope="module")
def fitted_bert(tiny_bert_dir, data):
    """The training loop alone: random head, no inner hold-out."""
    X, y, _, _ = data
    return fast(tiny_bert_dir, lr=3e-3, min_steps=150, head_init="random", holdout=0).fit(X, y)


def test_fit_predict_shapes_dtypes_and_input_types(fitted_bert, data):
    pd = pytest.importorskip("pandas")
    _, _, X_test, _ = data
    pred = fitted_bert.predict(X_test)
    assert pred.dtype == np.float64 and pred.shape == (len(X_test),) and np.isfinite(pred).all()
    for X_other in (np.array(X_test, dtype=object), pd.Series(X_test), pd.DataFrame({"text": X_test}),
                    np.array(X_test).reshape(-1, 1), tuple(X_test)):
        np.testing.assert_allclose(fitted_bert.predict(X_other), pred, rtol=0, atol=1e-6)
    assert fitted_bert.predict(X_test[:1]).shape == (1,)


def test_loss_falls_and_model_learns_the_synthetic_task(fitted_bert, data):
    _, _, X_test, y_test = data
    losses = fitted_bert.history[:, "train_loss"]
    assert np.mean(losses[-2:]) < 0.7 * losses[0]
    resid = y_test - fitted_bert.predict(X_test)
    assert np.var(resid) < 0.6 * np.var(y_test)


def test_score_is_shift_free_r2(fitted_bert, data):
    _, _, X_test, y_test = data
    resid = y_test - fitted_bert.predict(X_test)
    expected = 1 - np.var(resid) / np.var(y_test)
    assert fitted_bert.score(X_test, y_test) == pytest.approx(expected, rel=1e-6)
    assert fitted_bert.score(X_test, y_test + 5) == pytest.approx(expected, rel=1e-6)


def test_step_rule_grows_with_the_data_between_its_bounds(tiny_bert_dir, data):
    X, y, _, _ = data
    est = fast(tiny_bert_dir, batch_size=8, max_epochs=2, min_steps=25, holdout=0).fit(X[:20], y[:20])
    # 20 rows in batches of 8: 3 batches per epoch (8, 8, 4); max(25, 2 * 3) = 25 steps,
    # rounded up to ceil(25 / 3) = 9 whole epochs
    assert (est.n_epochs_, est.n_steps_) == (9, 27) and len(est.history) == 9
    assert sum(est.history[:, "train_batch_count"]) == 27
    est.set_params(min_steps=0).fit(X[:20], y[:20])
    assert (est.n_epochs_, est.n_steps_) == (2, 6)
    est.set_params(max_epochs=3).fit(X[:40], y[:40])  # 5 batches: grows with the data
    assert est.n_steps_ == 15
    est.set_params(max_epochs=50, max_steps=7).fit(X[:20], y[:20])  # capped, whole epochs
    assert (est.n_epochs_, est.n_steps_) == (3, 9)


def test_learning_rate_warms_up_then_decays_per_batch(tiny_bert_dir, data):
    X, y, _, _ = data
    probe = Probe()
    est = fast(tiny_bert_dir, min_steps=40, holdout=0, lr=1e-3, callbacks=[("probe", probe)])
    est.fit(X[:64], y[:64])
    lrs = np.array(probe.lrs)
    assert len(lrs) == est.n_steps_ == 40
    np.testing.assert_allclose(lrs[:4], 1e-3 * np.arange(1, 5) / 4)  # warm-up: 10% of 40 steps
    np.testing.assert_allclose(lrs[4:], 1e-3 * (1 - np.arange(36) / 36))  # linear decay
    probe.initialize()
    fast(tiny_bert_dir, min_steps=40, holdout=0, lr=1e-3, schedule="constant", warmup=0,
         callbacks=[("probe", probe)]).fit(X[:64], y[:64])
    np.testing.assert_allclose(probe.lrs, 1e-3)


def test_warmup_decay_factors():
    cosine = WarmupDecay(2, 10, "cosine")
    assert [cosine(0), cosine(1), cosine(2)] == [0.5, 1.0, 1.0]
    assert cosine(6) == pytest.approx(0.5) and cosine(10) == pytest.approx(0.0)
    linear = WarmupDecay(0, 4, "linear")
    assert [linear(t) for t in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert WarmupDecay()(100) == 1.0


def test_n_threads_is_in_force_during_fit_and_restored(tiny_bert_dir, data):
    X, y, _, _ = data
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    probe = Probe()
    fast(tiny_bert_dir, min_steps=3, n_threads=target, callbacks=[("probe", probe)]).fit(X[:16], y[:16])
    assert probe.threads == {target} and torch.get_num_threads() == before


@pytest.mark.parametrize("fixture, pooling", [("tiny_bert_dir", "mean"), ("tiny_bert_dir", "cls")])
def test_warm_start_is_the_ridge_on_frozen_pooled_features(request, fixture, pooling, data):
    backbone = request.getfixturevalue(fixture)
    X, y, X_test, _ = data
    # lr ~ 0: the fitted model is its starting point
    est = fast(backbone, pooling=pooling, holdout=0, lr=1e-12, min_steps=2).fit(X[:80], y[:80])
    assert est.module_.pooling == pooling and est.ridge_alpha_ in _ALPHAS
    np.testing.assert_allclose(est.predict(X_test), frozen_ridge(backbone, X[:80], y[:80], X_test, pooling),
                               rtol=0, atol=1e-4)


def test_decoder_warm_start_is_the_ridge_on_last_token_states(tiny_llama_dir, data):
    from transformers import AutoModel, AutoTokenizer

    X, y, X_test, _ = data
    est = fast(tiny_llama_dir, holdout=0, lr=1e-12, min_steps=2).fit(X[:80], y[:80])
    assert est.module_.pooling == "last"
    tokenizer, model = AutoTokenizer.from_pretrained(tiny_llama_dir), AutoModel.from_pretrained(tiny_llama_dir)

    def last_states(texts):  # one text at a time: no padding, the last token is the last state
        with torch.no_grad():
            return np.stack([model(**tokenizer(t, return_tensors="pt")).last_hidden_state[0, -1].numpy()
                             for t in texts])

    ridge = RidgeCV(alphas=np.asarray(_ALPHAS)).fit(last_states(X[:80]), y[:80])
    np.testing.assert_allclose(est.predict(X_test), ridge.predict(last_states(X_test)), rtol=0, atol=1e-4)
    assert est.ridge_alpha_ == ridge.alpha_


def test_inner_check_keeps_the_warm_start_when_fine_tuning_diverges(tiny_bert_dir, data):
    X, y, X_test, _ = data
    est = fast(tiny_bert_dir, lr=0.1, min_steps=60).fit(X, y)  # diverges on the tiny model
    assert est.warm_start_kept_ and est.holdout_variance_ >= est.warm_start_variance_ > 0
    # the warm start refitted on all rows, LoRA back at zero
    np.testing.assert_allclose(est.predict(X_test), frozen_ridge(tiny_bert_dir, X, y, X_test), rtol=0, atol=1e-4)
    lora_b = [p for name, p in est.module_.named_parameters() if "lora_B" in name]
    assert lora_b and all(torch.count_nonzero(p) == 0 for p in lora_b)


def test_inner_check_keeps_a_fine_tune_that_improves(tiny_llama_dir, data):
    X, y, X_test, y_test = data
    est = fast(tiny_llama_dir, min_steps=60).fit(X, y)
    assert not est.warm_start_kept_ and est.holdout_variance_ < est.warm_start_variance_
    assert np.var(y_test - est.predict(X_test)) < 0.8 * np.var(y_test)
    off = fast(tiny_llama_dir, min_steps=2, holdout=0).fit(X[:20], y[:20])
    assert not off.warm_start_kept_ and np.isnan(off.holdout_variance_) and np.isnan(off.warm_start_variance_)
    small = fast(tiny_llama_dir, min_steps=2).fit(X[:20], y[:20])  # 15% of 20 rows < 5: no check
    assert np.isnan(small.holdout_variance_)


def test_collapsed_predictions_warn(tiny_bert_dir, data):
    X, y, _, _ = data
    with pytest.warns(ConstantPredictionWarning, match="same value for every text"):
        fast(tiny_bert_dir, lr=0.1, min_steps=60, holdout=0).fit(X, y)


def test_variance_loss_is_shift_invariant(tiny_bert_dir, data):
    X, y, X_test, _ = data
    X, y = X[:64], y[:64]
    p = fast(tiny_bert_dir).fit(X, y).predict(X_test)
    p_shift = fast(tiny_bert_dir).fit(X, y + 100).predict(X_test)
    assert np.var(p_shift - p) < 1e-8 * np.var(p)
    assert np.mean(p_shift - p) == pytest.approx(100, abs=1e-3)


def test_deterministic_with_random_state(tiny_bert_dir, data):
    X, y, X_test, _ = data
    X, y = X[:64], y[:64]
    first = fast(tiny_bert_dir, lora_dropout=0.1, holdout=0).fit(X, y).predict(X_test)
    second = fast(tiny_bert_dir, lora_dropout=0.1, holdout=0).fit(X, y).predict(X_test)
    np.testing.assert_array_equal(first, second)
    other = fast(tiny_bert_dir, lora_dropout=0.1, holdout=0, random_state=1).fit(X, y).predict(X_test)
    assert np.max(np.abs(other - first)) > 1e-4
    with_check = [fast(tiny_bert_dir).fit(X, y).predict(X_test) for _ in range(2)]
    np.testing.assert_array_equal(*with_check)
    # fitting does not reset the caller's torch RNG
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    fast(tiny_bert_dir, min_steps=2).fit(X[:8], y[:8])
    assert torch.rand(1) == expected


def test_pickle_and_joblib_round_trips(fitted_bert, data, tmp_path):
    joblib = pytest.importorskip("joblib")
    _, _, X_test, _ = data
    pred = fitted_bert.predict(X_test)
    blob = pickle.dumps(fitted_bert)
    assert len(blob) < 5_000_000  # the backbone stays on disk: adapter and head only
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.predict(X_test), pred)
    assert len(restored.history) == len(fitted_bert.history) and restored.n_steps_ == fitted_bert.n_steps_
    joblib.dump(fitted_bert, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict(X_test), pred)


def test_save_and_load_adapter_without_pickle(tiny_bert_dir, data, tmp_path):
    X, y, X_test, _ = data
    est = fast(tiny_bert_dir, lora_r=4, lora_alpha=8, prompt_template="Text: {text}", loss="mse")
    est.fit(X[:64], y[:64])
    est.save_adapter(tmp_path / "adapter")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temporary left
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    fresh = LoRARegressor(tiny_bert_dir).load_adapter(tmp_path / "adapter")
    assert fresh.lora_r == 4 and fresh.prompt_template == "Text: {text}" and fresh.loss == "mse"
    for key in ("y_mean_", "y_scale_", "n_steps_", "warm_start_kept_", "ridge_alpha_"):
        assert getattr(fresh, key) == getattr(est, key)
    np.testing.assert_allclose(fresh.predict(X_test), est.predict(X_test), rtol=0, atol=1e-6)
    # the saved backbone is used when the estimator names none
    again = LoRARegressor().load_adapter(tmp_path / "adapter")
    assert again.backbone == tiny_bert_dir
    np.testing.assert_allclose(again.predict(X_test[:5]), est.predict(X_test[:5]), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="not a directory written by save_adapter"):
        LoRARegressor(tiny_bert_dir).load_adapter(tmp_path)


def test_damaged_saved_files_are_refused_naming_the_file(tiny_bert_dir, data, tmp_path):
    import shutil

    X, y, _, _ = data
    fast(tiny_bert_dir, min_steps=2).fit(X[:16], y[:16]).save_adapter(tmp_path / "good")
    cases = {
        "skftr_adapter.json": lambda b: b[: len(b) // 2],  # truncated JSON
        "adapter_model.safetensors": lambda b: b[:-100],  # truncated weights
    }
    for name, damage in cases.items():
        bad = tmp_path / f"bad-{name}"
        shutil.copytree(tmp_path / "good", bad)
        (bad / name).write_bytes(damage((bad / name).read_bytes()))
        with pytest.raises(UntrustedFileError, match=name.replace(".", r"\.")):
            LoRARegressor(tiny_bert_dir).load_adapter(bad)
    flipped = tmp_path / "flipped"
    shutil.copytree(tmp_path / "good", flipped)
    raw = bytearray((flipped / "adapter_model.safetensors").read_bytes())
    raw[-1] ^= 0xFF  # one bit of one weight
    (flipped / "adapter_model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(UntrustedFileError, match="sha256"):
        LoRARegressor(tiny_bert_dir).load_adapter(flipped)


def test_failed_save_leaves_nothing_half_written(tiny_bert_dir, data, tmp_path, monkeypatch):
    import safetensors.torch

    X, y, _, _ = data
    est = fast(tiny_bert_dir, min_steps=2).fit(X[:16], y[:16])
    est.save_adapter(tmp_path / "adapter")
    before = (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        est.save_adapter(tmp_path / "adapter")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").read_bytes() == before


def test_clone_set_params_and_grid_search_over_loss(tiny_bert_dir, data):
    X, y, _, _ = data
    est = fast(tiny_bert_dir, lora_r=2, optimizer__weight_decay=0.0)
    params = est.get_params(deep=False)
    assert params["lora_r"] == 2 and params["loss"] == "variance" and params["device"] == "auto"
    assert params["criterion"] is None
    copy = clone(est).set_params(lora_r=4, loss="correlation")
    assert copy.get_params()["optimizer__weight_decay"] == 0.0 and est.lora_r == 2
    copy.fit(X[:32], y[:32])
    assert isinstance(copy.criterion_, CorrelationLoss)
    lora_a = copy.module_.backbone.encoder.layer[0].attention.self.query.lora_A["default"]
    assert lora_a.weight.shape[0] == 4
    search = GridSearchCV(fast(tiny_bert_dir, min_steps=5), {"loss": ["variance", "mse"]}, cv=2).fit(X[:32], y[:32])
    assert search.best_params_["loss"] in ("variance", "mse") and search.predict(X[:3]).shape == (3,)
    assert isinstance(search.best_estimator_.criterion_, (ErrorVarianceLoss, MSELoss))


def test_criterion_is_a_deprecated_alias_of_loss(tiny_bert_dir, data, recwarn):
    X, y, _, _ = data
    fast(tiny_bert_dir, min_steps=2).fit(X[:16], y[:16])
    assert not [w for w in recwarn if issubclass(w.category, SkftrDeprecationWarning)]
    with pytest.warns(SkftrDeprecationWarning, match="use loss="):
        est = fast(tiny_bert_dir, min_steps=2, criterion="mse").fit(X[:16], y[:16])
    assert isinstance(est.criterion_, MSELoss)


@pytest.mark.parametrize("loss", ["mse", "correlation", ErrorVarianceLoss(), MSELoss])
def test_loss_variants(tiny_bert_dir, data, loss):
    X, y, X_test, _ = data
    est = fast(tiny_bert_dir, loss=loss, min_steps=10).fit(X[:33], y[:33])
    assert np.isfinite(est.history[:, "train_loss"]).all()
    assert np.isfinite(est.predict(X_test)).all()


def test_last_batch_of_one_row_is_merged_not_nan(tiny_bert_dir, data):
    X, y, _, _ = data
    est = fast(tiny_bert_dir, batch_size=8, min_steps=4).fit(X[:17], y[:17])  # 8 + 9, never 8 + 8 + 1
    assert est.history[-1, "train_batch_count"] == 2
    assert np.isfinite(est.history[:, "train_loss"]).all()
    loader = TextLoader(TokenDataset([[1, 2]] * 17, np.zeros(17)), batch_size=8, min_batch_size=2)
    assert [len(b[1]) for b in loader] == [8, 9] and len(loader) == 2
    loader = TextLoader(TokenDataset([[1, 2]] * 17, np.zeros(17)), batch_size=8)
    assert [len(b[1]) for b in loader] == [8, 8, 1] and len(loader) == 3


def test_llama_like_decoder_pad_token_and_last_token_pooling(tiny_llama_dir, data):
    X, y, X_test, y_test = data
    est = fast(tiny_llama_dir, min_steps=60, group_by_length=False, batch_size=32, holdout=0,
               head_init="random").fit(X, y)
    assert est.tokenizer_.pad_token == est.tokenizer_.eos_token == "</s>"
    assert est.module_.pooling == "last"
    assert sorted(est.module_.peft_config["default"].target_modules) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    short, longer = "good wine", "the very long film is a terrible and awful book with oak and fruit"
    alone = est.predict([short])
    padded = est.predict([short, longer, longer + " good"])  # one batch: short is right-padded
    np.testing.assert_allclose(padded[0], alone[0], rtol=0, atol=1e-5)
    assert np.var(y_test - est.predict(X_test)) < 0.7 * np.var(y_test)


def test_encoder_prediction_does_not_depend_on_batch_padding(fitted_bert):
    short, longer = "good wine", "the very long film is a terrible and awful book with oak and fruit"
    fitted_bert.set_params(group_by_length=False)
    try:
        padded = fitted_bert.predict([short, longer])
    finally:
        fitted_bert.set_params(group_by_length=True)
    np.testing.assert_allclose(padded[0], fitted_bert.predict([short])[0], rtol=0, atol=1e-5)


def test_length_grouped_chunks_give_the_same_outputs(tiny_bert_dir, data):
    X, y, _, _ = data
    # no dropout anywhere (module__* goes to from_pretrained) so train-mode outputs are comparable
    est = fast(tiny_bert_dir, lora_dropout=0.0, module__hidden_dropout_prob=0.0,
               module__attention_probs_dropout_prob=0.0, min_steps=2).fit(X[:16], y[:16])
    texts = ["good", "the wine is very good with fruit and oak and the film is a very good film of oak"] * 8
    x, _ = next(iter(est.get_iterator(TokenDataset(est._encode(texts)))))
    assert len(length_chunks(x["attention_mask"].sum(1))) > 1
    est.module_.train()
    with torch.no_grad():
        grouped = est.infer(x)
        est.set_params(group_by_length=False)
        plain = est.infer(x)
    torch.testing.assert_close(grouped, plain, rtol=0, atol=1e-5)


def test_length_chunks_partition_rows_and_split_mixed_lengths():
    lengths = torch.tensor([5, 60, 6, 58, 7, 61, 5, 59])
    chunks = length_chunks(lengths, overhead=16)
    assert sorted(torch.cat(chunks).tolist()) == list(range(8))
    assert [sorted(lengths[c].tolist()) for c in chunks] == [[58, 59, 60, 61], [5, 5, 6, 7]]
    assert len(length_chunks(torch.tensor([30, 31, 30, 29]), overhead=16)) == 1


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers' own, shown when verbose
def test_verbose_zero_is_silent_and_verbose_prints_the_epoch_table(tiny_bert_dir, data, capsys):
    X, y, X_test, _ = data
    est = fast(tiny_bert_dir, min_steps=3, verbose=0).fit(X[:16], y[:16])
    est.predict(X_test)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    fast(tiny_bert_dir, min_steps=3, verbose=1).fit(X[:16], y[:16]).predict(X_test)
    captured = capsys.readouterr()
    assert "train_loss" in captured.out


def test_device_auto_resolves(fitted_bert):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert fitted_bert.device == "auto" and fitted_bert.device_ == expected
    assert next(fitted_bert.module_.parameters()).device.type == expected


BAD_X = [
    (["fine text", None], ValueError, r"X\[1\] is missing"),
    (["fine text", ""], ValueError, r"X\[1\] is empty"),
    (["   ", "fine text"], ValueError, r"X\[0\] is empty"),
    (["fine text", 3], TypeError, r"X\[1\] must be a str"),
    ("just one string", TypeError, "single str"),
    ([], ValueError, "X is empty"),
]


@pytest.mark.parametrize("X, error, match", BAD_X)
def test_bad_texts_are_refused(tiny_bert_dir, X, error, match):
    with pytest.raises(error, match=match):
        fast(tiny_bert_dir).fit(X, np.zeros(2))


def test_bad_texts_in_predict_and_two_column_frame(fitted_bert):
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match=r"X\[0\] is missing"):
        fitted_bert.predict([None])
    with pytest.raises(ValueError, match="exactly one column"):
        fitted_bert.predict(pd.DataFrame({"a": ["x"], "b": ["y"]}))


@pytest.mark.parametrize("y, match", [
    ([1.0, 2.0, 3.0], "different lengths"),
    ([1.0, np.nan], r"finite.*y\[1\]"),
    ([np.inf, 1.0], r"finite.*y\[0\]"),
    (None, "y is required"),
])
def test_bad_targets_are_refused(tiny_bert_dir, y, match):
    with pytest.raises(ValueError, match=match):
        fast(tiny_bert_dir).fit(["a good text", "a bad text"], y)


def test_bad_parameters_are_refused(tiny_bert_dir, tmp_path):
    X, y = ["a good text", "a bad text", "the wine"], [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="loss"):
        fast(tiny_bert_dir, loss="varience").fit(X, y)
    with pytest.raises(ValueError, match="holdout"):
        fast(tiny_bert_dir, holdout=1.5).fit(X, y)
    with pytest.raises(ValueError, match="schedule"):
        fast(tiny_bert_dir, schedule="step").fit(X, y)
    with pytest.raises(ValueError, match="n_threads"):
        fast(tiny_bert_dir, n_threads=0).fit(X, y)
    with pytest.raises(ValueError, match="known backbones"):
        fast("minilmm").fit(X, y)
    with pytest.raises(ValueError, match="does-not-exist"):
        fast(tmp_path / "does-not-exist").fit(X, y)
    with pytest.raises(ValueError, match="no config.json"):
        fast(tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="lora_r"):
        fast(tiny_bert_dir, lora_r=0).fit(X, y)
    with pytest.raises(ValueError, match="prompt_template"):
        fast(tiny_bert_dir, prompt_template="no placeholder").fit(X, y)
    with pytest.raises(ValueError, match="batch_size >= 2"):
        fast(tiny_bert_dir, batch_size=1).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 training texts"):
        fast(tiny_bert_dir).fit(["only one"], [1.0])
    with pytest.raises(NotFittedError):
        fast(tiny_bert_dir).predict(X)


def test_check_texts_returns_plain_strings():
    assert check_texts(np.array(["a", "b"])) == ["a", "b"]
    assert all(type(t) is str for t in check_texts(np.array(["a", "b"])))


@pytest.mark.slow
def test_minilm_on_300_wine_reviews_beats_the_frozen_ridge():
    from skftr.datasets import load_wine_reviews

    texts, y = load_wine_reviews()
    idx = np.random.default_rng(0).permutation(len(texts))
    train, test = idx[:300], idx[300:600]
    X_train, X_test = [texts[i] for i in train], [texts[i] for i in test]
    est = LoRARegressor(random_state=0, n_threads=1).fit(X_train, y[train])
    ridge = frozen_ridge(None, X_train, y[train], X_test)
    assert np.var(y[test] - est.predict(X_test)) <= np.var(y[test] - ridge)


@pytest.mark.slow
def test_smollm2_gguf_pad_token_and_last_token_pooling():
    from skftr.datasets import load_wine_reviews

    texts, y = load_wine_reviews()
    est = LoRARegressor("smollm2-135m", batch_size=4, min_steps=2, random_state=0, holdout=0)
    est.fit(texts[:8], y[:8])
    assert est.tokenizer_.pad_token_id is not None and est.module_.pooling == "last"
    est.set_params(group_by_length=False)
    alone = est.predict(texts[:1])
    padded = est.predict([texts[0], texts[1] + " " + texts[2]])
    np.testing.assert_allclose(padded[0], alone[0], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict(texts[:1]), alone)
