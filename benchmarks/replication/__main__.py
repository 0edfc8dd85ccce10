"""Command line: ``python -m benchmarks.replication [--plan] [--quick] ...``."""
import argparse
import os
import shlex
import sys
import time

from . import __doc__ as DOC
from .design import CORPORA
from .methods import METHODS, QUICK, REAL, Runner, describe, earlier_results, grid
from .report import write

CACHE, OUT = "benchmarks/cache/replication", "benchmarks/results/replication"
FEATURES = "benchmarks/cache/features"
QUICK_CACHE = "benchmarks/cache/replication_quick"
FULL_GRID = {"corpora": list(CORPORA), "budgets": [200, 500, 1000], "draws_finetuned": 10,
             "draws_cheap": 50}
QUICK_GRID = {"corpora": ["wine"], "budgets": [50], "draws_finetuned": 2, "draws_cheap": 2}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replication",
                                     description=DOC.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", choices=CORPORA,
                        help="default: all three (--quick: wine)")
    parser.add_argument("--budgets", nargs="+", type=int,
                        help="labels n per draw (default 200 500 1000; --quick: 50)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--draws-finetuned", type=int,
                        help="draws per cell of the methods that fine-tune a LoRA model "
                             "(default 10; --quick: 2)")
    parser.add_argument("--draws-cheap", type=int,
                        help="draws per cell of the other methods (default 50; --quick: 2)")
    parser.add_argument("--plan", action="store_true",
                        help="print the cells not cached yet and their estimated cost, and stop")
    parser.add_argument("--cached-only", action="store_true",
                        help="fit nothing: report the cells already cached")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 wine reviews, n=50, 2 draws, a LoRA of 2 steps")
    parser.add_argument("--backbone", default=None,
                        help="local backbone directory for LoRA and embeddings (default MiniLM)")
    parser.add_argument("--cache-dir", default=None, help=f"results cache (default {CACHE})")
    parser.add_argument("--feature-cache", default=FEATURES,
                        help="cache of the cheap predictors' features (shared with "
                             "bench_savings.py)")
    parser.add_argument("--out-dir", default=None, help=f"outputs (default {OUT})")
    parser.add_argument("--results-from", nargs="+", default=[], metavar="JSON",
                        help="earlier replication.json reports (same settings): their draws "
                             "of unchanged methods are read back instead of fitted again")
    args = parser.parse_args(argv)
    defaults = QUICK_GRID if args.quick else FULL_GRID
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("budgets", "draws_finetuned", "draws_cheap"):
        value = getattr(args, name)
        if min(value if isinstance(value, list) else [value]) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    args.cache_dir = args.cache_dir or (QUICK_CACHE if args.quick else CACHE)
    args.out_dir = args.out_dir or (f"{QUICK_CACHE}/results" if args.quick else OUT)
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    settings = {**(QUICK if args.quick else REAL), "backbone": args.backbone}
    cells = grid(args.corpora, args.budgets, args.methods, args.draws_finetuned,
                 args.draws_cheap)
    configs = {m: describe(m, settings) for m in dict.fromkeys(c[2] for c in cells)}
    try:
        earlier = earlier_results(args.results_from, settings, configs)
    except ValueError as exc:
        raise SystemExit(f"python -m benchmarks.replication: error: {exc}") from None
    runner = Runner(args.cache_dir, settings, args.feature_cache, earlier)
    if args.plan:
        plan = runner.plan(cells)
        for p in plan:
            print(f"{p['corpus']:>15} n={p['n']:<5} {p['method']:<22} {p['missing']:>3} draws "
                  f"x {p['seconds_per_fit']:8.1f} s ({p['source']}) = {p['seconds'] / 60:7.1f} min")
        total = sum(p["seconds"] for p in plan)
        print(f"{sum(p['missing'] for p in plan)} draws to fit, about {total / 3600:.2f} h")
        return plan
    start = time.perf_counter()
    if not args.cached_only:
        for cell in cells:
            if runner.is_cached(cell):
                continue
            r = runner(cell)
            print(f"{r['corpus']:>15} n={r['n']:<5} {r['method']:<22} draw {r['draw']:<3} "
                  f"width {r['high'] - r['low']:.4g}  covers "
                  f"{r['low'] <= r['truth'] <= r['high']}  {r['seconds']:.1f} s "
                  f"(run {(time.perf_counter() - start) / 60:.1f} min)", flush=True)
    threads = os.environ.get("OMP_NUM_THREADS")
    command = ((f"OMP_NUM_THREADS={threads} " if threads else "")
               + shlex.join(["python", "-m", "benchmarks.replication", *argv]))
    payload = write(args.out_dir, command, settings, configs, runner.cached_results(cells),
                    cells, runner.plan(cells))
    print(f"wrote {args.out_dir}/replication.{{md,json,png}}")
    return payload


if __name__ == "__main__":
    main()
