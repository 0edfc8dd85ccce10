"""skftr.rectify: bad input gets a clear error naming the argument."""
import numpy as np
import pytest

from skftr.rectify import (
    crossfit_mean, rectified_logistic, rectified_mean, rectified_ols, rectified_quantile,
)

GOOD = np.linspace(0.0, 1.0, 20) ** 2  # in [0, 1]: valid for every function, logistic included
UNL = np.linspace(0.0, 1.0, 30)


def _calls(y=GOOD, yhat=GOOD[::-1], yhat_unlabeled=UNL, **kw):
    """Every public function, called with the given arrays (and kwargs)."""
    n, m = len(y), np.shape(yhat_unlabeled)[-2 if np.ndim(yhat_unlabeled) == 2 else 0]
    x = np.c_[np.ones(n), np.arange(n) % 3]
    xu = np.c_[np.ones(m), np.arange(m) % 3]
    q = kw.pop("q", 0.5)
    return [
        lambda: rectified_mean(y, yhat, yhat_unlabeled, **kw),
        lambda: rectified_quantile(y, yhat, yhat_unlabeled, q, **kw),
        lambda: rectified_ols(x, y, yhat, xu, yhat_unlabeled, **kw),
        lambda: rectified_logistic(x, y, yhat, xu, yhat_unlabeled, **kw),
    ]


def _fold_calls(yhat_unlabeled, folds=np.arange(20) % 2, y=GOOD, yhat=GOOD[::-1], **kw):
    """Every public function with cross-fitting (fold-model layout unless kw says otherwise)."""
    m = np.shape(yhat_unlabeled)[0 if "folds_unlabeled" in kw else 1]
    x, xu = np.c_[np.ones(len(y)), np.arange(len(y)) % 3], np.c_[np.ones(m), np.arange(m) % 3]
    calls = [
        lambda: rectified_mean(y, yhat, yhat_unlabeled, folds=folds, **kw),
        lambda: rectified_quantile(y, yhat, yhat_unlabeled, 0.5, folds=folds, **kw),
        lambda: rectified_ols(x, y, yhat, xu, yhat_unlabeled, folds=folds, **kw),
        lambda: rectified_logistic(x, y, yhat, xu, yhat_unlabeled, folds=folds, **kw),
    ]
    if "folds_unlabeled" not in kw:
        calls.append(lambda: crossfit_mean(y, yhat, folds, yhat_unlabeled, **kw))
    return calls


def _raises(calls, exc, match):
    for call in calls:
        with pytest.raises(exc, match=match):
            call()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("arg", ["y", "yhat", "yhat_unlabeled"])
def test_nan_inf_rejected(arg, bad):
    arr = {"y": GOOD.copy(), "yhat": GOOD[::-1].copy(), "yhat_unlabeled": UNL.copy()}
    arr[arg][3] = bad
    _raises(_calls(**arr), ValueError, arg)
    two = {**arr, "yhat": np.c_[arr["yhat"], GOOD],
           "yhat_unlabeled": np.c_[arr["yhat_unlabeled"], UNL]}
    _raises(_calls(**two), ValueError, arg)
    by_fold = np.stack([arr["yhat_unlabeled"]] * 2)
    _raises(_fold_calls(by_fold, y=arr["y"], yhat=arr["yhat"]), ValueError, f"{arg}|{arg}_by_fold")
    _raises(_fold_calls(arr["yhat_unlabeled"], y=arr["y"], yhat=arr["yhat"],
                        folds_unlabeled=np.arange(30) % 2), ValueError, arg)


def test_nan_in_covariates_and_chunks_rejected():
    x = np.c_[np.ones(20), GOOD]
    xu = np.c_[np.ones(30), UNL]
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="X "):
        rectified_ols(x, GOOD, GOOD, xu, xu[:, 1])
    xu[2, 1] = np.inf
    with pytest.raises(ValueError, match="X_unlabeled"):
        rectified_logistic(np.c_[np.ones(20), GOOD], GOOD, GOOD, xu, xu[:, 0])
    chunks = iter([np.ones(5), np.array([1.0, np.nan])])
    with pytest.raises(ValueError, match="yhat_unlabeled"):
        rectified_mean(GOOD, GOOD, chunks)


def test_length_mismatch_rejected():
    _raises(_calls(yhat=GOOD[:-1]), ValueError, "yhat has 19 rows but y has 20")
    x, xu = np.ones((20, 1)), np.ones((29, 1))
    with pytest.raises(ValueError, match="but X has 19"):
        rectified_ols(x[:-1], GOOD, GOOD, np.ones((30, 1)), UNL)
    with pytest.raises(ValueError, match="yhat_unlabeled has 30 units but X_unlabeled has 29 rows"):
        rectified_logistic(x, GOOD, GOOD, xu, UNL)
    with pytest.raises(ValueError, match="yhat_unlabeled has 30 units but X_unlabeled has 29 rows"):
        rectified_ols(x, GOOD, GOOD, xu, np.stack([UNL] * 2), folds=np.arange(20) % 2)
    with pytest.raises(ValueError, match="X_unlabeled has 2 columns"):
        rectified_ols(x, GOOD, GOOD, np.ones((30, 2)), UNL)


def test_predictor_count_mismatch_rejected():
    two, three = np.c_[GOOD, GOOD], np.c_[UNL, UNL, UNL]
    _raises(_calls(yhat=two, yhat_unlabeled=three), ValueError,
            r"yhat_unlabeled holds 3 predictor\(s\) .* yhat holds 2; expected shape \(m, 2\)")
    _raises(_calls(yhat=two, yhat_unlabeled=UNL), ValueError, "yhat_unlabeled holds 1 predictor")
    _raises(_fold_calls(np.stack([UNL] * 2), yhat=two), ValueError,
            r"holds 1 predictor\(s\) .* expected shape \(K, m, 2\)")
    _raises(_calls(yhat=np.ones((20, 2, 2)), method="classical"), ValueError,
            r"yhat must have shape \(n,\) or \(n, p\)")
    _raises(_calls(yhat=np.ones((20, 0))), ValueError, "yhat needs at least one predictor")


def test_fold_ids_checked():
    by_fold = np.stack([UNL] * 2)
    _raises(_fold_calls(by_fold, folds=np.arange(19) % 2), ValueError,
            "folds has 19 rows but y has 20")
    _raises(_fold_calls(by_fold, folds=np.arange(20) % 3), ValueError,
            "holds predictions of 2 fold models .* but folds names 3 folds")
    _raises(_fold_calls(by_fold, folds=np.zeros(20, dtype=int)), ValueError, "names 1 folds")
    _raises(_fold_calls(by_fold, folds=np.arange(20) % 2 - 1), ValueError,
            "folds must hold fold ids 0..K-1")
    _raises(_fold_calls(by_fold, folds=2 * (np.arange(20) % 2)), ValueError,
            r"folds has no labeled unit for fold id\(s\) \[1\]")
    _raises(_fold_calls(by_fold, folds=np.zeros(20) + 0.5), TypeError, "folds must hold integer")
    _raises(_fold_calls(np.ones((3, 30)), folds=np.arange(3), y=GOOD[:3], yhat=GOOD[:3]),
            ValueError, "folds: .* more labeled units than folds; got 3 units in 3 folds")
    _raises(_fold_calls(np.stack([UNL[:1]] * 2)), ValueError, "yhat_unlabeled.* at least 2 units")


def test_assignment_fold_ids_checked():
    assign = np.arange(30) % 2
    _raises(_fold_calls(UNL, folds_unlabeled=assign[:-1]), ValueError,
            "folds_unlabeled has 29 rows but yhat_unlabeled has 30")
    _raises(_fold_calls(UNL, folds_unlabeled=assign + 1), ValueError,
            r"folds_unlabeled must hold fold ids in 0..1 .* got 2")
    _raises(_fold_calls(UNL, folds_unlabeled=np.zeros(30, dtype=int)), ValueError,
            r"folds_unlabeled assigns no unlabeled unit to fold id\(s\) \[1\]")
    _raises(_fold_calls(UNL, folds_unlabeled=assign.astype(float)), TypeError,
            "folds_unlabeled must hold integer")
    _raises(_fold_calls(UNL[:2], folds_unlabeled=np.array([0, 1])), ValueError,
            "more unlabeled units than folds; got 2 units in 2 folds")
    _raises(_calls(folds_unlabeled=np.arange(30) % 2), ValueError, "folds_unlabeled .* needs folds")


def test_ppi_with_several_predictors_rejected():
    two, two_u = np.c_[GOOD, GOOD[::-1]], np.c_[UNL, UNL[::-1]]
    _raises(_calls(yhat=two, yhat_unlabeled=two_u, method="ppi"), ValueError,
            "method='ppi' .* ambiguous with 2 predictors; use method='ppi\\+\\+'")
    for method in ("ppi++", "classical"):
        for call in _calls(yhat=two, yhat_unlabeled=two_u, method=method):
            assert call().n_predictors == 2


def test_chunks_only_for_the_mean_without_folds():
    chunks = [UNL[:10], UNL[10:]]
    with pytest.raises(TypeError, match="yhat_unlabeled must be one array here; chunks"):
        rectified_quantile(GOOD, GOOD, chunks, 0.5)
    with pytest.raises(TypeError, match="chunks"):
        rectified_mean(GOOD, GOOD, (c for c in chunks), folds=np.arange(20) % 2,
                       folds_unlabeled=np.arange(30) % 2)
    match = r"yhat_unlabeled \(chunk 1\) holds 1 predictor\(s\) .* expected shape \(k, 2\)"
    with pytest.raises(ValueError, match=match):
        rectified_mean(np.c_[GOOD].ravel(), np.c_[GOOD, GOOD], [np.c_[UNL, UNL], UNL])


def test_too_few_units_rejected():
    _raises(_calls(y=GOOD[:1], yhat=GOOD[:1]), ValueError, r"\by\b|X")
    _raises(_calls(yhat_unlabeled=np.array([0.5])), ValueError, "yhat_unlabeled|X_unlabeled")
    with pytest.raises(ValueError, match="yhat_unlabeled"):
        rectified_mean(GOOD, GOOD, (c for c in [np.array([1.0]), np.array([])]))


@pytest.mark.parametrize("value", [0, 1, -0.1, 1.5, np.nan])
def test_alpha_and_q_outside_unit_interval(value):
    _raises(_calls(alpha=value), ValueError, "alpha")
    with pytest.raises(ValueError, match=r"\bq\b"):
        rectified_quantile(GOOD, GOOD, GOOD, value)
    with pytest.raises(TypeError, match="alpha"):
        rectified_mean(GOOD, GOOD, GOOD, alpha="0.05")


def test_non_numeric_rejected():
    _raises(_calls(y=np.array(["a"] * 20)), TypeError, r"\by\b|X")
    with pytest.raises(TypeError, match="yhat_unlabeled"):
        rectified_mean(GOOD, GOOD, "abc")
    with pytest.raises(TypeError, match="yhat_unlabeled"):
        rectified_mean(GOOD, GOOD, [np.ones(3), np.array(["x", "y"])])
    with pytest.raises(TypeError, match="yhat"):
        rectified_mean(GOOD, np.array([1.0, "a"] * 10, dtype=object), GOOD)
    with pytest.raises(ValueError, match="yhat"):  # None in an object array is a missing value
        rectified_mean(GOOD, [None] * 20, GOOD)


def test_unknown_method_rejected():
    _raises(_calls(method="PPI"), ValueError,
            "method must be one of 'classical', 'ppi', 'ppi\\+\\+'")


def test_logistic_separable_classes_warn():
    x = np.linspace(-1, 1, 20)
    xu = np.linspace(-1, 1, 30)
    with pytest.warns(RuntimeWarning, match="separable"):
        rectified_logistic(np.c_[np.ones(20), x], x > 0, x > 0, np.c_[np.ones(30), xu], xu > 0,
                           method="classical")


def test_domain_checks():
    collinear = np.c_[np.ones(20), GOOD, 2 * GOOD]
    collinear_u = np.c_[np.ones(30), UNL, 2 * UNL]
    for fit in (rectified_ols, rectified_logistic):
        with pytest.raises(ValueError, match="X .*rank deficient"):
            fit(collinear, GOOD, GOOD, collinear_u, UNL)
    with pytest.raises(ValueError, match="yhat must hold 0/1 labels or probabilities"):
        rectified_logistic(np.ones((20, 1)), np.ones(20) * 0.5, np.c_[GOOD, np.ones(20) * 2],
                           np.ones((30, 1)), np.c_[UNL, UNL])
    with pytest.raises(ValueError, match="yhat_unlabeled must hold 0/1"):
        rectified_logistic(np.ones((20, 1)), GOOD, GOOD, np.ones((30, 1)),
                           np.stack([UNL, UNL + 1]), folds=np.arange(20) % 2)
