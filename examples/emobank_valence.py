"""Mean valence of EmoBank sentences from a budget of 400 human labels (the main job).

Draws ``--budget`` sentences at random as the labelled ones (their valence V is the
"human label"), keeps the other sentences unlabelled, and lets
``FineTuneRectifyEstimator`` spend the budget: LoRA pilots on MiniLM fit the scaling
law, the optimal allocation splits the budget (pilot labels included), the model is
fine-tuned with the error-variance loss and rectified on the remaining labels. Prints
the FTR estimate and interval next to the classical estimate from the same labels and
the truth (the mean over every sentence of the file).

    python examples/emobank_valence.py --budget 400 --seed 0
"""
import argparse
import os
import time

import numpy as np


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--budget", type=int, default=400, help="human labels to spend")
    parser.add_argument("--backbone", default="minilm",
                        help="'minilm' (all-MiniLM-L6-v2), 'smollm2' (SmolLM2-135M GGUF) or a "
                             "local model directory")
    parser.add_argument("--loss", default="variance", choices=["variance", "mse", "correlation"],
                        help="fine-tuning objective")
    parser.add_argument("--method", default="ppi", choices=["ppi", "ppi++"],
                        help="rectification")
    parser.add_argument("--crossfit", type=int, default=None,
                        help="K folds of cross-fitting instead of pilots and a split (every "
                             "label fine-tunes K-1 models and rectifies the other one)")
    parser.add_argument("--seed", type=int, default=0, help="draws the labelled sentences, "
                        "the pilots, the split and the LoRA initialisation")
    parser.add_argument("--data-dir", default=None,
                        help="folder with emobank.csv; None: $SKFTR_DATA_DIR or ../shared/data")
    parser.add_argument("--n-unlabeled", type=int, default=None,
                        help="random unlabelled sentences to use; None: all the others")
    parser.add_argument("--pilot-repeats", type=int, default=1, help="pilot fits per size")
    parser.add_argument("--min-steps", type=int, default=30,
                        help="minimum optimizer steps per fine-tune (pilots included)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads; None: torch's choice (all cores)")
    return parser.parse_args()


def backbone_params(name):
    from skftr.backbones import smollm2_135m

    if name == "minilm":
        return {"backbone": None}
    if name == "smollm2":
        path, gguf = smollm2_135m()
        return {"backbone": path, "gguf_file": gguf}
    return {"backbone": name}


def main():
    args = parse_args()
    start = time.perf_counter()
    if args.data_dir is not None:
        os.environ["SKFTR_DATA_DIR"] = args.data_dir
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from skftr import FineTuneRectifyEstimator, LoRARegressor, rectified_mean
    from skftr.datasets import load_emobank

    texts, valence = load_emobank("V")
    has_text = np.array([isinstance(t, str) and bool(t.strip()) for t in texts])
    texts = np.asarray(texts, dtype=object)[has_text]
    valence = valence[has_text]
    truth = float(valence.mean())

    rng = np.random.RandomState(args.seed)
    order = rng.permutation(len(texts))
    labelled = order[:args.budget]
    unlabelled = order[args.budget:]
    if args.n_unlabeled is not None:
        unlabelled = unlabelled[:args.n_unlabeled]
    rows = np.concatenate([labelled, unlabelled])
    y = np.full(rows.size, np.nan)
    y[:labelled.size] = valence[labelled]  # only the budget's labels are seen

    model = LoRARegressor(**backbone_params(args.backbone), max_length=64, batch_size=16,
                          max_epochs=4, min_steps=args.min_steps, lr=1e-3,
                          random_state=args.seed, iterator_valid__batch_size=64)
    est = FineTuneRectifyEstimator(model, loss=args.loss, method=args.method,
                                   crossfit=args.crossfit, pilot_repeats=args.pilot_repeats,
                                   random_state=args.seed)
    fit_start = time.perf_counter()
    est.fit(list(texts[rows]), y)
    fit_seconds = time.perf_counter() - fit_start

    ftr = est.estimate_
    classical = rectified_mean(valence[labelled], valence[labelled], valence[labelled],
                               method="classical")
    alloc, law = est.allocation_, est.scaling_law_
    level = f"{100 * (1 - ftr.alpha):.0f}%"
    covers = lambda e: "covers" if e.ci[0] <= truth <= e.ci[1] else "MISSES"  # noqa: E731

    method = f"cross-{args.method} (K={args.crossfit})" if args.crossfit else args.method
    print(f"EmoBank valence: {len(texts)} sentences, budget {args.budget} labels, "
          f"{unlabelled.size} unlabelled; backbone {args.backbone}, loss {args.loss}, "
          f"method {method}, seed {args.seed}")
    if args.crossfit:
        print(f"cross-fitting: {args.crossfit} LoRA models, each fine-tuned on "
              f"{labelled.size - labelled.size // args.crossfit} labels; every label "
              "rectifies the model that did not see it")
    else:
        print(f"scaling law from {len(law.pilots_)} pilots at sizes "
              f"{sorted(set(law.pilots_['size']))}: sigma^2(s) = {law.a_:.3g} "
              f"s^-{law.alpha_:.3g} + {law.b_:.3g}"
              + ("" if law.identified_ else " (not identified: flat law)"))
        print(f"allocation: {alloc.n_finetune} labels fine-tune ({alloc.n_pilot} of them pilot "
              f"labels), {alloc.n_rectify} rectify; projected sd {np.sqrt(alloc.variance):.4f}")
    print(f"FTR estimate      {ftr.value:.4f}  {level} CI [{ftr.ci[0]:.4f}, {ftr.ci[1]:.4f}]  "
          f"width {ftr.ci[1] - ftr.ci[0]:.4f}  ({covers(ftr)} the truth)")
    print(f"classical (n={labelled.size}) {classical.value:.4f}  {level} CI "
          f"[{classical.ci[0]:.4f}, {classical.ci[1]:.4f}]  width "
          f"{classical.ci[1] - classical.ci[0]:.4f}  ({covers(classical)} the truth)")
    print(f"truth (all {len(texts)} sentences) {truth:.4f}")
    print(f"effective labels of FTR: {np.var(valence[labelled]) / ftr.stderr ** 2:.0f} "
          f"(classical: {labelled.size})")
    print(f"wall time: {time.perf_counter() - start:.0f} s (fit {fit_seconds:.0f} s, "
          f"{torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()
