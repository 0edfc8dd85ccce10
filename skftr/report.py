"""What ``skftr estimate`` and ``skftr plan`` print and draw.

Figures are built on :class:`matplotlib.figure.Figure` (no pyplot state, no display
needed) and saved with ``bbox_inches="tight"`` so that no axis label is cut off.
"""
import json

import numpy as np

__all__ = ["estimate_figure", "estimate_table", "fit_summary", "plan_figure", "plan_table",
           "write_json"]


def _level(alpha):
    return f"{100 * (1 - alpha):.4g}%"


def _interval(ci):
    return f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def _columns(header, rows):
    """Left-aligned first column, right-aligned others, two spaces apart."""
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  ".join([r[0].ljust(widths[0])]
                               + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
                     for r in table)


def estimate_table(rows):
    """The estimates as text: value, interval, classical interval, effective labels.

    Parameters
    ----------
    rows : list of (str, RectifiedEstimate)
        The overall estimate, then one per group.

    Returns
    -------
    str
        One line per row; the effective labels are ``n_labeled (classical_stderr /
        stderr)^2`` (docs/method.md §2.6).
    """
    level = _level(rows[0][1].alpha)
    body = [[name, f"{e.value:.4g}", _interval(e.ci), _interval(e.classical_ci),
             f"{e.n_effective:.0f}", f"{e.n_labeled}"] for name, e in rows]
    return _columns(["", "estimate", f"{level} CI", f"classical {level} CI",
                     "effective labels", "labels"], body)


def fit_summary(est):
    """What the fit did: folds, predictors and their weights, sizes, time; then the frozen
    trunks' precision, the fine-tunes (layers, folds that kept them) and the stage times."""
    lam = ", ".join(f"{v:.2f}" for v in np.atleast_1d(est.lam_))
    folds = f"{est.n_folds_} folds" if est.n_folds_ > 1 else "single split"
    lines = [f"{est.estimate_.method}, {folds}; predictors: {', '.join(est.predictor_names_)}; "
             f"λ = {lam}; {est.n_rectify_} labeled and {est.n_unlabeled_} unlabeled rows; "
             f"fit in {est.fit_time_:.0f} s"]
    info = est.estimate_.fit_info or {}
    if info.get("trunks"):
        lines.append("frozen trunks: " + ", ".join(f"{name} ({precision})" for name, precision
                                                   in info["trunks"].items()))
    for tune in info.get("fine_tunes", ()):
        kept = tune["fine_tune_kept"]
        lines.append(f"{tune['predictor']}: top {tune['top_layers']} layer(s) fine-tuned "
                     f"({tune['adapter']}), kept in {sum(kept)} of {len(kept)} fold(s) (else "
                     f"the warm-start ridge), best epochs {tune['epochs']}")
    if info.get("seconds"):
        lines.append("stages: " + "; ".join(f"{stage} {sec:.0f} s" for stage, sec
                                            in info["seconds"].items()))
    return "\n".join(lines)


def estimate_figure(path, rows, y, predictions, label):
    """Save the two-panel figure of ``skftr estimate``.

    Left: each row's interval next to the classical interval of the same labels. Right:
    calibration, the labels against their out-of-fold predictions with the means of the
    labels in ten bins of the predictions and the line ``label = prediction``.

    Parameters
    ----------
    path : path-like
    rows : list of (str, RectifiedEstimate)
    y, predictions : ndarray of shape (n,)
        The rectification labels and their out-of-fold predictions (label scale).
    label : str
        What is estimated (the x-axis of the left panel).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 1.2 + 0.45 * max(len(rows), 6)))
    left, right = fig.subplots(1, 2)
    level = _level(rows[0][1].alpha)
    at = np.arange(len(rows))[::-1]
    for k, (name, e) in zip(at, rows):
        left.plot(e.classical_ci, [k - 0.15] * 2, color="0.6", lw=3,
                  label=f"classical {level} CI" if k == at[0] else None)
        left.plot(e.ci, [k + 0.15] * 2, color="C0", lw=3,
                  label=f"skftr {level} CI" if k == at[0] else None)
        left.plot([e.value], [k + 0.15], "o", color="C0")
    left.set_yticks(at, [name for name, _ in rows])
    left.set_ylim(-0.8, len(rows) - 0.2)
    left.set_xlabel(label)
    left.set_title("estimate and intervals")
    left.legend(loc="best", fontsize="small")

    right.scatter(predictions, y, s=8, alpha=0.4, color="0.4", label="labeled rows")
    edges = np.unique(np.quantile(predictions, np.linspace(0, 1, 11)))
    bins = np.clip(np.searchsorted(edges, predictions, side="right") - 1, 0, edges.size - 2)
    used = np.unique(bins)
    right.plot([predictions[bins == b].mean() for b in used], [y[bins == b].mean() for b in used],
               "o-", color="C1", label="mean label per decile")
    low, high = min(predictions.min(), y.min()), max(predictions.max(), y.max())
    right.plot([low, high], [low, high], "--", color="k", lw=1, label="label = prediction")
    right.set_xlabel("out-of-fold prediction")
    right.set_ylabel("label")
    right.set_title(f"calibration ({y.size} labeled rows)")
    right.legend(loc="best", fontsize="small")
    fig.savefig(path, bbox_inches="tight", dpi=120)


def plan_table(plan):
    """The labels needed by the classical mean and by skftr, with their ranges."""
    level = _level(plan["alpha"])
    rows = []
    for key, name in (("classical", "classical mean"), ("skftr", "skftr (default fit)"),
                      ("active", "skftr, active 2nd batch")):
        if key not in plan:
            continue
        need = plan[key]
        rows.append([name, f"{need['labels']}", f"[{need['range'][0]:.0f}, {need['range'][1]:.0f}]"])
    return _columns(["", "labels needed", f"{level} range (bootstrap)"], rows)


def plan_figure(path, plan):
    """Save the expected interval width against the budget, classical and skftr, with
    the bootstrap bands, the target width and the planned budgets."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    budget = np.asarray(plan["curve"]["budget"])
    for key, color, name in (("classical", "0.5", "classical mean"), ("skftr", "C0", "skftr")):
        curve = plan["curve"][key]
        ax.plot(budget, curve["width"], color=color, label=name)
        ax.fill_between(budget, curve["low"], curve["high"], color=color, alpha=0.2, lw=0)
        ax.axvline(plan[key]["labels"], color=color, ls=":", lw=1)
    ax.axhline(plan["width"], color="k", ls="--", lw=1, label=f"target width {plan['width']:g}")
    ax.set_xlabel("labels (budget)")
    ax.set_ylabel(f"expected width of the {_level(plan['alpha'])} interval")
    ax.set_title("width against budget (bands: bootstrap over the pilot's labels)")
    ax.legend(loc="best", fontsize="small")
    fig.savefig(path, bbox_inches="tight", dpi=120)


def write_json(path, data):
    """Write ``data`` as indented JSON (NumPy scalars and arrays converted)."""
    def default(obj):
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, np.generic):
            return obj.item()
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")

    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, default=default, allow_nan=False)
        fh.write("\n")
