"""Several predictors (docs/method.md §2 several predictors), by simulation: fresh draws.

Y = 1 + T + x + z + e with a binary covariate T (X = (1, T) for the regressions) and a
0/1 label of the same structure for the logistic regression. Predictions on Y's scale:
``fx = 1.5 + x`` and ``fz = 1.5 + z`` each carry half the signal, ``fx + fz - 1.5`` all of it;
``noise`` predictors carry none. n = 300 labeled and m = 1,000 unlabeled units, 100
repetitions (each a fresh draw); every claim is about the average over repetitions.
"""
import numpy as np
import pytest
from scipy.special import expit

from skftr.rectify import rectified_logistic, rectified_mean, rectified_ols, rectified_quantile

N, M, REPS = 300, 1_000, 100
ESTIMANDS = ("mean", "quantile", "ols", "logistic")


def _draw(rng, size):
    x, z, t = rng.normal(size=size), rng.normal(size=size), rng.integers(0, 2, size).astype(float)
    y = 1 + t + x + z + rng.normal(size=size)
    labels = (rng.random(size) < expit(-0.3 + t + x + z)).astype(float)
    preds = {"fx": 1.5 + x, "fz": 1.5 + z, "noise": 1.5 + rng.normal(size=(size, 2))}
    preds["good"] = preds["fx"] + preds["fz"] - 1.5
    return np.c_[np.ones(size), t], y, labels, preds


def _estimate(estimand, lab, unl, name, **kw):
    """``estimand`` with the predictor(s) ``name`` (a key, or a tuple of keys stacked)."""
    (X, y, labels, preds), (Xu, _, _, preds_u) = lab, unl
    names = (name,) if isinstance(name, str) else name
    f = np.column_stack([preds[k] for k in names])
    fu = np.column_stack([preds_u[k] for k in names])
    if estimand == "mean":
        return rectified_mean(y, f, fu, **kw)
    if estimand == "quantile":
        return rectified_quantile(y, f, fu, 0.7, **kw)
    if estimand == "ols":
        return rectified_ols(X, y, f, Xu, fu, **kw)
    # logistic: the predictions as probabilities
    return rectified_logistic(X, labels, expit(f - 1.5), Xu, expit(fu - 1.5), **kw)


def _last(a):
    """The coordinate a regression's claims are about (T's coefficient); scalars as they are."""
    return np.atleast_1d(a)[-1]


def _width(est, classical=False):
    low, high = est.classical_ci if classical else est.ci
    return _last(high) - _last(low)


def _simulate(estimand, configs, seed):
    """{config: (values, stderrs, widths, classical widths)} over REPS fresh draws."""
    rng = np.random.default_rng(seed)
    out = {c: np.zeros((REPS, 4)) for c in configs}
    for r in range(REPS):
        lab, unl = _draw(rng, N), _draw(rng, M)
        for c in configs:
            est = _estimate(estimand, lab, unl, c)
            out[c][r] = (_last(est.value), _last(est.stderr), _width(est),
                         _width(est, classical=True))
    return out


@pytest.mark.parametrize("estimand", ESTIMANDS)
def test_several_predictors(estimand):
    configs = ("good", ("good", "noise"), "noise", "fx", "fz", ("fx", "fz"))
    sim = _simulate(estimand, configs, seed=ESTIMANDS.index(estimand))
    # A pure-noise predictor beside a good one widens the interval by noise at most.
    ratio = sim[("good", "noise")][:, 2] / sim["good"][:, 2]
    assert ratio.mean() <= 1.01, f"{estimand}: adding noise widens by {ratio.mean():.4f}"
    # Predictors without signal: the interval width stays within 2% of the classical one.
    ratio = sim["noise"][:, 2] / sim["noise"][:, 3]
    assert abs(ratio.mean() - 1) <= 0.02, f"{estimand}: no-signal width ratio {ratio.mean():.4f}"
    # Two predictors are at least as precise as the better one alone, up to noise (1% plus
    # three standard errors of the mean ratio; the quantile's stderr, from the width of a
    # discrete interval, is the noisiest): in the standard error they report and in the
    # spread of their estimates over the draws.
    ratio = sim[("fx", "fz")][:, 1] / np.minimum(sim["fx"][:, 1], sim["fz"][:, 1])
    bound = 1.01 + 3 * ratio.std() / np.sqrt(REPS)
    assert ratio.mean() <= bound, f"{estimand}: two predictors' stderr {ratio.mean():.4f} of best"
    spread = {c: sim[c][:, 0].std() for c in ("fx", "fz", ("fx", "fz"))}
    assert spread[("fx", "fz")] <= 1.1 * min(spread["fx"], spread["fz"]), f"{estimand}: {spread}"


def test_noise_predictors_get_weights_near_zero():
    """The weight of a good predictor barely moves when two noise predictors join it, and
    theirs average 0; the good one's averages its optimum ``Cov(Y, f) / ((1 + n/m) Var(f))``
    = 1 / (1 + n/m) here (fresh draws)."""
    rng = np.random.default_rng(11)
    lams = np.zeros((REPS, 4))
    for r in range(REPS):
        lab, unl = _draw(rng, N), _draw(rng, M)
        lams[r, 0] = _estimate("mean", lab, unl, "good").lam
        lams[r, 1:] = _estimate("mean", lab, unl, ("good", "noise")).lam
    assert np.abs(lams[:, 0] - lams[:, 1]).mean() < 0.02
    noise = lams[:, 2:]
    assert np.all(np.abs(noise.mean(axis=0)) < 4 * noise.std(axis=0) / np.sqrt(REPS))
    assert lams[:, 0].mean() == pytest.approx(1 / (1 + N / M), rel=0.03)
