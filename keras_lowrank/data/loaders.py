"""`load_text_classification` and `load_mr_polarity`: files to splits.

Both go through `TextClassificationBuilder` (tensorflow-datasets, offline):
the first load reads and splits the files and caches the splits under
`<cache_dir>/tfds`; later loads of the same bytes with the same options
read the cache.
"""

import os

import tensorflow as tf

from keras_lowrank.data import fetch
from keras_lowrank.data import readers
from keras_lowrank.data import splits as splits_lib
from keras_lowrank.data import text_classification_builder as builder_lib
from keras_lowrank.data.text_classification_data import TextClassificationData


def load_text_classification(
    train_files,
    *,
    text_column: str = "text",
    label_column: str = "label",
    labels=None,
    validation_files=None,
    test_files=None,
    cache_dir=".cache",
    seed: int = 1337,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> TextClassificationData:
    """Loads CSV / TSV / JSONL files of (text, label) as three splits.

    The records of `train_files` are pooled and split per label (stratified)
    with `seed`: `validation_fraction` and `test_fraction` of each label are
    held out, identical texts stay in one split. When `validation_files` or
    `test_files` are given, that split is read from them instead.

    Args:
        train_files: str or list of str. `.csv` / `.tsv` files with a header
            row, or `.jsonl` files of one object per line.
        text_column: str. The column (or JSON key) of the text.
        label_column: str. The column (or JSON key) of the label; labels may
            be strings or integers.
        labels: list of label names, or None. When given, fixes the label
            ids (`labels[i]` is id `i`) and any other label is an error. When
            None, the labels found, sorted (numerically if all are integers).
        validation_files: str or list of str, or None. A separate
            validation split.
        test_files: str or list of str, or None. A separate test split.
        cache_dir: str. The cache folder; splits go to `<cache_dir>/tfds`.
        seed: int. Seed of the split and of the order within each split.
        validation_fraction: float in [0, 1). Share held out for validation.
        test_fraction: float in [0, 1). Share held out for test.

    Returns:
        A `TextClassificationData`.

    Raises:
        DataError: a missing or empty file, a missing column, a malformed
            row, an empty text, an unknown label; the message names the file
            and the line.
        ValueError: fractions out of range, or no train file.

    Example:
    ```python
    data = load_text_classification(
        ["reviews.csv"], text_column="review", label_column="stars"
    )
    for text, label in data.train.take(2):
        print(text.numpy(), data.label_names[label])
    ```
    """
    splits_lib.check_fractions(validation_fraction, test_fraction)
    sources = _sources(train_files, validation_files, test_files)
    if labels is not None:
        labels = tuple(str(label) for label in labels)
        if not labels or len(set(labels)) != len(labels):
            raise ValueError("labels must be a non-empty list of distinct "
                             f"names. Received: labels={list(labels)}")
    config = builder_lib.make_config(
        sources,
        prefix="text",
        reader="table",
        text_column=text_column,
        label_column=label_column,
        labels=labels,
        seed=int(seed),
        validation_fraction=float(validation_fraction),
        test_fraction=float(test_fraction),
    )
    return _load(config, cache_dir)


def load_mr_polarity(
    cache_dir=".cache",
    *,
    seed: int = 1337,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> TextClassificationData:
    """Loads the MR sentence polarity data (Pang & Lee, 4,000 sentences).

    Labels are "negative" (id 0) and "positive" (id 1), 2,000 each. With
    the default fractions the splits hold 2,800 / 400 / 800 sentences,
    balanced between the labels.

    Args:
        cache_dir: str. The cache folder holding `mr_polarity/polarity.csv`
            (written by `make fetch` or `fetch_mr_polarity`).
        seed: int. Seed of the split.
        validation_fraction: float in [0, 1). Share held out for validation.
        test_fraction: float in [0, 1). Share held out for test.

    Returns:
        A `TextClassificationData`.

    Raises:
        DataError: if the CSV is missing (the message says how to fetch it)
            or malformed.

    Example:
    ```python
    data = load_mr_polarity(cache_dir=".cache", seed=0)
    data.num_examples  # {"train": 2800, "validation": 400, "test": 800}
    ```
    """
    splits_lib.check_fractions(validation_fraction, test_fraction)
    path = fetch.mr_polarity_path(cache_dir)
    if not os.path.isfile(path):
        readers.read_mr_polarity(path)  # raises, saying how to fetch it
    config = builder_lib.make_config(
        [("train", path)],
        prefix="mr_polarity",
        reader="mr_polarity",
        labels=("negative", "positive"),
        seed=int(seed),
        validation_fraction=float(validation_fraction),
        test_fraction=float(test_fraction),
    )
    return _load(config, cache_dir)


def _as_list(files, name):
    if files is None:
        return []
    if isinstance(files, (str, os.PathLike)):
        return [os.fspath(files)]
    files = [os.fspath(path) for path in files]
    if name == "train_files" and not files:
        raise ValueError("train_files must name at least one file. "
                         "Received: train_files=[]")
    return files


def _sources(train_files, validation_files, test_files):
    sources = []
    for split, files, name in (("train", train_files, "train_files"),
                               ("validation", validation_files,
                                "validation_files"),
                               ("test", test_files, "test_files")):
        sources.extend((split, path) for path in _as_list(files, name))
    if not any(split == "train" for split, _ in sources):
        raise ValueError("train_files must name at least one file. "
                         f"Received: train_files={train_files!r}")
    return sources


def _load(config, cache_dir):
    data_dir = os.path.join(os.fspath(cache_dir), "tfds")
    builder = builder_lib.prepared_builder(config, data_dir)
    datasets, num_examples = {}, {}
    for split in splits_lib.SPLITS:
        if split in builder.info.splits:
            datasets[split] = builder.as_dataset(
                split=split, as_supervised=True, shuffle_files=False
            )
            num_examples[split] = int(builder.info.splits[split].num_examples)
        else:  # a fraction of 0: tfds stores no empty split
            datasets[split] = tf.data.Dataset.from_tensor_slices(
                (tf.constant([], tf.string), tf.constant([], tf.int64))
            )
            num_examples[split] = 0
    return TextClassificationData(
        **datasets,
        label_names=list(builder.info.features["label"].names),
        num_examples=num_examples,
        data_dir=os.fspath(builder.data_dir),
    )
