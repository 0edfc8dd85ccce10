"""Tables of texts and labels from files, read with pandas and checked at the face.

:func:`read_table` picks the reader by the file's extension:

==========================  =====================================================
``.csv``                    ``pandas.read_csv``, every cell read as text
``.tsv``, ``.tab``          the same, tab-separated
``.parquet``, ``.pq``       ``pandas.read_parquet`` (pyarrow), types as stored
``.jsonl``, ``.ndjson``     ``pandas.read_json(lines=True)``, types as stored
==========================  =====================================================

CSV and TSV cells are read as text (only an empty cell is missing, so a text "None" or
"NA" stays a text) and numbers are parsed where a number is asked for. Every problem is
a ``ValueError`` (or ``TypeError``) naming the file, the column and the row (rows are
counted from 0, as the ``row_id`` of ``skftr sample``).
"""
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ._atomic import atomic_path, file_sha256
from ._inputs import check_labels, check_texts

__all__ = ["EXTENSIONS", "Table", "file_sha256", "read_table", "write_table"]

EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet",
              ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _kind(path):
    kind = EXTENSIONS.get(Path(path).suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown file type {Path(path).suffix or '(no extension)'!r}; "
                         f"expected one of {', '.join(EXTENSIONS)}")
    return kind


@dataclass
class Table:
    """A data frame read from a file, with checked access to its columns.

    Parameters
    ----------
    frame : pandas.DataFrame
    path : Path
        The file it was read from (named in every error).
    """

    frame: object
    path: Path

    @property
    def name(self):
        return self.path.name

    @cached_property
    def sha256(self):
        """The sha256 of the file's bytes (:func:`file_sha256`), computed once."""
        return file_sha256(self.path)

    def __len__(self):
        return len(self.frame)

    def require(self, *columns):
        """Raise ``ValueError`` naming the missing columns and the ones that exist."""
        missing = [c for c in columns if c is not None and c not in self.frame.columns]
        if missing:
            raise ValueError(f"{self.name} has no column {', '.join(map(repr, missing))}; its "
                             f"columns are {', '.join(map(repr, map(str, self.frame.columns)))}")

    def texts(self, column):
        """The column as a list of non-empty ``str`` (no missing, empty or non-text cell)."""
        self.require(column)
        return check_texts(self.frame[column].to_numpy(dtype=object), f"{self.name}[{column!r}]")

    def numbers(self, column, *, missing="unlabeled"):
        """The column as float64; an empty cell is NaN (``missing="unlabeled"``) or an
        error (``missing="error"``). A cell that is not a number is an error naming it."""
        self.require(column)
        name = f"{self.name}[{column!r}]"
        values = check_labels(self.frame[column].to_numpy(dtype=object), len(self), name)
        empty = np.flatnonzero(np.isnan(values))
        if missing == "error" and empty.size:
            raise ValueError(f"{name}[{empty[0]}] is empty; every row needs a number in "
                             f"column {column!r}")
        return values

    def values(self, column):
        """The column as an object array with no missing cell (ids, groups, strata)."""
        self.require(column)
        values = self.frame[column].to_numpy(dtype=object)
        empty = np.flatnonzero([v is None or (isinstance(v, float) and np.isnan(v))
                                for v in values])
        if empty.size:
            raise ValueError(f"{self.name}[{column!r}][{empty[0]}] is empty; every row needs "
                             f"a value in column {column!r}")
        return values

    def ids(self, column):
        """Unique row ids as strings: the 0-based positions for ``column=None``, else the
        column's values (``str`` of each, so ``7`` and ``"7"`` match across formats)."""
        if column is None:
            return np.arange(len(self)).astype(str).astype(object)
        ids = np.array([str(v) for v in self.values(column)], dtype=object)
        _, first, counts = np.unique(ids, return_index=True, return_counts=True)
        if (counts > 1).any():
            row = int(first[counts > 1].min())
            again = int(np.flatnonzero(ids == ids[row])[1])
            raise ValueError(f"{self.name}[{column!r}] has duplicated ids: {ids[row]!r} at rows "
                             f"{row} and {again} ({int((counts > 1).sum())} duplicated id(s)); "
                             "ids must be unique")
        return ids


def read_table(path):
    """Read a CSV, TSV, Parquet or JSON Lines file into a :class:`Table`.

    Raises
    ------
    ValueError
        For an unknown extension, a missing or unreadable file, or an empty table.
    """
    import pandas as pd

    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="," if kind == "csv" else "\t", dtype=str,
                                keep_default_na=False, na_values=[""])
        elif kind == "parquet":
            frame = pd.read_parquet(path, engine="pyarrow")
        else:
            frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    except (ValueError, OSError) as error:  # parser, decoding, pyarrow and file errors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path}: cannot be read as {kind.upper()}: {first}") from None
    if len(frame) == 0:
        raise ValueError(f"{path}: the table has no rows")
    return Table(frame, path)


def write_table(frame, path):
    """Write ``frame`` (no index) in the format of ``path``'s extension, atomically."""
    kind = _kind(path)
    with atomic_path(path) as tmp:
        if kind in ("csv", "tsv"):
            frame.to_csv(tmp, sep="," if kind == "csv" else "\t", index=False)
        elif kind == "parquet":
            frame.to_parquet(tmp, engine="pyarrow", index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True)
