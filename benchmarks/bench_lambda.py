"""Old versus stabilised power-tuning weight on real corpora, on the same draws.

The weight ``lam`` of several predictors (docs/method.md §2.4) used to be the plain
least-squares solution of ``[Cov_lab(f)/n + Cov_unl(f)/m] lam = Cov_lab(f, Y)/n``; it is now
pruned (``skftr.rectify._stats.power_tuning_weights``: a predictor is kept only when
dropping it would raise the estimated variance by more than ``2/n`` of it). This script
compares the two weights on the same data: for each corpus and fresh draw ``d``
(``numpy.random.default_rng(seed + d)``), ``n`` rows are labeled at random and every other row
of the file is unlabeled; three ridges (``RidgeCV``, the penalties of
``skftr.TextRidge``) on TF-IDF word 1-2 grams, on the length features and on frozen MiniLM
embeddings are cross-fitted in 5 folds (out-of-fold predictions for the labeled rows, each
unlabeled row predicted by one fold model, assigned in proportion to the fold sizes: the
layout of ``FineTuneRectifyEstimator("drop", predictors=[TextRidge("tfidf"),
TextRidge("length"), TextRidge("embedding")], crossfit=5)``). The features use no label, so
they are computed once per corpus (``TextRidge(...).make_features()``, cached on disk) and
only the ridges are refitted per draw.

NEW is ``skftr.rectify.rectified_mean`` itself (public API). OLD is the same estimate and
interval at the weight of a private copy of the original algorithm (``_old_weights``),
computed from the formulas of ``rectified_mean``'s docstring; the script checks that those
formulas reproduce ``rectified_mean`` at the new weight. Reported per corpus and weight:
mean savings ``1 - width^2 / classical_width^2`` (and the savings of the mean widths),
coverage of the full-file mean by the 95% interval, the root mean squared error of the
estimates, per predictor the largest ``|lam_j|`` seen (and its 90% quantile over the draws)
and the largest contribution ``|lam_j| sd(f_j) / sd(Y)``, and how often it got weight 0.

    python benchmarks/bench_lambda.py --draws 100 --out benchmarks/results/lambda.md
"""
import argparse
import shlex
import time
from pathlib import Path

import numpy as np

CORPORA = ("wine", "emobank")
FEATURES = ("tfidf", "length", "embedding")
ALPHAS = 10.0 ** np.arange(-3, 5)  # TextRidge's default penalties
K = 5


def load(name):
    from skftr import datasets

    return datasets.load_wine_reviews() if name == "wine" else datasets.load_emobank("V")


def _features(corpus):
    """Label-free features of every text of ``corpus`` (cached by the caller)."""
    from skftr import TextRidge

    texts, _ = load(corpus)
    return {kind: TextRidge(features=kind).make_features().fit_transform(texts)
            for kind in FEATURES}


# ------------------------------------------------------------------ the original weight
def _old_weights(cov_labeled, cov_unlabeled, hess_inv=None):
    """The original ``power_tuning_weights``: plain minimum-norm least squares."""
    from skftr.rectify._stats import _trace_products

    negligible = np.sqrt(np.finfo(float).eps)
    d = cov_labeled.shape[0] - cov_unlabeled.shape[0]
    lab = _trace_products(cov_labeled, cov_labeled.shape[0] // d, hess_inv)
    p = lab.shape[0] - 1
    var = lab[1:, 1:] + _trace_products(cov_unlabeled, p, hess_inv)
    scale = np.sqrt(np.clip(np.diag(var), 0.0, None))
    live = scale > negligible * np.sqrt(max(lab[0, 0], 0.0))
    lam = np.zeros(p)
    if live.any():
        s = scale[live]
        corr = var[np.ix_(live, live)] / np.outer(s, s)
        lam[live] = np.linalg.lstsq(corr, lab[1:, 0][live] / s, rcond=1e-10)[0] / s
    return lam


# ------------------------------------------------------------------ rectified_mean's formulas
def _pooled(values, groups, k):
    """Covariance of the mean of the rows of ``values``, pooled within the ``k`` groups."""
    total = values.shape[0]
    m2 = sum(np.cov(values[groups == g].T, ddof=0, bias=True).reshape(values.shape[1], -1)
             * np.sum(groups == g) for g in range(k))
    return m2 / (total * (total - k))


def _mean_at(lam, y, f, fu, folds, folds_u):
    """Estimate and stderr of the cross-fitted rectified mean at the weight ``lam``
    (``rectified_mean``'s docstring: assignment layout, residuals pooled within folds)."""
    n, m = y.size, fu.shape[0]
    n_k, m_k = np.bincount(folds, minlength=K), np.bincount(folds_u, minlength=K)
    w = (n_k / n * m / m_k)[folds_u]
    lab_cov = _pooled(np.column_stack([y, f]), folds, K)
    unl_cov = _pooled(w[:, None] * fu, folds_u, K)
    a = np.concatenate([[1.0], -lam])
    value = y.mean() + lam @ ((w[:, None] * fu).mean(axis=0) - f.mean(axis=0))
    return value, np.sqrt(a @ lab_cov @ a + lam @ unl_cov @ lam), lab_cov, unl_cov


def draw(features, y_all, n, seed):
    """One draw: labeled rows, folds and the out-of-fold / assigned predictions (n, p), (m, p)."""
    from sklearn.linear_model import RidgeCV

    rng = np.random.default_rng(seed)
    labeled = rng.choice(y_all.size, n, replace=False)
    unlabeled = np.setdiff1d(np.arange(y_all.size), labeled)
    folds = rng.permutation(np.arange(n) % K)
    folds_u = rng.permutation(np.arange(unlabeled.size) % K)
    f, fu = np.empty((n, len(FEATURES))), np.empty((unlabeled.size, len(FEATURES)))
    for j, kind in enumerate(FEATURES):
        Z = features[kind]
        for k in range(K):
            train = labeled[folds != k]
            ridge = RidgeCV(alphas=ALPHAS).fit(Z[train], y_all[train])
            f[folds == k, j] = ridge.predict(Z[labeled[folds == k]])
            fu[folds_u == k, j] = ridge.predict(Z[unlabeled[folds_u == k]])
    return y_all[labeled], f, fu, folds, folds_u


def run(corpus, n, draws, seed, memory):
    from skftr.rectify import rectified_mean

    y_all = load(corpus)[1]
    start = time.perf_counter()
    features = memory.cache(_features)(corpus)
    print(f"{corpus}: features in {time.perf_counter() - start:.0f} s", flush=True)
    truth = y_all.mean()
    out = {"old": [], "new": []}  # per draw: value, stderr, classical stderr, lam, contribution
    for d in range(draws):
        y, f, fu, folds, folds_u = draw(features, y_all, n, seed + d)
        new = rectified_mean(y, f, fu, folds=folds, folds_unlabeled=folds_u)
        value, stderr, lab_cov, unl_cov = _mean_at(new.lam, y, f, fu, folds, folds_u)
        assert np.isclose(value, new.value, rtol=1e-9) and np.isclose(stderr, new.stderr,
                                                                      rtol=1e-9)
        old_lam = _old_weights(lab_cov, unl_cov)
        old_value, old_stderr, _, _ = _mean_at(old_lam, y, f, fu, folds, folds_u)
        sd = np.sqrt(np.diag(lab_cov)[1:] / np.diag(lab_cov)[0])  # sd(f_j) / sd(Y)
        for key, v, se, lam in (("old", old_value, old_stderr, old_lam),
                                ("new", new.value, new.stderr, np.asarray(new.lam))):
            out[key].append((v, se, new.classical_stderr, lam, np.abs(lam) * sd))
        print(f"  draw {d}: lam old {np.round(old_lam, 3)} new {np.round(new.lam, 3)}", flush=True)
    rows = []
    for key, res in out.items():
        value, se, cse = (np.array([r[i] for r in res]) for i in range(3))
        lam, contrib = np.array([r[3] for r in res]), np.array([r[4] for r in res])
        half = 1.959963984540054 * se
        rows.append({
            "corpus": corpus, "n": n, "weight": key, "draws": draws,
            "savings": np.mean(1 - se**2 / cse**2),
            "savings_of_mean": 1 - se.mean() ** 2 / cse.mean() ** 2,
            "coverage": np.mean(np.abs(value - truth) <= half),
            "max_lam": np.abs(lam).max(axis=0), "p90_lam": np.quantile(np.abs(lam), 0.9, axis=0),
            "max_contrib": contrib.max(axis=0),
            "zero": (lam == 0).mean(axis=0), "rmse": np.sqrt(np.mean((value - truth) ** 2))})
    return rows


NOTE = """Triples are per predictor: TF-IDF ridge / length ridge / embedding ridge. savings:
mean over draws of `1 - width^2 / classical_width^2`; savings of mean width: the same from the
widths averaged over the draws; coverage: share of the 95% intervals covering the mean of the
whole file (standard error about 0.02 over 100 draws); rmse: root mean squared error of the
estimates over the draws; `sd(f)` is the spread of the out-of-fold predictions pooled within
folds (what the interval uses). Both weights are evaluated on the same draws and predictions.
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=CORPORA)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="benchmarks/cache/lambda")
    parser.add_argument("--out", default=None, help="write a Markdown table here")
    args = parser.parse_args()
    from joblib import Memory

    memory = Memory(args.cache, verbose=0)
    rows = [r for corpus in args.corpora for r in run(corpus, args.n, args.draws, args.seed,
                                                      memory)]
    header = ("| corpus | n | weight | draws | savings | savings of mean width | coverage | rmse "
              "| max abs lam | 90% quantile of abs lam | max abs lam sd(f)/sd(Y) | share lam = 0 |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in rows:
        triple = lambda a, fmt: " / ".join(format(x, fmt) for x in a)  # noqa: E731
        lines.append(f"| {r['corpus']} | {r['n']} | {r['weight']} | {r['draws']} | "
                     f"{r['savings']:+.1%} | {r['savings_of_mean']:+.1%} | {r['coverage']:.3f} | "
                     f"{r['rmse']:.4g} | {triple(r['max_lam'], '.3g')} | "
                     f"{triple(r['p90_lam'], '.3g')} | "
                     f"{triple(r['max_contrib'], '.3f')} | {triple(r['zero'], '.0%')} |")
    print("\n".join(lines))
    if args.out:
        command = "python benchmarks/bench_lambda.py " + " ".join(
            f"--{k} {' '.join(shlex.quote(str(x)) for x in v) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k != "cache" and v is not None)
        Path(args.out).write_text(
            "# Power-tuning weight: old (plain least squares) versus new (pruned)\n\n"
            f"`{command}`\n\n" + "\n".join(lines) + "\n\n" + NOTE)


if __name__ == "__main__":
    main()
