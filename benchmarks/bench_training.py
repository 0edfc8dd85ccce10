"""Benchmarks of LoRA fine-tuning (issue 3): speed, length grouping, inference, quality.

Sections (pick with flags; none given = all):

  --throughput  LoRARegressor.fit against a minimal plain PyTorch + peft loop with the
                same model, data, batch size and number of steps, in this process.
                Runs alternate (A B A B ...); the figure is the ratio of medians.
  --bucketing   length grouping against plain padding on wine reviews: fit (random
                batches run as length-sorted chunks) and predict (texts sorted by length).
  --inference   predict throughput (texts/s) and peak RSS on the 5,810 wine reviews,
                MiniLM and SmolLM2-135M, each in a fresh subprocess (SmolLM2: a subset,
                extrapolated; see --smollm2-texts).
  --quality     held-out residual variance, MiniLM + LoRA at --train-size reviews /
                sentences, variance and MSE loss, wine points and EmoBank valence.

Run from the repository root, e.g.  python benchmarks/bench_training.py --throughput
Results are printed and written as JSON to benchmarks/cache/training_<section>.json.
"""
import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "cache"
sys.path.insert(0, str(ROOT))


def save(name, result):
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / f"training_{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2), flush=True)


def wine_subset(n, seed):
    from skftr.datasets import load_wine_reviews

    texts, y = load_wine_reviews()
    idx = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in idx], y[idx]


# --------------------------------------------------------------------------- throughput
def plain_loop(texts, y, batch_size, steps, lr, seed, max_length):
    """Minimal reference: tokenizer, AutoModelForSequenceClassification + peft LoRA,
    shuffled batches padded by the tokenizer, variance loss, AdamW."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from skftr.backbones import minilm

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm())
    model = AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=1)
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=8, lora_alpha=16, lora_dropout=0.1,
                                             target_modules=["query", "key", "value", "dense"]))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    target = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)
    model.train()
    done = 0
    while done < steps:
        for batch in torch.randperm(len(texts)).split(batch_size):
            if done == steps:
                break
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            pred = model(**inputs).logits[:, 0]
            loss = torch.var(target[batch] - pred, correction=1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
    return model


class Timer:
    """Wall-clock and process CPU seconds. On a shared machine the CPU time of
    a single-threaded run (--threads 1) is the less noisy measure."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def summarise(timings):
    """Median wall and CPU seconds of each variant."""
    return {k: {"wall": statistics.median(t["wall"] for t in v), "cpu": statistics.median(t["cpu"] for t in v)}
            for k, v in timings.items()}


def bench_throughput(args):
    from skftr.lora import LoRARegressor

    n, bs = args.throughput_texts, 16
    texts, y = wine_subset(n, seed=1)
    steps = math.ceil(n / bs)  # one epoch

    def run(name, seed):
        if name == "plain":
            plain_loop(texts, y, bs, steps, 1e-3, seed, 256)
        else:
            LoRARegressor(batch_size=bs, max_epochs=1, min_steps=0, lr=1e-3, random_state=seed,
                          group_by_length=(name == "skftr_grouped")).fit(texts, y)

    names = ("skftr", "plain", "skftr_grouped")
    for name in names:  # warm-up (imports, allocator, MKL), not timed
        run(name, 0)
    timings = {name: [] for name in names}
    for rep in range(args.repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            with Timer() as t:
                run(name, rep + 1)
            timings[name].append({"wall": t.wall, "cpu": t.cpu})
            print(f"rep {rep} {name}: wall {t.wall:.2f} s, cpu {t.cpu:.2f} s", flush=True)
    med = summarise(timings)
    save("throughput", {
        "texts": n, "batch_size": bs, "steps": steps, "repeats": args.repeats, "threads": args.threads,
        "timings": timings, "median": med,
        "ratio_cpu_skftr_vs_plain": med["plain"]["cpu"] / med["skftr"]["cpu"],
        "ratio_wall_skftr_vs_plain": med["plain"]["wall"] / med["skftr"]["wall"],
        "ratio_cpu_skftr_grouped_vs_plain": med["plain"]["cpu"] / med["skftr_grouped"]["cpu"],
        "ratio_wall_skftr_grouped_vs_plain": med["plain"]["wall"] / med["skftr_grouped"]["wall"],
    })


# --------------------------------------------------------------------------- bucketing
def bench_bucketing(args):
    from skftr.lora import LoRARegressor

    n, bs = args.bucketing_texts, 16
    texts, y = wine_subset(n, seed=2)
    fit_t = {"grouped": [], "padded": []}
    pred_t = {"grouped": [], "padded": []}
    LoRARegressor(max_epochs=1, min_steps=0).fit(texts[:32], y[:32])  # warm-up, not timed
    for rep in range(args.repeats):
        for name in ("grouped", "padded") if rep % 2 == 0 else ("padded", "grouped"):
            grouped = name == "grouped"
            est = LoRARegressor(batch_size=bs, max_epochs=1, min_steps=0, random_state=rep,
                                group_by_length=grouped, iterator_valid__batch_size=64)
            with Timer() as t:
                est.fit(texts, y)
            fit_t[name].append({"wall": t.wall, "cpu": t.cpu})
            with Timer() as t:
                pred = est.predict(texts)
            pred_t[name].append({"wall": t.wall, "cpu": t.cpu})
            # same model, the other way: predictions must agree
            est.set_params(group_by_length=not grouped)
            np.testing.assert_allclose(est.predict(texts[:64]), pred[:64], rtol=0, atol=1e-4)
            print(f"rep {rep} {name}: fit {fit_t[name][-1]}, predict {pred_t[name][-1]}", flush=True)
    med_fit, med_pred = summarise(fit_t), summarise(pred_t)
    save("bucketing", {
        "texts": n, "batch_size": bs, "predict_batch_size": 64, "repeats": args.repeats, "threads": args.threads,
        "fit": fit_t, "predict": pred_t, "median_fit": med_fit, "median_predict": med_pred,
        "fit_speedup_cpu": med_fit["padded"]["cpu"] / med_fit["grouped"]["cpu"],
        "fit_speedup_wall": med_fit["padded"]["wall"] / med_fit["grouped"]["wall"],
        "predict_speedup_cpu": med_pred["padded"]["cpu"] / med_pred["grouped"]["cpu"],
        "predict_speedup_wall": med_pred["padded"]["wall"] / med_pred["grouped"]["wall"],
    })


# --------------------------------------------------------------------------- inference
def inference_child(model, n_texts, threads):
    """Runs in a fresh process: fit on 32 reviews (a few steps), predict n_texts."""
    import torch

    torch.set_num_threads(threads)
    from skftr.backbones import smollm2_135m
    from skftr.datasets import load_wine_reviews
    from skftr.lora import LoRARegressor

    texts, y = load_wine_reviews()
    if model == "smollm2":
        directory, gguf_file = smollm2_135m()
        params = {"backbone": directory, "gguf_file": gguf_file, "prompt_template": "Wine review: {text}\nScore:"}
    else:
        params = {}
    start = time.perf_counter()
    est = LoRARegressor(max_epochs=1, min_steps=2, random_state=0, iterator_valid__batch_size=64, **params)
    est.fit(texts[:32], y[:32])
    setup = time.perf_counter() - start
    with Timer() as t:
        pred = est.predict(texts[:n_texts])
    assert pred.shape == (n_texts,) and np.isfinite(pred).all()
    return {"model": model, "texts": n_texts, "setup_seconds": setup, "predict_wall_seconds": t.wall,
            "predict_cpu_seconds": t.cpu, "texts_per_wall_s": n_texts / t.wall, "texts_per_cpu_s": n_texts / t.cpu,
            "extrapolated_wall_seconds_5810": t.wall * 5810 / n_texts,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bench_inference(args):
    results = []
    for model, n in (("minilm", 5810), ("smollm2", args.smollm2_texts)):
        out = subprocess.run([sys.executable, __file__, "--inference-child", model, str(n),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    save("inference", {"threads": args.threads, "results": results})


# --------------------------------------------------------------------------- quality
def bench_quality(args):
    from skftr.datasets import load_emobank, load_wine_reviews
    from skftr.lora import LoRARegressor

    loaders = {"wine": load_wine_reviews, "emobank_V": lambda: load_emobank("V")}
    rows = []
    for name in args.datasets:
        texts, y = loaders[name]()
        perm = np.random.default_rng(args.seed).permutation(len(texts))
        test = perm[:args.test_size]
        for size in args.train_sizes:
            train = perm[args.test_size:args.test_size + size]
            for criterion in args.criteria:
                start = time.perf_counter()
                est = LoRARegressor(criterion=criterion, random_state=args.seed)
                est.fit([texts[i] for i in train], y[train])
                pred = est.predict([texts[i] for i in test])
                resid = y[test] - pred
                rows.append({"data": name, "train_size": size, "criterion": criterion,
                             "epochs": est.n_epochs_, "resid_var": float(np.var(resid, ddof=1)),
                             "r2_shift_free": float(1 - np.var(resid) / np.var(y[test])),
                             "var_y_test": float(np.var(y[test], ddof=1)),
                             "seconds": time.perf_counter() - start})
                print(rows[-1], flush=True)
    save("quality" if args.tag is None else f"quality_{args.tag}",
         {"test_size": args.test_size, "seed": args.seed, "threads": args.threads, "rows": rows})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag in ("throughput", "bucketing", "inference", "quality"):
        parser.add_argument(f"--{flag}", action="store_true")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--throughput-texts", type=int, default=256)
    parser.add_argument("--bucketing-texts", type=int, default=512)
    parser.add_argument("--smollm2-texts", type=int, default=300)
    parser.add_argument("--datasets", nargs="+", default=["wine", "emobank_V"])
    parser.add_argument("--train-sizes", nargs="+", type=int, default=[800])
    parser.add_argument("--criteria", nargs="+", default=["variance", "mse"])
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default=None, help="suffix of the quality JSON file")
    parser.add_argument("--inference-child", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.inference_child:
        print(json.dumps(inference_child(args.inference_child[0], int(args.inference_child[1]), args.threads)))
        return
    chosen = [f for f in ("throughput", "bucketing", "inference", "quality") if getattr(args, f)]
    for section in chosen or ["throughput", "bucketing", "inference", "quality"]:
        print(f"== {section}", flush=True)
        globals()[f"bench_{section}"](args)


if __name__ == "__main__":
    main()
