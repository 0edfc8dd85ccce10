"""Saving a fitted estimator without pickle, and loading only what is trusted.

A saved model is a directory:

* ``estimator.skops`` — the estimator and everything scikit-learn-side (parameters,
  fitted predictors, scaling law, allocation, rectification statistics), written by
  ``skops.io`` (a pandas table as its columns). Loading accepts only the types in
  :data:`TRUSTED` (scikit-learn's and numpy's are trusted by skops itself); a file
  naming any other type is refused.
* ``members/<i>/`` — the weights of each torch model, as safetensors: fine-tuned LoRA
  adapters or top layers (``save_adapter`` of ``LoRARegressor`` and
  ``TopLayersRegressor``); frozen embedders keep only their parameters and reload their
  backbone.
* ``manifest.json`` — format name and version, package version, and the sha256 of every
  file. Every hash is checked before anything is deserialised.

joblib/pickle also works (``joblib.dump(est, f)``), but loading a pickle runs whatever
code the file names: use :func:`save` / :func:`load` for models that travel.
"""
import copy
import json
import os
from pathlib import Path

from sklearn.base import BaseEstimator

from ._atomic import atomic_path, file_sha256
from .exceptions import UntrustedFileError

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION", "TRUSTED"]

FORMAT = "skftr.FineTuneRectifyEstimator"
FORMAT_VERSION = 2
_MANIFEST, _STATE = "manifest.json", "estimator.skops"

TRUSTED = [
    "skftr.estimator.FineTuneRectifyEstimator",
    "skftr.predictors.FoldEnsemble",
    "skftr.predictors.TextRidge",
    "skftr.predictors.length_features",
    "skftr.persistence._Saved",
    "skftr.rectify._result.RectifiedEstimate",
    "skftr.allocation.Allocation",
    "skftr.scaling.ScalingLaw",
    "skftr.model_selection.BudgetSplitter",
    "skftr.embedding.SentenceEmbedder",
]


class _Saved:
    """Stands for a torch model in the skops file: its kind, parameters and weights."""

    def __init__(self, kind, params, path=None):
        self.kind, self.params, self.path = kind, params, path


def _is_torch_model(obj):
    return type(obj).__name__ in ("LoRARegressor", "TopLayersRegressor", "SentenceEmbedder") and \
        type(obj).__module__.startswith("skftr.")


def _simple_params(model):
    """The JSON-able constructor parameters of a torch model (its own, not skorch's)."""
    keep = getattr(model, "_parameter_constraints", {})
    params = {}
    for key, value in model.get_params(deep=False).items():
        if key in keep and (value is None or isinstance(value, (str, int, float, bool))):
            params[key] = value
        elif key in keep and isinstance(value, (list, tuple)) and \
                all(isinstance(v, str) for v in value):
            params[key] = list(value)
    return params


def _swap(obj, root, memo, saving):
    """Copy ``obj`` with torch models replaced by :class:`_Saved` (saving) or back (loading)."""
    if id(obj) in memo:
        return memo[id(obj)]
    if saving and type(obj).__name__ == "DataFrame":  # skops cannot: its columns can
        out = _Saved("DataFrame", {"columns": [str(c) for c in obj.columns],
                                   "data": [obj[c].to_numpy() for c in obj.columns]})
    elif saving and type(obj).__name__ == "OptimizedPredictor":  # rebuilt from its model
        out = _Saved("OptimizedPredictor", {"method": obj.method,
                                            "estimator": _swap(obj.estimator, root, memo, True)})
    elif saving and _is_torch_model(obj):
        out = _Saved(type(obj).__name__, _simple_params(obj))
        if hasattr(obj, "save_adapter") and getattr(obj, "module_", None) is not None:
            out.path = f"members/{len(memo)}"
            obj.save_adapter(root / out.path)
    elif not saving and isinstance(obj, _Saved):
        out = _restore(obj, root)
    elif isinstance(obj, list):
        out = [_swap(v, root, memo, saving) for v in obj]
    elif isinstance(obj, tuple):
        out = tuple(_swap(v, root, memo, saving) for v in obj)
    elif isinstance(obj, dict):
        out = {k: _swap(v, root, memo, saving) for k, v in obj.items()}
    elif isinstance(obj, BaseEstimator) or type(obj).__module__.startswith("skftr."):
        out = copy.copy(obj)  # a shallow copy whose attributes are swapped in turn
        memo[id(obj)] = out
        out.__dict__.update({k: _swap(v, root, memo, saving) for k, v in vars(obj).items()})
        return out
    else:
        return obj
    memo[id(obj)] = out
    return out


def _restore(saved, root):
    if saved.kind == "OptimizedPredictor":
        from .inference import OptimizedPredictor

        inner = _restore(saved.params["estimator"], root)
        return OptimizedPredictor(inner, method=saved.params["method"]).fit()
    if saved.kind == "DataFrame":
        import pandas as pd

        return pd.DataFrame(dict(zip(saved.params["columns"], saved.params["data"])))
    if saved.kind == "SentenceEmbedder":
        from .embedding import SentenceEmbedder

        return SentenceEmbedder(**saved.params).fit()
    if saved.kind == "TopLayersRegressor":
        from .finetune import TopLayersRegressor as Model
    else:
        from .lora import LoRARegressor as Model

    model = Model(**saved.params)
    return model.load_adapter(root / saved.path) if saved.path else model


def save(est, path):
    """Write the fitted ``est`` to the directory ``path``, atomically.

    Returns
    -------
    Path
    """
    import skops.io as sio

    from . import __version__

    path = Path(path)
    with atomic_path(path, directory=True) as tmp:
        state = _swap(est, tmp, {}, saving=True)
        sio.dump(state, tmp / _STATE)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "skftr_version": __version__,
                    "files": {name: file_sha256(tmp / name) for name in files}}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2))
    return path


def load(path, trusted=None):
    """Load a directory written by :func:`save`.

    Types of skftr (:data:`TRUSTED`), of scikit-learn, numpy and scipy are accepted;
    ``trusted`` adds the full names of other types, e.g. a regressor of your own.

    Raises
    ------
    UntrustedFileError
        A missing, damaged or altered file (hash mismatch), another format or format
        version, or a type outside :data:`TRUSTED` — before anything is deserialised.
    """
    import skops.io as sio

    root = Path(path)
    manifest_file = root / _MANIFEST
    if not manifest_file.is_file():
        raise UntrustedFileError(f"{os.fspath(root)!r} is not a saved skftr model: "
                                 f"{_MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_file.read_text())
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as error:
        raise UntrustedFileError(f"{os.fspath(manifest_file)!r} is damaged or truncated "
                                 f"({error})") from None
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise UntrustedFileError(
            f"{os.fspath(root)!r} has format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this skftr reads {FORMAT!r} version "
            f"{FORMAT_VERSION}")
    if _STATE not in files:
        raise UntrustedFileError(f"{os.fspath(manifest_file)!r} does not list {_STATE}")
    for name, digest in files.items():
        file = root / name
        if not file.is_file() or file_sha256(file) != digest:
            raise UntrustedFileError(f"{os.fspath(file)!r} is missing or was altered after "
                                     "saving (sha256 mismatch); refusing to load")
    named = sio.get_untrusted_types(file=root / _STATE)
    allowed = set(TRUSTED) | set(trusted or ())
    untrusted = [t for t in named if t not in allowed and not t.startswith("sklearn.")]
    if untrusted:
        raise UntrustedFileError(f"{os.fspath(root / _STATE)!r} names untrusted types "
                                 f"{untrusted}; refusing to load (pass trusted=[...] to "
                                 "accept types you wrote yourself)")
    state = sio.load(root / _STATE, trusted=named)
    return _swap(state, root, {}, saving=False)
