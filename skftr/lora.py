"""LoRA fine-tuning of a language model as a scikit-learn regressor (METHOD.md §3).

:class:`LoRARegressor` is a skorch ``NeuralNetRegressor`` whose module is a
transformers ``AutoModelForSequenceClassification(num_labels=1)`` wrapped in a
peft LoRA adapter (the regression head is trained in full). skorch runs the
training loop (optimizer, criterion, callbacks, epoch table); this class adds
text handling: tokenisation once per ``fit``/``predict``, dynamic padding,
length grouping, target standardisation and adapter persistence.
"""
import io
import json
import math
import os
import re
import warnings
from contextlib import contextmanager, redirect_stderr
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from skorch import NeuralNetRegressor
from skorch.utils import to_tensor
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils.validation import check_is_fitted

from ._text import TextLoader, TokenDataset, check_target, check_texts, length_chunks
from .losses import CRITERIA

__all__ = ["LoRARegressor", "build_lora_model", "auto_target_modules"]

# Attention (and dense) projections per architecture family, tried in order.
_TARGET_MODULES = (
    ("query", "key", "value", "dense"),  # BERT, MiniLM, RoBERTa, ELECTRA
    ("q_proj", "k_proj", "v_proj", "o_proj"),  # Llama, SmolLM2, Qwen, Mistral, OPT
    ("q_lin", "k_lin", "v_lin", "out_lin"),  # DistilBERT
    ("c_attn", "c_proj"),  # GPT-2
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_META_FILE = "skftr_adapter.json"


def auto_target_modules(model):
    """LoRA target modules for ``model``: its attention projections.

    ``query/key/value/dense`` for BERT-like encoders, ``q_proj/k_proj/v_proj/
    o_proj`` for Llama-like decoders (and a few other families); otherwise
    peft's default for the model type.

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

    model_type = getattr(model.config, "model_type", None)
    if model_type in peft_defaults:
        return list(peft_defaults[model_type])
    raise ValueError(f"target_modules='auto' does not know the architecture {model_type!r}: "
                     "pass target_modules=[...] with the names of its attention projections")


def build_lora_model(backbone, gguf_file=None, lora_r=8, lora_alpha=16, lora_dropout=0.1,
                     target_modules="auto", pad_token_id=None, **kwargs):
    """A regression model with one output, wrapped in a LoRA adapter.

    ``AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1,
    **kwargs)`` (pooling: the first token through the pooler for BERT-like
    encoders, the last non-pad token for decoders), then
    ``peft.get_peft_model`` with ``task_type="SEQ_CLS"`` so the new head is
    trained in full alongside the low-rank updates.

    Returns
    -------
    peft.PeftModel
    """
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1, **kwargs)
    if pad_token_id is not None:
        # decoders pool the last token that is not padding: the model and the
        # collator must agree on the pad id
        model.config.pad_token_id = pad_token_id
    if isinstance(target_modules, str) and target_modules == "auto":
        target_modules = auto_target_modules(model)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora_r, lora_alpha=lora_alpha,
                        lora_dropout=lora_dropout, target_modules=target_modules)
    return get_peft_model(model, config)


_GGUF_DIRS = {}  # (directory, gguf_file) -> TemporaryDirectory holding its conversion


def _gguf_as_directory(directory, gguf_file):
    """Dequantise a GGUF checkpoint once per process into a temporary
    transformers directory (base model + tokenizer), so that later fits and
    unpickling load it in about a second instead of converting again."""
    key = (os.path.abspath(directory), gguf_file)
    if key not in _GGUF_DIRS:
        import tempfile

        from safetensors.torch import save_file
        from transformers import AutoModel, AutoTokenizer

        tmp = tempfile.TemporaryDirectory(prefix="skftr-gguf-")
        AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file).save_pretrained(tmp.name)
        model = AutoModel.from_pretrained(directory, gguf_file=gguf_file)
        # transformers refuses save_pretrained on GGUF-loaded models: write the
        # dequantised weights and a config without the quantisation entry
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  os.path.join(tmp.name, "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        with open(os.path.join(tmp.name, "config.json"), "w") as fh:
            json.dump(config, fh)
        _GGUF_DIRS[key] = tmp
    return _GGUF_DIRS[key].name


def _resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available; use device='auto' or 'cpu'")
    return device


@contextmanager
def _quiet(verbose):
    """Silence transformers' load reports, progress bars (GGUF conversion
    included) and warnings."""
    if verbose:
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(), redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@contextmanager
def _seeded(seed, device):
    """Seed torch inside the block, leaving the caller's RNG state untouched."""
    devices = [torch.device(device).index or 0] if device and torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class LoRARegressor(NeuralNetRegressor):
    """Fine-tune a language model with LoRA to predict a number from a text.

    A skorch ``NeuralNetRegressor``: ``fit(X, y)`` with ``X`` texts (list,
    ndarray, pandas Series or one-column DataFrame) and ``y`` floats;
    ``predict(X)`` returns float64 of shape ``(n,)``. The default objective is
    the error variance ``Var(y - f(X))`` (METHOD.md §3): predictions are then
    identified up to an additive constant, which rectification supplies.

    Targets are standardised internally (``(y - y_mean_) / y_scale_``), the
    model is trained on that scale and predictions are mapped back.

    Training length: ``n_epochs_ = max(max_epochs, ceil(min_steps /
    batches_per_epoch))``, so small training sets still get ``min_steps``
    optimizer steps (with a fixed 4 epochs, 100 texts are only ~28 steps).

    Length grouping (``group_by_length=True``): training batches are random
    samples of rows (so a batch-centred loss still sees between-length
    differences), but each batch is run as length-sorted chunks padded to
    their own longest row; ``predict`` runs texts sorted by length and
    restores their order.

    Parameters
    ----------
    backbone : str or path, default=None
        Local model directory (or hub id available offline); None is
        all-MiniLM-L6-v2 from :func:`skftr.backbones.minilm`.
    gguf_file : str, default=None
        GGUF file name inside ``backbone`` (e.g. from
        :func:`skftr.backbones.smollm2_135m`).
    lora_r, lora_alpha, lora_dropout : int, float, float, default=8, 16, 0.1
        LoRA rank, scaling and dropout.
    target_modules : "auto" or list of str, default="auto"
        Modules receiving LoRA; "auto" picks the attention (and dense)
        projections of the architecture (see :func:`auto_target_modules`).
    max_length : int, default=256
        Texts are truncated to this many tokens.
    batch_size : int, default=16
        Rows per optimizer step (and per inference batch unless
        ``iterator_valid__batch_size`` is set).
    max_epochs : int, default=4
        Passes over the training set (raised to reach ``min_steps``).
    min_steps : int, default=200
        Minimum number of optimizer steps.
    lr : float, default=1e-3
        Learning rate of the optimizer (AdamW by default).
    criterion : {"variance", "mse", "correlation"} or torch module, default="variance"
        :class:`~skftr.losses.ErrorVarianceLoss`, :class:`~skftr.losses.MSELoss`,
        :class:`~skftr.losses.CorrelationLoss`, or any ``loss(y_pred, y_true)``
        module (class or instance).
    device : "auto", str or torch.device, default="auto"
        "auto" is CUDA when available, else CPU.
    random_state : int, RandomState or None, default=None
        Seeds the head and LoRA initialisation, dropout and shuffling;
        results are reproducible on CPU with a fixed value.
    prompt_template : str, default=None
        Format string with ``{text}``, e.g. ``"Review: {text}\\nScore:"``.
    group_by_length : bool, default=True
        Length grouping as described above (False: pad each batch to its
        longest row, keep the input order).
    verbose : int, default=0
        skorch's epoch table and a progress bar in ``predict`` when positive;
        silent (transformers' reports included) at 0.
    **kwargs
        skorch's own parameters (``optimizer``, ``callbacks``,
        ``train_split``, ``warm_start``, ``module__*`` passed to
        ``from_pretrained``, ``optimizer__*``, ``iterator_train__*``, ...).

    Attributes
    ----------
    module_ : peft.PeftModel
    tokenizer_ : transformers tokenizer
    y_mean_, y_scale_ : float
        Target standardisation.
    n_epochs_ : int
        Epochs run by the last ``fit``.
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
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "min_steps": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "criterion": [StrOptions(set(CRITERIA)), callable],
        "device": [StrOptions({"auto"}), str, torch.device, None],
        "random_state": ["random_state"],
        "prompt_template": [str, None],
        "group_by_length": ["boolean"],
        "verbose": ["verbose"],
    }

    def __init__(self, backbone=None, *, gguf_file=None, lora_r=8, lora_alpha=16, lora_dropout=0.1,
                 target_modules="auto", max_length=256, batch_size=16, max_epochs=4, min_steps=200,
                 lr=1e-3, criterion="variance", device="auto", random_state=None, prompt_template=None,
                 group_by_length=True, verbose=0, **kwargs):
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
        self.max_length = max_length
        self.min_steps = min_steps
        self.random_state = random_state
        self.prompt_template = prompt_template
        self.group_by_length = group_by_length

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        params = {key: getattr(self, key) for key in self._parameter_constraints}
        validate_parameter_constraints(self._parameter_constraints, params, caller_name=type(self).__name__)
        if self.prompt_template is not None:
            try:
                self.prompt_template.format(text="")
            except (KeyError, IndexError, ValueError):
                raise ValueError("prompt_template must contain '{text}' and no other field, "
                                 f"got {self.prompt_template!r}") from None
            if "{text}" not in self.prompt_template:
                raise ValueError(f"prompt_template must contain '{{text}}', got {self.prompt_template!r}")
        if self.gguf_file is not None and self.backbone is None:
            raise ValueError("gguf_file needs backbone: the directory holding the GGUF file")

    def _resolve_backbone(self):
        """(path or hub id, gguf_file), checked before transformers sees it."""
        if self.backbone is None:
            from .backbones import minilm

            return minilm(), None
        path = os.fspath(self.backbone)
        if os.path.isdir(path):
            if self.gguf_file is not None:
                if not os.path.isfile(os.path.join(path, self.gguf_file)):
                    raise ValueError(f"gguf_file {self.gguf_file!r} not found in backbone directory {path!r}")
            elif not os.path.isfile(os.path.join(path, "config.json")):
                raise ValueError(f"backbone directory {path!r} has no config.json "
                                 "(for a GGUF checkpoint pass gguf_file=...)")
            return path, self.gguf_file
        if os.path.exists(path):
            raise ValueError(f"backbone must be a model directory, got the file {path!r}")
        if _HUB_ID.fullmatch(path) and not os.path.isabs(path):
            return path, self.gguf_file
        raise ValueError(f"backbone {path!r} is neither an existing model directory nor a hub model id")

    # ------------------------------------------------------------ initialise
    @contextmanager
    def _on_device(self):
        """Resolve ``device`` ("auto") into ``device_`` and let skorch, which
        moves modules to ``self.device``, see the resolved value meanwhile."""
        self.device_ = _resolve_device(self.device)
        requested, self.device = self.device, self.device_
        try:
            yield
        finally:
            self.device = requested

    def initialize(self):
        """Validate the parameters, then build module, criterion and optimizer."""
        self._check_params()
        self.seed_ = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with self._on_device():
            super().initialize()
        return self

    def initialize_module(self):
        """Load tokenizer and backbone, wrap the backbone in LoRA (seeded)."""
        backbone, gguf_file = self._resolve_backbone()
        from transformers import AutoTokenizer

        try:
            with _quiet(self.verbose):
                if gguf_file is not None:
                    backbone, gguf_file = _gguf_as_directory(backbone, gguf_file), None
                tokenizer = AutoTokenizer.from_pretrained(backbone)
                if tokenizer.pad_token is None:
                    if tokenizer.eos_token is None:
                        raise ValueError(f"the tokenizer of {backbone!r} has neither a pad nor an eos token")
                    tokenizer.pad_token = tokenizer.eos_token
                tokenizer.padding_side = "right"
                with _seeded(self.seed_, self.device_):
                    module = self.module(
                        backbone, gguf_file=gguf_file, lora_r=self.lora_r, lora_alpha=self.lora_alpha,
                        lora_dropout=self.lora_dropout, target_modules=self.target_modules,
                        pad_token_id=tokenizer.pad_token_id, **self.get_params_for("module"))
        except OSError as exc:
            raise ValueError(f"could not load backbone {backbone!r}: {exc}") from exc
        self.tokenizer_ = tokenizer
        self.module_ = module.to(self.device_)
        return self

    def initialize_criterion(self):
        """``criterion`` as a module: a name from :data:`skftr.losses.CRITERIA`, a class or an instance."""
        criterion = CRITERIA[self.criterion] if isinstance(self.criterion, str) else self.criterion
        self.criterion_ = self.initialized_instance(criterion, self.get_params_for("criterion"))
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
        """skorch iterator with the pad id, the criterion's minimum batch size
        and the seeded shuffling generator filled in."""
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs.setdefault("batch_size", self.batch_size)
        if kwargs["batch_size"] == -1:
            kwargs["batch_size"] = len(dataset)
        if isinstance(iterator, type) and issubclass(iterator, TextLoader):
            kwargs.setdefault("pad_token_id", self.tokenizer_.pad_token_id)
            kwargs.setdefault("min_batch_size", getattr(self.criterion_, "min_batch_size", 1))
            if training and getattr(self, "rng_", None) is not None:
                kwargs.setdefault("generator", self.rng_)
        return iterator(dataset, **kwargs)

    # ------------------------------------------------------------ forward
    def _forward_ids(self, input_ids, attention_mask, **kwargs):
        width = int(attention_mask.sum(1).max())
        out = self.module_(input_ids=input_ids[:, :width], attention_mask=attention_mask[:, :width], **kwargs)
        return out.logits[:, 0].float()

    def infer(self, x, **fit_params):
        """One prediction per row. In training with ``group_by_length`` the
        batch runs as length-sorted chunks (less padding); outputs keep the
        row order."""
        x = to_tensor(x, device=self.device_)
        input_ids, attention_mask = x["input_ids"], x["attention_mask"]
        if self.group_by_length and self.module_.training and len(input_ids) > 1:
            chunks = length_chunks(attention_mask.sum(1))
            if len(chunks) > 1:
                out = torch.cat([self._forward_ids(input_ids[c], attention_mask[c], **fit_params) for c in chunks])
                return out[torch.argsort(torch.cat(chunks))]
        return self._forward_ids(input_ids, attention_mask, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(y_pred, to_tensor(y_true, device=self.device_))

    # ------------------------------------------------------------ fit / predict
    def fit(self, X, y, **fit_params):
        """Fine-tune on texts ``X`` and targets ``y``.

        Parameters
        ----------
        X : list, ndarray, pandas Series of str, or one-column DataFrame
        y : array-like of float, shape (n,)
        **fit_params
            Passed to skorch (``train_split`` and ``forward`` arguments).

        Returns
        -------
        self
        """
        texts = check_texts(X, "X")
        y = check_target(y, len(texts), "y")
        if len(texts) < 2:
            raise ValueError(f"fit needs at least 2 training texts, got {len(texts)}")
        if not self.warm_start or not self.initialized_:
            self.initialize()
            self.y_mean_ = float(y.mean())
            scale = float(y.std())
            self.y_scale_ = scale if scale > 0 else 1.0
        min_batch = getattr(self.criterion_, "min_batch_size", 1)
        if self.batch_size != -1 and self.batch_size < min_batch:
            raise ValueError(f"criterion {self.criterion!r} needs batch_size >= {min_batch}, got {self.batch_size}")
        dataset = TokenDataset(self._encode(texts), (y - self.y_mean_) / self.y_scale_)
        train_part, _ = self.get_split_datasets(dataset, None)
        if len(train_part) < min_batch:
            raise ValueError(f"the training part has {len(train_part)} row(s) after train_split; "
                             f"criterion {self.criterion!r} needs at least {min_batch}")
        with _seeded(self.seed_ + 1, self.device_):
            self.rng_ = torch.Generator().manual_seed(self.seed_ + 2)
            batches = len(self.get_iterator(train_part, training=True))
            self.n_epochs_ = max(self.max_epochs, math.ceil(self.min_steps / max(batches, 1)))
            self.partial_fit(dataset, None, epochs=self.n_epochs_, **fit_params)
        return self

    def _check_fitted(self):
        check_is_fitted(self, ["module_", "y_mean_", "y_scale_"])

    def predict(self, X):
        """Predicted values, float64 of shape ``(n,)`` (on the scale of ``y``).

        Texts are tokenised once and run sorted by length (longest first),
        then put back in input order; a progress bar shows when ``verbose``.
        """
        self._check_fitted()
        texts = check_texts(X, "X")
        input_ids = self._encode(texts)
        lengths = np.fromiter(map(len, input_ids), dtype=np.int64, count=len(input_ids))
        order = np.argsort(-lengths, kind="stable") if self.group_by_length else np.arange(len(texts))
        dataset = TokenDataset([input_ids[i] for i in order])
        from tqdm.auto import tqdm

        outputs = []
        with tqdm(total=len(texts), desc="predict", unit="text", disable=not self.verbose,
                  leave=False) as bar:
            for out in self.forward_iter(dataset, training=False):
                outputs.append(out.numpy())
                bar.update(len(out))
        pred = np.empty(len(texts), dtype=np.float64)
        pred[order] = np.concatenate(outputs)
        return self.y_mean_ + self.y_scale_ * pred

    def score(self, X, y, sample_weight=None):
        """Shift-free R^2: ``1 - Var(y - y_hat) / Var(y)``.

        The share of the variance of ``y`` that the predictions remove up to a
        constant shift, i.e. the error variance that rectification sees
        (METHOD.md §2-3). Unlike the usual R^2 it does not penalise the
        arbitrary level of a variance-trained model; it is what
        ``GridSearchCV`` maximises by default.
        """
        y = check_target(y, len(check_texts(X, "X")), "y")
        resid = y - self.predict(X)
        var_resid = np.cov(resid, aweights=sample_weight) if len(y) > 1 else 0.0
        var_y = np.cov(y, aweights=sample_weight) if len(y) > 1 else 0.0
        return float(1.0 - var_resid / var_y) if var_y > 0 else 0.0

    # ------------------------------------------------------------ persistence
    def _adapter_state(self):
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.module_, save_embedding_layers=False)
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    def _restore_module(self, adapter_state):
        """Rebuild ``module_`` from the backbone (seeded with ``seed_``) and
        load the adapter weights."""
        from peft import set_peft_model_state_dict

        with self._on_device(), self._current_init_context("module"):
            self.initialize_module()
        try:
            result = set_peft_model_state_dict(self.module_, adapter_state)
        except RuntimeError as exc:  # shape mismatch: another backbone or rank
            raise ValueError(f"the adapter does not fit backbone {self.backbone!r}: {exc}") from exc
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ValueError(f"adapter does not match the model: unexpected weights {unexpected[:3]}")
        self.module_.eval()

    def __getstate__(self):
        # The backbone stays on disk: pickle keeps the adapter and head weights
        # (peft state dict) and rebuilds the module from `backbone` on load.
        state = self.__dict__.copy()
        module = state.pop("module_", None)
        state.pop("optimizer_", None)
        state.pop("rng_", None)
        if module is not None:
            state["adapter_state_"] = self._adapter_state()
        return state

    def __setstate__(self, state):
        adapter_state = state.pop("adapter_state_", None)
        self.__dict__.update(state)
        if adapter_state is not None:
            self._restore_module(adapter_state)
            self.initialize_optimizer()  # fresh optimizer state

    def save_adapter(self, path):
        """Save the LoRA adapter and head (peft, safetensors) plus the target
        scaling and training parameters to the directory ``path``."""
        self._check_fitted()
        path = Path(path)
        self.module_.save_pretrained(path, safe_serialization=True, save_embedding_layers=False)
        params = {key: getattr(self, key) for key in
                  ("lora_r", "lora_alpha", "lora_dropout", "target_modules", "max_length", "prompt_template")}
        if isinstance(params["target_modules"], tuple):
            params["target_modules"] = list(params["target_modules"])
        meta = {"y_mean": self.y_mean_, "y_scale": self.y_scale_, "seed": self.seed_, "params": params,
                "backbone": None if self.backbone is None else os.fspath(self.backbone),
                "gguf_file": self.gguf_file}
        (path / _META_FILE).write_text(json.dumps(meta, indent=2))
        return self

    def load_adapter(self, path):
        """Load an adapter written by :meth:`save_adapter` onto this
        estimator's backbone (no pickle); the adapter's LoRA shape, length
        and prompt parameters are restored with it. Returns self, fitted."""
        from safetensors.torch import load_file

        path = Path(path)
        weights, meta_file = path / "adapter_model.safetensors", path / _META_FILE
        if not (weights.is_file() and meta_file.is_file()):
            raise ValueError(f"{str(path)!r} is not an adapter directory written by save_adapter "
                             f"(needs adapter_model.safetensors and {_META_FILE})")
        meta = json.loads(meta_file.read_text())
        self.set_params(**meta["params"])
        self._check_params()
        self.seed_ = int(meta["seed"])
        self._restore_module(load_file(str(weights)))
        with self._on_device():
            self._initialize_virtual_params()
            self._initialize_callbacks()
            self._initialize_criterion()
            self._initialize_optimizer()
            self._initialize_history()
        self.initialized_ = True
        self.y_mean_, self.y_scale_ = float(meta["y_mean"]), float(meta["y_scale"])
        return self
