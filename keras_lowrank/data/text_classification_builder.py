"""A tensorflow-datasets builder over local text-classification files.

It reads local files only (nothing is downloaded), splits them once with a
seed, and writes the splits as TFRecords under a `data_dir`. The config name
holds a hash of the files' bytes and extensions (which pick the parser) and
of every option, so a later load with the same files and options reuses the
prepared data, and a change to either prepares a new copy next to the old
one.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import random

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

import numpy as np
import tensorflow_datasets as tfds

from keras_lowrank._compat import tfds as tfds_compat
from keras_lowrank.data import readers
from keras_lowrank.data import splits as splits_lib
from keras_lowrank.data.data_error import DataError

READERS = ("table", "mr_polarity")


@dataclasses.dataclass(eq=False)
class TextClassificationConfig(tfds.core.BuilderConfig):
    """What to read and how to split it; see `make_config`.

    Args:
        sources: tuple of (split, path, sha256) for every file; split is
            "train" (pooled, then split), "validation" or "test".
        reader: str. "table" (CSV / TSV / JSONL) or "mr_polarity".
        text_column: str. Column or key of the text ("table" only).
        label_column: str. Column or key of the label ("table" only).
        labels: tuple of str, or None to collect the labels from the files.
        seed: int. Seed of the split.
        validation_fraction: float. Share of the train files held out.
        test_fraction: float. Share of the train files held out.
    """

    sources: tuple = ()
    reader: str = "table"
    text_column: str = "text"
    label_column: str = "label"
    labels: tuple | None = None
    seed: int = 1337
    validation_fraction: float = 0.1
    test_fraction: float = 0.2


def make_config(sources, *, prefix, **options) -> TextClassificationConfig:
    """Builds a config whose name is a hash of the file bytes and options.

    Args:
        sources: list of (split, path) pairs.
        prefix: str. Start of the config name, e.g. "mr_polarity".
        **options: the other fields of `TextClassificationConfig`.

    Returns:
        A `TextClassificationConfig`, named `<prefix>_<16 hex digits>`.

    Raises:
        DataError: if a file is missing, or a path is a folder.
    """
    reader = options.get("reader", "table")
    if reader not in READERS:
        raise ValueError(f"Unrecognized reader={reader!r}. Supported readers "
                         f"are: {list(READERS)}")
    hashed = []
    for split, path in sources:
        path = os.fspath(path)
        if os.path.isdir(path):
            raise DataError(f"{path}: a folder, not a file. Pass the data "
                            "file itself")
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such file")
        hashed.append((split, path, _sha256(path)))
    # Paths are left out of the key: a moved file is the same data. Its
    # extension is in: it picks the parser, so the same bytes as `.txt`
    # must not reuse what a `.csv` of them prepared (nor `.tsv` a `.csv`).
    key = json.dumps(
        {"sources": [(split, digest, _extension(path))
                     for split, path, digest in hashed],
         "options": options},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return TextClassificationConfig(
        name=f"{prefix}_{digest}", sources=tuple(hashed), **options
    )


class TextClassificationBuilder(tfds.core.GeneratorBasedBuilder):
    """Local text-classification files as a tfds dataset of (text, label).

    Example:
    ```python
    config = make_config([("train", "reviews.csv")], prefix="reviews")
    builder = prepared_builder(config, data_dir=".cache/tfds")
    train = builder.as_dataset(split="train", as_supervised=True)
    ```
    """

    # Part of the cache path: bump it when the prepared output changes.
    VERSION = tfds.core.Version("1.0.1")
    RELEASE_NOTES = {
        "1.0.0": "Stratified seeded split of local files.",
        # No earlier one-class preparation may be reused.
        "1.0.1": "Training data with fewer than two classes is refused.",
    }

    def _info(self):
        return _LocalDatasetInfo(
            builder=self,
            description="Local text-classification files, split by "
            "keras_lowrank.",
            features=tfds.features.FeaturesDict({
                "text": tfds.features.Text(),
                # Names are set in `_split_generators`, once files are read.
                "label": tfds.features.ClassLabel(),
            }),
            supervised_keys=("text", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        label_names, split_examples = read_and_split(self.builder_config)
        self.info.features["label"].names = label_names
        # tfds cannot write an empty split: it is left out, and the loader
        # returns an empty dataset for it.
        return {
            split: self._generate_examples(examples)
            for split, examples in split_examples.items()
            if examples
        }

    def _generate_examples(self, examples):
        for index, (text, label) in enumerate(examples):
            yield index, {"text": text, "label": label}


class _LocalDatasetInfo(tfds.core.DatasetInfo):
    """The info of a dataset that exists only here.

    tfds' `DatasetBuilder.__init__` calls `initialize_from_bucket` on every
    builder of a config not yet prepared. That makes a `tmp*tfds` folder in
    the system temporary folder (`tempfile.mkdtemp("tfds")`), never removes
    it, and asks Google Cloud Storage for the dataset's info: a local
    dataset has none there, so nothing is asked and no folder is made.
    """

    def initialize_from_bucket(self) -> None:
        pass


def read_and_split(config):
    """Reads the files of `config`, resolves labels and splits the records.

    Returns:
        (label_names, {split: [(text, label_id), ...]}) for the three splits.

    Raises:
        DataError: bad files, unknown labels, or a split left empty.
    """
    records_by_split = {split: [] for split in splits_lib.SPLITS}
    for split, path, _ in config.sources:
        if config.reader == "mr_polarity":
            records = readers.read_mr_polarity(path)
        else:
            records = readers.read_records(
                path, config.text_column, config.label_column
            )
        records_by_split[split].extend(records)

    train_files = sorted({p for s, p, _ in config.sources if s == "train"})
    # The classes are those of the training data: a label that only a
    # validation or test file has is an error, not a class never trained.
    label_names = _label_names(records_by_split["train"], config.labels)
    _check_classes(records_by_split["train"], train_files)
    for split in ("validation", "test"):
        _check_known(
            records_by_split[split], label_names,
            f": the training data has only {label_names}. Fix the label, or "
            "name every class with --labels",
        )
    ids = {name: index for index, name in enumerate(label_names)}
    examples = {
        split: [(r.text, ids[r.label], r.where) for r in records]
        for split, records in records_by_split.items()
    }
    fractions = {}
    for split, fraction in (("validation", config.validation_fraction),
                            ("test", config.test_fraction)):
        if not examples[split]:
            fractions[split] = fraction
    try:
        result = splits_lib.stratified_split(
            examples["train"], config.seed, fractions
        )
    except DataError as error:
        raise DataError(f"{', '.join(train_files)}: {error}") from None
    for split in splits_lib.SPLITS:
        if split not in result:
            result[split] = [(text, label) for text, label, _ in examples[split]]
    return label_names, result


def _label_names(records, labels):
    if labels is not None:
        _check_known(records, labels, f". Allowed labels are: {list(labels)}")
        return list(labels)
    found = {record.label for record in records}
    if all(_is_int(label) for label in found):
        return sorted(found, key=int)  # labels 0..K-1 keep their value as id
    return sorted(found)


def _check_classes(records, train_files):
    # One class trains a classifier that is always right, and says so.
    found = sorted({record.label for record in records})
    if len(found) < 2:
        raise DataError(
            f"{', '.join(train_files)}: the training data holds one class, "
            f"{found}; a classifier needs at least two. Add training examples "
            "of another class"
        )


def _check_known(records, label_names, allowed_note):
    allowed = set(label_names)
    for record in records:
        if record.label not in allowed:
            raise DataError(
                f"{record.where}: unknown label '{record.label}'{allowed_note}"
            )


def _is_int(text):
    try:
        int(text)
    except ValueError:
        return False
    return True


def prepared_builder(config, data_dir) -> TextClassificationBuilder:
    """Returns the builder of `config`, prepared under `data_dir` if needed.

    Preparation runs offline and quietly (no progress bars, no info logs),
    and only when `data_dir` does not already hold this config. It leaves
    the global random states as it found them (`_global_rng_kept`), so a
    seeded run draws the same numbers whether the cache was cold or warm.
    Processes sharing `data_dir` (the workers of a multi-worker run, on one
    machine or a shared disk) prepare one config one at a time
    (`_preparing_alone`): the others wait, then read what the first wrote.

    Args:
        config: `TextClassificationConfig`, from `make_config`.
        data_dir: str. The tfds data folder.

    Returns:
        A prepared `TextClassificationBuilder`.

    Raises:
        DataError: from reading the files, when they are prepared.
    """
    with _quiet_tfds(), _global_rng_kept():
        builder = TextClassificationBuilder(config=config, data_dir=data_dir)
        if builder.is_prepared():
            return builder
        with _preparing_alone(data_dir, config.name):
            # Another process may have prepared it while this one waited.
            builder = TextClassificationBuilder(config=config, data_dir=data_dir)
            if not builder.is_prepared():
                _prepare(builder, data_dir)
    return builder


def _prepare(builder, data_dir):
    try:
        # Everything is read from local files: tfds must never try its GCS
        # mirror (the offline equivalent of `download=False`).
        builder.download_and_prepare(
            download_dir=os.path.join(data_dir, "downloads"),
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
    except BaseException:
        # tfds removes its incomplete folder but not the config's.
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(builder.data_dir))
        raise


@contextlib.contextmanager
def _preparing_alone(data_dir, name):
    """Holds an exclusive lock on `<data_dir>/.<name>.lock` (POSIX `flock`).

    tfds prepares into a folder of its own and renames it into place; a
    second process preparing the same config at the same time failed at
    its rename ("Cannot rename ... already exists"). Where `fcntl` is
    missing (Windows) no lock is taken.
    """
    if fcntl is None:
        yield
        return
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, f".{name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _extension(path):
    return os.path.splitext(path)[1].lower()  # as `readers.read_records`


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _global_rng_kept():
    """Restores Python's and NumPy's global random states on exit.

    tfds names the folder it prepares into with `random.choice` on the
    global Python generator (`utils.incomplete_dir`), so preparing consumed
    six draws that reading a warm cache did not: Keras takes its default
    seeds (initializers, dropout) from that generator, and the same `--seed`
    trained different adapters on a cold and on a warm cache.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def _quiet_tfds():
    """Hides tfds' progress bars, logs and prints, then restores them."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    bars = tfds_compat.progress_bars_shown()
    absl_logger.setLevel(logging.ERROR)
    tfds.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(bars)
        absl_logger.setLevel(level)
