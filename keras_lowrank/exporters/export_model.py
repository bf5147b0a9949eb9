"""`export`: write a model for deployment, load it back, check it, report.

What differs between formats (the writer, the runtime, the options and
quantize modes each takes) comes from its `ExportFormat` record in
`keras_lowrank.exporters.formats`; nothing here checks a format's name.
"""

import math
import os

import keras

from keras_lowrank.exporters import accuracy as accuracy_lib
from keras_lowrank.exporters.artifact_checks import check_accuracy
from keras_lowrank.exporters.artifact_checks import check_lengths
from keras_lowrank.exporters.artifact_checks import check_outputs
from keras_lowrank.exporters.artifact_checks import merged_for_export
from keras_lowrank.exporters.artifact_checks import reference_outputs
from keras_lowrank.exporters.calibration import calibration_rows
from keras_lowrank.exporters.formats import FORMATS
from keras_lowrank.exporters.formats import QUANTIZE_MODES
from keras_lowrank.exporters.formats import all_formats
from keras_lowrank.exporters.formats import calibrated_modes
from keras_lowrank.exporters.formats import formats_with_option
from keras_lowrank.exporters.formats import get_format
from keras_lowrank.exporters.report import ExportReport
from keras_lowrank.exporters.report import artifact_size
from keras_lowrank.exporters.sample_inputs import verification_batches
from keras_lowrank.exporters.signature import input_signature
from keras_lowrank.exporters.signature import keras_outputs
from keras_lowrank.exporters.text_inputs import is_texts
from keras_lowrank.exporters.text_inputs import tokenize
from keras_lowrank.exporters.verification import ExportVerificationError
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target
from keras_lowrank.utils.optional import tensorflow

# Quantize modes whose outputs move by about their own size: with
# `eval_data`, accuracy is their check instead of the max abs diff.
LOSSY_MODES = ("dynamic", "int8", "int16x8")

__all__ = [
    "FORMATS", "QUANTIZE_MODES", "export", "merged_for_export",
    "validate_export_arguments",
]

# Rows of `eval_data` verification compares output by output.
VERIFY_ROWS = 8


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
    metadata=None,
    labels=None,
    calibration_data=None,
    eval_data=None,
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
    The batch dimension of every input stays dynamic, and so does a dynamic
    sequence length: it is checked at a second length.

    A keras-hub causal LM with a KV cache (Llama, Gemma, GPT-2, ...) in
    `"tflite"` or `"onnx"` becomes a generation artifact instead, through
    `keras_lowrank.generation.dispatch_export`: prefill and decode graphs
    with an explicit cache, checked by greedy generation against Keras;
    it returns a `GenerationReport`.

    With `metadata="text_classifier"` (LiteRT), the artifact is what a
    phone app runs on raw text: a keras-hub classifier with its tokenizer
    and labels in MediaPipe metadata, checked in MediaPipe's
    `TextClassifier` on strings (`keras_lowrank.exporters.text_classifier`,
    `export_text_classifier`).

    Args:
        model: a Keras model (TensorFlow backend), with or without adapters.
        path: where to write: a folder for `"saved_model"`, a file otherwise.
        format: `"saved_model"`, `"tflite"` or `"onnx"` (the names in
            `keras_lowrank.exporters.formats`).
        quantize: `None` (float32). TFLite: `"float16"`, `"dynamic"` (int8
            weights), `"int8"` (int8 per-channel weights and int8
            activations, with the ops that break accuracy kept in float:
            `tflite_quantization`) or `"int16x8"` (int16 activations, int8
            weights). ONNX: `"dynamic"` or `"int8"` (static QDQ,
            `onnx_quantization`). `"int8"` and `"int16x8"` need
            `calibration_data`.
        sample_inputs: optional inputs to verify with: a dict keyed by input
            name, a list in input order, one array, or (for a model with its
            preprocessor) a list of texts. Default: the first rows of
            `eval_data`, else made from the input specs (for keras-hub text
            models, token batches with a padding mask). For a keras-hub text
            model, token ids must lie below the backbone's
            `vocabulary_size` and sequences be at most its
            `max_sequence_length` long. Batch-1 latency is measured at their
            median and at their maximum token length.
        verify: whether to run and compare the artifact. Default True.
        allow_flex: TFLite only. Keep TensorFlow ops outside the builtins as
            Flex ops instead of failing.
        opset: ONNX only. The opset version, default 15.
        representative_data: the earlier name of `calibration_data`, for
            an iterable (or a callable returning one) of input batches.
        atol: the largest allowed absolute difference. Default: 1e-4 for
            float32; for a quantize mode, `max(DEFAULT_TOLERANCES[quantize],
            RELATIVE_TOLERANCES[quantize] * scale)`, where `scale` is the
            largest absolute Keras output on the checked batches: float16
            `max(1e-2, 0.01 * scale)`, dynamic `max(5e-2, 0.25 * scale)`,
            int8 `max(1e-1, 0.25 * scale)` (measurements in
            `keras_lowrank.exporters.verification`). A given `atol` is used
            as is, for every mode. With `eval_data`, the lossy modes
            (`dynamic`, `int8`, `int16x8`) are checked on accuracy instead,
            unless `atol` is given.
        metadata: None, or `"text_classifier"` (TFLite): a `.tflite` for
            MediaPipe's `TextClassifier` that takes raw text.
        labels: with `metadata`: the label names, one per class. Default:
            the model's `label_names`, else `"0"`, `"1"`, ...
        calibration_data: real examples for the calibrated quantize modes:
            texts (tokenized by the model's preprocessor), a dict of arrays
            (one example per row), a `tf.data.Dataset` of those or of
            `(inputs, labels)`, or an iterable of input batches.
        eval_data: optional `(texts or inputs, labels)`: every example runs
            through Keras and through the artifact in its runtime, and an
            artifact more than 1.0 point of accuracy below Keras fails
            (`accuracy.MAX_ACCURACY_DROP`).

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
    # A keras-hub causal LM in LiteRT or ONNX: a generation artifact
    # (prefill and decode with a KV cache), keras_lowrank.generation.
    from keras_lowrank.generation import dispatch_export

    generation = dispatch_export(
        model, path, format, quantize=quantize, sample_inputs=sample_inputs,
        verify=verify, allow_flex=allow_flex, opset=opset,
        representative_data=representative_data, atol=atol, metadata=metadata,
        labels=labels, calibration_data=calibration_data, eval_data=eval_data,
    )
    if generation is not None:
        return generation
    validate_export_arguments(
        path, format, quantize, allow_flex, opset, representative_data, atol,
        metadata=metadata, labels=labels, calibration_data=calibration_data,
    )
    _require_tensorflow()
    calibration_name = "calibration_data"
    if calibration_data is None:
        calibration_data = representative_data
        calibration_name = "representative_data"
    if metadata is not None:
        from keras_lowrank.exporters.export_text_classifier import export_text_classifier

        return export_text_classifier(
            model, path, quantize=quantize, labels=labels,
            sample_inputs=sample_inputs, calibration_data=calibration_data,
            eval_data=eval_data, verify=verify, atol=atol,
        )
    export_format = get_format(format)
    path = os.fspath(path)
    # Texts become token inputs here; the artifact takes token ids.
    signature = input_signature(
        model, None if is_texts(sample_inputs) else sample_inputs
    )
    evaluation = None
    if eval_data is not None:
        evaluation = accuracy_lib.evaluation_set(model, signature, eval_data)
    if is_texts(sample_inputs):
        sample_inputs = tokenize(model, sample_inputs)
    elif sample_inputs is None and evaluation is not None:
        sample_inputs = {k: v[:VERIFY_ROWS] for k, v in evaluation.flat.items()}
    # The artifact holds the merged model; Keras outputs come from the model
    # as given, so verification checks the merge as well as the conversion.
    merged = merged_for_export(model)
    batches = expected = None
    if verify or sample_inputs is not None:
        batches = verification_batches(model, signature, sample_inputs)
    if verify:
        expected = reference_outputs(model, signature, batches, format, path)
    options = {
        "quantize": quantize,
        "allow_flex": allow_flex,
        "opset": opset,
        "representative_data": None,
    }
    if quantize in export_format.calibrated_modes:
        rows = calibration_rows(model, signature, calibration_data, calibration_name)
        options["representative_data"] = lambda: iter(rows)
    keras_accuracy = None
    if evaluation is not None:
        keras_accuracy = accuracy_lib.accuracy_of(
            accuracy_lib.predictions(
                lambda batch: keras_outputs(model, signature, batch), evaluation.flat
            ),
            evaluation.labels,
        )

    notes = []
    checked = {}
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
                bound = evaluation is None or quantize not in LOSSY_MODES or atol is not None
                checked = check_outputs(
                    runner, export_format, batches, expected, quantize, atol,
                    notes, bound=bound,
                )
                if checked:
                    checked.update(check_lengths(
                        model, signature, runner, export_format, sample_inputs,
                        batches, quantize, atol, bound,
                    ))
                if checked and evaluation is not None:
                    checked.update(check_accuracy(
                        runner, evaluation, keras_accuracy, format, quantize
                    ))
            precisions, float_layers = {}, ()
            if quantize is not None and hasattr(runner, "precisions"):
                precisions = runner.precisions()
            if quantize in export_format.calibrated_modes:
                float_layers = runner.float_layers()
    except ExportVerificationError as error:
        error.args = (
            f"{error.args[0]} The artifact was removed; {path!r} is unchanged.",
        )
        raise
    max_abs_diff = checked.get("max_abs_diff")
    return ExportReport(
        format=format,
        path=path,
        size_bytes=artifact_size(path),
        max_abs_diff=max_abs_diff,
        tolerance=checked.get("tolerance"),
        latency_ms=checked.get("latency_ms"),
        ops=ops,
        quantize=quantize,
        batch_sizes_checked=checked.get("batch_sizes", ()),
        input_names=tuple(runner.input_names),
        output_names=tuple(runner.output_names),
        verified=bool(checked),
        runtime=runner.runtime,
        notes=tuple(notes),
        input_shapes=getattr(runner, "input_shapes", {}),
        sequence_lengths_checked=checked.get("sequence_lengths", ()),
        latency_by_length=checked.get("latency_by_length", {}),
        precisions=precisions,
        float_layers=float_layers,
        accuracy=checked.get("accuracy"),
        keras_accuracy=keras_accuracy,
        eval_examples=0 if evaluation is None else len(evaluation),
    )


def validate_export_arguments(
    path,
    format,
    quantize=None,
    allow_flex=False,
    opset=None,
    representative_data=None,
    atol=None,
    *,
    metadata=None,
    labels=None,
    calibration_data=None,
):
    """Checks every argument of `export` that does not need the model.

    Runs before any slow work, `path` included: what stands there must be
    replaceable by the artifact (see `keras_lowrank.utils.atomic.check_target`).
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
    if representative_data is not None and calibration_data is not None:
        raise ValueError(
            "Pass `calibration_data` (or its earlier name "
            "`representative_data`), not both. Received: both"
        )
    calibration, name = calibration_data, "calibration_data"
    if calibration_data is None:
        calibration, name = representative_data, "representative_data"
    if quantize in export_format.calibrated_modes and calibration is None:
        raise ValueError(
            f"quantize={quantize!r} calibrates activations on "
            "`calibration_data` (real examples: texts, arrays or batches). "
            "Received: calibration_data=None, representative_data=None"
        )
    if calibration is not None and quantize not in export_format.calibrated_modes:
        modes = [m for m in calibrated_modes() if m in export_format.quantize_modes]
        raise ValueError(
            f"`{name}` is only used with "
            f"{_one_of('quantize', modes or calibrated_modes())}. Received: "
            f"quantize={quantize!r}"
        )
    if metadata is not None:
        if metadata not in export_format.metadata_kinds:
            kinds = [k for r in all_formats() for k in r.metadata_kinds]
            writers = [r.name for r in all_formats() if r.metadata_kinds]
            raise ValueError(
                f"Unrecognized metadata={metadata!r} for format={format!r}. "
                f"Supported: metadata in {kinds} with {_one_of('format', writers)}"
            )
    elif labels is not None:
        raise ValueError(
            "`labels` are stored in the metadata, so they need "
            f"metadata='text_classifier'. Received: labels={labels!r} with "
            "metadata=None"
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
