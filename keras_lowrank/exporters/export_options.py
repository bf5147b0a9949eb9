"""`ExportOptions`: every choice `klr.export` takes besides model, path, format.

One frozen record, checked once when it is made, that travels whole from
`export` to what it hands the model to: the verified graph export
(`export_model`), the MediaPipe text classifier
(`export_text_classifier`) and the generation hook
(`keras_lowrank.generation.dispatch_export`). Whether an option applies
to a format is the format record's to say (`check_format`); `tokenizer`
belongs to generation export only, which the hook checks.
"""

import dataclasses
import math
import os

from keras_lowrank.exporters.export_format import ExportFormat
from keras_lowrank.exporters.formats import QUANTIZE_MODES
from keras_lowrank.exporters.formats import RUNTIME_ONLY_QUANTIZE_MODES
from keras_lowrank.exporters.formats import all_formats
from keras_lowrank.exporters.formats import calibrated_modes
from keras_lowrank.exporters.formats import formats_with_option
from keras_lowrank.exporters.formats import get_format
from keras_lowrank.on_device.options import OnDeviceTraining

__all__ = ["ExportOptions"]


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """The options of `klr.export`, checked when made.

    `klr.export(model, path, format, quantize="dynamic")` builds one from
    its keyword arguments; `klr.export(model, path, format,
    options=ExportOptions(quantize="dynamic"))` takes one whole.

    Args:
        quantize: None (float32), or a mode in `QUANTIZE_MODES`. TFLite:
            `"float16"`, `"dynamic"` (int8 weights), `"int8"` (int8
            per-channel weights and int8 activations, with the ops that
            break accuracy kept in float: `tflite_quantization`) or
            `"int16x8"` (int16 activations, int8 weights). ONNX:
            `"dynamic"` or `"int8"` (static QDQ, `onnx_quantization`).
            `"int8"` and `"int16x8"` need `calibration_data`. A causal LM
            exported for generation takes None or `"dynamic"`.
        sample_inputs: inputs to verify with: a dict keyed by input name, a
            list in input order, one array, or (for a model with its
            preprocessor) a list of texts. Default: the first rows of
            `eval_data`, else made from the input specs (for keras-hub text
            models, token batches with a padding mask). For a keras-hub text
            model, token ids must lie below the backbone's
            `vocabulary_size` and sequences be at most its
            `max_sequence_length` long. Batch-1 latency is measured at their
            median and at their maximum token length.
        verify: bool. Whether to run the artifact and compare it with Keras.
            Default True.
        allow_flex: bool. TFLite only. Keep TensorFlow ops outside the
            builtins as Flex ops instead of failing.
        opset: int. ONNX only. The opset version, default 15.
        representative_data: the earlier name of `calibration_data`, for
            an iterable (or a callable returning one) of input batches.
        atol: float >= 0. The largest allowed absolute difference. Default:
            1e-4 for float32; for a quantize mode,
            `max(DEFAULT_TOLERANCES[quantize], RELATIVE_TOLERANCES[quantize]
            * scale)`, where `scale` is the largest absolute Keras output on
            the checked batches: float16 `max(1e-2, 0.01 * scale)`, dynamic
            `max(5e-2, 0.25 * scale)`, int8 `max(1e-1, 0.25 * scale)`
            (measurements in `keras_lowrank.exporters.verification`). A
            given `atol` is used as is, for every mode. With `eval_data`,
            the lossy modes (`dynamic`, `int8`, `int16x8`) are checked on
            accuracy instead, unless `atol` is given.
        metadata: None, or `"text_classifier"` (TFLite): a `.tflite` for
            MediaPipe's `TextClassifier` that takes raw text.
        labels: with `metadata`: the label names, one per class. Default:
            the model's `label_names`, else `"0"`, `"1"`, ...
        calibration_data: real examples for the calibrated quantize modes:
            texts (tokenized by the model's preprocessor), a dict of arrays
            (one example per row), a `tf.data.Dataset` of those or of
            `(inputs, labels)`, or an iterable of input batches.
        eval_data: `(texts or inputs, labels)`: every example runs through
            Keras and through the artifact in its runtime, and an artifact
            more than 1.0 point of accuracy below Keras fails
            (`accuracy.MAX_ACCURACY_DROP`).
        tokenizer: str or path. The model's Hugging Face `tokenizer.json`,
            for a keras-hub causal LM exported for generation only (a
            graph export refuses it). `"litertlm"` and `"onnx_genai"`
            need it: it goes into the artifact, with the
            `tokenizer_config.json` beside it (chat template, start and
            stop tokens). Default None: a model holds no path to its
            folder's tokenizer, so pass it (`keras-lowrank export` takes
            MODEL/tokenizer.json of a model folder).
        runtime_adapters: for a keras-hub causal LM exported for
            generation only: keep the LoRA factors out of the weights, as
            inputs of the artifact (zeros: the base model), so that
            `write_runtime_adapter` can write an adapter file per task for
            one base artifact. True, or for `"litertlm"` the runtime's rank
            16 or 32. Default False: adapters are merged.
        on_device_training: None, or a `klr.OnDeviceTraining`: `"tflite"`
            only, a model with adapters: an artifact that trains them in
            LiteRT (signatures `infer`, `train`, `save`, `restore`;
            `keras_lowrank.on_device`). `labels` then names the classes.

    Raises:
        ValueError: a value no format takes (an unknown quantize mode, an
            opset or atol out of range, both calibration names, labels
            without metadata, a tokenizer that is not a path), naming what
            was received and what is allowed.

    Example:
    ```python
    from keras_lowrank.exporters import ExportOptions, export
    options = ExportOptions(quantize="int8", calibration_data=texts)
    report = export(classifier, "classifier.tflite", "tflite",
                    options=options)
    ```
    """

    quantize: str | None = None
    sample_inputs: object = None
    verify: bool = True
    allow_flex: bool = False
    opset: int | None = None
    representative_data: object = None
    atol: float | None = None
    metadata: str | None = None
    labels: object = None
    calibration_data: object = None
    eval_data: object = None
    tokenizer: str | None = None
    runtime_adapters: bool | int = False
    on_device_training: object = None

    def __post_init__(self):
        tokenizer = self.tokenizer
        if tokenizer is not None:
            if not isinstance(tokenizer, (str, os.PathLike)) or not os.fspath(tokenizer):
                raise ValueError(
                    "`tokenizer` must be the path of a tokenizer.json file. "
                    f"Received: tokenizer={tokenizer!r}"
                )
            object.__setattr__(self, "tokenizer", os.fspath(tokenizer))
        adapters = self.runtime_adapters
        if not (isinstance(adapters, bool)
                or (isinstance(adapters, int) and adapters in (16, 32))):
            raise ValueError(
                "`runtime_adapters` must be False, True, or a LiteRT-LM LoRA "
                f"rank (16 or 32). Received: runtime_adapters={self.runtime_adapters!r}")
        modes = (*QUANTIZE_MODES, *RUNTIME_ONLY_QUANTIZE_MODES)
        if self.quantize not in modes:
            raise ValueError(
                f"Unrecognized quantize={self.quantize!r}. Supported values "
                f"are: {list(modes)}"
            )
        if self.representative_data is not None and self.calibration_data is not None:
            raise ValueError(
                "Pass `calibration_data` (or its earlier name "
                "`representative_data`), not both. Received: both"
            )
        training = self.on_device_training
        if training is not None and not isinstance(training, OnDeviceTraining):
            raise ValueError(
                "`on_device_training` must be a klr.OnDeviceTraining. Received: "
                f"on_device_training={training!r:.80}")
        if self.metadata is None and self.labels is not None and training is None:
            raise ValueError(
                "`labels` are stored in the metadata, so they need "
                f"metadata='text_classifier'. Received: labels={self.labels!r} "
                "with metadata=None"
            )
        opset = self.opset
        if opset is not None and (
            isinstance(opset, bool) or not isinstance(opset, int) or opset < 1
        ):
            raise ValueError(
                f"`opset` must be a positive integer. Received: opset={opset!r}"
            )
        atol = self.atol
        if atol is not None and (
            isinstance(atol, bool)
            or not isinstance(atol, (int, float))
            or not math.isfinite(atol)
            or atol < 0
        ):
            raise ValueError(
                f"`atol` must be a finite number >= 0. Received: atol={atol!r}"
            )

    @classmethod
    def from_arguments(cls, options=None, fields=None, function="export"):
        """`options` as given, or one made from keyword arguments `fields`.

        Args:
            options: None or an `ExportOptions`.
            fields: dict of keyword arguments, the names of the fields.
            function: str. The caller's name, for the messages.

        Raises:
            TypeError: an unknown keyword, `options` that is not an
                `ExportOptions`, or both `options` and keywords.
        """
        fields = fields or {}
        if options is None:
            unknown = sorted(set(fields) - set(cls.names()))
            if unknown:
                raise TypeError(
                    f"{function}() got unexpected keyword arguments {unknown}. "
                    f"Its options are: {list(cls.names())}"
                )
            return cls(**fields)
        if not isinstance(options, cls):
            raise TypeError(
                f"{function}() takes `options` as an ExportOptions. Received: "
                f"options={options!r:.80} of type {type(options).__name__}"
            )
        if fields:
            raise TypeError(
                f"{function}() takes its options as keyword arguments or as "
                "`options=ExportOptions(...)`, not both: use "
                "`options.replace(...)` to change some. Received: options and "
                f"{sorted(fields)}"
            )
        return options

    @classmethod
    def names(cls):
        """The field names, in order."""
        return tuple(field.name for field in dataclasses.fields(cls))

    def replace(self, **changes):
        """A copy with `changes`, checked again."""
        return dataclasses.replace(self, **changes)

    @property
    def calibration(self):
        """`calibration_data`, else its earlier name's value, else None."""
        if self.calibration_data is not None:
            return self.calibration_data
        return self.representative_data

    @property
    def calibration_name(self):
        """The argument name the calibration examples were given under."""
        if self.calibration_data is None and self.representative_data is not None:
            return "representative_data"
        return "calibration_data"

    def check_format(self, format) -> ExportFormat:
        """The record of `format`, once every option is one it takes.

        Raises:
            ValueError: an unknown format, or an option the format does not
                take (a quantize mode, Flex ops, an opset, calibration data
                without a calibrated mode or none with one, metadata),
                naming it, what was received and what is allowed.
        """
        export_format = get_format(format)
        quantize = self.quantize
        if quantize not in export_format.quantize_modes:
            if "quantize" not in export_format.options:
                raise _not_an_option("quantize", quantize, format)
            raise ValueError(
                f"format={format!r} supports quantize in "
                f"{list(export_format.quantize_modes)}. Received: "
                f"quantize={quantize!r}"
            )
        calibrated = quantize in export_format.calibrated_modes
        if calibrated and self.calibration is None:
            raise ValueError(
                f"quantize={quantize!r} calibrates activations on "
                "`calibration_data` (real examples: texts, arrays or batches). "
                "Received: calibration_data=None, representative_data=None"
            )
        if self.calibration is not None and not calibrated:
            modes = [m for m in calibrated_modes() if m in export_format.quantize_modes]
            raise ValueError(
                f"`{self.calibration_name}` is only used with "
                f"{_one_of('quantize', modes or calibrated_modes())}. "
                f"Received: quantize={quantize!r}"
            )
        if self.metadata is not None and (
            self.metadata not in export_format.metadata_kinds
        ):
            kinds = [k for r in all_formats() for k in r.metadata_kinds]
            writers = [r.name for r in all_formats() if r.metadata_kinds]
            raise ValueError(
                f"Unrecognized metadata={self.metadata!r} for format={format!r}. "
                f"Supported: metadata in {kinds} with {_one_of('format', writers)}"
            )
        if self.allow_flex and "allow_flex" not in export_format.options:
            raise _not_an_option("allow_flex", self.allow_flex, format)
        if self.opset is not None and "opset" not in export_format.options:
            raise _not_an_option("opset", self.opset, format)
        if self.tokenizer is not None:
            # Generation export takes it before the format records are
            # asked (`keras_lowrank.generation.dispatch_export`).
            raise ValueError(
                "`tokenizer` (a tokenizer.json) only applies to a keras-hub "
                "causal LM with a KV cache, exported for generation; "
                f"format={format!r} exports this model as a graph, which "
                f"takes none. Received: tokenizer={self.tokenizer!r}. Leave "
                "`tokenizer` out."
            )
        if self.runtime_adapters is not False:
            raise ValueError(
                "`runtime_adapters` only applies to a keras-hub causal LM "
                "with a KV cache, exported for generation; "
                f"format={format!r} exports this model as a graph. Received: "
                f"runtime_adapters={self.runtime_adapters!r}. Merge the "
                "adapters into the graph (leave `runtime_adapters` out).")
        return export_format


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
