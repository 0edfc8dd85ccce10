import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skftr.exceptions import SkftrDeprecationWarning  # noqa: E402
from skftr.losses import LOSSES, CorrelationLoss, ErrorVarianceLoss, MSELoss  # noqa: E402


@pytest.fixture
def pair():
    gen = torch.Generator().manual_seed(0)
    y_true = torch.randn(32, generator=gen)
    y_pred = 0.6 * y_true + 0.5 * torch.randn(32, generator=gen) + 3.0
    return y_pred, y_true


def test_variance_is_sample_variance_of_errors(pair):
    y_pred, y_true = pair
    expected = np.var((y_true - y_pred).numpy(), ddof=1)
    assert ErrorVarianceLoss()(y_pred, y_true).item() == pytest.approx(expected, rel=1e-5)


def test_variance_ignores_a_constant_shift_and_mse_does_not(pair):
    y_pred, y_true = pair
    var, mse = ErrorVarianceLoss(), MSELoss()
    assert var(y_pred + 100.0, y_true).item() == pytest.approx(var(y_pred, y_true).item(), rel=1e-4)
    assert mse(y_pred + 100.0, y_true).item() > 100 * mse(y_pred, y_true).item()


def test_mse_is_mean_squared_error(pair):
    y_pred, y_true = pair
    expected = np.mean((y_true - y_pred).numpy() ** 2)
    assert MSELoss()(y_pred, y_true).item() == pytest.approx(expected, rel=1e-5)


def test_mse_decomposes_into_variance_and_squared_bias(pair):
    y_pred, y_true = pair
    e = (y_true - y_pred).double().numpy()
    assert MSELoss()(y_pred, y_true).item() == pytest.approx(np.var(e) + e.mean() ** 2, rel=1e-5)


def test_correlation_loss_is_one_minus_squared_pearson(pair):
    y_pred, y_true = pair
    r = np.corrcoef(y_pred.numpy(), y_true.numpy())[0, 1]
    loss = CorrelationLoss()
    assert loss(y_pred, y_true).item() == pytest.approx(1 - r**2, rel=1e-4)
    # invariant to any affine map of the predictions, including a sign flip
    assert loss(-3 * y_pred + 7, y_true).item() == pytest.approx(1 - r**2, rel=1e-4)


def test_correlation_loss_of_constant_predictions_is_one_not_nan():
    y_true = torch.tensor([1.0, 2.0, 4.0])
    value = CorrelationLoss()(torch.zeros(3), y_true)
    assert torch.isfinite(value) and value.item() == pytest.approx(1.0)


@pytest.mark.parametrize("loss", [ErrorVarianceLoss(), CorrelationLoss()])
def test_batch_of_one_row_is_refused_not_nan(loss):
    with pytest.raises(ValueError, match="at least 2 rows"):
        loss(torch.tensor([1.0]), torch.tensor([2.0]))


def test_mse_accepts_one_row_and_column_shapes():
    assert MSELoss()(torch.tensor([[1.0]]), torch.tensor([3.0])).item() == pytest.approx(4.0)
    y = torch.arange(4.0)
    assert ErrorVarianceLoss()(y.reshape(-1, 1), y).item() == pytest.approx(0.0)


def test_mismatched_sizes_raise():
    with pytest.raises(ValueError, match="y_pred has 3 values but y_true has 4"):
        ErrorVarianceLoss()(torch.zeros(3), torch.zeros(4))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_are_finite(name, pair):
    y_pred, y_true = pair
    y_pred = y_pred.clone().requires_grad_(True)
    LOSSES[name]()(y_pred, y_true).backward()
    assert torch.isfinite(y_pred.grad).all() and y_pred.grad.abs().sum() > 0


def test_variance_gradient_sums_to_zero(pair):
    # a shift of all predictions does not change the loss: the gradient is orthogonal to 1
    y_pred, y_true = pair
    y_pred = y_pred.clone().requires_grad_(True)
    ErrorVarianceLoss()(y_pred, y_true).backward()
    assert y_pred.grad.sum().item() == pytest.approx(0.0, abs=1e-6)


def test_criteria_is_a_deprecated_name_of_losses():
    import skftr.losses

    with pytest.warns(SkftrDeprecationWarning, match="use skftr.losses.LOSSES"):
        assert skftr.losses.CRITERIA is LOSSES
    with pytest.raises(AttributeError, match="no attribute 'CRITERIUM'"):
        skftr.losses.CRITERIUM  # noqa: B018
