"""ONNX Runtime quantization of an exported float `.onnx` file.

`dynamic`: 8-bit weights (per channel), activations quantized on the fly
(`onnxruntime.quantization.quantize_dynamic`), no calibration.

`int8`: static QDQ quantization (`quantize_static`, QuantizeLinear /
DequantizeLinear pairs around the quantized operators), int8 weights per
channel and 8-bit activations calibrated (min/max) on real examples. The
activations are unsigned (uint8 with a zero point): ONNX Runtime's x86 and
ARM kernels are fastest on uint8 x int8 products; with int8 activations
the demo classifier ran 30% slower at 26 tokens, at the same accuracy. As for LiteRT
(`tflite_quantization`, same measurements), only the products with a weight
matrix (MatMul, Gemm) and the embedding lookups (Gather) are quantized,
except a product fed by a GELU (the feed-forward output projection, whose
input has outlier channels); attention's activation-by-activation products,
softmax, layer norm and residual sums stay in float.

Correct on every x86 CPU: ONNX Runtime's uint8 x int8 kernels on x86 CPUs
without VNNI (AVX2, AVX-512 without VNNI) add pairs of products in 16 bits
(`vpmaddubsw`) and saturate. Measured on a 2-core AMD EPYC (AVX2 only):
the static classifier artifact's scores were 0.71 off Keras', and the tiny
LM's dynamic artifact agreed with Keras on the next token 229/256 times.
So `dynamic` holds its weights in uint8 (uint8 x uint8 products, no
saturation: 247/256 there), and `int8` in int8 with a 7-bit range
(`reduce_range`, ONNX Runtime's remedy for those CPUs): 0.71 -> within the
0.1 its test allows.
"""

import os
import tempfile

from keras_lowrank.utils.optional import import_optional

_PURPOSE = "to quantize ONNX artifacts"
QUANTIZED_OP_TYPES = ("MatMul", "Gemm", "Gather")
# Ops that only move data between a GELU and the product it feeds.
_PASS_THROUGH = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Flatten")
# A Mul computing GELU has a Tanh (tanh approximation) or an Erf (exact)
# within this many producers upstream.
_GELU_DEPTH = 3


def quantize_onnx(float_path, path, quantize, calibration_rows=None):
    """Writes the quantized model of `float_path` at `path`.

    Args:
        float_path: the float32 `.onnx` file.
        path: where to write the quantized file.
        quantize: `"dynamic"` or `"int8"`.
        calibration_rows: for `"int8"`, a list of `{input name: array}`.

    Returns:
        The names of the weight products left in float (for the report).
    """
    quantization = import_optional("onnxruntime.quantization", _PURPOSE)
    if quantize == "dynamic":
        quantization.quantize_dynamic(
            float_path, path, weight_type=quantization.QuantType.QUInt8,
            per_channel=True,
        )
        return ()
    onnx = import_optional("onnx", _PURPOSE)
    with tempfile.TemporaryDirectory(prefix="klr_onnx_quant_") as folder:
        prepared = os.path.join(folder, "prepared.onnx")
        # Shape inference and graph clean-up, as ONNX Runtime recommends;
        # symbolic shape inference cannot follow tf2onnx's dynamic reshapes.
        quantization.shape_inference.quant_pre_process(
            float_path, prepared, skip_symbolic_shape=True
        )
        excluded = tuple(_excluded_nodes(onnx.load(prepared)))
        quantization.quantize_static(
            prepared,
            path,
            _Reader(quantization.CalibrationDataReader, calibration_rows),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True, reduce_range=True,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            op_types_to_quantize=list(QUANTIZED_OP_TYPES),
            nodes_to_exclude=list(excluded),
            # Products of two activations (attention) stay float.
            extra_options={"MatMulConstBOnly": True},
        )
    return tuple(n for n in excluded if n)


def _excluded_nodes(model):
    """Products without a weight matrix, and products fed by a GELU."""
    weights = {initializer.name for initializer in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        if not any(name in weights for name in node.input[1:2]):
            yield node.name  # activation x activation (attention)
        elif _fed_by_gelu(node.input[0], producer):
            yield node.name


def _fed_by_gelu(tensor, producer):
    node = producer.get(tensor)
    while node is not None and node.op_type in _PASS_THROUGH:
        node = producer.get(node.input[0])
    if node is None or node.op_type != "Mul":
        return False
    frontier, depth = [node], 0
    while frontier and depth < _GELU_DEPTH:
        frontier = [producer[i] for n in frontier for i in n.input if i in producer]
        if any(n.op_type in ("Tanh", "Erf") for n in frontier):
            return True
        depth += 1
    return False


def _Reader(base, rows):
    class Reader(base):
        """Feeds the calibration rows to ONNX Runtime's calibrator."""

        def __init__(self):
            self._rows = iter(rows)

        def get_next(self):
            return next(self._rows, None)

    return Reader()
