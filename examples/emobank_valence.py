"""Mean valence of EmoBank sentences from a budget of 400 human labels (the main job).

Draws ``--budget`` sentences at random as the labeled ones (their valence V is the
"human label"), keeps the other sentences unlabeled, and lets
``FineTuneRectifyEstimator`` spend the budget with its defaults: 5-fold cross-fitting of
the top layer of all-mpnet-base-v2 fine-tuned with LoRA on the error variance (reading the
frozen trunk it shares with the mpnet ridge), beside four cheap predictors (ridges on
frozen MiniLM and mpnet embeddings, on TF-IDF and on text length), all rectified together
with power tuning (docs/method.md §2, §3.4). Prints the estimate and interval next to the classical
estimate from the same labels, the effective number of labels, and the truth (the mean
over every sentence of the file). ``--crossfit 0`` runs the paper's single split.

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
    parser.add_argument("--backbone", default="mpnet",
                        help="backbone of the fine-tuned model: 'mpnet' (all-mpnet-base-v2), "
                             "'minilm' (all-MiniLM-L6-v2), 'smollm2' (SmolLM2-135M GGUF) or a "
                             "local model directory")
    parser.add_argument("--top-layers", default="1",
                        help="layers fine-tuned on the frozen trunk (TopLayersRegressor), or "
                             "'all' for LoRA on every layer (LoRARegressor)")
    parser.add_argument("--memory", default=None,
                        help="directory that keeps the frozen trunks' passes (a rerun on the "
                             "same sentences skips them)")
    parser.add_argument("--loss", default="variance", choices=["variance", "mse", "correlation"],
                        help="fine-tuning objective")
    parser.add_argument("--method", default="ppi++", choices=["ppi", "ppi++"],
                        help="rectification (power-tuned by default)")
    parser.add_argument("--crossfit", type=int, default=5,
                        help="K folds of cross-fitting (every label fine-tunes K-1 models and "
                             "rectifies the other one); 0: the paper's single split with pilots")
    parser.add_argument("--no-finetune", action="store_true",
                        help="only the cheap predictors (no fine-tuned model)")
    parser.add_argument("--seed", type=int, default=0, help="draws the labeled sentences, "
                        "the pilots, the split and the LoRA initialisation")
    parser.add_argument("--data-dir", default=None,
                        help="folder with emobank.csv; None: $SKFTR_DATA_DIR or ../shared/data")
    parser.add_argument("--n-unlabeled", type=int, default=None,
                        help="random unlabeled sentences to use; None: all the others")
    parser.add_argument("--pilot-repeats", type=int, default=1, help="pilot fits per size")
    parser.add_argument("--min-steps", type=int, default=None,
                        help="--top-layers all: minimum optimizer steps per fine-tune")
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


def make_model(args):
    """None (the estimator's default, mpnet top layer) unless the flags ask otherwise."""
    from skftr import LoRARegressor, TopLayersRegressor

    if args.no_finetune:
        return "drop"
    if args.top_layers == "all":
        steps = {} if args.min_steps is None else {"min_steps": args.min_steps}
        return LoRARegressor(**backbone_params(args.backbone), max_length=64,
                             iterator_valid__batch_size=64, **steps)
    if args.backbone == "mpnet" and args.top_layers == "1":
        return None
    if args.backbone == "smollm2":
        raise SystemExit("--backbone smollm2 needs --top-layers all (its GGUF file loads "
                         "through LoRARegressor)")
    return TopLayersRegressor(backbone_params(args.backbone)["backbone"],
                              top_layers=int(args.top_layers))


def main():
    args = parse_args()
    start = time.perf_counter()
    if args.data_dir is not None:
        os.environ["SKFTR_DATA_DIR"] = args.data_dir
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from skftr import FineTuneRectifyEstimator
    from skftr.datasets import load_emobank
    from skftr.report import fit_summary

    texts, valence = load_emobank("V")
    has_text = np.array([isinstance(t, str) and bool(t.strip()) for t in texts])
    texts = np.asarray(texts, dtype=object)[has_text]
    valence = valence[has_text]
    truth = float(valence.mean())

    rng = np.random.RandomState(args.seed)
    order = rng.permutation(len(texts))
    labeled = order[:args.budget]
    unlabeled = order[args.budget:]
    if args.n_unlabeled is not None:
        unlabeled = unlabeled[:args.n_unlabeled]
    rows = np.concatenate([labeled, unlabeled])
    y = np.full(rows.size, np.nan)
    y[:labeled.size] = valence[labeled]  # only the budget's labels are seen

    est = FineTuneRectifyEstimator(make_model(args), loss=args.loss, method=args.method,
                                   crossfit=args.crossfit or None,
                                   pilot_repeats=args.pilot_repeats, memory=args.memory,
                                   random_state=args.seed)
    fit_start = time.perf_counter()
    est.fit(list(texts[rows]), y)
    fit_seconds = time.perf_counter() - fit_start

    ftr = est.estimate_
    level = f"{100 * (1 - ftr.alpha):.0f}%"
    covers = lambda lo, hi: "covers" if lo <= truth <= hi else "MISSES"  # noqa: E731
    print(f"EmoBank valence: {len(texts)} sentences, budget {args.budget} labels, "
          f"{unlabeled.size} unlabeled; fine-tuned "
          f"{'nothing' if args.no_finetune else f'{args.backbone} (top layers: {args.top_layers})'}"
          f", loss {args.loss}, "
          f"method {ftr.method}, seed {args.seed}")
    if args.crossfit:
        print(f"cross-fitting: {est.n_folds_} folds, each predictor fitted on "
              f"{labeled.size - labeled.size // est.n_folds_} labels; every label rectifies "
              "the predictors that did not see it")
    else:
        law, alloc = est.scaling_law_, est.allocation_
        print(f"scaling law from {len(law.pilots_)} pilots at sizes "
              f"{sorted(set(law.pilots_['size']))}: sigma^2(s) = {law.a_:.3g} "
              f"s^-{law.alpha_:.3g} + {law.b_:.3g}"
              + ("" if law.identified_ else " (not identified: flat law)"))
        print(f"allocation: {alloc.n_finetune} labels fine-tune ({alloc.n_pilot} of them pilot "
              f"labels), {alloc.n_rectify} rectify; projected sd {np.sqrt(alloc.variance):.4f}")
    lam = ", ".join(f"{name} {w:.2f}" for name, w in zip(est.predictor_names_, est.lam_))
    print(f"predictors and power-tuning weights: {lam}")
    print("\n".join(fit_summary(est).splitlines()[1:]))  # trunks, fine-tunes, stage times
    lo, hi = ftr.ci
    print(f"FTR estimate      {ftr.value:.4f}  {level} CI [{lo:.4f}, {hi:.4f}]  "
          f"width {hi - lo:.4f}  ({covers(lo, hi)} the truth)")
    clo, chi = ftr.classical_ci
    print(f"classical (n={labeled.size}) {np.mean(valence[labeled]):.4f}  {level} CI "
          f"[{clo:.4f}, {chi:.4f}]  width {chi - clo:.4f}  ({covers(clo, chi)} the truth)")
    print(f"truth (all {len(texts)} sentences) {truth:.4f}")
    print(f"effective labels: {ftr.n_effective:.0f} from {labeled.size} "
          f"({100 * (1 - labeled.size / ftr.n_effective):.0f}% of the labels saved)")
    print(f"wall time: {time.perf_counter() - start:.0f} s (fit {fit_seconds:.0f} s, "
          f"{torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()
