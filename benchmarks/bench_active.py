"""Active against uniform second batches: the two-stage design as a user meets it.

Public API only (``skftr.sampling.ActiveSampler``, ``FineTuneRectifyEstimator``). For each
corpus, total budget ``n`` and fresh draw: a uniform first batch of ``n // 3`` rows is
labeled; ``ActiveSampler`` fits the cheap predictors on it (cross-fitted, K = 5) and an
error model of their squared out-of-fold error, and draws the ``n - n // 3`` rows of the
active second batch; the uniform second batch is drawn from the same rows left by the
same first batch. Each design is then estimated by ``FineTuneRectifyEstimator`` (the
active one with ``inclusion_probability``); every row of the file is in the population,
and the truth is the mean of the whole file.

Predictors: ridges on frozen all-MiniLM-L6-v2 embeddings, TF-IDF n-grams and the
texts' length (the default set less the mpnet ridge, to keep 2 CPU cores affordable);
the trunk pass and the TF-IDF of each corpus are computed once and kept on disk
(``memory=``).

Reported per cell: savings ``1 - (mean width_active / mean width_uniform)^2`` (and
against the classical interval of the uniform design's ``n`` labels), a paired bootstrap
standard error of the savings over the draws, the coverage of each design, and the error
model's out-of-fold R^2 on the first batch.

    python benchmarks/bench_active.py --draws 20 --out benchmarks/results/active.md
"""
import argparse
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.replication.design import CORPORA, load_corpus  # noqa: E402


def estimator(memory, seed):
    from skftr import FineTuneRectifyEstimator, TextRidge

    predictors = [TextRidge(features="embedding"), TextRidge(features="tfidf", memory=memory),
                  TextRidge(features="length")]
    return FineTuneRectifyEstimator("drop", predictors=predictors, crossfit=5, memory=memory,
                                    random_state=seed)


def one_draw(X, y, n, memory, rng, error_models):
    """Widths and coverage of the uniform and active designs on one first batch."""
    from skftr.sampling import ActiveSampler

    truth, N = y.mean(), y.size
    n1 = n // 3
    first = rng.choice(N, n1, replace=False)
    y1 = np.full(N, np.nan)
    y1[first] = y[first]
    rest = np.setdiff1d(np.arange(N), first)
    seed = int(rng.integers(2**31))
    out = {}
    uniform = y1.copy()
    second = rng.choice(rest, n - n1, replace=False)
    uniform[second] = y[second]
    est = estimator(memory, seed).fit(X, uniform).estimate_
    out["uniform"] = (est.ci, est.classical_ci)
    for name in error_models:
        sampler = ActiveSampler(estimator(memory, seed), error_model=name,
                                random_state=seed).fit(X, y1)
        rows, _ = sampler.sample(n - n1)
        labels = y1.copy()
        labels[rows] = y[rows]
        fit = estimator(memory, seed).fit(X, labels,
                                          inclusion_probability=sampler.inclusion_probabilities(
                                              n - n1))
        out[name] = (fit.estimate_.ci, sampler.error_score_)
    width = {k: v[0][1] - v[0][0] for k, v in out.items()}
    width["classical"] = out["uniform"][1][1] - out["uniform"][1][0]
    cover = {k: v[0][0] <= truth <= v[0][1] for k, v in out.items()}
    score = {k: out[k][1] for k in error_models}
    return width, cover, score


def savings(a, b, rng, n_boot=2000):
    """``1 - (mean a / mean b)^2`` and its paired bootstrap standard error over the draws."""
    a, b = np.asarray(a), np.asarray(b)
    point = 1 - (a.mean() / b.mean()) ** 2
    idx = rng.integers(a.size, size=(n_boot, a.size))
    boot = 1 - (a[idx].mean(axis=1) / b[idx].mean(axis=1)) ** 2
    return point, boot.std()


def main():
    from joblib import Memory

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA))
    parser.add_argument("--budgets", nargs="+", type=int, default=[300, 500, 1000])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--error-models", nargs="+", default=["ridge"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="benchmarks/cache/active")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    memory = Memory(args.cache, verbose=0)
    rng = np.random.default_rng(args.seed)
    lines = ["| corpus | n | draws | error model | savings vs uniform (se) | savings vs classical | "
             "coverage active | coverage uniform | error-model OOF R^2 | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    pooled = {name: [] for name in args.error_models} | {"uniform": []}
    for corpus in args.corpora:
        X, y = load_corpus(corpus)
        X = np.asarray(X, dtype=object)
        for n in args.budgets:
            start, draws = time.perf_counter(), []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(args.draws):
                    draws.append(one_draw(X, y, n, memory, rng, args.error_models))
            seconds = time.perf_counter() - start
            widths = {k: [d[0][k] for d in draws] for k in draws[0][0]}
            for k in pooled:
                pooled[k] += [d[1][k] for d in draws]
            for name in args.error_models:
                vs_uniform, se = savings(widths[name], widths["uniform"], rng)
                vs_classical, _ = savings(widths[name], widths["classical"], rng)
                row = (f"| {corpus} | {n} | {args.draws} | {name} | {100 * vs_uniform:.1f}% "
                       f"({100 * se:.1f}) | {100 * vs_classical:.1f}% | "
                       f"{np.mean([d[1][name] for d in draws]):.3f} | "
                       f"{np.mean([d[1]['uniform'] for d in draws]):.3f} | "
                       f"{np.median([d[2][name] for d in draws]):.3f} | {seconds:.0f} |")
                lines.append(row)
                print(row, flush=True)
    command = "python benchmarks/bench_active.py " + " ".join(
        f"--{k.replace('_', '-')} " + (" ".join(map(str, v)) if isinstance(v, list) else str(v))
        for k, v in vars(args).items() if k not in ("cache", "out") and v is not None)
    summary = [f"pooled coverage over every draw: "
               + ", ".join(f"{k} {np.mean(v):.3f} ({len(v)} draws)" for k, v in pooled.items())]
    print(summary[0])
    text = "\n".join([f"`{shlex.join(shlex.split(command))}`", "", *lines, "", *summary]) + "\n"
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
