"""One test per function of `keras_lowrank._compat.litert`
(ai-edge-litert==2.3.0)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank._compat import litert as litert_compat

interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")


def _flatbuffer():
    kernel = tf.constant(np.ones((4, 3), "float32"))

    @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32)])
    def model(x):
        return tf.nn.relu(tf.matmul(x, kernel))

    return tf.lite.TFLiteConverter.from_concrete_functions(
        [model.get_concrete_function()], model
    ).convert()


def test_ops_details_lists_every_operator_with_its_tensors():
    interpreter = interpreter_module.Interpreter(
        model_content=_flatbuffer(),
        experimental_op_resolver_type=(
            interpreter_module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
    )
    assert callable(interpreter._get_ops_details)
    ops = litert_compat.ops_details(interpreter)
    assert [op["op_name"] for op in ops] == ["FULLY_CONNECTED"]  # relu fused
    (op,) = ops
    assert op["index"] == 0
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    assert isinstance(op["inputs"], np.ndarray) and isinstance(op["outputs"], np.ndarray)
    (output,) = op["outputs"]
    assert tuple(tensors[int(output)]["shape"]) == (1, 3)
    assert tuple(tensors[int(op["inputs"][0])]["shape"]) == (1, 4)
