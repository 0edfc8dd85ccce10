"""Coverage of the default path with a fine-tune on the frozen trunk (docs/method.md §3.4):
a tiny random backbone, fresh texts and labels in every repetition, 2,000 repetitions.

Every decision of the fine-tune (the stop, whether to keep the warm start) uses only the
rows its fold trains on, so cross-fitted rectification stays valid whatever the fine-tune
learns. 200 labels: at 40 labels the Wald intervals under-cover, the classical one of the same
labels too (0.923 and 0.944 over 2,000 repetitions with seeds 1 and 0, the fine-tune path
0.9145 and 0.937; docs/method.md §6). Slow (10-15 minutes on one core): ``python -m pytest
-m slow -p no:randomly tests/test_finetune_coverage.py --seed S``.
"""
import numpy as np
import pytest

from conftest import TINY_WORDS

REPS, N, M = 2_000, 200, 200
COVERAGE = (0.935, 0.965)  # 0.95 -/+ 3 standard errors of a share over 2,000 repetitions
SCORE = {"good": 1.0, "great": 2.0, "excellent": 3.0, "bad": -1.0, "awful": -2.0}
TRUTH = 6.5 * sum(SCORE.values()) / len(TINY_WORDS)  # E[words] * mean score of a word


def draw(rng, size):
    """Texts of 2-11 words drawn uniformly; y = the words' scores + N(0, 0.5^2), so that
    E[y] = TRUTH exactly."""
    words = [rng.choice(TINY_WORDS, rng.integers(2, 12)) for _ in range(size)]
    y = np.array([sum(SCORE.get(w, 0.0) for w in t) for t in words])
    return [" ".join(t) for t in words], y + rng.normal(0, 0.5, size)


@pytest.mark.slow
def test_the_fine_tuned_default_path_covers(tiny_bert_dir, seed):
    from skftr import FineTuneRectifyEstimator, TextRidge, TopLayersRegressor

    rng = np.random.default_rng([seed, 21])
    covered, classical, kept = np.zeros(REPS, bool), np.zeros(REPS, bool), []
    for r in range(REPS):
        texts, y = draw(rng, N + M)
        y[N:] = np.nan
        model = TopLayersRegressor(tiny_bert_dir, max_epochs=2, batch_size=8, lr=1e-2,
                                   precision="fp32", n_threads=1)
        est = FineTuneRectifyEstimator(model, predictors=[TextRidge("length")], crossfit=2,
                                       random_state=int(rng.integers(2**31))).fit(texts, y)
        low, high = est.estimate_.ci
        covered[r] = low <= TRUTH <= high
        low, high = est.estimate_.classical_ci
        classical[r] = low <= TRUTH <= high
        kept += est.estimate_.fit_info["fine_tunes"][0]["fine_tune_kept"]
    print(f"coverage {covered.mean():.4f} (classical on the same labels {classical.mean():.4f}); "
          f"fine-tune kept in {np.mean(kept):.2f} of the folds")
    assert COVERAGE[0] <= covered.mean() <= COVERAGE[1], covered.mean()
    # paired with the classical interval of the same labels: at most 3 standard errors below
    assert covered.mean() >= classical.mean() - 0.015, (covered.mean(), classical.mean())
    assert 0 < np.mean(kept) < 1  # both branches of the warm-start check were exercised
