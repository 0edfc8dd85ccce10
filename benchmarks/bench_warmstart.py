"""Does the LoRA fine-tune beat its warm start, the frozen-embedding ridge?

For each data set (EmoBank valence, wine points) one fixed held-out set of
``--eval-rows`` rows is drawn, and nested training sets of ``--sizes`` rows from the
rest. At each size two predictors are fitted on the same rows and scored by their
held-out residual variance ``Var(y - f)`` (ddof 1), the error variance rectification
sees (docs/method.md §2.1):

* the frozen-embedding ridge ``make_pipeline(SentenceEmbedder(max_length=256),
  RidgeCV(alphas=10**(-3..4)))`` (the warm start's features and penalty grid);
* ``LoRARegressor()`` with its defaults (MiniLM, warm start, warm-up and decay, inner
  held-out check; docs/method.md §3).

Target: ratio LoRA / ridge <= 0.9. ``--steps K ...`` instead runs the pure fine-tune
(``holdout=0``, exactly K optimizer steps) at each size, to choose the step rule.
Writes ``--out`` (markdown) and prints each row as it is measured.

    python benchmarks/bench_warmstart.py --quick          # sizing run: 100 labels
    python benchmarks/bench_warmstart.py                  # 200, 400, 800 labels
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn.linear_model import RidgeCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from skftr import LoRARegressor, SentenceEmbedder  # noqa: E402
from skftr.datasets import load_emobank, load_wine_reviews  # noqa: E402

LOADERS = {"emobank": lambda: load_emobank("V"), "wine": load_wine_reviews}
ALPHAS = np.logspace(-3, 4, 15)


def var(y, pred):
    return float(np.var(y - pred, ddof=1))


def run(name, args, log):
    texts, y = LOADERS[name]()
    rows = np.random.default_rng(args.seed).permutation(len(y))
    eval_rows, pool = rows[: args.eval_rows], rows[args.eval_rows:]
    X_eval, y_eval = [texts[i] for i in eval_rows], y[eval_rows]
    for size in args.sizes:
        train = pool[:size]
        X, y_train = [texts[i] for i in train], y[train]
        row = {"data": name, "size": size, "var_y": var(y_eval, y_eval.mean())}
        start = time.perf_counter()
        ridge = make_pipeline(SentenceEmbedder(max_length=256, n_threads=args.threads),
                              RidgeCV(alphas=ALPHAS)).fit(X, y_train)
        row["ridge"] = var(y_eval, ridge.predict(X_eval))
        row["ridge_s"] = time.perf_counter() - start
        for steps in args.steps or [None]:
            params = {"random_state": args.seed, "n_threads": args.threads}
            if steps is not None:
                params.update(holdout=0, min_steps=steps, max_steps=steps, max_epochs=1)
            start = time.perf_counter()
            model = LoRARegressor(**params).fit(X, y_train)
            fit_s = time.perf_counter() - start
            out = dict(row, steps=model.n_steps_, lora=var(y_eval, model.predict(X_eval)),
                       fit_s=fit_s, predict_s=time.perf_counter() - start - fit_s,
                       kept=model.warm_start_kept_, inner_tuned=model.holdout_variance_,
                       inner_warm=model.warm_start_variance_)
            out["ratio"] = out["lora"] / out["ridge"]
            log(out)


def table(results):
    lines = ["| data | labels | Var(y) held out | ridge | LoRA | ratio | steps | warm start kept "
             "| inner held-out: tuned / warm | ridge s | LoRA fit s | predict s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['data']} | {r['size']} | {r['var_y']:.4g} | {r['ridge']:.4g} | "
                     f"{r['lora']:.4g} | **{r['ratio']:.3f}** | {r['steps']} | {r['kept']} | "
                     f"{r['inner_tuned']:.4g} / {r['inner_warm']:.4g} | {r['ridge_s']:.0f} | "
                     f"{r['fit_s']:.0f} | {r['predict_s']:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(LOADERS), default=["emobank", "wine"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 400, 800])
    parser.add_argument("--eval-rows", type=int, default=1000)
    parser.add_argument("--steps", type=int, nargs="+", default=None,
                        help="pure fine-tunes of exactly these step counts (no hold-out check)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="100 labels, 300 held-out rows")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.eval_rows = [100], 300

    start = time.perf_counter()
    results = []

    def log(row):  # the table so far is written after every row
        print(row, flush=True)
        results.append(row)
        minutes = (time.perf_counter() - start) / 60
        text = "\n".join([
            f"Command: `python benchmarks/bench_warmstart.py {' '.join(sys.argv[1:])}` "
            f"({minutes:.1f} min wall, {args.threads} torch thread(s))", "", table(results), ""])
        if args.out is not None:
            args.out.write_text(text)
        return text

    for name in args.datasets:
        run(name, args, log)
    print(table(results))


if __name__ == "__main__":
    main()
