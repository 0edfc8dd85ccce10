"""LoRA fine-tuning of a language model as a scikit-learn regressor (docs/method.md §3).

:class:`LoRARegressor` is a skorch ``NeuralNetRegressor`` whose module is a frozen
transformers backbone with LoRA adapters (peft) and a linear head on its pooled token
states. skorch runs the training loop (optimizer, loss, callbacks, epoch table); this
class adds the fine-tune of Wang, Ye & Zhao (2025, §3): the head warm-started at the
ridge solution on the frozen features, a warm-up-then-decay learning rate, a step count
that grows with the data, and an inner held-out check against the warm start
(docs/method.md §3.2-3.3); plus text handling (tokenisation once, dynamic padding,
length grouping) and persistence as safetensors and JSON.
"""
import json
import math
import os
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from skorch import NeuralNetRegressor
from skorch.callbacks import LRScheduler
from skorch.utils import to_tensor
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ._atomic import atomic_path, file_sha256
from ._hf import (POOLINGS, default_pooling, pool, quiet, resolve_backbone, resolve_device,
                  seeded, torch_threads)
from ._inputs import resolve_size
from ._text import TextLoader, TokenDataset, check_target, check_texts, length_chunks
from .exceptions import ConstantPredictionWarning, SkftrDeprecationWarning, UntrustedFileError
from .losses import LOSSES

__all__ = ["LoRARegressor", "PooledRegressionModel", "WarmupDecay", "build_lora_model",
           "auto_target_modules"]

# Attention (and dense) projections per architecture family, tried in order.
_TARGET_MODULES = (
    ("query", "key", "value", "dense"),  # BERT, MiniLM, RoBERTa, ELECTRA
    ("q_proj", "k_proj", "v_proj", "o_proj"),  # Llama, SmolLM2, Qwen, Mistral, OPT
    ("q", "k", "v", "o"),  # MPNet, T5
    ("q_lin", "k_lin", "v_lin", "out_lin"),  # DistilBERT
    ("c_attn", "c_proj"),  # GPT-2
)
_WEIGHTS_FILE, _META_FILE = "adapter_model.safetensors", "skftr_adapter.json"
_FORMAT, _FORMAT_VERSION = "skftr.LoRARegressor", 2
# fitted state beyond the weights: restored by load_adapter and unpickling
_FITTED = ("y_mean_", "y_scale_", "seed_", "n_epochs_", "n_steps_", "warm_start_kept_",
           "holdout_variance_", "warm_start_variance_", "ridge_alpha_")
_MIN_HOLDOUT = 5  # fewer held-out rows than this: no inner check
# predictions with an sd below this share of sd(y) are "constant": they explain at most
# 0.01% of Var(y); a diverged fine-tune (tiny backbones at lr 0.1) measured 1e-3
_CONSTANT_SD = 1e-2


def auto_target_modules(model):
    """LoRA target modules for ``model``: its attention projections.

    ``query/key/value/dense`` for BERT-like encoders, ``q_proj/k_proj/v_proj/o_proj``
    for Llama-like decoders, ``q/k/v/o`` for MPNet (and a few other families);
    otherwise peft's default for the model type.

    Raises
    ------
    ValueError
        If the architecture is unknown: pass ``target_modules`` explicitly.
    """
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for family in _TARGET_MODULES:
        if set(family[:2]) <= names:
            return [name for name in family if name in names]
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_defaults

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in peft_defaults:
        return list(peft_defaults[model_type])
    raise ValueError(f"target_modules='auto' does not know the architecture {model_type!r}: "
                     "pass target_modules=[...] with the names of its attention projections")


class PooledRegressionModel(nn.Module):
    """A transformers backbone, a pooling of its last token states and a linear head.

    ``forward(input_ids, attention_mask)`` returns one float per row;
    :meth:`features` the pooled states that feed the head.
    """

    def __init__(self, backbone, pooling):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.head = nn.Linear(backbone.config.hidden_size, 1)

    def features(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(hidden, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask):
        return self.head(self.features(input_ids, attention_mask))[:, 0]


def build_lora_model(backbone, pooling="auto", lora_r=8, lora_alpha=16, lora_dropout=0.1,
                     target_modules="auto", **kwargs):
    """A :class:`PooledRegressionModel` whose backbone carries LoRA adapters.

    ``AutoModel.from_pretrained(backbone, local_files_only=True, **kwargs)``, then
    ``peft.inject_adapter_in_model``: the backbone is frozen, the low-rank updates
    (one matrix of each pair starts at zero, so the adapted model starts as the frozen
    one) and the head are trained.

    Parameters
    ----------
    backbone : str
        A local transformers directory (see :func:`skftr._hf.resolve_backbone`).
    pooling : {"auto", "mean", "cls", "last"}
        "auto": :func:`skftr._hf.default_pooling` (mean for encoders, last token for
        decoders).
    """
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import AutoModel

    model = AutoModel.from_pretrained(backbone, local_files_only=True, **kwargs)
    if pooling == "auto":
        pooling = default_pooling(model.config)
    model = PooledRegressionModel(model, pooling)
    if isinstance(target_modules, str) and target_modules == "auto":
        target_modules = auto_target_modules(model.backbone)
    config = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                        target_modules=list(target_modules))
    model = inject_adapter_in_model(config, model)
    model.head.requires_grad_(True)
    return model


class WarmupDecay:
    """Learning-rate factor at optimizer step ``t`` (a ``LambdaLR`` ``lr_lambda``).

    Linear warm-up from ``1 / warmup_steps`` to 1 over the first ``warmup_steps``, then
    ``"linear"`` decay to 0 at ``total_steps``, ``"cosine"`` decay
    ``(1 + cos(pi p)) / 2`` with ``p`` the share of the decay steps done, or
    ``"constant"``.
    """

    def __init__(self, warmup_steps=0, total_steps=0, schedule="constant"):
        self.warmup_steps, self.total_steps, self.schedule = warmup_steps, total_steps, schedule

    def __call__(self, step):
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - progress


class LoRARegressor(NeuralNetRegressor):
    """Fine-tune a language model with LoRA to predict a number from a text.

    A skorch ``NeuralNetRegressor``: ``fit(X, y)`` with ``X`` texts (list, ndarray,
    pandas Series or one-column DataFrame) and ``y`` floats; ``predict(X)`` returns
    float64 of shape ``(n,)``. The default loss is the error variance ``Var(y - f(X))``
    (Wang, Ye & Zhao 2025, §3; docs/method.md §3.1): predictions are then identified up
    to an additive constant, which rectification supplies.

    The fine-tune (docs/method.md §3.2-3.3):

    1. Targets are standardised (``(y - y_mean_) / y_scale_``); predictions are mapped back.
    2. Inner hold-out: a share ``holdout`` of the rows (at least 5, else no check) is
       set aside at random.
    3. Warm start (``head_init="ridge"``): the head starts at the ridge solution on the
       frozen pooled features of the other rows (``RidgeCV``, penalty by generalised
       cross-validation). LoRA starts at zero, so training begins at the frozen-embedding
       ridge predictor.
    4. Training: ``n_steps_ = clip(max_epochs * batches_per_epoch, min_steps, max_steps)``
       optimizer steps, rounded up to whole epochs, with a learning rate that warms up
       linearly over the first ``warmup`` share of the steps and then decays
       (``schedule``), stepped per batch by a skorch ``LRScheduler`` callback.
    5. Check: if the fine-tuned model's held-out residual variance is not below the warm
       start's, the fitted model *is* the warm start (LoRA at zero, ridge head refitted on
       all rows); ``warm_start_kept_`` records it.

    A fitted model whose predictions are (nearly) constant emits
    :class:`~skftr.exceptions.ConstantPredictionWarning`.

    Length grouping (``group_by_length=True``): training batches are random samples of
    rows (so a batch-centred loss still sees between-length differences), but each batch
    is run as length-sorted chunks padded to their own longest row; ``predict`` runs
    texts sorted by length and restores their order.

    Parameters
    ----------
    backbone : str or path, default=None
        A known backbone name (``"minilm"``, ``"mpnet"``, ``"smollm2-135m"``; see
        :mod:`skftr.backbones`) or a local model directory; None is all-MiniLM-L6-v2.
        Nothing is downloaded.
    gguf_file : str, default=None
        GGUF file name inside the ``backbone`` directory.
    lora_r, lora_alpha, lora_dropout : int, float, float, default=8, 16, 0.1
        LoRA rank, scaling and dropout.
    target_modules : "auto" or list of str, default="auto"
        Modules receiving LoRA; "auto" picks the attention (and dense) projections of
        the architecture (see :func:`auto_target_modules`).
    pooling : {"auto", "mean", "cls", "last"}, default="auto"
        What feeds the head: the mean of the token states (encoders, as the
        sentence-transformers backbones were trained), the first token, or the last
        token (decoders). "auto" chooses by architecture.
    max_length : int, default=256
        Texts are truncated to this many tokens.
    batch_size : int, default=16
        Rows per optimizer step (and per inference batch).
    max_epochs : int, default=8
        Epochs over the training rows, before the step bounds below: 0.5 steps per row
        at the default batch size.
    min_steps, max_steps : int, default=400, 2000
        Bounds on the number of optimizer steps. On EmoBank valence (MiniLM, warm start,
        1,000 held-out sentences) 400 steps beat 200 and 100 at 200 and 800 labels
        (benchmarks/results/warmstart.md).
    lr : float, default=1e-3
        Peak learning rate of the optimizer (AdamW by default).
    loss : {"variance", "mse", "correlation"} or torch module, default="variance"
        :class:`~skftr.losses.ErrorVarianceLoss`, :class:`~skftr.losses.MSELoss`,
        :class:`~skftr.losses.CorrelationLoss`, or any ``loss(y_pred, y_true)``
        module (class or instance).
    head_init : {"ridge", "random"}, default="ridge"
        Warm start of the head (step 3), or torch's random initialisation.
    holdout : float in [0, 1), default=0.15
        Share of the rows held out for the check of step 5; 0 trains on every row and
        keeps the fine-tuned model.
    warmup : float in [0, 1), default=0.1
        Share of the steps with a rising learning rate.
    schedule : {"linear", "cosine", "constant"}, default="linear"
        Learning-rate decay after the warm-up.
    n_threads : int, default=None
        Torch and BLAS threads during ``fit`` and ``predict``; None applies
        :func:`skftr._hf.default_threads` (never more threads than free cores).
    device : "auto", str or torch.device, default="auto"
        "auto" is CUDA when available, else CPU.
    random_state : int, RandomState or None, default=None
        Seeds the hold-out split, head and LoRA initialisation, dropout and shuffling;
        predictions are reproducible on CPU with a fixed value.
    prompt_template : str, default=None
        Format string with ``{text}``, e.g. ``"Review: {text}\\nScore:"``.
    group_by_length : bool, default=True
        Length grouping as described above (False: pad each batch to its longest row,
        keep the input order).
    verbose : int, default=0
        skorch's epoch table and a progress bar in ``predict`` when positive; silent
        (transformers' reports included) at 0.
    criterion : deprecated
        Old name of ``loss``; when set it is used in its place, with a
        :class:`~skftr.exceptions.SkftrDeprecationWarning`.
    **kwargs
        skorch's own parameters (``optimizer``, ``callbacks``, ``train_split``,
        ``warm_start`` (continue training from the fitted weights, without the warm
        start and the check), ``module__*`` passed to ``from_pretrained``,
        ``optimizer__*``, ``iterator_train__*``, ...).

    Attributes
    ----------
    module_ : PooledRegressionModel
    tokenizer_ : transformers tokenizer
    y_mean_, y_scale_ : float
        Target standardisation.
    n_epochs_, n_steps_ : int
        Epochs and optimizer steps run by the last ``fit``.
    warm_start_kept_ : bool
        True when the held-out check kept the warm start.
    holdout_variance_, warm_start_variance_ : float
        Held-out residual variances ``Var(y - f)`` (scale of ``y``) of the fine-tuned
        model and of the warm start; NaN without a check.
    ridge_alpha_ : float
        Penalty of the ridge warm start (NaN with ``head_init="random"``).
    device_ : str
        The device in use.
    """

    _parameter_constraints = {
        "backbone": [str, os.PathLike, None],
        "gguf_file": [str, None],
        "lora_r": [Interval(Integral, 1, None, closed="left")],
        "lora_alpha": [Interval(Real, 0, None, closed="neither")],
        "lora_dropout": [Interval(Real, 0, 1, closed="left")],
        "target_modules": [StrOptions({"auto"}), list, tuple],
        "pooling": [StrOptions({"auto", *POOLINGS})],
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "min_steps": [Interval(Integral, 0, None, closed="left")],
        "max_steps": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "loss": [StrOptions(set(LOSSES)), callable],
        "head_init": [StrOptions({"ridge", "random"})],
        "holdout": [Interval(Real, 0, 1, closed="left")],
        "warmup": [Interval(Real, 0, 1, closed="left")],
        "schedule": [StrOptions({"linear", "cosine", "constant"})],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "device": [StrOptions({"auto"}), str, torch.device, None],
        "random_state": ["random_state"],
        "prompt_template": [str, None],
        "group_by_length": ["boolean"],
        "verbose": ["verbose"],
        "criterion": [StrOptions(set(LOSSES)), callable, None],
    }

    def __init__(self, backbone=None, *, gguf_file=None, lora_r=8, lora_alpha=16, lora_dropout=0.1,
                 target_modules="auto", pooling="auto", max_length=256, batch_size=16, max_epochs=8,
                 min_steps=400, max_steps=2000, lr=1e-3, loss="variance", head_init="ridge",
                 holdout=0.15, warmup=0.1, schedule="linear", n_threads=None, device="auto",
                 random_state=None, prompt_template=None, group_by_length=True, verbose=0,
                 criterion=None, **kwargs):
        kwargs.setdefault("optimizer", torch.optim.AdamW)
        kwargs.setdefault("iterator_train", TextLoader)
        kwargs.setdefault("iterator_valid", TextLoader)
        kwargs.setdefault("iterator_train__shuffle", True)
        kwargs.setdefault("train_split", None)
        super().__init__(kwargs.pop("module", build_lora_model), criterion=criterion, lr=lr,
                         max_epochs=max_epochs, batch_size=batch_size, device=device, verbose=verbose,
                         **kwargs)
        self.backbone = backbone
        self.gguf_file = gguf_file
        self.lora_r = lora_r
        self.lora_alpha = lora_alpha
        self.lora_dropout = lora_dropout
        self.target_modules = target_modules
        self.pooling = pooling
        self.max_length = max_length
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.loss = loss
        self.head_init = head_init
        self.holdout = holdout
        self.warmup = warmup
        self.schedule = schedule
        self.n_threads = n_threads
        self.random_state = random_state
        self.prompt_template = prompt_template
        self.group_by_length = group_by_length

    def __setattr__(self, name, value):
        if name == "loss":  # a loss module is a parameter; skorch registers torch modules
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        params = {key: getattr(self, key) for key in self._parameter_constraints}
        validate_parameter_constraints(self._parameter_constraints, params, caller_name=type(self).__name__)
        if self.criterion is not None:
            warnings.warn("LoRARegressor(criterion=...) is deprecated: use loss=... (it is used "
                          "in place of loss for now)", SkftrDeprecationWarning, stacklevel=3)
        if self.prompt_template is not None:
            try:
                self.prompt_template.format(text="")
            except (KeyError, IndexError, ValueError):
                raise ValueError("prompt_template must contain '{text}' and no other field, "
                                 f"got {self.prompt_template!r}") from None
            if "{text}" not in self.prompt_template:
                raise ValueError(f"prompt_template must contain '{{text}}', got {self.prompt_template!r}")

    # ------------------------------------------------------------ initialise
    def get_default_callbacks(self):
        """skorch's defaults plus ``lr_schedule``: a per-batch ``LambdaLR`` whose
        :class:`WarmupDecay` factor ``fit`` sets from the step count."""
        schedule = LRScheduler(policy=LambdaLR, lr_lambda=WarmupDecay(), step_every="batch",
                               event_name=None)
        return [*super().get_default_callbacks(), ("lr_schedule", schedule)]

    def initialize(self):
        """Validate the parameters, then build module, loss and optimizer (seeded)."""
        self._check_params()
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.device_ = resolve_device(self.device)
        requested, self.device = self.device, self.device_  # skorch moves modules to .device
        try:
            super().initialize()
        finally:
            self.device = requested
        return self

    def initialize_module(self):
        """Load tokenizer and backbone (offline), add LoRA and the head (seeded)."""
        from transformers import AutoTokenizer

        backbone = resolve_backbone(self.backbone, self.gguf_file)
        try:
            with quiet(self.verbose):
                tokenizer = AutoTokenizer.from_pretrained(backbone, local_files_only=True)
                if tokenizer.pad_token is None:
                    if tokenizer.eos_token is None:
                        raise ValueError(f"the tokenizer of {backbone!r} has neither a pad nor an eos token")
                    tokenizer.pad_token = tokenizer.eos_token
                tokenizer.padding_side = "right"
                with seeded(self.seed_, self.device_):
                    module = self.module(
                        backbone, pooling=self.pooling, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
                        lora_dropout=self.lora_dropout, target_modules=self.target_modules,
                        **self.get_params_for("module"))
        except OSError as exc:
            raise ValueError(f"could not load backbone {backbone!r}: {exc}") from exc
        self.tokenizer_ = tokenizer
        self.module_ = module.to(self.device_)
        return self

    def initialize_criterion(self):
        """The loss as a module: a name from :data:`skftr.losses.LOSSES`, a class or an
        instance (``criterion``, deprecated, in place of ``loss`` when set)."""
        loss = self.loss if self.criterion is None else self.criterion
        loss = LOSSES[loss] if isinstance(loss, str) else loss
        self.criterion_ = self.initialized_instance(loss, self.get_params_for("criterion"))
        return self

    def get_all_learnable_params(self):
        """Only the trainable parameters (LoRA matrices and the head) go to the optimizer."""
        for name, param in super().get_all_learnable_params():
            if param.requires_grad:
                yield name, param

    # ------------------------------------------------------------ data
    def _encode(self, texts):
        """Token ids of each text (prompt applied, truncated to max_length): tokenised once."""
        if self.prompt_template is not None:
            texts = [self.prompt_template.format(text=text) for text in texts]
        return self.tokenizer_(texts, truncation=True, max_length=self.max_length)["input_ids"]

    def get_iterator(self, dataset, training=False):
        """skorch iterator with the pad id, the loss's minimum batch size and the seeded
        shuffling generator (training) filled in."""
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if isinstance(iterator, type) and issubclass(iterator, TextLoader):
            kwargs.setdefault("pad_token_id", self.tokenizer_.pad_token_id)
            kwargs.setdefault("min_batch_size", getattr(self.criterion_, "min_batch_size", 1))
            # a generator of its own: iterating never draws from the caller's torch RNG
            rng = getattr(self, "rng_", None) if training else None
            kwargs.setdefault("generator", rng if rng is not None else torch.Generator())
        return iterator(dataset, **kwargs)

    # ------------------------------------------------------------ forward
    def _forward_ids(self, input_ids, attention_mask, features=False):
        width = int(attention_mask.sum(1).max())
        input_ids, attention_mask = input_ids[:, :width], attention_mask[:, :width]
        if features:
            return self.module_.features(input_ids, attention_mask).float()
        return self.module_(input_ids, attention_mask).float()

    def infer(self, x, **fit_params):
        """One prediction per row. In training with ``group_by_length`` the batch runs
        as length-sorted chunks (less padding); outputs keep the row order."""
        x = to_tensor(x, device=self.device_)
        input_ids, attention_mask = x["input_ids"], x["attention_mask"]
        if self.group_by_length and self.module_.training and len(input_ids) > 1:
            chunks = length_chunks(attention_mask.sum(1))
            if len(chunks) > 1:
                out = torch.cat([self._forward_ids(input_ids[c], attention_mask[c]) for c in chunks])
                return out[torch.argsort(torch.cat(chunks))]
        return self._forward_ids(input_ids, attention_mask)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(y_pred, to_tensor(y_true, device=self.device_))

    def _run(self, input_ids, features=False):
        """Eval-mode outputs for token ids, in their order: predictions on the
        standardised scale, or (``features=True``) the pooled states feeding the head.
        Rows run sorted by length (longest first) with a progress bar when ``verbose``."""
        from tqdm.auto import tqdm

        lengths = np.fromiter(map(len, input_ids), dtype=np.int64, count=len(input_ids))
        order = np.argsort(-lengths, kind="stable") if self.group_by_length else np.arange(len(input_ids))
        loader = self.get_iterator(TokenDataset([input_ids[i] for i in order]), training=False)
        self.module_.eval()
        outputs = []
        with torch.inference_mode(), tqdm(total=len(order), desc="predict", unit="text",
                                          disable=not self.verbose, leave=False) as bar:
            for x, _ in loader:
                x = to_tensor(x, device=self.device_)
                outputs.append(self._forward_ids(x["input_ids"], x["attention_mask"], features).cpu().numpy())
                bar.update(len(outputs[-1]))
        out = np.concatenate(outputs).astype(np.float64)
        result = np.empty_like(out)
        result[order] = out
        return result

    # ------------------------------------------------------------ weights
    def _weights(self):
        """The trained weights, LoRA matrices (peft's state dict) and head, on the CPU."""
        from peft import get_peft_model_state_dict

        state = dict(get_peft_model_state_dict(self.module_))
        state.update({f"head.{k}": v for k, v in self.module_.head.state_dict().items()})
        return {k: v.detach().cpu().clone().contiguous() for k, v in state.items()}

    def _load_weights(self, state):
        """Put weights from :meth:`_weights` into ``module_``."""
        from peft import set_peft_model_state_dict

        head = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
        lora = {k: v for k, v in state.items() if not k.startswith("head.")}
        try:
            self.module_.head.load_state_dict(head)
            result = set_peft_model_state_dict(self.module_, lora)
        except RuntimeError as exc:  # missing keys or shapes: another backbone or rank
            raise ValueError(f"the saved weights do not fit backbone {self.backbone!r}: {exc}") from exc
        if getattr(result, "unexpected_keys", []):
            raise ValueError(f"the saved weights do not fit the model: unexpected weights "
                             f"{result.unexpected_keys[:3]}")

    def _set_head(self, coef, intercept):
        with torch.no_grad():
            self.module_.head.weight.copy_(torch.as_tensor(coef, dtype=torch.float32).reshape(1, -1))
            self.module_.head.bias.fill_(float(intercept))

    # ------------------------------------------------------------ fit / predict
    def fit(self, X, y, **fit_params):
        """Fine-tune on texts ``X`` and targets ``y`` (steps 1-5 of the class docstring).

        Parameters
        ----------
        X : list, ndarray, pandas Series of str, or one-column DataFrame
        y : array-like of float, shape (n,)
        **fit_params
            Passed to skorch's ``partial_fit``.

        Returns
        -------
        self
        """
        texts = check_texts(X, "X")
        y = check_target(y, len(texts), "y")
        if len(texts) < 2:
            raise ValueError(f"fit needs at least 2 training texts, got {len(texts)}")
        with torch_threads(self.n_threads):
            if self.warm_start and self.initialized_:  # skorch's: continue training
                self._train(self._encode(texts), (y - self.y_mean_) / self.y_scale_, fit_params)
            else:
                self._fine_tune(texts, y, fit_params)
            self._warn_if_constant(self._run(self._encode(texts[:64])))
        return self

    def _fine_tune(self, texts, y, fit_params):
        self.initialize()
        self.y_mean_ = float(y.mean())
        self.y_scale_ = float(y.std()) if y.std() > 0 else 1.0
        z = (y - self.y_mean_) / self.y_scale_
        ids = self._encode(texts)
        n_hold = resolve_size(self.holdout, len(ids), "holdout") if self.holdout else 0
        rows = np.random.default_rng(self.seed_).permutation(len(ids))
        hold, train = (rows[:n_hold], rows[n_hold:]) if n_hold >= _MIN_HOLDOUT else (rows[:0], rows)
        initial = self._weights()
        features = self._run(ids, features=True) if self.head_init == "ridge" else None
        self.ridge_alpha_ = self._ridge_head(features, z, train)
        warm = self._run([ids[i] for i in hold]) if hold.size else None
        self._train([ids[i] for i in train], z[train], fit_params)
        self.warm_start_kept_ = False
        self.holdout_variance_ = self.warm_start_variance_ = float("nan")
        if hold.size:
            tuned = self._run([ids[i] for i in hold])
            self.warm_start_variance_ = float(np.var(z[hold] - warm, ddof=1)) * self.y_scale_**2
            self.holdout_variance_ = float(np.var(z[hold] - tuned, ddof=1)) * self.y_scale_**2
            if not self.holdout_variance_ < self.warm_start_variance_:
                self.warm_start_kept_ = True
                self._load_weights(initial)  # LoRA back to zero
                self.ridge_alpha_ = self._ridge_head(features, z, rows)

    def _ridge_head(self, features, z, rows):
        """Set the head to the ridge fit (``RidgeCV``, GCV) of ``z`` on ``features`` over
        ``rows``; return its penalty (NaN and no change when ``features`` is None)."""
        if features is None:
            return float("nan")
        from sklearn.linear_model import RidgeCV

        from .predictors import _ALPHAS

        ridge = RidgeCV(alphas=np.asarray(_ALPHAS)).fit(features[rows], z[rows])
        self._set_head(ridge.coef_, ridge.intercept_)
        return float(ridge.alpha_)

    def _train(self, ids, z, fit_params):
        """Run the optimizer steps of step 4 on token ids and standardised targets."""
        min_batch = getattr(self.criterion_, "min_batch_size", 1)
        loss = self.loss if self.criterion is None else self.criterion
        if self.batch_size != -1 and self.batch_size < min_batch:
            raise ValueError(f"loss {loss!r} needs batch_size >= {min_batch}, got {self.batch_size}")
        dataset = TokenDataset(ids, z)
        train_part, _ = self.get_split_datasets(dataset, None)
        if len(train_part) < min_batch:
            raise ValueError(f"the training part has {len(train_part)} row(s); loss {loss!r} "
                             f"needs at least {min_batch}")
        with seeded(self.seed_ + 1, self.device_):
            self.rng_ = torch.Generator().manual_seed(self.seed_ + 2)
            batches = max(1, len(self.get_iterator(train_part, training=True)))
            steps = min(self.max_steps, max(self.min_steps, self.max_epochs * batches))
            self.n_epochs_ = max(1, math.ceil(steps / batches))
            self.n_steps_ = self.n_epochs_ * batches
            schedule = dict(self.callbacks_).get("lr_schedule")
            if schedule is not None:
                schedule.set_params(lr_lambda=WarmupDecay(round(self.warmup * self.n_steps_),
                                                          self.n_steps_, self.schedule))
            self.partial_fit(dataset, None, epochs=self.n_epochs_, **fit_params)

    def _warn_if_constant(self, pred):
        if len(pred) > 1 and np.std(pred) < _CONSTANT_SD:  # standardised scale: sd(y) = 1
            warnings.warn(f"the fitted LoRARegressor predicts (nearly) the same value for every "
                          f"text (sd {np.std(pred) * self.y_scale_:.3g}, sd(y) {self.y_scale_:.3g}): "
                          "it carries no signal; lower lr, or keep holdout > 0 so that the warm "
                          "start can be kept", ConstantPredictionWarning, stacklevel=3)

    def _check_fitted(self):
        check_is_fitted(self, ["module_", "y_mean_", "y_scale_"])

    def predict(self, X):
        """Predicted values, float64 of shape ``(n,)`` (on the scale of ``y``).

        Texts are tokenised once and run sorted by length (longest first), then put
        back in input order; a progress bar shows when ``verbose``.
        """
        self._check_fitted()
        texts = check_texts(X, "X")
        with torch_threads(self.n_threads):
            return self.y_mean_ + self.y_scale_ * self._run(self._encode(texts))

    def score(self, X, y, sample_weight=None):
        """Shift-free R^2: ``1 - Var(y - y_hat) / Var(y)``.

        The share of the variance of ``y`` that the predictions remove up to a constant
        shift, i.e. the error variance that rectification sees (docs/method.md §2-3).
        Unlike the usual R^2 it does not penalise the arbitrary level of a
        variance-trained model; it is what ``GridSearchCV`` maximises by default.
        """
        y = check_target(y, len(check_texts(X, "X")), "y")
        resid = y - self.predict(X)
        var_resid = np.cov(resid, aweights=sample_weight) if len(y) > 1 else 0.0
        var_y = np.cov(y, aweights=sample_weight) if len(y) > 1 else 0.0
        return float(1.0 - var_resid / var_y) if var_y > 0 else 0.0

    # ------------------------------------------------------------ persistence
    def _rebuild(self, weights, fitted):
        """The fitted regressor from its parameters, weights and fitted state: the module
        is rebuilt from the backbone by skorch's ``initialize()``."""
        self.initialize()
        self._load_weights(weights)
        self.module_.eval()
        for key in _FITTED:
            if key in fitted:
                setattr(self, key, fitted[key])
        return self

    def __getstate__(self):
        # The backbone stays on disk: pickle keeps the LoRA and head weights and
        # rebuilds everything else from the parameters on load.
        state = self.__dict__.copy()
        for key in ("module_", "optimizer_", "criterion_", "callbacks_", "tokenizer_", "rng_"):
            state.pop(key, None)
        if "module_" in self.__dict__:
            state["_weights_"] = self._weights()
        return state

    def __setstate__(self, state):
        weights = state.pop("_weights_", None)
        history, state["history_"] = state.get("history_"), None  # initialize() would clear it
        self.__dict__.update(state)
        if weights is not None:
            with warnings.catch_warnings():  # a deprecated criterion warned when it was fitted
                warnings.simplefilter("ignore", SkftrDeprecationWarning)
                self._rebuild(weights, state)
        self.history_ = history

    def save_adapter(self, path):
        """Save the fitted regressor to the directory ``path`` without pickle.

        ``adapter_model.safetensors`` holds the LoRA and head weights;
        ``skftr_adapter.json`` the parameters, the fitted state (target scaling, steps,
        warm-start check) and the sha256 of the weights. The directory is written
        atomically. Returns self.
        """
        from safetensors.torch import save_file

        self._check_fitted()
        keep = set(self._parameter_constraints) - {"criterion"}
        params = {}
        for key, value in self.get_params(deep=False).items():
            if key in keep and (value is None or isinstance(value, (str, int, float, bool))):
                params[key] = value
            elif key in keep and isinstance(value, (list, tuple)):
                params[key] = list(value)
        params["backbone"] = None if self.backbone is None else os.fspath(self.backbone)
        fitted = {key: getattr(self, key) for key in _FITTED if hasattr(self, key)}
        with atomic_path(path, directory=True) as tmp:
            save_file(self._weights(), str(tmp / _WEIGHTS_FILE), metadata={"format": "pt"})
            meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "params": params,
                    "fitted": fitted, "weights_sha256": file_sha256(tmp / _WEIGHTS_FILE)}
            (tmp / _META_FILE).write_text(json.dumps(meta, indent=2))
        return self

    def load_adapter(self, path):
        """Load a regressor written by :meth:`save_adapter` (no pickle).

        The saved parameters are restored, except the backbone when this estimator
        names one itself (to follow a moved model directory). Returns self, fitted.

        Raises
        ------
        ValueError
            If ``path`` is not such a directory, or the weights do not fit the backbone.
        UntrustedFileError
            If the JSON or the weights file is damaged or altered, naming the file.
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
        weights = load_file(str(weights_file))  # its sha256 matched: a whole safetensors file
        if self.backbone is not None:
            params.pop("backbone", None)
            params.pop("gguf_file", None)
        self.set_params(**params)
        return self._rebuild(weights, fitted)

