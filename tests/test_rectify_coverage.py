"""Coverage of the 95% intervals of skftr.rectify by simulation (n = 200, m = 2,000).

Four data-generating processes (good, useless and biased predictor, heavy-tailed
Y), 2,000 repetitions each, fixed seeds. The binomial standard error of a
coverage estimate at 0.95 is 0.005, so [0.935, 0.965] is a +/- 3 s.e. band.
Means and cross-PPI with randomly shifted fold models run by default (about 15 s); the
other M-estimation loops (quantile, OLS, logistic, cross-PPI with fitted fold models)
are marked slow (about 8 minutes).
Coverage is checked per coordinate for regression coefficients.
"""
import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm, t

from skftr.rectify import (
    crossfit_mean, rectified_logistic, rectified_mean, rectified_ols, rectified_quantile,
)

N, M, REPS = 200, 2_000, 2_000
LOW, HIGH = 0.935, 0.965
METHODS = ("classical", "ppi", "ppi++")
DGPS = ("good", "useless", "biased", "heavy")


def draw(dgp, rng, size):
    """(x, y, f) for ``size`` units: Y = 1 + 2x + e (heavy: 1 + x + 2 t_3), predictor f(x).

    E[Y] = 1 in every process; Y ~ N(1, 2^2 + 0.5^2) except "heavy".
    """
    x = rng.normal(size=size)
    if dgp == "heavy":
        y = 1 + x + 2 * rng.standard_t(3, size=size)   # t_3 noise: heavy tails, finite variance
        f = 1 + x
    else:
        y = 1 + 2 * x + rng.normal(0, 0.5, size=size)
        f = {"good": 1 + 2 * x + rng.normal(0, 0.2, size=size),
             "useless": rng.normal(size=size),
             "biased": 2 + 1.5 * x}[dgp]
    return x, y, f


def covered(est, truth):
    """Per-coordinate coverage indicator (a scalar for scalar targets)."""
    return (est.ci[0] <= truth) & (truth <= est.ci[1])


def assert_coverage(hits, label):
    """Each coordinate's 95% interval covers in [LOW, HIGH] of the repetitions."""
    cover = np.atleast_1d(np.mean(hits, axis=0))
    assert np.all((LOW <= cover) & (cover <= HIGH)), f"{label}: coverage {cover} outside [{LOW}, {HIGH}]"


@pytest.mark.parametrize("dgp", DGPS)
def test_mean_coverage(dgp):
    rng = np.random.default_rng(sum(map(ord, dgp)))
    hits = {m: np.zeros(REPS, bool) for m in METHODS}
    width = {m: np.zeros(REPS) for m in METHODS}
    for r in range(REPS):
        _, y, f = draw(dgp, rng, N)
        _, _, fu = draw(dgp, rng, M)
        for method in METHODS:
            est = rectified_mean(y, f, fu, method=method)
            hits[method][r] = covered(est, 1.0)
            width[method][r] = est.ci[1] - est.ci[0]
    for method in METHODS:
        assert_coverage(hits[method], f"{dgp}/{method}")
    if dgp == "useless":
        # Power tuning never costs more than 2% width against the labels alone.
        assert np.max(width["ppi++"] / width["classical"]) <= 1.02
    if dgp == "good":
        assert np.mean(width["ppi"]) < 0.5 * np.mean(width["classical"])


@pytest.mark.slow
@pytest.mark.parametrize("dgp", DGPS)
def test_quantile_coverage(dgp):
    """q = 0.7. Heavy: Y ~ t_3 (a known quantile) with f = Y + N(0, 1) noise."""
    q = 0.7
    rng = np.random.default_rng(100 + sum(map(ord, dgp)))
    if dgp == "heavy":
        def draw_q(size):
            y = rng.standard_t(3, size)
            return y, y + rng.normal(0, 1, size)
        truth = t.ppf(q, 3)
    else:
        def draw_q(size):
            return draw(dgp, rng, size)[1:]
        truth = 1 + np.sqrt(4 + 0.25) * norm.ppf(q)
    hits = {m: np.zeros(REPS, bool) for m in METHODS}
    for r in range(REPS):
        y, f = draw_q(N)
        _, fu = draw_q(M)
        for method in METHODS:
            hits[method][r] = covered(rectified_quantile(y, f, fu, q, method=method), truth)
    for method in METHODS:
        assert_coverage(hits[method], f"quantile {dgp}/{method}")


@pytest.mark.slow
@pytest.mark.parametrize("dgp", DGPS)
def test_ols_coverage(dgp):
    """Y = 1 + 2T + 1.5z + e, binary treatment T ~ Bernoulli(1/2), z independent of T: the
    OLS target of Y on (1, T) is (1, 2), a difference in group means. The predictors may
    use z, which X does not hold.

    (With a Gaussian covariate the sandwich variance itself is noisy at n = 200, x^2 e^2
    having kurtosis 9, and every method, classical included, covers about 0.943.)
    """
    rng = np.random.default_rng(200 + sum(map(ord, dgp)))

    def sample(size):
        x, z = rng.integers(0, 2, size).astype(float), rng.normal(size=size)
        e = 2 * rng.standard_t(3, size) if dgp == "heavy" else rng.normal(0, 0.5, size)
        y = 1 + 2 * x + 1.5 * z + e
        f = {"good": 1 + 2 * x + 1.5 * z, "heavy": 1 + 2 * x + 1.5 * z,
             "useless": rng.normal(size=size), "biased": 2 + 1.5 * x + z}[dgp]
        return np.c_[np.ones(size), x], y, f

    hits = {m: np.zeros((REPS, 2), bool) for m in METHODS}
    for r in range(REPS):
        X, y, f = sample(N)
        Xu, _, fu = sample(M)
        for method in METHODS:
            hits[method][r] = covered(rectified_ols(X, y, f, Xu, fu, method=method), [1.0, 2.0])
    for method in METHODS:
        assert_coverage(hits[method], f"ols {dgp}/{method}")


def _logistic_sampler(dgp, rng):
    """P(Y = 1 | x, z) = expit(-0.5 + x + 1.5 z); X = (1, x) omits z, which the predictors
    may use (as with OLS). Good: the true probability; useless: uniform noise; biased: a
    wrong model of x alone; heavy: t_3-distributed x, good predictor."""
    def sample(size):
        x = rng.standard_t(3, size) if dgp == "heavy" else rng.normal(size=size)
        z = rng.normal(size=size)
        p = expit(-0.5 + x + 1.5 * z)
        y = (rng.random(size) < p).astype(float)
        f = {"good": p, "heavy": p, "useless": rng.random(size),
             "biased": expit(0.5 + 2 * x)}[dgp]
        return np.c_[np.ones(size), x], y, f
    return sample


def _logistic_target(dgp):
    """Population logistic coefficients of Y on (1, x): a fit on 2 million draws
    (Monte Carlo error ~0.003, a few percent of an interval's half-width)."""
    X, y, _ = _logistic_sampler(dgp, np.random.default_rng(12345))(2_000_000)
    return rectified_logistic(X, y, y, X[:2], y[:2], method="classical").value


@pytest.mark.slow
@pytest.mark.parametrize("dgp", DGPS)
def test_logistic_coverage(dgp):
    beta = _logistic_target(dgp)
    sample = _logistic_sampler(dgp, np.random.default_rng(300 + sum(map(ord, dgp))))
    hits = {m: np.zeros((REPS, 2), bool) for m in METHODS}
    for r in range(REPS):
        X, y, f = sample(N)
        Xu, _, fu = sample(M)
        for method in METHODS:
            hits[method][r] = covered(rectified_logistic(X, y, f, Xu, fu, method=method), beta)
    for method in METHODS:
        assert_coverage(hits[method], f"logistic {dgp}/{method}")


@pytest.mark.parametrize("dgp", [pytest.param(d, marks=pytest.mark.slow) for d in DGPS]
                         + ["shifted"])
def test_crossfit_coverage(dgp):
    """Cross-PPI with K = 5 least-squares fold models f_k(x) = a_k + b_k x (fitted here).

    For the "useless" process the models see a pure-noise feature instead of x. For
    "shifted" (run by default) each fold model is moved by its own random constant, sd 1
    (twice the noise sd), as models trained on the error variance are: the interval must
    keep its level, neither too short nor, by counting the shifts as error, too long.
    """
    rng = np.random.default_rng(400 + sum(map(ord, dgp)))
    k = 5
    folds = np.arange(N) % k
    hits = {m: np.zeros(REPS, bool) for m in METHODS}
    for r in range(REPS):
        x, y, _ = draw("heavy" if dgp == "heavy" else "good", rng, N)
        xu, _, _ = draw("heavy" if dgp == "heavy" else "good", rng, M)
        if dgp == "useless":
            x, xu = rng.normal(size=N), rng.normal(size=M)
        coefs = [np.polyfit(x[folds != j], y[folds != j], 1) for j in range(k)]
        if dgp == "biased":
            coefs = [c + [0.5, 1.0] for c in coefs]
        if dgp == "shifted":
            coefs = [c + [0.0, rng.normal()] for c in coefs]
        yhat = np.empty(N)
        for j, c in enumerate(coefs):
            yhat[folds == j] = np.polyval(c, x[folds == j])
        by_fold = np.stack([np.polyval(c, xu) for c in coefs])
        for method in METHODS:
            hits[method][r] = covered(crossfit_mean(y, yhat, folds, by_fold, method=method), 1.0)
    for method in METHODS:
        assert_coverage(hits[method], f"crossfit {dgp}/{method}")
