"""skftr: fine-tuning then rectification (FTR) for valid estimates of human responses.

Public names are imported lazily so that ``import skftr.rectify`` (numpy and
scipy only) never pulls in torch.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "RectifiedEstimate": "skftr.rectify",
    "rectified_mean": "skftr.rectify",
    "rectified_quantile": "skftr.rectify",
    "rectified_ols": "skftr.rectify",
    "rectified_logistic": "skftr.rectify",
    "crossfit_mean": "skftr.rectify",
    "PredictionMoments": "skftr.rectify",
    "LoRARegressor": "skftr.lora",
    "TopLayersRegressor": "skftr.finetune",
    "ScalingLaw": "skftr.scaling",
    "ScalingLawWarning": "skftr.exceptions",
    "Allocation": "skftr.allocation",
    "optimal_allocation": "skftr.allocation",
    "BudgetSplitter": "skftr.model_selection",
    "FineTuneRectifyEstimator": "skftr.estimator",
    "NoUnlabeledWarning": "skftr.exceptions",
    "ConstantPredictionWarning": "skftr.exceptions",
    "UntrustedFileError": "skftr.exceptions",
    "TextRidge": "skftr.predictors",
    "FoldEnsemble": "skftr.predictors",
    "SentenceEmbedder": "skftr.embedding",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'skftr' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__
