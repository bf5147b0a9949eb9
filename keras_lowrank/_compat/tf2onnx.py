"""Every private tf2onnx attribute keras_lowrank relies on.

The test of each function is in `tests/compat/test_tf2onnx.py`, so a
tf2onnx upgrade that changes one breaks a named test. Pinned:
tf2onnx==1.17.0.
"""

import contextlib

# The NodeProto fields `Node.update_proto` writes from the node; every other
# field (name, op_type, domain, ...) is carried over as it is.
_WRITTEN_FIELDS = ("input", "output", "attribute")


@contextlib.contextmanager
def optimizer_without_copies_per_pass():
    """Within the context, tf2onnx's optimizer keeps one copy of each weight.

    After each of its ~50 passes, the optimizer writes every node back into
    its `NodeProto` (`tf2onnx.graph.Node.update_proto`, the proto being
    `Node._op`): it empties the proto's attributes and copies the node's
    attributes in again, a constant's tensor included. Under protobuf's
    upb runtime an emptied field's memory stays in the proto's arena until
    the proto itself is freed, so each pass adds a copy of every weight:
    the ONNX export of all-MiniLM-L6-v2 (91 MB of weights) peaked at 6.1 GB
    and held 5.9 GB after it. Here each pass writes a new `NodeProto` and
    the previous one is freed with its copies: 3.1 GB peak, 1.9 GB after,
    and the same graph (same operators, initializers and outputs).
    """
    from tf2onnx import graph

    original = graph.Node.update_proto

    def update_proto(node, external_tensor_storage=None):
        node._op = _proto_without_written_fields(node._op)
        original(node, external_tensor_storage)

    graph.Node.update_proto = update_proto
    try:
        yield
    finally:
        graph.Node.update_proto = original


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
