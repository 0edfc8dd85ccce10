"""Shared fixtures: tiny random language models saved with their tokenizers.

Built offline from a config (no hub access) once per test session:

- ``tiny_bert_dir``: a 2-layer BERT (hidden 32) with a WordPiece tokenizer
  (``BertTokenizerFast`` over a small vocabulary);
- ``tiny_llama_dir``: a 2-layer Llama (hidden 32) with a word-level
  ``PreTrainedTokenizerFast`` that has BOS/EOS but no pad token (the
  regressor must set one).

Both directories hold the base model only (``BertModel`` / ``LlamaModel``), so
``AutoModelForSequenceClassification`` adds a freshly initialised head, as
with the real backbones. ``TINY_WORDS`` is their common vocabulary.
"""
import pytest

TINY_WORDS = (
    "good great excellent superb fine nice bad poor awful terrible dull weak "
    "the a wine film book review taste smell fruit oak red white dry sweet "
    "very quite rather not and with of is was this that it"
).split()


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny_bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + TINY_WORDS
    vocab += [c for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?"] + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    assert tokenizer.unk_token_id not in tokenizer(" ".join(TINY_WORDS))["input_ids"]
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("tiny_llama")
    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>"] + TINY_WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    assert tokenizer.unk_token_id not in tokenizer(" ".join(TINY_WORDS))["input_ids"]
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=None)
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


# ------------------------------------------------------------------ seeds
def pytest_addoption(parser):
    parser.addoption("--seed", type=int, default=0,
                     help="seed of every test's random draws (default 0); rerun a failure with "
                          "the seed its report names")


def pytest_report_header(config):
    return f"skftr test seed: --seed {config.getoption('--seed')}"


@pytest.fixture
def seed(request):
    """The run's seed (``--seed``), for tests meant to see fresh draws."""
    return request.config.getoption("--seed")


@pytest.fixture
def rng(seed):
    """A numpy Generator seeded from ``--seed``."""
    import numpy as np

    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _seed_global_generators(seed):
    """Seed the global generators too (numpy's legacy one, ``random``, torch), so that no test
    depends on the order the tests ran in."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # the rectification tests need no torch
        return
    torch.manual_seed(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.sections.append(("skftr seed", f"rerun with --seed {item.config.getoption('--seed')}"))


def assert_same_estimate(result, reference):
    """Two computations of one estimate agree to rounding: relative 1e-12, and absolute a
    billionth of its standard error (a value near zero has no relative precision)."""
    import numpy as np

    np.testing.assert_allclose(result.value, reference.value, rtol=1e-12,
                               atol=1e-9 * reference.stderr)
    np.testing.assert_allclose(result.stderr, reference.stderr, rtol=1e-10)
