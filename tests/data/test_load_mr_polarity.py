"""Tests of `load_mr_polarity` on the real MR file: sizes, balance, seeds."""

import collections
import os

import pytest

from keras_lowrank.data import DataError
from keras_lowrank.data import TextClassificationData
from keras_lowrank.data import load_mr_polarity
from keras_lowrank.data import text_classification_builder as builder_lib

SPLITS = ("train", "validation", "test")


def _texts_and_labels(dataset):
    # Read in batches, the same elements in the same order: one element at
    # a time, the 4,000 took seconds per load.
    return [(text.decode("utf-8"), int(label))
            for texts, labels in dataset.batch(1024).as_numpy_iterator()
            for text, label in zip(texts, labels)]


def _splits(data):
    return {split: _texts_and_labels(getattr(data, split)) for split in SPLITS}


def test_sizes_labels_and_balance(mr_cache):
    data = load_mr_polarity(cache_dir=mr_cache, seed=1337)
    assert isinstance(data, TextClassificationData)
    assert data.label_names == ["negative", "positive"]
    assert data.num_classes == 2
    assert data.num_examples == {"train": 2800, "validation": 400, "test": 800}
    assert sum(data.num_examples.values()) == 4000
    splits = _splits(data)
    for split, size in data.num_examples.items():
        counts = collections.Counter(label for _, label in splits[split])
        assert counts == {0: size // 2, 1: size // 2}, split
    # No sentence in two splits, and none lost.
    sets = {split: {text for text, _ in items} for split, items in splits.items()}
    assert sets["train"].isdisjoint(sets["validation"])
    assert sets["train"].isdisjoint(sets["test"])
    assert sets["validation"].isdisjoint(sets["test"])
    assert sum(len(s) for s in sets.values()) == 4000
    # Texts are stripped and labels mixed within a split.
    text, label = splits["train"][0]
    assert text == text.strip() and text
    assert {label for _, label in splits["train"][:20]} == {0, 1}


def test_element_spec_is_unbatched_string_and_int64(mr_cache):
    data = load_mr_polarity(cache_dir=mr_cache)
    text_spec, label_spec = data.train.element_spec
    assert text_spec.shape == () and text_spec.dtype.name == "string"
    assert label_spec.shape == () and label_spec.dtype.name == "int64"


def test_same_seed_same_splits_other_seed_other_splits(mr_csv, tmp_path):
    loads = {}
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        # Separate caches: each load prepares its own copy from scratch.
        cache = tmp_path / name
        (cache / "mr_polarity").mkdir(parents=True)
        os.symlink(mr_csv, cache / "mr_polarity" / "polarity.csv")
        loads[name] = _splits(load_mr_polarity(cache_dir=str(cache), seed=seed))
    assert loads["a"] == loads["b"]
    test_a = {text for text, _ in loads["a"]["test"]}
    test_c = {text for text, _ in loads["c"]["test"]}
    assert len(test_c) == 800
    assert len(test_a & test_c) < 400  # ~20% overlap expected by chance


def test_fractions_set_the_split_sizes(mr_cache):
    data = load_mr_polarity(cache_dir=mr_cache, validation_fraction=0.1,
                            test_fraction=0.1)
    assert data.num_examples == {"train": 3200, "validation": 400, "test": 400}


def test_second_load_reuses_the_cache(mr_cache, monkeypatch):
    first = load_mr_polarity(cache_dir=mr_cache)
    info = os.path.join(first.data_dir, "dataset_info.json")
    mtime = os.stat(info).st_mtime_ns

    def no_prepare(self, dl_manager):
        raise AssertionError("the splits were prepared again")

    monkeypatch.setattr(builder_lib.TextClassificationBuilder,
                        "_split_generators", no_prepare)
    second = load_mr_polarity(cache_dir=mr_cache)
    assert second.data_dir == first.data_dir
    assert os.stat(info).st_mtime_ns == mtime
    assert second.num_examples == first.num_examples
    assert _splits(second)["validation"] == _splits(first)["validation"]
    # Another seed is another config: prepared next to the first one.
    monkeypatch.undo()
    third = load_mr_polarity(cache_dir=mr_cache, seed=1)
    assert third.data_dir != first.data_dir
    assert os.path.dirname(os.path.dirname(third.data_dir)) == \
        os.path.dirname(os.path.dirname(first.data_dir))


def test_missing_file_says_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match=r"polarity\.csv: no such file.*make fetch"):
        load_mr_polarity(cache_dir=str(tmp_path))


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (-0.1, 0.2), (0.1, 1.0)])
def test_bad_fractions(mr_cache, fractions):
    with pytest.raises(ValueError, match="Received: "):
        load_mr_polarity(cache_dir=mr_cache, validation_fraction=fractions[0],
                         test_fraction=fractions[1])


def test_cold_and_warm_loads_are_equal_and_leave_global_rngs_alone(mr_cache):
    import random

    import numpy as np

    def load_with_states():
        random.seed(11)
        np.random.seed(11)
        data = load_mr_polarity(cache_dir=mr_cache, seed=3)
        return _splits(data), random.getstate(), np.random.get_state()[1].copy()

    random.seed(11)
    np.random.seed(11)
    untouched = random.getstate(), np.random.get_state()[1].copy()
    cold_splits, cold_py, cold_np = load_with_states()  # prepares the cache
    warm_splits, warm_py, warm_np = load_with_states()  # reads it back
    assert cold_splits == warm_splits  # same examples, same order
    # tfds draws from `random` to name the folder it prepares into; a
    # seeded run must not see those draws (Keras seeds its initializers
    # from `random`).
    assert cold_py == warm_py == untouched[0]
    np.testing.assert_array_equal(cold_np, untouched[1])
    np.testing.assert_array_equal(warm_np, untouched[1])
