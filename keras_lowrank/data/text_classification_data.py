"""`TextClassificationData`: the three splits of a text-classification set."""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class TextClassificationData:
    """Train, validation and test splits with their label names.

    Each split is an unbatched `tf.data.Dataset` of `(text, label)`: a
    `tf.string` scalar and an `int64` scalar, the index in `label_names`.

    Args:
        train: tf.data.Dataset. The training split.
        validation: tf.data.Dataset. The validation split.
        test: tf.data.Dataset. The test split.
        label_names: list of str. `label_names[i]` is the name of label `i`.
        num_examples: dict. Examples per split: keys "train", "validation",
            "test".
        data_dir: str. The folder of the prepared tfds data (the cache).

    Example:
    ```python
    data = load_mr_polarity(cache_dir=".cache")
    train = data.train.shuffle(1024, seed=0).batch(32)
    print(data.label_names, data.num_examples)
    ```
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    label_names: list
    num_examples: dict
    data_dir: str

    @property
    def num_classes(self) -> int:
        """The number of labels."""
        return len(self.label_names)
