"""The methods compared, each a configuration of skftr's public estimator, and the cache.

One result per (corpus, n, method, draw) is computed by :func:`run_cell` and cached on
disk with ``joblib.Memory``: a rerun only computes the cells not cached yet.
"""
import sys
import time
import warnings
from statistics import median

import numpy as np
from joblib import Memory

from skftr.rectify import rectified_mean

from . import design

CHEAP = ("classical", "cheap", "embedding_ridge", "mpnet_ridge", "tfidf_ridge", "length_ridge")
FINETUNED = ("default", "lora_only", "single_split_variance", "single_split_mse")
METHODS = CHEAP + FINETUNED

# seconds per fit assumed by --plan before any fit of a method is cached
# (2 shared CPU cores, one thread, MiniLM; "default": the mpnet top-layer fine-tunes with
# the trunk cached, measured 112-464 s on wine and EmoBank V at n = 500 and 1000)
DEFAULT_SECONDS = {"classical": 0.01, "cheap": 10.0, "embedding_ridge": 5.0, "mpnet_ridge": 5.0,
                   "tfidf_ridge": 5.0, "length_ridge": 0.1, "default": 250.0, "lora_only": 1500.0,
                   "single_split_variance": 1200.0, "single_split_mse": 1200.0}

REAL = {"subsample": None, "backbone": None, "lora": {}, "top": {}}
QUICK = {"subsample": 200, "backbone": None, "top": {"max_epochs": 1, "max_length": 32},
         "lora": {"min_steps": 2, "max_steps": 2, "max_epochs": 1, "max_length": 32}}


def make_estimator(method, seed, settings, feature_cache=None):
    """The ``FineTuneRectifyEstimator`` of a method (every method but ``classical``).

    ``default`` is the estimator's defaults: the top layer of all-mpnet-base-v2 fine-tuned
    on its frozen trunk (:class:`skftr.TopLayersRegressor`) beside the cheap predictors
    (:func:`skftr.predictors.default_predictors`: MiniLM, mpnet, TF-IDF and length
    ridges), 5-fold cross-fitting, power tuning (docs/method.md §2, §3.4). ``cheap`` is the
    four ridges alone. Both keep the frozen trunks' passes in ``feature_cache``
    (``memory=``), so a corpus's trunks run once for every draw; the fine-tune gets the
    draw's seed itself, so a draw's folds are the same with and without it. ``lora_only``
    is LoRA on every layer of MiniLM (:class:`skftr.LoRARegressor`) alone.
    ``single_split_*`` is the paper's method: one LoRA model, ``crossfit=None`` (pilots,
    scaling law, optimal allocation, §4-§5), plain PPI, variance or MSE loss (§3).
    """
    from skftr import FineTuneRectifyEstimator, LoRARegressor, TextRidge, TopLayersRegressor
    from skftr.predictors import default_predictors

    cheap = [p.set_params(memory=feature_cache)
             for p in default_predictors(backbone=settings["backbone"])]
    embedding = TextRidge("embedding", backbone=settings["backbone"], memory=feature_cache)
    mpnet = TextRidge("embedding", backbone="mpnet", memory=feature_cache)
    tfidf = TextRidge("tfidf", memory=feature_cache)
    length = TextRidge("length")
    lora = LoRARegressor(settings["backbone"], random_state=seed, **settings["lora"])
    top = TopLayersRegressor(settings["backbone"] or "mpnet", random_state=seed,
                             **settings["top"])
    single = {"model": lora, "predictors": None, "crossfit": None, "method": "ppi"}
    params = {
        "default": {"model": top, "predictors": cheap, "memory": feature_cache},
        "lora_only": {"model": lora, "predictors": None},
        "cheap": {"model": "drop", "predictors": cheap, "memory": feature_cache},
        "embedding_ridge": {"model": "drop", "predictors": [embedding]},
        "mpnet_ridge": {"model": "drop", "predictors": [mpnet]},
        "tfidf_ridge": {"model": "drop", "predictors": [tfidf]},
        "length_ridge": {"model": "drop", "predictors": [length]},
        "single_split_variance": {**single, "loss": "variance"},
        "single_split_mse": {**single, "loss": "mse"},
    }
    if method not in params:
        raise ValueError(f"method must be one of {sorted(params)}, got {method!r}")
    return FineTuneRectifyEstimator(**params[method], random_state=seed)


def estimate(draw, method, settings, feature_cache=None):
    """Fit one method on one draw; its interval, the fit time and any warnings, as a dict.

    ``classical`` is the labels alone (``skftr.rectify.rectified_mean(method="classical")``,
    ``Var(Y)/n``): the baseline of every method on the same draw.
    """
    y_labeled = draw.y[draw.labeled]
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if method == "classical":
            m = draw.y.size - draw.labeled.size
            result = rectified_mean(y_labeled, np.zeros(draw.n), np.zeros(m), method="classical")
            extra = {"n_rectify": draw.n, "predictors": []}
        else:
            est = make_estimator(method, draw.seed, settings, feature_cache)
            est.fit(list(draw.texts), draw.y)
            result = est.estimate_
            extra = {"n_rectify": est.n_rectify_, "predictors": est.predictor_names_}
    low, high = (float(v) for v in result.ci)
    return {"corpus": draw.corpus, "n": draw.n, "method": method, "draw": draw.draw,
            "value": float(result.value), "low": low, "high": high,
            "stderr": float(result.stderr), "lam": np.atleast_1d(result.lam).tolist(),
            "n_unlabeled": int(result.n_unlabeled), **extra, "truth": draw.truth,
            "rows_digest": _digest(draw.labeled), "seconds": time.perf_counter() - start,
            "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:160]}"
                                for w in caught})}


def _digest(rows):
    import hashlib

    return hashlib.sha1(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:12]


def run_cell(corpus, n, method, draw, settings, feature_cache=None, config=None):
    """One (corpus, n, method, draw) result: the function cached by :class:`Runner`.

    ``config`` (:func:`describe`) only keys the cache: a method whose estimator changes
    (a new default predictor, say) is computed again instead of read back stale.
    """
    return estimate(design.make_draw(corpus, n, draw, settings["subsample"]), method,
                    settings, feature_cache)


def describe(method, settings):
    """The configuration of a method: a hash of its estimator's parameters, nested
    estimators included (:func:`canonical`), the same on every machine and every version of
    the libraries (``"classical"`` has none)."""
    import hashlib
    import json

    if method == "classical":
        return method
    text = json.dumps(canonical(make_estimator(method, 0, settings)), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:32]


def canonical(value):
    """A parameter value as plain JSON data: an estimator becomes its class and its
    ``get_params(deep=False)``, numpy scalars and arrays numbers and lists, a set a sorted
    list, a function or a class its qualified name.

    Unlike a pickle (which an earlier ``describe`` hashed), this does not change with the
    machine or the installed numpy or joblib.
    """
    if hasattr(value, "get_params"):
        cls = type(value)
        return {"class": f"{cls.__module__}.{cls.__qualname__}",
                "params": canonical(value.get_params(deep=False))}
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((canonical(v) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(value) and hasattr(value, "__qualname__"):  # a function or a class
        return f"{value.__module__}.{value.__qualname__}"
    raise TypeError(f"describe: a parameter value of type {type(value).__name__} has no "
                    f"stable name: {value!r}")


def _cell(result):
    return (result["corpus"], result["n"], result["method"], result["draw"])


def earlier_results(paths, settings, configs):
    """The per-draw results of earlier ``replication.json`` reports that this run may reuse.

    A report is refused (``ValueError`` naming it) unless it ran with the same
    ``settings``; of its results only the methods whose ``configs`` (:func:`describe`)
    equal this run's are kept (the others are named on stderr), and each must be the same
    draw (``rows_digest`` of :func:`benchmarks.replication.design.labeled_rows`), else it is
    refused too.
    """
    import json

    kept = []
    for path in paths:
        try:
            payload = json.loads(open(path).read())
            recorded, theirs, results = (payload[k] for k in ("settings", "configs", "results"))
            if not (isinstance(theirs, dict) and isinstance(results, list)):
                raise TypeError("configs must be a mapping and results a list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--results-from {path}: not a replication report with its "
                             f"settings, configs and results ({exc})") from None
        if recorded != settings:
            raise ValueError(f"--results-from {path}: ran with settings {recorded}, this run "
                             f"has {settings}")
        same = {m for m in configs if theirs.get(m) == configs[m]}
        stale = sorted((set(configs) & set(theirs)) - same)
        if stale:
            print(f"--results-from {path}: {', '.join(stale)} ran with another estimator "
                  "configuration there; those draws are not read back", file=sys.stderr)
        for r in results:
            if r["method"] not in same:
                continue
            n_rows = len(design.load_corpus(r["corpus"], settings["subsample"])[0])
            if _digest(design.labeled_rows(r["corpus"], r["n"], r["draw"], n_rows)) \
                    != r["rows_digest"]:
                raise ValueError(f"--results-from {path}: {_cell(r)} labeled other rows than "
                                 "this run's draw")
            kept.append(r)
    return kept


def grid(corpora, budgets, methods, draws_finetuned, draws_cheap):
    """Every (corpus, n, method, draw) cell, draw by draw (a partial run leaves whole draws).

    ``classical`` (free) always joins: every method's savings are measured against it.
    """
    methods = ["classical"] + [m for m in methods if m != "classical"]
    wanted = {m: draws_cheap if m in CHEAP else draws_finetuned for m in methods}
    return [(c, n, m, d) for c in corpora for n in budgets
            for d in range(max(wanted.values())) for m in methods if d < wanted[m]]


class Runner:
    """Computes cells through a ``joblib.Memory`` cache and plans the remaining ones.

    ``earlier`` are the per-draw results of earlier reports (:func:`earlier_results`), read
    back in place of the same cells: runs on other machines or sessions join one report.
    """

    def __init__(self, cache_dir, settings, feature_cache=None, earlier=()):
        self.settings = settings
        self.feature_cache = feature_cache
        self._cached = Memory(cache_dir, verbose=0).cache(run_cell, ignore=["feature_cache"])
        self._configs = {}  # method -> describe(method): one per method, not per cell
        self._earlier = {_cell(r): r for r in earlier}

    def _args(self, cell):
        method = cell[2]
        if method not in self._configs:
            self._configs[method] = describe(method, self.settings)
        return (*cell, self.settings, self.feature_cache, self._configs[method])

    def is_cached(self, cell):
        return cell in self._earlier or self._cached.check_call_in_cache(*self._args(cell))

    def __call__(self, cell):
        """The cell's result, computed now unless it is cached or in an earlier report."""
        return self._earlier.get(cell) or self._cached(*self._args(cell))

    def cached_results(self, cells):
        """The results of the cells already cached (nothing is computed)."""
        return [self(cell) for cell in cells if self.is_cached(cell)]

    def plan(self, cells):
        """Missing cells per (corpus, n, method) and their estimated cost.

        The seconds per fit are the median of the cached fits of the same (corpus, n,
        method), else of the same method anywhere in ``cells``, else
        :data:`DEFAULT_SECONDS`.

        Returns
        -------
        list of dict
            ``corpus``, ``n``, ``method``, ``missing`` draws, ``seconds_per_fit``,
            ``source`` of that figure, ``seconds`` in all.
        """
        done = self.cached_results(cells)
        rows = {}
        for corpus, n, method, draw in cells:
            if not self.is_cached((corpus, n, method, draw)):
                rows.setdefault((corpus, n, method), 0)
                rows[(corpus, n, method)] += 1
        out = []
        for (corpus, n, method), missing in rows.items():
            same = [r["seconds"] for r in done if (r["corpus"], r["n"], r["method"])
                    == (corpus, n, method)]
            alike = [r["seconds"] for r in done if r["method"] == method]
            per_fit, source = ((median(same), "measured, same cell") if same else
                               (median(alike), "measured, same method") if alike else
                               (DEFAULT_SECONDS[method], "default"))
            out.append({"corpus": corpus, "n": n, "method": method, "missing": missing,
                        "seconds_per_fit": per_fit, "source": source,
                        "seconds": per_fit * missing})
        return out
