"""Coverage of the default cheap-predictor interval on EmoBank V: fresh draws, one budget.

Public API only. Each draw labels ``n`` random sentences (every other sentence unlabeled),
fits ``FineTuneRectifyEstimator("drop", predictors=[ridge on embeddings, ridge on TF-IDF])``
(5-fold cross-fitting, power tuning) and checks whether the 95% interval covers the mean
valence of the file; also the sd of ``(estimate - truth) / stderr`` (1 when the standard
error is right).

    python benchmarks/bench_coverage.py --n 300 --draws 100 --out benchmarks/results/coverage_emobank.md
"""
import argparse
import warnings
from pathlib import Path

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--cache", default="benchmarks/cache/features")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from joblib import Memory

    from skftr import FineTuneRectifyEstimator, TextRidge
    from skftr.datasets import load_emobank

    texts, y_all = load_emobank("V")
    truth = y_all.mean()
    memory = Memory(args.cache, verbose=0)
    predictors = [TextRidge(features="embedding", max_length=128, memory=memory),
                  TextRidge(features="tfidf")]
    covered, z = 0, []
    for draw in range(args.draws):
        rng = np.random.RandomState([7, args.n, draw])
        labeled = rng.choice(len(texts), args.n, replace=False)
        y = np.full(len(texts), np.nan)
        y[labeled] = y_all[labeled]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = FineTuneRectifyEstimator("drop", predictors=predictors, random_state=draw)
            e = est.fit(texts, y).estimate_
        covered += e.ci[0] <= truth <= e.ci[1]
        z.append((e.value - truth) / e.stderr)
    line = (f"| EmoBank V | {args.n} | {args.draws} | {covered / args.draws:.2f} | "
            f"{np.std(z):.2f} | {np.mean(z):+.2f} |")
    print(line)
    if args.out:
        Path(args.out).write_text(
            "# Coverage of the default cheap-predictor interval\n\n"
            f"`python benchmarks/bench_coverage.py --n {args.n} --draws {args.draws} "
            f"--out {args.out}`\n\n| corpus | n | draws | coverage (nominal 0.95) | "
            "sd of (estimate - truth) / stderr | mean |\n|---|---|---|---|---|---|\n"
            + line + "\n")


if __name__ == "__main__":
    main()
