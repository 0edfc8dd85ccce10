"""Peak memory of a default fit as the number of unlabeled texts grows (issue 21, item 1).

Each size runs in a fresh process: a tiny random BERT (2 layers, hidden 32, saved from a
config; nothing is downloaded) stands in for the backbone, and the estimator is the
default's shape on it: the top layer fine-tuned on the shared frozen trunk beside the
ridges on its frozen embedding, on TF-IDF and on length, 5-fold cross-PPI++. 400 texts
are labeled; the unlabeled ones stream through the trunk in chunks, each row through its
fold's top layer, so no token state of the unlabeled set outlives its chunk
(docs/method.md §3.4). Reported: the peak RSS of the process, the RSS once the texts
are in memory (the input itself, which the caller holds anyway), and the difference,
the fit's own peak.

    python benchmarks/bench_memory.py --sizes 10000 100000 1000000
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

WORDS = ("good great excellent fine nice bad poor awful dull weak the a wine film book "
         "review taste fruit oak red white dry sweet very quite rather not and with of is "
         "was this that it").split()


def build_backbone(path):
    """A 2-layer BERT with a word-level tokenizer over ``WORDS``, saved to ``path``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)


def _rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one_size(backbone, m, n=400, seed=0):
    """Fit the default's shape on ``n`` labeled and ``m`` unlabeled random texts."""
    import numpy as np

    from skftr import FineTuneRectifyEstimator, TextRidge, TopLayersRegressor

    rng = np.random.default_rng(seed)
    vocab = np.array(WORDS)
    lengths = rng.integers(4, 24, size=n + m)
    texts = [" ".join(vocab[rng.integers(0, vocab.size, size=k)]) for k in lengths]
    y = np.full(n + m, np.nan)
    y[:n] = lengths[:n] / 4 + rng.normal(size=n)
    before = _rss_mib()
    est = FineTuneRectifyEstimator(
        TopLayersRegressor(backbone, max_epochs=2, random_state=seed),
        predictors=[TextRidge("embedding", backbone=backbone), TextRidge("tfidf"),
                    TextRidge("length")], random_state=seed)
    start = time.perf_counter()
    est.fit(texts, y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    return {"m": m, "peak_rss_mib": peak, "rss_with_texts_mib": before,
            "fit_peak_mib": peak - before, "fit_s": time.perf_counter() - start,
            "estimate": float(est.estimate_.value)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--one", nargs=2, metavar=("BACKBONE", "M"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one[0], int(args.one[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        build_backbone(tmp)
        rows = []
        for m in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--one", tmp, str(m)],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"the fit on {m} texts failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
    print("| unlabeled texts | peak RSS (MiB) | RSS with the texts loaded | fit's own peak "
          "| fit s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['m']:,} | {r['peak_rss_mib']:.0f} | {r['rss_with_texts_mib']:.0f} "
              f"| {r['fit_peak_mib']:.0f} | {r['fit_s']:.0f} |")
    print(f"\nCommand: python benchmarks/bench_memory.py --sizes {' '.join(map(str, args.sizes))}")


if __name__ == "__main__":
    main()
