"""skftr.rectify: result object, streaming, bad input, agreement with ppi_py."""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

from skftr.rectify import (
    RectifiedEstimate, crossfit_mean, rectified_logistic, rectified_mean, rectified_ols,
    rectified_quantile,
)

N, M = 500, 5000


@pytest.fixture(scope="module")
def data():
    """Fixed random data: Y = 1 + x + z + noise, predictor f = 1 + x + 0.8 z."""
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=N), rng.normal(size=N)
    xu, zu = rng.normal(size=M), rng.normal(size=M)
    y = 1 + x + z + rng.normal(size=N)
    p = 1 / (1 + np.exp(-(x + z)))
    return dict(
        y=y, f=1 + x + 0.8 * z, fu=1 + xu + 0.8 * zu,
        weak_f=1 + 0.3 * z + rng.normal(size=N), weak_fu=1 + 0.3 * zu + rng.normal(size=M),
        X=np.c_[np.ones(N), x], Xu=np.c_[np.ones(M), xu],
        yb=(rng.random(N) < p).astype(float),
        pf=1 / (1 + np.exp(-(x + 0.8 * z))), pu=1 / (1 + np.exp(-(xu + 0.8 * zu))),
    )


def se_from_ci(ci, alpha):
    return (np.asarray(ci[1]) - np.asarray(ci[0])) / (2 * norm.ppf(1 - alpha / 2))


# ---------------------------------------------------------------- import / result


def test_import_does_not_pull_torch():
    code = "import skftr.rectify, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_result_fields_repr_dict_pvalue(data):
    est = rectified_mean(data["y"], data["f"], data["fu"], method="ppi++")
    assert isinstance(est, RectifiedEstimate)
    assert est.method == "ppi++" and est.n_labeled == N and est.n_unlabeled == M
    assert 0 <= est.lam <= 1 and est.alpha == 0.05
    assert est.ci[0] < est.value < est.ci[1]
    text = repr(est)
    assert "\n" not in text and text.startswith("RectifiedEstimate(ppi++:")
    assert "95% CI" in text and f"n={N}" in text and f"m={M}" in text and "λ=" in text
    d = est.to_dict()
    assert json.loads(json.dumps(d)) == d and "allocation" not in d
    assert d["value"] == est.value and d["ci"] == list(est.ci)
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.value = 0.0
    assert est.pvalue(est.value) == pytest.approx(1.0)
    edge = est.value + norm.ppf(0.975) * est.stderr
    assert est.pvalue(edge) == pytest.approx(0.05)
    assert est.pvalue(est.ci[0]) == pytest.approx(0.05)


def test_result_allocation_and_vector_target(data):
    class Alloc:
        def to_dict(self):
            return {"n_finetune": 10, "n_rectify": 90}

    est = rectified_mean(data["y"], data["f"], data["fu"])
    with_alloc = dataclasses.replace(est, allocation=Alloc())
    assert with_alloc.to_dict()["allocation"] == {"n_finetune": 10, "n_rectify": 90}
    assert with_alloc.value == est.value and "allocation" in repr(with_alloc)

    vec = rectified_ols(data["X"], data["y"], data["f"], data["Xu"], data["fu"])
    assert vec.value.shape == vec.stderr.shape == vec.ci[0].shape == (2,)
    assert not vec.value.flags.writeable
    pv = vec.pvalue(0.0)
    assert isinstance(pv, np.ndarray) and pv.shape == (2,)
    np.testing.assert_allclose(vec.pvalue(vec.value), 1.0)
    assert "\n" not in repr(vec)
    json.dumps(vec.to_dict())


# ---------------------------------------------------------------- mean: formulas, streaming


def test_mean_formulas(data):
    y, f, fu = data["y"], data["f"], data["fu"]
    classical = rectified_mean(y, f, fu, method="classical")
    assert classical.value == pytest.approx(y.mean(), rel=1e-12)
    assert classical.stderr == pytest.approx(np.sqrt(y.var() / N), rel=1e-12)
    assert classical.lam == 0.0
    ppi = rectified_mean(y, f, fu, method="ppi")
    assert ppi.value == pytest.approx(fu.mean() + (y - f).mean(), rel=1e-12)
    assert ppi.stderr == pytest.approx(np.sqrt((y - f).var() / N + fu.var() / M), rel=1e-12)
    assert ppi.stderr < classical.stderr and ppi.lam == 1.0
    # PPI++ with a weak predictor: lam strictly inside (0, 1), the formula of METHOD.md §2.
    wf, wfu = data["weak_f"], data["weak_fu"]
    pp = rectified_mean(y, wf, wfu, method="ppi++")
    lam = np.cov(y, wf, ddof=0)[0, 1] / ((1 + N / M) * np.concatenate([wf, wfu]).var())
    assert 0 < lam < 1 and pp.lam == pytest.approx(lam, rel=1e-12)
    assert pp.value == pytest.approx(y.mean() + lam * (wfu.mean() - wf.mean()), rel=1e-12)
    assert pp.stderr < classical.stderr


def test_streamed_chunks_equal_in_memory():
    rng = np.random.default_rng(3)
    n, m = 300, 200_003
    y = rng.normal(size=n)
    f = y + rng.normal(size=n)
    # A large common offset: a naive sum-of-squares pass would lose all digits.
    fu = 1e6 + rng.normal(size=m)
    f, y = f + 1e6, y + 1e6
    direct = fu.var()
    for method in ("ppi", "ppi++"):
        ref = rectified_mean(y, f, fu, method=method)
        lam = ref.lam
        exp_se = np.sqrt((y - lam * f).var() / n + lam**2 * direct / m)
        assert ref.stderr == pytest.approx(exp_se, rel=1e-9)
        for size in (1, 999, 65_536, m):  # uneven chunk sizes (size 1: the first 2,000 values)
            starts = [*range(0, 2_000), *range(2_000, m, 999)] if size == 1 else range(0, m, size)
            ends = [*starts[1:], m]
            chunks = (fu[a:b] for a, b in zip(starts, ends))
            est = rectified_mean(y, f, chunks, method=method)
            assert est.n_unlabeled == m
            for a, b in [(est.value, ref.value), (est.stderr, ref.stderr), (est.lam, ref.lam)]:
                assert a == pytest.approx(b, rel=1e-9)
    as_list = [fu[:10], fu[10:10], fu[10:].astype(np.float32)]  # with an empty chunk
    est = rectified_mean(y, f, as_list)
    assert est.value == pytest.approx(rectified_mean(y, f, np.concatenate(as_list)).value, rel=1e-9)


# ---------------------------------------------------------------- bad input

GOOD = np.linspace(0.0, 1.0, 20) ** 2  # in [0, 1]: valid for every function, logistic included


def _calls(y=GOOD, yhat=GOOD[::-1], yhat_unlabeled=np.linspace(0.0, 1.0, 30), **kw):
    """Every public function, called with the given 1-d arrays (and kwargs)."""
    x = np.c_[np.ones(len(y)), np.arange(len(y)) % 3]
    xu = np.c_[np.ones(len(yhat_unlabeled)), np.arange(len(yhat_unlabeled)) % 3]
    folds = np.arange(len(y)) % 2
    q = kw.pop("q", 0.5)
    return [
        lambda: rectified_mean(y, yhat, yhat_unlabeled, **kw),
        lambda: rectified_quantile(y, yhat, yhat_unlabeled, q, **kw),
        lambda: rectified_ols(x, y, yhat, xu, yhat_unlabeled, **kw),
        lambda: rectified_logistic(x, y, yhat, xu, yhat_unlabeled, **kw),
        lambda: crossfit_mean(y, yhat, folds, np.stack([yhat_unlabeled] * 2), **kw),
    ]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("arg", ["y", "yhat", "yhat_unlabeled"])
def test_nan_inf_rejected(arg, bad):
    arr = {"y": GOOD.copy(), "yhat": GOOD[::-1].copy(), "yhat_unlabeled": np.linspace(0, 1, 30)}
    arr[arg][3] = bad
    for call in _calls(**arr):
        with pytest.raises(ValueError, match=arg):
            call()


def test_nan_in_covariates_and_chunks_rejected():
    x = np.c_[np.ones(20), GOOD]
    xu = np.c_[np.ones(30), np.linspace(0, 1, 30)]
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="X "):
        rectified_ols(x, GOOD, GOOD, xu, xu[:, 1])
    xu[2, 1] = np.inf
    with pytest.raises(ValueError, match="X_unlabeled"):
        rectified_logistic(np.c_[np.ones(20), GOOD], GOOD, GOOD, xu, xu[:, 0])
    chunks = iter([np.ones(5), np.array([1.0, np.nan])])
    with pytest.raises(ValueError, match="yhat_unlabeled"):
        rectified_mean(GOOD, GOOD, chunks)
    with pytest.raises(ValueError, match="yhat_unlabeled_by_fold"):
        crossfit_mean(GOOD, GOOD, np.arange(20) % 2, np.array([[1.0, 2.0, np.nan]] * 2))


def test_length_mismatch_rejected():
    for call in _calls(yhat=GOOD[:-1]):
        with pytest.raises(ValueError, match="yhat has 19 rows but (y|X) has 20"):
            call()
    x, xu = np.ones((20, 1)), np.ones((29, 1))
    with pytest.raises(ValueError, match="but X has 19"):
        rectified_ols(x[:-1], GOOD, GOOD, np.ones((30, 1)), np.linspace(0, 1, 30))
    with pytest.raises(ValueError, match="yhat_unlabeled has 30 rows but X_unlabeled has 29"):
        rectified_logistic(x, GOOD, GOOD, xu, np.linspace(0, 1, 30))
    with pytest.raises(ValueError, match="X_unlabeled has 2 columns"):
        rectified_ols(x, GOOD, GOOD, np.ones((30, 2)), np.linspace(0, 1, 30))
    with pytest.raises(ValueError, match="folds has 19 rows"):
        crossfit_mean(GOOD, GOOD, np.arange(19) % 2, np.ones((2, 30)))


def test_too_few_units_rejected():
    for call in _calls(y=GOOD[:1], yhat=GOOD[:1]):
        with pytest.raises(ValueError, match=r"\by\b|X"):
            call()
    for call in _calls(yhat_unlabeled=np.array([0.5])):
        with pytest.raises(ValueError, match="yhat_unlabeled|X_unlabeled"):
            call()
    with pytest.raises(ValueError, match="yhat_unlabeled"):
        rectified_mean(GOOD, GOOD, (c for c in [np.array([1.0]), np.array([])]))


@pytest.mark.parametrize("value", [0, 1, -0.1, 1.5, np.nan])
def test_alpha_and_q_outside_unit_interval(value):
    for call in _calls(alpha=value):
        with pytest.raises(ValueError, match="alpha"):
            call()
    with pytest.raises(ValueError, match=r"\bq\b"):
        rectified_quantile(GOOD, GOOD, GOOD, value)
    with pytest.raises(TypeError, match="alpha"):
        rectified_mean(GOOD, GOOD, GOOD, alpha="0.05")


def test_non_numeric_rejected():
    words = np.array(["a"] * 20)
    for call in _calls(y=words):
        with pytest.raises(TypeError, match=r"\by\b|X"):
            call()
    with pytest.raises(TypeError, match="yhat_unlabeled"):
        rectified_mean(GOOD, GOOD, "abc")
    with pytest.raises(TypeError, match="yhat_unlabeled"):
        rectified_mean(GOOD, GOOD, [np.ones(3), np.array(["x", "y"])])
    with pytest.raises(TypeError, match="yhat"):
        rectified_mean(GOOD, np.array([1.0, "a"] * 10, dtype=object), GOOD)
    with pytest.raises(ValueError, match="yhat"):  # None in an object array is a missing value
        rectified_mean(GOOD, [None] * 20, GOOD)
    with pytest.raises(TypeError, match="folds"):
        crossfit_mean(GOOD, GOOD, np.zeros(20) + 0.5, np.ones((2, 30)))


def test_unknown_method_rejected():
    for call in _calls(method="PPI"):
        with pytest.raises(ValueError, match="method"):
            call()


def test_logistic_separable_classes_warn():
    x = np.linspace(-1, 1, 20)
    xu = np.linspace(-1, 1, 30)
    with pytest.warns(RuntimeWarning, match="separable"):
        rectified_logistic(np.c_[np.ones(20), x], x > 0, x > 0, np.c_[np.ones(30), xu], xu > 0,
                           method="classical")


def test_domain_checks():
    collinear = np.c_[np.ones(20), GOOD, 2 * GOOD]
    collinear_u = np.c_[np.ones(30), np.linspace(0, 1, 30), 2 * np.linspace(0, 1, 30)]
    for fit in (rectified_ols, rectified_logistic):
        with pytest.raises(ValueError, match="X .*rank deficient"):
            fit(collinear, GOOD, GOOD, collinear_u, np.linspace(0, 1, 30))
    with pytest.raises(ValueError, match="yhat"):
        rectified_logistic(np.ones((20, 1)), np.ones(20) * 0.5, np.ones(20) * 2, np.ones((30, 1)),
                           np.ones(30) * 0.5)
    with pytest.raises(ValueError, match="folds"):
        crossfit_mean(GOOD, GOOD, np.arange(20) % 3, np.ones((2, 30)))
    with pytest.raises(ValueError, match="folds"):
        crossfit_mean(GOOD, GOOD, np.zeros(20, dtype=int), np.ones((2, 30)))
    with pytest.raises(ValueError, match="folds: .* more labelled units than folds; got 3 units"):
        crossfit_mean(GOOD[:3], GOOD[:3], np.arange(3), np.ones((3, 30)))


# ---------------------------------------------------------------- agreement with ppi_py
# ppi_py conventions, and how each test compares like with like:
# * means, quantiles, classical OLS: plug-in (ddof = 0) variances, as here -> 1e-9.
# * PPI++ lam: ppi_py pools Var(f) over the n + m predictions with ddof = 1, we with
#   ddof = 0, so our lam is ppi_py's times (n + m) / (n + m - 1) exactly. Intervals are then
#   compared at the same lam by passing ours to ppi_py (its ``lam=`` argument).
# * OLS / logistic sandwich: ppi_py's meat uses np.cov (ddof = 1), ours ddof = 0, so our
#   standard errors are smaller by a factor in [sqrt(1 - 1/n), 1]: tolerance 1/n. For OLS we
#   also evaluate the prediction gradients elsewhere (see the test).
# * logistic: ppi_py solves with L-BFGS-B, we with Newton trust-region: 1e-5 on coefficients.


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


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_mean_agrees_with_ppi_py(ppi, data, alpha):
    from ppi_py.baselines import classical_mean_ci

    y, f, fu = data["y"], data["weak_f"], data["weak_fu"]
    est = rectified_mean(y, f, fu, method="ppi", alpha=alpha)
    ref_ci = ppi.ppi_mean_ci(y, f, fu, alpha=alpha, lam=1)
    assert est.value == pytest.approx(ppi.ppi_mean_pointestimate(y, f, fu, lam=1)[0], rel=1e-9)
    np.testing.assert_allclose(np.ravel(est.ci), np.ravel(ref_ci), rtol=1e-9)

    est = rectified_mean(y, f, fu, method="ppi++", alpha=alpha)
    ref_value = ppi.ppi_mean_pointestimate(y, f, fu)[0]  # its own lam
    ref_lam = (ref_value - y.mean()) / (fu.mean() - f.mean())
    assert 0 < est.lam < 1
    assert est.lam == pytest.approx(ref_lam * (N + M) / (N + M - 1), rel=1e-9)
    same_lam_ci = ppi.ppi_mean_ci(y, f, fu, alpha=alpha, lam=est.lam)
    same_lam_value = ppi.ppi_mean_pointestimate(y, f, fu, lam=est.lam)[0]
    assert est.value == pytest.approx(same_lam_value, rel=1e-9)
    np.testing.assert_allclose(np.ravel(est.ci), np.ravel(same_lam_ci), rtol=1e-9)
    assert est.value == pytest.approx(ref_value, rel=1e-6)  # lam differs by 1/(n+m)

    est = rectified_mean(y, f, fu, method="classical", alpha=alpha)
    np.testing.assert_allclose(est.ci, classical_mean_ci(y, alpha=alpha), rtol=1e-9)


def test_crossfit_mean_agrees_with_ppi_py(ppi, data):
    y, f, fu = data["y"], data["f"], data["fu"]
    k = 5
    folds = np.arange(N) % k  # equal fold sizes: fold-size weights = plain average
    by_fold = np.stack([fu + 0.05 * j for j in range(k)])
    est = crossfit_mean(y, f, folds, by_fold, alpha=0.1)
    assert est.method == "cross-ppi" and est.lam == 1.0
    assert est.value == pytest.approx(ppi.crossppi_mean_pointestimate(y, f, by_fold.T)[0], rel=1e-9)
    # ppi_py pools the residual variance across folds, we within them (shift-invariant, see
    # the next test): with no fold shifts in the labelled predictions both estimate the same
    ref_low, ref_high = np.ravel(ppi.crossppi_mean_ci(y, f, by_fold.T, alpha=0.1))
    assert np.mean(est.ci) == pytest.approx((ref_low + ref_high) / 2, rel=1e-9)
    assert est.ci[1] - est.ci[0] == pytest.approx(ref_high - ref_low, rel=0.01)
    pp = crossfit_mean(y, data["weak_f"], folds, np.stack([data["weak_fu"]] * k), method="ppi++")
    assert pp.method == "cross-ppi++" and 0 < pp.lam < 1
    classical = crossfit_mean(y, f, folds, by_fold, method="classical")
    assert classical.value == pytest.approx(y.mean()) and pp.stderr < classical.stderr


@pytest.mark.parametrize("method", ["ppi", "ppi++"])
def test_crossfit_mean_ignores_a_shift_of_each_fold_model(ppi, data, method):
    """Models trained on the error variance are identified up to a constant (METHOD.md §3):
    adding c_k to fold model k (its out-of-fold and its unlabelled predictions) changes
    neither the estimate nor its interval; ppi_py's pooled variance widens by the spread."""
    y, f, fu = data["y"], data["weak_f"], data["weak_fu"]
    k = 5
    folds = np.arange(N) % k
    by_fold = np.stack([fu] * k)
    shifts = np.array([-3.0, 1.0, 0.0, 2.0, 5.0])
    plain = crossfit_mean(y, f, folds, by_fold, method=method)
    shifted = crossfit_mean(y, f + shifts[folds], folds, by_fold + shifts[:, None], method=method)
    assert shifted.value == pytest.approx(plain.value, rel=1e-12)
    assert shifted.stderr == pytest.approx(plain.stderr, rel=1e-9)
    assert shifted.lam == pytest.approx(plain.lam, rel=1e-9)
    if method == "ppi":
        low, high = np.ravel(ppi.crossppi_mean_ci(y, f + shifts[folds], by_fold.T + shifts))
        assert high - low > 1.2 * (plain.ci[1] - plain.ci[0])


def test_crossfit_mean_within_fold_variance_by_hand():
    """Var = sum_k sum_{j in k} (r_j - mean_k r)^2 / (n - K) / n + Var(fbar) / m, with
    fbar the fold-size-weighted average of the K models (unequal folds here)."""
    rng = np.random.default_rng(3)
    folds = np.repeat([0, 1, 2], [10, 20, 30])
    y, f = rng.normal(size=60), rng.normal(size=60)
    by_fold = rng.normal(size=(3, 40))
    est = crossfit_mean(y, f, folds, by_fold)
    r = y - f
    within = sum(np.sum((r[folds == j] - r[folds == j].mean()) ** 2) for j in range(3)) / 57
    fbar = np.array([10, 20, 30]) @ by_fold / 60
    assert est.value == pytest.approx(y.mean() + fbar.mean() - f.mean(), rel=1e-12)
    assert est.stderr == pytest.approx(np.sqrt(within / 60 + fbar.var() / 40), rel=1e-12)
    classical = crossfit_mean(y, f, folds, by_fold, method="classical")
    assert classical.stderr == pytest.approx(np.sqrt(y.var() / 60), rel=1e-12)


@pytest.mark.parametrize("q", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_quantile_agrees_with_ppi_py(ppi, data, q):
    from ppi_py.utils import compute_cdf, compute_cdf_diff
    from skftr.rectify._quantile import _RectifiedCDF

    n, m = 200, 1_000  # ppi_py builds (units x grid) indicator matrices: keep them small
    y, f, fu = data["y"][:n], data["f"][:n], data["fu"][:m]
    # 1. The rectified CDF and its variance on ppi_py's exact grid: identical (1e-9).
    grid = np.sort(np.concatenate([y, f, fu]))
    cdf, var = _RectifiedCDF(y, f, fu).evaluate(grid, 1.0)
    cdf_u, sd_u = compute_cdf(fu, grid)
    cdf_r, sd_r = compute_cdf_diff(y, f, grid)
    np.testing.assert_allclose(cdf, cdf_u + cdf_r, atol=1e-12)
    np.testing.assert_allclose(var, sd_u**2 / m + sd_r**2 / n, rtol=1e-9, atol=1e-15)
    # 2. Estimate and interval. ppi_py takes argmin |F - q| and the hull of the grid points
    # where the pointwise test accepts; we invert the monotone rearrangement of F (Woodruff
    # interval; see rectified_quantile). Both solve F(theta) = q on the same F, and differ
    # where F wiggles around q by its 1/n steps, which widen the hull (the over-coverage we
    # avoid): tolerance 30% of the interval width.
    est = rectified_quantile(y, f, fu, q, alpha=0.1)
    ref_value = ppi.ppi_quantile_pointestimate(y, f, fu, q, exact_grid=True)
    ref_ci = ppi.ppi_quantile_ci(y, f, fu, q, alpha=0.1, exact_grid=True)
    width = ref_ci[1] - ref_ci[0]
    assert abs(est.value - ref_value) <= 0.3 * width
    np.testing.assert_allclose(est.ci, ref_ci, atol=0.3 * width)
    assert est.ci[0] <= est.value <= est.ci[1] and est.lam == 1.0

    classical = rectified_quantile(y, f, fu, q, method="classical", alpha=0.1)
    assert classical.lam == 0.0
    # Classical: the order-statistic interval Y_(k) with ranks n q -/+ z sqrt(n q (1-q)).
    ys = np.sort(y)
    assert classical.value == ys[int(np.ceil(n * q)) - 1]
    half = norm.ppf(0.95) * np.sqrt((ys <= classical.value).mean() * (ys > classical.value).mean() / n)
    assert classical.ci == (ys[np.searchsorted(np.arange(1, n + 1) / n, q - half)],
                            ys[np.searchsorted(np.arange(1, n + 1) / n, q + half)])
    pp = rectified_quantile(y, f, fu, q, method="ppi++", alpha=0.1)
    assert 0 < pp.lam <= 1 and pp.ci[0] <= pp.value <= pp.ci[1]


def test_ols_agrees_with_ppi_py(ppi, data):
    from ppi_py.baselines import classical_ols_ci

    X, y, Xu = data["X"], data["y"], data["Xu"]
    f, fu = data["weak_f"], data["weak_fu"]
    for method in ("ppi", "ppi++"):  # same point estimate (at the same lam)
        est = rectified_ols(X, y, f, Xu, fu, method=method, alpha=0.1)
        ref = ppi.ppi_ols_pointestimate(X, y, f, Xu, fu, lam=est.lam)
        np.testing.assert_allclose(est.value, ref, rtol=1e-9)
    assert 0 < est.lam < 1
    # ppi_py's own lam (gradients at theta rather than theta_f, below) differs a little.
    assert np.all(np.abs(est.value - ppi.ppi_ols_pointestimate(X, y, f, Xu, fu)) < 0.25 * est.stderr)

    # Variance: we evaluate the prediction gradients at the imputed fit theta_f = OLS(X~, f~),
    # ppi_py at the final estimate theta. Like with like: a predictor whose labelled residual
    # y - f is orthogonal to X makes theta = theta_f, where the two sandwiches coincide (up
    # to ddof: ppi_py's np.cov has ddof 1, ours 0, so ours is smaller by at most 1/n).
    noise = np.random.default_rng(9).normal(size=N)
    f_orth = y - (noise - X @ np.linalg.lstsq(X, noise, rcond=None)[0])
    est = rectified_ols(X, y, f_orth, Xu, fu, method="ppi", alpha=0.1)
    np.testing.assert_allclose(est.value, np.linalg.lstsq(Xu, fu, rcond=None)[0], rtol=1e-9)
    ref_se = se_from_ci(ppi.ppi_ols_ci(X, y, f_orth, Xu, fu, alpha=0.1, lam=1.0), 0.1)
    np.testing.assert_allclose(est.stderr, ref_se, rtol=1 / N)
    assert np.all(est.stderr <= ref_se)

    est = rectified_ols(X, y, f, Xu, fu, method="classical", alpha=0.1)  # HC0: exact
    np.testing.assert_allclose(np.ravel(est.ci), np.ravel(classical_ols_ci(X, y, alpha=0.1)), rtol=1e-9)


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
            ref_se = se_from_ci(ppi.ppi_logistic_ci(X, y, yhat, Xu, fu, alpha=0.1, lam=est.lam), 0.1)
            np.testing.assert_allclose(est.stderr, ref_se, rtol=1 / N + 1e-5)
    assert 0 < est.lam < 1
    est = rectified_logistic(X, y, f, Xu, fu, method="classical", alpha=0.1)
    # ppi_py's classical logistic interval uses the model-based (not sandwich) variance,
    # so only the point estimate (the labelled MLE) is compared.
    ref_mid = np.mean(classical_logistic_ci(X, y, alpha=0.1), axis=0)
    np.testing.assert_allclose(est.value, ref_mid, rtol=1e-5, atol=1e-6)
