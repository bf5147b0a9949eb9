"""Tests of `load_text_classification` on CSV / TSV / JSONL files."""

import json
import os


from keras_lowrank.data import load_text_classification


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _csv(tmp_path, name="reviews.csv", per_label=10, labels=("good", "bad")):
    lines = ["review,stars,text_id"]
    for label in labels:
        lines += [f'"{label} review, number {i}",{label},{i}' for i in range(per_label)]
    return _write(tmp_path / name, "\n".join(lines) + "\n")


def _pairs(dataset):
    return [(t.decode(), int(l)) for t, l in dataset.as_numpy_iterator()]


def _all_pairs(data):
    return _pairs(data.train) + _pairs(data.validation) + _pairs(data.test)


def test_csv_with_named_columns(tmp_path):
    path = _csv(tmp_path)
    data = load_text_classification(
        path, text_column="review", label_column="stars",
        cache_dir=str(tmp_path / "cache"), validation_fraction=0.1,
        test_fraction=0.2,
    )
    assert data.label_names == ["bad", "good"]  # sorted
    # 10 per label: 1 validation, 2 test, 7 train each.
    assert data.num_examples == {"train": 14, "validation": 2, "test": 4}
    pairs = _all_pairs(data)
    assert len(pairs) == 20
    for text, label in pairs:
        assert text.startswith(data.label_names[label] + " review, number ")
    assert sorted(label for _, label in _pairs(data.test)) == [0, 0, 1, 1]


def test_jsonl_with_integer_labels_sorts_numerically(tmp_path):
    rows = [{"text": f"sentence {i}", "label": label, "extra": None}
            for i, label in enumerate([2, 10, 1] * 10)]
    content = "\n".join(json.dumps(row) for row in rows) + "\n\n"
    path = _write(tmp_path / "data.jsonl", content)
    data = load_text_classification([path], cache_dir=str(tmp_path / "c"))
    assert data.label_names == ["1", "2", "10"]
    assert data.num_examples == {"train": 21, "validation": 3, "test": 6}
    expected = {f"sentence {i}": data.label_names.index(str(label))
                for i, label in enumerate([2, 10, 1] * 10)}
    assert dict(_all_pairs(data)) == expected
    assert expected["sentence 0"] == 1 and expected["sentence 1"] == 2


def test_integer_labels_zero_based_keep_their_value_as_id(tmp_path):
    lines = ["text\tlabel"] + [f"row {i}\t{i % 3}" for i in range(30)]
    path = _write(tmp_path / "data.tsv", "\n".join(lines))
    data = load_text_classification(path, cache_dir=str(tmp_path / "c"))
    assert data.label_names == ["0", "1", "2"]
    for text, label in _all_pairs(data):
        assert label == int(text.split()[1]) % 3


def test_given_labels_fix_the_ids(tmp_path):
    path = _csv(tmp_path, labels=("good", "bad"))
    data = load_text_classification(
        path, text_column="review", label_column="stars",
        labels=["good", "bad", "meh"], cache_dir=str(tmp_path / "c"),
    )
    assert data.label_names == ["good", "bad", "meh"]
    for text, label in _all_pairs(data):
        assert text.startswith(("good", "bad")[label])


def test_separate_validation_and_test_files(tmp_path):
    train = _csv(tmp_path, "train.csv", per_label=10)
    valid = _write(tmp_path / "valid.jsonl",
                   '{"review": "v good", "stars": "good"}\n'
                   '{"review": "v bad", "stars": "bad"}\n')
    test = _write(tmp_path / "test.csv", "stars,review\nbad,t bad\n")
    data = load_text_classification(
        train, validation_files=valid, test_files=[test],
        text_column="review", label_column="stars",
        cache_dir=str(tmp_path / "c"),
    )
    assert data.num_examples == {"train": 20, "validation": 2, "test": 1}
    assert sorted(_pairs(data.validation)) == [("v bad", 0), ("v good", 1)]
    assert _pairs(data.test) == [("t bad", 0)]


def test_only_a_test_file_holds_out_validation_from_train(tmp_path):
    train = _csv(tmp_path, "train.csv", per_label=10)
    test = _write(tmp_path / "test.csv", "stars,review\ngood,t good\n")
    data = load_text_classification(
        train, test_files=test, text_column="review", label_column="stars",
        cache_dir=str(tmp_path / "c"), validation_fraction=0.2,
    )
    assert data.num_examples == {"train": 16, "validation": 4, "test": 1}


def test_duplicate_texts_stay_in_one_split(tmp_path):
    lines = ["text,label"] + [f"text {i % 10},{i % 2}" for i in range(40)]
    path = _write(tmp_path / "dups.csv", "\n".join(lines))
    data = load_text_classification(path, cache_dir=str(tmp_path / "c"),
                                     validation_fraction=0.2)
    seen = {}
    for split in ("train", "validation", "test"):
        for text, _ in _pairs(getattr(data, split)):
            assert seen.setdefault(text, split) == split
    assert sum(data.num_examples.values()) == 40


def test_zero_fraction_gives_an_empty_split(tmp_path):
    path = _csv(tmp_path, per_label=3)
    data = load_text_classification(
        path, text_column="review", label_column="stars",
        cache_dir=str(tmp_path / "c"), validation_fraction=0.0,
        test_fraction=0.0,
    )
    assert data.num_examples == {"train": 6, "validation": 0, "test": 0}
    assert _pairs(data.validation) == [] and _pairs(data.test) == []
    assert data.test.element_spec == data.train.element_spec


def test_changed_file_is_prepared_again(tmp_path):
    path = _csv(tmp_path, per_label=10)
    cache = str(tmp_path / "c")
    kwargs = dict(text_column="review", label_column="stars", cache_dir=cache)
    first = load_text_classification(path, **kwargs)
    again = load_text_classification(path, **kwargs)
    assert again.data_dir == first.data_dir
    with open(path, "a", encoding="utf-8") as file:
        file.write("one more good,good\n")
    changed = load_text_classification(path, **kwargs)
    assert changed.data_dir != first.data_dir
    assert sum(changed.num_examples.values()) == 21
    assert os.path.isdir(first.data_dir)  # the old copy is left as it was


def _tfds_temporary_folders():
    import glob
    import tempfile

    return set(glob.glob(os.path.join(tempfile.gettempdir(), "tmp*tfds")))


def test_a_load_leaves_no_temporary_folder(tmp_path):
    """Issue 26: tfds made two empty `tmp*tfds` folders per prepared load
    (`DatasetInfo.initialize_from_bucket`), and never removed them."""
    before = _tfds_temporary_folders()
    path = _csv(tmp_path, per_label=10)
    kwargs = dict(text_column="review", label_column="stars",
                  cache_dir=str(tmp_path / "c"))
    first = load_text_classification(path, **kwargs)  # prepares
    again = load_text_classification(path, **kwargs)  # reads the cache
    assert again.data_dir == first.data_dir
    # Other processes' folders may come and go: only new ones count.
    assert _tfds_temporary_folders() - before == set()
