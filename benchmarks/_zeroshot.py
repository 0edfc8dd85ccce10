"""Zero-shot predictors for the ``rectify_only`` baseline of ``benchmarks/replicate.py``.

Rectification alone (METHOD.md §5, ``s = 0``) needs a predictor that has seen no label.
Two label-free scorers, both returning the expected value over a five-level answer scale
mapped to the label scale by fixed, published anchors (never by labels):

* :func:`smollm2_scores` — SmolLM2-135M-Instruct (the GGUF of
  :func:`skftr.backbones.smollm2_135m`, read by transformers) prompted with the chat
  template for a rating from 1 to 5; the score is ``sum_d p(d) * value_d`` with ``p`` the
  next-token probabilities of the answer tokens "1".."5" renormalised over those five.
* :func:`embedding_scores` — frozen mean-pooled sentence embeddings (MiniLM by default):
  ``p = softmax(cos(e, anchor_d) / 0.05)`` over five anchor sentences, one per level;
  same expected value. Cheap fallback (and the scorer of ``--quick``).

Both cache their scores in a ``.npz`` keyed by the SHA-1 of each text, written every few
batches, so an interrupted run resumes.
"""

import hashlib
import os
import time
from pathlib import Path

import numpy as np

# Five answer levels per task: the prompt, the anchor sentence of each level (embedding
# scorer) and the value of each level on the label scale. Wine: WineEnthusiast's published
# categories (80-82 acceptable, 83-86 good, 87-89 very good, 90-93 excellent, 94-100
# superb/classic), at their midpoints. EmoBank valence: the 1-5 SAM scale itself.
TASKS = {
    "wine": {
        "system": "You are a wine critic.",
        "prompt": (
            "Rate the wine described in this review on a scale from 1 to 5 "
            "(1 = acceptable, 2 = good, 3 = very good, 4 = excellent, 5 = superb). "
            "Answer with one digit.\nReview: {text}"
        ),
        "anchors": [
            "An acceptable, simple wine with few flaws.",
            "A good, pleasant everyday wine.",
            "A very good wine with fine fruit and balance.",
            "An excellent wine, complex, concentrated and long.",
            "A superb, classic wine of extraordinary depth and finesse.",
        ],
        "values": [81.0, 84.5, 88.0, 91.5, 97.0],
    },
    "valence": {
        "system": "You rate the emotions expressed in sentences.",
        "prompt": (
            "How positive or negative is the feeling expressed in this sentence, on a "
            "scale from 1 to 5 (1 = very negative, 3 = neutral, 5 = very positive)? "
            "Answer with one digit.\nSentence: {text}"
        ),
        "anchors": [
            "This is terrible, awful and heartbreaking.",
            "This is sad and disappointing.",
            "This is a plain neutral statement.",
            "This is nice and pleasant.",
            "This is wonderful, joyful and delightful.",
        ],
        "values": [1.0, 2.0, 3.0, 4.0, 5.0],
    },
}

SCORERS = ("smollm2", "embedding")


def _hashes(texts):
    return np.array([hashlib.sha1(t.encode("utf-8")).hexdigest() for t in texts])


class _ScoreCache:
    """Scores keyed by text hash, stored in one ``.npz`` (atomic rewrite)."""

    def __init__(self, path):
        self.path = Path(path)
        self.scores = {}
        if self.path.exists():
            data = np.load(self.path)
            self.scores = dict(zip(data["hashes"].tolist(), data["scores"].tolist()))

    def save(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            hashes=np.array(list(self.scores), dtype="U40"),
            scores=np.array(list(self.scores.values()), dtype=float),
        )
        os.replace(tmp, self.path)


def _device(device):
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _run_cached(texts, cache_path, score_batch, order, batch_size, desc, progress, save_every=20):
    """Score ``texts`` (in ``order``) batch by batch, skipping those already cached."""
    from tqdm.auto import tqdm

    cache = _ScoreCache(cache_path) if cache_path is not None else _ScoreCache("/nonexistent")
    hashes = _hashes(texts)
    todo = [i for i in order if hashes[i] not in cache.scores]
    with tqdm(total=len(todo), desc=desc, unit="text", disable=not progress or not todo) as bar:
        for b, start in enumerate(range(0, len(todo), batch_size)):
            rows = todo[start : start + batch_size]
            for i, value in zip(rows, score_batch([texts[i] for i in rows])):
                cache.scores[hashes[i]] = float(value)
            bar.update(len(rows))
            if cache_path is not None and (b + 1) % save_every == 0:
                cache.save()
    if cache_path is not None and todo:
        cache.save()
    return np.array([cache.scores[h] for h in hashes], dtype=float)


def smollm2_scores(
    texts, task, *, device="auto", batch_size=16, cache_path=None, progress=True, max_length=256
):
    """Expected rating of SmolLM2-135M-Instruct over the answer tokens "1".."5".

    Parameters
    ----------
    texts : list of str
    task : {"wine", "valence"}
        Prompt and value of each answer level (see ``TASKS``).
    device : str, default="auto"
    batch_size : int, default=16
    cache_path : path, default=None
        ``.npz`` cache of the scores (resumable).
    progress : bool, default=True
    max_length : int, default=256
        Prompt tokens kept (the text is truncated, the answer cue is kept).

    Returns
    -------
    ndarray of float, shape (len(texts),)
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from skftr.backbones import smollm2_135m

    spec = TASKS[task]
    device = _device(device)
    directory, gguf = smollm2_135m()
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(directory, gguf_file=gguf)
        model = (
            AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf, dtype=torch.float32)
            .to(device)
            .eval()
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(1, 6)]
    if any(i is None or i == tok.unk_token_id for i in digits):
        raise ValueError("the SmolLM2 tokenizer has no single-token digits 1..5")
    head = model.get_output_embeddings().weight[digits].detach()  # (5, hidden)
    values = torch.tensor(spec["values"], dtype=torch.float32, device=device)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def encode(text):
        messages = [
            {"role": "system", "content": spec["system"]},
            {"role": "user", "content": spec["prompt"].format(text=text)},
        ]
        ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        ids = list(ids)
        if len(ids) > max_length:  # cut the review, keep the answer cue at the end
            cut = len(ids) - max_length
            tail = 12
            ids = ids[: len(ids) - tail - cut] + ids[len(ids) - tail :]
        return ids

    def score_batch(batch):
        ids = [encode(t) for t in batch]
        width = max(map(len, ids))
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):  # right padding: positions stay 0..len-1
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        with torch.inference_mode():
            hidden = model.model(
                input_ids=input_ids.to(device), attention_mask=mask.to(device)
            ).last_hidden_state
            last = hidden[torch.arange(len(ids)), mask.sum(1).to(device) - 1]
            probs = torch.softmax(last @ head.T, dim=-1)
        return (probs @ values).cpu().numpy()

    lengths = np.array([len(t) for t in texts])
    order = np.argsort(-lengths, kind="stable").tolist()
    return _run_cached(
        texts, cache_path, score_batch, order, batch_size, "zero-shot smollm2", progress
    )


def embedding_scores(
    texts,
    task,
    *,
    backbone=None,
    device="auto",
    batch_size=64,
    cache_path=None,
    progress=True,
    temperature=0.05,
):
    """Expected level under ``softmax(cos(embedding, anchor_d) / temperature)``.

    Parameters
    ----------
    texts : list of str
    task : {"wine", "valence"}
    backbone : str, default=None
        Encoder directory (None: MiniLM), as in :class:`skftr.embedding.SentenceEmbedder`.
    temperature : float, default=0.05
        Fixed in advance (no label is used to set it).

    Returns
    -------
    ndarray of float, shape (len(texts),)
    """
    from skftr.embedding import SentenceEmbedder

    spec = TASKS[task]
    embedder = SentenceEmbedder(backbone=backbone, batch_size=batch_size, device=device).fit()

    def unit(x):
        x = np.asarray(x, dtype=float)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    anchors = unit(embedder.transform(spec["anchors"]))
    values = np.asarray(spec["values"])

    def score_batch(batch):
        logits = unit(embedder.transform(batch)) @ anchors.T / temperature
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs @ values

    return _run_cached(
        texts,
        cache_path,
        score_batch,
        list(range(len(texts))),
        512,
        "zero-shot embedding",
        progress,
        save_every=1,
    )


def zeroshot_scores(
    scorer, texts, task, *, backbone=None, device="auto", cache_path=None, progress=True
):
    """Dispatch to :func:`smollm2_scores` or :func:`embedding_scores`; returns (scores, seconds)."""
    if scorer not in SCORERS:
        raise ValueError(f"zero-shot scorer must be one of {SCORERS}, got {scorer!r}")
    start = time.perf_counter()
    if scorer == "smollm2":
        scores = smollm2_scores(
            texts, task, device=device, cache_path=cache_path, progress=progress
        )
    else:
        scores = embedding_scores(
            texts, task, backbone=backbone, device=device, cache_path=cache_path, progress=progress
        )
    return scores, time.perf_counter() - start
