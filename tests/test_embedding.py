import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from skftr.embedding import SentenceEmbedder

WORDS = ["good", "bad", "wine", "fruit", "dry", "sweet", "the", "a", "is", "very", "not",
         "red", "white", "oak", "tannin", "finish"]
TEXTS = ["the wine is very good", "bad", "a dry red with oak and a long finish",
         "sweet white", "not good not bad", "fruit", "the finish is dry and very very long",
         "red"]


def _build_tiny_bert(path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=64)
    BertModel(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def backbone(request, tmp_path_factory):
    """The shared tiny BERT of conftest.py when present, else a local one."""
    try:
        return str(request.getfixturevalue("tiny_bert_dir"))
    except pytest.FixtureLookupError:
        return _build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="module")
def embedder(backbone):
    return SentenceEmbedder(backbone=backbone, batch_size=3, precision="fp32").fit(TEXTS)


def test_shape_dtype_and_manual_mean_pooling(embedder):
    import torch

    out = embedder.transform(TEXTS)
    hidden_size = embedder.model_.config.hidden_size
    assert out.shape == (len(TEXTS), hidden_size) and out.dtype == np.float64
    assert np.all(np.isfinite(out))
    with torch.no_grad():
        tokens = embedder.tokenizer_(TEXTS[2], return_tensors="pt")
        manual = embedder.model_(**tokens).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(out[2], manual, rtol=1e-4, atol=1e-5)


def test_order_batching_and_padding_do_not_change_embeddings(embedder, backbone):
    out = embedder.transform(TEXTS)
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    np.testing.assert_allclose(embedder.transform([TEXTS[i] for i in perm]), out[perm],
                               rtol=1e-4, atol=1e-5)
    single = SentenceEmbedder(backbone=backbone, batch_size=1,
                              precision="fp32").fit().transform(TEXTS)
    np.testing.assert_allclose(single, out, rtol=1e-4, atol=1e-5)
    # different texts give different embeddings
    assert np.abs(out[0] - out[1]).max() > 1e-3


def test_bf16_is_close_to_fp32_and_said(embedder, backbone):
    """bf16 keeps about 3 significant digits: the embeddings agree to a few per mille of
    their spread, and the precision in use is on ``precision_``."""
    fast = SentenceEmbedder(backbone=backbone, batch_size=3, precision="bf16").fit()
    assert fast.precision_ == "bf16" and embedder.precision_ == "fp32"
    exact = embedder.transform(TEXTS)
    np.testing.assert_allclose(fast.transform(TEXTS), exact, atol=0.03 * exact.std())
    assert SentenceEmbedder(backbone=backbone).fit().precision_ in ("bf16", "fp32")
    with pytest.raises(ValueError, match="precision"):
        SentenceEmbedder(backbone=backbone, precision="fp16").fit()


def test_cls_pooling_and_truncation(backbone):
    import torch

    cls = SentenceEmbedder(backbone=backbone, pooling="cls", precision="fp32").fit()
    with torch.no_grad():
        tokens = cls.tokenizer_(TEXTS[:1], return_tensors="pt")
        first = cls.model_(**tokens).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(cls.transform(TEXTS[:1])[0], first, rtol=1e-4, atol=1e-5)
    short = SentenceEmbedder(backbone=backbone, max_length=4).fit()
    long_text = " ".join(WORDS * 10)
    assert np.all(np.isfinite(short.transform([long_text, "good"])))


def test_sklearn_api(backbone, embedder):
    est = clone(SentenceEmbedder(backbone=backbone, max_length=32))
    assert est.get_params()["max_length"] == 32
    features = est.fit_transform(TEXTS)
    names = est.get_feature_names_out()
    assert len(names) == features.shape[1] and names[0] == "sentenceembedder0"
    y = np.arange(len(TEXTS), dtype=float)
    model = make_pipeline(SentenceEmbedder(backbone=backbone), Ridge(1.0)).fit(TEXTS, y)
    assert model.predict(TEXTS).shape == (len(TEXTS),)
    import pandas as pd

    assert embedder.transform(pd.Series(TEXTS)).shape[0] == len(TEXTS)
    assert embedder.transform(np.array(TEXTS, dtype=object)).shape[0] == len(TEXTS)


@pytest.mark.parametrize("X, error, match", [
    ("just one string", TypeError, "single str"),
    (["fine", None], ValueError, r"X\[1\] is missing"),
    (["fine", 3.0], TypeError, r"X\[1\] must be a str"),
    (["fine", "  "], ValueError, "whitespace"),
    ([], ValueError, "empty"),
    (np.array([["a", "b"]]), ValueError, "1-dimensional"),
    (42, TypeError, "sequence"),
])
def test_bad_texts(embedder, X, error, match):
    with pytest.raises(error, match=match):
        embedder.transform(X)


def test_bad_parameters_and_not_fitted(backbone, tmp_path):
    with pytest.raises(NotFittedError):
        SentenceEmbedder(backbone=backbone).transform(TEXTS)
    with pytest.raises(ValueError, match="pooling"):
        SentenceEmbedder(backbone=backbone, pooling="max").fit()
    with pytest.raises(ValueError, match="max_length"):
        SentenceEmbedder(backbone=backbone, max_length=0).fit()
    with pytest.raises(ValueError, match="neither a known backbone nor a local model directory"):
        SentenceEmbedder(backbone=str(tmp_path / "missing")).fit()
    with pytest.raises(ValueError, match="n_threads"):
        SentenceEmbedder(backbone=backbone, n_threads=0).fit()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="could not be loaded"):
        SentenceEmbedder(backbone=str(tmp_path)).fit()


def test_fit_is_quiet_and_n_threads_holds_during_transform(backbone, capsys, monkeypatch):
    import torch

    embedder = SentenceEmbedder(backbone=backbone, n_threads=1).fit(TEXTS)
    assert capsys.readouterr().err == ""  # no weight-loading bar or report
    seen = []
    forward = embedder.model_.forward
    monkeypatch.setattr(embedder.model_, "forward",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or forward(*a, **k))
    before = torch.get_num_threads()
    embedder.transform(TEXTS)
    assert set(seen) == {1} and torch.get_num_threads() == before


@pytest.mark.slow
def test_minilm_embeddings_are_semantic():
    embedder = SentenceEmbedder().fit()
    out = embedder.transform(["A wonderful, delicious red wine.", "An excellent and tasty red wine.",
                              "The train to Berlin was late."])
    assert out.shape == (3, 384)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    assert out[0] @ out[1] > out[0] @ out[2] + 0.2
