"""Predictors for the rectification and the fitted fold ensemble (docs/method.md §2).

* :class:`TextRidge` — a cheap, closed-form predictor: ridge regression (penalty by
  generalised cross-validation) on label-free features of the texts: frozen sentence
  embeddings, TF-IDF word n-grams or the text's length. Fitted in seconds; the default
  companions of the fine-tuned model.
* :class:`FoldEnsemble` — what ``FineTuneRectifyEstimator.fit`` leaves behind: the
  predictors fitted on each fold (one fold for the paper's single split), the user's
  score columns, and a ``predict`` that returns one column per predictor.
"""
import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._inputs import check_texts

__all__ = ["FoldEnsemble", "TextRidge", "default_predictors", "length_features"]

_ALPHAS = tuple(np.logspace(-3, 4, 15))


class TextRidge(RegressorMixin, BaseEstimator):
    """Ridge regression on frozen text features, the penalty chosen by GCV.

    ``features="embedding"``: mean-pooled sentence embeddings of a frozen backbone
    (:class:`skftr.SentenceEmbedder`); ``features="tfidf"``: TF-IDF of word 1-2 grams
    (scikit-learn ``TfidfVectorizer``, sublinear term frequency); ``features="length"``:
    the standardized :func:`length_features` (how long a text is, which mean pooling and
    TF-IDF's unit-norm rows both discard). The features use no label, so inside
    cross-fitting they are computed once for every row and only the ridge is refitted
    per fold (:meth:`fit_features`).

    Parameters
    ----------
    features : {"embedding", "tfidf", "length"}, default="embedding"
    backbone : str or None, default=None
        Backbone of the embeddings (a known name or a local directory; None: MiniLM).
    max_length : int, default=128
        Tokens per text for the embeddings.
    alphas : tuple of float, default=10**(-3..4)
        Ridge penalties tried by ``RidgeCV`` (efficient leave-one-out).
    memory : str, joblib.Memory or None, default=None
        Caches features on disk, so a refit on the same texts (labels often arrive in
        batches) does not embed them again: inside ``FineTuneRectifyEstimator`` the
        embedding's trunk pass (:func:`skftr.trunk.cached_outputs`); fitted on its own,
        the embeddings or TF-IDF of the texts (``joblib.Memory``). Inside the estimator
        TF-IDF and length, seconds to compute, are recomputed a chunk of texts at a time
        (memory stays flat as the corpus grows).

    Attributes
    ----------
    features_ : fitted SentenceEmbedder, TfidfVectorizer or Pipeline
    ridge_ : fitted RidgeCV
    """

    _parameter_constraints = {
        "features": [StrOptions({"embedding", "tfidf", "length"})],
        "backbone": [str, None],
        "max_length": [int],
        "alphas": ["array-like"],
        "memory": [None, str, HasMethods(["cache"])],
    }

    def __init__(self, features="embedding", backbone=None, max_length=128, alphas=_ALPHAS,
                 memory=None):
        self.features = features
        self.backbone = backbone
        self.max_length = max_length
        self.alphas = alphas
        self.memory = memory

    def make_features(self):
        """An unfitted label-free featurizer of the texts."""
        self._validate_params()
        if self.features == "tfidf":
            from sklearn.feature_extraction.text import TfidfVectorizer

            return TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
        if self.features == "length":
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import FunctionTransformer, StandardScaler

            return make_pipeline(FunctionTransformer(length_features), StandardScaler())
        from .embedding import SentenceEmbedder

        return SentenceEmbedder(backbone=self.backbone, max_length=self.max_length)

    def trunk_spec(self):
        """The :class:`~skftr.trunk.TrunkSpec` the embedding reads (None for TF-IDF and
        length): inside ``FineTuneRectifyEstimator`` one trunk pass per spec serves every
        reader (:func:`skftr._stages.fit_folds`)."""
        return self.make_features().trunk_spec() if self.features == "embedding" else None

    def featurize(self, texts):
        """The featurizer fitted on ``texts`` and their features (cached with ``memory``)."""
        from sklearn.utils.validation import check_memory

        features = self.make_features().fit(texts)
        if self.memory is None or self.features == "length":  # nothing worth caching
            return features, features.transform(texts)
        transform = check_memory(self.memory).cache(_transform)
        return features, transform(features.get_params(), type(features).__name__, texts)

    def fit(self, X, y):
        """Fit the featurizer on ``X``, then the ridge on its features."""
        features, Z = self.featurize(check_texts(X))
        return self.fit_features(features, Z, y)

    def fit_features(self, features, Z, y):
        """Fit only the ridge, on features ``Z`` from the already fitted ``features``."""
        from sklearn.linear_model import RidgeCV

        self.features_ = features
        self.ridge_ = RidgeCV(alphas=np.asarray(self.alphas, dtype=float)).fit(Z, y)
        return self

    def predict(self, X):
        """``ridge_.predict(features_.transform(X))``, float64 of shape (n,)."""
        check_is_fitted(self, "ridge_")
        return self.predict_features(self.features_.transform(check_texts(X)))

    def predict_features(self, Z):
        """Predictions from already computed features."""
        return np.asarray(self.ridge_.predict(Z), dtype=np.float64).reshape(-1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


def _transform(params, kind, texts):
    """Features of ``texts`` from a featurizer rebuilt from its parameters (cacheable)."""
    if kind == "TfidfVectorizer":
        from sklearn.feature_extraction.text import TfidfVectorizer as make
    else:
        from .embedding import SentenceEmbedder as make
    return make(**params).fit(texts).transform(texts)


def length_features(texts):
    """``log(1 + characters)``, ``log(1 + words)`` and their squares, shape (n, 4).

    Label-free features of how long each text is: a smooth function of the length in
    a ridge. Ratings often follow length (wine reviews' points do), which neither mean-
    pooled embeddings nor TF-IDF's unit-norm rows keep.
    """
    texts = check_texts(texts)
    chars = np.log1p([len(text) for text in texts])
    words = np.log1p([len(text.split()) for text in texts])
    return np.column_stack([chars, words, chars ** 2, words ** 2])


def default_predictors(backbone=None):
    """The cheap predictors used by ``predictors="auto"`` on texts.

    Ridges on frozen all-MiniLM-L6-v2 and all-mpnet-base-v2 embeddings, on TF-IDF
    n-grams and on the texts' length, the set that saved the most labels in
    ``benchmarks/bench_savings.py`` (``benchmarks/RESULTS.md``). ``backbone``: one
    backbone for every embedding instead.
    """
    embeddings = ([TextRidge(features="embedding", backbone=backbone)] if backbone is not None
                  else [TextRidge(features="embedding"),
                        TextRidge(features="embedding", backbone="mpnet")])
    return embeddings + [TextRidge(features="tfidf"), TextRidge(features="length")]


def _name(predictor):
    if isinstance(predictor, TextRidge):
        if predictor.features == "embedding" and predictor.backbone is not None:
            from pathlib import Path

            return f"ridge on {Path(predictor.backbone).name} embedding"
        return f"ridge on {predictor.features}"
    steps = getattr(predictor, "steps", None)
    if steps:
        return " -> ".join(type(step).__name__ for _, step in steps)
    return type(predictor).__name__


class FoldEnsemble:
    """The fitted predictors of every fold, and the user's score columns.

    ``members[k][j]`` is predictor ``j`` fitted without the labeled rows of fold ``k``
    (a single member list for the paper's single split). ``predict`` gives one column
    per predictor (then one per score column): the fold-size weighted average over the
    folds, the predictor ``f_bar = sum_k (n_k / n) f_k`` of cross-PPI (docs/method.md §2).

    Parameters
    ----------
    members : list of list of fitted regressors
    fold_weights : array-like of shape (K,)
        ``n_k / n``: the share of the rectification rows in each fold.
    names : list of str
        One per column of ``predict`` (predictors, then score columns).
    n_scores : int
        Number of user score columns (taken as they are, in every fold).
    text_input : bool
        Whether the members take texts (a list of str) rather than numeric arrays.
    """

    def __init__(self, members, fold_weights, names, n_scores=0, text_input=True):
        self.members = members
        self.fold_weights = np.asarray(fold_weights, dtype=float)
        self.names = list(names)
        self.n_scores = int(n_scores)
        self.text_input = bool(text_input)

    @property
    def n_folds(self):
        return len(self.members)

    @property
    def n_predictors(self):
        return len(self.names)

    def predict_fold(self, k, X, scores=None):
        """Predictions of fold ``k``'s members on ``X``: shape (n, p)."""
        columns = [_predict(member, X, self.text_input) for member in self.members[k]]
        return self._with_scores(columns, X, scores)

    def predict(self, X, scores=None):
        """Fold-weighted average predictions on ``X``: shape (n, p)."""
        total = None
        for k, weight in enumerate(self.fold_weights):
            columns = [_predict(member, X, self.text_input) for member in self.members[k]]
            part = weight * np.column_stack(columns) if columns else None
            total = part if total is None else total + part
        return self._with_scores([] if total is None else list(total.T), X, scores)

    def _with_scores(self, columns, X, scores):
        if self.n_scores:
            if scores is None or scores.shape[1] != self.n_scores:
                raise ValueError(f"the estimator was fitted with {self.n_scores} score column(s); "
                                 "give X with the same score columns")
            columns = list(columns) + list(scores.T)
        return np.column_stack(columns) if columns else np.empty((len(X), 0))


def _predict(model, X, text_input):
    """One predictor's float64 predictions, checked for length and finiteness."""
    pred = np.asarray(model.predict(X.tolist() if text_input else X), dtype=np.float64).reshape(-1)
    if pred.shape[0] != X.shape[0] or not np.all(np.isfinite(pred)):
        raise ValueError(f"{type(model).__name__}.predict returned {pred.shape[0]} values for "
                         f"{X.shape[0]} rows, or non-finite values")
    return pred
