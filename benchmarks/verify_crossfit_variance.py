"""Cross-PPI interval: residual variance pooled within folds versus across folds.

A model trained on the error variance is identified only up to a constant (METHOD.md §3),
so the K fold models of cross-fitting each sit at their own level. The cross-PPI estimate
does not depend on those levels, but a residual variance pooled *across* folds (as in
``ppi_py.crossppi_mean_ci``, and in skftr before it pooled within folds) counts their
spread as error. This script measures both intervals on the same real fold models: the
LoRA fold models of ``benchmarks/replicate.py`` (variance loss, budget ``n``, K folds,
the replication's settings), fitted here when its cache lacks them.

For each (dataset, seed) it reports the spread of the fold models' levels (mean residual
of each model on the 500 hold-out rows, which no model saw), the residual variance within
and across folds, the two interval widths and whether each covers the truth (the mean
label of the whole file). Output: ``benchmarks/results/crossfit_variance.md``.

Run (from the repository root)::

    python benchmarks/verify_crossfit_variance.py --jobs 2
"""
import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def load_replicate():
    spec = importlib.util.spec_from_file_location("replicate", HERE / "replicate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["wine", "emobank", "emobank_reader"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=1000, help="labelled rows n, cut in K folds")
    p.add_argument("--jobs", type=int, default=1, help="fine-tunes in parallel worker processes")
    p.add_argument("--cache-dir", type=Path, help="default: the replication's cache")
    p.add_argument("--out", type=Path, default=HERE / "results" / "crossfit_variance.md")
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--quick", action="store_true",
                   help="replicate.py's --quick settings (tiny run for the smoke test)")
    return p.parse_args(argv)


def pooled_stderr(y, yhat, fbar):
    """The across-folds interval: ``sqrt(Var(Y - f)/n + Var(fbar)/m)``, plug-in variances."""
    return float(np.sqrt((y - yhat).var() / y.size + fbar.var() / fbar.size))


def measure(rep, cfg, ds, seed, n):
    """One (dataset, seed): fold levels, both residual variances, both intervals."""
    from skftr.rectify import crossfit_mean
    from skftr.rectify._stats import z_crit

    perm = rep.permutation(ds, seed)
    parts = rep.crossfit_folds(perm, n, cfg.folds)
    preds = [rep.load_pred(rep.crossfit_path(cfg, ds, n, seed, k))[0] for k in range(cfg.folds)]
    labelled = np.concatenate([fold for _, fold in parts])
    folds = np.concatenate([np.full(len(fold), k) for k, (_, fold) in enumerate(parts)])
    yhat = np.concatenate([p[fold] for p, (_, fold) in zip(preds, parts)])
    unl = rep.unlabeled_rows(ds, np.sum(preds, axis=0), labelled)
    by_fold = np.stack([p[unl] for p in preds])
    y = ds.y[labelled]
    est = crossfit_mean(y, yhat, folds, by_fold, alpha=cfg.alpha)
    fbar = (np.bincount(folds) / n) @ by_fold
    pooled = pooled_stderr(y, yhat, fbar)
    resid = y - yhat
    fold_means = np.array([resid[folds == k].mean() for k in range(cfg.folds)])
    within = sum(np.sum((resid[folds == k] - fold_means[k]) ** 2) for k in range(cfg.folds))
    levels = np.array([np.mean(ds.y[ds.holdout] - p[ds.holdout]) for p in preds])
    z = z_crit(cfg.alpha)
    return {
        "dataset": ds.name, "seed": seed, "m": int(unl.size),
        "level_sd": float(levels.std(ddof=1)),
        "fold_mean_sd": float(fold_means.std(ddof=1)),
        "var_within": float(within / (n - cfg.folds)), "var_across": float(resid.var()),
        "var_y": float(ds.y.var()),
        "se_within": est.stderr, "se_across": pooled,
        "width_within": 2 * z * est.stderr, "width_across": 2 * z * pooled,
        "covers_within": bool(abs(est.value - ds.truth) <= z * est.stderr),
        "covers_across": bool(abs(est.value - ds.truth) <= z * pooled),
        "error": est.value - ds.truth,
    }


def interval_savings(rows, key, n):
    """``1 - n mean(se^2) / Var(Y)`` over the seeds (``key``: the standard-error field)."""
    return 1 - n * np.mean([r[key] ** 2 for r in rows]) / rows[0]["var_y"]


def markdown(rows, args, seconds, fitted):
    out = [
        "## Cross-PPI interval: residual variance within folds vs across folds",
        "",
        f"Command: `python benchmarks/verify_crossfit_variance.py "
        f"{' '.join(sys.argv[1:])}`; {seconds / 60:.1f} min on 2 CPU cores, {fitted} "
        f"fine-tunes run here (any other fold model came from the cache). "
        f"LoRA fold models of `replicate.py` (MiniLM, variance loss, its default settings), "
        f"n = {args.budget}, K = 5, unlabelled m = {rows[0]['m']}; 95% intervals.",
        "",
        "`level sd`: standard deviation over the K fold models of their mean residual on the "
        "500 hold-out rows (the spread of their levels); `fold-mean sd`: the same on their own "
        "folds. Widths are 2 z se; `covers`: the interval holds the file mean.",
        "",
        "| dataset | seed | level sd | fold-mean sd | Var within | Var across | Var(Y) | "
        "width within | width across | ratio | covers (within / across) | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['dataset']} | {r['seed']} | {r['level_sd']:.3g} | {r['fold_mean_sd']:.3g} | "
            f"{r['var_within']:.4g} | {r['var_across']:.4g} | {r['var_y']:.4g} | "
            f"{r['width_within']:.4g} | {r['width_across']:.4g} | "
            f"{r['width_within'] / r['width_across']:.3f} | "
            f"{'yes' if r['covers_within'] else 'no'} / {'yes' if r['covers_across'] else 'no'} | "
            f"{r['error']:+.4f} |"
        )
    out += ["", "Per dataset (mean over seeds; `savings (interval)` = 1 - n se^2 / Var(Y) with "
            "the mean se^2 over seeds: the labels the interval saves against the classical "
            "interval at n; `savings (m → ∞)` = 1 - Var within / Var(Y), the same with an "
            "unlimited unlabelled set):", ""]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        sub = [r for r in rows if r["dataset"] == name]
        ratio = np.mean([r["width_within"] / r["width_across"] for r in sub])
        out.append(
            f"- {name}: width within / across {ratio:.3f} (mean width "
            f"{np.mean([r['width_within'] for r in sub]):.4g} vs "
            f"{np.mean([r['width_across'] for r in sub]):.4g}); savings (interval) "
            f"{100 * interval_savings(sub, 'se_within', args.budget):.0f}% within vs "
            f"{100 * interval_savings(sub, 'se_across', args.budget):.0f}% across; savings "
            f"(m → ∞) {100 * (1 - np.mean([r['var_within'] for r in sub]) / sub[0]['var_y']):.0f}%; "
            f"covered {sum(r['covers_within'] for r in sub)} of {len(sub)} (within); "
            f"level sd of the fold models {np.mean([r['level_sd'] for r in sub]):.3g}; "
            f"{len(sub)} seeds"
        )
    return "\n".join(out) + "\n"


def main(argv=None):
    args = parse_args(argv)
    rep = load_replicate()
    start = time.perf_counter()
    rows, fitted = [], 0
    for name in args.datasets:
        rep_argv = ["--datasets", name, "--seeds", *map(str, args.seeds), "--jobs",
                    str(args.jobs), "--backbone", args.backbone, "--crossfit-budgets",
                    str(args.budget)]
        rep_argv += ["--quick"] if args.quick else []
        rep_argv += ["--cache-dir", str(args.cache_dir)] if args.cache_dir else []
        cfg, _ = rep.parse_args(rep_argv)
        rep.check_cache_config(cfg)
        ds = rep.load_dataset(name, cfg)
        wanted = {rep.crossfit_path(cfg, ds, args.budget, seed, k)
                  for seed in args.seeds for k in range(cfg.folds)}
        jobs = [job for job in rep.model_jobs(cfg, ds) if job.path in wanted]
        fitted += rep.finetune_stage(cfg, ds, jobs)
        rows += [measure(rep, cfg, ds, seed, args.budget) for seed in args.seeds]
    text = markdown(rows, args, time.perf_counter() - start, fitted)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
