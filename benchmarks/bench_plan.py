"""Benchmark of ``skftr plan``: the labels it plans against the labels the realised width needs.

For each corpus (EmoBank valence, Wine Reviews points) the whole file is the population:
its texts are all there, a row's label is revealed only when it is drawn. The target
width ``W`` is that of the classical 95% interval with 400 labels, ``2 z sd(Y) / 20``
(sd over the file). Each of the ``--pilots`` pilots:

1. draws ``--pilot-sizes`` labeled rows at random (the rest unlabeled) and fits the
   estimator's default cheap predictors (``model="drop"``, the LoRA model disabled:
   fine-tuning 20 pilots is too slow on a CPU), 5-fold cross-fitted;
2. plans with :func:`skftr.cli.plan_labels`, the function behind ``skftr plan``:
   ``n`` labels for width ``W``, with its bootstrap range;
3. fits the same estimator at budget ``n`` on ``--draws`` fresh random draws, and takes
   the labels actually needed as ``n * mean(width^2) / W^2`` (the width falls as
   ``n^-1/2``; the unlabeled term is small with m about N).

Reports per pilot the planned and the actual labels, and per corpus and pilot size the
share of pilots within +-20% of the actual (target: at least 80%), the same share for the
classical plan (whose true answer is 400 by construction: the noise of a pilot's variance
alone), the share whose range holds the actual, and the coverage of the fresh intervals. The embeddings of a corpus are computed once and
cached (``TextRidge(memory=...)``), so a fit costs only the ridges.

    python benchmarks/bench_plan.py --pilots 20 --draws 4 --pilot-sizes 100 200 \\
        --out benchmarks/results/plan.md
"""
import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import norm

CORPORA = ("emobank", "wine")


def load(name):
    from skftr import datasets

    return datasets.load_emobank("V") if name == "emobank" else datasets.load_wine_reviews()


def fit(texts, y_all, n, rng, memory):
    """The default cheap predictors, model disabled, on ``n`` labels drawn at random."""
    from skftr import FineTuneRectifyEstimator
    from skftr.predictors import default_predictors

    rows = rng.choice(len(texts), size=n, replace=False)
    y = np.full(len(texts), np.nan)
    y[rows] = y_all[rows]
    est = FineTuneRectifyEstimator("drop", predictors=[p.set_params(memory=memory)
                                                       for p in default_predictors()],
                                   random_state=int(rng.integers(2**31)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(texts, y)


def run(corpus, pilots, draws, pilot_size, memory, seed):
    from skftr.cli import fold_level_predictions, plan_labels

    texts, y_all = load(corpus)
    N, truth = len(texts), float(np.mean(y_all))
    width = 2 * norm.ppf(0.975) * np.std(y_all, ddof=1) / np.sqrt(400)
    rows = []
    for pilot in range(pilots):
        rng = np.random.default_rng([seed, pilot])
        start = time.perf_counter()
        est = fit(texts, y_all, pilot_size, rng, memory)
        y_r = y_all[est.labeled_indices_]
        plan = plan_labels(y_r, fold_level_predictions(est, y_r), est.estimate_.stderr, N,
                           width, random_state=int(rng.integers(2**31)))
        n = plan["skftr"]["labels"]
        fresh = [fit(texts, y_all, n, rng, memory).estimate_ for _ in range(draws)]
        widths = np.array([e.ci[1] - e.ci[0] for e in fresh])
        actual = n * np.mean(widths**2) / width**2
        rows.append({"pilot": pilot, "planned": n, "range": plan["skftr"]["range"],
                     "classical": plan["classical"]["labels"], "actual": actual,
                     "error": n / actual - 1, "width": float(np.mean(widths)),
                     "covered": int(sum(e.ci[0] <= truth <= e.ci[1] for e in fresh)),
                     "seconds": time.perf_counter() - start})
        r = rows[-1]
        print(f"{corpus:>8} n_p={pilot_size} pilot {pilot:2d}: planned {n:4d} "
              f"[{r['range'][0]:.0f}, {r['range'][1]:.0f}], classical {r['classical']:4d}, actual {actual:6.1f} "
              f"({r['error']:+.0%}), {r['seconds']:.0f} s", flush=True)
    return width, rows


def summary(corpus, size, width, rows, draws):
    errors = np.array([r["error"] for r in rows])
    classical = np.array([r["classical"] for r in rows]) / 400 - 1
    in_range = np.mean([r["range"][0] <= r["actual"] <= r["range"][1] for r in rows])
    coverage = sum(r["covered"] for r in rows) / (draws * len(rows))
    return (f"| {corpus} | {size} | {width:.4g} | "
            f"{np.median([r['planned'] for r in rows]):.0f} | "
            f"{np.median([r['actual'] for r in rows]):.0f} | {np.median(errors):+.1%} | "
            f"**{np.mean(np.abs(errors) <= 0.2):.0%}** | {np.mean(np.abs(classical) <= 0.2):.0%} "
            f"| {in_range:.0%} | {coverage:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=CORPORA)
    parser.add_argument("--pilots", type=int, default=20)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--pilot-sizes", nargs="+", type=int, default=[100])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="benchmarks/cache/features")
    parser.add_argument("--out", default=None, help="write the Markdown results here")
    args = parser.parse_args()
    from joblib import Memory

    memory = Memory(args.cache, verbose=0)
    results = {(c, size): run(c, args.pilots, args.draws, size, memory, args.seed)
               for c in args.corpora for size in args.pilot_sizes}
    header = ("| corpus | pilot labels | target width W | planned (median) | actual (median) "
              "| planned / actual - 1 (median) | skftr plans within +-20% | classical plans "
              "within +-20% of 400 | actual in the range | coverage of the fresh 95% CIs |")
    table = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    table += [summary(c, size, w, rows, args.draws) for (c, size), (w, rows) in results.items()]
    pilots = [("| corpus | pilot labels | pilot | planned | range | classical plan | actual "
               "| error |"), "|---|---|---|---|---|---|---|---|"]
    pilots += [(f"| {c} | {size} | {r['pilot']} | {r['planned']} | {r['range'][0]:.0f}-"
                f"{r['range'][1]:.0f} | {r['classical']} | {r['actual']:.0f} | "
                f"{r['error']:+.0%} |") for (c, size), (_, rows) in results.items() for r in rows]
    print("\n".join(table))
    if args.out:
        command = (f"python benchmarks/bench_plan.py --pilots {args.pilots} --draws "
                   f"{args.draws} --pilot-sizes {' '.join(map(str, args.pilot_sizes))} "
                   f"--seed {args.seed} --out {args.out}")
        Path(args.out).write_text("# `skftr plan`: planned against actual labels\n\n"
                                  f"Command: `{command}`\n\n" + "\n".join(table) + "\n\n"
                                  + "\n".join(pilots) + "\n")


if __name__ == "__main__":
    main()
