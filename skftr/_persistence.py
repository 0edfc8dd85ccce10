"""Pickle-free save/load of a fitted FineTuneRectifyEstimator (JSON + safetensors).

Directory layout::

    manifest.json               parameters, format and package version, fitted scalars,
                                estimate, allocation, scaling law, sha256 of every file
    rectification.safetensors   y and f on the rectification rows, f on the unlabelled
                                rows, fine-tuning labels, fold ids, split indices
    model_<k>.safetensors       coef_/intercept_ of a scikit-learn linear model, or
    model_<k>/                  a LoRA adapter (LoRARegressor.save_adapter)

``load`` recomputes every sha256 and refuses altered files and other format versions.
"""
import hashlib
import json
from numbers import Integral, Real
from pathlib import Path

import numpy as np

FORMAT = "skftr.FineTuneRectifyEstimator"
FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_RECT = "rectification.safetensors"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.name != _MANIFEST)


def _jsonable(value, name):
    """Plain JSON value, or TypeError naming the parameter."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v, name) for v in np.asarray(value).tolist()]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, name) for k, v in value.items()}
    raise TypeError(f"cannot save parameter {name}={value!r} without pickle; use joblib.dump")


# ------------------------------------------------------------------ scaling laws, splitters
def _law_to_dict(law):
    if law is None:
        return None
    if not hasattr(law, "a_"):
        raise TypeError("cannot save an unfitted scaling_law; use joblib.dump")
    out = {key: float(getattr(law, key)) for key in ("a_", "alpha_", "b_")}
    for key in ("r2_", "prediction_variance_"):
        if hasattr(law, key):
            out[key] = float(getattr(law, key))
    out["identified_"] = bool(getattr(law, "identified_", True))
    out["params"] = _jsonable(law.get_params(), "scaling_law")
    if hasattr(law, "pilots_"):
        out["pilots_"] = law.pilots_.to_dict(orient="list")
    return out


def _law_from_dict(data):
    if data is None:
        return None
    from .scaling import ScalingLaw

    law = ScalingLaw(**data["params"])
    for key in ("a_", "alpha_", "b_", "r2_", "prediction_variance_", "identified_"):
        if key in data:
            setattr(law, key, data[key])
    if "pilots_" in data:
        import pandas as pd

        law.pilots_ = pd.DataFrame(data["pilots_"])
    return law


def _n_finetune_to_json(value):
    if isinstance(value, (str, Real)):
        return value
    from .model_selection import BudgetSplitter

    if type(value) is not BudgetSplitter:
        raise TypeError(f"cannot save n_finetune={value!r} without pickle; use joblib.dump")
    import inspect

    params = {name: getattr(value, name)
              for name in inspect.signature(type(value).__init__).parameters if name != "self"}
    params["scaling_law"] = _law_to_dict(params["scaling_law"])
    return {"BudgetSplitter": _jsonable(params, "n_finetune")}


def _n_finetune_from_json(value):
    if not isinstance(value, dict):
        return value
    from .model_selection import BudgetSplitter

    params = dict(value["BudgetSplitter"])
    params["scaling_law"] = _law_from_dict(params["scaling_law"])
    return BudgetSplitter(**params)


# ------------------------------------------------------------------ models
def _is_linear(model):
    import sklearn.linear_model as linear

    name = type(model).__name__
    return (type(model).__module__.startswith("sklearn.linear_model")
            and getattr(linear, name, None) is type(model)
            and hasattr(model, "coef_") and hasattr(model, "intercept_"))


def _linear_from(name, params, coef, intercept, n_features):
    import sklearn.linear_model as linear

    cls = getattr(linear, name, None)
    if cls is None or not isinstance(cls, type):
        raise ValueError(f"unknown scikit-learn linear model {name!r} in the manifest")
    model = cls(**params)
    model.coef_ = coef
    model.intercept_ = intercept if intercept.ndim else float(intercept)
    model.n_features_in_ = n_features
    return model


def _save_model(model, root, key, n_features):
    """Write one fitted model; returns its manifest entry."""
    from safetensors.numpy import save_file

    if hasattr(model, "save_adapter"):
        model.save_adapter(root / key)
        return {"kind": "lora", "path": key,
                "params": _jsonable(_lora_params(model), "model")}
    if _is_linear(model):
        coef = np.ascontiguousarray(model.coef_, dtype=np.float64)
        intercept = np.ascontiguousarray(np.asarray(model.intercept_, dtype=np.float64))
        rebuilt = _linear_from(type(model).__name__, model.get_params(), coef, intercept,
                               n_features)
        probe = np.random.RandomState(0).normal(size=(3, n_features))
        if not np.allclose(rebuilt.predict(probe), model.predict(probe)):
            raise TypeError(f"{type(model).__name__} does not predict from coef_ and intercept_ "
                            "alone; use joblib.dump")
        save_file({"coef": coef, "intercept": intercept}, str(root / f"{key}.safetensors"))
        return {"kind": "sklearn-linear", "path": f"{key}.safetensors",
                "class": type(model).__name__,
                "params": _jsonable(model.get_params(), "model")}
    raise TypeError(
        f"save() stores LoRARegressor adapters and scikit-learn linear models; "
        f"{type(model).__name__} is neither: use joblib.dump(estimator, file) instead"
    )


def _lora_params(model):
    """JSON parameters of a LoRARegressor; skorch defaults (classes, functions) are left out."""
    defaults = type(model)().get_params(deep=False)
    params = {}
    for name, value in model.get_params(deep=False).items():
        if name.startswith("_"):
            continue
        try:
            params[name] = _jsonable(value, f"model__{name}")
        except TypeError:
            if value is not defaults.get(name) and value != defaults.get(name):
                raise
    if not isinstance(params.get("criterion"), str):
        raise TypeError("cannot save a LoRARegressor with a torch-module criterion; use "
                        "joblib.dump")
    return params


def _load_model(entry, root, n_features):
    if entry["kind"] == "lora":
        from .lora import LoRARegressor

        return LoRARegressor(**entry["params"]).load_adapter(root / entry["path"])
    if entry["kind"] == "sklearn-linear":
        from safetensors.numpy import load_file

        arrays = load_file(str(root / entry["path"]))
        return _linear_from(entry["class"], entry["params"], arrays["coef"],
                            arrays["intercept"], n_features)
    raise ValueError(f"unknown model kind {entry['kind']!r} in the manifest")


# ------------------------------------------------------------------ estimator
def _clear(root):
    """Make ``root`` ready for a save: absent, empty, or an earlier save (then removed)."""
    import shutil

    if not root.exists():
        return
    if not root.is_dir():
        raise NotADirectoryError(f"{str(root)!r} exists and is not a directory")
    entries = list(root.iterdir())
    if not entries:
        return
    manifest = root / _MANIFEST
    if not manifest.is_file():
        raise FileExistsError(f"{str(root)!r} is not empty and holds no saved estimator; "
                              "save into a new or empty directory")
    listed = json.loads(manifest.read_text()).get("files", {})
    for name in listed:
        (root / name).unlink(missing_ok=True)
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.startswith("model_"):
            shutil.rmtree(entry)
    manifest.unlink()

_FITTED_SCALARS = ("n_finetune_", "n_rectify_", "n_unlabeled_", "offset_", "prediction_scale_")
_FITTED_ARRAYS = ("finetune_indices_", "rectify_indices_", "pilot_indices_", "folds_")


def save_estimator(est, path):
    """Write ``est`` (fitted) to directory ``path``; see the module docstring."""
    from safetensors.numpy import save_file

    from . import __version__

    root = Path(path)
    _clear(root)
    root.mkdir(parents=True, exist_ok=True)
    params = est.get_params(deep=False)
    stored = {}
    for name, value in params.items():
        if name == "model":
            continue
        if name == "n_finetune":
            stored[name] = _n_finetune_to_json(value)
        elif name == "scaling_law":
            stored[name] = _law_to_dict(value)
        else:
            stored[name] = _jsonable(value, name)

    n_features = getattr(est, "n_features_in_", None)
    models = est.model_ if isinstance(est.model_, list) else [est.model_]
    entries = [_save_model(m, root, f"model_{k}", n_features) for k, m in enumerate(models)]
    template = est.model

    arrays = {"y_rect": est._y_rect, "f_rect": est._f_rect, "f_unl": est._f_unl,
              "y_ft": est._y_ft}
    for name in _FITTED_ARRAYS:
        if hasattr(est, name):
            arrays[name] = np.asarray(getattr(est, name), dtype=np.int64)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(root / _RECT))

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "skftr_version": __version__,
        "params": stored,
        "model_template": None if template is None else {
            "class": type(template).__name__, "params": _template_params(template)},
        "models": entries,
        "crossfit_models": isinstance(est.model_, list),
        "text_input": bool(est._text_input),
        "n_features_in": n_features,
        "feature_names_in": (None if not hasattr(est, "feature_names_in_")
                             else [str(v) for v in est.feature_names_in_]),
        "fitted": {name: _jsonable(getattr(est, name), name) for name in _FITTED_SCALARS},
        "estimate": est.estimate_.to_dict(),
        "allocation": None if est.allocation_ is None else est.allocation_.to_dict(curve=True),
        "scaling_law_": _law_to_dict(est.scaling_law_),
    }
    manifest["estimate"].pop("allocation", None)
    manifest["files"] = {str(p.relative_to(root)): _sha256(p) for p in _files(root)}
    (root / _MANIFEST).write_text(json.dumps(manifest, indent=1))
    return root


def _template_params(template):
    if hasattr(template, "save_adapter"):
        return _jsonable(_lora_params(template), "model")
    return _jsonable(template.get_params(deep=False), "model")


def _template_from(data):
    if data is None:
        return None
    if data["class"] == "LoRARegressor":
        from .lora import LoRARegressor

        return LoRARegressor(**data["params"])
    import sklearn.linear_model as linear

    cls = getattr(linear, data["class"], None)
    if not isinstance(cls, type):
        raise ValueError(f"unknown model class {data['class']!r} in the manifest")
    return cls(**data["params"])


def load_estimator(path, cls):
    """Read a directory written by :func:`save_estimator`, verifying every sha256."""
    from safetensors.numpy import load_file

    from .allocation import Allocation
    from .rectify import RectifiedEstimate

    root = Path(path)
    manifest_path = root / _MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{str(root)!r} holds no {_MANIFEST}: not a saved "
                                "FineTuneRectifyEstimator")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path} is not a saved FineTuneRectifyEstimator")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{root} was written in format version {version!r} (skftr "
            f"{manifest.get('skftr_version')}); this skftr reads format version "
            f"{FORMAT_VERSION} only: re-save it with a matching skftr"
        )
    expected = manifest["files"]
    found = {str(p.relative_to(root)) for p in _files(root)}
    missing = sorted(set(expected) - found)
    if missing:
        raise ValueError(f"{root} is incomplete: missing {missing}")
    for name, digest in expected.items():
        if _sha256(root / name) != digest:
            raise ValueError(f"{root / name} was altered since it was saved (sha256 mismatch); "
                             "refusing to load it")

    params = dict(manifest["params"])
    params["n_finetune"] = _n_finetune_from_json(params["n_finetune"])
    params["scaling_law"] = _law_from_dict(params["scaling_law"])
    est = cls(model=_template_from(manifest["model_template"]), **params)

    n_features = manifest["n_features_in"]
    models = [_load_model(entry, root, n_features) for entry in manifest["models"]]
    est.model_ = models if manifest["crossfit_models"] else models[0]
    est._text_input = manifest["text_input"]
    if n_features is not None:
        est.n_features_in_ = n_features
    if manifest["feature_names_in"] is not None:
        est.feature_names_in_ = np.asarray(manifest["feature_names_in"], dtype=object)
    for name, value in manifest["fitted"].items():
        setattr(est, name, value)

    arrays = load_file(str(root / _RECT))
    est._y_rect, est._f_rect = arrays["y_rect"], arrays["f_rect"]
    est._f_unl, est._y_ft = arrays["f_unl"], arrays["y_ft"]
    for name in _FITTED_ARRAYS:
        if name in arrays:
            setattr(est, name, arrays[name].astype(int))

    alloc = manifest["allocation"]
    if alloc is not None:
        alloc = Allocation(**{**alloc, "sizes": np.asarray(alloc["sizes"]),
                              "curve": np.asarray(alloc["curve"])})
    est.allocation_ = alloc
    data = manifest["estimate"]
    est.estimate_ = RectifiedEstimate(
        value=data["value"], stderr=data["stderr"], ci=tuple(data["ci"]), alpha=data["alpha"],
        method=data["method"], n_labeled=data["n_labeled"], n_unlabeled=data["n_unlabeled"],
        lam=data["lam"], allocation=alloc,
    )
    est.scaling_law_ = _law_from_dict(manifest["scaling_law_"])
    return est
