"""Text input checks, token datasets, dynamic padding and length grouping.

Private helpers of :class:`skftr.lora.LoRARegressor` (reusable by other
text estimators): validation of ``X`` and ``y`` with messages naming the
argument, a dataset of token ids tokenised once, a data loader that pads each
batch to its own longest row, and the split of a batch into length-sorted
chunks that cuts the padding computed on.
"""
from numbers import Integral

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

__all__ = ["check_texts", "check_target", "TokenDataset", "PadCollator", "TextLoader", "length_chunks"]


def check_texts(X, name="X"):
    """Validate a collection of texts and return it as a list of ``str``.

    Accepts a list or tuple, a 1-d ndarray (or 2-d with one column), a pandas
    Series or a one-column DataFrame. Raises ``TypeError`` for a single string
    or a non-text element, ``ValueError`` for an empty collection, ``None``,
    empty or whitespace-only texts, naming the argument and the first bad row.
    """
    if X is None:
        raise ValueError(f"{name} must be a sequence of texts, got None")
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of texts, got a single {type(X).__name__}; wrap it in a list")
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(f"{name} as a DataFrame must have exactly one column of texts, got {X.shape[1]}")
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # pandas Series
        X = X.to_numpy(dtype=object)
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(f"{name} must be 1-dimensional (one text per row), got an array of shape {X.shape}")
        X = X.tolist()
    if not isinstance(X, (list, tuple)):
        try:
            X = list(X)
        except TypeError:
            raise TypeError(f"{name} must be a sequence of texts, got {type(X).__name__}") from None
    if len(X) == 0:
        raise ValueError(f"{name} is empty: at least one text is required")
    texts = []
    for i, text in enumerate(X):
        if text is None or (isinstance(text, float) and np.isnan(text)):
            raise ValueError(f"{name}[{i}] is missing (None/NaN); every row needs a text")
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{name}[{i}] is empty or whitespace only; every row needs a text")
        texts.append(str(text))
    return texts


def check_target(y, n_samples, name="y"):
    """Validate regression targets: 1-d, finite floats, one per text.

    Returns
    -------
    ndarray of float64, shape (n_samples,)
    """
    if y is None:
        raise ValueError(f"{name} is required (one float per text), got None")
    try:
        arr = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric (one float per text)") from None
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different lengths: {n_samples} texts but {arr.shape[0]} targets")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} must be finite; {bad.size} value(s) are NaN or infinite, first at {name}[{bad[0]}]")
    return arr


class TokenDataset(Dataset):
    """Token ids of texts tokenised once, with optional float targets.

    ``dataset[i]`` is ``(token_ids, target)`` (target 0.0 when ``y`` is None),
    the ``(X, y)`` pair skorch expects.
    """

    def __init__(self, input_ids, y=None):
        self.input_ids = input_ids
        self.y = None if y is None else np.asarray(y, dtype=np.float32)
        if self.y is not None and len(self.y) != len(input_ids):
            raise ValueError("input_ids and y have different lengths")

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, i):
        return self.input_ids[i], (0.0 if self.y is None else float(self.y[i]))

    @property
    def lengths(self):
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64, count=len(self))


class PadCollator:
    """Dynamic padding: pad a batch on the right to its own longest row.

    Returns ``({"input_ids", "attention_mask"}, y)`` with tensors of shape
    ``(batch, longest)`` and ``(batch,)``.
    """

    def __init__(self, pad_token_id):
        self.pad_token_id = int(pad_token_id)

    def __call__(self, batch):
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (ids, _) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        y = torch.tensor([target for _, target in batch], dtype=torch.float32)
        return {"input_ids": input_ids, "attention_mask": attention_mask}, y


class _MergeLastBatchSampler(BatchSampler):
    """``BatchSampler`` that merges a last batch smaller than ``min_batch_size``
    into the previous one (no row is dropped, no batch is too small for a
    variance or correlation loss)."""

    def __init__(self, sampler, batch_size, min_batch_size=1):
        super().__init__(sampler, batch_size, drop_last=False)
        self.min_batch_size = min_batch_size

    def __iter__(self):
        batches = list(super().__iter__())
        if len(batches) > 1 and len(batches[-1]) < self.min_batch_size:
            batches[-2].extend(batches.pop())
        return iter(batches)

    def __len__(self):
        n, size = len(self.sampler), self.batch_size
        full, rest = divmod(n, size)
        if rest == 0:
            return full
        return full if (0 < rest < self.min_batch_size and full > 0) else full + 1


class TextLoader(DataLoader):
    """DataLoader over a :class:`TokenDataset` used as skorch ``iterator_train``
    and ``iterator_valid``.

    Accepts the usual ``batch_size``/``shuffle``/``generator`` (skorch passes
    them as ``iterator_train__*``), pads dynamically, and merges a last batch
    smaller than ``min_batch_size`` into the previous one.
    """

    def __init__(self, dataset, batch_size=16, shuffle=False, generator=None, min_batch_size=1,
                 pad_token_id=0, collate_fn=None, **kwargs):
        if not isinstance(batch_size, Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        super().__init__(
            dataset,
            batch_sampler=_MergeLastBatchSampler(sampler, int(batch_size), min_batch_size),
            collate_fn=collate_fn if collate_fn is not None else PadCollator(pad_token_id),
            **kwargs,
        )


def length_chunks(lengths, overhead=64):
    """Split rows into length-sorted chunks that minimise padded compute.

    Rows are sorted by length (longest first); consecutive rows are grouped
    by dynamic programming minimising ``sum_c (rows_c * longest_c + overhead)``,
    where ``overhead`` is the fixed cost of one forward call in tokens. A
    batch of similar lengths stays one chunk; a mixed one is split so that
    short rows are not padded to the longest.

    Parameters
    ----------
    lengths : 1-d tensor of int
    overhead : float

    Returns
    -------
    list of 1-d LongTensor
        Row indices of each chunk (together a permutation of the rows).
    """
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_len = lengths[order].tolist()
    n = len(sorted_len)
    best = [0.0] + [float("inf")] * n  # best[j]: cost of rows [0, j)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + (j - i) * sorted_len[i] + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], n
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    return [order[i:j] for i, j in reversed(bounds)]
