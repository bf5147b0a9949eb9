"""ONNX: conversion with tf2onnx, and running with ONNX Runtime (CPU).

`quantize="dynamic"` or `"int8"` quantizes the converted file with ONNX
Runtime's own tools (`onnx_quantization`).
"""

import contextlib
import logging
import os
import tempfile

import numpy as np

from keras_lowrank._compat import tf2onnx as tf2onnx_compat
from keras_lowrank.exporters.export_format import ExportFormat
from keras_lowrank.exporters.onnx_quantization import quantize_onnx
from keras_lowrank.exporters.signature import serving_function
from keras_lowrank.utils.optional import import_optional

DEFAULT_OPSET = 15
# Read by tf2onnx at conversion time. With "TRUE" (its default) it deep-copies
# the whole graph, weights included, before each of ~50 optimizer passes:
# all-MiniLM-L6-v2 converts in ~26 s instead of ~42 s without the copies.
_CATCH_ERRORS_ENV = "TF2ONNX_CATCH_ERRORS"


QUANTIZE_MODES = (None, "dynamic", "int8")


def write_onnx(model, signature, path, opset=None, quantize=None,
               representative_data=None):
    """Converts `model` to an ONNX file at `path` with tf2onnx.

    The graph is the same serving function as the SavedModel's: named inputs
    with a dynamic batch dimension, outputs named after `named_outputs`.

    Args:
        model: a Keras model (TensorFlow backend).
        signature: the structure from `input_signature(model)`.
        path: the `.onnx` file to write.
        opset: the ONNX opset version; None means `DEFAULT_OPSET`.
        quantize: None (float32), `"dynamic"` (int8 weights) or `"int8"`
            (static QDQ, calibrated on `representative_data`).
        representative_data: for `"int8"`, a callable returning an
            iterable of `{input name: array}` batches.
    """
    if quantize is not None:
        with tempfile.TemporaryDirectory(prefix="klr_onnx_") as folder:
            float_path = os.path.join(folder, "float.onnx")
            write_onnx(model, signature, float_path, opset=opset)
            rows = None if representative_data is None else list(representative_data())
            quantize_onnx(float_path, path, quantize, rows)
        return
    tf2onnx = import_optional("tf2onnx", "to export ONNX")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    serve = serving_function(model, signature)
    opset = opset or DEFAULT_OPSET

    def convert():
        with tf2onnx_compat.optimizer_without_copies_per_pass(), \
                tf2onnx_compat.einsum_search_on_shapes(), \
                tf2onnx_compat.merge_duplicates_hashing_each_tensor_once(), \
                tf2onnx_compat.subgraph_walked_once():
            tf2onnx.convert.from_function(
                serve, input_signature=[signature], opset=opset, output_path=path
            )

    if _CATCH_ERRORS_ENV in os.environ:  # the user's own choice wins
        convert()
        return
    try:
        with _environ(_CATCH_ERRORS_ENV, "FALSE"):
            convert()
    except Exception:
        # An optimizer pass failed: let tf2onnx skip the failing passes.
        with _environ(_CATCH_ERRORS_ENV, "TRUE"):
            convert()


class ONNXRunner:
    """Runs an ONNX file with ONNX Runtime's CPU execution provider.

    Args:
        path: the `.onnx` file.
    """

    def __init__(self, path):
        onnxruntime = import_optional("onnxruntime", "to run ONNX artifacts")
        self._path = path
        self._session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"]
        )
        self._output_names = [o.name for o in self._session.get_outputs()]
        self.input_names = tuple(sorted(i.name for i in self._session.get_inputs()))
        self.output_names = tuple(sorted(self._output_names))
        self.runtime = f"onnxruntime {onnxruntime.__version__} (CPU)"

    def __call__(self, inputs):
        values = self._session.run(self._output_names, dict(inputs))
        return {name: np.asarray(v) for name, v in zip(self._output_names, values)}

    @property
    def input_shapes(self):
        """`{name: shape}`, -1 for dynamic (named or unknown) dimensions."""
        return {
            i.name: [d if isinstance(d, int) else -1 for d in i.shape]
            for i in sorted(self._session.get_inputs(), key=lambda i: i.name)
        }

    def float_layers(self):
        """Names of MatMul / Gemm nodes whose weight is a float initializer."""
        onnx = import_optional("onnx", "to read ONNX graphs")
        graph = onnx.load(self._path, load_external_data=False).graph
        weights = {i.name for i in graph.initializer}
        return tuple(
            node.name
            for node in graph.node
            if node.op_type in ("MatMul", "Gemm") and node.input[1] in weights
        )

    def ops(self):
        """Sorted ONNX operator types of the main graph."""
        onnx = import_optional("onnx", "to list ONNX operators")
        model = onnx.load(self._path, load_external_data=False)
        return tuple(sorted({node.op_type for node in model.graph.node}))


@contextlib.contextmanager
def _environ(name, value):
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


FORMAT = ExportFormat(
    name="onnx",
    title="ONNX",
    directory=False,
    suffix=".onnx",
    write=write_onnx,
    runner=ONNXRunner,
    options=("opset", "quantize", "representative_data"),
    quantize_modes=QUANTIZE_MODES,
    calibrated_modes=("int8",),
)
