"""Small statistical helpers shared by the rectification estimators."""
import numpy as np
from scipy.stats import norm


def z_crit(alpha):
    """Normal critical value ``z_{1 - alpha/2}``."""
    return float(norm.ppf(1.0 - alpha / 2.0))


def wald_ci(value, stderr, alpha):
    """``value -/+ z_{1-alpha/2} * stderr`` (elementwise for vectors)."""
    half = z_crit(alpha) * stderr
    return value - half, value + half


def power_tuning_lambda(cov_y_f, var_f_pooled, n, m):
    """PPI++ weight ``lam* = Cov(Y, f) / ((1 + n/m) Var(f))`` clipped to [0, 1].

    Angelopoulos, Duchi & Zrnic (2023), METHOD.md §2. ``Var(f)`` is estimated
    on the labelled and unlabelled predictions pooled. A predictor with no
    variance carries no information, so ``lam = 0`` then.
    """
    return clipped_lambda(cov_y_f, (1.0 + n / m) * var_f_pooled)


def clipped_lambda(cov_y_f, denominator):
    """``Cov(Y, f) / denominator`` clipped to [0, 1]; 0 when the denominator is not positive."""
    return float(np.clip(cov_y_f / denominator, 0.0, 1.0)) if denominator > 0 else 0.0


class Moments:
    """Count, mean and sum of squared deviations (M2) of a stream of numbers.

    Chunks are merged with the parallel update of Chan, Golub & LeVeque
    (1979): one numerically stable pass, any chunk sizes.
    """

    __slots__ = ("count", "mean", "m2")

    def __init__(self, count=0, mean=0.0, m2=0.0):
        self.count, self.mean, self.m2 = int(count), float(mean), float(m2)

    @classmethod
    def of(cls, x):
        """Moments of a small in-memory float64 array."""
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean()
        d = x - mean
        return cls(x.shape[0], mean, float(d @ d))

    def merge(self, other):
        """Combine with the moments of a disjoint set of values (in place)."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return self
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / n
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.count = n
        return self

    @property
    def var(self):
        """Plug-in variance ``M2 / count`` (ddof = 0)."""
        return self.m2 / self.count
