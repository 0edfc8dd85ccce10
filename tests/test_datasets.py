import numpy as np
import pytest

from skftr import datasets


def test_wine_reviews_shape_and_known_moments():
    texts, y = datasets.load_wine_reviews()
    assert len(texts) == len(y) == 5810
    assert all(isinstance(t, str) and t for t in texts[:50])
    assert y.mean() == pytest.approx(88.2, abs=0.1)
    assert y.var(ddof=1) == pytest.approx(8.47, abs=0.05)


def test_emobank_valence():
    texts, y = datasets.load_emobank("V")
    assert len(texts) == len(y) == 10062
    assert y.mean() == pytest.approx(3.0, abs=0.1)
    assert y.var(ddof=1) == pytest.approx(0.122, abs=0.01)


def test_emobank_reader_draws_one_reader_per_sentence():
    texts, y, oracle = datasets.load_emobank_reader("V", random_state=0)
    assert len(texts) == len(y) == len(oracle)
    assert set(np.unique(y)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    again = datasets.load_emobank_reader("V", random_state=0)[1]
    np.testing.assert_array_equal(y, again)
    usable = np.isfinite(oracle)
    # The other readers' mean predicts the drawn reader far better than a constant.
    assert np.corrcoef(y[usable], oracle[usable])[0, 1] > 0.3


def test_bad_target_is_named():
    with pytest.raises(ValueError, match="target"):
        datasets.load_emobank("valence")


def test_data_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SKFTR_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="SKFTR_DATA_DIR"):
        datasets.data_dir()
