"""Readers of local text-classification files into `Record`s.

Every reader returns a list of `Record(text, label, where)`: the text with
surrounding whitespace stripped, the label as a string (an int label `3` in a
JSONL file becomes `"3"`), and `where`, the `file:line` the record came from,
used in every later error message.

Formats, chosen by file extension:
- `.csv` / `.tsv`: a header row, then one record per row (UTF-8, an optional
  byte-order mark is ignored; quoted fields may span lines).
- `.jsonl`: one JSON object per line; blank lines are skipped.
- The MR polarity CSV has its own reader, `read_mr_polarity`.
"""

import collections
import csv
import json
import os

from keras_lowrank.data.data_error import DataError

Record = collections.namedtuple("Record", ["text", "label", "where"])

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".jsonl")
MR_LABELS = {"-1": "negative", "1": "positive"}


def read_records(path, text_column="text", label_column="label") -> list:
    """Reads a CSV, TSV or JSONL file of (text, label) records.

    Args:
        path: str. A `.csv`, `.tsv` (with a header row) or `.jsonl` file.
        text_column: str. The column (or JSON key) holding the text.
        label_column: str. The column (or JSON key) holding the label.

    Returns:
        A non-empty list of `Record`.

    Raises:
        DataError: missing or empty file, unknown extension, a column that
            is not there, a malformed row or JSON line, an empty text or label.
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in SUPPORTED_EXTENSIONS:
        raise DataError(
            f"{path}: unrecognized file format '{extension}'. Supported "
            f"formats are: {list(SUPPORTED_EXTENSIONS)}"
        )
    _check_file(path)
    if extension == ".jsonl":
        records = _read_jsonl(path, text_column, label_column)
    else:
        delimiter = "\t" if extension == ".tsv" else ","
        records = _read_table(path, text_column, label_column, delimiter)
    if not records:
        raise DataError(f"{path}: no rows (the file holds no records)")
    return records


def read_mr_polarity(path) -> list:
    """Reads the MR sentence-polarity CSV of Pang & Lee.

    Header-less `label,text` rows, labels `1` / `-1`, UTF-8 with a BOM.

    Args:
        path: str. The CSV written by `fetch_mr_polarity`.

    Returns:
        A list of `Record` with labels `"negative"` / `"positive"`.

    Raises:
        DataError: missing or empty file, a row without two fields, a label
            other than 1 / -1, an empty text.
    """
    path = os.fspath(path)
    _check_file(path, hint="run `make fetch` (or `python -m "
                "keras_lowrank.data.fetch --cache .cache`) to create it")
    records = []
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        for line, row in _numbered_rows(reader, path):
            where = f"{path}:{line}"
            if len(row) != 2:
                raise DataError(f"{where}: expected 2 fields label,text. "
                                f"Received {len(row)} fields")
            label = MR_LABELS.get(row[0].strip())
            if label is None:
                raise DataError(f"{where}: unknown label '{row[0]}'. "
                                f"Allowed labels are: {list(MR_LABELS)}")
            records.append(Record(_text(row[1], where, "text"), label, where))
    if not records:
        raise DataError(f"{path}: no rows (the file holds no records)")
    return records


def _check_file(path, hint=None):
    if os.path.isdir(path):
        raise DataError(f"{path}: a folder, not a file. Pass the data file "
                        "itself")
    if not os.path.isfile(path):
        extra = f"; {hint}" if hint else ""
        raise DataError(f"{path}: no such file{extra}")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty (no rows)")
    _check_utf8(path)


def _check_utf8(path):
    """Names the line of the first byte that is not UTF-8 (csv cannot)."""
    with open(path, "rb") as file:
        content = file.read()
    try:
        content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 text (byte 0x{content[error.start]:02x}). "
            "Re-save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _numbered_rows(reader, path):
    """Yields (first line of the row, row) and turns csv errors into DataError."""
    line = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise DataError(f"{path}:{reader.line_num}: malformed CSV: {error}")
        if row:  # blank lines carry no record
            yield line, row
        line = reader.line_num + 1


def _read_table(path, text_column, label_column, delimiter):
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file, delimiter=delimiter)
        rows = _numbered_rows(reader, path)
        _, header = next(rows, (1, None))
        if header is None:
            raise DataError(f"{path}: the file is empty (no rows)")
        header = [name.strip() for name in header]
        for column in (text_column, label_column):
            if column not in header:
                raise DataError(
                    f"{path}:1: no column '{column}'. Columns found: {header}"
                )
        text_index = header.index(text_column)
        label_index = header.index(label_column)
        records = []
        for line, row in rows:
            where = f"{path}:{line}"
            if len(row) <= max(text_index, label_index):
                raise DataError(f"{where}: {len(row)} fields, but the header "
                                f"has {len(header)}: {header}")
            text = _text(row[text_index], where, text_column)
            label = _label(row[label_index], where, label_column)
            records.append(Record(text, label, where))
    return records


def _read_jsonl(path, text_column, label_column):
    records = []
    with open(path, encoding="utf-8-sig") as file:
        for line, content in enumerate(file, start=1):
            if not content.strip():
                continue
            where = f"{path}:{line}"
            try:
                item = json.loads(content)
            except json.JSONDecodeError as error:
                raise DataError(f"{where}: malformed JSON line: {error.msg}")
            if not isinstance(item, dict):
                raise DataError(f"{where}: expected a JSON object. Received "
                                f"{type(item).__name__}")
            for column in (text_column, label_column):
                if column not in item:
                    raise DataError(f"{where}: no key '{column}'. Keys found: "
                                    f"{list(item)}")
            text = item[text_column]
            if not isinstance(text, str):
                raise DataError(f"{where}: '{text_column}' must be a string. "
                                f"Received {type(text).__name__}")
            text = _text(text, where, text_column)
            records.append(Record(text, _label(item[label_column], where,
                                               label_column), where))
    return records


def _text(value, where, column):
    text = value.strip()
    if not text:
        raise DataError(f"{where}: empty text in column '{column}'")
    return text


def _label(value, where, column):
    # bool is an int subclass: `true` is almost surely a mistake.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: label '{column}' must be a string or an "
                        f"integer. Received {value!r}")
    label = str(value).strip()
    if not label:
        raise DataError(f"{where}: empty label in column '{column}'")
    return label
