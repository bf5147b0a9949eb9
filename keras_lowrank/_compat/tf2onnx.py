"""Every private tf2onnx attribute keras_lowrank relies on.

The test of each function is in `tests/compat/test_tf2onnx.py`, so a
tf2onnx upgrade that changes one breaks a named test. Pinned:
tf2onnx==1.17.0.
"""

import collections
import contextlib

import numpy as np

from keras_lowrank._compat.patching import attribute_replaced

# The NodeProto fields `Node.update_proto` writes from the node; every other
# field (name, op_type, domain, ...) is carried over as it is.
_WRITTEN_FIELDS = ("input", "output", "attribute")
# The attribute of a tf2onnx constant `Node` that keeps its tensor's hash.
_TENSOR_HASH = "_keras_lowrank_tensor_hash"


@contextlib.contextmanager
def optimizer_without_copies_per_pass():
    """Within the context, tf2onnx's optimizer copies no weight per pass.

    After each of its ~50 passes, the optimizer writes every node back into
    its `NodeProto` (`tf2onnx.graph.Node.update_proto`, the proto being
    `Node._op`): it empties the proto's attributes and copies the node's
    attributes in again, a constant's tensor included. Under protobuf's
    upb runtime an emptied field's memory stays in the proto's arena until
    the proto itself is freed, so each pass added a copy of every weight:
    the ONNX export of all-MiniLM-L6-v2 (91 MB of weights) peaked at 6.1 GB
    and held 5.9 GB after it.

    Here a non-constant node is written into a new `NodeProto` each pass,
    the previous one freed with its copies. A constant's proto gets its
    inputs and outputs but no attributes: tf2onnx never reads a constant's
    proto (`Graph.make_graph` makes its initializer from the node's own
    `value`, and lists only the other nodes' protos), so copying its tensor
    in ~50 times was pure cost: `Graph.update_proto` took 4.6 s of CPU per
    MiniLM conversion, 0.75 s without. The graph is the same: same
    operators, initializers (bytes) and outputs. With
    external tensor storage (`large_model`) tf2onnx names the external
    tensors as `update_proto` reaches them, so constants are written as
    before there.
    """
    from tf2onnx import graph

    original = graph.Node.update_proto

    def update_proto(node, external_tensor_storage=None):
        if external_tensor_storage is None and node.is_const():
            _write_constant_proto(node)
            return
        node._op = _proto_without_written_fields(node._op)
        original(node, external_tensor_storage)

    with attribute_replaced(graph.Node, "update_proto", update_proto):
        yield


def _write_constant_proto(node):
    """Writes a constant's inputs and outputs, and none of its attributes,
    into its proto; a new proto only when these differ from the current."""
    proto = node._op
    if (not proto.attribute and list(proto.input) == node.input
            and list(proto.output) == node.output):
        return
    fresh = _proto_without_written_fields(proto)
    fresh.input.extend(node.input)
    fresh.output.extend(node.output)
    node._op = fresh


def _proto_without_written_fields(proto):
    fresh = type(proto)()
    for field, value in proto.ListFields():
        if field.name in _WRITTEN_FIELDS:
            continue
        if field.is_repeated:
            getattr(fresh, field.name).extend(value)
        elif field.message_type is not None:
            getattr(fresh, field.name).CopyFrom(value)
        else:
            setattr(fresh, field.name, value)
    return fresh


@contextlib.contextmanager
def einsum_search_on_shapes():
    """Within the context, tf2onnx's Einsum search multiplies no matrices.

    tf2onnx's `EinsumOptimizer` picks, for each Einsum equation, the letter
    order whose decomposition costs the least transposition: it runs the
    decomposed graph of every order (121 for 5 letters) with its
    `OnnxMicroRuntime` on 15-wide inputs, and reads only the *shapes* of
    what it computes (`CachedEinsum._build_optimize_ml`). Here its `Gemm`
    returns zeros of the product's shape and dtype instead of the product:
    the same shapes, so the same costs and the same equation chosen, for
    3.3 s less CPU per process (the two Einsum equations of a BERT backbone
    took 2.0 and 1.3 s, most of a 4.8 s conversion of a tiny BERT).
    """
    from tf2onnx.optimizer import einsum_optimizer

    with attribute_replaced(einsum_optimizer.OnnxMicroRuntime, "_op_gemm",
                             _gemm_of_zeros):
        yield


def _gemm_of_zeros(runtime, a, b, c=None, alpha=None, beta=None,
                   transA=None, transB=None):  # noqa: N803 (ONNX's names)
    """`OnnxMicroRuntime._op_gemm`'s result shape and dtype, all zeros:
    the product over an empty inner dimension."""
    if transA is not None and transA.i:
        a = a.T
    if transB is not None and transB.i:
        b = b.T
    return (np.dot(a[:, :0], b[:0, :]),)


@contextlib.contextmanager
def merge_duplicates_hashing_each_tensor_once():
    """Within the context, tf2onnx hashes each constant's bytes once.

    tf2onnx's `MergeDuplicatedNodesOptimizer` groups the nodes by type,
    inputs and, for a constant, `hash(node.attr["value"].t.raw_data)`; it
    runs ~15 times per conversion, and each time copies out and hashes every
    weight (91 MB for all-MiniLM-L6-v2). Here a constant's hash is kept on
    the node with the `value` attribute it was computed from, and computed
    again only when the node holds another `value` (tf2onnx replaces the
    attribute, `Node.set_tensor_value`, and never edits a tensor's bytes in
    place): the same groups, so the same merges. The pass took 0.8-0.9 s
    of CPU per MiniLM conversion, 0.2 s with it.
    """
    from tf2onnx.optimizer import merge_duplicated_nodes_optimizer as merging

    with attribute_replaced(merging.MergeDuplicatedNodesOptimizer,
                             "_group_nodes_by_type_inputs",
                             staticmethod(_group_nodes_by_type_inputs)):
        yield


def _group_nodes_by_type_inputs(graph):
    """`MergeDuplicatedNodesOptimizer._group_nodes_by_type_inputs`, each
    tensor's hash taken from `_tensor_hash`."""
    groups = collections.defaultdict(list)
    for node in graph.get_nodes():
        if node.is_graph_input_default_const():
            continue  # as tf2onnx: a graph input's default is never merged
        tensor_hash = _tensor_hash(node) if node.is_const() else None
        groups[(node.type, tuple(node.input), tensor_hash)].append(node)
    return groups


def _tensor_hash(node):
    """`hash` of the constant's tensor bytes, kept on the node together
    with the `value` attribute it is the hash of."""
    value = node.attr["value"]
    kept = getattr(node, _TENSOR_HASH, None)
    if kept is None or kept[0] is not value:
        kept = (value, hash(value.t.raw_data))
        setattr(node, _TENSOR_HASH, kept)
    return kept[1]


@contextlib.contextmanager
def subgraph_walked_once():
    """Within the context, tf2onnx finds the nodes a graph's outputs need
    in one walk of the graph, not one walk per output.

    tf2onnx's `Graph.extract_sub_graph_nodes` (run by `delete_unused_nodes`
    after every optimizer pass) walks the graph upstream from each output,
    and from each graph input, each walk with its own visited set, and
    returns the union: a graph with many outputs is walked once per output.
    A generator's step has one output per cache tensor (60 for SmolLM2)
    and, with runtime LoRA, hundreds of inputs: its ONNX conversion spent
    920 of 1,177 s there. Here the walks share one visited set: the same
    union of nodes (the order of the returned list was already that of a
    set).
    """
    from tf2onnx import graph as tf2onnx_graph

    with attribute_replaced(tf2onnx_graph.Graph, "extract_sub_graph_nodes",
                             _extract_sub_graph_nodes):
        yield


def _extract_sub_graph_nodes(graph, outputs_name, input_checker=None,
                             remove_unused_inputs=True):
    """`Graph.extract_sub_graph_nodes`, its walks sharing one visited set."""
    outputs = list(outputs_name)
    if not remove_unused_inputs:
        # As tf2onnx: graph inputs are kept even when no output needs them.
        outputs += [node.output[0] for node in graph.inputs]

    def wanted(node):
        return node is not None and (input_checker is None
                                     or input_checker(node) is not False)

    found = set()
    for output in outputs:
        node = graph.get_node_by_output(output, search_in_parent_graphs=False)
        if node in found or not wanted(node):
            continue
        found.add(node)
        pending = [node]
        while pending:
            top = pending.pop()
            for name in top.input + list(top.get_implicit_inputs()):
                node = graph.get_node_by_output(name, search_in_parent_graphs=False)
                if node not in found and wanted(node):
                    found.add(node)
                    pending.append(node)
    return list(found)


@contextlib.contextmanager
def identities_removed_through_consumers():
    """Within the context, tf2onnx's Identity pass rewires only the
    consumers of each Identity it removes, found in the graph's own map.

    `IdentityOptimizer._handle_non_graph_output_identity` calls
    `graph.replace_all_inputs(old, new, ops=graph.get_nodes())`: for every
    Identity it walks every node of the graph (and registers each as a
    consumer of `new`), quadratic in the graph's size: SmolLM2's GenAI step
    has 1,328 Identities and about 20,000 nodes, and the pass was a quarter
    of its export. Without `ops`, tf2onnx takes the consumers of `old`
    from its map: the nodes whose inputs it rewrites either way, so the
    graph comes out the same.
    """
    from tf2onnx.optimizer import identity_optimizer

    with attribute_replaced(identity_optimizer.IdentityOptimizer,
                             "_handle_non_graph_output_identity",
                             staticmethod(_remove_identity)):
        yield


def _remove_identity(graph, identity):
    graph.replace_all_inputs(identity.output[0], identity.input[0])
    graph.remove_node(identity.name)
    return True
