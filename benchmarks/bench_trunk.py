"""The frozen trunk in bf16 against fp32: speed and label savings on the same draws.

Speed: texts per CPU-second (texts / wall seconds / torch threads) of
``skftr.trunk.Trunk.run`` on the same EmoBank sentences, fp32 and bf16 interleaved in one
process (the best of ``--repeats``). Quality: the ridge on each precision's frozen embedding,
cross-fitted by ``FineTuneRectifyEstimator`` (5 folds, PPI++) on the same fresh draws of
``--budget`` labels from the first ``--rows`` EmoBank sentences (valence); savings
``1 - n / n_effective`` averaged over ``--draws`` draws, and coverage of the subset's mean.

    python benchmarks/bench_trunk.py --rows 3000 --draws 20 --budget 500
"""
import argparse
import time

import numpy as np
from sklearn.linear_model import RidgeCV

from skftr import FineTuneRectifyEstimator
from skftr._hf import torch_threads
from skftr.datasets import load_emobank
from skftr.predictors import _ALPHAS
from skftr.trunk import TrunkSpec, get_trunk


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--speed-texts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    texts, y = load_emobank("V")
    texts, y = texts[:args.rows], y[:args.rows]
    print(f"EmoBank valence, first {len(texts)} sentences; budget {args.budget}, "
          f"{args.draws} draws\n")
    print("| backbone | precision | texts per CPU-second | speed-up | savings | coverage |")
    print("|---|---|---|---|---|---|")
    for backbone in ("minilm", "mpnet"):
        trunks = {p: get_trunk(TrunkSpec.of(backbone, precision=p)) for p in ("fp32", "bf16")}
        with torch_threads(None) as threads:
            speed = {p: 0.0 for p in trunks}
            for _ in range(args.repeats):
                for p, trunk in trunks.items():
                    start = time.perf_counter()
                    trunk.run(texts[:args.speed_texts])
                    rate = args.speed_texts / (time.perf_counter() - start) / threads
                    speed[p] = max(speed[p], rate)
            emb = {p: trunk.run(texts).embeddings for p, trunk in trunks.items()}
        for p in trunks:
            savings, covered = [], []
            for draw in range(args.draws):
                rows = np.random.default_rng(draw).choice(len(y), args.budget, replace=False)
                labels = np.full(len(y), np.nan)
                labels[rows] = y[rows]
                est = FineTuneRectifyEstimator(RidgeCV(alphas=np.asarray(_ALPHAS)),
                                               predictors=None, crossfit=5,
                                               random_state=draw).fit(emb[p], labels)
                savings.append(1 - args.budget / est.estimate_.n_effective)
                low, high = est.estimate_.ci
                covered.append(low <= y.mean() <= high)
            print(f"| {backbone} | {p} | {speed[p]:.0f} | {speed[p] / speed['fp32']:.2f}x | "
                  f"{100 * np.mean(savings):.1f}% | {np.mean(covered):.2f} |", flush=True)


if __name__ == "__main__":
    main()
