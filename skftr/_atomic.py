"""Files: atomic writes (an output appears whole under its name, or not at all) and
content hashes.

Everything the package writes (saved models, reports, prediction chunks) goes through
:func:`atomic_path`: the caller writes a temporary sibling, which is renamed into place
only when the block ends without an error.
"""
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "file_sha256"]


@contextmanager
def atomic_path(path, *, directory=False):
    """Yield a temporary path beside ``path``; move it to ``path`` on success.

    Parameters
    ----------
    path : str or Path
        The final file (or directory, with ``directory=True``). An existing one is
        replaced only once the new one is complete.
    directory : bool, default=False
        Yield an empty temporary directory instead of a file name.

    Yields
    ------
    Path
        Where to write. On an exception it is removed and ``path`` is left untouched.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; give it the usual mode
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=parent)
        os.close(fd)
        tmp = Path(name)
        tmp.chmod(0o666 & ~_umask())
    try:
        yield tmp
        if directory and path.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path):
    """The sha256 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
