"""Prediction of many short texts with Dask: worker scaling and the driver's memory.

    python benchmarks/bench_dask.py --scaling 100000 --memory 10000 100000 1000000

Model: a ``FineTuneRectifyEstimator`` with a TF-IDF ridge (``model="drop"``, 5 folds)
fitted on 300 labeled EmoBank sentences (valence), saved with ``est.save``. Texts:
EmoBank sentences drawn with replacement, numbered, written as Parquet files of 10,000
rows (one partition each) that the workers read themselves.

* ``--scaling M``: wall time of ``skftr.distributed.estimate(path, files, client)`` on
  M texts with a ``LocalCluster`` of 1 and then 2 worker processes (one thread each),
  after one warm-up run that loads the model on the workers; scaling efficiency
  ``(t_1 / t_2) / 2``. The load average is printed before and after.
* ``--memory M ...``: for each M, a fresh driver process runs the same estimate with 2
  workers and reports its own peak RSS (``resource.getrusage``): flat in M when no
  driver holds the texts or the predictions.

Writes ``benchmarks/results/scale.md`` (the tables; the plan for 1e8 texts is written
by hand there from these numbers and ``inference.md``).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS_PER_FILE = 10_000


def fit_and_save(folder, predictor="tfidf"):
    from skftr import FineTuneRectifyEstimator, TextRidge
    from skftr.datasets import load_emobank

    texts, y = load_emobank("V")
    rng = np.random.RandomState(0)
    rows = rng.permutation(len(texts))
    labeled, unlabeled = rows[:300], rows[300:1300]
    est = FineTuneRectifyEstimator("drop", predictors=[TextRidge(predictor)], random_state=0)
    est.fit([texts[i] for i in labeled], y[labeled],
            X_unlabeled=[texts[i] for i in unlabeled])
    return est.save(Path(folder) / "model")


def write_files(folder, m, seed=1, rows_per_file=ROWS_PER_FILE):
    """m short texts in Parquet files of ``rows_per_file`` rows; returns their paths."""
    import pandas as pd

    from skftr.datasets import load_emobank

    texts = np.asarray(load_emobank("V")[0], dtype=object)
    rng = np.random.RandomState(seed)
    folder = Path(folder) / f"texts_{m}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, m, rows_per_file):
        size = min(rows_per_file, m - start)
        picked = texts[rng.randint(len(texts), size=size)]
        numbered = [f"{text} ({start + i})" for i, text in enumerate(picked)]
        path = folder / f"part-{start // rows_per_file:05d}.parquet"
        pd.DataFrame({"text": numbered}).to_parquet(path)
        paths.append(str(path))
    return paths


def timed_estimate(model, files, n_workers):
    from skftr.distributed import cluster, estimate

    with cluster("local", n_workers=n_workers) as client:
        estimate(model, files[:n_workers], client=client, text_column="text")  # warm-up
        start = time.perf_counter()
        result = estimate(model, files, client=client, text_column="text")
        return time.perf_counter() - start, result


def driver_run(model, files_json):
    """In a fresh process: the estimate with 2 workers, then this process's peak RSS."""
    from skftr.distributed import cluster, estimate

    files = json.loads(Path(files_json).read_text())
    with cluster("local", n_workers=2) as client:
        start = time.perf_counter()
        result = estimate(model, files, client=client, text_column="text")
        wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    print(json.dumps({"peak_rss_mib": peak, "wall_s": wall, "value": float(result.value),
                      "m": int(result.n_unlabeled)}))


def load():
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scaling", type=int, default=100_000)
    parser.add_argument("--memory", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--predictor", choices=["tfidf", "embedding"], default="tfidf",
                        help="the model's predictor: a TF-IDF ridge (cheap per text) or a "
                        "ridge on frozen MiniLM embeddings (a transformer pass per text)")
    parser.add_argument("--rows-per-file", type=int, default=ROWS_PER_FILE,
                        help="texts per Parquet file (one partition each) in the scaling run")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.md"),
                        help="Markdown file for the tables")
    parser.add_argument("--driver", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        return driver_run(*args.driver)
    lines = ["## Dask prediction: worker scaling and driver memory (issue 16)", "",
             "```", "python benchmarks/bench_dask.py " + " ".join(sys.argv[1:]), "```", ""]
    with tempfile.TemporaryDirectory(prefix="skftr-bench-dask-") as tmp:
        model = str(fit_and_save(tmp, args.predictor))
        if args.scaling:
            files = write_files(tmp, args.scaling, rows_per_file=args.rows_per_file)
            before = load()
            t1, r1 = timed_estimate(model, files, 1)
            t2, r2 = timed_estimate(model, files, 2)
            after = load()
            assert abs(r1.value - r2.value) < 1e-9 * max(1.0, abs(r1.value))
            efficiency = t1 / t2 / 2
            print(f"scaling: 1 worker {t1:.1f} s, 2 workers {t2:.1f} s, efficiency "
                  f"{efficiency:.2f} (load {before} -> {after})", flush=True)
            lines += [f"### Throughput, {args.scaling:,} texts in {len(files)} files, "
                      f"{args.predictor} ridge", "",
                      f"Load average (1, 5, 15 min) before: {before}; after: {after}.", "",
                      "| workers | wall s | texts / s |", "| --- | --- | --- |",
                      f"| 1 | {t1:.1f} | {args.scaling / t1:,.0f} |",
                      f"| 2 | {t2:.1f} | {args.scaling / t2:,.0f} |", "",
                      f"Scaling efficiency (t_1 / t_2) / 2 = **{efficiency:.2f}**; both runs give "
                      f"the same estimate ({r1.value:.6f}).", ""]
        if args.memory:
            lines += ["### Driver peak RSS against the number of texts", "",
                      "| texts | files | driver peak RSS MiB | wall s | estimate |",
                      "| --- | --- | --- | --- | --- |"]
            for m in args.memory:
                files = write_files(tmp, m, seed=2)
                listing = Path(tmp) / f"files_{m}.json"
                listing.write_text(json.dumps(files))
                out = subprocess.run([sys.executable, __file__, "--driver", model, str(listing)],
                                     capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"memory: m={m:,}: {row}", flush=True)
                lines.append(f"| {m:,} | {len(files)} | {row['peak_rss_mib']:.0f} | "
                             f"{row['wall_s']:.1f} | {row['value']:.5f} |")
            lines.append("")
    out = Path(args.out)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
