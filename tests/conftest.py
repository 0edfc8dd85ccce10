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
