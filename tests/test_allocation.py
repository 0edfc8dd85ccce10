import dataclasses
import json
import math
import warnings

import matplotlib
import numpy as np
import pytest
from scipy.optimize import brentq

from skftr.allocation import Allocation, optimal_allocation
from skftr.scaling import ScalingLaw

matplotlib.use("Agg")


class Law:
    """A known law sigma^2(s) = a s^-alpha + b (no fitting involved)."""

    def __init__(self, a, alpha, b):
        self.a_, self.alpha_, self.b_ = a, alpha, b

    def predict(self, s):
        return self.a_ * np.asarray(s, float) ** -self.alpha_ + self.b_


def brute_force(n, a, alpha, b, low=1, high=None):
    high = n - 1 if high is None else high
    values = {s: (a * s ** -alpha + b) / (n - s) for s in range(low, high + 1)}
    return min(values, key=lambda s: (values[s], s))


def test_paper_emobank_law_gives_81_of_500():
    sizes = np.repeat([50, 100, 200, 400, 800], 2)
    law = ScalingLaw(n_bootstrap=0).fit(sizes, 0.287 * sizes ** -0.297 + 0.042)
    allocation = optimal_allocation(500, law)
    assert allocation.n_finetune == 81 and allocation.n_rectify == 419
    expected = (0.287 * 81 ** -0.297 + 0.042) / 419
    assert allocation.variance == pytest.approx(expected, rel=1e-5)
    assert allocation.halfwidth == pytest.approx(1.959964 * math.sqrt(expected), rel=1e-5)


@pytest.mark.parametrize("n", [30, 100, 500, 2000])
@pytest.mark.parametrize("a", [0.287, 5.0])
@pytest.mark.parametrize("alpha", [0.1, 0.297, 0.7, 1.5])
@pytest.mark.parametrize("b", [0.0, 0.042, 1.0])
def test_matches_brute_force_and_first_order_condition(n, a, alpha, b):
    allocation = optimal_allocation(n, Law(a, alpha, b), min_rectify=1)
    s_star = allocation.n_finetune
    assert s_star == brute_force(n, a, alpha, b)
    # METHOD.md 5: alpha a s^(-alpha-1) (n - s) = a s^(-alpha) + b at the continuous optimum
    def focus(s):
        return alpha * a * s ** (-alpha - 1) * (n - s) - (a * s ** -alpha + b)

    if focus(1.0) > 0 > focus(n - 1.0):
        root = brentq(focus, 1.0, n - 1.0)
        assert math.floor(root) <= s_star <= math.ceil(root)


@pytest.mark.parametrize("n, alpha", [(100, 0.297), (500, 0.297), (1000, 0.5), (777, 1.0)])
def test_closed_form_without_floor(n, alpha):
    s_star = optimal_allocation(n, Law(0.3, alpha, 0.0)).n_finetune
    continuous = alpha * n / (1 + alpha)
    assert s_star in (math.floor(continuous), math.ceil(continuous))


def test_budget_faithful_pilots_and_bounds():
    law = Law(0.287, 0.297, 0.042)
    free = optimal_allocation(500, law)
    pilot = optimal_allocation(500, law, n_pilot=60)  # pilots below s*: same split
    assert (pilot.n_finetune, pilot.variance) == (free.n_finetune, free.variance)
    forced = optimal_allocation(500, law, n_pilot=150)
    assert forced.n_finetune == 150 and forced.n_pilot == 150  # V is unimodal
    assert forced.sizes[0] == 150 and forced.variance > free.variance
    capped = optimal_allocation(100, Law(1.0, 2.0, 0.0), min_rectify=40)
    assert capped.n_rectify == 40 and capped.sizes[-1] == 60
    floored = optimal_allocation(500, law, min_finetune=100)
    assert floored.n_finetune == 100


def test_flat_law_spends_the_minimum_on_fine_tuning():
    with pytest.warns(UserWarning):
        flat = ScalingLaw(n_bootstrap=0).fit([50, 100, 200], [0.1, 0.1, 0.1])
    assert optimal_allocation(300, flat, min_finetune=5).n_finetune == 5


def test_unlabeled_term():
    law = Law(0.287, 0.297, 0.042)
    base = optimal_allocation(500, law)
    with_m = optimal_allocation(500, law, n_unlabeled=10_000, var_f=0.05)
    assert with_m.variance == pytest.approx(base.variance + 0.05 / 10_000)
    assert with_m.n_finetune == base.n_finetune  # constant Var(f) does not move s*
    with pytest.raises(ValueError, match="var_f"):
        optimal_allocation(500, law, n_unlabeled=10_000)
    law.prediction_variance_ = 0.05
    assert optimal_allocation(500, law, n_unlabeled=10_000).variance == with_m.variance


def test_to_dict_repr_plot_and_frozen():
    allocation = optimal_allocation(500, Law(0.287, 0.297, 0.042), alpha=0.1)
    data = json.loads(json.dumps(allocation.to_dict()))
    assert data["n_finetune"] == 81 and data["law"]["alpha"] == 0.297 and data["alpha"] == 0.1
    full = json.loads(json.dumps(allocation.to_dict(curve=True)))
    assert len(full["sizes"]) == len(full["curve"]) == 500 - 10
    assert "n_finetune=81" in repr(allocation)
    with pytest.raises(dataclasses.FrozenInstanceError):
        allocation.n_finetune = 3
    assert isinstance(allocation, Allocation)
    ax = allocation.plot()
    assert ax.get_xlabel().startswith("fine-tuning")
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=10), ValueError, "too small"),
    (dict(n=500, n_pilot=495), ValueError, "too small"),
    (dict(n=2.5), ValueError, "n must"),
    (dict(n=500, min_rectify=0), ValueError, "min_rectify"),
    (dict(n=500, n_pilot=-1), ValueError, "n_pilot"),
    (dict(n=500, n_unlabeled=100, var_f=-1.0), ValueError, "var_f"),
    (dict(n=500, n_unlabeled=0, var_f=1.0), ValueError, "n_unlabeled"),
    (dict(n=500, alpha=1.0), ValueError, "alpha"),
])
def test_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        optimal_allocation(law=Law(0.287, 0.297, 0.042), **kwargs)


def test_bad_law():
    with pytest.raises(TypeError, match="law"):
        optimal_allocation(100, law=(0.287, 0.297, 0.042))

    class Broken(Law):
        def predict(self, s):
            return np.full(np.shape(s), np.nan)

    with pytest.raises(ValueError, match="finite"):
        optimal_allocation(100, Broken(1, 1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimal_allocation(100, Law(1, 1, 1))
