"""The README's code that claims to run as shown does run as shown."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_grid_search_example_runs_as_shown(capsys):
    try:
        from skftr.datasets import data_dir

        data_dir()
    except FileNotFoundError:
        pytest.skip("EmoBank data not available")
    block = next(b for b in _blocks() if "GridSearchCV" in b and "load_emobank" in b)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"\{'n_finetune': (50|100|200)\} RectifiedEstimate\(ppi\+\+", out)
