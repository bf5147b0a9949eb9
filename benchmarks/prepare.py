"""Child: writes the one batch every step and latency measurement uses.

The first `batch_size` sentences of the MR train split, tokenized by the
model's own tokenizer and padded to `sequence_length` (the compute of a
dense encoder does not depend on how much of a row is padding).
"""

import os

import numpy as np

from benchmarks import child
from benchmarks import keras_setup


def measure(settings, config, work):
    from keras_lowrank.data import load_mr_polarity

    data = load_mr_polarity(cache_dir=".cache")
    rows = list(data.train.take(settings.batch_size).as_numpy_iterator())
    texts = [text.decode("utf-8") for text, _ in rows]
    labels = np.array([label for _, label in rows], dtype="int32")
    inputs = keras_setup.tokenize(texts, settings.sequence_length)
    np.savez(os.path.join(work, keras_setup.BATCH_FILE), labels=labels, **inputs)
    real_tokens = int(inputs["padding_mask"].sum())
    return {
        "shape": list(inputs["token_ids"].shape),
        "real_token_fraction": real_tokens / inputs["token_ids"].size,
        "num_examples": data.num_examples,
    }


if __name__ == "__main__":
    child.main(measure)
