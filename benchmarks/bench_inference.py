"""Faster CPU inference (issue 16): texts per CPU-second and the held-out residual variance.

    python benchmarks/bench_inference.py --holdouts 0.15 0 --smollm2-texts 40

MiniLM: ``LoRARegressor(random_state=0, holdout=h)`` fine-tuned on 300 EmoBank sentences
(valence, random rows, seed 0), then ``predict`` on 1,000 other random sentences with
the fitted model as it is (fp32, LoRA unmerged: today's path) and with
``skftr.inference.optimize(model, method)`` for each method. ``holdout=0.15`` is the
default (the inner check may keep the warm start, LoRA at zero); ``holdout=0`` always
keeps the fine-tuned LoRA. SmolLM2-135M (GGUF): a 2-step fit on 32 sentences, speed only,
on a subsample of ``--smollm2-texts`` sentences.

One process, one torch thread (``torch.set_num_threads(1)``), ``time.process_time``;
the variants run interleaved, ``--repeats`` times each, and the median CPU seconds per
variant is reported (the machine is shared). Residual variance: ``Var(y - f)`` (ddof 1)
on the held-out sentences; the ratio to fp32 is the change in the rectified variance the
predictor causes. Batch dependence: the largest change of a prediction when the same
texts are predicted in the reverse order (other batch-mates).
Writes ``benchmarks/results/inference.md``.
"""
import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("merged", "int8")


def variants(model):
    from skftr.inference import optimize

    return {"fp32 (today)": model, **{m: optimize(model, m) for m in METHODS}}


def measure(models, texts, repeats):
    """Median CPU seconds and predictions of each variant, runs interleaved."""
    times, preds = {k: [] for k in models}, {}
    order = list(models)
    for rep in range(repeats):
        for name in order if rep % 2 == 0 else order[::-1]:
            start = time.process_time()
            preds[name] = models[name].predict(texts)
            times[name].append(time.process_time() - start)
    return {k: float(np.median(v)) for k, v in times.items()}, preds


def minilm_rows(holdout, n_train, n_test, repeats):
    from skftr import LoRARegressor
    from skftr.datasets import load_emobank

    texts, y = load_emobank("V")
    rows = np.random.RandomState(0).permutation(len(texts))
    train, test = rows[:n_train], rows[n_train:n_train + n_test]
    start = time.process_time()
    model = LoRARegressor(random_state=0, holdout=holdout, n_threads=1)
    model.fit([texts[i] for i in train], y[train])
    fit_cpu = time.process_time() - start
    X, y_test = [texts[i] for i in test], y[test]
    models = variants(model)
    cpu, preds = measure(models, X, repeats)
    base_var = np.var(y_test - preds["fp32 (today)"], ddof=1)
    rows = []
    for name, model_v in models.items():
        reverse = model_v.predict(X[::-1])[::-1]
        rows.append({"variant": name, "texts_per_cpu_s": len(X) / cpu[name],
                     "speedup": cpu["fp32 (today)"] / cpu[name],
                     "resid_var": np.var(y_test - preds[name], ddof=1),
                     "ratio": np.var(y_test - preds[name], ddof=1) / base_var,
                     "max_diff": np.max(np.abs(preds[name] - preds["fp32 (today)"])),
                     "batch_dep": np.max(np.abs(reverse - preds[name]))})
    info = {"holdout": holdout, "fit_cpu_s": fit_cpu, "kept": model.warm_start_kept_,
            "var_y": np.var(y_test, ddof=1)}
    return info, rows


def smollm2_rows(n_texts, repeats):
    from skftr import LoRARegressor
    from skftr.backbones import smollm2_135m
    from skftr.datasets import load_emobank

    texts, y = load_emobank("V")
    rows = np.random.RandomState(1).permutation(len(texts))
    directory, gguf = smollm2_135m()
    model = LoRARegressor(directory, gguf_file=gguf, random_state=0, min_steps=2, max_epochs=1,
                          holdout=0, n_threads=1)
    model.fit([texts[i] for i in rows[:32]], y[rows[:32]])
    X = [texts[i] for i in rows[32:32 + n_texts]]
    models = variants(model)
    cpu, preds = measure(models, X, repeats)
    return [{"variant": k, "texts_per_cpu_s": len(X) / cpu[k],
             "speedup": cpu["fp32 (today)"] / cpu[k],
             "max_diff": np.max(np.abs(preds[k] - preds["fp32 (today)"]))} for k in models]


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holdouts", type=float, nargs="+", default=[0.15, 0.0])
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smollm2-texts", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    lines = ["## Faster CPU inference (issue 16): `benchmarks/bench_inference.py`", "",
             "```", "python benchmarks/bench_inference.py " + " ".join(sys.argv[1:]), "```", ""]
    for holdout in args.holdouts:
        info, rows = minilm_rows(holdout, args.train, args.test, args.repeats)
        print(info, rows, flush=True)
        lines += [f"### MiniLM + LoRA, EmoBank V, {args.train} training / {args.test} held-out "
                  f"sentences, holdout={holdout}", "",
                  f"Fit: {info['fit_cpu_s']:.0f} CPU s; warm start kept: {info['kept']}; "
                  f"held-out Var(y) {info['var_y']:.4f}.", "",
                  "| variant | texts / CPU s | speed-up | held-out Var(y - f) | ratio to fp32 "
                  "| max abs change | batch dependence |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['variant']} | {r['texts_per_cpu_s']:.1f} | {r['speedup']:.2f}x | "
                  f"{r['resid_var']:.5f} | {r['ratio']:.4f} | {r['max_diff']:.2g} | "
                  f"{r['batch_dep']:.2g} |" for r in rows]
        lines.append("")
    if args.smollm2_texts:
        rows = smollm2_rows(args.smollm2_texts, args.repeats)
        print(rows, flush=True)
        lines += [f"### SmolLM2-135M (GGUF) + LoRA, {args.smollm2_texts} EmoBank sentences "
                  "(speed only: a 2-step fit)", "",
                  "| variant | texts / CPU s | speed-up | max abs change |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {r['variant']} | {r['texts_per_cpu_s']:.2f} | {r['speedup']:.2f}x | "
                  f"{r['max_diff']:.2g} |" for r in rows]
        lines.append("")
    out = ROOT / "benchmarks" / "results" / "inference.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
