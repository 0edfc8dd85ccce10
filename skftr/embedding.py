"""Frozen sentence embeddings as scikit-learn features.

``SentenceEmbedder`` turns texts into the pooled last hidden states of a frozen
transformers encoder (all-MiniLM-L6-v2 by default), so that a cheap regressor (ridge)
on top gives the frozen-embedding predictor of docs/method.md §2.4 and the pilots of the
scaling law (§4).
"""
import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._hf import pool, quiet, resolve_backbone, resolve_device, torch_threads
from ._inputs import check_texts

__all__ = ["SentenceEmbedder"]


class SentenceEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Texts -> pooled hidden states of a frozen transformers encoder.

    ``fit`` loads the tokenizer and ``transformers.AutoModel`` (nothing is trained);
    ``transform`` runs batched inference under ``torch.inference_mode`` with texts
    sorted by length (less padding) and pools the last hidden states:
    ``"mean"`` averages the tokens under the attention mask (the sentence-transformers
    pooling of all-MiniLM-L6-v2), ``"cls"`` takes the first token.

    Parameters
    ----------
    backbone : str or path, default=None
        A known backbone name (``"minilm"``, ``"mpnet"``; see :mod:`skftr.backbones`) or
        a local model directory; None is all-MiniLM-L6-v2. Nothing is downloaded.
    max_length : int, default=128
        Tokens per text (longer texts are truncated).
    batch_size : int, default=64
        Texts per forward pass.
    pooling : {"mean", "cls"}, default="mean"
    device : str, default="auto"
        Torch device; "auto" picks CUDA when available, else CPU.
    n_threads : int, default=None
        Torch and BLAS threads during ``transform``; None applies
        :func:`skftr._hf.default_threads` (never more threads than free cores).
    precision : {"auto", "bf16", "fp32"}, default="auto"
        Of the encoder's weights and pass: "auto" is bfloat16 where the device computes it
        natively (:func:`skftr.trunk.resolve_precision`): 2.7x (MiniLM) and 3.6x (mpnet)
        more texts per CPU-second than float32, with the same label savings
        (``benchmarks/bench_trunk.py``).

    Attributes
    ----------
    tokenizer_, model_ :
        The loaded tokenizer and frozen encoder (eval mode).
    n_features_out_ : int
        Embedding dimension (the encoder's hidden size).
    precision_ : str
        The precision in use ("bf16" or "fp32").
    """

    _parameter_constraints = {
        "backbone": [str, os.PathLike, None],
        "max_length": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "pooling": [StrOptions({"mean", "cls"})],
        "device": [str],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "precision": [StrOptions({"auto", "bf16", "fp32"})],
    }

    def __init__(self, backbone=None, max_length=128, batch_size=64, pooling="mean",
                 device="auto", n_threads=None, precision="auto"):
        self.backbone = backbone
        self.max_length = max_length
        self.batch_size = batch_size
        self.pooling = pooling
        self.device = device
        self.n_threads = n_threads
        self.precision = precision

    def fit(self, X=None, y=None):
        """Load the frozen encoder; ``X`` (texts) is only validated.

        Returns
        -------
        self : SentenceEmbedder
        """
        self._validate_params()
        if X is not None:
            check_texts(X)
        from transformers import AutoModel, AutoTokenizer

        import torch

        from .trunk import resolve_precision

        path = resolve_backbone(self.backbone)
        device = resolve_device(self.device)
        self.precision_ = resolve_precision(self.precision, device)
        dtype = torch.bfloat16 if self.precision_ == "bf16" else torch.float32
        try:
            with quiet(0):
                self.tokenizer_ = AutoTokenizer.from_pretrained(path, local_files_only=True)
                self.model_ = AutoModel.from_pretrained(path, local_files_only=True,
                                                        dtype=dtype).to(device).eval()
        except (OSError, ValueError) as error:
            raise ValueError(f"backbone {path!r} could not be loaded as a transformers "
                             f"encoder: {error}") from error
        self.model_.requires_grad_(False)
        self.device_ = device
        self.n_features_out_ = int(self.model_.config.hidden_size)
        return self

    @property
    def _n_features_out(self):
        return self.n_features_out_

    def transform(self, X):
        """Embed texts.

        Parameters
        ----------
        X : sequence of str

        Returns
        -------
        ndarray of float64, shape (n_texts, n_features_out_)
        """
        check_is_fitted(self, "model_")
        texts = check_texts(X)
        import torch

        order = np.argsort([len(text) for text in texts], kind="stable")[::-1]
        out = np.empty((len(texts), self.n_features_out_))
        with torch_threads(self.n_threads), torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tokenizer_([texts[i] for i in rows], padding=True,
                                        truncation=True, max_length=self.max_length,
                                        return_tensors="pt").to(self.device_)
                hidden = self.model_(**batch).last_hidden_state
                pooled = pool(hidden, batch["attention_mask"], self.pooling)
                out[rows] = pooled.float().cpu().numpy()
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags
