"""skftr.io: each reader on each format, and a clear error for every bad table."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from skftr.io import EXTENSIONS, file_sha256, read_table, write_table

FRAME = pd.DataFrame({
    "id": ["a7", "b2", "c9", "d4"],
    "text": ["good wine", "None", "NA", "a dull film"],  # "None" and "NA" are texts
    "label": [1.5, np.nan, -2.0, 3.0],
    "group": ["x", "y", "x", "y"],
})


@pytest.mark.parametrize("ext", sorted(EXTENSIONS))
def test_each_format_round_trips(tmp_path, ext):
    path = tmp_path / f"data{ext}"
    write_table(FRAME, path)
    table = read_table(path)
    assert len(table) == 4 and table.name == path.name
    assert table.texts("text") == FRAME["text"].tolist()
    np.testing.assert_array_equal(table.numbers("label"), FRAME["label"].to_numpy())
    assert table.values("group").tolist() == FRAME["group"].tolist()
    assert table.ids("id").tolist() == FRAME["id"].tolist()
    assert table.ids(None).tolist() == ["0", "1", "2", "3"]


def test_reader_follows_the_extension_not_the_content(tmp_path):
    (tmp_path / "data.tsv").write_text("text\tlabel\ngood, fine\t1\nbad\t\n")
    table = read_table(tmp_path / "data.tsv")
    assert table.texts("text") == ["good, fine", "bad"]
    np.testing.assert_array_equal(table.numbers("label"), [1.0, np.nan])


def test_csv_cells_are_texts_until_a_number_is_asked_for(tmp_path):
    (tmp_path / "d.csv").write_text("text,label,id\n1999,2,007\nfine,,008\n")
    table = read_table(tmp_path / "d.csv")
    assert table.texts("text") == ["1999", "fine"]
    assert table.ids("id").tolist() == ["007", "008"]
    np.testing.assert_array_equal(table.numbers("label"), [2.0, np.nan])


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"text\nx\n" * 1000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name, content, match", [
    ("data.xlsx", b"x", r"data\.xlsx: unknown file type '\.xlsx'; expected one of \.csv"),
    ("data", b"x", r"unknown file type '\(no extension\)'"),
    ("data.parquet", b"not parquet at all", r"data\.parquet: cannot be read as PARQUET"),
    ("data.jsonl", b'{"text": "a"}\n{"text": \n', r"data\.jsonl: cannot be read as JSONL"),
    ("data.csv", b"text,label\n", r"data\.csv: the table has no rows"),
    ("data.csv", b"", r"data\.csv: cannot be read as CSV"),
])
def test_unreadable_files_name_the_file(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=match):
        read_table(tmp_path / name)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"nope\.csv: no such file"):
        read_table(tmp_path / "nope.csv")


@pytest.fixture
def table(tmp_path):
    (tmp_path / "d.csv").write_text("text,label,id\ngood,1,a\n  ,x2,b\nbad,,a\n")
    return read_table(tmp_path / "d.csv")


def test_missing_column_lists_the_columns(table):
    with pytest.raises(ValueError, match=r"d\.csv has no column 'txt'; its columns are "
                                         r"'text', 'label', 'id'"):
        table.texts("txt")


def test_non_numeric_label_shows_row_and_value(table):
    with pytest.raises(ValueError, match=r"d\.csv\['label'\]\[1\] = 'x2' is not a number"):
        table.numbers("label")


def test_empty_text_names_the_row(table):
    with pytest.raises(ValueError, match=r"d\.csv\['text'\]\[1\] is empty"):
        table.texts("text")


def test_non_string_text_names_the_row(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "good"}\n{"text": 12}\n')
    with pytest.raises(TypeError, match=r"d\.jsonl\['text'\]\[1\] must be a str"):
        read_table(tmp_path / "d.jsonl").texts("text")


def test_duplicated_ids_name_both_rows(table):
    with pytest.raises(ValueError, match=r"d\.csv\['id'\] has duplicated ids: 'a' at rows 0 "
                                         r"and 2"):
        table.ids("id")


def test_required_numbers_name_the_empty_row(tmp_path):
    (tmp_path / "d.csv").write_text("text,score\na,1\nb,\n")
    table = read_table(tmp_path / "d.csv")
    with pytest.raises(ValueError, match=r"d\.csv\['score'\]\[1\] is empty"):
        table.numbers("score", missing="error")


def test_write_table_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.csv"
    write_table(FRAME, path)
    before = path.read_bytes()

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError):
        write_table(FRAME.head(1), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
