"""Each kind of bad data raises one `DataError` naming the file and line."""

import os
import re

import pytest

from keras_lowrank.data import DataError
from keras_lowrank.data import load_text_classification


def _load(path, tmp_path, **kwargs):
    return load_text_classification(path, cache_dir=str(tmp_path / "c"), **kwargs)


def _file(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


GOOD_ROWS = "".join(f"text {i},{i % 2}\n" for i in range(20))


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=re.escape(f"{path}: no such file")):
        _load(path, tmp_path)


def test_empty_file(tmp_path):
    path = _file(tmp_path, "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        _load(path, tmp_path)


def test_header_without_rows(tmp_path):
    path = _file(tmp_path, "header.csv", "text,label\n")
    with pytest.raises(DataError, match=r"header\.csv: no rows"):
        _load(path, tmp_path)


def test_blank_jsonl(tmp_path):
    path = _file(tmp_path, "blank.jsonl", "\n\n")
    with pytest.raises(DataError, match=r"blank\.jsonl: no rows"):
        _load(path, tmp_path)


def test_missing_label_column_lists_the_columns(tmp_path):
    path = _file(tmp_path, "cols.csv", "sentence,target\n" + GOOD_ROWS)
    with pytest.raises(
        DataError,
        match=r"cols\.csv:1: no column 'text'\. Columns found: "
        r"\['sentence', 'target'\]",
    ):
        _load(path, tmp_path)
    with pytest.raises(DataError, match=r"cols\.csv:1: no column 'label'"):
        _load(path, tmp_path, text_column="sentence")


def test_missing_key_in_jsonl(tmp_path):
    path = _file(tmp_path, "keys.jsonl",
                 '{"text": "a", "label": 1}\n{"text": "b", "y": 0}\n')
    with pytest.raises(
        DataError, match=r"keys\.jsonl:2: no key 'label'\. Keys found: "
        r"\['text', 'y'\]"
    ):
        _load(path, tmp_path)


def test_unknown_label_names_label_line_and_allowed(tmp_path):
    path = _file(tmp_path, "labels.csv",
                 "text,label\na,pos\nb,neg\n\"c,\nd\",neg\ne,neutral\n")
    with pytest.raises(
        DataError,
        match=r"labels\.csv:6: unknown label 'neutral'\. Allowed labels are: "
        r"\['neg', 'pos'\]",
    ):
        # Line 6: the quoted text of row 4 spans lines 4-5.
        _load(path, tmp_path, labels=["neg", "pos"])


def test_label_only_in_the_test_file_is_unknown(tmp_path):
    train = _file(tmp_path, "train.csv", "text,label\n" + "".join(
        f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    test = _file(tmp_path, "test.csv", "text,label\nx,pos\ny,meh\n")
    with pytest.raises(
        DataError,
        match=r"test\.csv:3: unknown label 'meh': the training data has only "
        r"\['neg', 'pos'\]\. Fix the label, or name every class with --labels",
    ):
        _load(train, tmp_path, test_files=test)


@pytest.mark.parametrize("labels", [None, ["neg", "pos"]])
def test_training_data_of_one_class_is_refused(tmp_path, labels):
    # Even when --labels names two: the other is never trained.
    train = _file(tmp_path, "train.csv", "text,label\n" + "".join(
        f"text {i},pos\n" for i in range(20)))
    message = (f"{train}: the training data holds one class, ['pos']; a "
               "classifier needs at least two. Add training examples of "
               "another class")
    with pytest.raises(DataError, match=f"^{re.escape(message)}$"):
        _load(train, tmp_path, labels=labels)
    root = tmp_path / "c" / "tfds" / "text_classification_builder"
    assert not root.exists() or os.listdir(root) == []


def test_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"text,label\ngood,1\ncaf\xe9 noir,0\n")
    with pytest.raises(
        DataError, match=r"latin1\.csv:3: not UTF-8 text \(byte 0xe9\)\. Re-save"
    ):
        _load(str(path), tmp_path)


def test_malformed_json_line(tmp_path):
    path = _file(tmp_path, "bad.jsonl",
                 '{"text": "a", "label": 1}\n\n{"text": "b", "label": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: malformed JSON line"):
        _load(path, tmp_path)


def test_json_line_that_is_not_an_object(tmp_path):
    path = _file(tmp_path, "list.jsonl", '["a", 1]\n')
    with pytest.raises(DataError, match=r"list\.jsonl:1: expected a JSON object"):
        _load(path, tmp_path)


def test_empty_text(tmp_path):
    path = _file(tmp_path, "text.csv", "text,label\nfine,1\n   ,0\n")
    with pytest.raises(DataError, match=r"text\.csv:3: empty text in column 'text'"):
        _load(path, tmp_path)


def test_empty_text_in_jsonl(tmp_path):
    path = _file(tmp_path, "text.jsonl", '{"text": "", "label": "a"}\n')
    with pytest.raises(DataError, match=r"text\.jsonl:1: empty text"):
        _load(path, tmp_path)


def test_empty_label(tmp_path):
    path = _file(tmp_path, "label.csv", "text,label\nfine,\n")
    with pytest.raises(DataError, match=r"label\.csv:2: empty label"):
        _load(path, tmp_path)


def test_non_scalar_label_in_jsonl(tmp_path):
    path = _file(tmp_path, "float.jsonl", '{"text": "a", "label": 0.5}\n')
    with pytest.raises(DataError, match=r"float\.jsonl:1: .*Received 0\.5"):
        _load(path, tmp_path)


def test_short_csv_row(tmp_path):
    path = _file(tmp_path, "short.csv", "label,text\n1,ok\n0\n")
    with pytest.raises(DataError, match=r"short\.csv:3: 1 fields, but the header has 2"):
        _load(path, tmp_path)


def test_unsupported_extension(tmp_path):
    path = _file(tmp_path, "data.txt", "a\n")
    with pytest.raises(DataError, match=r"data\.txt: unrecognized file format "
                       r"'\.txt'\. Supported formats are"):
        _load(path, tmp_path)


def test_too_few_texts_for_a_split(tmp_path):
    path = _file(tmp_path, "tiny.csv", "text,label\na,1\nb,0\n")
    with pytest.raises(DataError, match=r"tiny\.csv: the validation split is empty"):
        _load(path, tmp_path)


def test_failed_load_leaves_no_prepared_data(tmp_path):
    path = _file(tmp_path, "late.csv", "text,label\n" + GOOD_ROWS + " ,1\n")
    with pytest.raises(DataError, match=r"late\.csv:22: empty text"):
        _load(path, tmp_path)
    root = tmp_path / "c" / "tfds" / "text_classification_builder"
    assert not root.exists() or os.listdir(root) == []


def test_bad_arguments_are_value_errors(tmp_path):
    path = _file(tmp_path, "ok.csv", "text,label\n" + GOOD_ROWS)
    with pytest.raises(ValueError, match=r"Received: train_files=\[\]"):
        load_text_classification([], cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"Received: labels=\['a', 'a'\]"):
        _load(path, tmp_path, labels=["a", "a"])
    with pytest.raises(ValueError, match=r"Received: validation_fraction=1\.5"):
        _load(path, tmp_path, validation_fraction=1.5)


def test_mr_reader_parses_bom_quotes_and_labels(tmp_path):
    from keras_lowrank.data import readers

    path = tmp_path / "mr.csv"
    path.write_bytes('\ufeff"1","a "" quote . \n"\r\n"-1","bad . \n"\r\n'
                     .encode("utf-8"))
    records = readers.read_mr_polarity(str(path))
    assert [(r.text, r.label) for r in records] == [
        ('a " quote .', "positive"), ("bad .", "negative")
    ]
    assert records[1].where == f"{path}:3"  # row 1 spans lines 1-2


def test_mr_reader_rejects_other_labels(tmp_path):
    from keras_lowrank.data import readers

    path = tmp_path / "mr.csv"
    path.write_text('"1","fine"\n"0","zero"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"mr\.csv:2: unknown label '0'\. "
                       r"Allowed labels are: \['-1', '1'\]"):
        readers.read_mr_polarity(str(path))


# === Issue 26 ===


def _prepared(cache):
    root = os.path.join(cache, "tfds", "text_classification_builder")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


@pytest.mark.parametrize("cached_first", [False, True], ids=["empty-cache", "csv-cached"])
def test_extension_is_part_of_the_cache_key(tmp_path, cached_first):
    """The same bytes as `.txt` are refused, whether or not a `.csv` of
    them was prepared: the extension picks the parser, so it keys the cache."""
    rows = "text,label\n" + GOOD_ROWS
    cache = str(tmp_path / "c")
    if cached_first:
        _load(_file(tmp_path, "data.csv", rows), tmp_path)
    before = _prepared(cache)
    txt = _file(tmp_path, "data.txt", rows)
    with pytest.raises(DataError, match=r"data\.txt: unrecognized file format "
                       r"'\.txt'\. Supported formats are: \['\.csv', '\.tsv', '\.jsonl'\]"):
        _load(txt, tmp_path)
    assert _prepared(cache) == before  # nothing prepared for the .txt


def test_same_bytes_as_tsv_are_parsed_as_tsv(tmp_path):
    """A `.tsv` of the bytes a `.csv` prepared is read with tabs, not reused."""
    rows = "text,label\n" + GOOD_ROWS
    _load(_file(tmp_path, "data.csv", rows), tmp_path)
    with pytest.raises(DataError, match=r"data\.tsv:1: no column 'text'\. Columns "
                       r"found: \['text,label'\]"):
        _load(_file(tmp_path, "data.tsv", rows), tmp_path)


def test_a_folder_is_not_reported_as_a_missing_file(tmp_path):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    with pytest.raises(DataError, match=re.escape(
            f"{folder}: a folder, not a file. Pass the data file itself")):
        _load(str(folder), tmp_path)
    assert _prepared(str(tmp_path / "c")) == []
