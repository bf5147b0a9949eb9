"""What generation export needs from a keras-hub causal LM, in one place.

Every access to keras-hub's cached-decoding interface goes through here:
`call_with_cache(token_ids, cache, cache_update_index) -> (logits,
hidden_states, cache)` (public on every keras-hub `CausalLM` that supports
cached generation), keras-hub's private `_build_cache` (only to learn the
cache's shape; reached through `keras_lowrank._compat.keras_hub`), the
backbone's `max_sequence_length` (learned position embeddings), the
preprocessor tokenizer's start and end tokens, and
`keras.ops.slice_update`, which the attention layers call to write the
cache and which `onnx_friendly_slice_update` replaces while tracing for ONNX.
`tests/generation/test_cached_causal_lm.py` checks each access.

Most families keep the cache as one tensor (batch, layers, 2, positions,
KVH, D). Gemma 3 keeps a tuple of per-layer `(key, value)` pairs, each
(batch, positions, KVH, D), and its `_build_cache` takes its image inputs
too (None for text); `cache_shape` reports the one-tensor shape for both,
and `call_with_cache` splits that tensor into the pairs and stacks the
pairs back, so the exports see one layout.
"""

import contextlib
import inspect
import weakref

import keras

from keras_lowrank._compat import keras_hub as keras_hub_compat
from keras_lowrank.utils.optional import tensorflow as tf

# keras-hub's cache: (batch, num_layers, 2 (key, value), max_length,
# num_key_value_heads, head_dim).
CACHE_RANK = 6
_SEQUENCE_AXIS = 3
# `cache_shape`'s trace, once per model: {model: (shape at one length,
# whether the model keeps per-layer (key, value) pairs)}.
_traced_shapes = weakref.WeakKeyDictionary()


def is_cached_causal_lm(model) -> bool:
    """Whether `model` is a keras-hub causal LM that decodes with a KV cache."""
    return (
        isinstance(model, keras.Model)
        and callable(getattr(model, "call_with_cache", None))
        and keras_hub_compat.cache_builder(model) is not None
        and getattr(model, "backbone", None) is not None
    )


def check_cached_causal_lm(model, what="export_generator"):
    """Raises unless `model` is a keras-hub causal LM with `call_with_cache`.

    Raises:
        TypeError: naming the received class.
    """
    if not is_cached_causal_lm(model):
        raise TypeError(
            f"{what} needs a keras-hub CausalLM whose attention layers take "
            "a KV cache (a `call_with_cache` method and a backbone, e.g. "
            "Llama3CausalLM, GPT2CausalLM, GemmaCausalLM). Received: "
            f"{type(model).__name__}"
        )


def vocabulary_size(model) -> int:
    return int(model.backbone.vocabulary_size)


def max_positions(model):
    """The longest sequence the backbone can embed, or None (RoPE models)."""
    value = getattr(model.backbone, "max_sequence_length", None)
    return None if value is None else int(value)


def check_exportable(model, max_length, what="export_generator"):
    """Raises unless `model` computes in float32 and embeds `max_length`
    positions (where its backbone learns them).

    Args:
        model: a keras-hub causal LM (`check_cached_causal_lm` passed).
        max_length: int. The positions the export's cache holds.
        what: str. The exporter named in the message.

    Raises:
        ValueError: naming the received dtype, or the model's positions and
            `max_length`.
        TypeError: a configuration keras-hub cannot trace
            (`untraceable_configuration`).
    """
    reason = untraceable_configuration(model)
    if reason is not None:
        raise TypeError(f"{what} does not export {reason}.")
    dtype = getattr(model, "compute_dtype", "float32")
    if dtype != "float32":
        raise ValueError(
            f"{what} exports float32 models. Received: {type(model).__name__} "
            f"computing in {dtype}. Load it with dtype='float32'.")
    positions = max_positions(model)
    if positions is not None and max_length > positions:
        raise ValueError(
            f"{type(model).__name__} embeds at most {positions} positions "
            f"(max_sequence_length). Received: max_length={max_length}")


def untraceable_configuration(model):
    """Why keras-hub cannot trace `model`'s `call_with_cache` with a
    symbolic cache index (what every export graph needs), or None.

    keras-hub 0.32's `QwenAttention` with a sliding window computes
    `cache_update_index if cache_update_index else 0`: a tensor as a Python
    bool, which TensorFlow refuses in a graph (OperatorNotAllowedInGraphError).
    """
    backbone = model.backbone
    if (_is_a(model, "QwenCausalLM")
            and getattr(backbone, "use_sliding_window_attention", False)):
        window = getattr(backbone, "sliding_window_size", None)
        return (
            "a QwenCausalLM with use_sliding_window_attention=True "
            f"(sliding_window_size={window}), whose keras-hub attention tests "
            "the cache index as a Python bool, which a traced graph cannot "
            "do. Rebuild it with use_sliding_window_attention=False: the "
            f"same model whenever max_length <= {window}")
    return None


def _is_a(model, class_name):
    return class_name in {cls.__name__ for cls in type(model).__mro__}


def preprocessor_token(model, name):
    """`model.preprocessor.tokenizer.<name>` (`"start_token_id"`,
    `"end_token_id"`), or None where the model has no such token."""
    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    return getattr(tokenizer, name, None)


def added_start_token(model):
    """The token the preprocessor puts before a text prompt in
    `generate()` (`add_start_token`), or None."""
    if not getattr(getattr(model, "preprocessor", None), "add_start_token", False):
        return None
    return preprocessor_token(model, "start_token_id")


def cache_shape(model, max_length) -> tuple:
    """The shape of `model`'s cache for batch 1 and `max_length` positions.

    Learned by tracing keras-hub's `_build_cache` (no computation runs),
    once per model: the other dimensions do not depend on the length. The
    trace leaves out the builder's seeding pass over the prompt
    (`keras_hub_compat.empty_cache_builder`: milliseconds, where the whole
    30-block SmolLM2 took 8.7 s), and traces it whole only for a builder
    that needs its result.

    Raises:
        TypeError: the model's cache is not one tensor of keras-hub's layout.
    """
    shape = list(_traced(model, max_length)[0])
    shape[_SEQUENCE_AXIS] = max_length
    return tuple(shape)


def _traced(model, max_length):
    traced = _traced_shapes.get(model)
    if traced is None:
        traced = _trace_cache_shape(model, max_length)
        _traced_shapes[model] = traced
    return traced


def _trace_cache_shape(model, max_length):
    """`(shape, per_layer)` of `model`'s cache at `max_length` positions."""
    empty = keras_hub_compat.empty_cache_builder(model)
    if empty is not None:
        try:
            return _checked_shape(model, _built_cache(empty, max_length), max_length)
        except (TypeError, ValueError, AttributeError):
            pass  # a builder that reads the seeding pass's outputs
    return _checked_shape(
        model, _built_cache(keras_hub_compat.cache_builder(model), max_length),
        max_length)


def _built_cache(builder, max_length):
    """The symbolic cache `builder` returns for a (1, max_length) prompt."""
    # Inputs after `token_ids` (Gemma 3's image inputs) stay None: text only.
    others = len(inspect.signature(builder).parameters) - 1
    build_cache = tf.function(lambda token_ids: builder(token_ids, *[None] * others))
    outputs = build_cache.get_concrete_function(
        tf.TensorSpec((1, max_length), tf.int32))
    cache = outputs.structured_outputs
    return cache[1] if isinstance(cache, (tuple, list)) and len(cache) == 2 else None


def _checked_shape(model, cache, max_length):
    per_layer = _is_per_layer(cache)
    shape = _per_layer_shape(cache) if per_layer else (
        None if cache is None else tuple(cache.shape))
    if (
        shape is None
        or len(shape) != CACHE_RANK
        or shape[_SEQUENCE_AXIS] != max_length
        or None in shape
    ):
        raise TypeError(
            f"{type(model).__name__} keeps its cache as {cache!r}; generation "
            "export supports one tensor of shape (batch, num_layers, 2, "
            "max_length, num_key_value_heads, head_dim), or a tuple of "
            "per-layer (key, value) pairs of (batch, max_length, "
            "num_key_value_heads, head_dim)."
        )
    return shape, per_layer


def _is_per_layer(cache):
    """Whether `cache` is a tuple of per-layer `(key, value)` pairs."""
    return (isinstance(cache, (tuple, list)) and len(cache) > 0
            and all(isinstance(pair, (tuple, list)) and len(pair) == 2
                    for pair in cache))


def _per_layer_shape(cache):
    """The one-tensor shape of per-layer pairs of equal shapes, or None."""
    shapes = {tuple(tensor.shape) for pair in cache for tensor in pair}
    if len(shapes) != 1 or len(next(iter(shapes))) != CACHE_RANK - 2:
        return None
    batch, *rest = next(iter(shapes))
    return (batch, len(cache), 2, *rest)


def _to_model_cache(model, cache):
    """The one-tensor `cache` as `model` takes it (split for Gemma 3)."""
    if not _traced(model, _static_length(cache))[1]:
        return cache
    layers = cache.shape[1]
    return tuple((cache[:, i, 0], cache[:, i, 1]) for i in range(layers))


def _from_model_cache(cache):
    """`model`'s cache as one tensor (per-layer pairs stacked)."""
    if not _is_per_layer(cache):
        return cache
    return keras.ops.stack(
        [keras.ops.stack(pair, axis=1) for pair in cache], axis=1)


def _static_length(cache):
    length = cache.shape[_SEQUENCE_AXIS]
    return 8 if length is None else int(length)  # traced once; any length


def call_with_cache(model, token_ids, cache, cache_update_index):
    """`(logits, next_cache)` of keras-hub's `call_with_cache`."""
    logits, _, next_cache = model.call_with_cache(
        token_ids, _to_model_cache(model, cache), cache_update_index
    )
    return logits, _from_model_cache(next_cache)


def check_step_keeps_cache(model, step):
    """Traces `step` and raises unless it returns a cache of the shape it
    takes: the check of `cache_shape`, which reads the shape off the
    builder's allocation (`keras_hub_compat.empty_cache_builder`).

    Args:
        model: the causal LM `step` runs (named in the message).
        step: a `tf.function` of `(token_ids, cache, index) -> (logits,
            cache)` (`call_with_cache`) with an `input_signature`.

    Raises:
        TypeError: naming the shape taken and the shape returned.
    """
    concrete = step.get_concrete_function()
    taken = tuple(concrete.structured_input_signature[0][1].shape)
    returned = tuple(concrete.structured_outputs[1].shape)
    if returned != taken:
        raise TypeError(
            f"{type(model).__name__}.call_with_cache returns a cache of shape "
            f"{returned} for one of {taken}; cached generation needs the "
            "shape it is given.")


def call_with_cache_at(model, token_ids, cache, cache_update_index, select):
    """`(logits of the positions `select` keeps, next_cache)`.

    keras-hub's `call_with_cache` ends with the head on every position,
    `token_embedding(hidden_states, reverse=True)` (Llama, Gemma, GPT-2,
    ...; a logit soft cap is inside the reversed embedding). Here the head
    runs on `select(hidden_states)` alone; in a traced graph the unused
    full-length head is dead and the converters drop it.

    Args:
        select: `hidden_states (batch, length, hidden) -> (batch, k,
            hidden)`, e.g. the chunk's last real position.
    """
    _, hidden_states, next_cache = model.call_with_cache(
        token_ids, _to_model_cache(model, cache), cache_update_index
    )
    logits = model.backbone.token_embedding(select(hidden_states), reverse=True)
    return logits, _from_model_cache(next_cache)


def _pad_and_select_update(inputs, start_indices, updates):
    """`slice_update` as Pad + Where, which tf2onnx converts (it has no
    converter for XLA's DynamicUpdateSlice)."""
    inputs = tf.convert_to_tensor(inputs)
    updates = tf.cast(updates, inputs.dtype)
    start = tf.stack([tf.cast(i, tf.int32) for i in start_indices])
    end = tf.shape(inputs) - start - tf.shape(updates)
    paddings = tf.stack([start, end], axis=1)  # (rank, 2)
    region = tf.pad(tf.ones_like(updates), paddings) > 0.5
    return tf.where(region, tf.pad(updates, paddings), inputs)


@contextlib.contextmanager
def onnx_friendly_slice_update():
    """Makes `keras.ops.slice_update` convertible to ONNX while tracing."""
    original = keras.ops.slice_update
    keras.ops.slice_update = _pad_and_select_update
    try:
        yield
    finally:
        keras.ops.slice_update = original
