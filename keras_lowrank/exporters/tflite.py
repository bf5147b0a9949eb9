"""LiteRT (TFLite): conversion from a SavedModel, and running with LiteRT.

Only builtin ops by default, the set every LiteRT runtime on a phone has. A
model that needs TensorFlow ops outside it fails with the op names, unless
`allow_flex=True` adds `SELECT_TF_OPS`; the app must then ship the Flex
delegate (`org.tensorflow:tensorflow-lite-select-tf-ops` on Android,
`TensorFlowLiteSelectTfOps` on iOS), which adds several MB.
"""

import contextlib
import re
import warnings

import numpy as np

from keras_lowrank._compat import litert as litert_compat
from keras_lowrank._compat import tensorflow as tensorflow_compat
from keras_lowrank.exporters import tflite_quantization
from keras_lowrank.exporters.int16_tracing import int16_friendly_tracing
from keras_lowrank.exporters.export_format import ExportFormat
from keras_lowrank.exporters.saved_model import SIGNATURE_KEY
from keras_lowrank.exporters.saved_model import write_saved_model
from keras_lowrank.exporters.session import shared_saved_model
from keras_lowrank.exporters.session import signature_key
from keras_lowrank.utils.optional import import_optional
from keras_lowrank.utils.optional import tensorflow as tf

QUANTIZE_MODES = (None, "float16", "dynamic", "int8", "int16x8")
# The modes that calibrate activations on real examples.
CALIBRATED_MODES = ("int8", "int16x8")
FLEX_DELEGATE_NOTE = (
    "needs the Flex delegate: link org.tensorflow:tensorflow-lite-select-"
    "tf-ops (Android) or TensorFlowLiteSelectTfOps (iOS)"
)

_SELECT_OPS = re.compile(r"TF Select ops: ([\w.]+(?:, [\w.]+)*)")
_CUSTOM_OPS = re.compile(r"Custom ops: ([\w.]+(?:, [\w.]+)*)")
_NOT_FLEX = re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op")


class UnsupportedOpsError(ValueError):
    """The model holds ops the requested LiteRT op sets cannot run.

    Attributes:
        ops: sorted TensorFlow op names, e.g. `("MatrixDeterminant",)`.
        flex: True when the Flex delegate could run them (`allow_flex=True`).
    """

    def __init__(self, message, ops, flex):
        super().__init__(message)
        self.ops = tuple(ops)
        self.flex = flex


def write_tflite(
    model, signature, path, *, quantize=None, allow_flex=False,
    representative_data=None,
):
    """Writes `model` as a `.tflite` file at `path`.

    The model goes through a SavedModel in a temporary folder
    (`write_saved_model`, the signature only: `endpoint=False`), then
    `convert_saved_model`, whose arguments the keyword arguments are.
    Within an `export_session`, the conversions of one model and signature
    read one SavedModel (one per tracing).
    """
    def write(saved_model):
        with tracing_for(quantize):
            write_saved_model(model, signature, saved_model, endpoint=False)

    key = ("serving", signature_key(signature), tracing_name(quantize))
    with shared_saved_model(key, model, write) as saved_model:
        flatbuffer = convert_saved_model(
            saved_model,
            quantize=quantize,
            allow_flex=allow_flex,
            representative_data=representative_data,
        )
    with open(path, "wb") as file:
        file.write(flatbuffer)


def convert_saved_model(
    saved_model_dir, *, quantize=None, allow_flex=False, representative_data=None,
    signature_keys=(SIGNATURE_KEY,), resource_variables=False,
):
    """Converts a SavedModel's serving signature into a `.tflite` flatbuffer.

    Args:
        saved_model_dir: a SavedModel folder from `write_saved_model`.
        quantize: `None` (float32), `"float16"` (float16 weights),
            `"dynamic"` (int8 weights, float activations), `"int8"` (int8
            per-channel weights and int8 activations where that keeps the
            accuracy, float elsewhere: `tflite_quantization`) or
            `"int16x8"` (int16 activations, int8 weights); the calibrated
            modes use `representative_data`. The model's inputs and outputs
            keep their float32 / int32 types.
        allow_flex: whether TensorFlow ops outside the builtins may be kept
            as Flex ops.
        representative_data: for `"int8"`: a callable returning an iterable
            of `{name: array}` batches.
        signature_keys: the SavedModel signatures to convert, each one a
            LiteRT signature.
        resource_variables: keep the variables that a signature assigns
            as variables (a trainable artifact); others become constants.

    Returns:
        The flatbuffer as bytes.

    Raises:
        UnsupportedOpsError: if the model needs ops the op sets lack.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=list(signature_keys)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = resource_variables
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int16x8":
        tflite_quantization.configure_int16x8(converter, representative_data)
    if allow_flex:
        converter.target_spec.supported_ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    try:
        with warnings.catch_warnings():
            # Calibration runs the deprecated tf.lite.Interpreter inside the
            # converter; that warning is not about the user's code.
            warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter")
            if quantize == "int8":
                return tflite_quantization.quantize_int8(converter, representative_data)
            return tensorflow_compat.converted(converter)
    except Exception as error:
        unsupported = _unsupported_ops_error(str(error), allow_flex)
        if unsupported is None:
            raise
        raise unsupported from error


def tracing_for(quantize):
    """The tracing context a quantize mode's converter needs (`int16_tracing`)."""
    if tracing_name(quantize) == "int16_friendly":
        return int16_friendly_tracing()
    return contextlib.nullcontext()


def tracing_name(quantize):
    """Which graph `tracing_for(quantize)` traces: SavedModels of one name
    hold the same graph."""
    return "int16_friendly" if quantize == "int16x8" else "default"


def flex_ops(ops):
    """The Flex ops among an artifact's op names."""
    return tuple(op for op in ops if op.startswith("Flex"))


def artifact_notes(ops):
    """The report's notes for an artifact holding `ops`: its Flex ops."""
    flex = flex_ops(ops)
    if not flex:
        return ()
    return (f"Flex ops {', '.join(flex)}: the artifact {FLEX_DELEGATE_NOTE}.",)


class TFLiteRunner:
    """Runs a `.tflite` file with the LiteRT interpreter (`ai_edge_litert`).

    Every call resizes the inputs to the shapes it receives
    (`resize_tensor_input(..., strict=True)`, which only lets dimensions that
    are dynamic in the model change) and re-allocates tensors when they
    changed: a model without a dynamic batch fails here.

    Args:
        path: the `.tflite` file.
        num_threads: optional. Interpreter threads.
    """

    def __init__(self, path, num_threads=None):
        litert = import_optional(
            "ai_edge_litert.interpreter", "to run TFLite artifacts"
        )
        self._path = path
        self._litert = litert
        self._interpreter = litert.Interpreter(
            model_path=path, num_threads=num_threads
        )
        self._inputs, self._outputs = _io_indices(self._interpreter)
        self.input_names = tuple(sorted(self._inputs))
        self.output_names = tuple(sorted(self._outputs))
        self.runtime = f"ai-edge-litert {_version('ai-edge-litert')} Interpreter"
        self._shapes = None

    def __call__(self, inputs):
        interpreter = self._interpreter
        shapes = {name: np.shape(value) for name, value in inputs.items()}
        if shapes != self._shapes:
            for name, shape in shapes.items():
                interpreter.resize_tensor_input(
                    self._inputs[name], shape, strict=True
                )
            interpreter.allocate_tensors()
            self._shapes = shapes
        for name, value in inputs.items():
            interpreter.set_tensor(self._inputs[name], value)
        interpreter.invoke()
        return {
            name: np.array(interpreter.get_tensor(index))
            for name, index in self._outputs.items()
        }

    @property
    def input_shapes(self):
        """`{name: shape}`, -1 for dynamic dimensions (shape signature)."""
        details = {d["index"]: d for d in self._interpreter.get_input_details()}
        return {
            name: [int(d) for d in details[index]["shape_signature"]]
            for name, index in sorted(self._inputs.items())
        }

    def float_layers(self):
        """Weight layers kept in float (`float_weight_layers`)."""
        with open(self._path, "rb") as file:
            return tflite_quantization.float_weight_layers(file.read())

    def precisions(self):
        """Op counts per precision (`tflite_quantization.precision_summary`)."""
        with open(self._path, "rb") as file:
            return tflite_quantization.precision_summary(file.read())

    def ops(self):
        """Sorted operator names, read without delegates (no `DELEGATE`)."""
        interpreter = self._litert.Interpreter(
            model_path=self._path,
            experimental_op_resolver_type=(
                self._litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            ),
        )
        return tuple(sorted({op["op_name"] for op in litert_compat.ops_details(interpreter)}))


def is_missing_flex_delegate(error):
    """Whether a LiteRT error means the runtime has no Flex delegate."""
    return "Flex delegate" in str(error) or "Select TensorFlow op" in str(error)


def unverifiable_reason(error):
    """Why an artifact that raised `error` cannot be verified here, or None."""
    if not is_missing_flex_delegate(error):
        return None
    return (
        "Not verified: this Python LiteRT runtime has no Flex delegate, "
        "so the Flex ops cannot run here; test the artifact on a device "
        "that links it."
    )


def _io_indices(interpreter):
    signatures = interpreter.get_signature_list()
    if SIGNATURE_KEY in signatures or len(signatures) == 1:
        key = SIGNATURE_KEY if SIGNATURE_KEY in signatures else next(iter(signatures))
        runner = interpreter.get_signature_runner(key)
        return (
            {name: d["index"] for name, d in runner.get_input_details().items()},
            {name: d["index"] for name, d in runner.get_output_details().items()},
        )
    return (
        {d["name"]: d["index"] for d in interpreter.get_input_details()},
        {d["name"]: d["index"] for d in interpreter.get_output_details()},
    )


def _unsupported_ops_error(message, allow_flex):
    custom = _names(_CUSTOM_OPS, message)
    if custom:
        return UnsupportedOpsError(
            "The model uses TensorFlow ops that neither LiteRT builtins nor "
            f"the Flex delegate can run: {', '.join(custom)}. Replace them "
            "in the model.",
            custom,
            flex=False,
        )
    select = _names(_SELECT_OPS, message) or _names(_NOT_FLEX, message)
    if select and not allow_flex:
        return UnsupportedOpsError(
            "The model needs TensorFlow ops that LiteRT builtins lack (Flex "
            f"ops): {', '.join(select)}. Replace them, or pass "
            f"allow_flex=True (the artifact then {FLEX_DELEGATE_NOTE}).",
            select,
            flex=True,
        )
    return None


def _names(pattern, message):
    names = set()
    for match in pattern.finditer(message):
        names.update(name.strip() for name in match.group(1).split(","))
    return tuple(sorted(name.removeprefix("tf.") for name in names if name))


def _version(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


FORMAT = ExportFormat(
    name="tflite",
    title="LiteRT",
    directory=False,
    suffix=".tflite",
    write=write_tflite,
    runner=TFLiteRunner,
    options=("quantize", "allow_flex", "representative_data"),
    metadata_kinds=("text_classifier",),
    quantize_modes=QUANTIZE_MODES,
    calibrated_modes=CALIBRATED_MODES,
    notes=artifact_notes,
    unverifiable=unverifiable_reason,
)
