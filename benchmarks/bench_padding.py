"""The frozen pass on bounded shapes against exact dynamic padding, same process.

``skftr.trunk`` runs its forward passes on a bounded set of shapes (each last batch's rows
rounded up to a multiple of an eighth of a full batch, :func:`skftr.trunk.padded_shape`), so
that the CPU kernels' per-shape caches stay bounded and a fit's memory stays flat (``bench_memory.py``). This
measures what that costs: the same texts through the committed pass and through a
reference with exact dynamic padding (each batch padded to its own longest text, no extra
rows), interleaved (alternating which runs first), best of ``--repeats``, one thread; and how far the embeddings move
(padding rows are dropped, padded tokens masked, so only float rounding); and the
tokens each runs over, padding included, which does not depend on the machine's load.

    python benchmarks/bench_padding.py --corpus emobank --texts 2048 --backbones minilm mpnet
"""
import argparse
import time

import numpy as np

import skftr.trunk as trunk_module
from skftr import backbones
from skftr._hf import torch_threads
from skftr.datasets import load_emobank, load_wine_reviews
from skftr.trunk import TrunkSpec, get_trunk


def exact_pad(trunk, ids, rows=None):
    """The reference: pad to the batch's longest text, no extra rows."""
    return trunk.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(trunk.spec.device)


def exact_batches(order, lengths, max_rows=None):
    """The reference batches: as many texts as fit the token budget at the longest width."""
    start = 0
    while start < order.size:
        width = max(1, int(lengths[order[start]]))
        stop = start + min(max(1, trunk_module._BATCH_TOKENS // width), max_rows or order.size)
        yield order[start:stop], None
        start = stop


def timed(trunk, texts, exact):
    """CPU seconds of one pass (``exact``: the reference padding) and its embeddings."""
    bounded = (trunk_module.Trunk.pad, trunk_module._length_batches)
    if exact:
        trunk_module.Trunk.pad, trunk_module._length_batches = exact_pad, exact_batches
    try:
        start = time.process_time()
        out = trunk.run(texts)
        return time.process_time() - start, out.embeddings
    finally:
        trunk_module.Trunk.pad, trunk_module._length_batches = bounded


def padded_tokens(trunk, texts):
    """Tokens the forward passes run over (padding included): bounded, exact."""
    lengths = np.array([len(i) for i in trunk.tokenize(texts)])
    order = np.argsort(-lengths, kind="stable")
    count = lambda batches: sum((rows or batch.size) * lengths[batch[0]]  # noqa: E731
                                for batch, rows in batches)
    return (count(trunk_module._length_batches(order, lengths)),
            count(exact_batches(order, lengths)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["wine", "emobank"], default="emobank")
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--backbones", nargs="+", default=["minilm", "mpnet"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    texts, _ = load_wine_reviews() if args.corpus == "wine" else load_emobank("V")
    texts = list(texts[:args.texts])
    print(f"{args.corpus}, {len(texts)} texts, fp32, one thread, best of {args.repeats}\n")
    print("| backbone | exact padding, texts/CPU-s | bounded shapes, texts/CPU-s | bounded / exact "
          "| padded tokens, bounded / exact | max abs embedding difference |")
    print("|---|---|---|---|---|---|")
    for name in args.backbones:
        trunk = get_trunk(TrunkSpec.of(getattr(backbones, name)(), precision="fp32"))
        best, emb = {True: np.inf, False: np.inf}, {}
        with torch_threads(1):
            for repeat in range(args.repeats):  # alternate which runs first
                for exact in ((True, False) if repeat % 2 == 0 else (False, True)):
                    seconds, emb[exact] = timed(trunk, texts, exact)
                    best[exact] = min(best[exact], seconds)
        rate = {k: len(texts) / v for k, v in best.items()}
        bounded, exact = padded_tokens(trunk, texts)
        print(f"| {name} | {rate[True]:.1f} | {rate[False]:.1f} | {rate[False] / rate[True]:.3f}x "
              f"| {bounded / exact:.4f} | {np.abs(emb[True] - emb[False]).max():.1e} |", flush=True)
    print(f"\nCommand: python benchmarks/bench_padding.py --corpus {args.corpus} --texts "
          f"{args.texts} --backbones {' '.join(args.backbones)} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
