"""Summarizes a `tf.profiler` trace of training steps by op kind and layer.

Reads the `*.xplane.pb` the profiler writes (the `XSpace` proto shipped with
TensorFlow) and adds up the TensorFlow op events of the executor threads.
Op events are named `scope/op_name:OpType`; backward ops carry the
`gradient_tape/` prefix of the forward op they differentiate.
"""

import collections
import glob
import os
import re

_LAYER = re.compile(r"transformer_layer_\d+(?:_\d+)?/(.*)")
_SUFFIX = re.compile(r"_\d+$")
# In a LoRA query/value scope, the frozen projection is the first einsum
# (`MatMul` once TensorFlow lowers it); everything else is adapter math.
_FROZEN_OP = "MatMul"
ADAPTED = ("query", "value")
# Sublayers of a keras-hub attention layer; its other ops (QK, softmax, AV)
# are the attention core.
_PROJECTIONS = ("query", "key", "value", "attention_output")


def load_ops(trace_dir):
    """`[(name, op_type, milliseconds)]` of every op event in the trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"No *.xplane.pb under {trace_dir}")
    space = xplane_pb2.XSpace()
    with open(max(paths, key=os.path.getmtime), "rb") as file:
        space.ParseFromString(file.read())
    ops = []
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                label = plane.event_metadata[event.metadata_id].name
                name, _, op_type = label.rpartition(":")
                if not name or name.endswith(":"):  # `ExecutorState::Process`
                    continue
                ops.append((name, op_type, event.duration_ps / 1e9))
    return ops


def phase_of(name):
    if name.startswith("gradient_tape/"):
        return "backward"
    if "adamw" in name.lower() or "optimizer" in name.lower():
        return "optimizer"
    if "/" in name and "bert" in name.split("/")[0]:
        return "forward"
    return "other"


def component_of(name):
    """The layer an op belongs to inside a transformer block, e.g. `query`.

    Attention projections are named by projection (`query`, `key`, ...),
    the rest of attention is `attention_core`; ops outside a block by their
    first scope below the model (`embeddings_layer_norm`, `logits`, ...).
    """
    name = name.removeprefix("gradient_tape/")
    match = _LAYER.search(name)
    if not match:
        parts = name.split("/")
        scope = parts[2] if len(parts) > 3 and "backbone" in parts[1] else parts[
            1 if len(parts) > 2 else 0]
        return _SUFFIX.sub("", scope)
    parts = [_SUFFIX.sub("", part) for part in match.group(1).split("/")]
    if parts[0] == "self_attention_layer":
        return parts[1] if parts[1] in _PROJECTIONS else "attention_core"
    return parts[0]


def is_adapter_op(name):
    """Whether an op is LoRA math: in a query/value scope, not the frozen einsum."""
    name = name.removeprefix("gradient_tape/")
    match = _LAYER.search(name)
    if not match:
        return False
    parts = match.group(1).split("/")
    if len(parts) < 3 or _SUFFIX.sub("", parts[1]) not in ADAPTED:
        return False
    return parts[2] != _FROZEN_OP


def summarize(trace_dir, steps, top=12):
    """Per-step milliseconds by op type, phase and block component.

    Returns:
        A dict: `op_ms_per_step` (all op time, summed over threads),
        `by_type`, `by_phase`, `by_component` (`{name: ms}`, largest first,
        `top` entries), `adapter_ops_ms` (every op of the adapters, forward
        and backward), and `adapter_minus_key_ms`: (query + value - 2·key),
        the extra time of the two adapted projections over two plain ones
        of the same shape.
    """
    by_type, by_phase, by_component = (collections.Counter() for _ in range(3))
    adapter_ms = 0.0
    for name, op_type, ms in load_ops(trace_dir):
        by_type[op_type] += ms / steps
        by_phase[phase_of(name)] += ms / steps
        by_component[component_of(name)] += ms / steps
        if is_adapter_op(name):
            adapter_ms += ms / steps
    total = sum(by_type.values())
    return {
        "op_ms_per_step": total,
        "by_type": dict(by_type.most_common(top)),
        "by_phase": dict(by_phase.most_common()),
        "by_component": dict(by_component.most_common(top)),
        "adapter_ops_ms": adapter_ms,
        "adapter_minus_key_ms": (
            by_component["query"] + by_component["value"] - 2 * by_component["key"]
        ),
    }
