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
from tf2onnx.optimizer import einsum_optimizer
from tf2onnx.optimizer import identity_optimizer
from tf2onnx.optimizer import merge_duplicated_nodes_optimizer as merging

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


def test_optimizer_without_copies_per_pass_writes_no_constant_into_its_proto():
    # The private surface relied on: `Node._op` is the node's NodeProto,
    # `update_proto` writes the node's fields into it, and `make_graph`
    # makes a constant's initializer from the node, not from its proto.
    original = tf2onnx_graph.Node.update_proto
    graph = tf2onnx_graph.Graph([], opset=15)
    weight = np.arange(6, dtype="float32").reshape(2, 3)
    node = graph.make_const("weight", weight)
    assert isinstance(node._op, onnx.NodeProto) and len(node._op.attribute) == 1
    with tf2onnx_compat.optimizer_without_copies_per_pass():
        node.update_proto()
        written = node._op
        node.update_proto()
        assert node._op is written  # unchanged: not written again
        graph.outputs = ["weight"]
        made = graph.make_graph("doc")
    assert tf2onnx_graph.Node.update_proto is original  # restored
    assert (written.name, written.op_type, list(written.output)) == (
        "weight", "Const", ["weight"])
    assert len(written.attribute) == 0
    assert [i.name for i in made.initializer] == ["weight"] and not made.node
    np.testing.assert_array_equal(numpy_helper.to_array(made.initializer[0]), weight)


def test_optimizer_without_copies_per_pass_writes_each_pass_into_a_new_proto():
    graph = tf2onnx_graph.Graph([], opset=15)
    node = graph.make_node("Transpose", ["x"], attr={"perm": [1, 0]})
    with tf2onnx_compat.optimizer_without_copies_per_pass():
        before = node._op
        node.update_proto()
        after = node._op
        node.set_attr("perm", [0, 1])
        node.update_proto()
    assert after is not before and node._op is not after
    assert (after.name, after.op_type, list(after.input)) == (
        before.name, "Transpose", ["x"])
    assert [list(p.attribute[0].ints) for p in (before, after, node._op)] == [
        [1, 0], [1, 0], [0, 1]]


def test_einsum_search_on_shapes_picks_the_same_equation():
    # The private surface relied on: `CachedEinsum.build_einsum` runs the
    # decomposed orders with `OnnxMicroRuntime`, whose `_op_gemm` computes
    # each Gemm, and keeps the costs of each order in `timed_permutations_`.
    runtime = einsum_optimizer.OnnxMicroRuntime
    original = runtime._op_gemm

    def search():
        return einsum_optimizer.CachedEinsum.build_einsum(
            "abc,cd->abd", 15, True, np.float32)

    plain = search()
    with tf2onnx_compat.einsum_search_on_shapes():
        assert runtime._op_gemm is not original
        on_shapes = search()
    assert runtime._op_gemm is original  # restored
    assert on_shapes.equation_ == plain.equation_
    assert on_shapes.timed_permutations_ == plain.timed_permutations_
    assert len(plain.timed_permutations_) == 25  # 4! orders and the first
    assert any(node.op_type == "Gemm" for node in plain.onnx_.graph.node)


def test_einsum_search_on_shapes_gives_the_gemm_shape_and_dtype():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 3)).astype("float32")
    b = rng.normal(size=(4, 3)).astype("float32")
    attributes = dict(alpha=onnx.helper.make_attribute("alpha", 1.0),
                      beta=onnx.helper.make_attribute("beta", 0.0),
                      transB=onnx.helper.make_attribute("transB", 1))
    runtime = einsum_optimizer.OnnxMicroRuntime(onnx.ModelProto())
    (product,) = runtime._op_gemm(a, b, **attributes)
    with tf2onnx_compat.einsum_search_on_shapes():
        (zeros,) = runtime._op_gemm(a, b, **attributes)
    assert (zeros.shape, zeros.dtype) == (product.shape, product.dtype) == (
        (5, 4), np.float32)
    assert not zeros.any()


def test_merge_duplicates_hashing_each_tensor_once_groups_as_tf2onnx():
    # The private surface relied on: the optimizer groups the nodes with the
    # static `_group_nodes_by_type_inputs(graph)`, and `set_tensor_value`
    # gives a constant a new `value` attribute.
    optimizer = merging.MergeDuplicatedNodesOptimizer
    original = optimizer.__dict__["_group_nodes_by_type_inputs"]
    graph = tf2onnx_graph.Graph([], opset=15)
    for name, value in (("a", 1.0), ("b", 1.0), ("c", 2.0)):
        graph.make_const(name, np.full((2, 2), value, dtype="float32"))
    graph.make_node("Neg", ["a"], name="neg_a")
    graph.make_node("Neg", ["a"], name="neg_a_again")

    def groups():
        found = optimizer._group_nodes_by_type_inputs(graph)
        return sorted(sorted(n.name for n in group) for group in found.values())

    plain = groups()
    assert plain == [["a", "b"], ["c"], ["neg_a", "neg_a_again"]]
    with tf2onnx_compat.merge_duplicates_hashing_each_tensor_once():
        assert groups() == plain
        assert groups() == plain  # from the kept hashes
        graph.get_node_by_name("c").set_tensor_value(
            np.full((2, 2), 1.0, dtype="float32"))
        assert groups() == [["a", "b", "c"], ["neg_a", "neg_a_again"]]
    assert optimizer.__dict__["_group_nodes_by_type_inputs"] is original


def test_merge_duplicates_hashing_each_tensor_once_gives_the_same_graph():
    twin = np.random.default_rng(2).normal(size=(16, 16)).astype("float32")

    @tf.function(input_signature=[SPEC])
    def step(x):  # two constants with the same bytes: merged into one
        return tf.matmul(x, tf.constant(twin)) + tf.matmul(x * 2.0, tf.constant(twin.copy()))

    def convert(context):
        with context:
            proto, _ = tf2onnx.convert.from_function(
                step, input_signature=[SPEC], opset=15)
        return _summary(proto)

    plain = convert(contextlib.nullcontext())
    hashed_once = convert(tf2onnx_compat.merge_duplicates_hashing_each_tensor_once())
    assert plain[0] == hashed_once[0] and plain[1] == hashed_once[1]
    assert plain[1].count(twin.tobytes()) == 1  # the twins were merged
    np.testing.assert_array_equal(plain[2], hashed_once[2])


def test_subgraph_walked_once_finds_the_nodes_tf2onnx_finds():
    # The private surface relied on: `delete_unused_nodes` keeps what
    # `extract_sub_graph_nodes(outputs, input_checker, remove_unused_inputs)`
    # returns, which walks `Node.input` and `get_implicit_inputs()`.
    original = tf2onnx_graph.Graph.__dict__["extract_sub_graph_nodes"]
    graph = tf2onnx_graph.Graph([], opset=15)
    for name in ("x", "unused_input"):
        graph.add_graph_input(name, onnx.TensorProto.FLOAT, [2])
    graph.make_const("w", np.ones(2, dtype="float32"))
    shared = graph.make_node("Mul", ["x", "w"], name="shared")
    graph.make_node("Neg", [shared.output[0]], name="first")
    graph.make_node("Exp", [shared.output[0]], name="second")
    graph.make_node("Abs", ["x"], name="dead")
    outputs = [graph.get_node_by_name(n).output[0] for n in ("first", "second")]

    def names(*args, **kwargs):  # graph inputs by their tensor's name
        return sorted(n.output[0] if n.type == "Placeholder" else n.name
                      for n in graph.extract_sub_graph_nodes(*args, **kwargs))

    def not_the_constant(node):
        return node.name != "w"

    cases = [((outputs,), {}), ((outputs,), {"remove_unused_inputs": False}),
             ((outputs, not_the_constant), {})]
    plain = [names(*args, **kwargs) for args, kwargs in cases]
    assert plain[0] == ["first", "second", "shared", "w", "x"]
    assert plain[1] == ["first", "second", "shared", "unused_input", "w", "x"]
    assert plain[2] == ["first", "second", "shared", "x"]
    with tf2onnx_compat.subgraph_walked_once():
        assert [names(*args, **kwargs) for args, kwargs in cases] == plain
    assert tf2onnx_graph.Graph.__dict__["extract_sub_graph_nodes"] is original


def test_subgraph_walked_once_gives_the_same_graph():
    plain = _summary(_convert(contextlib.nullcontext()))
    walked_once = _summary(_convert(tf2onnx_compat.subgraph_walked_once()))
    assert plain[0] == walked_once[0] and plain[1] == walked_once[1]
    np.testing.assert_array_equal(plain[2], walked_once[2])



def test_identities_removed_through_consumers_gives_the_same_graph():
    # The private surface relied on: the Identity pass hands each Identity
    # that is no graph output to `_handle_non_graph_output_identity`.
    def graph_and_outputs():
        graph = tf2onnx_graph.Graph([], opset=15)
        graph.add_graph_input("x", onnx.TensorProto.FLOAT, [2])
        graph.make_const("w", np.ones(2, dtype="float32"))
        mul = graph.make_node("Mul", ["x", "w"], name="mul")
        kept = graph.make_node("Identity", [mul.output[0]], name="kept")  # read twice
        chained = graph.make_node("Identity", [kept.output[0]], name="chained")
        neg = graph.make_node("Neg", [chained.output[0]], name="neg")
        add = graph.make_node("Add", [kept.output[0], neg.output[0]], name="add")
        graph.outputs = [add.output[0]]
        return graph

    def optimized(context):
        graph = graph_and_outputs()
        with context:
            graph = identity_optimizer.IdentityOptimizer().optimize(graph, 0)
        return sorted((n.output[0] if n.type == "Placeholder" else n.name, n.type,
                       tuple(n.input)) for n in graph.get_nodes())

    seen = []
    original = identity_optimizer.IdentityOptimizer.__dict__["_handle_non_graph_output_identity"]

    def counted(graph, identity):  # tf2onnx's own, counting its calls
        seen.append(identity.name)
        return original.__func__(graph, identity)

    identity_optimizer.IdentityOptimizer._handle_non_graph_output_identity = (
        staticmethod(counted))
    try:
        plain = optimized(contextlib.nullcontext())
    finally:
        identity_optimizer.IdentityOptimizer._handle_non_graph_output_identity = original
    assert sorted(seen) == ["chained", "kept"]
    assert [node[:2] for node in plain] == [
        ("add", "Add"), ("mul", "Mul"), ("neg", "Neg"), ("w", "Const"), ("x", "Placeholder")]
    through_consumers = optimized(tf2onnx_compat.identities_removed_through_consumers())
    assert through_consumers == plain
    assert (identity_optimizer.IdentityOptimizer.__dict__["_handle_non_graph_output_identity"]
            is original)
