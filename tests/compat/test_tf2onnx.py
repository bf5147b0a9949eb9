"""One test per function of `keras_lowrank._compat.tf2onnx` (tf2onnx==1.17.0)."""

import collections
import contextlib
import os

import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
import tf2onnx
from onnx import numpy_helper
from tf2onnx import graph as tf2onnx_graph

from keras_lowrank._compat import tf2onnx as tf2onnx_compat

SPEC = tf.TensorSpec((None, 16), tf.float32, name="x")


@pytest.fixture(autouse=True)
def _no_copies_before_passes():
    # As keras_lowrank converts: tf2onnx's own deep copy per pass off.
    previous = os.environ.get("TF2ONNX_CATCH_ERRORS")
    os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
    yield
    if previous is None:
        os.environ.pop("TF2ONNX_CATCH_ERRORS")
    else:
        os.environ["TF2ONNX_CATCH_ERRORS"] = previous


def _step():
    rng = np.random.default_rng(0)
    first = rng.normal(size=(16, 32)).astype("float32")
    second = rng.normal(size=(32, 4)).astype("float32")

    @tf.function(input_signature=[SPEC])
    def step(x):  # the weights are constants of the graph, as when exported
        hidden = tf.nn.relu(tf.matmul(x, first) + 0.5)
        return tf.nn.softmax(tf.matmul(tf.transpose(tf.transpose(hidden)), second))

    return step


def _convert(context):
    with context:
        proto, _ = tf2onnx.convert.from_function(
            _step(), input_signature=[SPEC], opset=15)
    return proto


def _summary(proto):
    """What a graph is, its generated names aside: the operators, the
    initializers' bytes, and the outputs on one input."""
    operators = collections.Counter(node.op_type for node in proto.graph.node)
    initializers = sorted(
        numpy_helper.to_array(i).tobytes() for i in proto.graph.initializer)
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(3, 16)).astype("float32")
    return operators, initializers, session.run(None, {"x": x})[0]


def test_optimizer_without_copies_per_pass_gives_the_same_graph():
    plain = _summary(_convert(contextlib.nullcontext()))
    bounded = _summary(_convert(tf2onnx_compat.optimizer_without_copies_per_pass()))
    assert plain[0] == bounded[0] and plain[0]["MatMul"] == 2
    assert plain[0]["Transpose"] == 0  # the optimizer ran: the pair cancelled
    assert plain[1] == bounded[1] and len(plain[1]) >= 2
    np.testing.assert_array_equal(plain[2], bounded[2])


def test_optimizer_without_copies_per_pass_writes_each_pass_into_a_new_proto():
    # The private surface relied on: `Node._op` is the node's NodeProto, and
    # `update_proto` writes the node's fields into it.
    original = tf2onnx_graph.Node.update_proto
    graph = tf2onnx_graph.Graph([], opset=15)
    node = graph.make_const("weight", np.arange(6, dtype="float32").reshape(2, 3))
    assert isinstance(node._op, onnx.NodeProto)
    with tf2onnx_compat.optimizer_without_copies_per_pass():
        before = node._op
        node.update_proto()
        after = node._op
        node.update_proto()
    assert after is not before and node._op is not after
    assert tf2onnx_graph.Node.update_proto is original  # restored
    for proto in (before, after):
        assert (proto.name, proto.op_type, list(proto.output)) == (
            "weight", "Const", ["weight"])
    assert [a.SerializeToString() for a in after.attribute] == [
        a.SerializeToString() for a in before.attribute]
    np.testing.assert_array_equal(
        numpy_helper.to_array(after.attribute[0].t),
        np.arange(6, dtype="float32").reshape(2, 3))
