"""Optimal split of a human-label budget between fine-tuning and rectification.

Wang, Ye & Zhao 2025 §4 (docs/method.md §5): spending ``s`` of ``n`` labels on
fine-tuning and ``n - s`` on rectification gives the rectified mean a variance

    V(s) = sigma^2(s) / (n - s) + Var(f_s(X)) / m,

with ``sigma^2`` the fitted scaling law (:class:`skftr.ScalingLaw`) and ``m`` the number of
unlabeled units. ``s* = argmin V(s)`` over the integers; for ``b = 0`` and ``m`` infinite
it is the integer next to ``alpha * n / (1 + alpha)``.
"""
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
from scipy.stats import norm

__all__ = ["Allocation", "optimal_allocation"]


@dataclass(frozen=True, repr=False)
class Allocation:
    """The chosen split of ``n`` labels and the projected precision.

    Attributes
    ----------
    n : int
        Human-label budget (pilot labels included in the budget-faithful mode).
    n_finetune, n_rectify : int
        ``s*`` labels for fine-tuning and ``n - s*`` for rectification.
    variance : float
        Projected variance ``V(s*)`` of the rectified mean.
    halfwidth : float
        Projected half-width ``z_{1-alpha/2} * sqrt(V(s*))`` of the confidence interval.
    alpha : float
        Level of that interval.
    n_unlabeled : int or None
        ``m``; None means the ``Var(f)/m`` term was taken as 0.
    var_f : float
        ``Var(f(X))`` used in the second term.
    n_pilot : int
        Pilot labels counted inside ``n`` (``n_finetune >= n_pilot``).
    law : dict
        ``{"a", "alpha", "b"}`` of the scaling law (empty for a law without them).
    sizes, curve : ndarray
        Every admissible ``s`` and ``V(s)``.
    """

    n: int
    n_finetune: int
    n_rectify: int
    variance: float
    halfwidth: float
    alpha: float
    n_unlabeled: object
    var_f: float
    n_pilot: int
    law: dict = field(compare=False)
    sizes: np.ndarray = field(compare=False)
    curve: np.ndarray = field(compare=False)

    def __repr__(self):
        return (f"Allocation(n={self.n}, n_finetune={self.n_finetune}, "
                f"n_rectify={self.n_rectify}, variance={self.variance:.4g}, "
                f"halfwidth={self.halfwidth:.4g})")

    def to_dict(self, curve=False):
        """JSON-friendly dict of the allocation (with ``sizes``/``curve`` lists if ``curve``)."""
        out = {
            "n": self.n,
            "n_finetune": self.n_finetune,
            "n_rectify": self.n_rectify,
            "variance": self.variance,
            "halfwidth": self.halfwidth,
            "alpha": self.alpha,
            "n_unlabeled": self.n_unlabeled,
            "var_f": self.var_f,
            "n_pilot": self.n_pilot,
            "law": dict(self.law),
        }
        if curve:
            out["sizes"] = self.sizes.tolist()
            out["curve"] = self.curve.tolist()
        return out

    def plot(self, ax=None):
        """Plot ``V(s)`` over the admissible ``s`` and mark ``s*``.

        Parameters
        ----------
        ax : matplotlib Axes, default=None

        Returns
        -------
        ax : matplotlib Axes
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.sizes, self.curve, color="C0", label="projected V(s)")
        ax.axvline(self.n_finetune, color="C3", linestyle="--", linewidth=1)
        ax.scatter([self.n_finetune], [self.variance], color="C3", zorder=3,
                   label=f"s* = {self.n_finetune} (n - s* = {self.n_rectify})")
        if self.n_pilot:
            ax.axvspan(self.sizes[0], self.n_pilot, color="0.9", zorder=0)
        ax.set_xlabel("fine-tuning labels s")
        ax.set_ylabel("variance of the rectified mean")
        ax.set_title(f"budget n = {self.n}", fontsize=9)
        ax.legend(fontsize=8)
        return ax


def _check_int(value, name, low):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def optimal_allocation(n, law, *, n_unlabeled=None, var_f=None, min_finetune=1,
                       min_rectify=10, n_pilot=0, alpha=0.05):
    """Integer minimiser of ``V(s) = sigma^2(s) / (n - s) + Var(f) / m`` (docs/method.md §5).

    ``V`` is evaluated at every admissible integer ``s`` (cheap and exact; ties go to
    the smaller ``s``). ``s = 0`` (zero-shot) is not considered: the power law is
    undefined there.

    Parameters
    ----------
    n : int
        Human-label budget.
    law : fitted ScalingLaw
        Or any object whose ``predict(s)`` gives the error variance ``sigma^2(s)``.
    n_unlabeled : int, default=None
        ``m``, the number of unlabeled units. None treats ``m`` as infinite (second
        term 0).
    var_f : float, default=None
        ``Var(f(X))`` for the second term. None uses ``law.prediction_variance_`` (set by
        :meth:`ScalingLaw.from_pilots`); required when ``n_unlabeled`` is given and the
        law has none. Taken constant in ``s``.
    min_finetune : int, default=1
        Smallest fine-tuning set.
    min_rectify : int, default=10
        Smallest rectification set.
    n_pilot : int, default=0
        Budget-faithful mode: ``n_pilot`` labels already spent on pilots are counted
        inside ``n`` and reused for fine-tuning, so ``s >= n_pilot``.
    alpha : float, default=0.05
        Level of the projected confidence interval.

    Returns
    -------
    Allocation
    """
    n = _check_int(n, "n", 2)
    min_finetune = _check_int(min_finetune, "min_finetune", 1)
    min_rectify = _check_int(min_rectify, "min_rectify", 1)
    n_pilot = _check_int(n_pilot, "n_pilot", 0)
    if not isinstance(alpha, Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not hasattr(law, "predict"):
        raise TypeError(f"law must be a fitted ScalingLaw (with predict), got {type(law).__name__}")
    if n_unlabeled is not None:
        n_unlabeled = _check_int(n_unlabeled, "n_unlabeled", 1)
    if var_f is None and n_unlabeled is not None:
        var_f = getattr(law, "prediction_variance_", None)
        if var_f is None:
            raise ValueError("var_f (Var(f(X)) of the fine-tuned model) is needed with "
                             "n_unlabeled when the law was not fitted by from_pilots")
    if var_f is not None and (not isinstance(var_f, Real) or not np.isfinite(var_f) or var_f < 0):
        raise ValueError(f"var_f must be a finite non-negative number, got {var_f!r}")
    var_f = 0.0 if var_f is None else float(var_f)

    low, high = max(min_finetune, n_pilot), n - min_rectify
    if low > high:
        raise ValueError(
            f"budget n={n} is too small: fine-tuning needs at least {low} labels "
            f"(min_finetune={min_finetune}, n_pilot={n_pilot}) and rectification "
            f"min_rectify={min_rectify}"
        )
    sizes = np.arange(low, high + 1)
    sigma2 = np.asarray(law.predict(sizes), dtype=float)
    if sigma2.shape != sizes.shape or not np.all(np.isfinite(sigma2)):
        raise ValueError("law.predict(s) must return one finite error variance per size")
    second = var_f / n_unlabeled if n_unlabeled is not None else 0.0
    curve = sigma2 / (n - sizes) + second
    best = int(np.argmin(curve))
    s_star = int(sizes[best])
    variance = float(curve[best])
    params = {k: float(getattr(law, k + "_")) for k in ("a", "alpha", "b")
              if hasattr(law, k + "_")}
    return Allocation(
        n=n,
        n_finetune=s_star,
        n_rectify=n - s_star,
        variance=variance,
        halfwidth=float(norm.ppf(1 - alpha / 2) * np.sqrt(variance)),
        alpha=float(alpha),
        n_unlabeled=n_unlabeled,
        var_f=var_f,
        n_pilot=n_pilot,
        law=params,
        sizes=sizes,
        curve=curve,
    )
