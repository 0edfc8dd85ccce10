"""skftr.rectify against the reference implementation ppi_py, single predictor and cross-PPI.

ppi_py conventions, and how each test compares like with like:

* means, quantiles, classical OLS: plug-in (ddof = 0) variances, as here -> 1e-9.
* PPI++ weights: ppi_py estimates Var(f) once on the labeled and unlabeled predictions
  pooled (ddof = 1) and clips to [0, 1]; we estimate it on each side, as the interval does,
  and do not clip. Intervals are compared at the same weight (ppi_py's ``lam=``).
* OLS / logistic sandwich: ppi_py's meat uses np.cov (ddof = 1), ours ddof = 0, so our
  standard errors are smaller by a factor in [sqrt(1 - 1/n), 1]: tolerance 1/n. For OLS we
  also evaluate the prediction gradients at the imputed fit (see the test).
* logistic: ppi_py solves with L-BFGS-B, we with Newton trust-region: 1e-5 on coefficients.
* cross-PPI: ppi_py averages the K models with equal weights (ours: n_k/n, the same for
  equal folds) and pools the labeled variance *across* folds, we *within* them (invariant
  to a shift of one fold model). With fold models without shifts both estimate the same
  variance: the intervals agree to about a percent; with shifts ppi_py's widens.
"""
import os
import sys

import numpy as np
import pytest
from scipy.stats import norm

from skftr.rectify import rectified_logistic, rectified_mean, rectified_ols, rectified_quantile
from skftr.rectify._data import read_labeled, read_unlabeled
from skftr.rectify._quantile import _Quantile

N, M, K = 500, 2000, 5


@pytest.fixture(scope="module")
def ppi():
    """ppi_py, imported with numba's JIT off when numba is not loaded yet: compiling its
    helpers costs tens of seconds, running them as Python a fraction of one here."""
    if "numba" not in sys.modules:
        old = os.environ.get("NUMBA_DISABLE_JIT")
        os.environ["NUMBA_DISABLE_JIT"] = "1"
        try:
            return pytest.importorskip("ppi_py")
        finally:
            if old is None:
                del os.environ["NUMBA_DISABLE_JIT"]
            else:
                os.environ["NUMBA_DISABLE_JIT"] = old
    return pytest.importorskip("ppi_py")


@pytest.fixture(scope="module")
def data():
    """Y = 1 + x + z + noise; out-of-fold predictions of K similar fold models (no shifts)."""
    rng = np.random.default_rng(7)
    x, z = rng.normal(size=N), rng.normal(size=N)
    xu, zu = rng.normal(size=M), rng.normal(size=M)
    y = 1 + x + z + rng.normal(size=N)
    p = 1 / (1 + np.exp(-(x + z)))
    by_fold = np.stack([1 + xu + 0.8 * zu + 0.05 * rng.normal(size=M) for _ in range(K)])
    return dict(
        y=y, f=1 + x + 0.8 * z + 0.05 * rng.normal(size=N), fu=by_fold[0], by_fold=by_fold,
        weak_f=1 + 0.3 * z + rng.normal(size=N), weak_fu=1 + 0.3 * zu + rng.normal(size=M),
        X=np.c_[np.ones(N), x], Xu=np.c_[np.ones(M), xu], folds=np.arange(N) % K,
        yb=(rng.random(N) < p).astype(float),
        pf=1 / (1 + np.exp(-(x + 0.8 * z))), pu=1 / (1 + np.exp(-(by_fold[0] - 1))),
        p_by_fold=1 / (1 + np.exp(-(by_fold - 1))),
    )


def se_from_ci(ci, alpha):
    return (np.asarray(ci[1]) - np.asarray(ci[0])) / (2 * norm.ppf(1 - alpha / 2))


# ---------------------------------------------------------------- one predictor


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_mean_agrees_with_ppi_py(ppi, data, alpha):
    from ppi_py.baselines import classical_mean_ci

    y, f, fu = data["y"], data["weak_f"], data["weak_fu"]
    est = rectified_mean(y, f, fu, method="ppi", alpha=alpha)
    assert est.value == pytest.approx(ppi.ppi_mean_pointestimate(y, f, fu, lam=1)[0], rel=1e-9)
    ref_ci = ppi.ppi_mean_ci(y, f, fu, alpha=alpha, lam=1)
    np.testing.assert_allclose(np.ravel(est.ci), np.ravel(ref_ci), rtol=1e-9)
    est = rectified_mean(y, f, fu, alpha=alpha)
    assert 0 < est.lam < 1
    same_lam = ppi.ppi_mean_pointestimate(y, f, fu, lam=est.lam)[0]
    assert est.value == pytest.approx(same_lam, rel=1e-9)
    ref_ci = ppi.ppi_mean_ci(y, f, fu, alpha=alpha, lam=est.lam)
    np.testing.assert_allclose(np.ravel(est.ci), np.ravel(ref_ci), rtol=1e-9)
    ref_value = ppi.ppi_mean_pointestimate(y, f, fu)[0]  # its own weight: the same up to noise
    assert abs(est.value - ref_value) < 0.05 * est.stderr
    np.testing.assert_allclose(est.classical_ci, classical_mean_ci(y, alpha=alpha), rtol=1e-9)
    classical = rectified_mean(y, f, fu, method="classical", alpha=alpha)
    np.testing.assert_allclose(classical.ci, classical_mean_ci(y, alpha=alpha), rtol=1e-9)


@pytest.mark.parametrize("q", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_quantile_agrees_with_ppi_py(ppi, data, q):
    from ppi_py.utils import compute_cdf, compute_cdf_diff

    n, m = 200, 1_000  # ppi_py builds (units x grid) indicator matrices: keep them small
    y, f, fu = data["y"][:n], data["f"][:n], data["fu"][:m]
    # 1. The rectified CDF and its variance on ppi_py's exact grid: identical (1e-9).
    labeled = read_labeled(y, f)
    problem = _Quantile(labeled, read_unlabeled(fu, labeled), q)
    grid = np.sort(np.concatenate([y, f, fu]))
    cdf_u, sd_u = compute_cdf(fu, grid)
    cdf_r, sd_r = compute_cdf_diff(y, f, grid)
    np.testing.assert_allclose(problem._cdf(grid, np.ones(1)), cdf_u + cdf_r, atol=1e-12)
    for i in (0, n // 2, len(grid) // 2, len(grid) - 1):
        lab, unl, _ = problem.covariances(grid[i], classical=False)
        var = lab[0, 0] + lab[1, 1] - 2 * lab[0, 1] + unl[0, 0]
        assert var == pytest.approx(sd_u[i] ** 2 / m + sd_r[i] ** 2 / n, rel=1e-9, abs=1e-15)
    # 2. Estimate and interval. ppi_py takes argmin |F - q| and the hull of the grid points
    # where the pointwise test accepts; we invert the monotone rearrangement of F (Woodruff
    # interval; see rectified_quantile). Both solve F(theta) = q on the same F, and differ
    # where F wiggles around q by its 1/n steps, which widen the hull (the over-coverage we
    # avoid): tolerance 30% of the interval width.
    est = rectified_quantile(y, f, fu, q, method="ppi", alpha=0.1)
    ref_value = ppi.ppi_quantile_pointestimate(y, f, fu, q, exact_grid=True)
    ref_ci = ppi.ppi_quantile_ci(y, f, fu, q, alpha=0.1, exact_grid=True)
    width = ref_ci[1] - ref_ci[0]
    assert abs(est.value - ref_value) <= 0.3 * width
    np.testing.assert_allclose(est.ci, ref_ci, atol=0.3 * width)
    assert est.ci[0] <= est.value <= est.ci[1] and est.lam == 1.0

    classical = rectified_quantile(y, f, fu, q, method="classical", alpha=0.1)
    assert classical.lam == 0.0 and est.classical_ci == classical.ci
    # Classical: the order-statistic interval Y_(k) with ranks n q -/+ z sqrt(n q (1-q)).
    ys = np.sort(y)
    assert classical.value == ys[int(np.ceil(n * q)) - 1]
    below = (ys <= classical.value).mean()
    half = norm.ppf(0.95) * np.sqrt(below * (1 - below) / n)
    assert classical.ci == (ys[np.searchsorted(np.arange(1, n + 1) / n, q - half)],
                            ys[np.searchsorted(np.arange(1, n + 1) / n, q + half)])
    pp = rectified_quantile(y, f, fu, q, alpha=0.1)
    assert pp.lam > 0 and pp.ci[0] <= pp.value <= pp.ci[1]


def test_ols_agrees_with_ppi_py(ppi, data):
    from ppi_py.baselines import classical_ols_ci

    X, y, Xu = data["X"], data["y"], data["Xu"]
    f, fu = data["weak_f"], data["weak_fu"]
    for method in ("ppi", "ppi++"):  # same point estimate (at the same lam)
        est = rectified_ols(X, y, f, Xu, fu, method=method, alpha=0.1)
        ref = ppi.ppi_ols_pointestimate(X, y, f, Xu, fu, lam=est.lam)
        np.testing.assert_allclose(est.value, ref, rtol=1e-9)
    assert 0 < est.lam < 1
    # ppi_py's own lam (other conventions, above and below) differs a little.
    own_lam = ppi.ppi_ols_pointestimate(X, y, f, Xu, fu)
    assert np.all(np.abs(est.value - own_lam) < 0.25 * est.stderr)

    # Variance: we evaluate the prediction gradients at the imputed fit theta_f = OLS(X~, f~),
    # ppi_py at the final estimate theta. Like with like: a predictor whose labeled residual
    # y - f is orthogonal to X makes theta = theta_f, where the two sandwiches coincide (up
    # to ddof: ppi_py's np.cov has ddof 1, ours 0, so ours is smaller by at most 1/n).
    noise = np.random.default_rng(9).normal(size=N)
    f_orth = y - (noise - X @ np.linalg.lstsq(X, noise, rcond=None)[0])
    est = rectified_ols(X, y, f_orth, Xu, fu, method="ppi", alpha=0.1)
    np.testing.assert_allclose(est.value, np.linalg.lstsq(Xu, fu, rcond=None)[0], rtol=1e-9)
    ref_se = se_from_ci(ppi.ppi_ols_ci(X, y, f_orth, Xu, fu, alpha=0.1, lam=1.0), 0.1)
    np.testing.assert_allclose(est.stderr, ref_se, rtol=1 / N)
    assert np.all(est.stderr <= ref_se)

    classical = np.ravel(classical_ols_ci(X, y, alpha=0.1))  # HC0: exact
    np.testing.assert_allclose(np.ravel(est.classical_ci), classical, rtol=1e-9)
    est = rectified_ols(X, y, f, Xu, fu, method="classical", alpha=0.1)
    np.testing.assert_allclose(np.ravel(est.ci), classical, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # sklearn, inside ppi_py
def test_logistic_agrees_with_ppi_py(ppi, data):
    from ppi_py.baselines import classical_logistic_ci

    X, y, Xu, f, fu = data["X"], data["yb"], data["Xu"], data["pf"], data["pu"]
    noisy_f = np.clip(f + np.random.default_rng(5).normal(0, 0.3, N), 0, 1)
    for yhat in (f, noisy_f):
        for method in ("ppi", "ppi++"):
            est = rectified_logistic(X, y, yhat, Xu, fu, method=method, alpha=0.1)
            ref = ppi.ppi_logistic_pointestimate(X, y, yhat, Xu, fu, lam=est.lam)
            np.testing.assert_allclose(est.value, ref, rtol=1e-5, atol=1e-6)
            ref_ci = ppi.ppi_logistic_ci(X, y, yhat, Xu, fu, alpha=0.1, lam=est.lam)
            ref_se = se_from_ci(ref_ci, 0.1)
            np.testing.assert_allclose(est.stderr, ref_se, rtol=1 / N + 1e-5)
    assert 0 < est.lam < 1
    # ppi_py's classical logistic interval uses the model-based (not sandwich) variance,
    # so only the point estimate (the labeled MLE) is compared.
    ref_mid = np.mean(classical_logistic_ci(X, y, alpha=0.1), axis=0)
    np.testing.assert_allclose(est.classical_ci[0] / 2 + est.classical_ci[1] / 2, ref_mid,
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- cross-PPI


def test_crossfit_mean_agrees_with_ppi_py(ppi, data):
    y, f, folds, by_fold = data["y"], data["f"], data["folds"], data["by_fold"]
    est = rectified_mean(y, f, by_fold, folds=folds, method="ppi", alpha=0.1)
    assert est.method == "cross-ppi" and est.lam == 1.0 and est.n_folds == K
    ref = ppi.crossppi_mean_pointestimate(y, f, by_fold.T)[0]
    assert est.value == pytest.approx(ref, rel=1e-12)
    ref_low, ref_high = np.ravel(ppi.crossppi_mean_ci(y, f, by_fold.T, alpha=0.1))
    assert np.mean(est.ci) == pytest.approx((ref_low + ref_high) / 2, rel=1e-12)
    assert est.ci[1] - est.ci[0] == pytest.approx(ref_high - ref_low, rel=0.01)
    # A shift of each fold model: ours unchanged, ppi_py's pooled variance adds their spread.
    shifts = np.array([-3.0, 1.0, 0.0, 2.0, 5.0])
    shifted = rectified_mean(y, f + shifts[folds], by_fold + shifts[:, None], folds=folds,
                             method="ppi", alpha=0.1)
    assert shifted.stderr == pytest.approx(est.stderr, rel=1e-9)
    low, high = np.ravel(ppi.crossppi_mean_ci(y, f + shifts[folds], by_fold.T + shifts, alpha=0.1))
    assert high - low > 1.2 * (est.ci[1] - est.ci[0])


@pytest.mark.parametrize("q", [0.1, 0.5, 0.9])
def test_crossfit_quantile_agrees_with_ppi_py(ppi, data, q):
    """The cross rectified CDF (the K models' CDFs averaged) is ppi_py's to 1e-12; the
    estimates solve F = q on it by different rules (see test_quantile_agrees_with_ppi_py).
    ppi_py's interval takes the variance of the indicator of the *averaged prediction*
    (not of the averaged indicators its CDF uses), so intervals are not compared."""
    from ppi_py.cross_ppi import _cross_rectified_cdf

    n, m = 250, 600  # ppi_py builds (units x grid) indicator matrices: keep them small
    y, f, folds, by_fold = data["y"][:n], data["f"][:n], data["folds"][:n], data["by_fold"][:, :m]
    labeled = read_labeled(y, f, folds)
    problem = _Quantile(labeled, read_unlabeled(by_fold, labeled), q)
    grid = np.sort(np.concatenate([y, f, by_fold.ravel()]))
    cdf = problem._cdf(grid, np.ones(1))
    np.testing.assert_allclose(cdf, _cross_rectified_cdf(y, f, by_fold.T, grid), atol=1e-12)
    est = rectified_quantile(y, f, by_fold, q, folds=folds, method="ppi", alpha=0.1)
    ref = ppi.crossppi_quantile_pointestimate(y, f, by_fold.T, q, exact_grid=True)
    at = np.searchsorted(grid, [est.value, ref])
    assert np.all(np.abs(cdf[at] - q) <= 2 / n)  # both solve F = q up to two label steps
    assert abs(est.value - ref) <= 0.1 * (est.ci[1] - est.ci[0])


def test_crossfit_ols_agrees_with_ppi_py(ppi, data):
    X, y, Xu, f, folds, by_fold = (data[k] for k in ("X", "y", "Xu", "f", "folds", "by_fold"))
    est = rectified_ols(X, y, f, Xu, by_fold, folds=folds, method="ppi", alpha=0.1)
    np.testing.assert_allclose(est.value, ppi.crossppi_ols_pointestimate(X, y, f, Xu, by_fold.T),
                               rtol=1e-12)
    # Variance like with like: with y - f orthogonal to X, theta = theta_f and the gradients
    # coincide (see test_ols_agrees_with_ppi_py); ddof (1/n) and the pooling within rather
    # than across folds remain: 1%.
    noise = np.random.default_rng(9).normal(size=N)
    f_orth = y - (noise - X @ np.linalg.lstsq(X, noise, rcond=None)[0])
    est = rectified_ols(X, y, f_orth, Xu, by_fold, folds=folds, method="ppi", alpha=0.1)
    ref_se = se_from_ci(ppi.crossppi_ols_ci(X, y, f_orth, Xu, by_fold.T, alpha=0.1), 0.1)
    np.testing.assert_allclose(est.stderr, ref_se, rtol=0.01)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # sklearn, inside ppi_py
def test_crossfit_logistic_agrees_with_ppi_py(ppi, data):
    X, y, Xu, f, folds, by_fold = (data[k] for k in ("X", "yb", "Xu", "pf", "folds", "p_by_fold"))
    est = rectified_logistic(X, y, f, Xu, by_fold, folds=folds, method="ppi", alpha=0.1)
    options = {"ftol": 1e-15}  # ppi_py needs the dict
    ref = ppi.crossppi_logistic_pointestimate(X, y, f, Xu, by_fold.T, optimizer_options=options)
    np.testing.assert_allclose(est.value, ref, rtol=1e-6, atol=1e-8)
    ref_ci = ppi.crossppi_logistic_ci(X, y, f, Xu, by_fold.T, alpha=0.1, optimizer_options=options)
    np.testing.assert_allclose(est.stderr, se_from_ci(ref_ci, 0.1), rtol=0.01)
