"""Integer LiteRT models that keep their accuracy.

`int8`: int8 weights (per channel) and int8 activations, calibrated on real
examples, for the ops where that costs no accuracy; every other op stays in
float. Measured on `make demo`'s MiniLM classifier over the 800 MR test
sentences (`export/measure_artifacts.py`, table in `docs/export.md`): with
every op in int8 it loses 18.3 points; keeping only one kind of op in int8
next to the fully connected layers showed what breaks:

| also in int8 (besides FULLY_CONNECTED) | accuracy vs Keras |
|---|---|
| nothing else | -1.50 pt |
| GATHER (embeddings) | -0.88 pt |
| GELU | -1.62 pt |
| TANH (pooler) | -1.50 pt |
| ADD (residuals, biases, mask) | -5.25 pt |
| MUL | -5.13 pt |
| MEAN, SQUARED_DIFFERENCE, RSQRT (layer norm) | -5.00 pt |
| SOFTMAX | -12.38 pt |
| RESHAPE, TRANSPOSE, ... (carry attention's q/k/v) | -13.75 pt |

and among the fully connected layers, the six fed by GELU (the feed-forward
output projections, whose inputs have outlier channels) cost 1.9 points of
the rest: with them in float the artifact is within 0.25 point. So `INT8_OPS`
(plus convolutions, for image models) are quantized, except a
FULLY_CONNECTED whose input comes from one of `OUTLIER_INPUT_OPS`.

`int16x8`: int16 activations, int8 weights (LiteRT's 16x8 mode), every op
LiteRT has a 16x8 kernel for, the others in float.

Which ops ended in which precision is read back from the artifact
(`precision_summary`) and stated in the export report.
"""

import collections
import contextlib
import warnings

from keras_lowrank._compat import litert as litert_compat
from keras_lowrank._compat import tensorflow as tensorflow_compat
from keras_lowrank.utils.optional import tensorflow as tf

# Op kinds quantized to int8 (when not fed by an outlier op, for FC).
INT8_OPS = (
    "FULLY_CONNECTED",
    "GATHER",
    "EMBEDDING_LOOKUP",
    "TANH",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "CONV_3D",
)
# A FULLY_CONNECTED whose input one of these produced stays in float.
OUTLIER_INPUT_OPS = ("GELU",)
# Ops that move data between an activation and the product it feeds.
_PASS_THROUGH_OPS = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")
# Ops with a weight matrix or kernel.
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D")
# Ops that only convert between precisions, or compute shapes.
_BOOKKEEPING_OPS = ("QUANTIZE", "DEQUANTIZE", "SHAPE", "DELEGATE")


def quantize_int8(converter, representative_data):
    """The selectively quantized flatbuffer (see the module docstring).

    Calibrates once, finds the ops to keep in float on the calibrated
    graph, and quantizes the rest: the steps of
    `tf.lite.experimental.QuantizationDebugger` (the documented
    selective-quantization tool) without the two instrumented debug models
    it also builds, which took half the time (`_compat.tensorflow`; the
    bytes are the debugger's, `tests/compat/test_tensorflow.py`).

    Args:
        converter: a `TFLiteConverter` of the float model.
        representative_data: a callable returning an iterable of
            `{input name: array}` batches.

    Returns:
        The flatbuffer as bytes.
    """
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_data
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]
    with _quiet():
        calibrated = tensorflow_compat.calibrated_flatbuffer(converter)
        float_ops, float_nodes = float_choices(calibrated)
        return tensorflow_compat.quantize_calibrated(
            converter, calibrated, float_ops, float_nodes)


def configure_int16x8(converter, representative_data):
    """Sets `converter` up for int16 activations and int8 weights."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_data
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
        tf.lite.OpsSet.TFLITE_BUILTINS,
    ]


def float_choices(flatbuffer):
    """`(op kinds, FC output tensor names)` that int8 must leave in float.

    Args:
        flatbuffer: the float (or calibrated) model.
    """
    ops, tensors = _graph(flatbuffer)
    producer = {index: op for op in ops for index in op["outputs"]}

    def source(index):  # the op behind reshapes and transposes
        op = producer.get(index)
        while op is not None and op["op_name"] in _PASS_THROUGH_OPS:
            op = producer.get(op["inputs"][0])
        return None if op is None else op["op_name"]

    kinds = sorted({op["op_name"] for op in ops} - set(INT8_OPS))
    nodes = [
        tensors[op["outputs"][0]]
        for op in ops
        if op["op_name"] == "FULLY_CONNECTED"
        and source(op["inputs"][0]) in OUTLIER_INPUT_OPS
    ]
    return tuple(kinds), tuple(nodes)


def float_weight_layers(flatbuffer):
    """Output tensor names of weight ops (`_WEIGHT_OPS`) left in float."""
    ops, names = _graph(flatbuffer)
    _, dtypes = _graph(flatbuffer, dtypes=True)
    return tuple(
        names[op["outputs"][0]]
        for op in ops
        if op["op_name"] in _WEIGHT_OPS and dtypes[op["outputs"][0]].startswith("float")
    )


def precision_summary(flatbuffer):
    """`{"int8": {op: count}, "int16": {...}, "float": {...}}` of an artifact.

    An op counts in the precision of its first output; conversion and shape
    ops are left out.
    """
    ops, tensors = _graph(flatbuffer, dtypes=True)
    summary = collections.defaultdict(collections.Counter)
    for op in ops:
        if op["op_name"] in _BOOKKEEPING_OPS or not op["outputs"].size:
            continue
        dtype = tensors[op["outputs"][0]]
        if dtype in ("int8", "uint8"):
            summary["int8"][op["op_name"]] += 1
        elif dtype == "int16":
            summary["int16"][op["op_name"]] += 1
        elif dtype.startswith("float"):
            summary["float"][op["op_name"]] += 1
    return {key: dict(sorted(value.items())) for key, value in summary.items()}


def describe_precisions(summary):
    """One line: `int8: FULLY_CONNECTED 32, GATHER 3; float: ...`."""
    parts = []
    for key in ("int8", "int16", "float"):
        if summary.get(key):
            ops = ", ".join(f"{op} {count}" for op, count in summary[key].items())
            parts.append(f"{key}: {ops}")
    return "; ".join(parts)


def _graph(flatbuffer, dtypes=False):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(
        model_content=bytes(flatbuffer),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    ops = litert_compat.ops_details(interpreter)
    if dtypes:
        tensors = {t["index"]: t["dtype"].__name__ for t in interpreter.get_tensor_details()}
    else:
        tensors = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return ops, tensors


@contextlib.contextmanager
def _quiet():
    # The debugger runs the deprecated tf.lite.Interpreter inside; that
    # warning is not about the user's code.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter")
        yield
