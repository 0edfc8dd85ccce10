"""Replication metrics with the luck of the rectification pools removed (issue 6).

In ``replicate.py`` the draws of one fine-tuned model ``(loss, s, seed g)`` all split the
same pool ``P_g = perm_g[s:end]`` (the rows the model predicted, ``end = max(budgets) +
pool``) into rectification rows ``R`` and unlabelled rows ``U``. Over uniform splits of a
fixed pool the PPI estimate ``mean_U f + mean_R (Y - f)`` is exactly unbiased for the pool's
own mean ``mean_P Y``, so a record's mean squared error around the truth is

    MSE = mean_g d_g^2 + (within-pool variance),     d_g = mean_{P_g} Y - truth,

and its first term is sampled once per seed (5 times), however many draws there are. Its
expectation is known in closed form (``P_g`` is a uniform random ``N_P``-subset of the
evaluation rows ``E``: the variance of a mean drawn without replacement, Cochran,
*Sampling Techniques*, ch. 2):

    E[d^2] = (mean_E Y - truth)^2 + S_E^2 / N_P * (1 - N_P / N_E)

so ``MSE_adj = MSE - mean_g d_g^2 + E[d^2]`` estimates the design's MSE without that luck
(a conditional expectation: no model is needed, only the labels and the permutations).
From it: ``n_eff``, the label savings against the classical mean drawn without replacement
(FPC, as in ``replicate.py``), and the coverage a normal error with that MSE would give the
record's mean half-width.

``savings (interval)`` is ``1 - n se^2 / Var(Y)`` with ``se = mean width / (2 z)``: what the
intervals themselves promise against the classical interval at ``n`` labels (about 0 for
``classical``; no finite-population correction on either side; not for ``finetune_only``,
whose naive interval ignores its bias). ``savings (m → ∞)`` is ``1 - n sigma^2(s) / ((n - s)
Var(Y))``, ``sigma^2(s)`` the hold-out error variance of the record's own models: the PPI
savings with an unlimited unlabelled set, which the run caps at ``end - n`` rows (METHOD.md
§5: ``V(s)`` without its ``Var(f)/m`` term).

Records whose repetitions are independent draws (``classical``, ``rectify_only*``,
``finetune_only``, ``ftr_var_crossfit``) are copied unadjusted. Output:
``benchmarks/results/replication_adjusted.{md,json,png}``.

Run (from the repository root; seconds, no fine-tuning; ``replicate.py`` runs it at the end
of every run)::

    python benchmarks/replication_adjusted.py
"""
import argparse
import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
from scipy.stats import norm

HERE = Path(__file__).resolve().parent
POOLED = ("grid_variance", "grid_mse", "ftr_mse", "ftr_var", "ftr_var_ppipp",
          "ftr_var_oracle", "ftr_var_faithful")


def load_replicate():
    spec = importlib.util.spec_from_file_location("replicate", HERE / "replicate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sizes_by_seed(record):
    """Fine-tuning size of the record's model for each of its seeds."""
    return record.get("s_by_seed") or [record["s"]] * len(record["seeds"])


def pool_terms(rep, ds, end, record):
    """(mean_g d_g^2, E[d^2]) of a pooled record: realised and expected pool error."""
    y_e = ds.y[ds.population]
    offset2 = (y_e.mean() - ds.truth) ** 2
    realised, expected = [], []
    for seed, s in zip(record["seeds"], sizes_by_seed(record)):
        pool = rep.permutation(ds, seed)[s:end]
        n_p, n_e = pool.size, y_e.size
        realised.append((ds.y[pool].mean() - ds.truth) ** 2)
        expected.append(offset2 + y_e.var(ddof=1) / n_p * (1 - n_p / n_e))
    return float(np.mean(realised)), float(np.mean(expected))


def unlimited_savings(record, pilots, var_y):
    """``1 - n sigma^2(s) / ((n - s) Var(Y))``: the PPI savings with an unlimited unlabelled set.

    ``sigma^2(s)`` is the mean hold-out error variance of the record's own models
    (``pilots``: the ``[s, seed, Var(Y - f), Var(f)]`` rows of its loss's scaling law).
    """
    sigma2 = {(int(p[0]), int(p[1])): p[2] for p in pilots}
    n = record["n"]
    return float(np.mean([1 - n * sigma2[s, g] / ((n - s) * var_y)
                          for g, s in zip(record["seeds"], sizes_by_seed(record))]))


def adjust(record, ds, var_y, z, terms=None, pilots=None):
    """The record with ``*_adj`` fields (pooled records), ``label_savings_interval`` and,
    given its models' ``pilots``, ``label_savings_m_inf``."""
    out = dict(record)
    if pilots is not None:
        out["label_savings_m_inf"] = unlimited_savings(record, pilots, var_y)
    se = record["mean_width"] / (2 * z)
    valid = record["method"] != "finetune_only"  # its naive interval ignores the bias
    out["label_savings_interval"] = 1 - record["n"] * se**2 / var_y if valid else None
    if terms is None:
        return out
    realised, expected = terms
    mse = record["rmse"] ** 2 - realised + expected
    n_eff = var_y / mse
    n_eff_fpc = 1 / (mse / var_y + 1 / ds.population.size)
    out.update(
        pool_error_realised=realised, pool_error_expected=expected,
        rmse_adj=float(np.sqrt(mse)), n_eff_adj=n_eff,
        label_savings_fpc_adj=1 - record["n"] / n_eff_fpc,
        coverage_normal_adj=float(2 * norm.cdf(record["mean_width"] / 2 / np.sqrt(mse)) - 1),
    )
    return out


def adjusted_oracle(grid, name, n):
    """Grid size (variance loss) with the smallest pool-adjusted MSE at budget n."""
    cells = [r for r in grid if (r["dataset"], r["n"], r["method"]) == (name, n, "grid_variance")
             and "rmse_adj" in r]
    return min(cells, key=lambda r: r["rmse_adj"]) if cells else None


def markdown(records, grid, src):
    pct = lambda v: "—" if v is None else f"{100 * v:.0f}%"
    out = [
        "## Replication with the pool luck removed",
        "",
        f"Command: `python benchmarks/replication_adjusted.py` on `{src}` (no fine-tuning). "
        "`pool luck`: realised / expected squared error of the pools' own label means "
        "(1 = an average draw of the pools, one per seed; below 1, the pools happened to sit close to the "
        "truth and the measured MSE is too small). Adjusted columns replace the realised pool "
        "error by its expectation; `coverage (normal, adj)` is the coverage a normal error with "
        "the adjusted MSE gives the mean half-width. `savings (interval)`: 1 - n se^2 / Var(Y). "
        "`savings (m → ∞)`: 1 - n sigma^2(s) / ((n - s) Var(Y)) with the models' hold-out error "
        "variance, the PPI savings with an unlimited unlabelled set. "
        "Methods with independent repetitions are not adjusted (—).",
        "",
    ]
    for name in dict.fromkeys(r["dataset"] for r in records):
        out += [
            f"### {name}",
            "",
            "| n | method | s | coverage | coverage (normal, adj) | pool luck | n_eff | n_eff (adj) "
            "| savings (FPC) | savings (FPC, adj) | savings (interval) | savings (m → ∞) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in records if r["dataset"] == name):
            adj = "rmse_adj" in r
            cells = [
                r["n"], r["method"], r["s"], f"{r['coverage']:.3f}",
                f"{r['coverage_normal_adj']:.3f}" if adj else "—",
                f"{r['pool_error_realised'] / r['pool_error_expected']:.2f}" if adj else "—",
                f"{r['n_eff']:.0f}", f"{r['n_eff_adj']:.0f}" if adj else "—",
                pct(r["label_savings_fpc"]), pct(r.get("label_savings_fpc_adj")),
                pct(r["label_savings_interval"]), pct(r.get("label_savings_m_inf")),
            ]
            out.append("| " + " | ".join(map(str, cells)) + " |")
        out.append("")
        for n in sorted({r["n"] for r in records if r["dataset"] == name}):
            law = next((r for r in records if (r["dataset"], r["n"], r["method"])
                        == (name, n, "ftr_var")), None)
            best = adjusted_oracle(grid, name, n)
            if law and best and "rmse_adj" in law:
                ratio = (law["rmse_adj"] / best["rmse_adj"]) ** 2
                out.append(f"- n = {n}: s* of the law {law['s']}, oracle with the adjusted MSE "
                           f"{best['s']}; MSE ratio {ratio:.2f}")
        out.append("")
    out.append(agreement(records))
    return "\n".join(out) + "\n"


def agreement(records):
    """How far the measured and the adjusted savings (FPC) are from the interval's promise."""
    rows = [r for r in records if "rmse_adj" in r]
    if not rows:
        return "No record shares pools: nothing adjusted."
    gap = lambda key: 100 * np.array([abs(r[key] - r["label_savings_interval"]) for r in rows])
    adj, raw = gap("label_savings_fpc_adj"), gap("label_savings_fpc")
    return (f"Savings (FPC) against savings (interval) ({len(rows)} records adjusted): "
            f"adjusted within a median {np.median(adj):.1f} points (at most {adj.max():.1f}), "
            f"as measured {np.median(raw):.1f} (at most {raw.max():.1f}).")


def plot(records, path):
    """Per dataset: savings (FPC) as measured (hollow) and pool-adjusted (bars), and from the
    interval (black ticks), per method and budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["dataset"] for r in records))
    budgets = sorted({r["n"] for r in records})
    methods = ["classical", "rectify_only_ppipp", *POOLED[2:]]
    width = 0.8 / len(budgets)
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for b, n in enumerate(budgets):
            rows = {r["method"]: r for r in records if (r["dataset"], r["n"]) == (name, n)}
            x = np.arange(len(methods)) + (b - (len(budgets) - 1) / 2) * width
            get = lambda key, fallback=None: [
                100 * rows[m].get(key, rows[m].get(fallback)) if m in rows else np.nan
                for m in methods
            ]
            ax.bar(x, get("label_savings_fpc_adj", "label_savings_fpc"), width=width,
                   color=f"C{b}", label=f"n = {n}")
            ax.scatter(x, get("label_savings_fpc"), s=14, facecolors="none",
                       edgecolors=f"C{b}", zorder=3)
            ax.scatter(x, get("label_savings_interval"), marker="_", s=60, color="k", zorder=3)
        ax.axhline(0, color="k", linewidth=1)
        ax.set(title=f"{name}: label savings (bars: pool-adjusted; o: measured; -: interval)",
               ylim=(-80, 60), ylabel="% of the labels saved vs classical (cut at -80)")
        ax.title.set_fontsize(8)
        ax.set_xticks(np.arange(len(methods)), methods, rotation=45, ha="right", fontsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=HERE / "results" / "replication.json")
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    rep = load_replicate()
    payload = json.loads(args.results.read_text())
    config = payload["metadata"]["config"]
    cfg = rep.Config(**{f.name: config[f.name] for f in dataclasses.fields(rep.Config)
                        if f.name in config})  # the run's settings: same rows, same pools
    end = cfg.prediction_end()
    z = norm.ppf(1 - config["alpha"] / 2)
    records, grid = [], []
    for name in payload["metadata"]["datasets_done"]:
        ds = rep.load_dataset(name, cfg)
        var_y = float(ds.y.var())
        for source, target in ((payload["records"], records), (payload["grid"], grid)):
            for r in (r for r in source if r["dataset"] == name):
                terms = pool_terms(rep, ds, end, r) if r["method"] in POOLED and end else None
                loss = "mse" if r["method"] in ("ftr_mse", "grid_mse") else "variance"
                law = payload.get("scaling_laws", {}).get(name, {}).get(loss)
                ppi = r["method"] in POOLED and r["method"] != "ftr_var_ppipp"
                target.append(adjust(r, ds, var_y, z, terms, law["pilots"] if ppi and law else None))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    text = markdown(records, grid, args.results.name)
    (args.out_dir / "replication_adjusted.md").write_text(text)
    (args.out_dir / "replication_adjusted.json").write_text(
        json.dumps({"records": records, "grid": grid}, indent=1))
    if not args.no_plots:
        plot(records, args.out_dir / "replication_adjusted.png")
    print(text)
    return records, grid


if __name__ == "__main__":
    main()
