"""Calibration data for integer quantization, in any form, as rows.

Full-integer quantization (LiteRT `int8` / `int16x8`, ONNX `int8`) runs real
examples through the model to choose the activation ranges. `calibration_data`
may be:

- texts (a list of strings), tokenized by the model's preprocessor;
- a dict of arrays keyed by input name, one example per row;
- a `tf.data.Dataset` of such dicts, or of `(inputs, labels)` tuples, batched
  or not, whose inputs may also be strings;
- an iterable of input batches (what `representative_data` takes), or a
  callable returning one.

`calibration_rows` turns each into a list of batch-1 rows `{name: array}`,
checked against the model's inputs like `sample_inputs`.
"""

import numpy as np

from keras_lowrank.exporters.sample_inputs import check_input_ranges
from keras_lowrank.exporters.sample_inputs import to_flat_inputs
from keras_lowrank.exporters.text_inputs import is_texts
from keras_lowrank.exporters.text_inputs import tokenize


def calibration_rows(model, signature, data, what="calibration_data"):
    """Every example of `data` as a `{name: array}` row of batch size 1.

    Args:
        model: the Keras model (its preprocessor tokenizes texts).
        signature: the structure from `input_signature`.
        data: one of the forms in the module docstring.
        what: the argument name for errors.

    Returns:
        A non-empty list of rows.

    Raises:
        ValueError: for data the model does not accept, or no examples.
    """
    rows = []
    for batch in _batches(model, data, what):
        flat = to_flat_inputs(signature, batch, what=what)
        check_input_ranges(model, flat, what=what)
        count = len(next(iter(flat.values())))
        rows.extend({k: v[i : i + 1] for k, v in flat.items()} for i in range(count))
    if not rows:
        raise ValueError(f"`{what}` holds no examples. Received: {data!r}")
    return rows


def _batches(model, data, what):
    if callable(data) and not _is_dataset(data):
        data = data()
    if is_texts(data):
        yield tokenize(model, data, what=what)
        return
    if isinstance(data, dict):
        yield data
        return
    if _is_dataset(data):
        yield from _dataset_batches(model, data, what)
        return
    for batch in data:
        if is_texts(batch):
            batch = tokenize(model, batch, what=what)
        yield batch


def _dataset_batches(model, dataset, what):
    for element in dataset.as_numpy_iterator():
        if isinstance(element, tuple):  # (inputs, labels[, weights])
            element = element[0]
        if isinstance(element, (bytes, np.ndarray)) and _strings(element):
            texts = np.atleast_1d(element)
            yield tokenize(model, [t.decode("utf-8") for t in texts], what=what)
            continue
        if isinstance(element, dict):
            element = {
                k: np.asarray(v)[None] if np.ndim(v) == 1 and _is_row(model, k) else v
                for k, v in element.items()
            }
        yield element


def _strings(value):
    return isinstance(value, bytes) or np.asarray(value).dtype.kind in "OSU"


def _is_row(model, name):
    # An unbatched dataset yields (sequence,) arrays for (batch, sequence) inputs.
    return name in ("token_ids", "padding_mask", "segment_ids")


def _is_dataset(value):
    return type(value).__module__.startswith("tensorflow") and hasattr(
        value, "as_numpy_iterator"
    )
