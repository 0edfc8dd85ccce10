"""The immutable result object returned by every :mod:`skftr.rectify` function."""
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple, Union

import numpy as np
from scipy.stats import norm

Number = Union[float, np.ndarray]


def _readonly(x):
    if isinstance(x, np.ndarray):
        x = x.copy()
        x.setflags(write=False)
        return x
    return float(x)


def _jsonable(x):
    return x.tolist() if isinstance(x, np.ndarray) else x


@dataclass(frozen=True, eq=False)
class RectifiedEstimate:
    """A point estimate with its standard error and confidence interval.

    Scalar targets (mean, quantile) hold floats; vector targets (regression
    coefficients) hold 1-d arrays, one entry per coefficient.

    Attributes
    ----------
    value : float or ndarray
        Point estimate.
    stderr : float or ndarray
        Estimated standard error (for quantiles: the interval half-width
        divided by the normal critical value, the interval itself coming from
        test inversion).
    ci : tuple (low, high)
        ``1 - alpha`` confidence interval.
    alpha : float
        Error level of the interval.
    method : str
        ``"classical"``, ``"ppi"``, ``"ppi++"`` (prefixed with ``"cross-"``
        for :func:`crossfit_mean`).
    n_labeled, n_unlabeled : int
        Number of labelled (rectification) and unlabelled units.
    lam : float
        Power-tuning weight on the predictions: 0 for classical, 1 for plain
        PPI, estimated and clipped to [0, 1] for PPI++.
    allocation : object or None
        Optional budget allocation (anything with ``to_dict()``), attached by
        the estimator with :func:`dataclasses.replace`.
    """

    value: Number
    stderr: Number
    ci: Tuple[Number, Number]
    alpha: float
    method: str
    n_labeled: int
    n_unlabeled: int
    lam: float
    allocation: Optional[Any] = field(default=None)

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "value", _readonly(self.value))
        set_(self, "stderr", _readonly(self.stderr))
        set_(self, "ci", (_readonly(self.ci[0]), _readonly(self.ci[1])))
        set_(self, "alpha", float(self.alpha))
        set_(self, "n_labeled", int(self.n_labeled))
        set_(self, "n_unlabeled", int(self.n_unlabeled))
        set_(self, "lam", float(self.lam))

    @property
    def is_scalar(self):
        """True for a scalar target (mean, quantile)."""
        return not isinstance(self.value, np.ndarray)

    def pvalue(self, null=0.0):
        """Two-sided p-value of ``H0: target == null`` from the normal approximation.

        ``2 * (1 - Phi(|value - null| / stderr))``; elementwise for vector
        targets (``null`` may then be a scalar or an array).
        """
        se = np.maximum(self.stderr, np.finfo(float).tiny)
        p = 2.0 * norm.sf(np.abs(np.asarray(self.value) - np.asarray(null, dtype=float)) / se)
        return float(p) if np.ndim(p) == 0 else p

    def to_dict(self):
        """A JSON-friendly dict of all fields (arrays become lists)."""
        out = {
            "value": _jsonable(self.value),
            "stderr": _jsonable(self.stderr),
            "ci": [_jsonable(self.ci[0]), _jsonable(self.ci[1])],
            "alpha": self.alpha,
            "method": self.method,
            "n_labeled": self.n_labeled,
            "n_unlabeled": self.n_unlabeled,
            "lam": self.lam,
        }
        if self.allocation is not None:
            out["allocation"] = self.allocation.to_dict()
        return out

    def __repr__(self):
        level = f"{100 * (1 - self.alpha):.4g}% CI"
        if self.is_scalar:
            body = (f"{self.value:.4g} ± {self.stderr:#.2g} (se) "
                    f"[{self.ci[0]:.4g}, {self.ci[1]:.4g}]")
        else:
            fmt = {"float_kind": lambda v: f"{v:.4g}"}
            arr = lambda a: np.array2string(a, separator=", ", formatter=fmt, threshold=6, edgeitems=2)
            body = (f"{arr(self.value)} ± {arr(self.stderr)} (se) "
                    f"[{arr(self.ci[0])}, {arr(self.ci[1])}]")
        alloc = ", allocation" if self.allocation is not None else ""
        return (f"RectifiedEstimate({self.method}: {body}, {level}, "
                f"n={self.n_labeled}, m={self.n_unlabeled}, λ={self.lam:.2f}{alloc})")
