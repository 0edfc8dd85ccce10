"""skftr.rectify: result object, formulas, weights, streaming, several predictors, cross-fitting."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import norm

from skftr.rectify import (
    METHODS, RectifiedEstimate, crossfit_mean, rectified_logistic, rectified_mean, rectified_ols,
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
        noise=rng.normal(size=N), noise_u=rng.normal(size=M),
        X=np.c_[np.ones(N), x], Xu=np.c_[np.ones(M), xu],
        yb=(rng.random(N) < p).astype(float),
        pf=1 / (1 + np.exp(-(x + 0.8 * z))), pu=1 / (1 + np.exp(-(xu + 0.8 * zu))),
    )


def every_estimand(d, yhat, yhat_unlabeled, **kw):
    """The four estimands on the fixture's data (logistic with its own 0/1 labels)."""
    return {
        "mean": lambda: rectified_mean(d["y"], yhat, yhat_unlabeled, **kw),
        "quantile": lambda: rectified_quantile(d["y"], yhat, yhat_unlabeled, 0.3, **kw),
        "ols": lambda: rectified_ols(d["X"], d["y"], yhat, d["Xu"], yhat_unlabeled, **kw),
        "logistic": lambda: rectified_logistic(d["X"], d["yb"], 1 / (1 + np.exp(-yhat)), d["Xu"],
                                               1 / (1 + np.exp(-yhat_unlabeled)), **kw),
    }


def assert_same(a, b, rtol=1e-12):
    for name in ("value", "stderr", "lam", "classical_stderr"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(np.ravel(a.ci), np.ravel(b.ci), rtol=rtol, atol=1e-14)


# ---------------------------------------------------------------- import / result


def test_import_does_not_pull_torch():
    code = "import skftr.rectify, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_result_fields_repr_dict_pvalue(data):
    est = rectified_mean(data["y"], data["f"], data["fu"])
    assert isinstance(est, RectifiedEstimate)
    assert est.method == "ppi++" and est.n_labeled == N and est.n_unlabeled == M
    assert est.n_predictors == 1 and est.n_folds is None and isinstance(est.lam, float)
    assert est.alpha == 0.05 and est.ci[0] < est.value < est.ci[1]
    assert est.classical_stderr == pytest.approx(np.sqrt(data["y"].var() / N), rel=1e-12)
    z = norm.ppf(0.975)
    assert est.classical_ci[0] == pytest.approx(data["y"].mean() - z * est.classical_stderr)
    assert est.n_effective == pytest.approx(N * (est.classical_stderr / est.stderr) ** 2, rel=1e-12)
    assert est.n_effective > 2 * N  # a good predictor
    text = repr(est)
    assert "\n" not in text and text.startswith("RectifiedEstimate(ppi++:")
    for part in ("95% CI", f"n={N}", f"m={M}", "λ=", "classical ±", "n_eff="):
        assert part in text
    d = est.to_dict()
    assert json.loads(json.dumps(d)) == d and "allocation" not in d
    assert d["value"] == est.value and d["ci"] == list(est.ci)
    assert d["n_effective"] == est.n_effective and d["classical_ci"] == list(est.classical_ci)
    assert d["n_predictors"] == 1 and d["n_folds"] is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.value = 0.0
    assert est.pvalue(est.value) == pytest.approx(1.0)
    edge = est.value + norm.ppf(0.975) * est.stderr
    assert est.pvalue(edge) == pytest.approx(0.05)
    assert est.pvalue(est.ci[0]) == pytest.approx(0.05)


def test_result_allocation_vector_target_and_round_trip(data):
    class Alloc:
        def to_dict(self):
            return {"n_finetune": 10, "n_rectify": 90}

    est = rectified_mean(data["y"], data["f"], data["fu"])
    with_alloc = dataclasses.replace(est, allocation=Alloc())
    assert with_alloc.to_dict()["allocation"] == {"n_finetune": 10, "n_rectify": 90}
    assert with_alloc.value == est.value and "allocation" in repr(with_alloc)

    two = np.c_[data["f"], data["noise"]], np.c_[data["fu"], data["noise_u"]]
    vec = rectified_ols(data["X"], data["y"], *two[:1], data["Xu"], two[1])
    assert vec.value.shape == vec.stderr.shape == vec.ci[0].shape == vec.n_effective.shape == (2,)
    assert vec.lam.shape == (2,) and vec.n_predictors == 2 and "p=2" in repr(vec)
    assert not vec.value.flags.writeable and not vec.lam.flags.writeable
    pv = vec.pvalue(0.0)
    assert isinstance(pv, np.ndarray) and pv.shape == (2,)
    np.testing.assert_allclose(vec.pvalue(vec.value), 1.0)
    assert "\n" not in repr(vec)
    folds = np.arange(N) % 4
    cross = rectified_mean(data["y"], data["f"], np.stack([data["fu"]] * 4), folds=folds)
    assert cross.n_folds == 4 and cross.method == "cross-ppi++" and "K=4" in repr(cross)
    for e in (est, vec, cross):
        back = RectifiedEstimate.from_dict(json.loads(json.dumps(e.to_dict())))
        assert_same(back, e)
        for name in ("method", "n_predictors", "n_folds", "n_labeled", "n_unlabeled", "alpha"):
            assert getattr(back, name) == getattr(e, name)
    old = {k: v for k, v in est.to_dict().items() if not k.startswith(("classical", "n_eff"))}
    assert RectifiedEstimate.from_dict(old).n_effective is None  # saved before the comparison


def test_default_method_is_power_tuning(data):
    assert METHODS == ("classical", "ppi", "ppi++")
    for name, call in every_estimand(data, data["f"], data["fu"]).items():
        est = call()
        assert est.method == "ppi++", name
        assert est.lam != 0.0 and est.lam != 1.0, name


# ---------------------------------------------------------------- mean: formulas, weights


def test_mean_formulas(data):
    y, f, fu = data["y"], data["f"], data["fu"]
    classical = rectified_mean(y, f, fu, method="classical")
    assert classical.value == pytest.approx(y.mean(), rel=1e-12)
    assert classical.stderr == pytest.approx(np.sqrt(y.var() / N), rel=1e-12)
    assert classical.lam == 0.0 and classical.n_effective == pytest.approx(N)
    assert classical.classical_ci == classical.ci
    ppi = rectified_mean(y, f, fu, method="ppi")
    assert ppi.value == pytest.approx(fu.mean() + (y - f).mean(), rel=1e-12)
    assert ppi.stderr == pytest.approx(np.sqrt((y - f).var() / N + fu.var() / M), rel=1e-12)
    assert ppi.stderr < classical.stderr and ppi.lam == 1.0
    assert ppi.classical_stderr == classical.stderr
    # PPI++: lam = Cov(Y, f) / (Var_lab(f) + (n/m) Var_unl(f)), each side on its own units.
    wf, wfu = data["weak_f"], data["weak_fu"]
    pp = rectified_mean(y, wf, wfu)
    lam = np.cov(y, wf, ddof=0)[0, 1] / (wf.var() + N / M * wfu.var())
    assert 0 < lam < 1 and pp.lam == pytest.approx(lam, rel=1e-12)
    assert pp.value == pytest.approx(y.mean() + lam * (wfu.mean() - wf.mean()), rel=1e-12)
    assert pp.stderr == pytest.approx(np.sqrt((y - lam * wf).var() / N + lam**2 * wfu.var() / M))
    assert pp.stderr < classical.stderr


def test_weights_are_not_clipped(data):
    """A shrunk predictor's optimum is above 1, an anti-correlated one's below 0: both
    weights are kept and both beat the classical interval."""
    y, f, fu = data["y"], data["f"], data["fu"]
    shrunk = rectified_mean(y, 0.4 * f, 0.4 * fu)
    assert shrunk.lam > 2 and shrunk.stderr < rectified_mean(y, f, fu, method="ppi").stderr * 1.001
    flipped = rectified_mean(y, -f, -fu)
    assert flipped.lam < -0.5 and flipped.stderr < 0.7 * flipped.classical_stderr
    assert flipped.value == pytest.approx(rectified_mean(y, f, fu).value, rel=1e-12)


@pytest.mark.parametrize("offset", [0.1, 1e6 + 0.1])
def test_constant_and_collinear_predictors(data, offset):
    """A constant predictor gets weight 0 exactly (also with a large offset, where rounding
    would leave a tiny spread); a predictor collinear with another adds nothing."""
    y, f, fu = data["y"], data["f"], data["fu"]
    const, const_u = np.full(N, offset), np.full(M, offset)
    classical = every_estimand(data, const, const_u, method="classical")
    for name, call in every_estimand(data, const, const_u).items():
        if name == "logistic":
            continue  # a constant probability carries the covariates' information
        est, ref = call(), classical[name]()
        assert est.lam == 0.0, name
        np.testing.assert_allclose(est.value, ref.value, rtol=1e-12)
        if name in ("mean", "quantile"):  # no Hessian: the classical interval exactly
            assert_same(est, ref)
    single = rectified_mean(y, f, fu)
    both = rectified_mean(y, np.c_[f, const], np.c_[fu, const_u])
    assert both.lam[1] == 0.0 and both.lam[0] == pytest.approx(single.lam, rel=1e-12)
    collinear = rectified_mean(y, np.c_[f, 2 * f + 3], np.c_[fu, 2 * fu + 3])
    assert collinear.value == pytest.approx(single.value, rel=1e-9)
    assert collinear.stderr == pytest.approx(single.stderr, rel=1e-9)


def test_weights_minimize_the_reported_variance(data):
    """p = 2: the tuned weights are the minimizer of the variance the interval reports."""
    y = data["y"]
    f = np.c_[data["weak_f"], data["f"] + data["noise"]]
    fu = np.c_[data["weak_fu"], data["fu"] + data["noise_u"]]
    est = rectified_mean(y, f, fu)

    def variance(lam):
        return (y - f @ lam).var() / N + lam @ np.cov(fu.T, ddof=0) @ lam / M

    assert est.stderr**2 == pytest.approx(variance(est.lam), rel=1e-12)
    for step in np.eye(2) * 1e-3:
        assert variance(est.lam + step) > est.stderr**2 < variance(est.lam - step)
    assert est.stderr < min(rectified_mean(y, f[:, j], fu[:, j]).stderr for j in range(2))


# ---------------------------------------------------------------- one predictor as a column


def test_one_predictor_column_equals_vector(data):
    f, fu = data["weak_f"], data["weak_fu"]
    for method in METHODS:
        as_vector = every_estimand(data, f, fu, method=method)
        as_column = every_estimand(data, f[:, None], fu[:, None], method=method)
        for name in as_vector:
            a, b = as_vector[name](), as_column[name]()
            assert_same(a, b)
            assert isinstance(b.lam, float) and b.n_predictors == 1
    folds = np.arange(N) % 3
    for form in ({"yhat_unlabeled": np.stack([fu] * 3)},
                 {"yhat_unlabeled": fu, "folds_unlabeled": np.arange(M) % 3}):
        column = {**form, "yhat_unlabeled": form["yhat_unlabeled"][..., None]}
        assert_same(rectified_quantile(data["y"], f, q=0.5, folds=folds, **form),
                    rectified_quantile(data["y"], f[:, None], q=0.5, folds=folds, **column))


# ---------------------------------------------------------------- streaming


def test_streamed_chunks_equal_in_memory():
    rng = np.random.default_rng(3)
    n, m = 300, 200_003
    y = rng.normal(size=n)
    f = y + rng.normal(size=n)
    # A large common offset: a naive sum-of-squares pass would lose all digits.
    fu = 1e6 + rng.normal(size=m)
    f, y = f + 1e6, y + 1e6
    for method in ("ppi", "ppi++"):
        ref = rectified_mean(y, f, fu, method=method)
        lam = ref.lam
        exp_se = np.sqrt((y - lam * f).var() / n + lam**2 * fu.var() / m)
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
    # Several predictors: (k, p) chunks.
    f2, fu2 = np.c_[f, rng.normal(size=n)], np.c_[fu, rng.normal(size=m)]
    ref = rectified_mean(y, f2, fu2)
    est = rectified_mean(y, f2, (fu2[a:a + 7_000] for a in range(0, m, 7_000)))
    assert_same(est, ref, rtol=1e-9)


# ---------------------------------------------------------------- cross-fitting


def _fold_data(seed, m=40):
    """60 labeled units in unequal folds of 10, 20, 30; K = 3 fold models' predictions."""
    rng = np.random.default_rng(seed)
    folds = np.repeat([0, 1, 2], [10, 20, 30])
    y = rng.normal(size=60)
    return y, y + rng.normal(size=60), folds, rng.normal(size=(3, m))


def test_crossfit_mean_variance_by_hand():
    """By fold model: Var = sum_k sum_{j in k} (r_j - mean_k r)^2 / (n - K) / n + Var(fbar)/m,
    fbar the fold-size-weighted average of the K models (unequal folds)."""
    y, f, folds, by_fold = _fold_data(3)
    est = rectified_mean(y, f, by_fold, folds=folds, method="ppi")
    r = y - f
    within = sum(np.sum((r[folds == j] - r[folds == j].mean()) ** 2) for j in range(3)) / 57
    fbar = np.array([10, 20, 30]) @ by_fold / 60
    assert est.value == pytest.approx(y.mean() + fbar.mean() - f.mean(), rel=1e-12)
    assert est.stderr == pytest.approx(np.sqrt(within / 60 + fbar.var() / 40), rel=1e-12)
    assert est.method == "cross-ppi" and est.n_folds == 3
    classical = rectified_mean(y, f, by_fold, folds=folds, method="classical")
    assert classical.stderr == pytest.approx(np.sqrt(y.var() / 60), rel=1e-12)
    assert classical.method == "classical" and est.classical_stderr == classical.stderr
    assert_same(crossfit_mean(y, f, folds, by_fold), rectified_mean(y, f, by_fold, folds=folds))


def test_assignment_mean_variance_by_hand():
    """By assignment: fold k's unlabeled units count n_k/n in total; their variance is the
    stratified one, sum_k (n_k/n)^2 Var_k(f~)/m_k, pooled: SS_within(w f~) / (m (m - K))."""
    y, f, folds, by_fold = _fold_data(4, m=90)
    rng = np.random.default_rng(5)
    assign = np.repeat([0, 1, 2], [20, 30, 40])
    fu = by_fold[assign, np.arange(90)]
    est = rectified_mean(y, f, fu, folds=folds, folds_unlabeled=assign, method="ppi")
    weights = np.array([10, 20, 30]) / 60
    level = sum(weights[k] * fu[assign == k].mean() for k in range(3))
    assert est.value == pytest.approx(y.mean() + level - f.mean(), rel=1e-12)
    wf = (weights / np.array([20, 30, 40]) * 90)[assign] * fu
    ss_unl = sum(np.sum((wf[assign == k] - wf[assign == k].mean()) ** 2) for k in range(3))
    r = y - f
    ss_lab = sum(np.sum((r[folds == j] - r[folds == j].mean()) ** 2) for j in range(3))
    assert est.stderr == pytest.approx(np.sqrt(ss_lab / 57 / 60 + ss_unl / (90 * 87)), rel=1e-12)
    # Units in any order: only their fold ids matter.
    order = rng.permutation(90)
    assert_same(rectified_mean(y, f, fu[order], folds=folds, folds_unlabeled=assign[order],
                               method="ppi"), est)


@pytest.mark.parametrize("method", ["ppi", "ppi++"])
@pytest.mark.parametrize("layout", ["by_model", "assignment"])
def test_crossfit_mean_ignores_a_shift_of_each_fold_model(data, method, layout):
    """Models trained on the error variance are identified up to a constant (Wang, Ye & Zhao
    2025, §3): adding c_k to fold model k (its out-of-fold and its unlabeled predictions)
    changes neither the estimate nor its interval, in both layouts."""
    y, f, fu = data["y"], data["weak_f"], data["weak_fu"]
    folds = np.arange(N) % 5
    shifts = np.array([-3.0, 1.0, 0.0, 2.0, 5.0])
    if layout == "by_model":
        kw, shifted_u = {}, np.stack([fu] * 5)
        plain = rectified_mean(y, f, shifted_u, folds=folds, method=method)
        shifted_u = shifted_u + shifts[:, None]
    else:
        kw = {"folds_unlabeled": np.arange(M) % 5}
        plain = rectified_mean(y, f, fu, folds=folds, method=method, **kw)
        shifted_u = fu + shifts[kw["folds_unlabeled"]]
    shifted = rectified_mean(y, f + shifts[folds], shifted_u, folds=folds, method=method, **kw)
    assert shifted.value == pytest.approx(plain.value, rel=1e-12)
    assert shifted.stderr == pytest.approx(plain.stderr, rel=1e-9)
    assert shifted.lam == pytest.approx(plain.lam, rel=1e-9)


def test_crossfit_other_estimands_reduce_to_the_plain_layout(data):
    """K identical fold models (by fold model), or equal folds with equal shares of the
    unlabeled units (by assignment), give the point estimate without folds; the linear
    losses (OLS, logistic) combine the fold models through their weighted average."""
    f, fu = data["weak_f"], data["weak_fu"]
    folds = np.arange(N) % 5
    plain = every_estimand(data, f, fu, method="ppi")
    by_model = every_estimand(data, f, np.stack([fu] * 5), folds=folds, method="ppi")
    assigned = every_estimand(data, f, fu, folds=folds, folds_unlabeled=np.arange(M) % 5,
                              method="ppi")
    for name in plain:
        ref = plain[name]()
        for est in (by_model[name](), assigned[name]()):
            np.testing.assert_allclose(est.value, ref.value, rtol=1e-6, atol=1e-9)
            assert est.n_folds == 5 and est.method == "cross-ppi"
    models = 1 / (1 + np.exp(-(fu + np.random.default_rng(0).normal(0, 0.3, size=(3, M)))))
    folds3 = np.repeat([0, 1, 2], [100, 150, 250])
    fbar = np.array([100, 150, 250]) @ models / N
    for fit in (rectified_ols, rectified_logistic):
        args = (data["X"], data["yb"], 1 / (1 + np.exp(-f)), data["Xu"])
        by_fold = fit(*args, models, folds=folds3, method="ppi")
        np.testing.assert_allclose(by_fold.value, fit(*args, fbar, method="ppi").value, rtol=1e-9)
