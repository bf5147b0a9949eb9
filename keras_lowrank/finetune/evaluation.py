"""Accuracy of a classifier on token ids: in Keras, or in an artifact's runtime.

Each function runs a whole split in batches and compares the argmax of the
logits with the labels. An exported artifact runs in its own runtime (the
runner of its format's record: the LiteRT `Interpreter`, an ONNX Runtime
session, ...), so the accuracy it reports is the accuracy a deployment gets.
"""

import time

import numpy as np

from keras_lowrank.exporters import get_format
from keras_lowrank.finetune import batching


def keras_accuracy(model, inputs, labels, batch_size):
    """Accuracy of a Keras classifier (preprocessor detached) on token ids."""
    return _accuracy(
        lambda batch: np.asarray(model.predict_on_batch(batch)),
        inputs, labels, batch_size,
    )


def artifact_accuracy(format, path, inputs, labels, batch_size):
    """Accuracy of an exported classifier, run in its format's runtime."""
    return _accuracy(artifact_predictor(format, path), inputs, labels, batch_size)


def artifact_predictor(format, path):
    """A callable `{name: array} -> logits` running `path` in its runtime.

    It is the runner of the format's record (`get_format(format).runner`):
    the same code that verified the artifact also measures it.

    Args:
        format: str. A registered export format, e.g. `"tflite"` (the
            LiteRT interpreter) or `"onnx"` (ONNX Runtime, CPU).
        path: the artifact.

    Raises:
        ValueError: `format` is not a registered format.
    """
    runner = get_format(format).runner(str(path))
    logits = runner.output_names[0]
    # Trimmed batches are column slices; runtimes want contiguous input.
    return lambda batch: runner(
        {name: np.ascontiguousarray(value) for name, value in batch.items()}
    )[logits]


def _accuracy(predict, inputs, labels, batch_size):
    """`{"accuracy", "seconds", "examples"}` of `predict` over a split."""
    if not len(labels):
        return {"accuracy": None, "seconds": 0.0, "examples": 0}
    start = time.perf_counter()
    correct = 0
    for batch, batch_labels in batching.length_sorted_batches(inputs, labels, batch_size):
        logits = predict(batch)
        correct += int(np.sum(np.argmax(logits, axis=-1) == batch_labels))
    return {
        "accuracy": correct / len(labels),
        "seconds": time.perf_counter() - start,
        "examples": int(len(labels)),
    }
