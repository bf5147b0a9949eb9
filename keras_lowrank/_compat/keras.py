"""Every private Keras attribute keras_lowrank relies on.

Keras 3 has no public API for some of what model surgery and export need:
the list of a layer's direct sublayers, a layer's own (not its children's)
variables, the kernel variable behind the `kernel` property, the graph of a
Functional model, the TensorFlow-backend functions that `ops.take` and
`ops.moments` call. Each function below has a test of its own in
`tests/compat/test_keras.py`, so a Keras upgrade that moves one breaks a
named test, not the package somewhere unknown. Pinned: keras==3.15.1.
"""

import contextlib
import gc
import importlib

import keras

# === Layers ===


def sublayers(layer):
    """The direct sublayers of `layer`, in tracking order (Keras `_layers`)."""
    return list(getattr(layer, "_layers", []))


def set_sublayers(layer, layers):
    """Replaces the tracked list of direct sublayers, in place."""
    layer._layers[:] = layers


def is_sublayer_list(layer, value):
    """Whether `value` is the tracked list of `layer`'s direct sublayers."""
    return value is vars(layer).get("_layers")


def has_sublayers(layer):
    """Whether `layer` tracks any direct sublayer (a non-empty `_layers`)."""
    return bool(getattr(layer, "_layers", None))


def flatten_layers(layer, include_self=True):
    """`layer` (optionally) and every layer below it (`_flatten_layers`)."""
    return list(layer._flatten_layers(include_self=include_self))


def own_trainable_weights(layer):
    """The trainable variables `layer` created itself, not its sublayers'."""
    return layer._trainable_variables


def kernel_variable(layer, name="kernel"):
    """The variable behind `layer.<name>`.

    Dense, EinsumDense and Embedding expose their kernel through a property
    that adds Keras' own LoRA delta when enabled; the variable itself is
    `_kernel` (`_embeddings`). Falls back to the attribute.
    """
    variable = getattr(layer, f"_{name}", None)
    return getattr(layer, name) if variable is None else variable


@contextlib.contextmanager
def unlocked_tracker(layer):
    """Lets a built layer's tracker take a new sublayer for a moment."""
    tracker = getattr(layer, "_tracker", None)
    locked = tracker is not None and tracker.locked
    if locked:
        tracker.unlock()
    try:
        yield
    finally:
        if locked:
            tracker.lock()


# === Functional graphs ===


def move_nodes(old, new):
    """Gives `new` the graph nodes of `old` (a layer it replaces)."""
    new._inbound_nodes = old._inbound_nodes
    new._outbound_nodes = old._outbound_nodes


def is_graph(owner):
    """Whether `owner` holds a Functional graph of operations."""
    return hasattr(owner, "_operations")


def replace_in_graph(function, old, new):
    """Points the operations and nodes of a Functional graph at `new`."""
    from keras.src.ops.function import make_node_key

    _replace_in_list(function._operations, old, new)
    # `Functional.get_config` keeps the nodes whose keys, made of their
    # operation's id, are in `_nodes`: without this, `new`'s nodes are
    # dropped from the config (and an output of `new` raises).
    if hasattr(function, "_nodes"):
        keys = {make_node_key(old, i): make_node_key(new, i)
                for i in range(len(new._inbound_nodes))}
        function._nodes = {keys.get(key, key) for key in function._nodes}
    for operations in getattr(function, "_operations_by_depth", {}).values():
        _replace_in_list(operations, old, new)
    for nodes in getattr(function, "_nodes_by_depth", {}).values():
        for node in nodes:
            if node.operation is old:
                node.operation = new
                for tensor in node.outputs:
                    history = tensor._keras_history
                    tensor._keras_history = type(history)(
                        new, history.node_index, history.tensor_index
                    )


def sequential_graph(layer):
    """The Functional graph a built Sequential model keeps, or None."""
    return getattr(layer, "_functional", None)


def _replace_in_list(items, old, new):
    for i, item in enumerate(list(items)):
        if item is old:
            items[i] = new


# === Serialization ===


def register_serializable_name(cls, name):
    """Makes Keras save `cls` under `name` (for classes made at run time)."""
    from keras.src.saving import object_registration

    keras.saving.get_custom_objects()  # make sure the registry exists
    object_registration.GLOBAL_CUSTOM_NAMES[cls] = name


# === EinsumDense ===


def analyze_einsum_string(equation, bias_axes, input_shape, output_shape):
    """Keras' EinsumDense shape analysis: `(kernel_shape, bias_shape,
    full_output_shape, ...)` for an equation, as EinsumDense builds it."""
    from keras.src.layers.core.einsum_dense import _analyze_einsum_string

    return _analyze_einsum_string(equation, bias_axes, input_shape, output_shape)


# === TensorFlow-backend functions, replaced while tracing ===

# Where Keras' ops find them: `ops.take` and `ops.moments` call the backend
# module's function at call time, and `Softmax` asks
# `_large_negative_number(dtype)` for the value of masked-off scores.
_TAKE = ("keras.src.backend.tensorflow.numpy", "take")
_MOMENTS = ("keras.src.backend.tensorflow.nn", "moments")
_MASK_VALUE = ("keras.src.layers.activations.softmax", "_large_negative_number")


def backend_take():
    """The function `keras.ops.take` calls on the TensorFlow backend now."""
    return _get(_TAKE)


def backend_moments():
    """The function `keras.ops.moments` calls on the TensorFlow backend now."""
    return _get(_MOMENTS)


def softmax_mask_value():
    """The function `Softmax` calls for the value of masked-off scores now:
    `function(dtype) -> number` (-1e9 in float32)."""
    return _get(_MASK_VALUE)


@contextlib.contextmanager
def replaced_backend_functions(take=None, moments=None, mask_value=None):
    """Within: the given functions stand in for Keras' own; restored after.

    Args:
        take: `take(x, indices, axis=None)` for `keras.ops.take` on the
            TensorFlow backend, or None to keep Keras' own.
        moments: `moments(x, axes, keepdims=False, synchronized=False)` for
            `keras.ops.moments` on the TensorFlow backend, or None.
        mask_value: `mask_value(dtype) -> number`, the score `Softmax` puts
            where its mask is off, or None.
    """
    replacements = [
        (location, function)
        for location, function in ((_TAKE, take), (_MOMENTS, moments),
                                   (_MASK_VALUE, mask_value))
        if function is not None
    ]
    originals = [(location, _get(location)) for location, _ in replacements]
    try:
        for location, function in replacements:
            _set(location, function)
        yield
    finally:
        for location, function in originals:
            _set(location, function)


def _get(location):
    module, name = location
    return getattr(importlib.import_module(module), name)


def _set(location, function):
    module, name = location
    setattr(importlib.import_module(module), name, function)


# === Optimizers ===


def weight_decay_reading_learning_rate_once(optimizer):
    """Has `optimizer`'s weight decay read its learning rate once per step,
    not once per variable; returns `optimizer`.

    Keras' TensorFlow optimizer (`TFOptimizer._apply_weight_decay`) reads
    `self.learning_rate` for each variable it decays, and a
    `LearningRateSchedule` builds its ops at each read: AdamW with a warmup
    + cosine schedule on 420 LoRA variables (SmolLM2, every linear layer)
    built it 421 times, 5,400 of the update's 24,400 graph ops (22%). Here
    `_apply_weight_decay` reads it once and each variable's read
    (`_get_current_learning_rate`, which the `learning_rate` property calls)
    returns that value: the schedule of the same `iterations` (the step
    counts it only after its updates), so the same decay bit for bit.
    Under a `tf.distribute` strategy, whose replicas decay on threads of
    their own, Keras' reads stay as they are. A `LossScaleOptimizer`
    (mixed float16) has its inner optimizer changed, which decays. Calling
    it again changes nothing.
    """
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        weight_decay_reading_learning_rate_once(inner)
        return optimizer
    apply_weight_decay = optimizer._apply_weight_decay
    if getattr(apply_weight_decay, "reads_learning_rate_once", False):
        return optimizer

    def apply_once(variables):
        if optimizer.weight_decay is None or _distributed():
            return apply_weight_decay(variables)
        learning_rate = optimizer.learning_rate
        optimizer._get_current_learning_rate = lambda: learning_rate
        try:
            return apply_weight_decay(variables)
        finally:
            del optimizer._get_current_learning_rate

    apply_once.reads_learning_rate_once = True
    optimizer._apply_weight_decay = apply_once
    return optimizer


def _distributed():
    """Whether a TensorFlow step runs under a `tf.distribute` strategy."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy()


# === Quantized layers ===


@contextlib.contextmanager
def no_collection_per_dropped_variable():
    """Skips the full `gc.collect()` Keras' `Layer.__delattr__` runs for each
    variable a layer drops, within the context.

    Quantizing a layer drops its float kernel that way. A full collection
    walks every object of the process, a good part of a second in one that
    holds TensorFlow and a model, once per quantized layer. The dropped
    variable is freed by reference counting when `__delattr__` lets it go
    (no reference cycle holds it: `tests/compat/test_keras.py` checks), so
    the collection frees nothing more. `__delattr__` looks `gc.collect` up
    on the module at each call, which is what this replaces; another
    thread's `gc.collect()` in the meantime is skipped too.
    """
    collect = gc.collect
    gc.collect = lambda generation=2: 0
    try:
        yield
    finally:
        gc.collect = collect


_GROUPED_INT4 = ("keras.src.quantizers", "abs_max_quantize_grouped_with_zero_point")


@contextlib.contextmanager
def grouped_int4_rounding(quantize):
    """Within: `layer.quantize("int4")` with groups takes its integers, scales
    and zero points from `quantize(kernel, block_size)` instead of rounding
    each value to the nearest step; restored after.

    Keras' Dense, EinsumDense and Embedding compute them all with
    `keras.src.quantizers.abs_max_quantize_grouped_with_zero_point(kernel_2d,
    block_size, ...)`, on the kernel as the 2D (inputs, outputs) matrix they
    then store, so a replacement keeps Keras' layout and storage.

    Args:
        quantize: `quantize(kernel, block_size) -> (values, scale, zero)`:
            numpy in, numpy out, with the shapes and dtypes of Keras' own
            (int8 values in [-8, 7]; scale and zero (groups, outputs)).
    """
    original = _get(_GROUPED_INT4)

    def replacement(inputs, block_size, value_range=(-8, 7), dtype="int8",
                    epsilon=keras.backend.epsilon(), to_numpy=False):
        if tuple(value_range) != (-8, 7):  # not int4: Keras' own
            return original(inputs, block_size, value_range, dtype, epsilon, to_numpy)
        values, scale, zero = quantize(keras.ops.convert_to_numpy(inputs), block_size)
        return (keras.ops.convert_to_tensor(values.astype(dtype)),
                keras.ops.convert_to_tensor(scale, dtype=inputs.dtype),
                keras.ops.convert_to_tensor(zero))

    _set(_GROUPED_INT4, replacement)
    try:
        yield
    finally:
        _set(_GROUPED_INT4, original)


@contextlib.contextmanager
def call_inputs_recorded(layers, record):
    """Within: each call of one of `layers` first hands
    `record(layer, inputs)` its first argument; restored after.

    `Layer.__call__` runs `self.call`, so an instance attribute in front of
    the class's method sees every call, eager or traced, of a layer inside
    any model.
    """
    patched = []
    try:
        for layer in layers:
            def call(inputs, *args, _layer=layer, _call=layer.call, **kwargs):
                record(_layer, inputs)
                return _call(inputs, *args, **kwargs)

            object.__setattr__(layer, "call", call)
            patched.append(layer)
        yield
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")


def dequantized_kernel(layer):
    """The float32 kernel of an int8/int4-quantized Dense, EinsumDense or
    Embedding (Keras' own quantized form), in the float kernel's shape.

    Undoes `layer.quantize("int8" | "int4")` as Keras' own
    `_get_kernel_with_merged_lora` does before merging: int4 values are
    unpacked (`_orig_output_dim`, `_int4_unpacked_column_size`), per-channel
    scales divide, grouped int4 (`_int4_block_size`) goes through
    `dequantize_with_sz_map`, and EinsumDense's scale is laid out back
    (`_adjust_scale_for_dequant`).
    """
    from keras import ops
    from keras.src.quantizers.quantizers import dequantize_with_sz_map

    mode = layer.quantization_mode
    if mode not in ("int8", "int4"):
        raise ValueError(
            f"dequantized_kernel expected a layer quantized as 'int8' or "
            f"'int4'. Received: layer '{layer.name}' with "
            f"quantization_mode={mode!r}"
        )
    grouped = getattr(layer, "_int4_block_size", None) not in (None, -1)
    if isinstance(layer, keras.layers.Embedding):
        values, scale = layer._embeddings, layer.embeddings_scale
        if mode == "int4":
            values = keras.quantizers.unpack_int4(values, layer._orig_output_dim, axis=-1)
        values = ops.cast(values, "float32")
        if mode == "int4" and grouped:
            return dequantize_with_sz_map(
                values, scale, layer.embeddings_zero, layer.g_idx, group_axis=-1)
        return values / ops.expand_dims(scale, -1)  # (vocab, dim) / (vocab, 1)
    if isinstance(layer, keras.layers.EinsumDense):
        if mode == "int8":
            return ops.cast(layer._kernel, "float32") / layer._adjust_scale_for_dequant(
                layer.kernel_scale)
        columns = layer._int4_unpacked_column_size
        shape = tuple(layer.original_kernel_shape)
    else:
        columns = layer._orig_output_dim if mode == "int4" else None
        shape = None
    values = layer._kernel
    if mode == "int4":
        values = keras.quantizers.unpack_int4(values, columns, axis=-1)
    values = ops.cast(values, "float32")  # (fan_in, fan_out)
    if mode == "int4" and grouped:
        kernel = dequantize_with_sz_map(
            values, layer.kernel_scale, layer.kernel_zero, layer.g_idx, group_axis=0)
    else:
        kernel = values / layer.kernel_scale
    return kernel if shape is None else ops.reshape(kernel, shape)
