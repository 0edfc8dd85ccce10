"""The replication of the method's comparison (issue 14), on skftr's public API only.

For each corpus, budget ``n``, method and draw: a fresh random set of ``n`` labeled rows
(seeded by (corpus, n, draw), so every method sees the same draws), every other row
unlabeled, the truth the mean label of the whole file (docs/method.md §6). Each method is
a configuration of ``skftr.FineTuneRectifyEstimator`` (:mod:`.methods`); every result is
cached with ``joblib.Memory``, so the grid can be completed over several runs; the report
(:mod:`.report`) gives per cell the label savings, coverage, width and fit time.

    python -m benchmarks.replication --help
"""
