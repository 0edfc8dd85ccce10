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

from ._hf import torch_threads
from ._inputs import check_texts

__all__ = ["SentenceEmbedder"]


class SentenceEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Texts -> pooled hidden states of a frozen transformers encoder.

    A reader of the backbone's shared frozen trunk (:mod:`skftr.trunk`): ``fit`` loads it
    (once per process, nothing is trained); ``transform`` is its pass (length-sorted
    batches, dynamic padding, ``torch.inference_mode``) and pools the last hidden states:
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
    spec_ : skftr.trunk.TrunkSpec
        The trunk read.
    tokenizer_, model_ :
        The trunk's tokenizer and frozen encoder (eval mode; shared, not copied).
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
        from .trunk import get_trunk

        self.spec_ = self.trunk_spec()
        trunk = get_trunk(self.spec_)
        self.tokenizer_, self.model_ = trunk.tokenizer, trunk.model
        self.precision_, self.device_ = self.spec_.precision, self.spec_.device
        self.n_features_out_ = trunk.hidden_size
        return self

    def trunk_spec(self):
        """The :class:`~skftr.trunk.TrunkSpec` of this embedding (parameters resolved)."""
        from .trunk import TrunkSpec

        return TrunkSpec.of(self.backbone, self.max_length, self.pooling, self.precision,
                            self.device)

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
        from .trunk import get_trunk

        with torch_threads(self.n_threads):
            outputs = get_trunk(self.spec_).run(texts, module=self.model_,
                                                max_rows=self.batch_size)
        return outputs.embeddings.astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags
