"""The three splits of a causal-LM run: the user's files or the MR task."""

import math

import numpy as np

from keras_lowrank.data.data_error import DataError
from keras_lowrank.lm_finetune.lm_examples import read_lm_file
from keras_lowrank.lm_finetune.mr_instruction_task import SOURCE
from keras_lowrank.lm_finetune.mr_instruction_task import mr_instruction_examples

SPLITS = ("train", "validation", "test")
# Shares of the train files held out when no separate split is given.
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.2


def load_lm_data(options) -> tuple:
    """`(splits, source)`: `{"train", "validation", "test"}` lists of
    `LMExample`, and a description of where they came from.

    Train files without validation (or test) files are split with the
    seed: 10% validation, 20% test, the rest train.

    Raises:
        DataError: a bad file (the message names the file and the line),
            or train files too few to split.
    """
    if not options.train_files:
        return mr_instruction_examples(options.cache_dir, options.seed,
                                       split_limits(options)), SOURCE
    read = lambda files: [example for path in files  # noqa: E731
                          for example in read_lm_file(path, options.text_field)]
    splits = {name: read(getattr(options, f"{name}_files")) for name in SPLITS}
    held_out = {name: fraction for name, fraction in
                (("validation", VALIDATION_FRACTION), ("test", TEST_FRACTION))
                if not splits[name]}
    if held_out:
        train = splits["train"]
        order = np.random.default_rng(options.seed).permutation(len(train))
        start = 0
        for name, fraction in held_out.items():
            count = max(1, int(np.floor(len(train) * fraction + 0.5)))
            splits[name] = [train[i] for i in order[start:start + count]]
            start += count
        if start >= len(train):
            raise DataError(
                f"{options.train_files[0]}: {len(train)} examples are too few "
                f"to hold out {', '.join(held_out)} and keep some to train on; "
                "pass --validation and --test files.")
        splits["train"] = [train[i] for i in sorted(order[start:])]
    files = options.train_files + options.validation_files + options.test_files
    return splits, "files " + ", ".join(files)


def split_limits(options) -> dict:
    """`{split: int or None}`: the most examples `options` keeps of each
    split (None: all). Validation is capped by `max_eval_examples` too."""
    limits = {"train": options.max_train_examples,
              "validation": min(options.max_eval_examples or math.inf,
                                options.max_validation_examples or math.inf),
              "test": options.max_eval_examples}
    return {k: None if v == math.inf else v for k, v in limits.items()}
