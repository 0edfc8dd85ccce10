"""The immutable result object returned by every :mod:`skftr.rectify` function."""
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Tuple, Union

import numpy as np
from scipy.stats import norm

Number = Union[float, np.ndarray]


def _readonly(x):
    """A float for a scalar, a read-only float array otherwise (lists included)."""
    arr = np.array(x, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    arr.setflags(write=False)
    return arr


def _jsonable(x):
    return x.tolist() if isinstance(x, np.ndarray) else x


def _fmt(x):
    """Compact one-line text of a float or an array."""
    if isinstance(x, np.ndarray):
        return np.array2string(x, separator=", ", threshold=6, edgeitems=2,
                               formatter={"float_kind": lambda v: f"{v:.4g}"})
    return f"{x:.4g}"


@dataclass(frozen=True, eq=False)
class RectifiedEstimate:
    """A point estimate with its standard error, confidence interval and classical comparison.

    Scalar targets (mean, quantile) hold floats; vector targets (regression
    coefficients) hold 1-d arrays, one entry per coefficient.

    Attributes
    ----------
    value : float or ndarray
        Point estimate.
    stderr : float or ndarray
        Estimated standard error (for quantiles: the interval half-width
        divided by the normal critical value, the interval itself coming from
        inverting the rectified CDF).
    ci : tuple (low, high)
        ``1 - alpha`` confidence interval.
    alpha : float
        Error level of the interval.
    method : str
        ``"classical"``, ``"ppi"``, ``"ppi++"``; ``"cross-ppi"`` and
        ``"cross-ppi++"`` when cross-fitted.
    n_labeled, n_unlabeled : int
        Number of labeled (rectification) and unlabeled units.
    lam : float or ndarray
        Weight on the predictions (docs/method.md §2.2, §2.4): 0 for classical, 1 for
        plain PPI, tuned for PPI++; an array of one weight per predictor when
        there are several.
    allocation : object or None
        Optional budget allocation (anything with ``to_dict()``), attached by
        the estimator with :func:`dataclasses.replace`.
    classical_stderr, classical_ci : float or ndarray, tuple
        Standard error and interval of the classical estimate from the same
        labels (``Var(Y)/n`` for the mean). None only for an estimate saved
        without them.
    n_predictors : int
        Number of predictors ``p``.
    n_folds : int or None
        Number of cross-fitting folds; None without cross-fitting.
    fit_info : dict or None
        What the estimator's fit did, JSON-friendly (attached by
        ``FineTuneRectifyEstimator``): the precision of each frozen trunk, the layers
        fine-tuned and whether each fold kept its fine-tune, the seconds of each stage.
    """

    value: Number
    stderr: Number
    ci: Tuple[Number, Number]
    alpha: float
    method: str
    n_labeled: int
    n_unlabeled: int
    lam: Number
    allocation: Optional[Any] = field(default=None)
    classical_stderr: Optional[Number] = None
    classical_ci: Optional[Tuple[Number, Number]] = None
    n_predictors: int = 1
    n_folds: Optional[int] = None
    fit_info: Optional[dict] = None

    def __post_init__(self):
        set_ = object.__setattr__
        for name in ("value", "stderr", "lam"):
            set_(self, name, _readonly(getattr(self, name)))
        set_(self, "ci", (_readonly(self.ci[0]), _readonly(self.ci[1])))
        if self.classical_stderr is not None:
            set_(self, "classical_stderr", _readonly(self.classical_stderr))
            set_(self, "classical_ci", (_readonly(self.classical_ci[0]),
                                        _readonly(self.classical_ci[1])))
        set_(self, "alpha", float(self.alpha))
        for name in ("n_labeled", "n_unlabeled", "n_predictors"):
            set_(self, name, int(getattr(self, name)))
        if self.n_folds is not None:
            set_(self, "n_folds", int(self.n_folds))

    @property
    def is_scalar(self):
        """True for a scalar target (mean, quantile)."""
        return not isinstance(self.value, np.ndarray)

    @property
    def n_effective(self):
        """Labels the classical estimate would need for this precision.

        ``n_labeled * (classical_stderr / stderr)^2`` (elementwise for vector
        targets; docs/method.md §2.6); None without a classical comparison.
        """
        if self.classical_stderr is None:
            return None
        with np.errstate(divide="ignore"):
            ratio = np.divide(self.classical_stderr, self.stderr)
        return _readonly(self.n_labeled * ratio**2)

    def pvalue(self, null=0.0):
        """Two-sided p-value of ``H0: target == null`` from the normal approximation.

        ``2 * (1 - Phi(|value - null| / stderr))``; elementwise for vector
        targets (``null`` may then be a scalar or an array).
        """
        se = np.maximum(self.stderr, np.finfo(float).tiny)
        p = 2.0 * norm.sf(np.abs(np.asarray(self.value) - np.asarray(null, dtype=float)) / se)
        return float(p) if np.ndim(p) == 0 else p

    def to_dict(self):
        """A JSON-friendly dict of all fields and ``n_effective`` (arrays become lists)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "allocation":
                continue
            if f.name in ("ci", "classical_ci") and value is not None:
                value = [_jsonable(value[0]), _jsonable(value[1])]
            out[f.name] = _jsonable(value)
        out["n_effective"] = _jsonable(self.n_effective)
        if self.allocation is not None:
            out["allocation"] = self.allocation.to_dict()
        return out

    @classmethod
    def from_dict(cls, data, allocation=None):
        """Rebuild an estimate from :meth:`to_dict` output (``allocation`` given as an object)."""
        known = {f.name for f in fields(cls)} - {"allocation"}
        kwargs = {k: v for k, v in data.items() if k in known}
        for name in ("ci", "classical_ci"):
            if kwargs.get(name) is not None:
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs, allocation=allocation)

    def __repr__(self):
        level = f"{100 * (1 - self.alpha):.4g}% CI"
        body = (f"{_fmt(self.value)} ± {_fmt(self.stderr)} (se) "
                f"[{_fmt(self.ci[0])}, {_fmt(self.ci[1])}]")
        sizes = f"n={self.n_labeled}, m={self.n_unlabeled}"
        if self.n_folds:
            sizes += f", K={self.n_folds}"
        if self.n_predictors > 1:
            sizes += f", p={self.n_predictors}"
        compare = ""
        if self.classical_stderr is not None:
            compare = (f", classical ± {_fmt(self.classical_stderr)} (se), "
                       f"n_eff={_fmt(self.n_effective)}")
        alloc = ", allocation" if self.allocation is not None else ""
        return (f"RectifiedEstimate({self.method}: {body}, {level}, {sizes}, "
                f"λ={_fmt(self.lam)}{compare}{alloc})")
