"""Benchmark of skftr.rectify.rectified_mean against bare numpy (issue 2, item 4).

1. In memory: n = 10^3 labeled, m = 10^7 unlabeled float64 predictions.
   ``rectified_mean`` (PPI and PPI++) against a bare numpy mean + variance over
   the same arrays, in the same process: best-of-repeats time ratio (target
   <= 3x) and extra peak memory measured with tracemalloc, in copies of the
   m-array (target <= 1).
2. Streamed: m = 10^8 predictions from a generator of 10^6-value chunks (never
   all in memory): time and tracemalloc peak.

Run: python benchmarks/bench_rectify.py [--m 10000000] [--m-stream 100000000] [--out FILE]
"""
import argparse
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from skftr.rectify import rectified_mean


def reference(y, yhat, yhat_unlabeled):
    """Bare numpy: the means and variances the PPI estimate is made of."""
    return (y.mean(), yhat.mean(), np.var(y - yhat), yhat_unlabeled.mean(), yhat_unlabeled.var())


def best_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_extra(fn):
    """Peak bytes allocated (tracemalloc, which sees numpy buffers) while ``fn`` runs."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def chunks(m, size, seed):
    rng = np.random.default_rng(seed)
    for start in range(0, m, size):
        yield rng.normal(3.0, 1.0, size=min(size, m - start))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10**3)
    parser.add_argument("--m", type=int, default=10**7)
    parser.add_argument("--m-stream", type=int, default=10**8)
    parser.add_argument("--chunk", type=int, default=10**6)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rectify.md"))
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    y = rng.normal(3.0, 1.0, args.n)
    yhat = y + rng.normal(0.0, 0.5, args.n)
    yhat_unl = rng.normal(3.0, 1.0, args.m)
    m_bytes = yhat_unl.nbytes

    rows = []
    t_ref = best_time(lambda: reference(y, yhat, yhat_unl), args.repeats)
    mem_ref = peak_extra(lambda: reference(y, yhat, yhat_unl))
    rows.append(("bare numpy mean + var", t_ref, 1.0, mem_ref))
    ok = True
    for method in ("ppi", "ppi++"):
        call = lambda: rectified_mean(y, yhat, yhat_unl, method=method)
        t = best_time(call, args.repeats)
        mem = peak_extra(call)
        ok &= t / t_ref <= 3.0 and mem <= m_bytes
        rows.append((f"rectified_mean({method!r})", t, t / t_ref, mem))

    t0 = time.perf_counter()
    gen_only = sum(c.shape[0] for c in chunks(args.m_stream, args.chunk, 1))  # generation cost alone
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    est = rectified_mean(y, yhat, chunks(args.m_stream, args.chunk, 1), method="ppi++")
    t_stream = time.perf_counter() - t0
    mem_stream = peak_extra(
        lambda: rectified_mean(y, yhat, chunks(args.m_stream, args.chunk, 1), method="ppi++"))
    assert est.n_unlabeled == gen_only == args.m_stream

    cmd = "python benchmarks/bench_rectify.py" + ("" if argv is None and len(sys.argv) == 1
                                                  else " " + " ".join(sys.argv[1:]))
    mib = 2.0**20
    lines = [
        "## skftr.rectify: `rectified_mean` speed and memory",
        "",
        f"Command: `{cmd}` (from the repository root).",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared), Python "
        f"{platform.python_version()}, numpy {np.__version__}. Times: best of {args.repeats}.",
        "",
        f"In memory: n = {args.n:,} labeled, m = {args.m:,} unlabeled float64 predictions "
        f"(the m-array is {m_bytes / mib:.0f} MiB). Extra memory: tracemalloc peak during the call.",
        "",
        "| call | time (s) | ratio to numpy | extra peak memory (MiB) | in m-array copies |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, t, ratio, mem in rows:
        lines.append(f"| {name} | {t:.4f} | {ratio:.2f}x | {mem / mib:.1f} | {mem / m_bytes:.3f} |")
    lines += [
        "",
        f"Targets (ratio <= 3x, <= 1 extra copy of the m-array): **{'met' if ok else 'NOT met'}**.",
        "",
        f"Streamed: m = {args.m_stream:,} predictions ({args.m_stream * 8 / 2**30:.2f} GiB as "
        f"float64, never held at once) from a generator of {args.chunk:,}-value chunks, PPI++: "
        f"{t_stream:.2f} s in all, of which about {t_gen:.2f} s is drawing the random chunks; "
        f"tracemalloc peak {mem_stream / mib:.1f} MiB (one chunk is {args.chunk * 8 / mib:.1f} MiB). "
        f"Result: `{est!r}`.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
