"""Fine-tuning the top layers of a backbone on its frozen trunk (docs/method.md §3).

:class:`TopLayersRegressor` trains the top ``k`` transformer layers of a backbone (LoRA
adapters on them, or their full weights) and a linear head on the token states that the
frozen trunk (:mod:`skftr.trunk`) gives after layer ``L - k``. An epoch costs ``k / L`` of a
pass of the backbone, and the trunk's pass is shared with the ridge on the same backbone's
frozen embedding. skorch runs the loop (AdamW, gradient clipping, ``EarlyStopping`` on the
inner hold-out with the best weights restored); this module adds the fine-tune of Wang, Ye
& Zhao (2025, §3): the head warm-started at the ridge solution on the frozen embedding,
and the check that keeps the warm start when fine-tuning does not beat it on the hold-out.
"""
import copy
import json
import os
import re
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted
from sklearn.utils._param_validation import Interval, StrOptions

from ._atomic import atomic_path, file_sha256
from ._hf import pool, seeded, torch_threads
from ._inputs import check_target, check_texts
from .exceptions import UntrustedFileError
from .losses import LOSSES
from .trunk import PRECISIONS, TrunkSpec, get_trunk, padded_shape

__all__ = ["TopLayersRegressor", "TopLayersModule", "build_top_model"]

_LAYER = re.compile(r"(^|\.)(layer|layers)\.(\d+)\.")
_MIN_HOLDOUT = 8
_WEIGHTS_FILE, _META_FILE = "top_layers.safetensors", "skftr_top_layers.json"
_FORMAT, _FORMAT_VERSION = "skftr.TopLayersRegressor", 1
_FITTED = ("y_mean_", "y_scale_", "seed_", "n_epochs_", "best_epoch_", "warm_start_kept_",
           "holdout_variance_", "warm_start_variance_", "ridge_alpha_", "n_top_layers_")


class _Inputs(torch.nn.Module):
    """Stands for the embedding layer of the top model: its input already is a layer's
    token states (``inputs_embeds``)."""

    def forward(self, input_ids=None, inputs_embeds=None, **kwargs):
        return inputs_embeds


class TopLayersModule(torch.nn.Module):
    """The top layers, the pooling of their last token states and a linear head: one
    float a text, from ``states`` (batch, tokens, d) and their ``mask``.

    ``bf16=True`` runs the forward pass under bfloat16 autocast (weights, gradients and
    the optimizer stay float32): 2-3x faster where the device computes bf16 natively.
    """

    def __init__(self, top, pooling, hidden_size, bf16=False):
        super().__init__()
        self.top, self.pooling, self.bf16 = top, pooling, bf16
        self.head = torch.nn.Linear(hidden_size, 1)

    def forward(self, states, mask):
        with torch.autocast(states.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hidden = self.top(inputs_embeds=states, attention_mask=mask).last_hidden_state
            pooled = pool(hidden, mask, self.pooling)
        return self.head(pooled.float())[:, 0]


def build_top_model(trunk, top_layers, adapter="lora", lora_r=8, lora_alpha=16,
                    lora_dropout=0.1):
    """The top ``top_layers`` layers of ``trunk``'s backbone as a float32 model of their own.

    A transformers model of the same architecture with ``k`` layers, holding the trunk's
    layers ``L - k .. L - 1`` (and the weights every layer shares, such as MPNet's
    relative-position bias or a decoder's final norm); encoders get a pass-through in place
    of their embedding layer, decoders take ``inputs_embeds`` as they are. Fed the trunk's
    states after layer ``L - k`` it returns the trunk's last layer. ``adapter="lora"``
    injects LoRA (peft) into its attention projections and freezes the rest; ``"full"``
    trains every weight of the ``k`` layers.
    """
    from transformers import AutoModel

    n_layers = trunk.n_layers
    first = trunk.state_layer(top_layers)
    config = copy.deepcopy(trunk.model.config)
    config.num_hidden_layers = top_layers
    top = AutoModel.from_config(config, dtype=torch.float32)
    state = {}
    for key, value in trunk.model.state_dict().items():
        match = _LAYER.search(key)
        if match:
            index = int(match.group(3))
            if index < first or index >= n_layers:
                continue
            key = key[:match.start(3)] + str(index - first) + key[match.end(3):]
        state[key] = value.detach().float()
    missing = [k for k in top.load_state_dict(state, strict=False).missing_keys
               if "embed" not in k and "position_ids" not in k]
    if missing:
        raise ValueError(f"the top {top_layers} layers of {trunk.spec.path!r} could not be "
                         f"built: weights {missing[:3]} are missing")
    if hasattr(top, "embeddings"):
        top.embeddings = _Inputs()
    top.requires_grad_(adapter == "full")
    if adapter == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        from .lora import auto_target_modules

        top = inject_adapter_in_model(LoraConfig(r=lora_r, lora_alpha=lora_alpha,
                                                 lora_dropout=lora_dropout,
                                                 target_modules=auto_target_modules(top)), top)
    return top.to(trunk.spec.device)


class _States(torch.utils.data.Dataset):
    """A torch dataset of one trunk layer's token states (float32) and targets."""

    def __init__(self, outputs, layer, rows, z=None):
        self.outputs, self.layer, self.rows, self.z = outputs, layer, np.asarray(rows), z

    def __len__(self):
        return self.rows.size

    def __getitem__(self, i):
        states = self.outputs.token_states(self.layer, self.rows[i])
        return np.asarray(states, dtype=np.float32), 0.0 if self.z is None else self.z[i]


def _collate(batch, pad_rows=False):
    """Pad a batch of (tokens, d) states to its longest text rounded up to a multiple of 8
    (:func:`skftr.trunk.padded_shape`): ``{"states", "mask"}``, y. ``pad_rows``: also
    pad to ``_PREDICT_ROWS`` rows (the extra rows repeat the last text)."""
    rows, width = padded_shape(len(batch), max(len(s) for s, _ in batch), full=_PREDICT_ROWS,
                               steps=1, round_width=True)
    batch = list(batch) + batch[-1:] * (rows - len(batch)) if pad_rows else batch
    states = torch.zeros(len(batch), width, batch[0][0].shape[1])
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for i, (s, _) in enumerate(batch):
        states[i, :len(s)] = torch.from_numpy(s)
        mask[i, :len(s)] = 1
    y = torch.tensor([t for _, t in batch], dtype=torch.float32)
    return {"states": states, "mask": mask}, y


_PREDICT_ROWS = 64  # texts per forward pass of the top layers when predicting


class TopLayersRegressor(RegressorMixin, BaseEstimator):
    """Fine-tune the top layers of a backbone, on its shared frozen trunk, to predict a
    number from a text.

    ``fit(X, y)`` on texts and floats, ``predict(X)`` float64 of shape ``(n,)``. Inside
    ``FineTuneRectifyEstimator`` the trunk's pass is shared with the other readers of the
    same backbone (:meth:`fit_trunk`, :meth:`predict_trunk`); alone, ``fit`` and
    ``predict`` run it themselves.

    The fine-tune (docs/method.md §3.2-3.3), on each call of ``fit``:

    1. Targets are standardised; a share ``holdout`` of the rows (at least 8) is set aside.
    2. Warm start: the head is the ridge (``RidgeCV``, GCV) on the frozen pooled last
       layer of the other rows, LoRA starts at zero (or the full layers at the backbone's
       weights): training begins at the frozen-embedding ridge predictor.
    3. Training: AdamW on the loss (error variance by default), at most ``max_epochs``
       epochs, stopped when the hold-out loss has not improved for ``patience`` epochs, the
       best epoch's weights restored (skorch ``EarlyStopping``).
    4. Check: if the hold-out residual variance is not below the warm start's, the fitted
       model *is* the warm start (the ridge head refitted on every row), which predicts
       from the frozen embedding alone, without running the top layers.

    Every decision uses only the rows given to ``fit``: inside cross-fitting, never the
    rows the fitted model rectifies.

    Parameters
    ----------
    backbone : str or path, default=None
        A known backbone (``"minilm"``, ``"mpnet"``, ``"smollm2-135m"``) or a local
        model directory; None is all-MiniLM-L6-v2. Decoders pool their last token.
    top_layers : int, default=1
        ``k``, the layers fine-tuned (``benchmarks/RESULTS.md`` compares 1, 2, 3 and all).
    adapter : {"lora", "full"}, default="lora"
        LoRA on the top layers' attention projections, or their full weights.
    lora_r, lora_alpha, lora_dropout : int, float, float, default=8, 16, 0.1
    max_length : int, default=128
        Tokens per text (as the frozen ridges, so that the trunk is shared).
    batch_size : int, default=16
    max_epochs, patience : int, default=20, 3
    lr : float or None, default=None
        AdamW's learning rate; None is 1e-3 with LoRA, 1e-4 with full weights.
    loss : {"variance", "mse", "correlation"} or torch module, default="variance"
    holdout : float in (0, 1), default=0.2
    precision : {"auto", "bf16", "fp32"}, default="auto"
        Of the trunk (:func:`skftr.trunk.resolve_precision`) and of prediction; training
        runs in float32.
    device : str, default="auto"
    n_threads : int, default=None
        Torch threads (None: :func:`skftr._hf.default_threads`).
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
        skorch's epoch table when positive.

    Attributes
    ----------
    module_ : torch module
        The top layers and the head.
    warm_start_kept_ : bool
    holdout_variance_, warm_start_variance_ : float
        Hold-out residual variances (scale of ``y``) of the fine-tune and of the warm start.
    n_epochs_, best_epoch_ : int
        Epochs run, and the one whose weights were kept (0 when the warm start was kept).
    trunk_precision_ : str
    """

    _parameter_constraints = {
        "backbone": [str, os.PathLike, None],
        "top_layers": [Interval(Integral, 1, None, closed="left")],
        "adapter": [StrOptions({"lora", "full"})],
        "lora_r": [Interval(Integral, 1, None, closed="left")],
        "lora_alpha": [Interval(Real, 0, None, closed="neither")],
        "lora_dropout": [Interval(Real, 0, 1, closed="left")],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "loss": [StrOptions(set(LOSSES)), callable],
        "holdout": [Interval(Real, 0, 1, closed="neither")],
        "precision": [StrOptions(set(PRECISIONS))],
        "device": [str],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, backbone=None, *, top_layers=1, adapter="lora", lora_r=8, lora_alpha=16,
                 lora_dropout=0.1, max_length=128, batch_size=16, max_epochs=20, patience=3,
                 lr=None, loss="variance", holdout=0.2, precision="auto", device="auto",
                 n_threads=None, random_state=None, verbose=0):
        self.backbone = backbone
        self.top_layers = top_layers
        self.adapter = adapter
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.max_length = max_length
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.lr = lr
        self.loss = loss
        self.holdout = holdout
        self.precision = precision
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ the trunk
    def trunk_spec(self):
        """The :class:`~skftr.trunk.TrunkSpec` this model reads."""
        return TrunkSpec.of(self.backbone, self.max_length, "auto", self.precision, self.device)

    def trunk_layers(self, trunk):
        """The trunk layers whose token states this model needs: ``(L - k,)``."""
        return (trunk.state_layer(self.top_layers),)

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Fine-tune on texts ``X`` and targets ``y`` (the steps of the class docstring)."""
        self._validate_params()
        texts = check_texts(X, "X")
        trunk = get_trunk(self.trunk_spec())
        with torch_threads(self.n_threads):
            outputs = trunk.run(texts, self.trunk_layers(trunk))
        return self.fit_trunk(outputs, y)

    def fit_trunk(self, outputs, y):
        """Fine-tune on a trunk pass ``outputs`` (:class:`~skftr.trunk.TrunkOutputs`) of
        the training texts and their targets ``y``."""
        from sklearn.utils import check_random_state

        self._validate_params()
        y = check_target(y, len(outputs), "y")
        if y.size < 2 * _MIN_HOLDOUT:
            raise ValueError(f"TopLayersRegressor.fit needs at least {2 * _MIN_HOLDOUT} rows, "
                             f"got {y.size}")
        trunk = get_trunk(self.trunk_spec())
        self.seed_ = int(check_random_state(self.random_state).randint(2**31 - 1))
        self.n_top_layers_, self.trunk_precision_ = self.top_layers, trunk.spec.precision
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(y.std()) if y.std() > 0 else 1.0
        z = (y - self.y_mean_) / self.y_scale_
        rows = np.random.default_rng(self.seed_).permutation(y.size)
        n_hold = max(_MIN_HOLDOUT, int(round(self.holdout * y.size)))
        hold, train = np.sort(rows[:n_hold]), np.sort(rows[n_hold:])
        with torch_threads(self.n_threads), seeded(self.seed_, trunk.spec.device):
            self.module_ = self._build(trunk)
            self.ridge_alpha_ = self._ridge_head(outputs.embeddings, z, train)
            initial = copy.deepcopy(self.module_.state_dict())
            layer = self.trunk_layers(trunk)[0]
            warm = self._run(outputs, layer, hold)
            self.warm_start_variance_ = float(np.var(z[hold] - warm, ddof=1)) * self.y_scale_**2
            net = self._net(_States(outputs, layer, hold, z[hold]), hold.size)
            net.fit(_States(outputs, layer, train, z[train]), None)
            self.n_epochs_ = len(net.history)
            losses = net.history[:, "valid_loss"]
            self.best_epoch_ = int(np.argmin(losses)) + 1
            tuned = self._run(outputs, layer, hold)
            self.holdout_variance_ = float(np.var(z[hold] - tuned, ddof=1)) * self.y_scale_**2
            self.warm_start_kept_ = not self.holdout_variance_ < self.warm_start_variance_
            if self.warm_start_kept_:
                self.module_.load_state_dict(initial)
                self.best_epoch_ = 0
                self.ridge_alpha_ = self._ridge_head(outputs.embeddings, z, rows)
        return self

    def _build(self, trunk):
        top = build_top_model(trunk, self.top_layers, self.adapter, self.lora_r,
                              self.lora_alpha, self.lora_dropout)
        return TopLayersModule(top, trunk.spec.pooling, trunk.hidden_size,
                               bf16=trunk.spec.precision == "bf16").to(trunk.spec.device)

    def _ridge_head(self, embeddings, z, rows):
        """The head set to the ridge of ``z`` on the frozen embeddings over ``rows``."""
        from sklearn.linear_model import RidgeCV

        from .predictors import _ALPHAS

        ridge = RidgeCV(alphas=np.asarray(_ALPHAS)).fit(np.asarray(embeddings)[rows], z[rows])
        self._head = (ridge.coef_.astype(np.float32), float(ridge.intercept_))
        with torch.no_grad():
            self.module_.head.weight.copy_(torch.as_tensor(self._head[0]).reshape(1, -1))
            self.module_.head.bias.fill_(self._head[1])
        return float(ridge.alpha_)

    def _net(self, valid, n_valid):
        """The skorch ``NeuralNet`` that trains ``module_`` (early stopping on ``valid``)."""
        from skorch import NeuralNet
        from skorch.callbacks import EarlyStopping, GradientNormClipping
        from skorch.helper import predefined_split

        loss = LOSSES[self.loss] if isinstance(self.loss, str) else self.loss
        lr = self.lr if self.lr is not None else (1e-3 if self.adapter == "lora" else 1e-4)
        net = NeuralNet(
            self.module_, criterion=loss, optimizer=torch.optim.AdamW, lr=lr,
            max_epochs=self.max_epochs, batch_size=self.batch_size,
            train_split=predefined_split(valid), device=get_trunk(self.trunk_spec()).spec.device,
            callbacks=[("clip", GradientNormClipping(1.0)),
                       ("stop", EarlyStopping(patience=self.patience, load_best=True))],
            iterator_train__shuffle=True, iterator_train__drop_last=True,
            iterator_train__collate_fn=_collate, iterator_valid__collate_fn=_collate,
            iterator_valid__batch_size=n_valid, verbose=self.verbose)
        return net.initialize()

    # ------------------------------------------------------------------ predict
    def _run(self, outputs, layer, rows, head_only=False):
        """Standardised predictions of ``rows`` of ``outputs``, in eval mode, longest texts
        first (less padding)."""
        if head_only:  # the warm start: the ridge on the frozen embedding
            return np.asarray(outputs.embeddings)[rows] @ self._head[0] + self._head[1]
        rows = np.asarray(rows)
        lengths = np.diff(outputs.offsets)[rows]
        order = np.argsort(-lengths, kind="stable")
        spec = get_trunk(self.trunk_spec()).spec
        out = np.empty(rows.size)
        self.module_.eval()
        with torch.inference_mode():
            for start in range(0, rows.size, _PREDICT_ROWS):
                part = order[start:start + _PREDICT_ROWS]
                x, _ = _collate([_States(outputs, layer, rows[part])[i] for i in range(part.size)],
                                pad_rows=True)
                x = {k: v.to(spec.device) for k, v in x.items()}
                out[part] = self.module_(**x)[:part.size].float().cpu().numpy()
        return out

    def predict_trunk(self, outputs):
        """Predictions (scale of ``y``) from a trunk pass ``outputs`` of the texts."""
        check_is_fitted(self, "module_")
        trunk = get_trunk(self.trunk_spec())
        with torch_threads(self.n_threads):
            z = self._run(outputs, self.trunk_layers(trunk)[0], np.arange(len(outputs)),
                          head_only=self.warm_start_kept_)
        return self.y_mean_ + self.y_scale_ * z

    def needs_states(self):
        """Whether prediction runs the top layers (False once the warm start was kept)."""
        check_is_fitted(self, "module_")
        return not self.warm_start_kept_

    def predict(self, X):
        """Predicted values, float64 of shape ``(n,)`` (on the scale of ``y``)."""
        check_is_fitted(self, "module_")
        texts = check_texts(X, "X")
        trunk = get_trunk(self.trunk_spec())
        with torch_threads(self.n_threads):
            outputs = trunk.run(texts, self.trunk_layers(trunk) if self.needs_states() else ())
        return self.predict_trunk(outputs)

    def score(self, X, y, sample_weight=None):
        """Shift-free R^2, ``1 - Var(y - y_hat) / Var(y)`` (what rectification sees)."""
        y = check_target(y, len(check_texts(X, "X")), "y")
        resid = y - self.predict(X)
        var_y = np.cov(y, aweights=sample_weight) if y.size > 1 else 0.0
        return float(1.0 - np.cov(resid, aweights=sample_weight) / var_y) if var_y > 0 else 0.0

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        return tags

    # ------------------------------------------------------------------ persistence
    def _weights(self):
        """What training changed: the trainable weights (LoRA or the top layers) and head."""
        return {name: p.detach().cpu().clone().contiguous()
                for name, p in self.module_.named_parameters() if p.requires_grad}

    def _rebuild(self, weights, fitted):
        for key in _FITTED:
            if key in fitted:
                setattr(self, key, fitted[key])
        trunk = get_trunk(self.trunk_spec())
        self.trunk_precision_ = trunk.spec.precision
        self.module_ = self._build(trunk)
        result = self.module_.load_state_dict(weights, strict=False)
        trainable = {n for n, p in self.module_.named_parameters() if p.requires_grad}
        if result.unexpected_keys or trainable - set(weights):
            raise ValueError(f"the saved weights do not fit backbone {self.backbone!r} with "
                             f"top_layers={self.top_layers} and adapter={self.adapter!r}")
        head = self.module_.head
        self._head = (head.weight.detach().cpu().numpy().reshape(-1).astype(np.float32),
                      float(head.bias.detach().cpu()))
        self.module_.eval()
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        if "module_" in state:
            state["module_"] = None
            state["_weights_"] = self._weights()
        return state

    def __setstate__(self, state):
        weights = state.pop("_weights_", None)
        self.__dict__.update(state)
        if weights is not None:
            self._rebuild(weights, state)

    def save_adapter(self, path):
        """Save the fitted model to the directory ``path`` without pickle: the trained
        weights as safetensors, the parameters and fitted state as JSON with the weights'
        sha256. Written atomically. Returns self."""
        from safetensors.torch import save_file

        check_is_fitted(self, "module_")
        params = {k: (os.fspath(v) if isinstance(v, os.PathLike) else v)
                  for k, v in self.get_params().items()
                  if v is None or isinstance(v, (str, int, float, bool, os.PathLike))}
        fitted = {key: getattr(self, key) for key in _FITTED if hasattr(self, key)}
        with atomic_path(path, directory=True) as tmp:
            save_file(self._weights(), str(tmp / _WEIGHTS_FILE), metadata={"format": "pt"})
            meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "params": params,
                    "fitted": fitted, "weights_sha256": file_sha256(tmp / _WEIGHTS_FILE)}
            (tmp / _META_FILE).write_text(json.dumps(meta, indent=2))
        return self

    def load_adapter(self, path):
        """Load a model written by :meth:`save_adapter` (no pickle); this estimator's own
        ``backbone``, when set, replaces the saved one. Returns self, fitted.

        Raises
        ------
        ValueError
            If ``path`` is not such a directory, or the weights do not fit the backbone.
        UntrustedFileError
            If a file is damaged or altered (sha256), naming it.
        """
        from safetensors.torch import load_file

        path = Path(path)
        weights_file, meta_file = path / _WEIGHTS_FILE, path / _META_FILE
        if not (weights_file.is_file() and meta_file.is_file()):
            raise ValueError(f"{str(path)!r} is not a directory written by save_adapter "
                             f"(needs {_WEIGHTS_FILE} and {_META_FILE})")
        try:
            meta = json.loads(meta_file.read_text())
            params, fitted = dict(meta["params"]), dict(meta["fitted"])
            ok = meta["format"] == _FORMAT and meta["format_version"] == _FORMAT_VERSION
        except (ValueError, KeyError, TypeError) as exc:
            raise UntrustedFileError(f"{str(meta_file)!r} is damaged: {exc}") from None
        if not ok:
            raise UntrustedFileError(f"{str(meta_file)!r} is not a {_FORMAT} file of format "
                                     f"version {_FORMAT_VERSION}")
        if file_sha256(weights_file) != meta.get("weights_sha256"):
            raise UntrustedFileError(f"{str(weights_file)!r} is damaged or altered: its sha256 "
                                     f"differs from the one recorded in {_META_FILE}")
        if self.backbone is not None:
            params.pop("backbone", None)
        self.set_params(**params)
        return self._rebuild(load_file(str(weights_file)), fitted)
