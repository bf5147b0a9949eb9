"""One test per function of `keras_lowrank._compat.keras`.

Each test first checks the private Keras attribute the function relies on
(keras==3.15.1), then what the function does with it: when a Keras upgrade
moves one, the test named after the function fails.
"""

import contextlib
import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank._compat import keras as keras_compat


def _block():
    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = keras.layers.Dense(4, name="first")
            self.second = keras.layers.Dense(2, name="second")
            self.token = self.add_weight(shape=(2,), name="token")

        def call(self, x):
            return self.second(self.first(x)) + self.token

    block = Block(name="block")
    block(np.zeros((1, 3), "float32"))
    return block


def _functional():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden), name="net")


def _swap(model, old, new):
    keras_compat.move_nodes(old, new)
    keras_compat.replace_in_graph(model, old, new)
    keras_compat.set_sublayers(
        model, [new if layer is old else layer for layer in keras_compat.sublayers(model)])


# === Layers ===


def test_sublayers_are_the_direct_children_in_order():
    block = _block()
    assert isinstance(vars(block)["_layers"], list)
    assert [layer.name for layer in keras_compat.sublayers(block)] == ["first", "second"]
    assert keras_compat.sublayers(block.first) == []
    assert keras_compat.sublayers(block) is not block._layers  # a copy


def test_set_sublayers_replaces_the_tracked_list():
    block = _block()
    tracked = block._layers
    keras_compat.set_sublayers(block, [block.second, block.first])
    assert block._layers is tracked  # in place
    assert [layer.name for layer in keras_compat.sublayers(block)] == ["second", "first"]
    # Keras orders the weights by the tracked list.
    paths = [w.path for w in block.weights]
    assert paths.index("block/second/kernel") < paths.index("block/first/kernel")


def test_is_sublayer_list_tells_the_tracked_list_from_a_copy():
    block = _block()
    assert keras_compat.is_sublayer_list(block, block._layers)
    assert not keras_compat.is_sublayer_list(block, list(block._layers))
    assert not keras_compat.is_sublayer_list(block, [])


def test_has_sublayers_of_a_block_and_a_leaf():
    block = _block()
    assert keras_compat.has_sublayers(block)
    assert block.first._layers == []
    assert not keras_compat.has_sublayers(block.first)


def test_flatten_layers_walks_the_whole_tree():
    block = _block()
    assert callable(block._flatten_layers)
    names = [layer.name for layer in keras_compat.flatten_layers(block)]
    assert names == ["block", "first", "second"]
    assert [layer.name for layer in keras_compat.flatten_layers(
        block, include_self=False)] == ["first", "second"]


def test_own_trainable_weights_exclude_the_children():
    block = _block()
    assert [v.name for v in block._trainable_variables] == ["token"]
    assert [v.name for v in keras_compat.own_trainable_weights(block)] == ["token"]
    assert len(block.trainable_weights) == 5  # the children's are public


def test_kernel_variable_is_the_variable_not_keras_lora_sum():
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    assert keras_compat.kernel_variable(dense) is dense._kernel
    dense.enable_lora(2)
    dense.lora_kernel_b.assign(np.ones((2, 3), "float32"))
    variable = keras_compat.kernel_variable(dense)
    assert isinstance(variable, keras.Variable)
    assert not np.allclose(variable.numpy(), keras.ops.convert_to_numpy(dense.kernel))
    einsum = keras.layers.EinsumDense("ab,bc->ac", output_shape=3)
    einsum.build((None, 4))
    assert keras_compat.kernel_variable(einsum) is einsum._kernel
    table = keras.layers.Embedding(5, 2)
    table.build()
    assert keras_compat.kernel_variable(table, "embeddings") is table._embeddings


def test_unlocked_tracker_lets_a_built_layer_take_a_new_sublayer():
    block = _block()
    tracker = block._tracker
    assert tracker.locked
    with pytest.raises(ValueError, match="already built"):
        block.refused = keras.layers.Dense(1)
    with keras_compat.unlocked_tracker(block):
        assert not tracker.locked
        block.extra = keras.layers.Dense(1, name="extra")
    assert tracker.locked
    assert any(layer is block.extra for layer in keras_compat.sublayers(block))


# === Functional graphs ===


def test_move_nodes_hands_over_the_graph_nodes():
    model = _functional()
    old = model.get_layer("hidden")
    new = keras.layers.Dense(4, name="hidden")
    inbound, outbound = old._inbound_nodes, old._outbound_nodes
    assert len(inbound) == 1 and len(outbound) == 1
    keras_compat.move_nodes(old, new)
    assert list(new._inbound_nodes) == list(inbound)
    assert list(new._outbound_nodes) == list(outbound)


def test_is_graph_of_functional_models_and_plain_layers():
    model = _functional()
    assert isinstance(model._operations, list)
    assert keras_compat.is_graph(model)
    assert not keras_compat.is_graph(_block())


def test_replace_in_graph_reroutes_a_functional_model():
    model = _functional()
    old = model.get_layer("hidden")
    for name in ("_operations", "_nodes", "_operations_by_depth", "_nodes_by_depth"):
        assert hasattr(model, name), name
    new = keras.layers.Dense(4, name="hidden", kernel_initializer="ones")
    new.build((None, 3))
    _swap(model, old, new)
    assert old not in model._operations
    assert all(node.operation is not old
               for nodes in model._nodes_by_depth.values() for node in nodes)
    assert new.output._keras_history.operation is new
    x = np.ones((1, 3), "float32")
    hidden = keras.ops.convert_to_numpy(new(x))
    np.testing.assert_allclose(hidden, np.full((1, 4), 3.0))
    out = model.get_layer("out")
    want = hidden @ out.kernel.numpy() + out.bias.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-6)


def test_replace_in_graph_keeps_the_swapped_layer_in_the_config():
    model = _functional()
    old = model.get_layer("out")
    new = keras.layers.Dense(2, name="out")
    new.build((None, 4))
    _swap(model, old, new)
    config = model.get_config()  # Keras keys the graph's nodes by layer id
    assert [layer["name"] for layer in config["layers"]][-1] == "out"
    assert config["output_layers"] == ["out", 0, 0]


def test_sequential_graph_is_found():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    graph = keras_compat.sequential_graph(model)
    assert graph is model._functional
    assert graph is not None and keras_compat.is_graph(graph)
    assert keras_compat.sequential_graph(keras.layers.Dense(2)) is None


# === Serialization ===


def test_register_serializable_name_is_used_when_saving():
    from keras.src.saving import object_registration

    class Renamed(keras.layers.Dense):
        pass

    keras_compat.register_serializable_name(Renamed, "tests>Renamed")
    assert object_registration.GLOBAL_CUSTOM_NAMES[Renamed] == "tests>Renamed"
    config = keras.saving.serialize_keras_object(Renamed(2))
    assert config["registered_name"] == "tests>Renamed"


# === EinsumDense ===


def test_analyze_einsum_string_gives_the_kernel_shape():
    kernel_shape, bias_shape, output_shape, _, _ = keras_compat.analyze_einsum_string(
        "abc,cde->abde", "de", (None, 5, 8), (5, 2, 4))
    assert tuple(kernel_shape) == (8, 2, 4)
    assert tuple(bias_shape) == (2, 4)
    assert tuple(output_shape) == (None, 5, 2, 4)
    layer = keras.layers.EinsumDense("abc,cde->abde", (5, 2, 4), bias_axes="de")
    layer.build((None, 5, 8))
    assert tuple(layer.kernel.shape) == (8, 2, 4)


# === TensorFlow-backend functions ===


def test_backend_take_is_what_ops_take_calls():
    take = keras_compat.backend_take()
    assert take.__module__ == "keras.src.backend.tensorflow.numpy"
    calls = []

    def spy(x, indices, axis=None):
        calls.append(axis)
        return take(x, indices, axis=axis)

    with keras_compat.replaced_backend_functions(take=spy):
        keras.ops.take(np.arange(4.0), np.array([1, 2]), axis=0)
    assert calls == [0]


def test_backend_moments_is_what_ops_moments_calls():
    moments = keras_compat.backend_moments()
    assert moments.__module__ == "keras.src.backend.tensorflow.nn"
    calls = []

    def spy(x, axes, keepdims=False, synchronized=False):
        calls.append(tuple(axes))
        return moments(x, axes, keepdims=keepdims, synchronized=synchronized)

    with keras_compat.replaced_backend_functions(moments=spy):
        keras.layers.LayerNormalization()(np.ones((2, 3), "float32"))
    assert calls == [(-1,)]


def test_softmax_mask_value_is_what_masked_softmax_uses():
    mask_value = keras_compat.softmax_mask_value()
    assert mask_value("float32") == -1e9
    scores = np.array([[0.0, 1.0, 2.0]], "float32")
    mask = np.array([[True, True, False]])
    with keras_compat.replaced_backend_functions(mask_value=lambda dtype: -2.0):
        got = keras.ops.convert_to_numpy(keras.layers.Softmax()(scores, mask=mask))
    # The masked score counts as -2 in the sum, then its output is zeroed.
    want = np.exp([0.0, 1.0, -2.0]) / np.exp([0.0, 1.0, -2.0]).sum()
    np.testing.assert_allclose(got[0], [want[0], want[1], 0.0], rtol=1e-6)


def test_replaced_backend_functions_restores_keras_own():
    before = (keras_compat.backend_take(), keras_compat.backend_moments(),
              keras_compat.softmax_mask_value())
    try:
        with keras_compat.replaced_backend_functions(
            take=lambda *a, **k: None, moments=lambda *a, **k: None,
            mask_value=lambda dtype: 0.0,
        ):
            assert keras_compat.backend_take() is not before[0]
            raise RuntimeError("inside")
    except RuntimeError:
        pass
    assert (keras_compat.backend_take(), keras_compat.backend_moments(),
            keras_compat.softmax_mask_value()) == before
    with keras_compat.replaced_backend_functions(moments=lambda *a, **k: None):
        assert keras_compat.backend_take() is before[0]  # None: unchanged
    x = tf.constant([[1.0, 2.0]])
    np.testing.assert_allclose(keras.ops.take(x, [1], axis=1).numpy(), [[2.0]])


def _quantized(layer, mode, shape):
    layer.build(shape)
    float_kernel = np.array(keras_compat.kernel_variable(
        layer, "embeddings" if isinstance(layer, keras.layers.Embedding) else "kernel"))
    layer.quantize(mode)
    return float_kernel


@pytest.mark.parametrize("mode,bound", [("int8", 0.01), ("int4", 0.06)])
def test_dequantized_kernel_undoes_keras_quantize_for_each_kind(mode, bound):
    rng = np.random.default_rng(0)
    # The private attributes it reads, as Keras 3.15 sets them.
    dense = keras.layers.Dense(7)
    float_dense = _quantized(dense, mode, (None, 5))
    assert dense._kernel.dtype == "int8"
    if mode == "int4":
        assert dense._orig_output_dim == 7 and dense._int4_block_size == 128
    kernel = np.array(keras_compat.dequantized_kernel(dense))
    assert kernel.shape == (5, 7) and np.abs(kernel - float_dense).max() < bound
    x = rng.normal(size=(3, 5)).astype("float32")
    if mode == "int4":  # Keras' int4 call is weight-only: exactly x·W_deq + b
        np.testing.assert_allclose(dense(x), x @ kernel + np.array(dense.bias), atol=1e-6)

    einsum = keras.layers.EinsumDense("abcd,cde->abe", output_shape=(None, 4))
    float_einsum = _quantized(einsum, mode, (None, 5, 2, 3))
    if mode == "int4":
        assert einsum._int4_unpacked_column_size == 4
    else:
        assert callable(einsum._adjust_scale_for_dequant)
    kernel = np.array(keras_compat.dequantized_kernel(einsum))
    assert kernel.shape == (2, 3, 4) and np.abs(kernel - float_einsum).max() < bound

    table = keras.layers.Embedding(11, 6)
    float_table = _quantized(table, mode, None)
    kernel = np.array(keras_compat.dequantized_kernel(table))
    assert kernel.shape == (11, 6) and np.abs(kernel - float_table).max() < bound
    ids = np.array([[1, 3, 10]])
    np.testing.assert_array_equal(table(ids), kernel[ids])  # Keras' own lookup


def test_dequantized_kernel_refuses_a_float_layer():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    with pytest.raises(ValueError, match="expected a layer quantized as 'int8' or 'int4'"):
        keras_compat.dequantized_kernel(dense)


@pytest.mark.parametrize("layer,shape,kernel", [
    (lambda: keras.layers.Dense(6), (None, 40), (40, 6)),
    (lambda: keras.layers.EinsumDense("btd,dnh->btnh", output_shape=(None, 2, 3)),
     (None, 4, 40), (40, 6)),
    # An embedding's groups run along each vector: Keras passes the table
    # transposed.
    (lambda: keras.layers.Embedding(40, 6), None, (6, 40)),
])
def test_grouped_int4_rounding_is_what_keras_int4_stores(layer, shape, kernel):
    config = keras.quantizers.Int4QuantizationConfig(block_size=16)
    calls = []

    def fixed(kernel, block_size):  # every value 3, scale 0.5, zero -1
        calls.append((kernel.shape, block_size))
        groups = -(-kernel.shape[0] // block_size)
        return (np.full(kernel.shape, 3, "int8"),
                np.full((groups, kernel.shape[1]), 0.5, "float32"),
                np.full((groups, kernel.shape[1]), -1, "int8"))

    ours = layer()
    ours.build(shape)
    with keras_compat.grouped_int4_rounding(fixed):
        ours.quantize("int4", config=config)
    # Called once, on the 2D kernel Keras stores, input rows first.
    assert calls == [(kernel, 16)]
    np.testing.assert_array_equal(keras_compat.dequantized_kernel(ours), 2.0)
    # Restored: the next layer is Keras' own round to nearest.
    again = layer()
    again.build(shape)
    float_kernel = np.array(again.weights[0])
    again.quantize("int4", config=config)
    assert len(calls) == 1
    assert np.abs(np.array(keras_compat.dequantized_kernel(again)) - float_kernel).max() < 0.1


def test_call_inputs_recorded_sees_every_call_and_restores_the_layer():
    dense = keras.layers.Dense(2)
    model = keras.Sequential([keras.Input((3,)), dense, keras.layers.Dense(1)])
    x = np.ones((4, 3), "float32")
    seen = []
    with keras_compat.call_inputs_recorded([dense], lambda layer, inputs: seen.append(
            (layer, tuple(inputs.shape)))):
        model(x)
        tf.function(lambda batch: model(batch))(x)  # traced calls too
    assert seen == [(dense, (4, 3)), (dense, (4, 3))]
    assert "call" not in vars(dense)
    model(x)
    assert len(seen) == 2


def test_no_collection_per_dropped_variable_frees_the_kernel_without_collecting():
    dense = keras.layers.Dense(4)
    dense.build((None, 3))
    kernel = weakref.ref(keras_compat.kernel_variable(dense))
    collections = []
    count = lambda phase, info: collections.append(phase)  # noqa: E731
    gc.disable()  # no automatic collection in between: only explicit ones
    gc.callbacks.append(count)
    try:
        with keras_compat.no_collection_per_dropped_variable():
            dense.quantize("int8")  # Keras drops the float kernel: __delattr__
            assert kernel() is None  # freed by reference counting, no cycle
        assert collections == []
        gc.collect()
        assert collections == ["start", "stop"]  # gc.collect is given back
    finally:
        gc.callbacks.remove(count)
        gc.enable()


def test_keras_collects_once_per_dropped_variable_without_it():
    """What the context skips: Keras' own full collection, one per variable."""
    dense = keras.layers.Dense(4)
    dense.build((None, 3))
    collections = []
    count = lambda phase, info: collections.append(info["generation"])  # noqa: E731
    gc.callbacks.append(count)
    try:
        dense.quantize("int8")
    finally:
        gc.callbacks.remove(count)
    assert collections.count(2) >= 1


class _CountingSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Warmup + cosine decay (as the fine-tuning runs use) that counts its
    evaluations."""

    def __init__(self):
        self.schedule = keras.optimizers.schedules.CosineDecay(
            0.0, 3, warmup_target=1e-2, warmup_steps=2)
        self.calls = 0

    def __call__(self, step):
        self.calls += 1
        return self.schedule(step)


def _train_steps(once, steps=4, strategy=None):
    """`(schedule evaluations in the traced step, variables after `steps`
    AdamW steps)` on 6 variables, Keras' weight decay or the once-read."""
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (2, 5), (4,), (5, 3), (1,), (2, 2)]
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        variables = [keras.Variable(rng.normal(size=s).astype("float32"))
                     for s in shapes]
        schedule = _CountingSchedule()
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.1)
        optimizer.build(variables)
    if once:
        keras_compat.weight_decay_reading_learning_rate_once(optimizer)
    grads = [tf.constant(rng.normal(size=s).astype("float32")) for s in shapes]

    @tf.function
    def step():
        def apply():
            optimizer.apply_gradients(zip(grads, variables))
        if strategy:
            strategy.run(apply)
        else:
            apply()

    step.get_concrete_function()
    traced_calls = schedule.calls
    for _ in range(steps):
        step()
    return traced_calls, [np.asarray(v) for v in variables]


def test_weight_decay_reading_learning_rate_once_decays_the_same():
    # Keras' TensorFlow optimizer reads the schedule once per variable it
    # decays (6), and once for the update step.
    calls, expected = _train_steps(once=False)
    assert calls == 6 + 1
    calls, got = _train_steps(once=True)
    assert calls == 1 + 1
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)  # bit for bit, across 4 steps


def test_weight_decay_reading_learning_rate_once_is_idempotent():
    optimizer = keras.optimizers.AdamW(1e-3, weight_decay=0.1)
    keras_compat.weight_decay_reading_learning_rate_once(optimizer)
    patched = optimizer._apply_weight_decay
    keras_compat.weight_decay_reading_learning_rate_once(optimizer)
    assert optimizer._apply_weight_decay is patched
    # After a step the instance reads its learning rate as Keras does again.
    variable = keras.Variable(np.ones((2,), "float32"))
    optimizer.apply_gradients([(tf.ones((2,)), variable)])
    assert "_get_current_learning_rate" not in vars(optimizer)
    # Mixed float16 wraps the optimizer: the inner one decays.
    scaled = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.AdamW(1e-3, weight_decay=0.1))
    keras_compat.weight_decay_reading_learning_rate_once(scaled)
    assert scaled.inner_optimizer._apply_weight_decay.reads_learning_rate_once


def test_weight_decay_reading_learning_rate_once_leaves_a_strategy_to_keras():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    calls, expected = _train_steps(once=False, steps=2, strategy=strategy)
    once_calls, got = _train_steps(once=True, steps=2, strategy=strategy)
    assert once_calls == calls == 6 + 1
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)
