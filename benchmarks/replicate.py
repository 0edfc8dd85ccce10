"""Replicate the FTR comparison on Wine Reviews and EmoBank (issue 6, METHOD.md §6).

Every method estimates the mean label of a data file from a human budget of ``n``
labels; we repeat, compare with the truth and report coverage, mean interval width, RMSE,
bias, the effective sample size and the label savings.

Protocol
--------
Data. ``wine`` (y = points, X = description), ``emobank`` (y = valence V, the mean of
about five readers), ``emobank_reader`` (y = one reader's rating, from
:func:`skftr.datasets.load_emobank_reader`, ``random_state=0``). A fixed random
*pilot hold-out* ``H`` of ``--holdout`` rows is set aside per dataset: it only measures
the error variances of the pilot models for the scaling law (the paper's protocol: the
law is fitted on rows outside every evaluation draw). Every draw below comes from the
*evaluation population* ``E`` = the other rows. Truth = mean label over the whole file
(METHOD.md §6); the metadata records how far the mean over ``E`` is from it.

Fine-tuning (stage 1, cached). For each seed ``g`` a permutation ``perm_g`` of ``E`` is
drawn; the model ``(loss, s, g)`` is a :class:`skftr.lora.LoRARegressor` fine-tuned on
``perm_g[:s]`` (nested in ``s``; the same rows and initial weights for both losses, so
variance and MSE are compared pairwise). It predicts the hold-out ``H`` and the rows
``perm_g[:max(budgets) + pool]`` (every row with ``--pool 0``); the prediction vector (NaN
elsewhere), the training rows and the fit/predict seconds are cached in
``<cache>/<dataset>/<backbone>/<loss>/s<s>_seed<g>.npz``. A model trained on ``s`` rows
serves every budget ``n > s``. Since ``perm_g`` is random, the predicted rows outside the
training set are a uniformly random subset of ``E`` minus the training rows: drawing the
rectification rows and the unlabelled set inside it keeps every estimate valid for the
whole file, with ``m = max(budgets) + pool - n`` unlabelled units (the stated cap).

Cross-fitting (stage 2, cached). For each budget ``n`` and seed ``g`` the labelled set is
``perm_g[:n]``, cut in ``K = --folds`` consecutive folds; model ``k`` is fine-tuned
(variance loss) on the other folds. The last fold's model has the training rows
``perm_g[:(K-1)n/K]`` of a grid model and is reused when that size is on the grid.

Zero-shot (stage 3, cached). ``benchmarks/_zeroshot.py``: SmolLM2-135M-Instruct prompted
for a 1-5 rating, expected value over the answer tokens (``--zeroshot smollm2``), or the
frozen-embedding anchor scorer (``--zeroshot embedding``, the default; see Caps).

Evaluation (stage 4, numpy only). ``D = --draws`` rectification draws per model.
For a grid model ``(loss, s, g)`` and budget ``n``: ``n - s`` rectification rows drawn
from the predicted rows of ``E`` minus its training rows, unlabelled set = every other
predicted row of ``E`` (all of ``E`` with ``--pool 0``); ``skftr.rectify.rectified_mean``.
Methods:

* ``classical``: ``n`` rows of ``E``, mean of the labels (``D x seeds`` draws).
* ``rectify_only`` / ``rectify_only_ppipp``: the same draws, PPI / PPI++ on the
  zero-shot predictions, the unlabelled set a random ``m`` of the other rows of ``E``
  (same cap as the fine-tuned models).
* ``finetune_only``: MSE model on ``perm_g[:n]`` (all ``n`` labels), mean of its
  predictions over the rest of ``E``, naive interval ``z sqrt(Var(f)/m)``; one
  estimate per seed.
* ``ftr_var`` / ``ftr_mse``: grid model at ``s*``, PPI. ``s*`` from the scaling law
  (:class:`skftr.scaling.ScalingLaw`) fitted to every grid model of that loss (all
  sizes and seeds), error variance ``Var(Y - f_s)`` measured on ``H``;
  :func:`skftr.allocation.optimal_allocation` (``m`` = unlabelled rows,
  ``Var(f)`` of the largest models on ``H``) gives the integer ``s*``, and the grid
  size with the smallest projected ``V(s)`` is used (models exist on the grid only).
* ``ftr_var_ppipp``: the same draws as ``ftr_var``, PPI++.
* ``ftr_var_oracle``: the grid size with the smallest *measured* MSE (variance loss).
* ``ftr_var_crossfit``: :func:`skftr.rectify.crossfit_mean` on the ``K`` fold models;
  one estimate per seed.
* ``ftr_var_faithful``: budget-faithful allocation (METHOD.md §5). Pilots are paid out of
  ``n``: the grid models of seed ``g`` at the grid sizes ``<= n/5`` (or the smallest
  grid size when none is; training rows
  ``perm_g[:s]``, inside the budget), their error variance measured on the next
  ``n/10`` budget rows ``perm_g[s_p : s_p + n/10]`` (``s_p`` the largest pilot size).
  The law fitted on them (flat when fewer than 3 sizes) and ``optimal_allocation(...,
  n_pilot=p)`` with ``p = s_p + n/10`` choose the grid size ``s_f >= p``; the final model
  is the grid model ``(variance, s_f, g)``, whose training rows ``perm_g[:s_f]`` contain
  every pilot row (pilot labels reused for fine-tuning, counted in ``n``). Its ``n - s_f``
  rectification rows are drawn as above. No extra fine-tune is needed.

Caps (the defaults; all are options). The complete grid of the issue (6 sizes x 2 losses,
cross-fitting at every budget, no unlabelled cap, SmolLM2 zero-shot, the library's default
training length) is about 400 fine-tunes, about 17 hours on 2 CPU cores. The defaults keep
every method, all datasets and 5 seeds, and fit the issue's budget of about 3 hours on 2
CPU cores (``--jobs 2``; ``--plan`` prints the estimate):

* the variance loss is fine-tuned at s in {50, 100, 200, 400, 800}, the MSE loss at
  {50, 100, 200, 500, 1000} (its s = 500 and 1000 models are also ``finetune_only``'s);
* cross-fitting at n = 1000 only, where METHOD.md §5 expects it to matter (the last fold's
  model is the grid model s = 800);
* a shorter training than the library default: ``min_steps=100, max_epochs=2`` (100-130
  optimizer steps per model instead of 200-250);
* the unlabelled set is capped at ``3000 - n`` rows (all models predict the same 3000 rows
  of their seed's permutation, and the hold-out);
* the embedding zero-shot scorer instead of SmolLM2, which costs about 0.25-0.3 s per text
  on 2 cores (over an hour for the two corpora) and, on small samples, correlated 0.33 with
  the wine points (32 reviews) but -0.32 with EmoBank valence (48 sentences), against 0.16
  and 0.44 for the embedding scorer over the whole files.

Fine-tunes run ``--jobs`` at a time in worker processes (1 on a GPU, where a dataset takes
minutes). They are cached, so an interrupted run resumes where it stopped; it can also be
split (``--datasets wine``, then ``--datasets emobank emobank_reader``): a run adds its
datasets to the outputs already in ``--out-dir`` when those were made with the same settings
(``RUN_ONLY`` aside), so the last part ends with the combined outputs, and
``metadata.runs`` records which command evaluated which dataset, and its wall time;
``metadata.compute_seconds`` sums the recorded fit and predict times of every model used,
wherever they were run.

Metrics per (dataset, n, method) over all repetitions (draws x seeds): ``coverage`` of the
``1 - alpha`` interval, ``mean_width``, ``bias`` and ``rmse`` around the truth,
``n_eff = Var(Y) / MSE`` with ``MSE`` the empirical mean squared error around the truth
and ``Var(Y)`` the variance of the label over the file (METHOD.md §6),
``label_savings = 1 - n / n_eff``. Draws are without replacement from a finite file, so the
classical mean itself has ``MSE ~ Var(Y) (1/n - 1/|E|)``; ``n_eff_fpc = 1 / (MSE/Var(Y) +
1/|E|)`` is the classical sample size with the same MSE under that design, and
``label_savings_fpc = 1 - n / n_eff_fpc`` (about 0 for ``classical``) is the share of
labels saved against it at equal precision.

The draws of one grid model all split the same pool (its predicted rows minus its training
rows), so with the unlabelled cap the distance of each pool's label mean to the truth enters
the fine-tuned methods' MSE once per seed; ``benchmarks/replication_adjusted.py``, run at the
end, writes the records with that term replaced by its expectation
(``replication_adjusted.{json,md,png}``).

Run (from the repository root)::

    python benchmarks/replicate.py --plan          # print the plan and time estimate only
    python benchmarks/replicate.py --jobs 2        # full run on 2 cores (resumable)
    python benchmarks/replicate.py --quick         # smoke run (~3 min), outputs in the cache
    python benchmarks/replicate.py --eval-only     # evaluate whatever is cached
"""

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

DATASETS = ("wine", "emobank", "emobank_reader")
TASK = {"wine": "wine", "emobank": "valence", "emobank_reader": "valence"}
CORPUS = {"wine": "wine", "emobank": "emobank", "emobank_reader": "emobank"}  # same texts
LOSSES = ("variance", "mse")
METHODS = (
    "classical",
    "rectify_only",
    "rectify_only_ppipp",
    "finetune_only",
    "ftr_mse",
    "ftr_var",
    "ftr_var_ppipp",
    "ftr_var_oracle",
    "ftr_var_crossfit",
    "ftr_var_faithful",
)
PAPER_SAVINGS_WINE = (0.45, 0.66)  # METHOD.md §6 headline, for the report only

# CPU cost model for the plan (see `measured_costs`, which replaces it by the times recorded
# in the cache once some fine-tunes exist): seconds per optimizer step of 16 texts, and per
# predicted text, for each corpus (MiniLM, max_length 128, batch 16), measured on 2 otherwise
# idle cores with one torch thread (COST_1_THREAD, what each of `--jobs 2` workers sees) and
# with two (COST). SmolLM2 zero-shot: about 0.5 (wine) and 0.4 (EmoBank) CPU seconds per
# prompt on one thread, 0.3 and 0.25 on two.
COST_1_THREAD = {"wine": {"step": 1.03, "text": 0.019}, "emobank": {"step": 0.41, "text": 0.0078}}
COST = {"wine": {"step": 0.72, "text": 0.011}, "emobank": {"step": 0.32, "text": 0.0049}}
ZEROSHOT_COST = {
    "smollm2": {"wine": 0.30, "emobank": 0.25},
    "embedding": {"wine": 0.012, "emobank": 0.005},
}

# Full run: the protocol with the caps that keep it near the CPU budget (module
# docstring, "Caps"); the complete grid is e.g. --sizes 25 50 100 200 400 800 --mse-sizes
# 25 50 100 200 400 800 --crossfit-budgets 200 500 1000 --pool 0 --zeroshot smollm2.
FULL = dict(
    datasets=list(DATASETS),
    budgets=[200, 500, 1000],
    sizes=[50, 100, 200, 400, 800],
    mse_sizes=[50, 100, 200, 500, 1000],
    crossfit_budgets=[1000],
    pool=2000,
    seeds=[0, 1, 2, 3, 4],
    draws=200,
    holdout=500,
    max_rows=None,
    min_steps=100,
    max_epochs=2,
    max_length=128,
    zeroshot="embedding",
    folds=5,
    min_rectify=50,
    alpha=0.05,
)
QUICK = dict(
    datasets=["wine"],
    budgets=[100],
    sizes=[20, 40, 80],
    mse_sizes=[20, 40, 80],
    crossfit_budgets=[100],
    pool=0,
    seeds=[0, 1],
    draws=50,
    holdout=40,
    max_rows=300,
    min_steps=4,
    max_epochs=1,
    max_length=48,
    zeroshot="embedding",
    folds=5,
    min_rectify=20,
    alpha=0.05,
)


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass
class Config:
    """Settings of one run (the defaults of FULL or QUICK, overridden on the command line)."""

    datasets: list
    budgets: list
    sizes: list
    mse_sizes: list
    crossfit_budgets: list
    pool: int
    seeds: list
    draws: int
    holdout: int
    max_rows: object
    min_steps: int
    max_epochs: int
    max_length: int
    zeroshot: str
    folds: int
    min_rectify: int
    alpha: float
    backbone: str = "minilm"
    device: str = "auto"
    jobs: int = 1
    cache_dir: Path = None
    out_dir: Path = None
    quick: bool = False

    def fit_key(self):
        """Settings that change a fine-tuned model (they key the cache)."""
        return {
            "backbone": self.backbone,
            "min_steps": self.min_steps,
            "max_epochs": self.max_epochs,
            "max_length": self.max_length,
            "prediction_end": self.prediction_end(),
            "holdout": self.holdout,
            "max_rows": self.max_rows,
        }

    def prediction_end(self):
        """Models of seed g predict perm_g[:end] and the hold-out (None: every row)."""
        return max(self.budgets) + self.pool if self.pool else None


def parse_args(argv=None):
    """Command line -> (Config, flags)."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: wine, n=100, 300 rows, 2 seeds, 4 LoRA steps",
    )
    p.add_argument(
        "--plan", action="store_true", help="print the plan and time estimate, then exit"
    )
    p.add_argument(
        "--eval-only", action="store_true", help="no fitting: evaluate the cached models"
    )
    p.add_argument("--datasets", nargs="+", choices=DATASETS)
    p.add_argument("--budgets", nargs="+", type=int)
    p.add_argument(
        "--sizes", nargs="+", type=int, help="fine-tuning sizes s of the grid (variance loss)"
    )
    p.add_argument("--mse-sizes", nargs="+", type=int, help="fine-tuning sizes s of the MSE grid")
    p.add_argument("--crossfit-budgets", nargs="+", type=int, help="budgets with cross-fitting")
    p.add_argument(
        "--pool",
        type=int,
        help="unlabelled cap: models predict the first max(budgets) + "
        "POOL rows of their seed's permutation (0: every row)",
    )
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--draws", type=int, help="rectification draws per fine-tuned model")
    p.add_argument("--holdout", type=int, help="pilot hold-out rows per dataset (scaling law)")
    p.add_argument("--max-rows", type=int, help="use a random subset of each file (the 'file')")
    p.add_argument("--min-steps", type=int, help="LoRARegressor min_steps")
    p.add_argument("--max-epochs", type=int, help="LoRARegressor max_epochs")
    p.add_argument("--max-length", type=int, help="LoRARegressor max_length (tokens)")
    p.add_argument("--min-rectify", type=int, help="fewest rectification rows (n - s)")
    p.add_argument("--zeroshot", choices=("smollm2", "embedding"), help="zero-shot scorer")
    p.add_argument("--folds", type=int, help="cross-fitting folds K")
    p.add_argument("--backbone", default="minilm", help="'minilm', 'smollm2' or a model directory")
    p.add_argument("--device", default="auto", help="torch device ('auto': CUDA when present)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="fine-tunes run in parallel worker processes, cores shared between them "
        "(2 on a 2-core CPU; 1 on a GPU)",
    )
    p.add_argument("--cache-dir", type=Path, help="default benchmarks/cache/replicate[_quick]")
    p.add_argument(
        "--out-dir",
        type=Path,
        help="default benchmarks/results (quick: benchmarks/cache/replicate_quick/results)",
    )
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    base = dict(QUICK if args.quick else FULL)
    for key in base:
        value = getattr(args, key, None)
        if value is not None:
            base[key] = value
    # --quick never touches the full run's cache or results: both go to the git-ignored cache
    cache = ROOT / "benchmarks" / "cache" / ("replicate_quick" if args.quick else "replicate")
    results = cache / "results" if args.quick else ROOT / "benchmarks" / "results"
    cfg = Config(
        **base,
        backbone=args.backbone,
        device=args.device,
        jobs=args.jobs,
        quick=args.quick,
        cache_dir=args.cache_dir or cache,
        out_dir=args.out_dir or results,
    )
    check_config(cfg)
    return cfg, args


def check_config(cfg):
    """Refuse settings that cannot give a valid run, naming the argument."""
    if min(cfg.sizes) < 2 or min(cfg.budgets) < 2:
        raise SystemExit("--sizes and --budgets must be integers >= 2")
    if cfg.draws < 1 or cfg.folds < 2 or cfg.holdout < 10:
        raise SystemExit("--draws must be >= 1, --folds >= 2, --holdout >= 10")
    for n in cfg.budgets:
        if not admissible_sizes(cfg, n):
            raise SystemExit(
                f"budget n={n}: no grid size s with n - s >= {cfg.min_rectify}; "
                f"add smaller --sizes"
            )
    if len(set(cfg.sizes)) < 3 or len(set(cfg.mse_sizes)) < 3:
        raise SystemExit(
            "--sizes and --mse-sizes need at least 3 distinct values "
            "(the scaling law has 3 parameters)"
        )
    if not set(cfg.crossfit_budgets) <= set(cfg.budgets):
        raise SystemExit("--crossfit-budgets must be among --budgets")
    if cfg.pool < 0:
        raise SystemExit("--pool must be >= 0")
    if cfg.jobs < 1:
        raise SystemExit("--jobs must be >= 1")


def admissible_sizes(cfg, n, loss="variance"):
    """Grid sizes usable at budget n: s < n with at least min_rectify rectification rows."""
    sizes = cfg.sizes if loss == "variance" else cfg.mse_sizes
    return [s for s in sorted(sizes) if n - s >= cfg.min_rectify]


def grid_sizes(cfg, loss):
    return cfg.sizes if loss == "variance" else cfg.mse_sizes


# ----------------------------------------------------------------------------- data
@dataclasses.dataclass
class Dataset:
    name: str
    texts: list
    y: np.ndarray
    holdout: np.ndarray  # pilot hold-out rows H
    population: np.ndarray  # evaluation population E (sorted)

    @property
    def truth(self):
        return float(self.y.mean())


def load_dataset(name, cfg):
    """Texts and labels of one dataset, its pilot hold-out H and evaluation population E."""
    from skftr.datasets import load_emobank, load_emobank_reader, load_wine_reviews

    if name == "wine":
        texts, y = load_wine_reviews()
    elif name == "emobank":
        texts, y = load_emobank("V")
    else:
        texts, y, _ = load_emobank_reader("V", random_state=0)
    rng = np.random.default_rng(np.random.SeedSequence([DATASETS.index(name), 7]))
    if cfg.max_rows is not None and cfg.max_rows < len(y):
        rows = np.sort(rng.choice(len(y), cfg.max_rows, replace=False))
        texts, y = [texts[i] for i in rows], y[rows]
    order = rng.permutation(len(y))
    if cfg.holdout + max(cfg.budgets) >= len(y):
        raise SystemExit(
            f"{name}: {len(y)} rows cannot hold {cfg.holdout} hold-out rows and "
            f"a budget of {max(cfg.budgets)}"
        )
    return Dataset(
        name,
        texts,
        np.asarray(y, dtype=float),
        np.sort(order[: cfg.holdout]),
        np.sort(order[cfg.holdout :]),
    )


def permutation(ds, seed):
    """perm_g: the order in which seed g hands rows of E to fine-tuning (nested sets)."""
    rng = np.random.default_rng(np.random.SeedSequence([DATASETS.index(ds.name), seed, 11]))
    return rng.permutation(ds.population)


# ----------------------------------------------------------------------------- fine-tunes
@dataclasses.dataclass
class Job:
    """One fine-tune: its training rows and where its predictions are cached."""

    dataset: str
    loss: str
    size: int
    seed: int
    train: np.ndarray
    path: Path
    random_state: int
    predict: np.ndarray  # rows whose prediction is stored (the rest stays NaN)


def model_jobs(cfg, ds):
    """All fine-tunes a run needs for one dataset, deduplicated, ordered by seed.

    Grid models (loss x size x seed), the MSE models on all ``n`` labels
    (``finetune_only``) and the cross-fitting fold models (variance loss).
    """
    root = cfg.cache_dir / ds.name / backbone_tag(cfg.backbone)
    jobs = {}
    end = cfg.prediction_end()
    for seed in cfg.seeds:
        perm = permutation(ds, seed)
        rows = (
            np.arange(len(ds.y))
            if end is None
            else np.sort(np.concatenate([perm[:end], ds.holdout]))
        )

        def add(loss, size, train, path):
            state = int(
                np.random.SeedSequence([DATASETS.index(ds.name), seed, size]).generate_state(1)[0]
            )
            predict = np.setdiff1d(rows, train)  # training-row predictions are never used
            jobs.setdefault(path, Job(ds.name, loss, size, seed, np.sort(train), path, state, predict))

        for loss in LOSSES:
            for size in grid_sizes(cfg, loss):
                add(loss, size, perm[:size], root / loss / f"s{size}_seed{seed}.npz")
        for n in cfg.budgets:
            add("mse", n, perm[:n], root / "mse" / f"s{n}_seed{seed}.npz")
        for n in cfg.crossfit_budgets:
            for k, (train, _) in enumerate(crossfit_folds(perm, n, cfg.folds)):
                if k == cfg.folds - 1 and len(train) in cfg.sizes:
                    continue  # the grid model (variance, (K-1)n/K, seed) has these rows
                add(
                    "variance",
                    len(train),
                    train,
                    root / "crossfit" / f"n{n}_seed{seed}_fold{k}.npz",
                )
    return sorted(jobs.values(), key=lambda j: (j.seed, j.size, j.loss))


def fold_bounds(n, folds):
    """Boundaries of K consecutive folds of perm[:n]."""
    return np.linspace(0, n, folds + 1).round().astype(int)


def crossfit_folds(perm, n, folds):
    """(training rows, fold rows) of each fold model; folds are consecutive blocks of perm[:n]."""
    bounds = fold_bounds(n, folds)
    return [
        (
            np.concatenate([perm[: bounds[k]], perm[bounds[k + 1] : n]]),
            perm[bounds[k] : bounds[k + 1]],
        )
        for k in range(folds)
    ]


def crossfit_path(cfg, ds, n, seed, k):
    """Cache file of fold model k (the grid file when the last fold's model is a grid model)."""
    root = cfg.cache_dir / ds.name / backbone_tag(cfg.backbone)
    size = int(fold_bounds(n, cfg.folds)[-2])  # training rows of the last fold's model
    if k == cfg.folds - 1 and size in cfg.sizes:
        return root / "variance" / f"s{size}_seed{seed}.npz"
    return root / "crossfit" / f"n{n}_seed{seed}_fold{k}.npz"


def backbone_tag(backbone):
    return backbone if backbone in ("minilm", "smollm2") else Path(backbone).name


def make_model(cfg, loss, random_state):
    """The LoRARegressor of every fine-tune: library defaults but for the run's settings."""
    from skftr.lora import LoRARegressor

    kwargs = {}
    if cfg.backbone == "smollm2":
        from skftr.backbones import smollm2_135m

        kwargs["backbone"], kwargs["gguf_file"] = smollm2_135m()
    elif cfg.backbone != "minilm":
        kwargs["backbone"] = cfg.backbone
    return LoRARegressor(
        criterion=loss,
        min_steps=cfg.min_steps,
        max_epochs=cfg.max_epochs,
        max_length=cfg.max_length,
        device=cfg.device,
        random_state=random_state,
        **kwargs,
    )


def finetune_stage(cfg, ds, jobs, progress=True):
    """Stage 1+2: fit every job not in the cache; predict its rows; cache (resumable).

    ``cfg.jobs`` worker processes (joblib) share the CPU cores, one torch thread pool each:
    on 2 cores two single-threaded fine-tunes run about 1.4x (wine) to 1.6x (EmoBank) faster
    than one fine-tune on two threads.
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    todo = [job for job in jobs if not job.path.exists()]
    threads = max(1, (os.cpu_count() or 1) // cfg.jobs) if cfg.jobs > 1 else None
    run_jobs = Parallel(n_jobs=cfg.jobs, return_as="generator_unordered")(
        delayed(fit_and_cache)(cfg, ds.texts, ds.y, job, threads) for job in todo
    )
    for _ in tqdm(
        run_jobs,
        total=len(todo),
        desc=f"fine-tune {ds.name}",
        unit="model",
        disable=not progress or not todo,
    ):
        pass
    return len(todo)


def fit_and_cache(cfg, texts, y, job, threads=None):
    """Fine-tune one job, predict its rows and write the cache file atomically."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    model = make_model(cfg, job.loss, job.random_state)
    model.fit([texts[i] for i in job.train], y[job.train])
    fit_seconds = time.perf_counter() - start
    pred = np.full(len(y), np.nan)
    pred[job.predict] = model.predict([texts[i] for i in job.predict])
    job.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = job.path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        pred=pred,
        train=job.train,
        fit_seconds=fit_seconds,
        steps=model_steps(model),
        predict_seconds=time.perf_counter() - start - fit_seconds,
        threads=threads or 0,
    )
    os.replace(tmp, job.path)


def model_steps(model):
    """Optimizer steps of a fitted LoRARegressor (for the cost model)."""
    try:
        return int(sum(len(epoch["batches"]) for epoch in model.history))
    except (KeyError, TypeError):
        return 0


def unlabeled_rows(ds, pred, exclude):
    """Rows of E with a stored prediction, minus ``exclude`` (training or labelled rows)."""
    rows = ds.population[np.isfinite(pred[ds.population])]
    return np.setdiff1d(rows, exclude)


def load_pred(path):
    """(predictions, training rows) of a cached model, or None when not fitted yet.

    Predictions are NaN on the rows the model was not asked to predict (``--pool``)."""
    if not Path(path).exists():
        return None
    with np.load(path) as data:
        return data["pred"], data["train"]


# ----------------------------------------------------------------------------- zero-shot
def zeroshot_stage(cfg, ds, progress=True):
    """Stage 3: zero-shot predictions of every row (cached per corpus and scorer)."""
    from _zeroshot import zeroshot_scores

    cache = cfg.cache_dir / "zeroshot" / f"{CORPUS[ds.name]}_{cfg.zeroshot}.npz"
    backbone = None if cfg.backbone in ("minilm", "smollm2") else cfg.backbone
    scores, seconds = zeroshot_scores(
        cfg.zeroshot,
        ds.texts,
        TASK[ds.name],
        backbone=backbone,
        device=cfg.device,
        cache_path=cache,
        progress=progress,
    )
    return scores, seconds


# ----------------------------------------------------------------------------- evaluation
def draw_rows(rng, avail, k):
    """k rows drawn without replacement from avail, and the mask of the rest of avail."""
    pick = rng.choice(avail.size, size=k, replace=False)
    rest = np.ones(avail.size, dtype=bool)
    rest[pick] = False
    return avail[pick], avail[rest]


def rectify_draws(ds, pred, train, n, cfg, seed, methods):
    """Rectification draws of one model at budget n: {method: (values, lows, highs)}.

    ``n - s`` rows from E minus the training rows; unlabelled = every other row of E.
    """
    from skftr.rectify import rectified_mean

    avail = unlabeled_rows(ds, pred, train)
    k = n - len(train)
    rng = np.random.default_rng(
        np.random.SeedSequence([DATASETS.index(ds.name), seed, n, len(train), 3])
    )
    out = {method: np.empty((cfg.draws, 3)) for method in methods}
    for d in range(cfg.draws):
        rect, unl = draw_rows(rng, avail, k)
        for method in methods:
            est = rectified_mean(ds.y[rect], pred[rect], pred[unl], method=method, alpha=cfg.alpha)
            out[method][d] = est.value, est.ci[0], est.ci[1]
    return out


def summarise(estimates, ds, n, method, s=None, seeds=(), **extra):
    """One output record from an array of (value, low, high) rows (METHOD.md §6)."""
    est = np.asarray(estimates, dtype=float).reshape(-1, 3)
    truth, var_y, size = ds.truth, float(ds.y.var()), ds.population.size
    err = est[:, 0] - truth
    mse = float(np.mean(err**2))
    n_eff = var_y / mse if mse > 0 else float("inf")
    n_eff_fpc = 1.0 / (mse / var_y + 1.0 / size)
    record = {
        "dataset": ds.name,
        "n": int(n),
        "method": method,
        "s": s,
        "coverage": float(np.mean((est[:, 1] <= truth) & (truth <= est[:, 2]))),
        "mean_width": float(np.mean(est[:, 2] - est[:, 1])),
        "rmse": float(np.sqrt(mse)),
        "bias": float(np.mean(err)),
        "n_eff": float(n_eff),
        "label_savings": float(1 - n / n_eff),
        "n_eff_fpc": float(n_eff_fpc),
        "label_savings_fpc": float(1 - n / n_eff_fpc),
        "n_reps": int(est.shape[0]),
        "seeds": [int(g) for g in seeds],
    }
    record.update(extra)
    return record


def grid_stage(cfg, ds):
    """Rectification draws of every cached grid model at every admissible budget.

    Returns ``{(loss, s, n): {"ppi": (seeds x draws, 3) array, "ppi++": ..., "seeds": [...]}}``
    and the pilot table ``{loss: [(s, seed, Var(Y - f) on H, Var(f) on H), ...]}``.
    """
    root = cfg.cache_dir / ds.name / backbone_tag(cfg.backbone)
    grid, pilots = {}, {loss: [] for loss in LOSSES}
    for loss in LOSSES:
        methods = ("ppi", "ppi++") if loss == "variance" else ("ppi",)
        for s in grid_sizes(cfg, loss):
            for seed in cfg.seeds:
                cached = load_pred(root / loss / f"s{s}_seed{seed}.npz")
                if cached is None:
                    continue
                pred, train = cached
                hold = ds.holdout
                pilots[loss].append(
                    (
                        s,
                        seed,
                        float(np.var(ds.y[hold] - pred[hold], ddof=1)),
                        float(np.var(pred[hold], ddof=1)),
                    )
                )
                for n in cfg.budgets:
                    if s not in admissible_sizes(cfg, n, loss):
                        continue
                    draws = rectify_draws(ds, pred, train, n, cfg, seed, methods)
                    cell = grid.setdefault((loss, s, n), {m: [] for m in methods} | {"seeds": []})
                    for m in methods:
                        cell[m].append(draws[m])
                    cell["seeds"].append(seed)
    for cell in grid.values():
        for key in cell:
            if key != "seeds":
                cell[key] = np.concatenate(cell[key])
    return grid, pilots


def fit_law(pilots):
    """ScalingLaw on (s, Var(Y - f_s)) pilot pairs; flat fallback when not identified."""
    from skftr.scaling import ScalingLaw

    sizes = [p[0] for p in pilots]
    variances = [p[2] for p in pilots]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ScalingLaw(n_bootstrap=0).fit(sizes, variances)


def choose_grid_size(law, cfg, n, m, var_f, n_pilot=0, choices=None):
    """(grid s with the smallest projected V(s), integer s* of optimal_allocation)."""
    from skftr.allocation import optimal_allocation

    try:
        s_int = optimal_allocation(
            n, law, n_unlabeled=m, var_f=var_f, min_rectify=cfg.min_rectify, n_pilot=n_pilot
        ).n_finetune
    except ValueError:  # the pilots leave no admissible split
        s_int = None
    choices = [s for s in (choices or admissible_sizes(cfg, n)) if s >= n_pilot] or [
        max(admissible_sizes(cfg, n))
    ]
    projected = {s: float(law.predict(s)) / (n - s) + var_f / m for s in choices}
    return min(projected, key=projected.get), s_int


def classical_and_zeroshot(cfg, ds, zeroshot):
    """classical, rectify_only, rectify_only_ppipp on common draws of n rows of E."""
    from skftr.rectify import rectified_mean

    records = []
    reps = cfg.draws * len(cfg.seeds)
    end = cfg.prediction_end()
    for n in cfg.budgets:
        rng = np.random.default_rng(np.random.SeedSequence([DATASETS.index(ds.name), n, 5]))
        out = {m: np.empty((reps, 3)) for m in ("classical", "ppi", "ppi++")}
        for r in range(reps):
            rect, unl = draw_rows(rng, ds.population, n)
            if (
                end is not None and unl.size > end - n
            ):  # the same unlabelled cap as the fine-tuned models
                unl = rng.choice(unl, end - n, replace=False)
            for m in out:
                est = rectified_mean(
                    ds.y[rect], zeroshot[rect], zeroshot[unl], method=m, alpha=cfg.alpha
                )
                out[m][r] = est.value, est.ci[0], est.ci[1]
        records.append(summarise(out["classical"], ds, n, "classical", 0, cfg.seeds))
        records.append(
            summarise(out["ppi"], ds, n, "rectify_only", 0, cfg.seeds, zeroshot=cfg.zeroshot)
        )
        records.append(
            summarise(
                out["ppi++"], ds, n, "rectify_only_ppipp", 0, cfg.seeds, zeroshot=cfg.zeroshot
            )
        )
    return records


def finetune_only(cfg, ds):
    """Mean of the MSE model fitted on all n labels over the rest of E; naive interval."""
    from scipy.stats import norm

    root = cfg.cache_dir / ds.name / backbone_tag(cfg.backbone)
    z = norm.ppf(1 - cfg.alpha / 2)
    records = []
    for n in cfg.budgets:
        rows, seeds = [], []
        for seed in cfg.seeds:
            cached = load_pred(root / "mse" / f"s{n}_seed{seed}.npz")
            if cached is None:
                continue
            pred, train = cached
            f = pred[unlabeled_rows(ds, pred, train)]
            half = z * f.std() / np.sqrt(f.size)
            rows.append((f.mean(), f.mean() - half, f.mean() + half))
            seeds.append(seed)
        if rows:
            records.append(summarise(rows, ds, n, "finetune_only", n, seeds))
    return records


def crossfit(cfg, ds):
    """Cross-PPI with K fold models (variance loss), one estimate per (n, seed)."""
    from skftr.rectify import crossfit_mean

    records = []
    for n in cfg.crossfit_budgets:
        rows, seeds = [], []
        for seed in cfg.seeds:
            perm = permutation(ds, seed)
            parts = crossfit_folds(perm, n, cfg.folds)
            cached = [load_pred(crossfit_path(cfg, ds, n, seed, k)) for k in range(cfg.folds)]
            if any(c is None for c in cached):
                continue
            labelled = np.concatenate([fold for _, fold in parts])
            folds = np.concatenate([np.full(len(fold), k) for k, (_, fold) in enumerate(parts)])
            yhat = np.concatenate([c[0][fold] for c, (_, fold) in zip(cached, parts)])
            unl = unlabeled_rows(ds, np.sum([c[0] for c in cached], axis=0), labelled)
            est = crossfit_mean(
                ds.y[labelled],
                yhat,
                folds,
                np.stack([c[0][unl] for c in cached]),
                method="ppi",
                alpha=cfg.alpha,
            )
            rows.append((est.value, est.ci[0], est.ci[1]))
            seeds.append(seed)
        if rows:
            records.append(summarise(rows, ds, n, "ftr_var_crossfit", n, seeds, folds=cfg.folds))
    return records


def faithful(cfg, ds, grid):
    """Budget-faithful s* per (n, seed) from pilots inside the budget; see the module docstring."""
    root = cfg.cache_dir / ds.name / backbone_tag(cfg.backbone)
    records = []
    for n in cfg.budgets:
        pilot_sizes = [s for s in sorted(cfg.sizes) if s <= n // 5] or [min(cfg.sizes)]
        s_p, h = max(pilot_sizes), max(n // 10, 2)
        rows, seeds, chosen = [], [], []
        for seed in cfg.seeds:
            perm = permutation(ds, seed)
            hold = perm[s_p : s_p + h]
            cached = [load_pred(root / "variance" / f"s{s}_seed{seed}.npz") for s in pilot_sizes]
            if any(c is None for c in cached):
                continue
            pilots = [
                (
                    s,
                    seed,
                    float(np.var(ds.y[hold] - c[0][hold], ddof=1)),
                    float(np.var(c[0][hold], ddof=1)),
                )
                for s, c in zip(pilot_sizes, cached)
            ]
            law = fit_law(pilots)
            m = unlabeled_rows(ds, cached[-1][0], perm[:n]).size
            s_f, _ = choose_grid_size(law, cfg, n, m, pilots[-1][3], n_pilot=s_p + h)
            cell = grid.get(("variance", s_f, n))
            if cell is None or seed not in cell["seeds"]:
                continue
            i = cell["seeds"].index(seed)
            rows.append(cell["ppi"][i * cfg.draws : (i + 1) * cfg.draws])
            seeds.append(seed)
            chosen.append(s_f)
        if rows:
            s_mode = max(set(chosen), key=chosen.count)
            records.append(
                summarise(
                    np.concatenate(rows),
                    ds,
                    n,
                    "ftr_var_faithful",
                    s_mode,
                    seeds,
                    s_by_seed=chosen,
                    n_pilot=s_p + h,
                    pilot_sizes=pilot_sizes,
                )
            )
    return records


def evaluate(cfg, ds, zeroshot):
    """Stage 4: every method's record for one dataset, plus the V(s) grid and the laws.

    Uses whatever is cached (seeds without a model are left out and listed in ``seeds``).
    """
    grid, pilots = grid_stage(cfg, ds)
    records = classical_and_zeroshot(cfg, ds, zeroshot)
    records += finetune_only(cfg, ds)
    laws, grid_records = {}, []
    for (loss, s, n), cell in sorted(grid.items()):
        grid_records.append(summarise(cell["ppi"], ds, n, f"grid_{loss}", s, cell["seeds"]))
    m_by_n = {
        n: min(cfg.prediction_end() or ds.population.size, ds.population.size) - n
        for n in cfg.budgets
    }
    for loss in LOSSES:
        if len({p[0] for p in pilots[loss]}) < 3:
            continue
        law = fit_law(pilots[loss])
        top = max(p[0] for p in pilots[loss])
        var_f = float(np.mean([p[3] for p in pilots[loss] if p[0] == top]))
        laws[loss] = {
            "a": law.a_,
            "alpha": law.alpha_,
            "b": law.b_,
            "r2": law.r2_,
            "identified": bool(law.identified_),
            "var_f": var_f,
            "pilots": [list(p) for p in pilots[loss]],
            "s_star": {},
        }
        method = "ftr_var" if loss == "variance" else "ftr_mse"
        for n in cfg.budgets:
            s_grid, s_int = choose_grid_size(
                law, cfg, n, m_by_n[n], var_f, choices=admissible_sizes(cfg, n, loss)
            )
            laws[loss]["s_star"][str(n)] = {"integer": s_int, "grid": s_grid}
            cell = grid.get((loss, s_grid, n))
            if cell is None:
                continue
            records.append(
                summarise(cell["ppi"], ds, n, method, s_grid, cell["seeds"], s_star_law=s_int)
            )
            if loss == "variance":
                records.append(
                    summarise(
                        cell["ppi++"],
                        ds,
                        n,
                        "ftr_var_ppipp",
                        s_grid,
                        cell["seeds"],
                        s_star_law=s_int,
                    )
                )
    for n in cfg.budgets:
        cells = {s: c for (loss, s, nn), c in grid.items() if loss == "variance" and nn == n}
        if cells:
            best = min(cells, key=lambda s: np.mean((cells[s]["ppi"][:, 0] - ds.truth) ** 2))
            records.append(
                summarise(cells[best]["ppi"], ds, n, "ftr_var_oracle", best, cells[best]["seeds"])
            )
    records += crossfit(cfg, ds)
    records += faithful(cfg, ds, grid)
    order = {m: i for i, m in enumerate(METHODS)}
    records.sort(key=lambda r: (r["n"], order[r["method"]]))
    return records, grid_records, laws


# ----------------------------------------------------------------------------- plan
def measured_costs(cfg):
    """Per-step and per-text seconds from the fine-tunes already in the cache (else COST)."""
    base = COST_1_THREAD if cfg.jobs > 1 else COST
    costs = {corpus: dict(values) for corpus, values in base.items()}
    for corpus in costs:
        steps, fit, texts, pred = 0, 0.0, 0, 0.0
        for name in [d for d in DATASETS if CORPUS[d] == corpus]:
            for path in (cfg.cache_dir / name / backbone_tag(cfg.backbone)).glob("*/*.npz"):
                with np.load(path) as data:
                    if "steps" in data:
                        steps += int(data["steps"])
                        fit += float(data["fit_seconds"])
                        texts += int(np.isfinite(data["pred"]).sum())
                        pred += float(data["predict_seconds"])
        if steps and texts:
            costs[corpus] = {"step": fit / steps, "text": pred / texts, "measured": True}
    return costs


def lora_steps(size, min_steps, batch_size=16, max_epochs=4):
    """Optimizer steps of LoRARegressor.fit: max(max_epochs, ceil(min_steps / batches)) epochs."""
    batches = int(np.ceil(size / batch_size))
    return max(max_epochs, int(np.ceil(min_steps / batches))) * batches


def plan(cfg, datasets):
    """Fine-tunes still to run and their estimated CPU time; printed at start (--plan)."""
    costs = measured_costs(cfg)
    lines, total = [], 0.0
    for ds in datasets:
        jobs = model_jobs(cfg, ds)
        todo = [j for j in jobs if not j.path.exists()]
        cost = costs[CORPUS[ds.name]]
        steps = sum(lora_steps(j.size, cfg.min_steps, max_epochs=cfg.max_epochs) for j in todo)
        texts = sum(j.predict.size for j in todo)
        seconds = (steps * cost["step"] + texts * cost["text"]) / cfg.jobs
        zs_cache = cfg.cache_dir / "zeroshot" / f"{CORPUS[ds.name]}_{cfg.zeroshot}.npz"
        zs = (
            0.0
            if zs_cache.exists() or (ds.name == "emobank_reader" and "emobank" in cfg.datasets)
            else len(ds.y) * ZEROSHOT_COST[cfg.zeroshot][CORPUS[ds.name]]
        )
        total += seconds + zs
        lines.append(
            f"  {ds.name:15s} rows {len(ds.y):6d} (E {ds.population.size}, H {ds.holdout.size}): "
            f"{len(jobs)} fine-tunes ({len(todo)} to run, {steps} steps, "
            f"{texts} predicted texts) ~ {seconds / 3600:.2f} h; "
            f"zero-shot {cfg.zeroshot} ~ {zs / 3600:.2f} h"
        )
    source = (
        "measured in the cache"
        if any(c.get("measured") for c in costs.values())
        else "benchmarks/replicate.py COST (2 idle CPU cores)"
    )
    header = (
        f"plan: datasets {cfg.datasets}, budgets {cfg.budgets}, sizes {cfg.sizes} (variance), "
        f"{cfg.mse_sizes} (MSE), seeds {cfg.seeds}, {cfg.draws} draws per model, K = {cfg.folds} "
        f"at n in {cfg.crossfit_budgets}, unlabelled cap "
        f"{'none' if not cfg.pool else f'{cfg.prediction_end()} - n rows'}, "
        f"backbone {cfg.backbone}, "
        f"min_steps {cfg.min_steps}, max_length {cfg.max_length}, zero-shot {cfg.zeroshot}"
    )
    text = "\n".join(
        [
            header,
            *lines,
            f"  estimated total {total / 3600:.2f} h on CPU (costs: {source}); "
            "evaluation adds minutes",
        ]
    )
    return text, total


# ----------------------------------------------------------------------------- outputs
# Settings that change no number of a dataset's results: runs that differ only in these
# combine their datasets in one set of outputs.
RUN_ONLY = ("datasets", "jobs", "device", "cache_dir", "out_dir")


# What each run records in metadata.runs (older outputs held one run's at the top).
RUN_FIELDS = (
    "command",
    "wall_seconds",
    "estimated_seconds_at_start",
    "fine_tunes_run",
    "device",
    "finished",
)


def config_dict(cfg):
    """Every setting of the run, JSON-ready."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()}


def same_settings(a, b):
    """Whether two ``config`` dicts give the same results for a dataset (``RUN_ONLY`` aside)."""
    strip = lambda c: {k: v for k, v in c.items() if k not in RUN_ONLY}
    return strip(a) == strip(b)


def previous_outputs(cfg):
    """The outputs this run adds to: ``replication.json`` in ``--out-dir`` less the datasets
    this run evaluates, so that a run split by ``--datasets`` (across sessions, say) ends
    with one combined set of outputs. Outputs made with other settings are replaced whole.
    """
    path = cfg.out_dir / "replication.json"
    empty = {
        "metadata": {
            "config": config_dict(cfg),
            "runs": [],
            "datasets_done": [],
            "truth": {},
            "compute_seconds": {},
            "zeroshot_seconds": {},
        },
        "records": [],
        "grid": [],
        "scaling_laws": {},
    }
    if not path.exists():
        return empty
    payload = json.loads(path.read_text())
    meta = payload["metadata"]
    if not same_settings(meta["config"], config_dict(cfg)):
        print(f"{path} was made with other settings: its results are replaced", flush=True)
        return empty
    keep = [d for d in meta["datasets_done"] if d not in cfg.datasets]
    # outputs written before runs were recorded one by one hold a single run's fields
    runs = meta.get("runs") or [
        {key: meta[key] for key in RUN_FIELDS if key in meta} | {"datasets": meta["datasets_done"]}
    ]
    for run in runs:
        run["datasets"] = [d for d in run["datasets"] if d in keep]
    meta["runs"] = [run for run in runs if run["datasets"]]
    meta["config"] = config_dict(cfg)
    meta["datasets_done"] = keep
    for key in ("truth", "compute_seconds", "zeroshot_seconds"):
        meta[key] = {d: v for d, v in meta[key].items() if d in keep}
    for key in RUN_FIELDS:
        meta.pop(key, None)
    payload["records"] = [r for r in payload["records"] if r["dataset"] in keep]
    payload["grid"] = [g for g in payload["grid"] if g["dataset"] in keep]
    payload["scaling_laws"] = {d: v for d, v in payload["scaling_laws"].items() if d in keep}
    if keep:
        print(f"{path}: keeping the results of {', '.join(keep)} (same settings)", flush=True)
    return payload


def add_dataset(payload, ds, records, grid_records, laws, compute_seconds, zeroshot_seconds):
    """Put one evaluated dataset into the outputs, datasets kept in ``DATASETS`` order."""
    meta = payload["metadata"]
    done = set(meta["datasets_done"]) | {ds.name}
    meta["datasets_done"] = [d for d in DATASETS if d in done]
    meta["truth"][ds.name] = {
        "file_mean": ds.truth,
        "population_mean": float(ds.y[ds.population].mean()),
        "var_y": float(ds.y.var()),
        "rows": len(ds.y),
        "population_rows": int(ds.population.size),
    }
    meta["compute_seconds"][ds.name] = compute_seconds
    meta["zeroshot_seconds"][ds.name] = zeroshot_seconds
    order = lambda r: DATASETS.index(r["dataset"])
    payload["records"] = sorted(payload["records"] + records, key=order)
    payload["grid"] = sorted(payload["grid"] + grid_records, key=order)
    payload["scaling_laws"][ds.name] = laws


def write_outputs(cfg, payload):
    """``replication.json`` and ``replication.md`` for every dataset evaluated so far."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    shown = dataclasses.replace(cfg, datasets=payload["metadata"]["datasets_done"])
    (cfg.out_dir / "replication.json").write_text(json.dumps(payload, indent=1, default=float))
    (cfg.out_dir / "replication.md").write_text(
        markdown(shown, payload["records"], payload["metadata"], payload["scaling_laws"])
    )


def markdown(cfg, records, meta, laws):
    """The Markdown section for RESULTS.md: runs, settings, one table per dataset, the checks."""
    fmt = lambda v, p=3: "—" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))
    runs = [
        f"- `{run['command']}`: {', '.join(run['datasets'])}; wall time "
        f"{run['wall_seconds'] / 60:.1f} min, {run['fine_tunes_run']} fine-tunes run, "
        f"on {run['device']}"
        for run in meta["runs"]
    ]
    compute = ", ".join(f"{d} {s / 60:.1f} min" for d, s in meta["compute_seconds"].items())
    out = [
        "## Replication of the FTR comparison (issue 6)",
        "",
        "Runs (each dataset's results come from the last run that evaluated it; fine-tuned "
        "models are cached, so a run that found models in the cache did not fit them again):",
        "",
        *runs,
        "",
        f"Fine-tuning and prediction time recorded for the models used: {compute}.",
        f"Settings: backbone {cfg.backbone}; zero-shot {cfg.zeroshot}; "
        f"seeds {cfg.seeds}; {cfg.draws} rectification draws per model; K = {cfg.folds}; "
        f"pilot hold-out {cfg.holdout} rows; LoRA min_steps {cfg.min_steps}, "
        f"max_epochs {cfg.max_epochs}, max_length {cfg.max_length}; unlabelled cap "
        f"{'none' if not cfg.pool else f'{cfg.prediction_end()} - n rows'}.",
        "",
        f"Coverage of the {100 * (1 - cfg.alpha):.0f}% interval, mean width, RMSE and bias "
        "around the mean of the whole file; "
        "n_eff = Var(Y)/MSE; savings = 1 - n/n_eff; savings (FPC) against the classical mean drawn "
        "without replacement from the same file (see benchmarks/README.md).",
        "",
    ]
    for name in cfg.datasets:
        rows = [r for r in records if r["dataset"] == name]
        if not rows:
            continue
        out += [
            f"### {name}",
            "",
            "| n | method | s | coverage | mean width | RMSE | bias | n_eff | "
            "savings | savings (FPC) | reps |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            out.append(
                f"| {r['n']} | {r['method']} | {fmt(r['s'])} | {r['coverage']:.3f} | "
                f"{r['mean_width']:.4g} | {r['rmse']:.4g} | {r['bias']:+.4f} | {r['n_eff']:.0f} | "
                f"{100 * r['label_savings']:.0f}% | {100 * r['label_savings_fpc']:.0f}% | "
                f"{r['n_reps']} |"
            )
        for loss, law in laws.get(name, {}).items():
            out.append(
                f"\nScaling law ({loss} loss, pilots on the hold-out): sigma^2(s) = "
                f"{law['a']:.4g} s^-{law['alpha']:.3g} + {law['b']:.4g} (R^2 {law['r2']:.2f}); "
                f"s* by budget: "
                + ", ".join(
                    f"n={n}: {v['integer']} (grid {v['grid']})" for n, v in law["s_star"].items()
                )
            )
        out.append("")
    out += ["### Against the issue's reference points", ""] + checks(cfg, records)
    return "\n".join(out) + "\n"


def checks(cfg, records):
    """Measured statements about the issue's reference points (no threshold is tuned)."""
    get = lambda name, n, method: next(
        (r for r in records if (r["dataset"], r["n"], r["method"]) == (name, n, method)), None
    )
    lines = []
    for name in cfg.datasets:
        for n in cfg.budgets:
            var = get(name, n, "ftr_var")
            if var is None:
                continue
            parts = [
                f"coverage {var['coverage']:.3f} ({'>=' if var['coverage'] >= 0.93 else '<'} 0.93)"
            ]
            for other in ("ftr_mse", "finetune_only", "rectify_only"):
                r = get(name, n, other)
                if r is not None:
                    parts.append(f"width {var['mean_width']:.3g} vs {other} {r['mean_width']:.3g}")
            oracle = get(name, n, "ftr_var_oracle")
            if oracle is not None:
                ratio = (var["rmse"] / oracle["rmse"]) ** 2
                parts.append(
                    f"MSE at s*={var['s']} / oracle s={oracle['s']}: {ratio:.2f} "
                    f"({'within' if ratio <= 1.1 else 'beyond'} 10%)"
                )
            parts.append(
                f"savings {100 * var['label_savings']:.0f}% "
                f"(FPC {100 * var['label_savings_fpc']:.0f}%)"
            )
            cross = get(name, n, "ftr_var_crossfit")
            if cross is not None:
                low, high = savings_range(cross)
                parts.append(
                    f"cross-fit savings {100 * cross['label_savings']:.0f}% (95% range "
                    f"{100 * low:.0f}% to {100 * high:.0f}% from {cross['n_reps']} runs; "
                    f"FPC {100 * cross['label_savings_fpc']:.0f}%)"
                )
            if name == "wine":
                parts.append(
                    f"paper {100 * PAPER_SAVINGS_WINE[0]:.0f}-{100 * PAPER_SAVINGS_WINE[1]:.0f}%"
                )
            lines.append(f"- {name}, n={n}, ftr_var: " + "; ".join(parts))
    return lines


def savings_range(record, level=0.95):
    """Range of ``label_savings`` from a record of independent runs (one per seed).

    With unbiased, normal errors, ``n_reps * MSE_hat / MSE ~ chi^2(n_reps)``, so the true MSE
    lies in ``[k MSE_hat / chi^2_{k, 1-a/2}, k MSE_hat / chi^2_{k, a/2}]``, and the savings
    ``1 - n MSE / Var(Y)`` in the matching range. Not for records whose repetitions share a
    fine-tuned model (rectification draws), which are not independent.
    """
    from scipy.stats import chi2

    k, mse = record["n_reps"], record["rmse"] ** 2
    var_y = record["n_eff"] * mse
    mses = [k * mse / chi2.ppf(q, k) for q in ((1 - level) / 2, (1 + level) / 2)]
    return tuple(1 - record["n"] * m / var_y for m in mses)


def plots(cfg, records, grid_records, laws, population, out_dir):
    """PNG: scaling law per dataset; V(s) with s* and measured MSE; coverage and width per method.

    ``population``: {dataset: rows of E}, for the ``Var(f)/m`` term of the projected V(s).
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for name in cfg.datasets:
        if name not in laws or not laws[name]:
            continue
        fig, axes = plt.subplots(
            1, 1 + len(cfg.budgets), figsize=(4.2 * (1 + len(cfg.budgets)), 3.6)
        )
        ax = axes[0]
        grid_s = np.geomspace(min(cfg.sizes) / 1.3, max(cfg.sizes) * 1.3, 100)
        for c, (loss, law) in enumerate(laws[name].items()):
            pts = np.array([p[:3] for p in law["pilots"]])
            ax.scatter(pts[:, 0], pts[:, 2], s=12, color=f"C{c}", alpha=0.6)
            ax.plot(
                grid_s,
                law["a"] * grid_s ** -law["alpha"] + law["b"],
                color=f"C{c}",
                label=f"{loss}: {law['a']:.3g} s^-{law['alpha']:.2f} + {law['b']:.3g}",
            )
        ax.set(
            xscale="log",
            xlabel="fine-tuning labels s",
            ylabel="Var(Y - f_s) on hold-out",
            title=f"{name}: scaling law",
        )
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=7)
        law = laws[name].get("variance")
        for ax, n in zip(axes[1:], cfg.budgets):
            cells = [g for g in grid_records if g["dataset"] == name and g["n"] == n]
            for c, loss in enumerate(LOSSES):
                pts = sorted(
                    (g["s"], g["rmse"] ** 2) for g in cells if g["method"] == f"grid_{loss}"
                )
                if pts:
                    ax.plot(*zip(*pts), "o", color=f"C{c}", label=f"measured MSE ({loss})")
            if law is not None:
                s = np.arange(min(cfg.sizes), n - cfg.min_rectify + 1)
                m = min(cfg.prediction_end() or population[name], population[name]) - n
                v = (law["a"] * s ** -law["alpha"] + law["b"]) / (n - s) + law["var_f"] / m
                ax.plot(s, v, color="C0", label="projected V(s) (variance)")
                star = law["s_star"].get(str(n))
                if star:
                    ax.axvline(
                        star["grid"], color="C3", linestyle="--", label=f"s* grid = {star['grid']}"
                    )
            oracle = next(
                (
                    r
                    for r in records
                    if (r["dataset"], r["n"], r["method"]) == (name, n, "ftr_var_oracle")
                ),
                None,
            )
            if oracle:
                ax.axvline(oracle["s"], color="k", linestyle=":", label=f"oracle s = {oracle['s']}")
            ax.set(xscale="log", yscale="log", xlabel="s", title=f"{name}, n = {n}: V(s)")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"replication_law_{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    fig, axes = plt.subplots(
        3, len(cfg.datasets), figsize=(5.5 * len(cfg.datasets), 10.5), squeeze=False
    )
    for j, name in enumerate(cfg.datasets):
        for b, n in enumerate(cfg.budgets):
            rows = {r["method"]: r for r in records if r["dataset"] == name and r["n"] == n}
            x = np.arange(len(methods)) + (b - (len(cfg.budgets) - 1) / 2) * 0.8 / len(cfg.budgets)
            axes[0, j].bar(
                x,
                [rows[m]["coverage"] if m in rows else np.nan for m in methods],
                width=0.8 / len(cfg.budgets),
                label=f"n = {n}",
            )
            axes[1, j].bar(
                x,
                [rows[m]["mean_width"] if m in rows else np.nan for m in methods],
                width=0.8 / len(cfg.budgets),
                label=f"n = {n}",
            )
            axes[2, j].bar(
                x,
                [100 * rows[m]["label_savings_fpc"] if m in rows else np.nan for m in methods],
                width=0.8 / len(cfg.budgets),
                label=f"n = {n}",
            )
        axes[0, j].axhline(1 - cfg.alpha, color="k", linestyle="--", linewidth=1)
        axes[0, j].set(title=f"{name}: coverage", ylim=(0, 1.02))
        axes[1, j].set(title=f"{name}: mean interval width", yscale="log")
        axes[2, j].axhline(0, color="k", linewidth=1)
        axes[2, j].set(
            title=f"{name}: label savings (FPC)", ylim=(-100, 100), ylabel="% (bars cut at -100)"
        )
        for ax in axes[:, j]:
            ax.set_xticks(np.arange(len(methods)), methods, rotation=60, ha="right", fontsize=7)
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "replication_coverage_width.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return paths + [path]


# ----------------------------------------------------------------------------- main
def device_name(device):
    import platform

    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return (
        f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )


def check_cache_config(cfg, claim=True):
    """The cache dir is keyed by the fine-tuning settings: refuse to mix two settings.

    ``claim``: record this run's settings in a new cache (not for ``--plan``)."""
    path = cfg.cache_dir / "config.json"
    key = cfg.fit_key()
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != key:
            raise SystemExit(
                f"cache {cfg.cache_dir} holds fine-tunes made with {stored}, "
                f"this run uses {key}: pass another --cache-dir"
            )
    elif claim:
        cfg.cache_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(key))


def main(argv=None):
    """Run the stages (or only print the plan); returns the records (None for --plan)."""
    cfg, args = parse_args(argv)
    import torch

    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run(cfg, args, argv)
    finally:
        torch.set_num_threads(threads)


def run(cfg, args, argv):
    """Stages 1-4 dataset by dataset; the outputs are rewritten after each dataset."""
    start = time.perf_counter()
    datasets = [load_dataset(name, cfg) for name in cfg.datasets]
    check_cache_config(cfg, claim=not args.plan)
    text, estimate = plan(cfg, datasets)
    print(text, flush=True)
    if args.plan:
        return None
    payload = previous_outputs(cfg)
    this_run = {
        "command": "python benchmarks/replicate.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "datasets": [],
        "estimated_seconds_at_start": estimate,
        "device": device_name(cfg.device),
    }
    payload["metadata"]["runs"].append(this_run)
    records, fitted = [], 0
    for ds in datasets:
        jobs = model_jobs(cfg, ds)
        if not args.eval_only:
            fitted += finetune_stage(cfg, ds, jobs)
        zeroshot, zs_seconds = zeroshot_stage(cfg, ds)
        recs, grid_recs, laws = evaluate(cfg, ds, zeroshot)
        records += recs
        add_dataset(payload, ds, recs, grid_recs, laws, cached_seconds(jobs), zs_seconds)
        this_run.update(
            datasets=this_run["datasets"] + [ds.name],
            wall_seconds=time.perf_counter() - start,
            fine_tunes_run=fitted,
            finished=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        )
        write_outputs(cfg, payload)
    meta = payload["metadata"]
    if not args.no_plots:
        plots(
            dataclasses.replace(cfg, datasets=meta["datasets_done"]),
            payload["records"],
            payload["grid"],
            payload["scaling_laws"],
            {d: t["population_rows"] for d, t in meta["truth"].items()},
            cfg.out_dir,
        )
    from replication_adjusted import main as adjust_for_pool_luck

    adjust_for_pool_luck(
        ["--results", str(cfg.out_dir / "replication.json"), "--out-dir", str(cfg.out_dir)]
        + (["--no-plots"] if args.no_plots else [])
    )
    print(
        f"wrote {cfg.out_dir / 'replication.json'}, replication.md and replication_adjusted.*; "
        f"wall time {this_run['wall_seconds'] / 60:.1f} min ({fitted} fine-tunes run; cached models' "
        f"compute {sum(meta['compute_seconds'][d.name] for d in datasets) / 60:.1f} min)",
        flush=True,
    )
    print((cfg.out_dir / "replication.md").read_text(), flush=True)
    return records


def cached_seconds(jobs):
    """Sum of the recorded fit + predict seconds of the cached models among ``jobs``."""
    total = 0.0
    for job in jobs:
        if job.path.exists():
            with np.load(job.path) as data:
                total += float(data["fit_seconds"]) + float(data["predict_seconds"])
    return total


if __name__ == "__main__":
    main()
