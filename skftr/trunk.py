"""The frozen trunk of a backbone: one streamed pass, read by the ridge and the fine-tune.

A backbone with ``L`` transformer layers is run once over the texts (docs/method.md §3.4):

* in length-sorted batches padded to their own longest text (dynamic padding), on a
  bounded set of shapes (:func:`padded_shape`), so that the CPU kernels' per-shape caches
  stay bounded and memory stays flat however many texts stream through;
* in bfloat16 where the device computes it natively (a CPU with ``avx512_bf16`` or AMX, a
  CUDA GPU with bf16), else in float32 (:func:`resolve_precision`);
* returning the pooled last layer of every text (the frozen embedding of the ridges) and,
  on request, the token states after layer ``L - k`` (what the fine-tune of the top ``k``
  layers, :class:`skftr.finetune.TopLayersRegressor`, trains and predicts on).

:func:`get_trunk` loads each backbone once per process, so every reader shares it;
:func:`cached_outputs` keeps a pass on disk (``memory=``), keyed by the backbone, the
settings and the texts, so refits, draws and grid searches never run the trunk twice.
"""
import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ._hf import default_pooling, pool, quiet, resolve_backbone, resolve_device

__all__ = ["Trunk", "TrunkOutputs", "TrunkSpec", "get_trunk", "cached_outputs",
           "resolve_precision", "native_bf16", "PRECISIONS"]

PRECISIONS = ("auto", "bf16", "fp32")
_BATCH_TOKENS = 64 * 128  # tokens per forward pass (64 texts of 128 tokens)
_CHUNK = 2048  # texts per streamed chunk
_ROW_STEPS = 32  # a batch's rows are rounded up to a multiple of 1/32 of a full batch
_PAD_MULTIPLE = 8  # token widths of the top layers' batches are rounded up to a multiple of this


def padded_shape(rows, width, full, steps=_ROW_STEPS, round_width=False):
    """The shape ``(rows, width)`` of a forward pass over ``rows`` texts of at most
    ``width`` tokens, in batches of at most ``full`` texts: rows rounded up to a multiple
    of ``full / steps``, and with ``round_width`` the width to a multiple of 8.

    Exact dynamic padding gives a new shape to nearly every last batch of a chunk, and the
    CPU kernels (oneDNN) keep compiled code and buffers per shape: memory then grew by
    kilobytes per streamed text (``benchmarks/results/memory.md``). The trunk's full
    batches have one shape per width (:func:`_length_batches`); it keeps exact widths and
    rounds a last batch's rows to 1/32 of a full batch, padding at most
    ``_BATCH_TOKENS / 32`` tokens a pass. The top layers, whose batches of each fold end
    at any width, pad every batch to the full ``steps=1`` rows and round the width.
    """
    step = max(1, int(full) // steps)
    rows = min(int(full), -(-max(1, int(rows)) // step) * step)
    width = max(1, int(width))
    return rows, (-(-width // _PAD_MULTIPLE) * _PAD_MULTIPLE if round_width else width)


def _cpu_flags():
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(device="cpu"):
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a
    CPU with ``avx512_bf16`` or AMX (``amx_bf16``)."""
    import torch

    if torch.device(device).type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def resolve_precision(precision, device="cpu"):
    """``"auto"``: ``"bf16"`` where :func:`native_bf16`, else ``"fp32"``; others unchanged.

    bf16 embeds 3-4x faster than fp32 on this project's CPUs with the same label savings
    (``benchmarks/bench_trunk.py``, ``benchmarks/RESULTS.md``).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


@dataclass(frozen=True)
class TrunkSpec:
    """What identifies a trunk pass: backbone directory, tokens per text, pooling of the
    last layer, precision and device (all resolved). Readers with equal specs share one."""

    path: str
    max_length: int
    pooling: str
    precision: str
    device: str

    @classmethod
    def of(cls, backbone, max_length=128, pooling="auto", precision="auto", device="auto"):
        """The spec of these reader parameters, resolved (once per process: readers ask
        for it at every step)."""
        return _resolved_spec(cls, backbone, int(max_length), pooling, precision, device)


@lru_cache(maxsize=64)
def _resolved_spec(cls, backbone, max_length, pooling, precision, device):
    path = resolve_backbone(backbone)
    device = resolve_device(device)
    if pooling == "auto":
        from transformers import AutoConfig

        pooling = default_pooling(AutoConfig.from_pretrained(path, local_files_only=True))
    return cls(path, max_length, pooling, resolve_precision(precision, device), device)


@dataclass
class TrunkOutputs:
    """A trunk pass over ``n`` texts, in their order.

    Attributes
    ----------
    embeddings : ndarray (n, d) float32
        Pooled last layer.
    offsets : ndarray (n + 1,) int64
        Text ``i``'s tokens are rows ``offsets[i]:offsets[i + 1]`` of each state array.
    states : dict int -> ndarray (T, d) float16
        Token states after layer ``l`` (``l = 0`` is the embedding layer), per layer asked.
    """

    embeddings: np.ndarray
    offsets: np.ndarray
    states: dict = field(default_factory=dict)

    def __len__(self):
        return self.embeddings.shape[0]

    def token_states(self, layer, i):
        """The token states of text ``i`` after ``layer``: (tokens, d)."""
        return self.states[layer][self.offsets[i]:self.offsets[i + 1]]

    def take(self, rows):
        """The outputs of ``rows`` (positions), copied into memory."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = np.diff(self.offsets)[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        index = (np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in rows])
                 if rows.size and offsets[-1] else np.empty(0, np.int64))
        states = {layer: np.asarray(flat[index]) for layer, flat in self.states.items()}
        return TrunkOutputs(np.asarray(self.embeddings[rows]), offsets, states)

    @staticmethod
    def concat(parts):
        """One output from consecutive parts."""
        lengths = np.concatenate([np.diff(p.offsets) for p in parts])
        layers = parts[0].states.keys()
        return TrunkOutputs(np.concatenate([p.embeddings for p in parts]),
                            np.concatenate([[0], np.cumsum(lengths)]),
                            {l: np.concatenate([p.states[l] for p in parts]) for l in layers})


class Trunk:
    """A loaded frozen backbone (tokenizer and model, eval mode, no gradients).

    Use :func:`get_trunk` rather than the constructor: it loads each spec once.

    Attributes
    ----------
    spec : TrunkSpec
    n_layers, hidden_size : int
    model, tokenizer :
        The transformers model (float32 or bfloat16 weights) and its tokenizer.
    """

    def __init__(self, spec):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        dtype = torch.bfloat16 if spec.precision == "bf16" else torch.float32
        try:
            with quiet(0):
                self.tokenizer = AutoTokenizer.from_pretrained(spec.path, local_files_only=True)
                self.model = AutoModel.from_pretrained(spec.path, local_files_only=True,
                                                       dtype=dtype)
        except (OSError, ValueError) as error:
            raise ValueError(f"backbone {spec.path!r} could not be loaded as a transformers "
                             f"model: {error}") from error
        self.model.to(spec.device).eval().requires_grad_(False)
        if self.tokenizer.pad_token is None:  # decoders: pad with EOS, on the right
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right"
        self.n_layers = int(self.model.config.num_hidden_layers)
        self.hidden_size = int(self.model.config.hidden_size)

    def state_layer(self, top_layers):
        """The layer whose states feed the top ``top_layers`` layers: ``L - k``."""
        if not 1 <= top_layers <= self.n_layers:
            raise ValueError(f"top_layers={top_layers} but the backbone has {self.n_layers} "
                             "layers")
        return self.n_layers - top_layers

    def tokenize(self, texts):
        """Token ids of each text, truncated to ``max_length`` (no padding)."""
        return self.tokenizer(list(texts), truncation=True,
                              max_length=self.spec.max_length)["input_ids"]

    def pad(self, ids, rows=None):
        """A padded batch (``input_ids``, ``attention_mask``) of token id lists, padded to
        the longest; ``rows``: pad to that many rows (the extra rows repeat the last text;
        the caller keeps the first ``len(ids)`` rows of the outputs)."""
        ids = list(ids) + [ids[-1]] * ((rows or len(ids)) - len(ids))
        return self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.spec.device)

    def run(self, texts, layers=(), ids=None, module=None, max_rows=None):
        """The pass over ``texts`` (all in memory): :class:`TrunkOutputs`.

        ``ids``: the texts already tokenized; ``module``: a stand-in for the backbone
        with the same call (a faster copy, :mod:`skftr.inference`); ``max_rows``: texts
        per forward pass at most (else as many as fit ``_BATCH_TOKENS`` tokens).
        """
        ids = self.tokenize(texts) if ids is None else ids
        return self._run_ids(ids, tuple(layers), self.model if module is None else module,
                             max_rows)

    def stream(self, texts, layers=(), chunk_size=_CHUNK):
        """``(start, outputs)`` for consecutive chunks of ``texts``: token states of one
        chunk at a time, so memory stays flat however many texts there are."""
        for start in range(0, len(texts), chunk_size):
            yield start, self.run(texts[start:start + chunk_size], layers)

    def _run_ids(self, ids, layers, module, max_rows):
        import torch

        n, d = len(ids), self.hidden_size
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=n)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        embeddings = np.empty((n, d), dtype=np.float32)
        states = {layer: np.empty((offsets[-1], d), dtype=np.float16) for layer in layers}
        order = np.argsort(-lengths, kind="stable")
        with torch.inference_mode():
            for batch, rows in _length_batches(order, lengths, max_rows):
                x, n = self.pad([ids[i] for i in batch], rows), batch.size
                out = module(**x, output_hidden_states=bool(layers))
                embeddings[batch] = pool(out.last_hidden_state[:n], x["attention_mask"][:n],
                                         self.spec.pooling).float().cpu().numpy()
                for layer in layers:
                    hidden = out.hidden_states[layer].to(torch.float16).cpu().numpy()
                    for row, i in enumerate(batch):
                        states[layer][offsets[i]:offsets[i + 1]] = hidden[row, :lengths[i]]
        return TrunkOutputs(embeddings, offsets, states)


def _length_batches(order, lengths, max_rows=None):
    """Consecutive batches of ``order`` (longest first) of at most ``_BATCH_TOKENS``
    padded tokens (and ``max_rows`` texts) each, with the rows each is padded to: a full
    batch is as many texts as fit at its longest width (one shape per width), a last
    batch is rounded up to a multiple of 1/32 of that (:func:`padded_shape`)."""
    start = 0
    while start < order.size:
        width = max(1, int(lengths[order[start]]))
        full = max(1, min(_BATCH_TOKENS // width, max_rows or _BATCH_TOKENS))
        batch = order[start:start + full]
        yield batch, padded_shape(batch.size, width, full)[0]
        start += full


@lru_cache(maxsize=4)
def _load(spec):
    return Trunk(spec)


def get_trunk(spec):
    """The loaded :class:`Trunk` of ``spec``, shared by every reader in the process."""
    return _load(spec)


# ------------------------------------------------------------------ the disk cache
def _key(trunk, texts):
    """Names a pass of ``trunk`` over ``texts``: spec, the backbone's config, the texts."""
    digest = hashlib.sha256()
    config = Path(trunk.spec.path, "config.json")
    meta = {"spec": vars(trunk.spec), "config": config.read_text() if config.is_file() else None,
            "version": 2}
    digest.update(json.dumps(meta, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:32]


def _cached_folder(root, key, layers):
    """A complete entry of ``key`` holding at least ``layers`` (the embeddings and the
    states of a superset serve a reader that asks for fewer), else the one to write."""
    for folder in sorted(root.glob(f"{key}-*")):
        held = {int(l) for l in folder.name.split("-", 1)[1].split("_") if l}
        if (folder / "done").is_file() and set(layers) <= held:
            return folder
    return root / f"{key}-{'_'.join(map(str, layers))}"


def _memory_dir(memory):
    location = getattr(memory, "location", memory)  # a joblib.Memory or a directory
    if not isinstance(location, (str, os.PathLike)):
        raise TypeError(f"memory must be a directory or a joblib.Memory, got {memory!r}")
    return Path(location) / "skftr-trunk"


def cached_outputs(trunk, texts, layers=(), memory=None):
    """The trunk's pass over ``texts``, kept on disk under ``memory`` (read back as memory
    maps: no token state is held in memory beyond the rows a caller takes).

    The cache entry is keyed by the spec, the backbone's config and the texts (sha256),
    with the layers whose states it holds (an entry with more layers serves a request for
    fewer: the ridges read the fine-tune's entry); it is written once, chunk by chunk, into a temporary directory that is
    renamed when complete, so an interrupted pass leaves nothing half-written.
    """
    from ._atomic import atomic_path

    layers = tuple(sorted(set(layers)))
    if memory is None:
        return trunk.run(texts, layers)
    folder = _cached_folder(_memory_dir(memory), _key(trunk, texts), layers)
    if not (folder / "done").is_file():
        ids = trunk.tokenize(texts)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder, directory=True) as tmp:
            open_ = np.lib.format.open_memmap
            emb = open_(tmp / "embeddings.npy", "w+", np.float32, (len(ids), trunk.hidden_size))
            flat = {l: open_(tmp / f"states_{l}.npy", "w+", np.float16,
                             (int(offsets[-1]), trunk.hidden_size)) for l in layers}
            for start in range(0, len(ids), _CHUNK):
                part = trunk.run(None, layers, ids=ids[start:start + _CHUNK])
                emb[start:start + len(part)] = part.embeddings
                lo, hi = offsets[start], offsets[start + len(part)]
                for l in layers:
                    flat[l][lo:hi] = part.states[l]
            for array in (emb, *flat.values()):
                array.flush()
            del emb, flat
            np.save(tmp / "offsets.npy", offsets)
            (tmp / "done").write_text("")
    load = lambda name: np.load(folder / name, mmap_mode="r")  # noqa: E731
    return TrunkOutputs(load("embeddings.npy"), np.load(folder / "offsets.npy"),
                        {l: load(f"states_{l}.npy") for l in layers})
