"""Loaders for the human-labeled corpora the method was evaluated on.

The files live outside the repository, in ``../shared/data`` beside the project
root, or wherever the environment variable ``SKFTR_DATA_DIR`` points.
"""
import os
from pathlib import Path


__all__ = ["data_dir", "load_wine_reviews", "load_emobank", "load_emobank_reader"]

_EMOBANK_TARGETS = ("V", "A", "D")


def data_dir():
    """Directory holding the data files: ``$SKFTR_DATA_DIR`` or ``../shared/data``.

    Raises
    ------
    FileNotFoundError
        If the directory does not exist, with the variable that fixes it.
    """
    env = os.environ.get("SKFTR_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        raise FileNotFoundError(
            f"data directory {str(path)!r} not found; set SKFTR_DATA_DIR to the folder "
            "holding wine_reviews.csv and emobank.csv"
        )
    return path


def _read_csv(name):
    import pandas as pd

    # only empty cells are missing: the EmoBank sentence "None" (and any "NA", "null")
    # is text, not NaN
    return pd.read_csv(data_dir() / name, keep_default_na=False, na_values=[""])


def load_wine_reviews():
    """Wine Reviews subset: 5,810 review texts and their points (80-100).

    Returns
    -------
    texts : list of str
    y : ndarray of float, shape (5810,)
    """
    frame = _read_csv("wine_reviews.csv")
    return frame["description"].astype(str).tolist(), frame["points"].to_numpy(float)


def _check_target(target):
    if target not in _EMOBANK_TARGETS:
        raise ValueError(f"target must be one of {_EMOBANK_TARGETS}, got {target!r}")


def load_emobank(target="V"):
    """EmoBank sentences and the mean rating of about five readers.

    Parameters
    ----------
    target : {"V", "A", "D"}
        Valence, arousal or dominance (1-5 scale).

    Returns
    -------
    texts : list of str
    y : ndarray of float, shape (10062,)
    """
    _check_target(target)
    frame = _read_csv("emobank.csv")
    return frame["text"].astype(str).tolist(), frame[target].to_numpy(float)


def load_emobank_reader(target="V", random_state=0):
    """Survey-style EmoBank: one reader's integer rating per sentence.

    For every sentence one of its readers is drawn at random; the mean of the
    other readers is returned as an (approximately) oracle predictor.

    Parameters
    ----------
    target : {"V", "A", "D"}
    random_state : int, RandomState or None
        Chooses the reader of each sentence.

    Returns
    -------
    texts : list of str
    y : ndarray of float
        The drawn reader's rating (1-5).
    oracle : ndarray of float
        Mean rating of the other readers of the same sentence (NaN when the
        sentence had a single reader).
    """
    from sklearn.utils import check_random_state

    _check_target(target)
    rng = check_random_state(random_state)
    sentences = _read_csv("emobank.csv")[["id", "text"]]
    ratings = _read_csv("emobank_reader_ratings.csv")[["id", target]]
    ratings = ratings[ratings["id"].isin(sentences["id"])]
    groups = ratings.groupby("id", sort=False)[target]
    total, count = groups.transform("sum"), groups.transform("size")
    ratings = ratings.assign(
        _draw=rng.random_sample(len(ratings)),
        oracle=(total - ratings[target]) / (count - 1).where(count > 1),
    )
    chosen = ratings.loc[ratings.groupby("id", sort=False)["_draw"].idxmax()]
    merged = sentences.merge(chosen, on="id", how="inner")
    return (
        merged["text"].astype(str).tolist(),
        merged[target].to_numpy(float),
        merged["oracle"].to_numpy(float),
    )
