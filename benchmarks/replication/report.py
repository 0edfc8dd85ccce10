"""Summaries of the cached results: savings, coverage, width, time; the issue's targets.

Label savings of a method on a cell (docs/method.md §6), against the classical mean of the
same draws: ``n_eff = n (w_classical / w)^2`` with ``w`` the interval width averaged over
the draws, and ``savings = 1 - n / n_eff = 1 - (w / w_classical)^2``.
"""
import json
from collections import defaultdict

import numpy as np

from skftr._atomic import atomic_path

# (corpus, n, default's savings at least): issue 14's targets
SAVINGS_TARGETS = (("wine", 1000, 0.45), ("wine", 500, 0.40), ("emobank", 500, 0.35),
                   ("emobank_reader", 500, 0.10))
SAVINGS_FLOOR = -0.02  # default, every corpus and n
# the methods checked against the savings and coverage targets, and their names there
TARGET_METHODS = {"default": "default", "cheap": "cheap (model='drop')"}
GAIN_TARGET = (("wine", "emobank"), (500, 1000), 0.05)  # default - cheap, savings points
COVERAGE_TARGET = 0.92  # pooled over every draw of the default


def savings(widths, classical_widths):
    """``1 - (mean w / mean w_classical)^2``: the share of labels saved at equal width."""
    return 1.0 - (np.mean(widths) / np.mean(classical_widths)) ** 2


def _per_draw(widths, classical_widths):
    return 1.0 - (np.asarray(widths) / np.asarray(classical_widths)) ** 2


def _se(values):
    values = np.asarray(values, dtype=float)
    return float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 else None


def _index(results):
    """{(corpus, n, method): {draw: result}}."""
    out = defaultdict(dict)
    for r in results:
        out[(r["corpus"], r["n"], r["method"])][r["draw"]] = r
    return out


def _width(r):
    return r["high"] - r["low"]


def _covers(r):
    return bool(r["low"] <= r["truth"] <= r["high"])


def summarize(results, cells):
    """One summary per (corpus, n, method) of ``cells``, from the results available.

    Fields: ``draws`` (done) and ``wanted``; ``savings`` (formula above) with ``savings_se``
    (standard error of the per-draw savings); ``n_eff``; ``coverage`` of the truth;
    ``width`` and ``classical_width`` (means); ``rmse`` around the truth; ``seconds``
    (median fit time). Draws whose classical result is missing are left out.
    """
    index, wanted = _index(results), defaultdict(int)
    for corpus, n, method, _ in cells:
        wanted[(corpus, n, method)] += 1
    rows = []
    for (corpus, n, method), count in wanted.items():
        classical = index.get((corpus, n, "classical"), {})
        done = [r for d, r in sorted(index.get((corpus, n, method), {}).items())
                if d in classical]
        row = {"corpus": corpus, "n": n, "method": method, "draws": len(done), "wanted": count}
        if done:
            w = [_width(r) for r in done]
            c = [_width(classical[r["draw"]]) for r in done]
            error = np.array([r["value"] - r["truth"] for r in done])
            row.update(savings=savings(w, c), savings_se=_se(_per_draw(w, c)),
                       n_eff=n * (np.mean(c) / np.mean(w)) ** 2,
                       coverage=float(np.mean([_covers(r) for r in done])),
                       width=float(np.mean(w)), classical_width=float(np.mean(c)),
                       rmse=float(np.sqrt(np.mean(error ** 2))),
                       seconds=float(np.median([r["seconds"] for r in done])))
        rows.append(row)
    return rows


def compare(results, first="default", second="cheap"):
    """``first`` minus ``second`` in savings points on the draws both have, per (corpus, n).

    Returns
    -------
    list of dict
        ``corpus``, ``n``, ``draws`` shared, ``difference`` (savings of ``first`` minus
        those of ``second`` on the shared draws), ``se`` (of the per-draw differences), and
        the discordant draws of coverage: ``only_first_missed`` (``first`` missed the
        truth where ``second`` covered it) and ``only_second_missed``.
    """
    index, out = _index(results), []
    cells = sorted({(c, n) for c, n, m in index if m == first} &
                   {(c, n) for c, n, m in index if m == second})
    for corpus, n in cells:
        a, b = index[(corpus, n, first)], index[(corpus, n, second)]
        classical = index.get((corpus, n, "classical"), {})
        shared = sorted(set(a) & set(b) & set(classical))
        if not shared:
            continue
        c = [_width(classical[d]) for d in shared]
        wa, wb = [_width(a[d]) for d in shared], [_width(b[d]) for d in shared]
        covers_a = [_covers(a[d]) for d in shared]
        covers_b = [_covers(b[d]) for d in shared]
        out.append({"corpus": corpus, "n": n, "draws": len(shared),
                    "difference": savings(wa, c) - savings(wb, c),
                    "se": _se(_per_draw(wa, c) - _per_draw(wb, c)),
                    "only_first_missed": sum(y and not x for x, y in zip(covers_a, covers_b)),
                    "only_second_missed": sum(x and not y for x, y in zip(covers_a, covers_b))})
    return out


def discordance(comparisons):
    """The paired test of coverage: draws where only one of the two methods missed.

    McNemar's exact test: under equal coverage each discordant draw is equally likely to
    be either method's miss, so ``p`` is the two-sided binomial test of
    ``only_first_missed`` out of all discordant draws (1 when there are none).
    """
    from scipy.stats import binomtest

    first = sum(r["only_first_missed"] for r in comparisons)
    second = sum(r["only_second_missed"] for r in comparisons)
    p = binomtest(first, first + second).pvalue if first + second else 1.0
    return {"only_first_missed": first, "only_second_missed": second, "p": float(p)}


def pooled_coverage(results, method="default"):
    """Share of all draws of ``method`` (every corpus and n) whose interval covers the truth."""
    hits = [_covers(r) for r in results if r["method"] == method]
    return {"draws": len(hits), "coverage": float(np.mean(hits)) if hits else None}


def targets(cells, comparisons, pooled):
    """The issue's targets beside the measured values (``met`` is None when not measured).

    The savings thresholds and the coverage are checked for the default and, beside it,
    for ``cheap`` (the same estimator without fine-tuning, ``model="drop"``). ``pooled``:
    ``{method: pooled_coverage(results, method)}``.
    """
    by = {(r["corpus"], r["n"], r["method"]): r for r in cells}
    out = []

    def add(name, measured, threshold, draws):
        out.append({"target": name, "threshold": threshold, "measured": measured,
                    "draws": draws, "met": None if measured is None else bool(measured >= threshold)})

    for method, label in TARGET_METHODS.items():
        for corpus, n, low in SAVINGS_TARGETS:
            row = by.get((corpus, n, method), {})
            add(f"{label} savings, {corpus} n={n}", row.get("savings"), low, row.get("draws", 0))
        for (corpus, n, name), row in by.items():
            if name == method:
                add(f"{label} savings >= floor, {corpus} n={n}", row.get("savings"),
                    SAVINGS_FLOOR, row["draws"])
    gains = {(r["corpus"], r["n"]): r for r in comparisons}
    corpora, budgets, gain = GAIN_TARGET
    for corpus in corpora:
        for n in budgets:
            row = gains.get((corpus, n), {})
            add(f"default - cheap savings, {corpus} n={n}", row.get("difference"), gain,
                row.get("draws", 0))
    for method, label in TARGET_METHODS.items():
        add(f"pooled coverage of {label}", pooled[method]["coverage"], COVERAGE_TARGET,
            pooled[method]["draws"])
    return out


def _pct(x, se=None):
    if x is None:
        return "–"
    return f"{100 * x:+.1f}%" + ("" if se is None else f" ± {100 * se:.1f}")


def _num(x, fmt=".4g"):
    return "–" if x is None else format(x, fmt)


def markdown(command, cells, comparisons, pooled, goals, plan):
    """The report: command, targets, every cell, default against cheap, what is left."""
    met = {True: "yes", False: "**no**", None: "not measured"}
    lines = ["# Replication: label savings of skftr's methods (issue 14)", "",
             f"Command: `{command}`", "",
             "Design: per corpus, budget n and draw, a fresh random set of n labeled rows "
             "(seeded by (corpus, n, draw): every method sees the same draws); every other row "
             "of the file is unlabeled; the truth is the mean label of the whole file. "
             "Savings `1 - n / n_eff`, `n_eff = n (classical width / width)^2`, widths "
             "averaged over the draws (± one standard error of the per-draw savings); "
             "coverage of the 95% interval; fit time per draw (2 shared CPU cores, "
             "one thread).", "",
             "## Targets", "", "| target | threshold | measured | draws | met |",
             "|---|---|---|---|---|"]
    for g in goals:
        if g["target"].startswith("pooled"):
            shown = (_num(g["measured"], ".3f"), _num(g["threshold"], ".2f"))
        else:
            shown = (_pct(g["measured"]), _pct(g["threshold"]))
        lines.append(f"| {g['target']} | {shown[1]} | {shown[0]} | {g['draws']} "
                     f"| {met[g['met']]} |")
    lines += ["", "## Every cell", "",
              "| corpus | n | method | draws | savings | n_eff | coverage | width "
              "| classical width | RMSE | s/fit |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in cells:
        draws = f"{r['draws']}/{r['wanted']}"
        if not r["draws"]:
            lines.append(f"| {r['corpus']} | {r['n']} | {r['method']} | {draws} "
                         "| – | – | – | – | – | – | – |")
            continue
        lines.append(f"| {r['corpus']} | {r['n']} | {r['method']} | {draws} "
                     f"| {_pct(r['savings'], r['savings_se'])} | {r['n_eff']:.0f} "
                     f"| {r['coverage']:.3f} | {r['width']:.4g} | {r['classical_width']:.4g} "
                     f"| {r['rmse']:.4g} | {r['seconds']:.1f} |")
    lines += ["", "## Default against cheap (same draws)", "",
              "| corpus | n | draws | default - cheap (savings points) | draws only default "
              "missed | draws only cheap missed |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['corpus']} | {r['n']} | {r['draws']} | {_pct(r['difference'], r['se'])} "
              f"| {r['only_first_missed']} | {r['only_second_missed']} |" for r in comparisons]
    paired = discordance(comparisons)
    lines += ["", f"Paired coverage (McNemar's exact test): only the default missed on "
              f"{paired['only_first_missed']} draws, only cheap on "
              f"{paired['only_second_missed']}; p = {paired['p']:.2g}.", ""]
    for method, label in TARGET_METHODS.items():
        lines.append(f"Coverage of {label} pooled over its {pooled[method]['draws']} draws: "
                     f"{_num(pooled[method]['coverage'], '.3f')}.")
    lines += ["", "## Incomplete cells", ""]
    if plan:
        total = sum(p["seconds"] for p in plan)
        lines += [f"{sum(p['missing'] for p in plan)} draws missing, about "
                  f"{total / 3600:.1f} h of fits (`--plan`):", "",
                  "| corpus | n | method | missing draws | s/fit | estimated from |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {p['corpus']} | {p['n']} | {p['method']} | {p['missing']} "
                  f"| {p['seconds_per_fit']:.0f} | {p['source']} |" for p in plan]
    else:
        lines.append("None: every cell has all its draws.")
    return "\n".join(lines) + "\n"


def plot(cells, path):
    """Savings by method and n, one panel per corpus (± one standard error)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(dict.fromkeys(r["corpus"] for r in cells))
    colors = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(r["method"] for r in cells))}
    fig, axes = plt.subplots(1, len(corpora), figsize=(4.5 * len(corpora), 3.8), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        rows = [r for r in cells if r["corpus"] == corpus and r["draws"]
                and r["method"] != "classical"]
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["n"])
            ax.errorbar([r["n"] for r in mine], [100 * r["savings"] for r in mine],
                        yerr=[100 * (r["savings_se"] or 0) for r in mine], marker="o",
                        capsize=3, color=colors[method], label=method)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set(title=corpus, xlabel="labels n", ylabel="label savings (%)", xscale="log")
        ax.set_xticks(sorted({r["n"] for r in cells}))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write(out_dir, command, settings, configs, results, cells, plan):
    """``replication.md``, ``replication.json`` and ``replication.png`` in ``out_dir``.

    ``configs`` (each method's ``describe``) lets a later run read these results back
    (``--results-from``).

    Returns
    -------
    dict
        The JSON payload.
    """
    from pathlib import Path

    out_dir = Path(out_dir)
    summary = summarize(results, cells)
    comparisons = compare(results)
    pooled = {method: pooled_coverage(results, method) for method in TARGET_METHODS}
    goals = targets(summary, comparisons, pooled)
    payload = {"command": command, "settings": settings, "configs": configs, "cells": summary,
               "default_minus_cheap": comparisons,
               "paired_coverage": discordance(comparisons), "pooled_coverage": pooled,
               "targets": goals, "plan": plan, "results": results}
    with atomic_path(out_dir / "replication.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    with atomic_path(out_dir / "replication.md") as tmp:
        tmp.write_text(markdown(command, summary, comparisons, pooled, goals, plan))
    plot(summary, out_dir / "replication.png")
    return payload
