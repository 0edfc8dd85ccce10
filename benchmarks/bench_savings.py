"""Label savings of cross-fitted, power-tuned rectification with the cheap predictors.

Public API only: ``FineTuneRectifyEstimator("drop", predictors=[...], crossfit=K)``. For
each corpus, budget ``n`` and fresh draw, ``n`` rows are labeled at random and every other
row of the file is unlabeled (no cap); the truth is the mean of the whole file. Reports
per cell: the savings ``1 - n / n_eff`` with ``n_eff = n (classical width / width)^2``
(widths averaged over the draws), the coverage of the 95% interval, and the fit time.
Methods: K = 2, 3, 5 folds with both cheap predictors (a ridge on frozen MiniLM
embeddings, a ridge on TF-IDF word n-grams), each predictor alone at K = 5, the
frozen all-mpnet-base-v2 embeddings (alone, with TF-IDF, with both), and the ridge on the
texts' length (alone, and added to the three others: today's default predictors).

The embeddings of a corpus are computed once and cached (``TextRidge(memory=...)``), so
the draws cost only the ridge fits.

    python benchmarks/bench_savings.py --draws 50 --out benchmarks/results/savings_cheap.md
"""
import argparse
import shlex
import time
import warnings
from pathlib import Path

import numpy as np

CORPORA = ("wine", "emobank", "emobank_reader")


def load(name):
    from skftr import datasets

    if name == "wine":
        return datasets.load_wine_reviews()
    if name == "emobank":
        return datasets.load_emobank("V")
    texts, y, _ = datasets.load_emobank_reader("V", random_state=0)
    return texts, y


def methods(memory):
    from skftr import TextRidge

    emb = TextRidge(features="embedding", max_length=128, memory=memory)
    mpnet = TextRidge(features="embedding", backbone="mpnet", max_length=128, memory=memory)
    tfidf = TextRidge(features="tfidf")
    length = TextRidge(features="length")
    out = {f"cheap K={k}": ([emb, tfidf], k) for k in (2, 3, 5)}
    out["embedding ridge K=5"] = ([emb], 5)
    out["tf-idf ridge K=5"] = ([tfidf], 5)
    out["mpnet ridge K=5"] = ([mpnet], 5)
    out["mpnet + tf-idf K=5"] = ([mpnet, tfidf], 5)
    out["minilm + mpnet + tf-idf K=5"] = ([emb, mpnet, tfidf], 5)
    out["length ridge K=5"] = ([length], 5)
    out["minilm + mpnet + tf-idf + length K=5"] = ([emb, mpnet, tfidf, length], 5)
    return out


def run(corpus, n, draws, memory, seed, shuffle=False, only=None):
    from skftr import FineTuneRectifyEstimator

    texts, y_all = load(corpus)
    if shuffle:  # labels without signal: ratings shuffled against their texts
        y_all = np.random.RandomState(seed).permutation(y_all)
    truth = float(np.mean(y_all))
    rows = []
    for name, (predictors, k) in methods(memory).items():
        if only and name not in only:
            continue
        widths, classical, covered, seconds = [], [], 0, []
        for draw in range(draws):
            rng = np.random.RandomState([seed, n, draw])  # same draws for every method
            labeled = rng.choice(len(texts), size=n, replace=False)
            y = np.full(len(texts), np.nan)
            y[labeled] = y_all[labeled]
            est = FineTuneRectifyEstimator("drop", predictors=predictors, crossfit=k,
                                           random_state=draw)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(texts, y)
            seconds.append(time.perf_counter() - start)
            e = est.estimate_
            widths.append(e.ci[1] - e.ci[0])
            classical.append(e.classical_ci[1] - e.classical_ci[0])
            covered += e.ci[0] <= truth <= e.ci[1]
        n_eff = n * (np.mean(classical) / np.mean(widths)) ** 2
        rows.append({"corpus": corpus, "n": n, "method": name, "draws": draws,
                     "savings": 1 - n / n_eff, "coverage": covered / draws,
                     "width": float(np.mean(widths)), "classical_width": float(np.mean(classical)),
                     "seconds": float(np.median(seconds))})
        print(f"{corpus:>15} n={n:<5} {name:<22} savings {rows[-1]['savings']:+.1%}  "
              f"coverage {rows[-1]['coverage']:.2f}  {rows[-1]['seconds']:.1f} s/fit", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=CORPORA)
    parser.add_argument("--budgets", nargs="+", type=int, default=[200, 500, 1000])
    parser.add_argument("--draws", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="benchmarks/cache/features")
    parser.add_argument("--shuffle", action="store_true",
                        help="shuffle the labels against the texts (no signal)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="names of the methods to run (default: all)")
    parser.add_argument("--out", default=None, help="write a Markdown table here")
    args = parser.parse_args()
    from joblib import Memory

    memory = Memory(args.cache, verbose=0)
    rows = [r for corpus in args.corpora for n in args.budgets
            for r in run(corpus, n, args.draws, memory, args.seed, args.shuffle, args.methods)]
    if args.out:
        lines = ["| corpus | n | method | draws | savings | coverage | width | classical width "
                 "| s/fit |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['corpus']} | {r['n']} | {r['method']} | {r['draws']} | "
                  f"{r['savings']:+.1%} | {r['coverage']:.2f} | {r['width']:.4g} | "
                  f"{r['classical_width']:.4g} | {r['seconds']:.1f} |" for r in rows]
        command = "python benchmarks/bench_savings.py " + " ".join(
            f"--{k.replace('_', '-')} "
            f"{' '.join(shlex.quote(str(x)) for x in v) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k != "cache" and v is not None)
        command = command.replace(" --shuffle False", "").replace("--shuffle True", "--shuffle")
        Path(args.out).write_text(f"# Label savings with the cheap predictors\n\n`{command}`\n\n"
                                  + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
