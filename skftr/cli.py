"""The ``skftr`` command line: ``sample``, ``estimate`` and ``plan`` on the user's own files.

The workflow: ``skftr plan`` on a pilot (how many labels?), ``skftr sample`` (which rows to
label), the rows get labeled, ``skftr estimate`` (the estimate, its interval, a report).
Every input problem ends the command with one line ``skftr: error: ...`` and exit status
2; every output appears whole or not at all (:func:`skftr._atomic.atomic_path`).
"""
import argparse
import ast
import json
import operator
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from ._atomic import atomic_path
from .io import EXTENSIONS, read_table, write_table
from .sampling import (
    GROUP_MIN, SIDECAR, draw_sample, read_record, sidecar_path, two_stage_inclusion,
)

__all__ = ["domain_estimates", "draw_sample", "main", "plan_labels",
           "stratified_estimate"]

ROW_ID = "row_id"
_SHARE_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


# ---------------------------------------------------------------------- the draw
def cmd_sample(args):
    if Path(args.output).resolve() == Path(args.data).resolve():
        raise ValueError(f"-o {args.output} is DATA itself; write the sample to another file")
    data = read_table(args.data)
    texts = data.texts(args.text_column)
    first = None if args.labels is None else read_record(args.labels)
    if first is not None and args.id_column is None:  # the second batch keeps the first's ids
        args.id_column = first["id_column"]
    ids = data.ids(args.id_column)
    id_name = args.id_column or ROW_ID
    taken = {id_name, args.text_column, args.strata} - {None}
    if args.label_column in taken:
        raise ValueError(f"--label-column {args.label_column!r} is already a column of the "
                         "output; choose another name")
    strata = data.values(args.strata) if args.strata else None
    seed = int(np.random.SeedSequence().entropy % 2**63) if args.seed is None else args.seed
    if args.design == "active" and args.labels is None:
        raise ValueError("--design active draws a second batch: give the labeled first batch "
                         "with --labels FIRST (a simple random sample from skftr sample)")
    second = None
    if args.labels is not None:
        if args.strata:
            raise ValueError("--strata with --labels: a second batch is drawn from the rows "
                             "the first left, not by strata; leave out --strata")
        rows, design, second = _second_batch(args, data, seed)
    else:
        rows, design = draw_sample(len(data), args.budget, strata, seed)

    import pandas as pd

    columns = {id_name: data.frame[args.id_column].to_numpy()[rows] if args.id_column
               else rows, args.text_column: np.asarray(texts, dtype=object)[rows]}
    if args.strata:
        columns[args.strata] = strata[rows]
    columns[args.label_column] = np.full(rows.size, np.nan)
    record = {
        "format": "skftr.sample", "format_version": 1,
        "data": {"file": data.name, "rows": len(data), "sha256": data.sha256},
        "id_column": args.id_column, "text_column": args.text_column,
        "label_column": args.label_column, "seed": seed, "budget": args.budget,
        "design": "stratified" if args.strata else "srs", "strata_column": args.strata,
        "strata": design, "ids": [str(i) for i in ids[rows]],
    }
    if second is not None:
        record.update(second, design=args.design if args.design == "active" else "srs")
    with atomic_path(sidecar_path(args.output)) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        write_table(pd.DataFrame(columns), args.output)
    how = (f"stratified by {args.strata!r} ({len(design)} strata, proportional)"
           if args.strata else "simple random")
    if second is not None:
        how = (f"second batch after {len(second['first_batch']['ids'])} labeled rows, "
               + ("active: probabilities from the predicted error"
                  if args.design == "active" else "uniform among the rows left"))
    print(f"drew {rows.size} of {len(data)} rows ({how}, seed {seed}) -> {args.output}; "
          f"the draw is recorded in {sidecar_path(args.output)}")
    return 0


def _second_batch(args, data, seed):
    """The rows of a second batch after the labeled first batch ``--labels``, its strata
    entry and what its record adds: the first batch and every row's probability."""
    from .sampling import ActiveSampler, draw_fixed_size

    first = read_record(args.labels)
    if first is None:
        raise ValueError(f"--labels {args.labels}: a second batch needs the first batch's draw "
                         f"record {sidecar_path(args.labels).name} (written by skftr sample)")
    if first.get("stage", 1) != 1 or first["design"] != "srs":
        raise ValueError(f"--labels {args.labels}: the first batch must be a simple random "
                         f"sample (skftr sample without --strata), got {first['design']!r}")
    y, _ = load_labels(data, first["label_column"], args.labels, args.id_column)
    drawn = np.isin([str(i) for i in data.ids(first["id_column"])], first["ids"])
    missing = int((drawn & np.isnan(y)).sum())
    if missing:
        raise ValueError(f"--labels {args.labels}: {missing} drawn row(s) have no label; label "
                         "every row of the first batch (a missing label biases the design)")
    pool = np.flatnonzero(~drawn)
    if not 1 <= args.budget < pool.size:
        raise ValueError(f"--budget {args.budget} must be between 1 and {pool.size - 1} (the "
                         "rows the first batch left, less one)")
    if args.design == "active":
        import pandas as pd

        args.model_param = [("model", "drop")] + list(args.model_param)
        est = make_estimator(args)
        sampler = ActiveSampler(est, error_model=args.error_model, max_weight=args.max_weight,
                                random_state=seed % 2**32).fit(
            pd.DataFrame({args.text_column: data.texts(args.text_column)}), y)
        pi2 = sampler.probabilities(args.budget)
        rows, _ = sampler.sample(args.budget)
        fitted = {"error_model": args.error_model, "error_score": sampler.error_score_,
                  "max_weight": args.max_weight,
                  "predictors": sampler.estimator_.predictor_names_}
    else:
        pi2 = np.full(len(data), args.budget / pool.size)
        rows = pool[draw_fixed_size(pi2[pool], args.budget, np.random.default_rng(seed))]
        fitted = {}
    extra = {"stage": 2, "first_batch": {"file": Path(args.labels).name, "ids": first["ids"],
                                         "probability": len(first["ids"]) / len(data)},
             "second_probability": pi2.tolist(), **fitted}
    return rows, [{"value": None, "N": int(pool.size), "n": int(args.budget),
                   "inclusion_probability": None}], extra


# ---------------------------------------------------------------------- labels in
def load_labels(data, label_column, labels=None, id_column=None):
    """The labels of DATA (NaN = unlabeled) and the draw's record, if any.

    Without ``labels`` they are DATA's ``label_column``. With ``labels`` (a labeled
    ``skftr sample`` output, or a list of them) they are merged into DATA by row id; the
    sidecar beside each, when present, must describe this DATA (row count and sha256)
    and have drawn every labeled id. Two files are a first and a second batch: both
    records are needed, and the returned record holds ``inclusion_probability``, every
    row's probability of being labeled (:func:`skftr.sampling.two_stage_inclusion`).
    """
    if labels is None:
        return data.numbers(label_column), None
    if isinstance(labels, (list, tuple)):
        if len(labels) == 1:
            return load_labels(data, label_column, labels[0], id_column)
        return _load_batches(data, label_column, labels, id_column)
    y, record = _load_file(data, label_column, labels, id_column)
    if record is not None and record.get("stage", 1) == 2:
        raise ValueError(f"--labels {Path(labels).name} is a second batch; give its first "
                         f"batch too, first: --labels {record['first_batch']['file']} "
                         f"{Path(labels).name}")
    return y, record


def _load_file(data, label_column, labels, id_column):
    """:func:`load_labels` of one file, whatever batch it is."""
    table, record = read_table(labels), read_record(labels)
    if record is not None:
        if id_column is not None and id_column != record["id_column"]:
            raise ValueError(f"--id-column {id_column!r} differs from the draw's id column "
                             f"{record['id_column']!r} (recorded in {sidecar_path(labels).name})")
        id_column = record["id_column"]
        drawn = record["data"]
        if (drawn["rows"], drawn["sha256"]) != (len(data), data.sha256):
            raise ValueError(f"{table.name} was drawn from {drawn['file']} ({drawn['rows']} "
                             f"rows, sha256 {drawn['sha256'][:12]}...), not from {data.name} "
                             f"({len(data)} rows, sha256 {data.sha256[:12]}...); "
                             "give the DATA file the sample was drawn from")
    if label_column in data.frame.columns and np.isfinite(data.numbers(label_column)).any():
        raise ValueError(f"{data.name} has labels in column {label_column!r} and --labels "
                         f"gives them too; use one source of labels")
    id_name = id_column or ROW_ID
    table.require(id_name, label_column)
    position = {key: i for i, key in enumerate(data.ids(id_column))}
    label_ids = table.ids(id_name)
    unknown = [key for key in label_ids if key not in position]
    if unknown:
        where = "0-based row positions" if id_column is None else f"column {id_column!r}"
        raise ValueError(f"{table.name}: {len(unknown)} id(s) in column {id_name!r} are not "
                         f"rows of {data.name} ({where}): {', '.join(unknown[:5])}")
    values = table.numbers(label_column)
    if record is not None:
        undrawn = sorted(set(label_ids[np.isfinite(values)]) - set(record["ids"]), key=str)
        if undrawn:
            raise ValueError(f"{table.name}: labeled id(s) {', '.join(undrawn[:5])} were not "
                             f"drawn by the sample recorded in {sidecar_path(labels).name}")
    y = np.full(len(data), np.nan)
    y[[position[key] for key in label_ids]] = values
    return y, record


def _load_batches(data, label_column, labels, id_column):
    """:func:`load_labels` of a first and a second batch."""
    if len(labels) != 2:
        raise ValueError(f"--labels takes one file, or a first and a second batch; got "
                         f"{len(labels)} files")
    names = [Path(path).name for path in labels]
    records = [read_record(path) for path in labels]
    for name, record in zip(names, records):
        if record is None:
            raise ValueError(f"--labels {name}: two batches need both draw records; "
                             f"{name}{SIDECAR} is missing")
    pi = two_stage_inclusion(*records, names=names)
    (y1, _), (y2, _) = (_load_file(data, label_column, path, id_column) for path in labels)
    both = np.isfinite(y1) & np.isfinite(y2)
    if both.any():
        raise ValueError(f"--labels: row {int(np.flatnonzero(both)[0])} is labeled in both "
                         f"{names[0]} and {names[1]}; a row is drawn once")
    keys = np.array([str(i) for i in data.ids(records[0]["id_column"])])
    for name, record, y in zip(names, records, (y1, y2)):
        missing = int((np.isin(keys, record["ids"]) & np.isnan(y)).sum())
        if missing:
            raise ValueError(f"--labels {name}: {missing} drawn row(s) have no label; under "
                             "two batches every drawn row must be labeled (a missing label "
                             "biases the weights)")
    keep = ("design", "seed", "budget", "error_model", "error_score", "max_weight",
            "predictors")
    record = {"design": f"two-stage, second batch {records[1]['design']}",
              "batches": [{"file": name, **{k: r[k] for k in keep if k in r}}
                          for name, r in zip(names, records)],
              "inclusion_probability": pi}
    return np.where(np.isfinite(y1), y1, y2), record


def parse_estimand(text):
    """``mean``, ``quantile:Q`` or ``share:OPX`` (OP one of >=, >, <=, <) as a dict."""
    kind, _, arg = text.partition(":")
    try:
        if kind == "mean" and not arg:
            return {"kind": "mean"}
        if kind == "quantile":
            q = float(arg)
            if 0 < q < 1:
                return {"kind": "quantile", "q": q}
        if kind == "share":
            op = max((o for o in _SHARE_OPS if arg.startswith(o)), key=len)
            return {"kind": "share", "op": op, "threshold": float(arg[len(op):])}
    except ValueError:
        pass
    raise ValueError(f"--estimand {text!r} is not one of: mean, quantile:Q with 0 < Q < 1, "
                     "share:>=X (or >, <=, <)")


def _describe(estimand, label):
    if estimand["kind"] == "quantile":
        return f"{estimand['q']:g}-quantile of {label!r}"
    if estimand["kind"] == "share":
        return f"share of {label!r} {estimand['op']} {estimand['threshold']:g}"
    return f"mean of {label!r}"


# ---------------------------------------------------------------------- the fit
def _model_param(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def make_estimator(args, estimand="mean", q=0.5, verbose=0):
    """``FineTuneRectifyEstimator`` with its defaults, the command's options applied.

    ``--backbone`` (a known name, :func:`skftr.backbones.available`, or a model directory)
    sets the backbone of the fine-tuned model and of the frozen embeddings; ``--model-param key=value`` goes to ``set_params``
    (``model__min_steps=50``, ``crossfit=3``, ``model=drop``, ...).
    """
    from .estimator import FineTuneRectifyEstimator
    from .lora import LoRARegressor
    from .predictors import default_predictors

    predictors = "auto"
    if args.backbone is not None:
        predictors = default_predictors(backbone=args.backbone)
    est = FineTuneRectifyEstimator(
        LoRARegressor(backbone=args.backbone), predictors=predictors,
        estimand=estimand, q=q, alpha=args.alpha, text_column=args.text_column,
        score_columns=list(args.score_column) or None, random_state=args.seed,
        verbose=verbose)
    if args.folds is not None:
        est.set_params(crossfit=args.folds)
    if args.inference is not None:
        est.set_params(inference=args.inference)
    return est.set_params(**dict(args.model_param))


def _fit(args, data, y, estimand="mean", q=0.5, inclusion_probability=None):
    """Fit the default estimator on DATA's texts (and score columns) and labels ``y``
    (rows labeled with ``inclusion_probability`` under an unequal-probability design)."""
    import pandas as pd

    X = pd.DataFrame({args.text_column: data.texts(args.text_column),
                      **{c: data.numbers(c, missing="error") for c in args.score_column}})
    verbose = int(sys.stderr.isatty() and not args.quiet)
    est = make_estimator(args, estimand, q, verbose)
    if args.workers is not None and (args.scheduler != "local" or args.workers < 1):
        raise ValueError(f"--workers {args.workers}: the number of worker processes (at least 1) "
                         "of the Dask cluster started by --scheduler local")
    design = {} if inclusion_probability is None else \
        {"inclusion_probability": inclusion_probability}
    if args.scheduler is None:
        return est.fit(X, y, **design)
    from .distributed import cluster

    local = {} if args.workers is None else {"n_workers": args.workers}
    with cluster(args.scheduler, **local):  # folds fitted on the workers (joblib's Dask backend)
        return est.set_params(n_jobs=-1 if est.n_jobs is None else est.n_jobs).fit(X, y,
                                                                                   **design)


# ---------------------------------------------------------------------- estimates
def stratified_estimate(estimates, weights):
    """Combine stratum estimates: ``sum_h W_h theta_h``, ``se^2 = sum_h W_h^2 se_h^2``.

    The stratified estimator of a mean (Cochran 1977, §5.3), applied to the rectified
    and to the classical estimates alike; ``W_h = N_h / N``. The interval is the normal
    one; ``lam`` is the ``W_h``-weighted average of the strata's weights (each stratum
    keeps its own).

    Parameters
    ----------
    estimates : list of RectifiedEstimate
    weights : array-like of shape (H,), summing to 1

    Returns
    -------
    RectifiedEstimate
    """
    from .rectify import RectifiedEstimate
    from .rectify._stats import wald_ci

    if len(estimates) == 1:
        return estimates[0]
    w = np.asarray(weights, dtype=float)
    value = w @ [e.value for e in estimates]
    stderr = np.sqrt(w**2 @ [e.stderr**2 for e in estimates])
    # the classical estimate is the midpoint of its (normal) interval
    classical_value = w @ [np.mean(e.classical_ci) for e in estimates]
    classical_stderr = np.sqrt(w**2 @ [e.classical_stderr**2 for e in estimates])
    alpha, first = estimates[0].alpha, estimates[0]
    return RectifiedEstimate(
        value, stderr, wald_ci(value, stderr, alpha), alpha, f"stratified {first.method}",
        sum(e.n_labeled for e in estimates), sum(e.n_unlabeled for e in estimates),
        np.average([np.atleast_1d(e.lam) for e in estimates], axis=0, weights=w),
        classical_stderr=classical_stderr,
        classical_ci=wald_ci(classical_value, classical_stderr, alpha),
        n_predictors=first.n_predictors, n_folds=first.n_folds)


def domain_estimates(est, domains, strata=None):
    """One estimate per domain (group) of the rows, from the fitted estimator.

    Without strata: ``est.estimate_by(domains)``. Under a stratified draw each domain
    ``d`` is the stratified combination of its cells, ``sum_h (N_dh / N_d) theta_dh``
    (:func:`stratified_estimate`), each cell rectified on its own.

    Returns
    -------
    estimates : dict
        domain -> RectifiedEstimate
    cells : dict
        domain -> {stratum: RectifiedEstimate} (empty without strata)
    """
    import pandas as pd

    domains = np.asarray(domains, dtype=object)
    if strata is None:
        return est.estimate_by(domains), {}
    codes, keys = pd.MultiIndex.from_arrays([domains, np.asarray(strata, dtype=object)]) \
        .factorize()
    by_cell = est.estimate_by(codes)
    sizes = np.bincount(codes, minlength=len(keys))
    out, cells = {}, {}
    for d in dict.fromkeys(domains):
        mine = [c for c, key in enumerate(keys) if key[0] == d]
        cells[d] = {keys[c][1]: by_cell[c] for c in mine}
        out[d] = stratified_estimate([by_cell[c] for c in mine],
                                     sizes[mine] / sizes[mine].sum())
    return out, cells


def _check_cells(keys, labeled, what):
    """Every group (or group and stratum) has enough rows for its own interval."""
    keys = [tuple(k) if isinstance(k, tuple) else (k,) for k in keys]
    counts = {}
    for key, lab in zip(keys, labeled):
        counts.setdefault(key, [0, 0])[0 if lab else 1] += 1
    for key, (n, m) in counts.items():
        if n < GROUP_MIN[0] or m < GROUP_MIN[1]:
            name = ", ".join(f"{w} {k!r}" for w, k in zip(what, key))
            raise ValueError(f"{name} has {n} labeled and {m} unlabeled rows; its own interval "
                             f"needs at least {GROUP_MIN[0]} labeled and {GROUP_MIN[1]} unlabeled")


def _strata_of(data, record):
    """DATA's strata column under a stratified draw, checked against the record."""
    if record is None or record["design"] != "stratified":
        return None
    strata = data.values(record["strata_column"])
    keys, counts = np.unique([str(v) for v in strata], return_counts=True)
    found = dict(zip(keys, counts.tolist()))
    if found != {str(s["value"]): s["N"] for s in record["strata"]}:
        raise ValueError(f"{data.name}: the strata in column {record['strata_column']!r} "
                         "differ from those of the recorded draw")
    return np.array([str(v) for v in strata], dtype=object)


def cmd_estimate(args):
    from .report import estimate_figure, estimate_table, fit_summary, write_json

    estimand = parse_estimand(args.estimand)
    data = read_table(args.data)
    data.texts(args.text_column)
    y, record = load_labels(data, args.label_column, args.labels, args.id_column)
    pi = None if record is None else record.get("inclusion_probability")
    strata = _strata_of(data, record)
    if strata is not None and estimand["kind"] == "quantile":
        raise ValueError("--estimand quantile with a stratified draw: a quantile of the "
                         "population is not a weighted sum of stratum quantiles; use mean or "
                         "share, or draw a simple random sample")
    if estimand["kind"] == "share":
        op = _SHARE_OPS[estimand["op"]]
        y = np.where(np.isnan(y), np.nan, op(y, estimand["threshold"]).astype(float))
    groups = data.values(args.by) if args.by else None
    labeled = np.isfinite(y)
    if strata is not None:
        _check_cells(strata, labeled, ["stratum"])
    if groups is not None:
        _check_cells(groups if strata is None else list(zip(groups, strata)), labeled,
                     [f"group ({args.by})", "stratum"])

    est = _fit(args, data, y, "quantile" if estimand["kind"] == "quantile" else "mean",
               estimand.get("q", 0.5), inclusion_probability=pi)
    overall, cells = est.estimate_, {}
    if strata is not None:
        found, cells = domain_estimates(est, np.full(len(data), "overall", dtype=object), strata)
        overall, cells = found["overall"], cells["overall"]
    rows = [("overall", overall)]
    by = {}
    if groups is not None:
        by, _ = domain_estimates(est, groups, strata)
        rows += [(f"{args.by} = {g}", by[g]) for g in sorted(by, key=str)]

    label = _describe(estimand, args.label_column)
    print(f"skftr estimate: {label}" + (", stratified draw" if strata is not None else "")
          + (f", {record['design']} (weighted, docs/method.md §7)" if pi is not None else ""))
    print(estimate_table(rows))
    print(fit_summary(est))
    if args.output is None:
        return 0
    result = {
        "command": ["skftr"] + (sys.argv[1:] if args.argv is None else args.argv),
        "data": {"file": str(data.path), "rows": len(data), "sha256": data.sha256},
        "labels": None if args.labels is None else [str(path) for path in args.labels],
        "estimand": dict(estimand, label_column=args.label_column, description=label),
        "settings": {k: getattr(args, k) for k in ("text_column", "score_column", "by",
                                                    "backbone", "folds", "seed", "alpha",
                                                    "inference", "scheduler", "workers")}
        | {"model_param": dict(args.model_param)},
        "design": None if record is None else {
            k: v for k, v in record.items()
            if k not in ("ids", "inclusion_probability", "second_probability")},
        "fit": {"method": est.estimate_.method, "n_folds": est.n_folds_,
                "predictors": est.predictor_names_, "lam": est.lam_,
                "n_labeled": est.n_rectify_, "n_unlabeled": est.n_unlabeled_,
                "fit_time_s": est.fit_time_},
        "overall": overall.to_dict(),
        "strata": {str(h): e.to_dict() for h, e in cells.items()},
        "groups": {str(g): e.to_dict() for g, e in by.items()},
    }
    y_rect = y[est.labeled_indices_]
    with atomic_path(args.output, directory=True) as tmp:
        write_json(tmp / "estimate.json", result)
        estimate_figure(tmp / "estimate.png", rows, y_rect, est.labeled_predictions_,
                        label)
        est.save(tmp / "model")
    print(f"report written to {os.path.join(args.output, '')} "
          "(estimate.json, estimate.png, model/)")
    return 0


# ---------------------------------------------------------------------- plan
def _width(n, var, var_f, n_rows, z):
    """Expected interval width ``2 z sqrt(var / n + var_f / (n_rows - n))`` at budget ``n``
    (docs/method.md §2.1; the unlabeled rows are the ``n_rows - n`` left)."""
    return 2 * z * np.sqrt(var / n + var_f / (n_rows - n))


def _needed(var, var_f, n_rows, width, z):
    """The smallest budget ``n`` with ``_width(n, ...) <= width`` (inf if none).

    ``var_f = 0`` (classical): ``n = var / a`` with ``a = (width / 2z)^2``. Otherwise the
    smaller root of ``a n^2 - (a N + var - var_f) n + var N = 0``, the budgets where the
    two terms of the width add up to ``a``.
    """
    a = (width / (2 * z)) ** 2
    b = a * n_rows + var - var_f
    disc = b**2 - 4 * a * var * n_rows
    root = (b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    n = np.where(var_f > 0, np.where(disc >= 0, root, np.inf), var / a)
    return np.ceil(n)


def plan_labels(y, predictions, stderr, n_rows, width, *, alpha=0.05, n_boot=2000,
                random_state=None, variance_ratio=None):
    """Labels needed for a ``1 - alpha`` interval of the mean of width ``width``.

    Classical: ``n = (2 z sd(Y) / W)^2``. skftr: the pilot fit's variance is
    ``stderr^2 = s_r^2 / n_p + Var(f) / m`` (docs/method.md §2.1; ``m = N - n_p``
    unlabeled rows, ``Var(f)`` the variance of the out-of-fold predictions), so
    ``s_r^2 = n_p (stderr^2 - Var(f) / m)``, and the budget ``n`` solves
    ``s_r^2 / n + Var(f) / (N - n) = (W / 2z)^2``: the classical number divided by the
    variance ratio ``Var(Y) / s_r^2``, with the unlabeled term kept, and never above the
    classical number (power tuning falls back to the labels alone, docs/method.md §2.2;
    the same bound caps the expected width at the classical one). The range of each
    number is a percentile bootstrap over the pilot's labeled rows of ``Var(Y)``, of the
    residual variance (which rescales ``s_r^2``) and of ``Var(f)``; the models are not
    refitted, so the range leaves out their own variability.

    The skftr number is conservative when more labels also train better models (the
    scaling law, Wang, Ye & Zhao 2025, §4; docs/method.md §4): the pilot's models saw
    only the pilot's labels.

    Parameters
    ----------
    y, predictions : ndarray of shape (n_p,)
        The pilot's rectification labels and their out-of-fold predictions on the label
        scale (the fit's ``labeled_predictions_``).
    stderr : float
        Standard error of the pilot fit's estimate.
    n_rows : int
        ``N``: the rows of the pilot file, labeled or not.
    width : float
    alpha : float, default=0.05
    n_boot : int, default=2000
    random_state : int or None
    variance_ratio : callable or None
        ``n -> rho(n)``, the labeled term's variance under an active second batch after
        the pilot against a uniform draw of the same ``n`` labels
        (:meth:`skftr.sampling.ActiveSampler.variance_ratio`, docs/method.md §7): adds
        ``active``, the budget ``n`` with ``s_r^2 rho(n) / n + Var(f) / (N - n)`` at the
        target (``rho`` fixed at its value there, three fixed-point steps; its range
        rescales the skftr bootstrap by that ``rho``).

    Returns
    -------
    dict
        ``classical`` and ``skftr``: ``labels`` and its ``range``;
        the variances used; ``curve``: expected widths against the budget.
    """
    from scipy.stats import norm

    if not width > 0:
        raise ValueError(f"--width must be positive, got {width}")
    y, f = np.asarray(y, dtype=float), np.asarray(predictions, dtype=float)
    z, n_p = norm.ppf(1 - alpha / 2), y.size
    m = n_rows - n_p
    var_y, var_f, resid = np.var(y, ddof=1), np.var(f, ddof=1), y - f
    if stderr**2 <= var_f / m:
        raise ValueError(f"the pilot fit's variance {stderr**2:.3g} is no larger than its "
                         f"unlabeled term Var(f)/m = {var_f / m:.3g}: with m = {m} unlabeled "
                         "rows the pilot cannot tell the labeled term apart; add unlabeled texts")
    resid_var = n_p * (stderr**2 - var_f / m)
    rows = np.random.default_rng(random_state).integers(n_p, size=(n_boot, n_p))
    point = (var_y, resid_var, var_f)
    boot = (np.var(y[rows], axis=1, ddof=1),
            resid_var * np.var(resid[rows], axis=1, ddof=1) / np.var(resid, ddof=1),
            np.var(f[rows], axis=1, ddof=1))

    def needed(v_y, v_r, v_f):  # power tuning never does worse than the labels alone
        classical = _needed(v_y, 0.0, n_rows, width, z)
        return classical, np.minimum(_needed(v_r, v_f, n_rows, width, z), classical)

    def widths(n, v_y, v_r, v_f):
        classical = _width(n, v_y, 0.0, n_rows, z)
        return classical, np.minimum(_width(n, v_r, v_f, n_rows, z), classical)

    tails = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    out = {"alpha": alpha, "width": width, "n_pilot": n_p, "n_rows": n_rows, "var_y": var_y,
           "resid_var": resid_var, "var_f": var_f, "variance_ratio": var_y / resid_var,
           "n_boot": n_boot}
    for key, n, n_boot_ in zip(("classical", "skftr"), needed(*point), needed(*boot)):
        out[key] = {"labels": int(n), "range": np.percentile(n_boot_, tails).round().tolist()}
    if variance_ratio is not None:
        n, rho = out["skftr"]["labels"], 1.0
        for _ in range(3):
            rho = variance_ratio(min(n, n_rows - 1))
            n = int(needed(var_y, rho * resid_var, var_f)[1])
        n_boot_ = needed(boot[0], rho * boot[1], boot[2])[1]
        out["active"] = {"labels": n, "range": np.percentile(n_boot_, tails).round().tolist(),
                         "variance_ratio": rho}
    top = min(3 * max(out["classical"]["range"][1], n_p), n_rows - 1)
    budget = np.unique(np.linspace(max(2, out["skftr"]["range"][0] / 3), top, 80).round())
    out["curve"] = {"budget": budget.astype(int).tolist()}
    bands = widths(budget, *(b[:, None] for b in boot))
    for key, curve, band in zip(("classical", "skftr"), widths(budget, *point), bands):
        low, high = np.percentile(band, tails, axis=0)
        out["curve"][key] = {"width": curve.tolist(), "low": low.tolist(), "high": high.tolist()}
    return out


def cmd_plan(args):
    from .report import plan_figure, plan_table, write_json

    data = read_table(args.pilot)
    data.texts(args.text_column)
    y = data.numbers(args.label_column)
    est = _fit(args, data, y)
    y_rect = y[est.labeled_indices_]
    ratio = None
    if args.design == "active":  # the pilot as the first batch of a two-stage design
        import pandas as pd

        from .sampling import ActiveSampler

        args.model_param = [("model", "drop")] + list(args.model_param)
        sampler = ActiveSampler(make_estimator(args), error_model=args.error_model,
                                random_state=args.seed).fit(
            pd.DataFrame({args.text_column: data.texts(args.text_column)}), y)
        ratio = sampler.variance_ratio
    plan = plan_labels(y_rect, est.labeled_predictions_, est.estimate_.stderr,
                       len(data), args.width, alpha=args.alpha, random_state=args.seed,
                       variance_ratio=ratio)
    level = f"{100 * (1 - args.alpha):.4g}%"
    note = ("The skftr number is conservative when more labels also train better models "
            "(the scaling law, Wang, Ye & Zhao 2025, §4): the pilot's models were trained on "
            "the pilot's labels only, fewer than the planned budget will give them.")
    print(f"skftr plan: labels for a {level} interval of width {args.width:g} on the mean "
          f"of {args.label_column!r}")
    print(f"pilot: {plan['n_pilot']} labeled of {plan['n_rows']} rows; "
          f"sd = {np.sqrt(plan['var_y']):.4g}; variance ratio of the default fit "
          f"{plan['variance_ratio']:.3g}")
    print(plan_table(plan))
    print(note)
    if args.output is not None:
        plan.update(note=note, label_column=args.label_column,
                    pilot={"file": str(data.path), "rows": len(data),
                           "sha256": data.sha256},
                    fit={"method": est.estimate_.method, "n_folds": est.n_folds_,
                         "predictors": est.predictor_names_, "lam": est.lam_,
                         "stderr": est.estimate_.stderr, "fit_time_s": est.fit_time_})
        with atomic_path(args.output, directory=True) as tmp:
            write_json(tmp / "plan.json", plan)
            plan_figure(tmp / "plan.png", plan)
        print(f"plan written to {os.path.join(args.output, '')} (plan.json, plan.png)")
    return 0


# ---------------------------------------------------------------------- the parser
def build_parser():
    """The ``skftr`` argument parser with its three sub-commands."""
    from .backbones import available

    formats = ", ".join(EXTENSIONS)
    parser = argparse.ArgumentParser(
        prog="skftr", description="Valid estimates of human labels from many texts and a few "
        "labels: fine-tuning then rectification (Wang, Ye & Zhao 2025). Workflow: plan -> "
        "sample -> label -> estimate.",
        epilog=f"Files: {formats} (by extension). Rows are counted from 0.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p, label=True):
        p.add_argument("--text-column", required=True, metavar="T", help="column of texts")
        if label:
            p.add_argument("--label-column", required=True, metavar="L",
                           help="column of numeric labels; an empty cell is an unlabeled row")

    def fitting(p):
        p.add_argument("--score-column", action="append", default=[], metavar="C",
                       help="numeric column of scores you already have (another model's, an "
                       "LLM's); used as one more predictor; repeatable")
        p.add_argument("--backbone", metavar="NAME_OR_DIR",
                       help=f"language model: {', '.join(available())} or a local model "
                       "directory (default: minilm)")
        p.add_argument("--folds", type=int, metavar="K",
                       help="cross-fitting folds (default: the estimator's, 5)")
        p.add_argument("--alpha", type=float, default=0.05,
                       help="intervals have coverage 1 - alpha (default: 0.05)")
        p.add_argument("--seed", type=int, metavar="S", help="random seed (reproducible fit)")
        p.add_argument("--model-param", action="append", default=[], type=_model_param,
                       metavar="KEY=VALUE", help="estimator parameter passed to set_params, "
                       "e.g. model__min_steps=50, crossfit=3, model=drop (cheap predictors "
                       "only); repeatable")
        p.add_argument("--inference", choices=["merged", "int8"],
                       help="fast copy of each fitted model for prediction: merged LoRA (same "
                       "numbers) or int8 (faster, slightly noisier; default: as trained)")
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="fit the folds on a Dask cluster: a scheduler address "
                       "(tcp://host:8786) or 'local' to start one (pip install skftr[dask])")
        p.add_argument("--workers", type=int, metavar="N",
                       help="worker processes of --scheduler local (default: one per core)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser("sample", help="draw the rows to label",
                            description="Draw the rows to label: simple random without "
                            "replacement, or stratified with proportional allocation "
                            "(largest remainder, at least 3 per stratum). Writes them with "
                            "an id, the text and an empty label column, and records the draw "
                            f"in OUTPUT{SIDECAR}.")
    p.add_argument("data", metavar="DATA", help="table of texts")
    common(p, label=False)
    p.add_argument("--budget", type=int, required=True, metavar="N", help="rows to draw")
    p.add_argument("--strata", metavar="COL", help="stratify by this column")
    p.add_argument("--id-column", metavar="COL", help=f"column of unique row ids (default: "
                   f"{ROW_ID}, the row's 0-based position in DATA)")
    p.add_argument("--label-column", default="label", metavar="L",
                   help="name of the empty label column (default: label)")
    p.add_argument("--seed", type=int, metavar="S",
                   help="random seed (default: fresh, recorded in the sidecar)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="file to write, e.g. to_label.csv")
    second = p.add_argument_group(
        "a second batch", "After a labeled simple random first batch (--labels FIRST), draw "
        "--budget more rows from the rest: uniformly, or (--design active) with probabilities "
        "that grow with the predicted error of the default cheap predictors fitted on the "
        "first batch (docs/method.md §7). The record keeps every row's probability; give "
        "both batches to skftr estimate --labels FIRST SECOND.")
    second.add_argument("--labels", metavar="FIRST", help="the labeled first batch (an "
                        "output of skftr sample, with its record)")
    second.add_argument("--design", choices=["uniform", "active"], default="uniform",
                        help="how the second batch is drawn (default: uniform)")
    second.add_argument("--error-model", choices=["ridge", "boosting"], default="ridge",
                        help="regressor of the squared out-of-fold error (default: ridge)")
    second.add_argument("--max-weight", type=float, default=5.0, metavar="W",
                        help="no row's inverse probability above W times the uniform one "
                        "(default: 5)")
    second.add_argument("--backbone", metavar="NAME_OR_DIR", help="language model of the "
                        "frozen embeddings (default: minilm and mpnet)")
    second.add_argument("--folds", type=int, metavar="K", help="cross-fitting folds "
                        "(default: 5)")
    second.add_argument("--model-param", action="append", default=[], type=_model_param,
                        metavar="KEY=VALUE", help="estimator parameter (set_params); "
                        "repeatable")
    p.set_defaults(func=cmd_sample, score_column=[], alpha=0.05, inference=None)

    p = commands.add_parser("estimate", help="estimate with a valid interval",
                            description="Fit the default FineTuneRectifyEstimator on DATA (rows "
                            "with an empty label are unlabeled) and print the estimate, its "
                            "interval and the classical interval of the same labels.")
    p.add_argument("data", metavar="DATA", help="table of texts (and labels)")
    common(p)
    p.add_argument("--labels", metavar="FILE", nargs="+", help="the labeled output of skftr "
                   "sample, merged into DATA by row id (its draw record is checked when "
                   "present); or a first and a second batch (both records needed), estimated "
                   "with the design's weights")
    p.add_argument("--id-column", metavar="COL", help="id column joining --labels to DATA "
                   f"(default: {ROW_ID}, row positions)")
    p.add_argument("--by", metavar="GROUP", help="also one estimate per value of this column")
    p.add_argument("--estimand", default="mean", metavar="E",
                   help="mean (default), quantile:Q (e.g. quantile:0.5) or share:>=X (the "
                   "share of labels >= X; also >, <=, <)")
    fitting(p)
    p.add_argument("-o", "--output", metavar="DIR", help="report directory: estimate.json, "
                   "estimate.png and the fitted model (written whole or not at all)")
    p.set_defaults(func=cmd_estimate)

    p = commands.add_parser("plan", help="how many labels for a given interval width",
                            description="From a pilot (some labeled rows, the unlabeled "
                            "texts), the labels needed for an interval of width W on the mean, "
                            "with the classical mean and with skftr's default fit.")
    p.add_argument("pilot", metavar="PILOT", help="table of texts with a few labels")
    common(p)
    p.add_argument("--width", type=float, required=True, metavar="W",
                   help="target width of the interval (high minus low)")
    p.add_argument("--design", choices=["uniform", "active"], default="uniform",
                   help="active: also the labels needed when the rest is drawn as an active "
                   "second batch after the pilot (skftr sample --design active)")
    p.add_argument("--error-model", choices=["ridge", "boosting"], default="ridge",
                   help="error model of --design active (default: ridge)")
    fitting(p)
    p.add_argument("-o", "--output", metavar="DIR", help="write plan.json and plan.png here")
    p.set_defaults(func=cmd_plan)
    return parser


def _one_line(message, category, filename, lineno, file=None, line=None):
    print(f"skftr: warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None):
    """Run the ``skftr`` command; returns the exit status (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line
        try:
            return args.func(args)
        except (ValueError, TypeError) as error:
            message = " ".join(str(error).split())
            print(f"skftr: error: {message}", file=sys.stderr)
            return 2
