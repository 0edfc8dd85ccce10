"""Fine-tuning losses (Wang, Ye & Zhao 2025, §3; docs/method.md §3.1).

``LoRARegressor(loss=...)`` takes a name from :data:`LOSSES` or any such module. Each loss is a ``torch.nn.Module`` called as ``loss(y_pred, y_true)`` with
tensors of shape ``(batch,)`` (or ``(batch, 1)``). The variance and
correlation losses need at least two rows per batch (``min_batch_size = 2``):
a smaller batch raises a ``ValueError`` instead of returning NaN.
"""
import warnings

import torch
from torch import nn

from .exceptions import SkftrDeprecationWarning

__all__ = ["ErrorVarianceLoss", "MSELoss", "CorrelationLoss", "LOSSES"]


def _flatten_pair(y_pred, y_true, name, min_batch_size):
    y_pred = y_pred.reshape(-1)
    y_true = y_true.reshape(-1).to(y_pred.dtype)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"{name}: y_pred has {y_pred.numel()} values but y_true has {y_true.numel()}")
    if y_pred.numel() < min_batch_size:
        raise ValueError(
            f"{name} needs a batch of at least {min_batch_size} rows, got {y_pred.numel()}: "
            "use batch_size >= 2 and drop (or merge) a last batch of one row"
        )
    return y_pred, y_true


class ErrorVarianceLoss(nn.Module):
    """Sample variance of the errors over the batch, ``Var(y - y_hat)``.

    ``sum_i (e_i - mean(e))^2 / (B - 1)`` with ``e = y - y_hat``. Invariant to a
    constant shift of the predictions: rectification supplies the level.
    """

    min_batch_size = 2

    def forward(self, y_pred, y_true):
        y_pred, y_true = _flatten_pair(y_pred, y_true, type(self).__name__, self.min_batch_size)
        return torch.var(y_true - y_pred, correction=1)


class MSELoss(nn.Module):
    """Mean squared error ``mean((y - y_hat)^2) = Var(y - y_hat) + bias^2``."""

    min_batch_size = 1

    def forward(self, y_pred, y_true):
        y_pred, y_true = _flatten_pair(y_pred, y_true, type(self).__name__, self.min_batch_size)
        return torch.mean((y_true - y_pred) ** 2)


class CorrelationLoss(nn.Module):
    """One minus the squared Pearson correlation, ``1 - corr(y, y_hat)^2``.

    ``Var(y) (1 - corr^2)`` is the residual variance after the best linear
    rescaling of the predictions, the objective matching PPI++ (docs/method.md §3.1).

    Parameters
    ----------
    eps : float, default=1e-8
        Added to the product of the variances, so constant predictions give a
        loss of 1 rather than NaN.
    """

    min_batch_size = 2

    def __init__(self, eps=1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, y_pred, y_true):
        y_pred, y_true = _flatten_pair(y_pred, y_true, type(self).__name__, self.min_batch_size)
        dp = y_pred - y_pred.mean()
        dt = y_true - y_true.mean()
        cov = (dp * dt).mean()
        return 1.0 - cov**2 / ((dp**2).mean() * (dt**2).mean() + self.eps)


LOSSES = {"variance": ErrorVarianceLoss, "mse": MSELoss, "correlation": CorrelationLoss}


def __getattr__(name):
    if name == "CRITERIA":  # the old name of LOSSES
        warnings.warn("skftr.losses.CRITERIA is deprecated: use skftr.losses.LOSSES",
                      SkftrDeprecationWarning, stacklevel=2)
        return LOSSES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
