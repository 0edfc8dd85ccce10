"""Scaling law of LoRA fine-tuning itself (issue 4, item 5, second half).

``ScalingLaw.from_pilots`` with ``LoRARegressor`` (MiniLM, variance loss) on a random
subset of a corpus: pilots at ``--sizes`` (nested subsets, ``--repeats`` each), the error
variance measured on ``--holdout`` held-out rows. Reports the fitted ``(a, alpha, b, R^2)``
beside the paper's and, for each budget ``n``, the allocation ``s*`` with the projected
``V(s*)`` against the best ``V(s) = sigma^2(s)/(n - s)`` over the measured pilot sizes
(the pilot curve itself is the measured truth here: on 2 CPU cores a dense curve of LoRA
fits is out of reach). Writes ``benchmarks/results/scaling_lora_<dataset>.{md,png}``.

    python benchmarks/verify_scaling_lora.py --dataset emobank
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skftr import LoRARegressor, ScalingLaw, optimal_allocation  # noqa: E402
from skftr.datasets import load_emobank, load_wine_reviews  # noqa: E402

PAPER = "0.287 | 0.297 | 0.042 | 0.848"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["emobank", "wine"], default="emobank")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200, 400])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--holdout", type=int, default=1000)
    parser.add_argument("--budgets", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--min-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    texts, y = load_emobank("V") if args.dataset == "emobank" else load_wine_reviews()
    rng = np.random.RandomState(args.seed)
    rows = rng.choice(len(y), size=max(args.sizes) + args.holdout, replace=False)
    X = [texts[i] for i in rows]
    model = LoRARegressor(max_length=64 if args.dataset == "emobank" else 128,
                          min_steps=args.min_steps, random_state=args.seed)
    start = time.perf_counter()
    law = ScalingLaw.from_pilots(model, X, y[rows], args.sizes, n_repeats=args.repeats,
                                 holdout=args.holdout, random_state=args.seed)
    seconds = time.perf_counter() - start

    pilots = law.pilots_
    measured = pilots.groupby("size")["error_variance"].mean()
    lines = [
        f"### LoRA pilots on {args.dataset} (MiniLM, variance loss)", "",
        f"Command: `python benchmarks/verify_scaling_lora.py {' '.join(sys.argv[1:])}`"
        f" ({len(pilots)} fine-tunes, {seconds / 60:.1f} min on 2 CPU cores; "
        f"held-out rows {args.holdout}, Var(Y) there {np.var(y[rows][law.holdout_indices_], ddof=1):.4g})",
        "", "| size s | measured sigma^2(s) (mean of repeats) | law |", "|---|---|---|",
    ]
    for s, v in measured.items():
        lines.append(f"| {s} | {v:.4g} | {float(law.predict([s])[0]):.4g} |")
    lines += ["", "| | a | alpha | b | R^2 |", "|---|---|---|---|---|", f"| paper | {PAPER} |",
              f"| {args.dataset}, LoRA pilots | {law.a_:.4g} | {law.alpha_:.3g} | {law.b_:.3g} | "
              f"{law.r2_:.3f} |", "",
              f"Law identified: {law.identified_}. Bootstrap 95% intervals: "
              + ", ".join(f"{k} [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in law.intervals_.items()),
              "", "| budget n | s* (law) | best measured pilot size | V(s*) against the best measured pilot size (interpolated; negative: s* beats every pilot size) |",
              "|---|---|---|---|"]
    sizes, sigma2 = measured.index.to_numpy(float), measured.to_numpy()
    for n in args.budgets:
        s_star = optimal_allocation(n, law).n_finetune
        # measured V at s*: log-log interpolation of the measured curve
        v_star = np.exp(np.interp(np.log(s_star), np.log(sizes), np.log(sigma2))) / (n - s_star)
        v_grid = sigma2 / (n - sizes)
        best = int(sizes[np.argmin(v_grid)])
        lines.append(f"| {n} | {s_star} | {best} | {v_star / v_grid.min() - 1:+.1%} |")
    text = "\n".join(lines) + "\n"
    out = ROOT / "benchmarks" / "results" / f"scaling_lora_{args.dataset}"
    out.with_suffix(".md").write_text(text)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = law.plot()
    ax.set_title(f"LoRA (MiniLM) pilots, {args.dataset}")
    plt.savefig(out.with_suffix(".png"), dpi=100, bbox_inches="tight")
    print(text)


if __name__ == "__main__":
    main()
