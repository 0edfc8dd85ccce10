"""Torch threads for frozen embeddings: 1 against 2 on this machine (the thread rule).

    python benchmarks/bench_threads.py

Embeds 1,500 EmoBank sentences with MiniLM and 500 with all-mpnet-base-v2
(``SentenceEmbedder``), alternately with ``n_threads=1`` and ``2``, twice, in one process,
and prints the wall times and the speed-up of 2 threads. The basis of the rule in
``skftr._hf.default_threads``: every usable core up to 4.
"""
import time

from skftr import SentenceEmbedder
from skftr.datasets import load_emobank


def main():
    texts = list(load_emobank("V")[0][:1500])
    for backbone, n_texts in ((None, 1500), ("mpnet", 500)):
        embedder = SentenceEmbedder(backbone=backbone).fit(texts)
        embedder.set_params(n_threads=2).transform(texts[:100])  # warm-up
        for _ in range(2):
            seconds = {}
            for n in (1, 2):
                embedder.set_params(n_threads=n)
                start = time.perf_counter()
                embedder.transform(texts[:n_texts])
                seconds[n] = time.perf_counter() - start
            print(f"{backbone or 'minilm'}: {n_texts} texts, 1 thread {seconds[1]:.1f} s, "
                  f"2 threads {seconds[2]:.1f} s, speed-up {seconds[1] / seconds[2]:.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
