"""Faster CPU prediction for fitted torch predictors, the same predictor on every row.

:func:`optimize` returns a new fitted predictor whose transformer backbone runs with its
LoRA adapter merged into the weights (peft ``merge``) and, with ``method="int8"``, its
``Linear`` layers dynamically quantised to int8 (``torch.ao.quantization.quantize_dynamic``:
int8 weights, activations quantised per batch). Only the prediction changes, never the
fit: the fast predictor is a deterministic function of the fitted weights, rebuilt after
unpickling, and it must predict the labeled (rectification) rows as well as the
unlabeled ones, so that the rectified estimate stays unbiased whatever it changes
(Wang, Ye & Zhao 2025, §2; docs/method.md §2).

Measured (``benchmarks/results/inference.md``, MiniLM, one core): ``"merged"`` gives the
same predictions about 1.3x faster; ``"int8"`` about 2x faster, but it raises the
held-out residual variance by more than 1% and a text's prediction depends on the other
texts of its batch (their shared activation scale), so it is opt-in.
"""
import copy

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

__all__ = ["METHODS", "OptimizedPredictor", "fast_module", "optimize"]

METHODS = ("merged", "int8")

# the attribute holding the torch module of each fitted torch predictor
_MODULE_ATTR = {"LoRARegressor": "module_", "SentenceEmbedder": "model_"}


def _has(method):
    return lambda self: hasattr(self.estimator, method)


class OptimizedPredictor(BaseEstimator):
    """A fitted ``LoRARegressor`` or ``SentenceEmbedder`` running a faster copy of its module.

    ``fit`` trains nothing: it copies the fitted ``estimator``'s torch module, merges the
    LoRA matrices into the weights they adapt (``W + (alpha / r) B A``) and, for
    ``method="int8"``, quantises the ``Linear`` layers of the transformer to int8 with
    per-batch activation scales (dynamic quantisation); a regression head stays in
    float32. ``predict`` / ``transform`` are the estimator's own (tokenisation, length
    sorting, target scale), run with that module.

    Parameters
    ----------
    estimator : fitted LoRARegressor or SentenceEmbedder
    method : {"merged", "int8"}, default="merged"
        ``"merged"`` only merges LoRA (same numbers as the estimator up to rounding);
        ``"int8"`` also quantises (faster, less accurate, batch-dependent).

    Attributes
    ----------
    module_ : torch.nn.Module
        The fast module. Not pickled: unpickling rebuilds it from ``estimator``.
    """

    _parameter_constraints = {
        "estimator": [HasMethods(["fit"])],
        "method": [StrOptions(set(METHODS))],
    }

    def __init__(self, estimator, method="merged"):
        self.estimator = estimator
        self.method = method

    def fit(self, X=None, y=None):
        """Build ``module_`` from the fitted ``estimator``; ``X`` and ``y`` are ignored."""
        self._validate_params()
        kind = type(self.estimator).__name__
        if kind not in _MODULE_ATTR:
            raise TypeError(f"estimator must be a fitted LoRARegressor or SentenceEmbedder, "
                            f"got {kind}")
        check_is_fitted(self.estimator, _MODULE_ATTR[kind])
        self.module_ = fast_module(getattr(self.estimator, _MODULE_ATTR[kind]), self.method)
        return self

    def _view(self):
        """A shallow copy of ``estimator`` holding ``module_`` (``copy.copy`` would go
        through the estimator's pickling, which reloads the backbone)."""
        check_is_fitted(self, "module_")
        view = object.__new__(type(self.estimator))
        view.__dict__.update(vars(self.estimator))
        setattr(view, _MODULE_ATTR[type(self.estimator).__name__], self.module_)
        return view

    @available_if(_has("predict"))
    def predict(self, X):
        """The estimator's ``predict(X)`` with the fast module."""
        return self._view().predict(X)

    @available_if(_has("transform"))
    def transform(self, X):
        """The estimator's ``transform(X)`` with the fast module."""
        return self._view().transform(X)

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ is the live __dict__
        state["_rebuild"] = state.pop("module_", None) is not None
        return state

    def __setstate__(self, state):
        rebuild = state.pop("_rebuild", False)
        super().__setstate__(state)
        if rebuild:
            self.fit()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags


def fast_module(module, method="merged"):
    """A copy of a torch ``module`` with LoRA merged and (``"int8"``) Linear layers int8.

    The copy is in eval mode on the CPU; ``module`` is left as it was. A module with a
    ``backbone`` (:class:`skftr.lora.PooledRegressionModel`) is quantised there only, so
    its one-output head keeps float32.
    """
    import torch
    from peft.tuners.tuners_utils import BaseTunerLayer

    module = copy.deepcopy(module).cpu().eval()
    for name, layer in list(module.named_modules()):
        if isinstance(layer, BaseTunerLayer):
            layer.merge()
            parent, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent), child, layer.get_base_layer())
    if method == "int8":
        from torch.ao.quantization import quantize_dynamic

        target = getattr(module, "backbone", module).float()  # int8 from float32 weights
        quantized = quantize_dynamic(target, {torch.nn.Linear}, dtype=torch.qint8)
        if target is module:
            module = quantized
        else:
            module.backbone = quantized
    return module.requires_grad_(False)


def optimize(predictor, method="merged"):
    """A new fitted predictor that predicts faster on the CPU (``predictor`` is unchanged).

    Parameters
    ----------
    predictor : fitted LoRARegressor, SentenceEmbedder, TextRidge or FoldEnsemble
        A ``TextRidge`` on embeddings gets a fast embedder (its ridge is kept); a
        ``FoldEnsemble`` gets every member optimised. Members without a torch model
        (TF-IDF ridge, scikit-learn regressors) are returned unchanged.
    method : {"merged", "int8"}, default="merged"
        See :class:`OptimizedPredictor`.

    Returns
    -------
    object of the same kind (an :class:`OptimizedPredictor` for a torch predictor)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    kind = type(predictor).__name__
    if kind in _MODULE_ATTR:
        return OptimizedPredictor(predictor, method=method).fit()
    if kind == "OptimizedPredictor":
        return OptimizedPredictor(predictor.estimator, method=method).fit()
    if kind == "FoldEnsemble":
        from .predictors import FoldEnsemble

        members = [[optimize(member, method) for member in fold] for fold in predictor.members]
        return FoldEnsemble(members, predictor.fold_weights, predictor.names,
                            predictor.n_scores, predictor.text_input)
    if kind == "TextRidge" and hasattr(predictor, "features_") and \
            type(predictor.features_).__name__ in _MODULE_ATTR:
        fast = copy.copy(predictor)
        fast.features_ = optimize(predictor.features_, method)
        return fast
    if kind == "FineTuneRectifyEstimator":
        raise TypeError("optimize takes the estimator's predictors (est.model_), not the "
                        "estimator: the rectification rows must be predicted by the same fast "
                        "predictors, so the estimator has to be fitted with them")
    if not hasattr(predictor, "predict"):
        raise TypeError(f"predictor must be a fitted predictor or FoldEnsemble, got {kind}")
    return predictor

