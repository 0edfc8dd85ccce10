"""The top-layers fine-tune against the ridge on the same frozen embedding, held out.

For each draw, ``--budget`` labeled texts train :class:`skftr.TopLayersRegressor` (its own
inner hold-out decides when to stop and whether the fine-tune beats its ridge warm start)
and the ridge (``RidgeCV``) on the same backbone's frozen pooled embedding; ``--test``
other texts measure the residual variance ``Var(y - f)`` of each. The trunk's pass over the
draw's texts is shared by both (``skftr.trunk.get_trunk``). Reported: the variance ratio
fine-tune / ridge (below 1: the fine-tune predicts better), how often the warm start was
kept, epochs, and the seconds of the fine-tune alone.

    python benchmarks/bench_finetune.py --corpus wine --draws 3 --budget 400
"""
import argparse
import sys
import time

import numpy as np
from sklearn.linear_model import RidgeCV

from skftr import TopLayersRegressor
from skftr._hf import torch_threads
from skftr.datasets import load_emobank, load_wine_reviews
from skftr.predictors import _ALPHAS
from skftr.trunk import get_trunk


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", choices=["wine", "emobank"], default="wine")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--configs", nargs="+", default=["mpnet:1", "mpnet:2", "minilm:1"],
                        help="backbone:top_layers[:adapter] (adapter lora, the default, or "
                             "full; top_layers = the backbone's depth tunes every layer)")
    args = parser.parse_args()
    texts, y = load_wine_reviews() if args.corpus == "wine" else load_emobank("V")
    print(f"{args.corpus}: budget {args.budget}, {args.test} held-out texts, "
          f"{args.draws} draws\n")
    print("| backbone | top layers | adapter | Var ratio fine-tune / ridge (mean, range) | warm start kept "
          "| epochs | fine-tune s |")
    print("|---|---|---|---|---|---|---|")
    for config in args.configs:
        backbone, k, adapter = (config.split(":") + ["lora"])[:3]
        ratios, kept, epochs, seconds = [], [], [], []
        for draw in range(args.draws):
            rows = np.random.default_rng(draw).choice(len(y), args.budget + args.test,
                                                      replace=False)
            train, test = rows[:args.budget], rows[args.budget:]
            model = TopLayersRegressor(backbone, top_layers=int(k), adapter=adapter,
                                       random_state=draw)
            trunk = get_trunk(model.trunk_spec())
            with torch_threads(None):
                out = trunk.run([texts[i] for i in rows], model.trunk_layers(trunk))
            lab, held = out.take(np.arange(args.budget)), out.take(
                np.arange(args.budget, rows.size))
            start = time.perf_counter()
            model.fit_trunk(lab, y[train])
            pred = model.predict_trunk(held)
            seconds.append(time.perf_counter() - start)
            ridge = RidgeCV(alphas=np.asarray(_ALPHAS)).fit(lab.embeddings, y[train])
            ratios.append(np.var(y[test] - pred) / np.var(y[test] - ridge.predict(held.embeddings)))
            kept.append(model.warm_start_kept_)
            epochs.append(model.n_epochs_)
            print(f"  {config} draw {draw}: ratio {ratios[-1]:.3f}, warm start kept "
                  f"{model.warm_start_kept_}, {model.n_epochs_} epochs, {seconds[-1]:.0f} s",
                  file=sys.stderr, flush=True)
        print(f"| {backbone} | {k} | {adapter} | {np.mean(ratios):.3f} [{min(ratios):.3f}, {max(ratios):.3f}] "
              f"| {sum(kept)}/{len(kept)} | {np.mean(epochs):.1f} | {np.mean(seconds):.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
