"""The checks `export` runs on an artifact, in its runtime, against Keras.

- `reference_outputs`: Keras' outputs, finite, before anything is written.
- `check_outputs`: the max abs diff on batch 1 and 8 (and the latency).
- `check_lengths`: a dynamic sequence length runs at a second length, and
  batch-1 latency at the median and the maximum token length.
- `check_accuracy`: task accuracy in the runtime with `eval_data`.
- `merged_for_export`: the merged copy of the model the artifact holds.
"""

import math
import warnings

import numpy as np

from keras_lowrank.adapters.merge import merge_adapters
from keras_lowrank.exporters import accuracy as accuracy_lib
from keras_lowrank.exporters.session import shared_merged_model
from keras_lowrank.exporters.signature import keras_outputs
from keras_lowrank.exporters.text_inputs import longest_row
from keras_lowrank.exporters.text_inputs import median_row
from keras_lowrank.exporters.text_inputs import token_lengths
from keras_lowrank.exporters.text_inputs import trimmed_row
from keras_lowrank.exporters.verification import ExportVerificationError
from keras_lowrank.exporters.verification import check_finite
from keras_lowrank.exporters.verification import median_latency_ms
from keras_lowrank.exporters.verification import verify as verify_outputs


def merged_for_export(model):
    """The model with adapters merged, without its preprocessor's copy.

    The artifact takes token ids, so the preprocessor (whose tokenizer
    cannot always be rebuilt from its config) is left out of the copy that
    merging makes. The user's model is as it was afterwards. Within an
    `export_session`, the model is merged once.
    """
    return shared_merged_model(model, _merged)


def _merged(model):
    preprocessor = getattr(model, "preprocessor", None)
    if preprocessor is None:
        return merge_adapters(model)
    model.preprocessor = None
    try:
        return merge_adapters(model)
    finally:
        model.preprocessor = preprocessor


def reference_outputs(model, signature, batches, format, path):
    """Keras' outputs on `batches`, checked finite before anything is written."""
    expected = [keras_outputs(model, signature, batch) for batch in batches]
    sizes = [int(next(iter(batch.values())).shape[0]) for batch in batches]
    try:
        check_finite(expected, sizes, format=format)
    except ExportVerificationError as error:
        error.args = (f"{error.args[0]} Nothing was written to {path!r}.",)
        raise
    return expected


def check_outputs(runner, export_format, batches, expected, quantize, atol, notes,
           bound=True):
    try:
        max_abs_diff, tolerance, batch_sizes = verify_outputs(
            runner, expected, batches, format=export_format.name,
            quantize=quantize, atol=atol if bound else math.inf,
        )
    except RuntimeError as error:
        if isinstance(error, ExportVerificationError):
            raise
        reason = export_format.unverifiable(error)
        if reason is None:
            raise
        warnings.warn(reason, stacklevel=3)
        notes.append(reason)
        return {}
    if not bound:
        tolerance = None
        notes.append(
            f"quantize={quantize!r} with eval_data: checked on accuracy; the "
            f"max abs diff ({max_abs_diff:.3g}) is reported, not bounded."
        )
    return {
        "max_abs_diff": max_abs_diff,
        "tolerance": tolerance,
        "batch_sizes": batch_sizes,
        "latency_ms": median_latency_ms(runner, batches[0]),
    }


def check_lengths(model, signature, runner, export_format, sample_inputs,
                   batches, quantize, atol, bound):
    """A dynamic sequence length runs at a second length; latencies by length.

    The lengths are those of `sample_inputs` (the padding mask's sums), else
    of the made-up sample batch. Latency is measured at batch 1 on the row of
    median length (cut to its length when the length is dynamic) and on the
    longest row at the full width.
    """
    flat = batches[1]
    width = _sequence_width(flat)
    if width is None:
        return {}
    dynamic = _dynamic_sequence(runner)
    lengths = token_lengths(flat)
    median = median_row(flat)
    median_tokens = int(lengths[median])
    median_input = trimmed_row(flat, median, median_tokens if dynamic else width)
    max_input = trimmed_row(flat, longest_row(flat), width)
    result = {"sequence_lengths": (width,)}
    if dynamic and median_tokens < width:
        reference = [keras_outputs(model, signature, median_input)]
        verify_outputs(
            runner, reference, [median_input], format=export_format.name,
            quantize=quantize, atol=atol if bound else math.inf,
        )
        result["sequence_lengths"] = (width, median_tokens)
    result["latency_by_length"] = {
        "median": {"tokens": median_tokens,
                   "ms": median_latency_ms(runner, median_input)},
        "max": {"tokens": width, "ms": median_latency_ms(runner, max_input)},
    }
    return result


def check_accuracy(runner, evaluation, keras_accuracy, format, quantize):
    accuracy = accuracy_lib.accuracy_of(
        accuracy_lib.predictions(runner, evaluation.flat), evaluation.labels
    )
    accuracy_lib.check_accuracy(
        accuracy, keras_accuracy, len(evaluation), format=format, quantize=quantize
    )
    return {"accuracy": accuracy}


def _sequence_width(flat):
    ids = flat.get("token_ids")
    if ids is None or np.ndim(ids) != 2:
        return None
    return int(np.shape(ids)[1])


def _dynamic_sequence(runner):
    shapes = getattr(runner, "input_shapes", {})
    shape = shapes.get("token_ids")
    return shape is not None and len(shape) == 2 and shape[1] == -1
