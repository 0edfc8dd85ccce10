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

from ._inputs import check_target, check_texts

__all__ = ["check_texts", "check_target", "TokenDataset", "PadCollator", "TextLoader", "length_chunks"]


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
            generator=generator,  # also draws the loader's base seed (else the global RNG does)
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
