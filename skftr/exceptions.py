"""The package's warnings and errors, in one place (as scikit-learn's ``exceptions``).

torch-free: every module may import it.
"""

__all__ = [
    "ConstantPredictionWarning",
    "NoUnlabeledWarning",
    "ScalingLawWarning",
    "SkftrDeprecationWarning",
    "UntrustedFileError",
]


class NoUnlabeledWarning(UserWarning):
    """``fit`` saw no unlabeled row: ``estimate_`` is the classical mean of the labels."""


class ScalingLawWarning(UserWarning):
    """The scaling law could not be identified from the pilots; a flat law is used."""


class ConstantPredictionWarning(UserWarning):
    """A fitted model's predictions are (nearly) constant: it carries no signal."""


class SkftrDeprecationWarning(FutureWarning):
    """A public name was renamed; the old one still works for now."""


class UntrustedFileError(ValueError):
    """A saved model is damaged, altered, of an unknown format version, or names an
    untrusted type; nothing from it was run."""
