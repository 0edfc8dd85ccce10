"""The stages under ``FineTuneRectifyEstimator.fit`` (docs/method.md §2, §4, §5).

* :func:`seed` — give every unseeded random state of a model an int from the estimator's.
* :func:`crossfit_split` — K folds of the labeled rows, unlabeled rows assigned to folds.
* :func:`single_split` — the paper's split: fixed, from a ``BudgetSplitter``, or from a
  scaling law fitted on budget-faithful pilots, then the optimal allocation.
* :func:`fit_folds` — every predictor fitted on every fold's training rows, predicting
  that fold's other rows; the result is one :class:`~skftr.predictors.FoldEnsemble`.

Texts arrive validated (an object ndarray of str) and are never checked again here.
"""
from dataclasses import dataclass
from numbers import Real
import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import KFold

from ._inputs import resolve_size
from .predictors import FoldEnsemble, TextRidge, _name, _predict

_INT_MAX = np.iinfo(np.int32).max
# the backbone the default model fine-tunes: the strongest of the default predictors'
# (benchmarks/RESULTS.md), so that its trunk pass is shared with that backbone's ridge
DEFAULT_BACKBONE = "mpnet"


def seed(model, rng):
    """Set every ``random_state`` parameter of ``model`` that is None to an int from ``rng``.

    As scikit-learn's ensembles seed their members: the estimator's ``random_state``
    then reaches every model, fold and pilot it fits, unless the model has its own seed.
    """
    params = model.get_params(deep=True)
    for key in sorted(params):
        if (key == "random_state" or key.endswith("__random_state")) and params[key] is None:
            model.set_params(**{key: int(rng.randint(_INT_MAX))})
    return model


def make_predictors(est, rng):
    """Unfitted, seeded clones: the model (``loss`` applied), then ``predictors``."""
    out = []
    if est.model != "drop":
        out.append(_make_model(est))
    if est.predictors == "auto":
        if getattr(est, "_text_input", True):
            from .predictors import default_predictors

            out += default_predictors()
    elif est.predictors:
        out += [clone(p) for p in est.predictors]
    if est.n_threads is not None:
        for p in out:
            if "n_threads" in p.get_params():
                p.set_params(n_threads=est.n_threads)
    return [seed(p, rng) for p in out]


def _make_model(est):
    if est.model is None:
        from .finetune import TopLayersRegressor

        model = TopLayersRegressor(DEFAULT_BACKBONE)
    else:
        model = clone(est.model)
    params = model.get_params()
    if "loss" in params and (hasattr(model, "initialize_criterion") or hasattr(model, "fit_trunk")):
        model.set_params(loss=est.loss)
    elif not (isinstance(est.loss, str) and est.loss in ("variance", "mse")):
        raise ValueError(f"loss={est.loss!r} needs a model that takes a loss "
                         f"(LoRARegressor); {type(model).__name__} is fitted with its own "
                         "least-squares objective, for which 'variance' and 'mse' agree")
    return model


@dataclass
class Split:
    """Which rows train and which rectify, per fold (positions in the validated X).

    ``train[k]`` fits fold ``k``'s predictors; ``rectify`` are the labeled rows whose
    labels rectify, ``folds`` their fold ids (all 0 for a single split);
    ``unlabeled`` the unlabeled rows, ``folds_unlabeled`` the fold whose predictors
    predict each of them.
    """

    train: list
    rectify: np.ndarray
    folds: np.ndarray
    unlabeled: np.ndarray
    folds_unlabeled: np.ndarray
    allocation: object = None
    scaling_law: object = None
    pilot_indices: np.ndarray = None


def crossfit_split(labeled, unlabeled, k, rng):
    """K folds (``KFold(shuffle=True)``) of the labeled rows; the unlabeled rows are
    assigned to folds in proportion to the fold sizes (one prediction pass each)."""
    if labeled.size < 2 * k:
        raise ValueError(f"y has {labeled.size} labeled rows; crossfit={k} needs at least "
                         f"{2 * k} (two per fold)")
    folds = np.empty(labeled.size, dtype=int)
    splitter = KFold(k, shuffle=True, random_state=rng.randint(_INT_MAX))
    train = []
    for fold, (tr, val) in enumerate(splitter.split(labeled)):
        folds[val] = fold
        train.append(labeled[tr])
    sizes = np.bincount(folds, minlength=k)
    return Split(train, labeled, folds, unlabeled, assign_folds(unlabeled.size, sizes, rng))


def assign_folds(m, sizes, rng):
    """Fold ids for ``m`` unlabeled rows, ``m * n_k / n`` of them (largest remainder) per fold."""
    quota = m * sizes / sizes.sum()
    counts = np.floor(quota).astype(int)
    counts[np.argsort(counts - quota)[: m - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(sizes.size), counts))


def single_split(est, X, y, labeled, unlabeled, model, rng):
    """The paper's single split of the labeled rows into fine-tuning and rectification.

    ``est.n_finetune``: an int (count) or float (share); a ``BudgetSplitter`` (its first
    split: train-fold labeled rows fine-tune, the test fold rectifies); or ``"auto"``:
    the scaling law ``est.scaling_law`` or one fitted on budget-faithful pilots (Wang,
    Ye & Zhao 2025; docs/method.md §4), then :func:`skftr.optimal_allocation` (§5). The
    pilot pool is part of the fine-tuning rows: no rectification row touched a pilot.
    """
    n, nf = labeled.size, est.n_finetune
    none = np.zeros(unlabeled.size, dtype=int)
    if not isinstance(nf, (str, Real)):  # a BudgetSplitter
        train, test = next(iter(nf.split(X.tolist() if X.dtype == object else X, y)))
        finetune, rectify = np.intersect1d(train, labeled), np.unique(test)
        if not np.isfinite(y[rectify]).all():
            raise ValueError("the BudgetSplitter given as n_finetune put unlabeled rows in its "
                             "test (rectification) fold")
        _check_split(est, finetune.size, rectify.size, n)
        return Split([finetune], rectify, np.zeros(rectify.size, int), unlabeled, none)
    if nf != "auto":
        k = resolve_size(nf, n, "n_finetune")
        _check_split(est, k, n - k, n)
        order = rng.permutation(labeled)
        return Split([np.sort(order[:k])], np.sort(order[k:]), np.zeros(n - k, int),
                     unlabeled, none)
    law, pool = _scaling_law(est, X, y, labeled, model, rng)
    from .allocation import optimal_allocation

    m = unlabeled.size
    var_f = getattr(law, "prediction_variance_", None)
    if var_f is None and m:
        var_f = float(np.var(y[labeled], ddof=1))  # Var(f) <~ Var(Y): conservative
    allocation = optimal_allocation(n, law, n_unlabeled=m or None, var_f=var_f if m else None,
                                    min_rectify=est.min_rectify, n_pilot=pool.size,
                                    alpha=est.alpha)
    rest = rng.permutation(np.setdiff1d(labeled, pool))
    extra = allocation.n_finetune - pool.size
    finetune, rectify = np.sort(np.concatenate([pool, rest[:extra]])), np.sort(rest[extra:])
    return Split([finetune], rectify, np.zeros(rectify.size, int), unlabeled, none,
                 allocation, law, pool)


def _scaling_law(est, X, y, labeled, model, rng):
    """The given law, or one fitted on a pilot pool drawn from the labeled rows."""
    if est.scaling_law is not None:
        return est.scaling_law, np.empty(0, dtype=int)
    from .scaling import ScalingLaw

    n = labeled.size
    if est.pilot_sizes is None:
        low, high = max(5.0, n / 16), n / 4
        if high < 2 * low:
            raise ValueError(f"y has {n} labeled rows, too few for pilots at 3 distinct sizes "
                             "(about n/16, n/8, n/4, at least 5); give n_finetune as an int or "
                             "fraction, or a scaling_law")
        sizes = np.unique(np.round(np.geomspace(low, high, 3)).astype(int))
    else:
        sizes = np.unique(np.asarray(est.pilot_sizes, dtype=int))
    holdout = max(2, int(sizes[-1]) // 2)
    n_pool = int(sizes[-1]) + holdout
    if n < n_pool + est.min_rectify:
        raise ValueError(f"y has {n} labeled rows; n_finetune='auto' with a pilot pool of "
                         f"{n_pool} rows and min_rectify={est.min_rectify} needs at least "
                         f"{n_pool + est.min_rectify}")
    pool = np.sort(rng.choice(labeled, size=n_pool, replace=False))
    law = ScalingLaw.from_pilots(model, X[pool].tolist() if X.dtype == object else X[pool],
                                 y[pool], sizes, n_repeats=est.pilot_repeats, holdout=holdout,
                                 n_jobs=est.n_jobs, random_state=rng.randint(_INT_MAX))
    return law, pool


def _check_split(est, k, n_r, n):
    if k < 1:
        raise ValueError(f"n_finetune={est.n_finetune!r} gives {k} fine-tuning rows out of "
                         f"{n} labeled rows; at least 1 is needed")
    if n_r < est.min_rectify:
        raise ValueError(f"n_finetune={est.n_finetune!r} leaves {n_r} of the {n} labeled rows "
                         f"to rectify, fewer than min_rectify={est.min_rectify}; in a grid "
                         "search lower n_finetune or the splitter's test_size")


def fit_folds(predictors, X, y, scores, split, *, text_input, score_names=(), inference=None,
              n_jobs=None, memory=None, verbose=0):
    """Fit every predictor on every fold; predict each fold's rectification and unlabeled rows.

    Three kinds of predictor, each fitted where it is cheapest:

    * readers of a frozen trunk (:class:`~skftr.predictors.TextRidge` embeddings and
      :class:`~skftr.finetune.TopLayersRegressor`; ``trunk_spec()``): one trunk pass per
      backbone serves all of them (:func:`_fit_trunk_readers`, docs/method.md §3.4), kept on
      disk under ``memory`` when given;
    * other :class:`~skftr.predictors.TextRidge` features (TF-IDF, length) carry no label,
      so they are fitted once and only the ridge is refitted per fold
      (:func:`_fit_feature_ridges`);
    * any other model (``LoRARegressor``, a user's pipeline) is cloned and fitted per
      fold, in parallel with joblib (``n_jobs``; a Dask or Ray joblib backend scales them
      out). ``inference`` turns each fitted torch model into its fast copy
      (:func:`skftr.inference.optimize`) before it predicts anything.

    ``verbose`` shows one progress bar over all the fits.

    Returns
    -------
    ensemble : FoldEnsemble
    f_rectify : ndarray (n_rectify, p)
        Out-of-fold predictions of the rectification rows.
    f_unlabeled : ndarray (m, p)
        Predictions of the unlabeled rows by their assigned fold.
    seconds : dict
        Wall time of each stage (``"models"``, ``"feature ridges"``, then per trunk its
        labeled pass, its readers' fits and its unlabeled pass).
    """
    from time import perf_counter

    k = len(split.train)
    targets = [np.concatenate([split.rectify[split.folds == f],
                               split.unlabeled[split.folds_unlabeled == f]]) for f in range(k)]
    members = [[None] * len(predictors) for _ in range(k)]
    preds = [np.empty((t.size, len(predictors))) for t in targets]
    groups = trunk_groups(predictors) if text_input else {}
    readers = [j for js in groups.values() for j in js]
    ridges = [j for j, p in enumerate(predictors) if isinstance(p, TextRidge) and j not in readers]
    heavy = [j for j in range(len(predictors)) if j not in readers and j not in ridges]
    tasks = [(f, j) for j in heavy for f in range(k)]
    bar = _progress(verbose, len(tasks) + len(ridges) + k * len(readers))
    tick = lambda label: (bar.set_postfix_str(label), bar.update(1))  # noqa: E731
    seconds, start = {}, perf_counter()
    results = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_fit_predict)(predictors[j], X[split.train[f]], y[split.train[f]],
                              X[targets[f]], text_input, inference) for f, j in tasks)
    for (f, j), (fitted, pred) in zip(tasks, results):
        members[f][j], preds[f][:, j] = fitted, pred
        tick(f"fold {f + 1}/{k}: {_name(predictors[j])}")
    if tasks:
        seconds["models"], start = perf_counter() - start, perf_counter()
    if ridges:
        _fit_feature_ridges({j: predictors[j] for j in ridges}, X, y, split, members, preds,
                            tick)
        seconds["feature ridges"] = perf_counter() - start
    for spec, js in groups.items():
        seconds.update(_fit_trunk_readers(spec, {j: predictors[j] for j in js}, X, y, split,
                                          members, preds, memory, tick))
    bar.close()

    p = len(predictors) + (0 if scores is None else scores.shape[1])
    f_rect, f_unl = np.empty((split.rectify.size, p)), np.empty((split.unlabeled.size, p))
    for f in range(k):
        n_r = int(np.sum(split.folds == f))
        cols = preds[f] if scores is None else np.column_stack([preds[f], scores[targets[f]]])
        f_rect[split.folds == f], f_unl[split.folds_unlabeled == f] = cols[:n_r], cols[n_r:]
    weights = np.bincount(split.folds, minlength=k) / split.folds.size
    names = [_name(p) for p in predictors] + list(score_names)
    ensemble = FoldEnsemble(members, weights, names, 0 if scores is None else scores.shape[1],
                            text_input)
    return ensemble, f_rect, f_unl, seconds


def trunk_groups(predictors):
    """``{TrunkSpec: [j, ...]}``: the predictors (positions) that read each frozen trunk."""
    groups = {}
    for j, predictor in enumerate(predictors):
        spec = predictor.trunk_spec() if hasattr(predictor, "trunk_spec") else None
        if spec is not None:
            groups.setdefault(spec, []).append(j)
    return groups


def _fit_trunk_readers(spec, readers, X, y, split, members, preds, memory, tick):
    """Fit and predict, fold by fold, the ``readers`` ``{j: predictor}`` of one trunk.

    One pass of the trunk over the labeled rows gives the pooled embeddings (the ridges)
    and the token states after layer ``L - k`` (the top-layer fine-tunes), held in memory;
    each fold's readers are fitted on its training rows and predict its rectification
    rows. The unlabeled rows then stream through the trunk chunk by chunk, each row
    predicted by its fold's readers, so no token state of the unlabeled set outlives its
    chunk (docs/method.md §3.4). With ``memory`` (the estimator's, else the first reader's
    own) the pass over all of ``X`` is read from (or written once to) the disk cache of
    :func:`skftr.trunk.cached_outputs` instead.
    Returns the wall time of the three stages.
    """
    from pathlib import Path
    from time import perf_counter

    from .trunk import cached_outputs, get_trunk

    path = Path(spec.path)  # a packaged backbone's folder is often just "model"
    name, start = (path.parent.name if path.name == "model" else path.name), perf_counter()
    if memory is None:  # a reader's own cache (``TextRidge(memory=...)``) serves the trunk
        memory = next((p.memory for p in readers.values()
                       if getattr(p, "memory", None) is not None), None)
    trunk = get_trunk(spec)
    layers = sorted({layer for p in readers.values() if hasattr(p, "trunk_layers")
                     for layer in p.trunk_layers(trunk)})
    labeled, position = _labeled_positions(split, X.shape[0])
    cached = cached_outputs(trunk, X.tolist(), layers, memory) if memory is not None else None
    outputs = cached.take(labeled) if cached is not None else trunk.run(X[labeled].tolist(), layers)
    seconds = {f"{name} trunk, labeled rows": perf_counter() - start}
    start, k = perf_counter(), len(split.train)
    for f in range(k):
        train = position[split.train[f]]
        rectify = position[split.rectify[split.folds == f]]
        for j, predictor in readers.items():
            members[f][j] = _fit_reader(predictor, outputs.take(train), y[split.train[f]])
            preds[f][:rectify.size, j] = _predict_reader(members[f][j], outputs.take(rectify))
            tick(f"fold {f + 1}/{k}: {_name(predictor)}")
    seconds[f"{name} readers, {k} fold(s)"], start = perf_counter() - start, perf_counter()
    states = layers if any(_needs_states(members[f][j]) for f in range(k) for j in readers) else ()
    if cached is not None:
        chunks = ((first, cached.take(split.unlabeled[first:first + _CHUNK]))
                  for first in range(0, split.unlabeled.size, _CHUNK))
    else:
        chunks = trunk.stream(X[split.unlabeled].tolist(), states, chunk_size=_CHUNK)

    def predict(f, chunk, mine):
        part = chunk.take(mine)
        return {j: _predict_reader(members[f][j], part) for j in readers}

    _predict_unlabeled(split, preds, ((first, len(c), c) for first, c in chunks), predict)
    seconds[f"{name} trunk and readers, unlabeled rows"] = perf_counter() - start
    return seconds


def _fit_feature_ridges(ridges, X, y, split, members, preds, tick):
    """Fit and predict, fold by fold, the ``ridges`` ``{j: TextRidge}`` on label-free
    features (TF-IDF, length).

    Each featurizer is fitted once, on the labeled rows and at most ``_FEATURIZER_ROWS``
    of the others (evenly spaced: a TF-IDF vocabulary and its idf need no more, and a
    vocabulary of every text would grow with the corpus); each fold's ridge is fitted on
    its training rows' features. The unlabeled rows are featurized a chunk at a time and
    each row predicted by its fold's ridge, so no feature row of the unlabeled set is
    kept (docs/method.md §3.4: memory stays flat as the number of texts grows).
    """
    labeled, position = _labeled_positions(split, X.shape[0])
    room = max(0, _FEATURIZER_ROWS - labeled.size)
    m = split.unlabeled.size
    sample = split.unlabeled[np.unique(np.linspace(0, m - 1, min(m, room)).astype(int))]
    texts = X[labeled].tolist()
    k, featurizers = len(split.train), {}
    for j, predictor in ridges.items():
        features = featurizers[j] = predictor.make_features().fit(texts + X[sample].tolist())
        Z = features.transform(texts)
        for f in range(k):
            rectify = position[split.rectify[split.folds == f]]
            members[f][j] = clone(predictor).fit_features(features, Z[position[split.train[f]]],
                                                          y[split.train[f]])
            preds[f][:rectify.size, j] = members[f][j].predict_features(Z[rectify])
        tick(f"{_name(predictor)} on {k} fold(s)")
    chunks = ((first, X[split.unlabeled[first:first + _CHUNK]].tolist())
              for first in range(0, m, _CHUNK))
    featurized = ((first, len(part), {j: f.transform(part) for j, f in featurizers.items()})
                  for first, part in chunks)

    def predict(f, Z, mine):
        return {j: members[f][j].predict_features(Z[j][mine]) for j in ridges}

    _predict_unlabeled(split, preds, featurized, predict)


def _labeled_positions(split, n):
    """The labeled rows (sorted) of a split and, for each of the ``n`` rows, its
    position among them (-1 for an unlabeled row)."""
    labeled = np.unique(np.concatenate(split.train + [split.rectify]))
    position = np.full(n, -1)
    position[labeled] = np.arange(labeled.size)
    return labeled, position


def _predict_unlabeled(split, preds, chunks, predict):
    """Fill the unlabeled rows of each fold's ``preds`` (after its rectification rows),
    chunk by chunk: ``chunks`` yields ``(first, size, data)`` for consecutive unlabeled
    rows, and ``predict(f, data, mine)`` returns ``{j: predictions}`` of fold ``f``'s
    models for the chunk's rows ``mine`` (positions in the chunk), the rows of that fold."""
    k = len(split.train)
    n_rect = np.bincount(split.folds, minlength=k)
    slot = np.empty(split.unlabeled.size, dtype=int)
    for f in range(k):
        mine = np.flatnonzero(split.folds_unlabeled == f)
        slot[mine] = n_rect[f] + np.arange(mine.size)
    for first, size, data in chunks:
        rows = np.arange(first, first + size)
        for f in range(k):
            mine = np.flatnonzero(split.folds_unlabeled[rows] == f)
            if mine.size:
                for j, pred in predict(f, data, mine).items():
                    preds[f][slot[rows[mine]], j] = pred


_CHUNK = 2048  # unlabeled texts per streamed chunk (of a trunk, of a featurizer)
_FEATURIZER_ROWS = 20_000  # texts a label-free featurizer (TF-IDF) is fitted on, at most


def fit_info(ensemble, seconds):
    """What a fit did, JSON-friendly (``estimate_.fit_info``): the precision each frozen
    trunk ran in, per fine-tuned model its layers and whether each fold kept its
    fine-tune or fell back to the warm start, and the seconds of each stage."""
    trunks, finetunes = {}, []
    for j, name in enumerate(ensemble.names[:len(ensemble.members[0])]):
        first = ensemble.members[0][j]
        precision = getattr(first, "trunk_precision_", None) or \
            getattr(getattr(first, "features_", None), "precision_", None)
        if precision is not None:
            trunks[name] = precision
        if hasattr(first, "warm_start_kept_"):
            folds = [m[j] for m in ensemble.members]
            finetunes.append({"predictor": name,  # LoRARegressor: every layer, LoRA
                              "top_layers": getattr(first, "n_top_layers_", "all"),
                              "adapter": getattr(first, "adapter", "lora"),
                              "fine_tune_kept": [not m.warm_start_kept_ for m in folds],
                              "epochs": [getattr(m, "best_epoch_", m.n_epochs_) for m in folds]})
    return {"trunks": trunks, "fine_tunes": finetunes,
            "seconds": {k: round(v, 2) for k, v in seconds.items()}}


def _fit_reader(predictor, outputs, y):
    """A clone of a trunk reader fitted on a trunk pass ``outputs`` of its training rows."""
    fitted = clone(predictor)
    if isinstance(fitted, TextRidge):
        features = fitted.make_features().fit()
        return fitted.fit_features(features, outputs.embeddings.astype(np.float64), y)
    return fitted.fit_trunk(outputs, y)


def _predict_reader(fitted, outputs):
    if isinstance(fitted, TextRidge):
        return fitted.predict_features(outputs.embeddings.astype(np.float64))
    return fitted.predict_trunk(outputs)


def _needs_states(fitted):
    return hasattr(fitted, "needs_states") and fitted.needs_states()


def _progress(verbose, total):
    """One tqdm bar over the fits (disabled at ``verbose=0``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="skftr fit", unit="fit", disable=not verbose, leave=False)


def _fit_predict(model, X_train, y_train, X_predict, text_input, inference):
    fitted = clone(model).fit(X_train.tolist() if text_input else X_train, y_train)
    if inference is not None:
        from .inference import optimize

        fitted = optimize(fitted, inference)
    return fitted, _predict(fitted, X_predict, text_input)


def predict_by_fold(est, X, scores):
    """Each new row predicted by one fold's predictors of the fitted ``est``: the fold
    drawn from a keyed hash of the row (:func:`skftr.cache.assign_folds`), so that
    ``est.estimate``, :mod:`skftr.cache` and :mod:`skftr.distributed` agree
    (docs/method.md §2.3, cross-fitting by assignment)."""
    from .cache import assign_folds, predict_assigned

    folds = assign_folds(X, est.model_.fold_weights, est.assignment_key_)
    return folds, predict_assigned(est.model_, X, folds, scores)


def estimate_by(est, groups):
    """One rectified estimate per group, from the fitted predictors of ``est``.

    Each group rectifies with its own labeled and unlabeled rows: cross-fitted when every
    fold has rows of the group on both sides, else with the out-of-fold predictions as
    ready predictions (docs/method.md §2).
    """
    groups = np.asarray(groups, dtype=object).reshape(-1)
    if groups.shape[0] != est._n_rows:
        raise ValueError(f"groups has {groups.shape[0]} entries; the fit had {est._n_rows} "
                         "rows (X, then X_unlabeled)")
    lab, unl = groups[est.labeled_indices_], groups[est._unlabeled_rows]
    out = {}
    for g in dict.fromkeys(groups[np.concatenate([est.labeled_indices_, est._unlabeled_rows])]):
        r, u = lab == g, unl == g
        if r.sum() < 3 or u.sum() < 2:
            raise ValueError(f"group {g!r} has {int(r.sum())} labeled and {int(u.sum())} "
                             "unlabeled rows; at least 3 and 2 are needed for its interval")
        full = set(est._folds[r]) == set(est._folds_unl[u]) == set(range(est.n_folds_))
        folds = (est._folds[r], est._folds_unl[u]) if full else (None, None)
        w_r, w_u = est.design_weights_, getattr(est, "_w_unl", None)
        out[g] = est._rectify(est._y_rect[r], est._f_rect[r], est._f_unl[u], *folds,
                              weights=None if w_r is None else w_r[r],
                              weights_u=None if w_u is None else w_u[u])
    return out
