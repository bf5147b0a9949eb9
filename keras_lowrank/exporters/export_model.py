"""`export`: write a model for deployment, load it back, check it, report.

What differs between formats (the writer, the runtime, the options and
quantize modes each takes) comes from its `ExportFormat` record in
`keras_lowrank.exporters.formats`; nothing here checks a format's name.
The options are one `ExportOptions` (`export_options`), made from the
keyword arguments of `export` and passed on whole.
"""

import dataclasses
import os

import keras

from keras_lowrank._compat import tensorflow as tensorflow_compat
from keras_lowrank.exporters import accuracy as accuracy_lib
from keras_lowrank.exporters.artifact_checks import check_accuracy
from keras_lowrank.exporters.artifact_checks import check_lengths
from keras_lowrank.exporters.artifact_checks import check_outputs
from keras_lowrank.exporters.artifact_checks import merged_for_export
from keras_lowrank.exporters.artifact_checks import reference_outputs
from keras_lowrank.exporters.calibration import calibration_rows
from keras_lowrank.exporters.export_options import ExportOptions
from keras_lowrank.exporters.export_text_classifier import export_text_classifier
from keras_lowrank.exporters.formats import FORMATS
from keras_lowrank.exporters.formats import QUANTIZE_MODES
from keras_lowrank.exporters.report import ExportReport
from keras_lowrank.exporters.report import artifact_size
from keras_lowrank.exporters.sample_inputs import verification_batches
from keras_lowrank.exporters.signature import input_signature
from keras_lowrank.exporters.signature import keras_outputs
from keras_lowrank.exporters.text_inputs import is_texts
from keras_lowrank.exporters.text_inputs import tokenize
from keras_lowrank.exporters.verification import ExportVerificationError
from keras_lowrank.generation.export_dispatch import dispatch_export
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target
from keras_lowrank.utils.optional import tensorflow

# Quantize modes whose outputs move by about their own size: with
# `eval_data`, accuracy is their check instead of the max abs diff.
LOSSY_MODES = ("dynamic", "int8", "int16x8")

__all__ = [
    "FORMATS", "QUANTIZE_MODES", "ExportOptions", "export", "merged_for_export",
    "validate_export_arguments",
]

# Rows of `eval_data` verification compares output by output.
VERIFY_ROWS = 8


@tensorflow_compat.custom_gradients_released()
def export(model, path, format, options=None, **fields) -> ExportReport:
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
    The batch dimension of every input stays dynamic, and so does a dynamic
    sequence length: it is checked at a second length. Several exports of
    one model within `export_session()` merge it once, and share their
    SavedModel and Keras' outputs (`keras_lowrank.exporters.session`).

    A keras-hub causal LM with a KV cache (Llama, Gemma, GPT-2, ...) in
    `"tflite"` or `"onnx"` becomes a generation artifact instead, through
    `keras_lowrank.generation.dispatch_export`: prefill and decode graphs
    with an explicit cache, checked by greedy generation against Keras;
    it returns a `GenerationReport`. Such a model also exports to the
    generation-only formats `"litertlm"` (a LiteRT-LM bundle: a
    `LitertlmReport`) and `"onnx_genai"` (an ONNX Runtime GenAI folder: an
    `OnnxGenAIReport`), with `tokenizer=` its `tokenizer.json`; any other
    model asked for them is refused, and nothing is written.

    With `on_device_training=klr.OnDeviceTraining(...)` (LiteRT, a model
    with adapters), the artifact trains its adapters on the phone: signatures
    `infer`, `train`, `save` and `restore`, checked in LiteRT against Keras
    and TensorFlow; it returns a `keras_lowrank.on_device.report.
    TrainableReport` (`keras_lowrank.on_device.export`).

    With `metadata="text_classifier"` (LiteRT), the artifact is what a
    phone app runs on raw text: a keras-hub classifier with its tokenizer
    and labels in MediaPipe metadata, checked in MediaPipe's
    `TextClassifier` on strings (`keras_lowrank.exporters.text_classifier`,
    `export_text_classifier`).

    Args:
        model: a keras.Model (TensorFlow backend), with or without adapters.
        path: where to write: a folder for `"saved_model"`, a file otherwise.
        format: `"saved_model"`, `"tflite"` or `"onnx"` (the names in
            `keras_lowrank.exporters.formats`); for a causal LM also
            `"litertlm"` or `"onnx_genai"`
            (`keras_lowrank.generation.GENERATION_FORMATS`).
        options: optional `ExportOptions`, instead of keyword arguments.
        **fields: the options as keyword arguments: `quantize`,
            `sample_inputs`, `verify`, `allow_flex`, `opset`,
            `representative_data`, `atol`, `metadata`, `labels`,
            `calibration_data`, `eval_data`, `tokenizer`,
            `runtime_adapters`, `on_device_training` (each documented once,
            in `ExportOptions`).

    Returns:
        An `ExportReport`; for a causal LM in a generation format, that
        exporter's report.

    Raises:
        TypeError: `model` is not a keras.Model, an unknown keyword, or
            both `options` and keywords (nothing is written).
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
            Keras is finite, or its accuracy on `eval_data` is more than
            1.0 point below Keras' (`AccuracyDropError`); nothing is left
            at `path`.

    Example:
    ```python
    from keras_lowrank.exporters import export
    report = export(classifier, "classifier.tflite", "tflite",
                    quantize="dynamic")
    print(report)
    ```
    """
    options = ExportOptions.from_arguments(options, fields)
    _check_model(model)
    if options.on_device_training is not None:
        # Imported here: its tf.Module classes need TensorFlow at import,
        # and `import keras_lowrank` stays TensorFlow-free under JAX.
        from keras_lowrank.on_device.export import export_trainable

        return export_trainable(model, path, format, options)
    # A keras-hub causal LM in LiteRT, ONNX, LiteRT-LM or ONNX Runtime
    # GenAI: a generation artifact (prefill and decode with a KV cache),
    # keras_lowrank.generation; another model in the last two: refused.
    generation = dispatch_export(model, path, format, options)
    if generation is not None:
        return generation
    export_format = validate_export_arguments(path, format, options)
    _require_tensorflow()
    if options.metadata is not None:
        return export_text_classifier(model, path, options)
    return _export_graph(model, os.fspath(path), export_format, options)


def validate_export_arguments(path, format, options=None, **fields):
    """Checks every argument of `export` that does not need the model.

    Runs before any slow work, `path` included: what stands there must be
    replaceable by the artifact (see `keras_lowrank.utils.atomic.check_target`).
    Which options and quantize modes a format takes is its record's
    (`ExportOptions.check_format`).

    Args:
        path: where `export` would write.
        format: the format's name.
        options: optional `ExportOptions`, instead of keyword arguments.
        **fields: the options as keyword arguments (`ExportOptions`).

    Returns:
        The format's `ExportFormat` record.

    Raises:
        ValueError: naming the argument, what was received and what is
            allowed.
    """
    options = ExportOptions.from_arguments(
        options, fields, "validate_export_arguments"
    )
    export_format = options.check_format(format)
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
    return export_format


# === The graph export: Keras' side, the artifact, the report ===


@dataclasses.dataclass
class _KerasSide:
    """What is known before anything is written: inputs and Keras' outputs."""

    signature: object
    evaluation: object  # accuracy_lib's evaluation set, or None
    sample_inputs: object  # token inputs, texts tokenized
    merged: keras.Model  # what the artifact holds
    batches: object
    expected: object  # Keras' outputs on `batches`, or None
    writer_options: dict
    keras_accuracy: float | None


def _export_graph(model, path, export_format, options):
    keras_side = _keras_side(model, path, export_format, options)
    try:
        with atomic_path(path, directory=export_format.directory,
                         replaceable=export_format.replaceable) as tmp:
            export_format.write(
                keras_side.merged, keras_side.signature, tmp,
                **keras_side.writer_options,
            )
            runner = export_format.runner(tmp)
            artifact = _check_artifact(model, runner, export_format, options,
                                       keras_side)
    except ExportVerificationError as error:
        error.args = (
            f"{error.args[0]} The artifact was removed; {path!r} is unchanged.",
        )
        raise
    return _report(path, export_format, options, runner, keras_side, artifact)


def _keras_side(model, path, export_format, options):
    """Inputs, Keras' outputs, calibration rows: all before writing."""
    sample_inputs = options.sample_inputs
    # Texts become token inputs here; the artifact takes token ids.
    signature = input_signature(
        model, None if is_texts(sample_inputs) else sample_inputs
    )
    evaluation = None
    if options.eval_data is not None:
        evaluation = accuracy_lib.evaluation_set(model, signature, options.eval_data)
    if is_texts(sample_inputs):
        sample_inputs = tokenize(model, sample_inputs)
    elif sample_inputs is None and evaluation is not None:
        sample_inputs = {k: v[:VERIFY_ROWS] for k, v in evaluation.flat.items()}
    # The artifact holds the merged model; Keras outputs come from the model
    # as given, so verification checks the merge as well as the conversion.
    merged = merged_for_export(model)
    batches = expected = None
    if options.verify or sample_inputs is not None:
        batches = verification_batches(model, signature, sample_inputs)
    if options.verify:
        expected = reference_outputs(model, signature, batches,
                                     export_format.name, path)
    keras_accuracy = None
    writer_options = _writer_options(model, signature, export_format, options)
    if evaluation is not None:
        keras_accuracy = accuracy_lib.accuracy_of(
            accuracy_lib.predictions(
                lambda batch: keras_outputs(model, signature, batch), evaluation.flat,
                accuracy_lib.KERAS_BATCH_SIZE,
            ),
            evaluation.labels,
        )
    return _KerasSide(signature, evaluation, sample_inputs, merged, batches,
                      expected, writer_options, keras_accuracy)


def _writer_options(model, signature, export_format, options):
    """The keyword arguments of the format's writer: those it names."""
    values = {
        "quantize": options.quantize,
        "allow_flex": options.allow_flex,
        "opset": options.opset,
        "representative_data": None,
    }
    if options.quantize in export_format.calibrated_modes:
        rows = calibration_rows(model, signature, options.calibration,
                                options.calibration_name)
        values["representative_data"] = lambda: iter(rows)
    return {name: values[name] for name in export_format.options}


def _check_artifact(model, runner, export_format, options, keras_side):
    """The artifact's ops and notes, and with `verify` its checks."""
    quantize, atol = options.quantize, options.atol
    evaluation = keras_side.evaluation
    ops = runner.ops()
    notes = list(export_format.notes(ops))
    checked = {}
    if options.verify:
        bound = evaluation is None or quantize not in LOSSY_MODES or atol is not None
        checked = check_outputs(
            runner, export_format, keras_side.batches, keras_side.expected,
            quantize, atol, notes, bound=bound,
        )
        if checked:
            checked.update(check_lengths(
                model, keras_side.signature, runner, export_format,
                keras_side.sample_inputs, keras_side.batches, quantize, atol,
                bound,
            ))
        if checked and evaluation is not None:
            checked.update(check_accuracy(
                runner, evaluation, keras_side.keras_accuracy,
                export_format.name, quantize,
            ))
    precisions, float_layers = {}, ()
    if quantize is not None and hasattr(runner, "precisions"):
        precisions = runner.precisions()
    if quantize in export_format.calibrated_modes:
        float_layers = runner.float_layers()
    return {"ops": ops, "notes": tuple(notes), "checked": checked,
            "precisions": precisions, "float_layers": float_layers}


def _report(path, export_format, options, runner, keras_side, artifact):
    checked = artifact["checked"]
    evaluation = keras_side.evaluation
    return ExportReport(
        format=export_format.name,
        path=path,
        size_bytes=artifact_size(path),
        max_abs_diff=checked.get("max_abs_diff"),
        tolerance=checked.get("tolerance"),
        latency_ms=checked.get("latency_ms"),
        ops=artifact["ops"],
        quantize=options.quantize,
        batch_sizes_checked=checked.get("batch_sizes", ()),
        input_names=tuple(runner.input_names),
        output_names=tuple(runner.output_names),
        verified=bool(checked),
        runtime=runner.runtime,
        notes=artifact["notes"],
        input_shapes=getattr(runner, "input_shapes", {}),
        sequence_lengths_checked=checked.get("sequence_lengths", ()),
        latency_by_length=checked.get("latency_by_length", {}),
        precisions=artifact["precisions"],
        float_layers=artifact["float_layers"],
        accuracy=checked.get("accuracy"),
        keras_accuracy=keras_side.keras_accuracy,
        eval_examples=0 if evaluation is None else len(evaluation),
    )


# === Preconditions ===


def _check_model(model):
    """Export takes a keras.Model; anything else fails here, by its type."""
    if isinstance(model, keras.Model):
        return
    name = getattr(model, "name", None)
    shown = f"{type(model).__name__} '{name}'" if isinstance(name, str) else (
        f"{type(model).__name__} {model!r:.60}"
    )
    raise TypeError(
        "export expected a keras.Model (Functional, Sequential, or a "
        f"keras-hub Backbone or Task). Received: model={shown}. Pass the "
        "model itself (a saved one: keras.saving.load_model(path))."
    )


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
