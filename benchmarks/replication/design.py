"""The evaluation design: corpora, fresh paired draws, the truth (docs/method.md §6).

Every repetition is a fresh draw: ``n`` rows of the corpus are labeled at random, every
other row is unlabeled (no cap), and the truth is the mean label of the whole file. The
draw is seeded by ``(corpus, n, draw)`` alone, so every method sees the same labeled rows
in the same repetition (paired comparisons).
"""
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CORPORA = ("wine", "emobank", "emobank_reader")


@lru_cache(maxsize=None)
def load_corpus(name, subsample=None):
    """Texts and labels of a corpus, optionally a fixed random subsample of its rows.

    ``wine``: :func:`skftr.datasets.load_wine_reviews` (points); ``emobank``:
    ``load_emobank("V")`` (mean valence); ``emobank_reader``: ``load_emobank_reader("V",
    random_state=0)`` (one reader's valence rating per sentence).

    Returns
    -------
    texts : tuple of str
    y : ndarray of float
    """
    from skftr import datasets

    if name not in CORPORA:
        raise ValueError(f"corpus must be one of {CORPORA}, got {name!r}")
    if name == "wine":
        texts, y = datasets.load_wine_reviews()
    elif name == "emobank":
        texts, y = datasets.load_emobank("V")
    else:
        texts, y, _ = datasets.load_emobank_reader("V", random_state=0)
    if subsample is not None:
        if not 0 < subsample <= len(texts):
            raise ValueError(f"subsample must be in [1, {len(texts)}] for {name!r}, "
                             f"got {subsample}")
        rows = np.sort(np.random.default_rng(0).choice(len(texts), subsample, replace=False))
        texts, y = [texts[i] for i in rows], y[rows]
    return tuple(texts), np.asarray(y, dtype=float)


def _seeds(corpus, n, draw):
    """Two independent seed sequences of a draw: one for its rows, one for the methods."""
    return np.random.SeedSequence([zlib.crc32(corpus.encode()), n, draw]).spawn(2)


def labeled_rows(corpus, n, draw, n_rows):
    """The ``n`` labeled rows (sorted positions) of repetition ``draw``, out of ``n_rows``."""
    if not 0 < n < n_rows:
        raise ValueError(f"budget n={n} must be in [1, {n_rows - 1}] for {corpus!r} "
                         f"({n_rows} rows)")
    rng = np.random.default_rng(_seeds(corpus, n, draw)[0])
    return np.sort(rng.choice(n_rows, size=n, replace=False))


def method_seed(corpus, n, draw):
    """The ``random_state`` every method gets in repetition ``draw`` (folds, splits, models)."""
    return int(_seeds(corpus, n, draw)[1].generate_state(1)[0] >> 1)


@dataclass(frozen=True)
class Draw:
    """One repetition: all texts, the labels with NaN on the unlabeled rows, the truth."""

    corpus: str
    n: int
    draw: int
    texts: tuple
    y: np.ndarray
    labeled: np.ndarray
    truth: float
    seed: int


def make_draw(corpus, n, draw, subsample=None):
    """Repetition ``draw`` of ``corpus`` at budget ``n``: labels kept on ``n`` random rows."""
    texts, y_all = load_corpus(corpus, subsample)
    labeled = labeled_rows(corpus, n, draw, len(texts))
    y = np.full(len(texts), np.nan)
    y[labeled] = y_all[labeled]
    return Draw(corpus, n, draw, texts, y, labeled, float(np.mean(y_all)),
                method_seed(corpus, n, draw))
