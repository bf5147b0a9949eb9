"""`export`: write a model for deployment, load it back, check it, report."""

import math
import os
import tempfile
import warnings

from keras_lowrank._atomic import atomic_path
from keras_lowrank._atomic import check_target
from keras_lowrank._atomic import has_files
from keras_lowrank.exporters import onnx as onnx_format
from keras_lowrank.exporters import saved_model as saved_model_format
from keras_lowrank.exporters import tflite as tflite_format
from keras_lowrank.exporters.report import ExportReport
from keras_lowrank.exporters.report import artifact_size
from keras_lowrank.exporters.sample_inputs import to_flat_inputs
from keras_lowrank.exporters.sample_inputs import verification_batches
from keras_lowrank.exporters.signature import input_signature
from keras_lowrank.exporters.signature import keras_outputs
from keras_lowrank.exporters.verification import ExportVerificationError
from keras_lowrank.exporters.verification import median_latency_ms
from keras_lowrank.exporters.verification import verify as verify_outputs
from keras_lowrank.merge import merge_adapters

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZE_MODES = tflite_format.QUANTIZE_MODES
# An earlier SavedModel export, which a new one may replace.
_SAVED_MODEL = has_files("saved_model.pb")


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
    The batch dimension of every input stays dynamic.

    Args:
        model: a Keras model (TensorFlow backend), with or without adapters.
        path: where to write: a folder for `"saved_model"`, a file otherwise.
        format: `"saved_model"`, `"tflite"` or `"onnx"`.
        quantize: TFLite only. `None` (float32), `"float16"`, `"dynamic"`
            (int8 weights) or `"int8"` (int8 weights and activations; needs
            `representative_data`).
        sample_inputs: optional inputs to verify with: a dict keyed by input
            name, a list in input order, or one array. Default: made from the
            input specs (for keras-hub text models, token batches with a
            padding mask).
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
        ValueError: for an unknown format or quantize mode, or arguments that
            do not apply to the format (nothing is written).
        UnsupportedOpsError: if TFLite needs ops outside the allowed sets.
        ExportVerificationError: if the artifact's outputs differ from Keras
            by more than the tolerance (nothing is left at `path`).

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
    # The artifact holds the merged model; Keras outputs come from the model
    # as given, so verification checks the merge as well as the conversion.
    merged = merge_adapters(model)
    path = os.fspath(path)
    signature = input_signature(merged, sample_inputs)
    batches = None
    if verify or sample_inputs is not None:
        batches = verification_batches(model, signature, sample_inputs)
    calibration = None
    if quantize == "int8":
        calibration = _calibration_data(signature, representative_data)

    notes = []
    checked = None
    try:
        with atomic_path(path, directory=format == "saved_model",
                         replaceable=_SAVED_MODEL) as tmp:
            runner = _write_and_load(
                format, merged, signature, tmp, quantize, allow_flex, opset,
                calibration,
            )
            ops = runner.ops()
            flex = tflite_format.flex_ops(ops) if format == "tflite" else ()
            if flex:
                notes.append(
                    f"Flex ops {', '.join(flex)}: the artifact "
                    f"{tflite_format.FLEX_DELEGATE_NOTE}."
                )
            if verify:
                checked = _check(
                    runner, model, signature, batches, format, quantize,
                    atol, notes,
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

    Raises:
        ValueError: naming the argument, what was received and what is
            allowed.
    """
    if format not in FORMATS:
        raise ValueError(
            f"Unrecognized format={format!r}. Supported formats are: "
            f"{list(FORMATS)}"
        )
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f"Unrecognized quantize={quantize!r}. Supported values are: "
            f"{list(QUANTIZE_MODES)}"
        )
    if quantize is not None and format != "tflite":
        raise ValueError(
            "`quantize` only applies to format='tflite'. Received: "
            f"quantize={quantize!r} with format={format!r}"
        )
    if quantize == "int8" and representative_data is None:
        raise ValueError(
            "quantize='int8' calibrates activations on `representative_data` "
            "(an iterable of input batches). Received: representative_data=None"
        )
    if representative_data is not None and quantize != "int8":
        raise ValueError(
            "`representative_data` is only used with quantize='int8'. "
            f"Received: quantize={quantize!r}"
        )
    if allow_flex and format != "tflite":
        raise ValueError(
            "`allow_flex` only applies to format='tflite'. Received: "
            f"allow_flex={allow_flex!r} with format={format!r}"
        )
    if opset is not None:
        if format != "onnx":
            raise ValueError(
                "`opset` only applies to format='onnx'. Received: "
                f"opset={opset!r} with format={format!r}"
            )
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
    if format == "saved_model" and os.path.isfile(path):
        raise ValueError(
            f"format='saved_model' writes a folder, but {os.fspath(path)!r} "
            "is an existing file."
        )
    if format != "saved_model" and os.path.isdir(path):
        raise ValueError(
            f"format={format!r} writes a file, but {os.fspath(path)!r} is an "
            "existing folder."
        )
    # A file where a parent folder should be, a folder of other files.
    check_target(path, directory=format == "saved_model", replaceable=_SAVED_MODEL)


def _calibration_data(signature, representative_data):
    batches = representative_data
    if callable(batches):
        batches = batches()
    flat = [
        to_flat_inputs(signature, batch, what="representative_data")
        for batch in batches
    ]
    if not flat:
        raise ValueError("`representative_data` yielded no batches.")
    return lambda: iter(flat)


def _write_and_load(
    format, model, signature, tmp, quantize, allow_flex, opset, calibration
):
    if format == "saved_model":
        saved_model_format.write_saved_model(model, signature, tmp)
        return saved_model_format.SavedModelRunner(tmp)
    if format == "tflite":
        with tempfile.TemporaryDirectory(prefix="klr_saved_model_") as folder:
            saved_model = os.path.join(folder, "saved_model")
            saved_model_format.write_saved_model(model, signature, saved_model)
            flatbuffer = tflite_format.convert_saved_model(
                saved_model,
                quantize=quantize,
                allow_flex=allow_flex,
                representative_data=calibration,
            )
        with open(tmp, "wb") as file:
            file.write(flatbuffer)
        return tflite_format.TFLiteRunner(tmp)
    onnx_format.write_onnx(
        model, signature, tmp, opset=opset or onnx_format.DEFAULT_OPSET
    )
    return onnx_format.ONNXRunner(tmp)


def _check(runner, model, signature, batches, format, quantize, atol, notes):
    def reference(batch):
        return keras_outputs(model, signature, batch)

    try:
        max_abs_diff, tolerance, batch_sizes = verify_outputs(
            runner, reference, batches, format=format, quantize=quantize,
            atol=atol,
        )
    except RuntimeError as error:
        if isinstance(error, ExportVerificationError) or not (
            format == "tflite" and tflite_format.is_missing_flex_delegate(error)
        ):
            raise
        message = (
            "Not verified: this Python LiteRT runtime has no Flex delegate, "
            "so the Flex ops cannot run here; test the artifact on a device "
            "that links it."
        )
        warnings.warn(message, stacklevel=3)
        notes.append(message)
        return None
    latency = median_latency_ms(runner, batches[0])
    return max_abs_diff, tolerance, batch_sizes, latency
