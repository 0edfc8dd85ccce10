"""LoRARegressor on tiny random BERT-like and Llama-like models (conftest)."""
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("skorch")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from skftr._text import TextLoader, TokenDataset, check_texts, length_chunks  # noqa: E402
from skftr.losses import ErrorVarianceLoss, MSELoss  # noqa: E402
from skftr.lora import LoRARegressor  # noqa: E402

POSITIVE = ["good", "great", "excellent", "superb"]
NEGATIVE = ["bad", "poor", "awful", "terrible"]
NEUTRAL = ["the", "wine", "film", "is", "very", "with", "fruit", "oak", "a", "of"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny models are overhead-bound; one thread avoids contention on shared cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    params = {"random_state": 0, "max_epochs": 1, "min_steps": 30, "lr": 5e-3, "batch_size": 16, **params}
    return LoRARegressor(backbone, **params)


@pytest.fixture(scope="module")
def fitted_bert(tiny_bert_dir, data):
    X, y, _, _ = data
    return fast(tiny_bert_dir, lr=3e-3, min_steps=150).fit(X, y)


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


def test_min_steps_raises_the_number_of_epochs(tiny_bert_dir, data):
    X, y, _, _ = data
    est = fast(tiny_bert_dir, batch_size=8, max_epochs=2, min_steps=25).fit(X[:20], y[:20])
    # 20 rows in batches of 8: 3 batches per epoch (8, 8, 4), ceil(25 / 3) = 9 epochs
    assert est.n_epochs_ == 9 and len(est.history) == 9
    assert sum(est.history[:, "train_batch_count"]) >= 25
    est.set_params(min_steps=0).fit(X[:20], y[:20])
    assert est.n_epochs_ == 2


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
    first = fast(tiny_bert_dir, lora_dropout=0.1).fit(X, y).predict(X_test)
    second = fast(tiny_bert_dir, lora_dropout=0.1).fit(X, y).predict(X_test)
    np.testing.assert_array_equal(first, second)
    other = fast(tiny_bert_dir, lora_dropout=0.1, random_state=1).fit(X, y).predict(X_test)
    assert np.max(np.abs(other - first)) > 1e-4
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
    np.testing.assert_array_equal(pickle.loads(blob).predict(X_test), pred)
    joblib.dump(fitted_bert, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict(X_test), pred)


def test_save_and_load_adapter_without_pickle(tiny_bert_dir, data, tmp_path):
    X, y, X_test, _ = data
    est = fast(tiny_bert_dir, lora_r=4, lora_alpha=8, prompt_template="Text: {text}").fit(X[:64], y[:64])
    est.save_adapter(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    fresh = LoRARegressor(tiny_bert_dir).load_adapter(tmp_path / "adapter")
    assert fresh.lora_r == 4 and fresh.prompt_template == "Text: {text}"
    np.testing.assert_allclose(fresh.predict(X_test), est.predict(X_test), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="not an adapter directory"):
        LoRARegressor(tiny_bert_dir).load_adapter(tmp_path)


def test_clone_set_params_and_grid_search(tiny_bert_dir, data):
    X, y, _, _ = data
    est = fast(tiny_bert_dir, lora_r=2, optimizer__weight_decay=0.0)
    params = est.get_params(deep=False)
    assert params["lora_r"] == 2 and params["criterion"] == "variance" and params["device"] == "auto"
    copy = clone(est).set_params(lora_r=4)
    assert copy.get_params()["optimizer__weight_decay"] == 0.0 and est.lora_r == 2
    copy.fit(X[:32], y[:32])
    lora_a = copy.module_.base_model.model.bert.encoder.layer[0].attention.self.query.lora_A["default"]
    assert lora_a.weight.shape[0] == 4
    search = GridSearchCV(fast(tiny_bert_dir, min_steps=5), {"lora_r": [2, 4]}, cv=2,
                          scoring="neg_mean_squared_error").fit(X[:32], y[:32])
    assert search.best_params_["lora_r"] in (2, 4) and search.predict(X[:3]).shape == (3,)


@pytest.mark.parametrize("criterion", ["mse", "correlation", ErrorVarianceLoss(), MSELoss])
def test_criterion_variants(tiny_bert_dir, data, criterion):
    X, y, X_test, _ = data
    est = fast(tiny_bert_dir, criterion=criterion, min_steps=10).fit(X[:33], y[:33])
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
    est = fast(tiny_llama_dir, min_steps=60, group_by_length=False, batch_size=32).fit(X, y)
    assert est.tokenizer_.pad_token == est.tokenizer_.eos_token == "</s>"
    assert est.module_.config.pad_token_id == est.tokenizer_.pad_token_id
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
    with pytest.raises(ValueError, match="criterion"):
        fast(tiny_bert_dir, criterion="varience").fit(X, y)
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
def test_minilm_on_300_wine_reviews_beats_the_untrained_model():
    from skftr.datasets import load_wine_reviews

    texts, y = load_wine_reviews()
    idx = np.random.default_rng(0).permutation(len(texts))
    train, test = idx[:300], idx[300:600]
    X_train, X_test = [texts[i] for i in train], [texts[i] for i in test]
    est = LoRARegressor(random_state=0).fit(X_train, y[train])
    untrained = LoRARegressor(random_state=0).initialize()  # LoRA at identity, random head
    untrained.y_mean_, untrained.y_scale_ = est.y_mean_, est.y_scale_
    var_trained = np.var(y[test] - est.predict(X_test))
    var_untrained = np.var(y[test] - untrained.predict(X_test))
    assert var_trained < 0.85 * min(var_untrained, np.var(y[test]))


@pytest.mark.slow
def test_smollm2_gguf_pad_token_and_last_token_pooling():
    from skftr.backbones import smollm2_135m
    from skftr.datasets import load_wine_reviews

    texts, y = load_wine_reviews()
    directory, gguf_file = smollm2_135m()
    est = LoRARegressor(directory, gguf_file=gguf_file, batch_size=4, min_steps=2, random_state=0)
    est.fit(texts[:8], y[:8])
    assert est.module_.config.pad_token_id == est.tokenizer_.pad_token_id is not None
    est.set_params(group_by_length=False)
    alone = est.predict(texts[:1])
    padded = est.predict([texts[0], texts[1] + " " + texts[2]])
    np.testing.assert_allclose(padded[0], alone[0], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(est)).predict(texts[:1]), alone)
