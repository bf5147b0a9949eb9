"""`write_genai_model`: a causal LM as the `model.onnx` ONNX Runtime GenAI runs.

GenAI's contract (non-shared buffers, `past_present_share_buffer: false`):
inputs `input_ids` [B, S], `attention_mask` [B, past + S], `position_ids`
[B, S] (int64) and `past_key_values.N.key/value` [B, KVH, past, D];
outputs `logits` [B, S, V] and `present.N.key/value` [B, KVH, past + S,
D]. The past grows by S at every call (0 on the first), so the graph takes
a cache of any length, not a fixed one.

The graph is keras-hub's own `call_with_cache` on a cache exactly
`past + S` long: the past, transposed to keras-hub's layout [B, layers, 2,
positions, KVH, D] and padded with S empty positions, written at
`cache_update_index = past`. keras-hub's attention then writes the new
keys and values into the padding, masks causally from that index and
rotates (or embeds) positions from it; the updated cache is the present.
The padding is the concatenation GenAI expects, with no copy of the
attention math. Positions come from the past length, so `position_ids`
and `attention_mask` are inputs GenAI feeds and the graph does not read:
batch 1, or batches of prompts of equal length (no padding).

The weights enter the traced function as inputs and become initializers
afterwards (`onnx_conversion.convert_step`, as for `onnx_generator`). With
runtime adapters the LoRA factors stay inputs, after the cache, named
after their layer (`onnx_genai_adapter.factor_input_names`), each with a
zero initializer of its name: GenAI feeds an adapter's tensors there, and
a session without one runs the base model.
"""

import os

import numpy as np

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.generator_spec import adapter_input_names
from keras_lowrank.generation.onnx_conversion import convert_step
from keras_lowrank.generation.onnx_genai_adapter import factor_input_names
from keras_lowrank.generation.step_functions import fed_factors
from keras_lowrank.utils.optional import import_optional
from keras_lowrank.utils.optional import tensorflow as tf

MODEL_FILE = "model.onnx"
# Beside model.onnx when the weights pass protobuf's 2 GB limit.
WEIGHTS_FILE = "model.onnx.data"
OPSET = 17
PAST_KEY = "past_key_values.{}.key"
PAST_VALUE = "past_key_values.{}.value"
PRESENT_KEY = "present.{}.key"
PRESENT_VALUE = "present.{}.value"
TOKEN_INPUTS = ("input_ids", "attention_mask", "position_ids")
# Protobuf refuses a message over 2 GiB; leave room for the graph itself.
_INLINE_WEIGHT_BYTES = 1_800_000_000
# keras-hub's cache [B, layers, 2, positions, KVH, D] <-> GenAI's
# [B, layers, 2, KVH, positions, D] (the same permutation both ways).
_SWAP_HEADS_AND_POSITIONS = (0, 1, 2, 4, 3, 5)


def genai_step(model, num_layers):
    """`(input_ids, attention_mask, position_ids, *past) -> outputs`: one
    GenAI call of `model` (past: key and value of each layer in turn)."""

    def step(input_ids, attention_mask, position_ids, *past):
        del attention_mask, position_ids  # positions follow the past length
        # num_layers x (key, value) of (B, KVH, past, D) -> (B, L, 2, KVH, past, D)
        cache = tf.stack([tf.stack(past[2 * i:2 * i + 2], axis=1)
                          for i in range(num_layers)], axis=1)
        cache = tf.transpose(cache, _SWAP_HEADS_AND_POSITIONS)
        past_length = tf.shape(cache)[3]
        new = tf.shape(input_ids)[1]
        # (B, L, 2, past + S, KVH, D), the last S positions empty
        cache = tf.pad(cache, [[0, 0], [0, 0], [0, 0], [0, new], [0, 0], [0, 0]])
        logits, cache = cached_causal_lm.call_with_cache(
            model, tf.cast(input_ids, tf.int32), cache, past_length)
        present = tf.transpose(cache, _SWAP_HEADS_AND_POSITIONS)
        outputs = {"logits": logits}
        for i in range(num_layers):
            outputs[PRESENT_KEY.format(i)] = present[:, i, 0]
            outputs[PRESENT_VALUE.format(i)] = present[:, i, 1]
        return outputs

    return step


def genai_signature(num_layers, num_key_value_heads, head_dim):
    """Input specs of `genai_step`, named as GenAI feeds them."""
    signature = [tf.TensorSpec((None, None), tf.int64, name=name)
                 for name in TOKEN_INPUTS]
    for i in range(num_layers):
        for name in (PAST_KEY.format(i), PAST_VALUE.format(i)):
            signature.append(tf.TensorSpec(
                (None, num_key_value_heads, None, head_dim), tf.float32,
                name=name))
    return signature


def write_genai_model(model, folder, cache_shape, adapter_inputs=None):
    """Writes `folder/model.onnx` (and `model.onnx.data` for weights over
    ~1.8 GB) for `model`, merged and float32.

    Args:
        model: a keras-hub causal LM with `call_with_cache`.
        folder: str. An existing folder.
        cache_shape: keras-hub's cache shape (`cache_shape(model, n)`):
            (1, layers, 2, positions, KVH, D).
        adapter_inputs: a `GenAIAdapterInputs`: its layers' factors become
            graph inputs with zero defaults. None: none (adapters merged).

    Returns:
        The file names written, `model.onnx` first.
    """
    _, num_layers, _, _, kv_heads, head_dim = cache_shape
    variables = list(model.variables)
    signature = genai_signature(num_layers, kv_heads, head_dim)
    # Factors converted under plain input names, renamed after their layers.
    factors = [] if adapter_inputs is None else fed_factors(model, adapter_inputs)
    fed = {id(v): adapter_input_names(i // 2)[i % 2]
           for i, v in enumerate(factors)}
    names = [fed.get(id(v), f"weight_{i}") for i, v in enumerate(variables)]
    proto, frozen_bytes = convert_step(
        genai_step(model, num_layers), signature, variables, names, OPSET,
        fed=fed.values())
    onnx = import_optional("onnx", "to export ONNX")
    shapes = {}
    if adapter_inputs is not None:
        shapes = adapter_inputs.input_shapes()
        _name_factor_inputs(proto, adapter_inputs)
    _name_dimensions(proto, kv_heads, head_dim,
                     cached_causal_lm.vocabulary_size(model))
    _check_interface(proto, signature, num_layers, list(shapes))
    path = os.path.join(folder, MODEL_FILE)
    if frozen_bytes <= _INLINE_WEIGHT_BYTES:
        onnx.save(proto, path)
        return (MODEL_FILE,)
    onnx.save(proto, path, save_as_external_data=True,
              all_tensors_to_one_file=True, location=WEIGHTS_FILE)
    return MODEL_FILE, WEIGHTS_FILE


def _name_factor_inputs(proto, adapter_inputs):
    """Renames the factor inputs after their layers and gives each a zero
    initializer of its name, its default when no adapter is fed."""
    from onnx import numpy_helper

    renames = {}
    for i, (path, *_) in enumerate(adapter_inputs.adapters):
        renames.update(zip(adapter_input_names(i), factor_input_names(path)))
    graph = proto.graph
    for value in graph.input:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
    for name, shape in adapter_inputs.input_shapes().items():
        graph.initializer.append(
            numpy_helper.from_array(np.zeros(shape, np.float32), name))


def _name_dimensions(proto, kv_heads, head_dim, vocabulary):
    """Names the dynamic dimensions as GenAI's own models do, and restores
    the static ones tf2onnx lost (it writes `unk__N` for both)."""
    shapes = {
        "input_ids": ("batch_size", "sequence_length"),
        "position_ids": ("batch_size", "sequence_length"),
        "attention_mask": ("batch_size", "total_sequence_length"),
        "logits": ("batch_size", "sequence_length", vocabulary),
        "past": ("batch_size", kv_heads, "past_sequence_length", head_dim),
        "present": ("batch_size", kv_heads, "total_sequence_length", head_dim),
    }
    for value in list(proto.graph.input) + list(proto.graph.output):
        kind = value.name.split(".")[0]
        kind = {"past_key_values": "past"}.get(kind, kind)
        for dim, size in zip(value.type.tensor_type.shape.dim, shapes.get(kind, ())):
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = int(size)


def _check_interface(proto, signature, num_layers, factor_inputs):
    inputs = [i.name for i in proto.graph.input]
    outputs = {o.name for o in proto.graph.output}
    expected_inputs = [spec.name for spec in signature] + list(factor_inputs)
    expected_outputs = {"logits"} | {
        name.format(i) for i in range(num_layers)
        for name in (PRESENT_KEY, PRESENT_VALUE)}
    if inputs != expected_inputs or outputs != expected_outputs:
        raise RuntimeError(
            "The converted graph does not have GenAI's inputs and outputs. "
            f"Expected inputs {expected_inputs} and outputs "
            f"{sorted(expected_outputs)}. Received: inputs {inputs}, "
            f"outputs {sorted(outputs)}."
        )
