import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from joblib import parallel_config
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline

from skftr.scaling import ScalingLaw, ScalingLawWarning

matplotlib.use("Agg")

PAPER = (0.287, 0.297, 0.042)  # EmoBank valence law of the paper (a, alpha, b)
SIZES = np.repeat([50, 100, 200, 400, 800], 3)


def law_values(sizes, a, alpha, b):
    return a * np.asarray(sizes, float) ** -alpha + b


def noisy_curve(seed, rel_sd=0.04, params=PAPER, sizes=SIZES):
    # Multiplicative noise of a few percent: a held-out variance on ~1000 rows has a
    # relative sd of sqrt(2/1000) = 4.5%, and pilots at one size differ by their subsets.
    rng = np.random.default_rng(seed)
    return law_values(sizes, *params) * np.exp(rng.normal(0.0, rel_sd, len(sizes)))


def sse(sizes, values, params):
    return np.sum((law_values(sizes, *params) - values) ** 2)


def test_exact_curve_is_recovered():
    law = ScalingLaw(n_bootstrap=0).fit(SIZES, law_values(SIZES, *PAPER))
    np.testing.assert_allclose([law.a_, law.alpha_, law.b_], PAPER, rtol=1e-4)
    assert law.r2_ == pytest.approx(1.0)
    assert law.identified_


@pytest.mark.parametrize("params", [PAPER, (9.0, 0.5, 3.5), (2.0, 0.8, 0.0)])
def test_noisy_recovery_median_of_seeds(params):
    # 5 sizes x 3 repeats, 3% noise. alpha and b trade off over a 16x range of sizes,
    # so single fits scatter (their bootstrap intervals say so); over 30 seeds the
    # median must be within 10% for alpha, and the fitted curves must track the truth.
    fits, errors = [], []
    grid = np.array([50, 200, 800, 1600])
    for seed in range(30):
        law = ScalingLaw(n_bootstrap=0).fit(SIZES, noisy_curve(seed, 0.03, params=params))
        fits.append([law.a_, law.alpha_, law.b_])
        errors.append(law.predict(grid) / law_values(grid, *params) - 1)
    a, alpha, b = np.median(fits, axis=0)
    assert alpha == pytest.approx(params[1], rel=0.10)
    assert a == pytest.approx(params[0], rel=0.15)
    assert b == pytest.approx(params[2], abs=0.15 * law_values(800, *params))
    # unweighted NLS fits the large variances of small sizes best: within 2-4% over
    # the pilot range, 7% extrapolated to twice the largest size
    np.testing.assert_array_less(np.median(np.abs(errors), axis=0), [0.02, 0.03, 0.04, 0.07])


def test_fit_is_the_constrained_least_squares_optimum():
    from scipy.optimize import minimize

    for seed in range(3):
        values = noisy_curve(seed, rel_sd=0.08)
        law = ScalingLaw(n_bootstrap=0).fit(SIZES, values)
        assert law.a_ > 0 and law.alpha_ > 0 and law.b_ >= 0
        best = sse(SIZES, values, (law.a_, law.alpha_, law.b_))
        assert best <= sse(SIZES, values, PAPER) * (1 + 1e-9)
        # an independent bounded optimiser from many starts finds nothing better
        for start in [(0.1, 0.1, 0.0), (1.0, 0.5, 0.05), (0.5, 1.5, 0.08)]:
            other = minimize(lambda p: sse(SIZES, values, p), start, method="L-BFGS-B",
                             bounds=[(1e-6, None), (1e-3, 3.0), (0.0, None)])
            assert best <= other.fun * (1 + 1e-6) + 1e-14


def test_r2_matches_definition_and_weights():
    values = noisy_curve(3)
    law = ScalingLaw(n_bootstrap=0).fit(SIZES, values)
    fitted = law.predict(SIZES)
    r2 = 1 - np.sum((values - fitted) ** 2) / np.sum((values - values.mean()) ** 2)
    assert law.r2_ == pytest.approx(r2)
    # a zero weight on an outlier is the same as dropping it
    outlier = np.r_[values, 5.0]
    sizes = np.r_[SIZES, 100]
    weighted = ScalingLaw(n_bootstrap=0).fit(sizes, outlier, sample_weight=np.r_[np.ones(15), 0])
    np.testing.assert_allclose([weighted.a_, weighted.alpha_, weighted.b_],
                               [law.a_, law.alpha_, law.b_], rtol=1e-4)


@pytest.mark.parametrize("values", [
    [0.10, 0.10, 0.10, 0.10, 0.10],        # flat
    [0.08, 0.09, 0.10, 0.11, 0.12],        # rising
])
def test_unidentifiable_curve_falls_back_to_flat_law(values):
    sizes = [50, 100, 200, 400, 800]
    with pytest.warns(ScalingLawWarning, match="not identified"):
        law = ScalingLaw(n_bootstrap=0).fit(sizes, values)
    assert not law.identified_
    assert (law.a_, law.alpha_) == (0.0, 0.0)
    assert law.b_ == pytest.approx(np.mean(values))
    np.testing.assert_allclose(law.predict([1, 10, 10_000]), np.mean(values))


def test_fewer_than_three_sizes_falls_back_to_flat_law():
    with pytest.warns(ScalingLawWarning, match="2 distinct"):
        law = ScalingLaw(n_bootstrap=0).fit([100, 100, 400, 400], [0.2, 0.22, 0.1, 0.12])
    assert not law.identified_ and law.b_ == pytest.approx(0.16)


def test_step_curve_warns_at_the_alpha_bound():
    with pytest.warns(ScalingLawWarning, match="upper bound"):
        law = ScalingLaw(n_bootstrap=0).fit([10, 20, 40, 80, 160], [0.2, 0.1, 0.1, 0.1, 0.1])
    assert law.alpha_ == pytest.approx(3.0) and law.b_ == pytest.approx(0.1, rel=0.05)
    np.testing.assert_allclose(law.predict([10, 20, 160]), [0.2, 0.1, 0.1], rtol=0.1)


def test_no_warning_when_identified():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScalingLaw(n_bootstrap=20, random_state=0).fit(SIZES, noisy_curve(0))


@pytest.mark.parametrize("sizes, values, weight, match", [
    ([0, 100, 200], [0.2, 0.1, 0.05], None, "sizes"),
    ([-5, 100, 200], [0.2, 0.1, 0.05], None, "sizes"),
    ([50, 100, 200], [0.2, -0.1, 0.05], None, "error_variances"),
    ([50, 100, 200], [0.2, np.nan, 0.05], None, "error_variances"),
    ([50, np.inf, 200], [0.2, 0.1, 0.05], None, "sizes"),
    ([50, 100, 200], [0.2, 0.1], None, "same length"),
    ([], [], None, "empty"),
    ([50, 100, 200], [0.2, 0.1, 0.05], [1, 1], "sample_weight"),
    ([50, 100, 200], [0.2, 0.1, 0.05], [1, -1, 1], "sample_weight"),
])
def test_bad_input(sizes, values, weight, match):
    with pytest.raises(ValueError, match=match):
        ScalingLaw(n_bootstrap=0).fit(sizes, values, sample_weight=weight)


def test_bad_parameters_and_predict():
    with pytest.raises(ValueError):
        ScalingLaw(n_bootstrap=-1).fit(SIZES, noisy_curve(0))
    with pytest.raises(ValueError):
        ScalingLaw(alpha=1.5).fit(SIZES, noisy_curve(0))
    with pytest.raises(NotFittedError):
        ScalingLaw().predict([10])
    law = ScalingLaw(n_bootstrap=0).fit(SIZES, noisy_curve(0))
    with pytest.raises(ValueError, match="positive"):
        law.predict([0, 10])


def test_bootstrap_intervals():
    values = noisy_curve(1)
    law = ScalingLaw(n_bootstrap=60, random_state=0).fit(SIZES, values)
    assert law.bootstrap_params_.shape == (60, 3)
    for name, value in [("a", law.a_), ("alpha", law.alpha_), ("b", law.b_)]:
        low, high = law.intervals_[name]
        assert low <= high
        assert low - 1e-9 <= value <= high + 1e-9 or name == "b"
    again = ScalingLaw(n_bootstrap=60, random_state=0).fit(SIZES, values)
    np.testing.assert_array_equal(law.bootstrap_params_, again.bootstrap_params_)
    residual = ScalingLaw(n_bootstrap=30, bootstrap="residuals", random_state=0).fit(SIZES, values)
    assert residual.intervals_["alpha"][0] < residual.intervals_["alpha"][1]
    none = ScalingLaw(n_bootstrap=0).fit(SIZES, values)
    assert np.isnan(none.intervals_["alpha"]).all()


def test_clone_and_plot():
    law = clone(ScalingLaw(n_starts=3, random_state=1))
    assert law.get_params()["n_starts"] == 3
    law.fit(SIZES, noisy_curve(0))
    ax = law.plot()
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    import matplotlib.pyplot as plt

    plt.close("all")


def linear_data(n=600, p=5, seed=0, n_unlabeled=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + n_unlabeled, p))
    y = X @ np.arange(1.0, p + 1) + rng.normal(size=n + n_unlabeled)
    y[n:] = np.nan
    return X, y


@pytest.mark.filterwarnings("error::skftr.scaling.ScalingLawWarning")
def test_from_pilots_table_and_indices():
    X, y = linear_data(n_unlabeled=100)
    law = ScalingLaw.from_pilots(Ridge(alpha=1e-3), X, y, [20, 40, 80, 160], n_repeats=2,
                                 holdout=200, random_state=0, n_bootstrap=10)
    pilots = law.pilots_
    assert isinstance(pilots, pd.DataFrame) and len(pilots) == 8
    assert list(pilots.columns) == ["size", "repeat", "error_variance",
                                    "prediction_variance", "seconds"]
    assert sorted(pilots["size"].unique()) == [20, 40, 80, 160]
    # Ridge on a linear model: error variance falls towards the noise variance 1
    mean = pilots.groupby("size")["error_variance"].mean()
    assert mean[20] > mean[160] > 0.8
    assert law.identified_ and law.alpha_ > 0
    # indices: holdout + nested subsets, never an unlabeled row
    assert law.holdout_indices_.size == 200
    assert np.isin(law.holdout_indices_, law.pilot_indices_).all()
    assert np.isfinite(y[law.pilot_indices_]).all()
    assert 200 + 160 <= law.pilot_indices_.size <= 200 + 2 * 160
    assert law.prediction_variance_ == pytest.approx(
        pilots.loc[pilots["size"] == 160, "prediction_variance"].mean())
    again = ScalingLaw.from_pilots(Ridge(alpha=1e-3), X, y, [20, 40, 80, 160], n_repeats=2,
                                   holdout=200, random_state=0, n_bootstrap=10)
    np.testing.assert_allclose(pilots["error_variance"], again.pilots_["error_variance"])


def test_from_pilots_texts_and_parallel_backend():
    rng = np.random.default_rng(0)
    words = np.array(["good", "bad", "fine", "awful", "great", "poor", "okay", "nice"])
    scores = np.array([1.0, -1.0, 0.3, -1.5, 1.5, -0.7, 0.0, 0.8])
    picks = rng.integers(0, len(words), size=(400, 4))
    texts = [" ".join(words[row]) for row in picks]
    y = scores[picks].sum(axis=1) + rng.normal(0, 0.3, 400)
    model = make_pipeline(HashingVectorizer(n_features=64, alternate_sign=False), Ridge(1.0))
    serial = ScalingLaw.from_pilots(model, texts, y, [8, 16, 32, 64], holdout=0.25,
                                    random_state=1, n_bootstrap=0)
    with parallel_config(backend="threading"):
        threaded = ScalingLaw.from_pilots(model, texts, y, [8, 16, 32, 64], holdout=0.25,
                                          n_jobs=2, random_state=1, n_bootstrap=0)
    np.testing.assert_allclose(serial.pilots_["error_variance"],
                               threaded.pilots_["error_variance"])
    assert serial.holdout_indices_.size == 100


def test_from_pilots_bad_input():
    X, y = linear_data(n=100)
    with pytest.raises(ValueError, match="sizes"):
        ScalingLaw.from_pilots(Ridge(), X, y, [10, 20, 90], holdout=25)
    with pytest.raises(ValueError, match="sizes"):
        ScalingLaw.from_pilots(Ridge(), X, y, [0, 10, 20])
    with pytest.raises(ValueError, match="holdout"):
        ScalingLaw.from_pilots(Ridge(), X, y, [10, 20, 40], holdout=1.5)
    with pytest.raises(ValueError, match="holdout"):
        ScalingLaw.from_pilots(Ridge(), X, y, [10, 20, 40], holdout=100)
    with pytest.raises(ValueError, match="rows"):
        ScalingLaw.from_pilots(Ridge(), X[:50], y, [10, 20, 40])
    with pytest.raises(TypeError, match="fit and predict"):
        ScalingLaw.from_pilots(object(), X, y, [10, 20, 40])
    with pytest.raises(TypeError, match="str"):
        ScalingLaw.from_pilots(Ridge(), "some text", y, [10, 20, 40])
