"""Task accuracy as the export check, when labelled data is given.

A quantized artifact's outputs always differ from Keras; whether that
matters is a question of accuracy. With `eval_data=(inputs, labels)`, export
runs every example through Keras and through the artifact in its runtime,
and refuses an artifact whose accuracy is more than `MAX_ACCURACY_DROP`
below Keras' (the error gives both figures; nothing is written).
"""

import dataclasses

import numpy as np

from keras_lowrank.exporters.sample_inputs import check_input_ranges
from keras_lowrank.exporters.sample_inputs import to_flat_inputs
from keras_lowrank.exporters.text_inputs import as_text_list
from keras_lowrank.exporters.text_inputs import is_texts
from keras_lowrank.exporters.text_inputs import tokenize
from keras_lowrank.exporters.verification import ExportVerificationError

# An artifact may be at most 1.0 point of accuracy below Keras.
MAX_ACCURACY_DROP = 0.01
# Rows per runtime call.
EVAL_BATCH_SIZE = 32
# Rows per Keras call on `eval_data`: the text classifier's batches too, so
# that within an `export_session` the int8 and the text classifier exports
# of a run share Keras' outputs on the eval texts (MiniLM run: 4.2 s).
KERAS_BATCH_SIZE = 64


class AccuracyDropError(ExportVerificationError):
    """The artifact's accuracy on `eval_data` is too far below Keras'.

    Attributes:
        accuracy: the artifact's accuracy, in [0, 1].
        keras_accuracy: Keras' accuracy on the same examples.
    """

    def __init__(self, message, *, accuracy, keras_accuracy, format=None):
        super().__init__(message, format=format)
        self.accuracy = accuracy
        self.keras_accuracy = keras_accuracy


@dataclasses.dataclass(frozen=True)
class EvaluationSet:
    """Labelled examples: token inputs, and the texts they came from if any."""

    flat: dict
    labels: np.ndarray
    texts: tuple = ()

    def __len__(self):
        return len(self.labels)


def evaluation_set(model, signature, eval_data):
    """Checks `eval_data=(texts or inputs, labels)`; returns an `EvaluationSet`.

    Raises:
        ValueError: naming what was received and what is allowed.
    """
    if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2:
        raise ValueError(
            "`eval_data` must be a pair (texts or inputs, labels). Received: "
            f"{type(eval_data).__name__}"
            + (f" of length {len(eval_data)}" if hasattr(eval_data, "__len__") else "")
        )
    inputs, labels = eval_data
    texts = ()
    if is_texts(inputs):
        texts = tuple(as_text_list(inputs))
        inputs = tokenize(model, texts, what="eval_data")
    flat = to_flat_inputs(signature, inputs, what="eval_data")
    check_input_ranges(model, flat, what="eval_data")
    labels = np.asarray(labels)
    rows = len(next(iter(flat.values())))
    if labels.ndim != 1 or len(labels) != rows or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            "`eval_data` labels must be integer class ids, one per example. "
            f"Received: labels of shape {labels.shape} and dtype {labels.dtype} "
            f"for {rows} examples"
        )
    return EvaluationSet(flat=flat, labels=labels, texts=texts)


def predictions(run, flat, batch_size=EVAL_BATCH_SIZE):
    """Argmax class of `run({name: batch}) -> {name: scores}` over all rows."""
    rows = len(next(iter(flat.values())))
    predicted = []
    for start in range(0, rows, batch_size):
        outputs = run({k: v[start : start + batch_size] for k, v in flat.items()})
        if len(outputs) != 1:
            raise ValueError(
                "`eval_data` needs a classifier with one output of class "
                f"scores. Received: outputs {sorted(outputs)}"
            )
        predicted.append(np.argmax(np.asarray(next(iter(outputs.values()))), axis=-1))
    return np.concatenate(predicted)


def accuracy_of(predicted, labels):
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def check_accuracy(accuracy, keras_accuracy, count, *, format, quantize):
    """Raises `AccuracyDropError` if `accuracy` is too far below Keras'."""
    drop = keras_accuracy - accuracy
    if drop > MAX_ACCURACY_DROP + 1e-12:
        raise AccuracyDropError(
            f"The exported {format} model (quantize={quantize!r}) reaches "
            f"accuracy {accuracy:.4f} on the {count} eval_data examples, "
            f"{100 * drop:.2f} points below Keras ({keras_accuracy:.4f}); at "
            f"most {100 * MAX_ACCURACY_DROP:.1f} point is allowed.",
            accuracy=accuracy,
            keras_accuracy=keras_accuracy,
            format=format,
        )
