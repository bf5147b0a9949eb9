"""`export`: write a model for deployment, load it back, check it, report.

What differs between formats (the writer, the runtime, the options and
quantize modes each takes) comes from its `ExportFormat` record in
`keras_lowrank.exporters.formats`; nothing here checks a format's name.
"""

import math
import os
import warnings

import keras

from keras_lowrank._atomic import atomic_path
from keras_lowrank._atomic import check_target
from keras_lowrank.exporters._optional import tensorflow
from keras_lowrank.exporters.formats import FORMATS
from keras_lowrank.exporters.formats import QUANTIZE_MODES
from keras_lowrank.exporters.formats import calibrated_modes
from keras_lowrank.exporters.formats import formats_with_option
from keras_lowrank.exporters.formats import get_format
from keras_lowrank.exporters.report import ExportReport
from keras_lowrank.exporters.report import artifact_size
from keras_lowrank.exporters.sample_inputs import check_input_ranges
from keras_lowrank.exporters.sample_inputs import to_flat_inputs
from keras_lowrank.exporters.sample_inputs import verification_batches
from keras_lowrank.exporters.signature import input_signature
from keras_lowrank.exporters.signature import keras_outputs
from keras_lowrank.exporters.verification import ExportVerificationError
from keras_lowrank.exporters.verification import check_finite
from keras_lowrank.exporters.verification import median_latency_ms
from keras_lowrank.exporters.verification import verify as verify_outputs
from keras_lowrank.merge import merge_adapters

__all__ = ["FORMATS", "QUANTIZE_MODES", "export", "validate_export_arguments"]


def export(
    model,
    path,
    format,
    *,
    quantize=None,
    sample_inputs=None,
    verify=True,
    allow_flex=False,
    opset=None,
    representative_data=None,
    atol=None,
) -> ExportReport:
    """Exports `model`, runs the artifact in its runtime and checks it.

    LoRA adapters are merged into the base weights first. The artifact is
    written to a temporary sibling of `path`, loaded with the runtime that
    will run it (`tf.saved_model.load`, the LiteRT `Interpreter`, an ONNX
    Runtime `InferenceSession`), run at batch 1 and batch 8, and compared
    with Keras running `model` as given (adapters unmerged). Only if every
    output stays within the tolerance is it moved to `path`; otherwise
    nothing changes at `path` and an error says the measured difference.
    No non-finite value is a match: Keras' outputs are computed before
    anything is written, and a NaN or infinity among them is an error; one
    in the artifact's outputs where Keras is finite fails verification.
    The batch dimension of every input stays dynamic.

    Args:
        model: a Keras model (TensorFlow backend), with or without adapters.
        path: where to write: a folder for `"saved_model"`, a file otherwise.
        format: `"saved_model"`, `"tflite"` or `"onnx"` (the names in
            `keras_lowrank.exporters.formats`).
        quantize: TFLite only. `None` (float32), `"float16"`, `"dynamic"`
            (int8 weights) or `"int8"` (int8 weights and activations; needs
            `representative_data`).
        sample_inputs: optional inputs to verify with: a dict keyed by input
            name, a list in input order, or one array. Default: made from the
            input specs (for keras-hub text models, token batches with a
            padding mask). For a keras-hub text model, token ids must lie
            below the backbone's `vocabulary_size` and sequences be at most
            its `max_sequence_length` long.
        verify: whether to run and compare the artifact. Default True.
        allow_flex: TFLite only. Keep TensorFlow ops outside the builtins as
            Flex ops instead of failing.
        opset: ONNX only. The opset version, default 15.
        representative_data: for `quantize="int8"`: an iterable (or a
            callable returning one) of input batches, in the forms
            `sample_inputs` accepts.
        atol: the largest allowed absolute difference. Default: 1e-4 for
            float32; for a quantize mode, `max(DEFAULT_TOLERANCES[quantize],
            RELATIVE_TOLERANCES[quantize] * scale)`, where `scale` is the
            largest absolute Keras output on the checked batches: float16
            `max(1e-2, 0.01 * scale)`, dynamic `max(5e-2, 0.25 * scale)`,
            int8 `max(1e-1, 0.25 * scale)` (measurements in
            `keras_lowrank.exporters.verification`). A given `atol` is used
            as is, for every mode.

    Returns:
        An `ExportReport`.

    Raises:
        ValueError: for an unknown format or quantize mode, arguments that
            do not apply to the format, sample inputs the model does not
            accept, or a Keras backend other than TensorFlow (nothing is
            written).
        MissingDependencyError: an `ImportError` naming the pip command,
            when TensorFlow or the format's converter or runtime is missing.
        UnsupportedOpsError: if TFLite needs ops outside the allowed sets.
        ExportVerificationError: if Keras' own outputs hold NaN or infinite
            values (nothing is written), or the artifact's outputs differ
            from Keras by more than the tolerance or are non-finite where
            Keras is finite (nothing is left at `path`).

    Example:
    ```python
    from keras_lowrank.exporters import export
    report = export(classifier, "classifier.tflite", "tflite",
                    quantize="dynamic")
    print(report)
    ```
    """
    validate_export_arguments(
        path, format, quantize, allow_flex, opset, representative_data, atol
    )
    _require_tensorflow()
    export_format = get_format(format)
    # The artifact holds the merged model; Keras outputs come from the model
    # as given, so verification checks the merge as well as the conversion.
    merged = merge_adapters(model)
    path = os.fspath(path)
    signature = input_signature(merged, sample_inputs)
    batches = expected = None
    if verify or sample_inputs is not None:
        batches = verification_batches(model, signature, sample_inputs)
    if verify:
        expected = _reference_outputs(model, signature, batches, format, path)
    options = {
        "quantize": quantize,
        "allow_flex": allow_flex,
        "opset": opset,
        "representative_data": None,
    }
    if quantize in export_format.calibrated_modes:
        options["representative_data"] = _calibration_data(
            model, signature, representative_data
        )

    notes = []
    checked = None
    try:
        with atomic_path(path, directory=export_format.directory,
                         replaceable=export_format.replaceable) as tmp:
            export_format.write(
                merged, signature, tmp,
                **{name: options[name] for name in export_format.options},
            )
            runner = export_format.runner(tmp)
            ops = runner.ops()
            notes.extend(export_format.notes(ops))
            if verify:
                checked = _check(
                    runner, export_format, batches, expected, quantize, atol,
                    notes,
                )
    except ExportVerificationError as error:
        error.args = (
            f"{error.args[0]} The artifact was removed; {path!r} is unchanged.",
        )
        raise
    max_abs_diff, tolerance, batch_sizes, latency = checked or (
        None, None, (), None)
    return ExportReport(
        format=format,
        path=path,
        size_bytes=artifact_size(path),
        max_abs_diff=max_abs_diff,
        tolerance=tolerance,
        latency_ms=latency,
        ops=ops,
        quantize=quantize,
        batch_sizes_checked=batch_sizes,
        input_names=tuple(runner.input_names),
        output_names=tuple(runner.output_names),
        verified=max_abs_diff is not None,
        runtime=runner.runtime,
        notes=tuple(notes),
    )


def validate_export_arguments(
    path,
    format,
    quantize=None,
    allow_flex=False,
    opset=None,
    representative_data=None,
    atol=None,
):
    """Checks every argument of `export` that does not need the model.

    Runs before any slow work, `path` included: what stands there must be
    replaceable by the artifact (see `keras_lowrank._atomic.check_target`).
    Which arguments and quantize modes a format takes is its record's
    (`keras_lowrank.exporters.formats.get_format(format)`).

    Raises:
        ValueError: naming the argument, what was received and what is
            allowed.
    """
    export_format = get_format(format)
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"Unrecognized quantize={quantize!r}. Supported values are: "
            f"{list(QUANTIZE_MODES)}"
        )
    if quantize not in export_format.quantize_modes:
        if "quantize" not in export_format.options:
            raise _not_an_option("quantize", quantize, format)
        raise ValueError(
            f"format={format!r} supports quantize in "
            f"{list(export_format.quantize_modes)}. Received: quantize={quantize!r}"
        )
    if quantize in export_format.calibrated_modes and representative_data is None:
        raise ValueError(
            f"quantize={quantize!r} calibrates activations on "
            "`representative_data` (an iterable of input batches). Received: "
            "representative_data=None"
        )
    if (
        representative_data is not None
        and quantize not in export_format.calibrated_modes
    ):
        raise ValueError(
            "`representative_data` is only used with "
            f"{_one_of('quantize', calibrated_modes())}. Received: "
            f"quantize={quantize!r}"
        )
    if allow_flex and "allow_flex" not in export_format.options:
        raise _not_an_option("allow_flex", allow_flex, format)
    if opset is not None:
        if "opset" not in export_format.options:
            raise _not_an_option("opset", opset, format)
        if isinstance(opset, bool) or not isinstance(opset, int) or opset < 1:
            raise ValueError(
                f"`opset` must be a positive integer. Received: opset={opset!r}"
            )
    if atol is not None and (
        isinstance(atol, bool)
        or not isinstance(atol, (int, float))
        or not math.isfinite(atol)
        or atol < 0
    ):
        raise ValueError(
            f"`atol` must be a finite number >= 0. Received: atol={atol!r}"
        )
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`path` must be a non-empty path. Received: {path!r}")
    if export_format.directory and os.path.isfile(path):
        raise ValueError(
            f"format={format!r} writes a folder, but {os.fspath(path)!r} "
            "is an existing file."
        )
    if not export_format.directory and os.path.isdir(path):
        raise ValueError(
            f"format={format!r} writes a file, but {os.fspath(path)!r} is an "
            "existing folder."
        )
    # A file where a parent folder should be, a folder of other files.
    check_target(
        path,
        directory=export_format.directory,
        replaceable=export_format.replaceable,
    )


def _not_an_option(option, value, format):
    return ValueError(
        f"`{option}` only applies to "
        f"{_one_of('format', formats_with_option(option))}. Received: "
        f"{option}={value!r} with format={format!r}"
    )


def _one_of(argument, values):
    if len(values) == 1:
        return f"{argument}={values[0]!r}"
    return f"{argument} in {list(values)}"


def _require_tensorflow():
    """Export traces the model with TensorFlow, on the TensorFlow backend."""
    tensorflow.load()  # or one line with the pip command
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise ValueError(
            "Export traces the model with TensorFlow and needs the "
            "TensorFlow backend: set KERAS_BACKEND=tensorflow before Keras "
            f"is imported. Received: backend={backend!r}"
        )


def _reference_outputs(model, signature, batches, format, path):
    """Keras' outputs on `batches`, checked finite before anything is written."""
    expected = [keras_outputs(model, signature, batch) for batch in batches]
    sizes = [int(next(iter(batch.values())).shape[0]) for batch in batches]
    try:
        check_finite(expected, sizes, format=format)
    except ExportVerificationError as error:
        error.args = (f"{error.args[0]} Nothing was written to {path!r}.",)
        raise
    return expected


def _calibration_data(model, signature, representative_data):
    batches = representative_data
    if callable(batches):
        batches = batches()
    flat = []
    for batch in batches:
        batch = to_flat_inputs(signature, batch, what="representative_data")
        check_input_ranges(model, batch, what="representative_data")
        flat.append(batch)
    if not flat:
        raise ValueError("`representative_data` yielded no batches.")
    return lambda: iter(flat)


def _check(runner, export_format, batches, expected, quantize, atol, notes):
    try:
        max_abs_diff, tolerance, batch_sizes = verify_outputs(
            runner, expected, batches, format=export_format.name,
            quantize=quantize, atol=atol,
        )
    except RuntimeError as error:
        if isinstance(error, ExportVerificationError):
            raise
        reason = export_format.unverifiable(error)
        if reason is None:
            raise
        warnings.warn(reason, stacklevel=3)
        notes.append(reason)
        return None
    latency = median_latency_ms(runner, batches[0])
    return max_abs_diff, tolerance, batch_sizes, latency
