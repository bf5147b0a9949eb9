"""A seeded, stratified split of records into train / validation / test."""

import collections

import numpy as np

from keras_lowrank.data.data_error import DataError

SPLITS = ("train", "validation", "test")


def check_fractions(validation_fraction, test_fraction):
    """Raises ValueError unless both fractions are in [0, 1) with sum < 1."""
    for name, value in (("validation_fraction", validation_fraction),
                        ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a number in [0, 1). "
                             f"Received: {name}={value!r}")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            "validation_fraction + test_fraction must be below 1, leaving "
            f"examples to train on. Received: validation_fraction="
            f"{validation_fraction}, test_fraction={test_fraction}"
        )


def stratified_split(examples, seed, fractions) -> dict:
    """Splits (text, label_id) pairs per label, deterministically for a seed.

    Identical texts always land in the same split (no leakage between train
    and test); each label contributes `round(n * fraction)` of its distinct
    texts to every split named in `fractions`, the rest goes to "train".
    Each split is then shuffled with the same seed, so labels are mixed.

    Args:
        examples: list of (text, label_id, where) tuples.
        seed: int. The seed of the split and of the order inside each split.
        fractions: dict from "validation" / "test" to a fraction in [0, 1).
            Splits not named are not produced (they come from other files).

    Returns:
        A dict from split name to a list of (text, label_id) tuples.

    Raises:
        DataError: if a named split with a positive fraction gets no example.
    """
    rng = np.random.default_rng(seed)
    first_label = {}  # text -> label of its first occurrence
    for text, label, _ in examples:
        first_label.setdefault(text, label)
    texts_by_label = collections.defaultdict(list)
    for text, label in first_label.items():
        texts_by_label[label].append(text)

    split_of_text = {}
    for label in sorted(texts_by_label):
        texts = texts_by_label[label]
        order = rng.permutation(len(texts))
        start = 0
        for split, fraction in sorted(fractions.items()):
            count = int(np.floor(len(texts) * fraction + 0.5))
            for index in order[start:start + count]:
                split_of_text[texts[index]] = split
            start += count
        for index in order[start:]:
            split_of_text[texts[index]] = "train"

    result = {"train": [], **{split: [] for split in fractions}}
    for text, label, _ in examples:
        result[split_of_text[text]].append((text, label))
    for split, items in result.items():
        if not items and fractions.get(split, 1) > 0:
            raise DataError(
                f"the {split} split is empty: {len(first_label)} distinct "
                f"texts are too few for fractions {fractions}"
            )
        order = rng.permutation(len(items))
        result[split] = [items[i] for i in order]
    return result
