"""One adapter layer on a quantized base: forward, trainable weights, config,
merge and refusals (`keras_lowrank.layers.quantized_base`)."""

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank._compat import keras as keras_compat

# Bounds on |W_deq - W| for a glorot kernel of these sizes (Keras' abs-max
# quantizers: int8 per output column, int4 in 128-row groups with a zero point).
KERNEL_BOUND = {"int8": 0.01, "int4": 0.08}


def _dense():
    dense = keras.layers.Dense(6, activation="relu", name="proj")
    dense.build((None, 5))
    return dense


def _einsum():
    layer = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3),
                                     bias_axes="de", name="query")
    layer.build((None, 4, 5))
    return layer


def _table():
    table = keras.layers.Embedding(11, 6, name="table")
    table.build()
    return table


KINDS = {
    "dense": (_dense, klr.LoRADense, (3, 5)),
    "einsum": (_einsum, klr.LoRAEinsumDense, (3, 4, 5)),
    "embedding": (_table, klr.LoRAEmbedding, None),
}


def _inputs(kind, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "embedding":
        return rng.integers(0, 11, size=(3, 4)).astype("int32")
    return rng.normal(size=KINDS[kind][2]).astype("float32")


def _random_factors(adapter, seed):
    rng = np.random.default_rng(seed)
    for weight in (adapter.lora_a, adapter.lora_b):
        weight.assign(rng.normal(0, 0.5, weight.shape).astype("float32"))


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_forward_is_the_dequantized_kernel_plus_the_factors(kind, mode):
    make, adapter_class, _ = KINDS[kind]
    reference = make()
    float_outputs = np.array(reference(_inputs(kind)))
    base = make()
    base.set_weights(reference.get_weights())
    adapter = adapter_class(base, rank=2, base_quantization=mode)
    assert base.quantization_mode == mode and adapter.base_quantization == mode
    kernel = np.array(adapter.base_kernel)
    float_kernel = np.array(keras_compat.kernel_variable(reference, adapter.kernel_name))
    assert kernel.dtype == np.float32 and kernel.shape == float_kernel.shape
    assert np.abs(kernel - float_kernel).max() < KERNEL_BOUND[mode]
    # B = 0: the outputs are the quantized base's, close to the float layer's.
    outputs = np.array(adapter(_inputs(kind)))
    assert np.abs(outputs - float_outputs).max() < 4 * KERNEL_BOUND[mode]
    # Random factors: merged (a float layer) computes what the adapter does.
    _random_factors(adapter, seed=1)
    outputs = np.array(adapter(_inputs(kind)))
    merged = adapter.merge()
    assert merged.quantization_mode is None and type(merged) is type(reference)
    assert keras_compat.kernel_variable(merged, adapter.kernel_name).dtype == "float32"
    assert np.abs(np.array(merged(_inputs(kind))) - outputs).max() < 1e-5


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_only_the_factors_train_and_the_config_round_trips(mode):
    adapter = klr.LoRADense(_dense(), rank=2, base_quantization=mode)
    # A (5, 2) and B (2, 6): 22 values; kernel, scales and bias are frozen.
    assert [w.name for w in adapter.trainable_weights] == ["lora_a", "lora_b"]
    assert sum(int(np.prod(w.shape)) for w in adapter.trainable_weights) == 22
    assert all(not w.trainable for w in adapter.layer.weights)
    config = adapter.get_config()
    assert config["base_quantization"] == mode
    again = klr.LoRADense.from_config(config)
    assert again.get_config() == config


def test_a_quantized_adapter_saves_and_loads_exactly(tmp_path):
    inputs = keras.Input((5,))
    base = keras.layers.Dense(6, name="proj")
    model = keras.Model(inputs, klr.LoRADense(base, rank=2, base_quantization="int4")(inputs))
    _random_factors(model.layers[1], seed=2)
    x = _inputs("dense")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded(x), model(x))
    assert loaded.layers[1].layer.quantization_mode == "int4"


def test_refusals_name_the_layer_and_change_nothing():
    dense = _dense()
    before = [w.numpy().copy() for w in dense.weights]
    with pytest.raises(ValueError, match=r"unknown `base_quantization`. Received: "
                       r"base_quantization='int2'. Supported: \[None, 'int8', 'int4'\]"):
        klr.LoRADense(dense, rank=2, base_quantization="int2")
    conv = keras.layers.Conv2D(4, 3, name="conv")
    conv.build((None, 8, 8, 3))
    with pytest.raises(ValueError, match="layer 'conv' of class Conv2D"):
        klr.LoRAConv2D(conv, rank=2, base_quantization="int4")
    tied = keras.layers.ReversibleEmbedding(11, 6, name="tied")
    tied.build()
    with pytest.raises(ValueError, match="layer 'tied' of class ReversibleEmbedding"):
        klr.LoRAEmbedding(tied, rank=2, base_quantization="int8")
    assert dense.quantization_mode is None and tied.quantization_mode is None
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, dense.weights))
    dense.quantize("int8")
    with pytest.raises(ValueError, match=r"quantized as 'int8' and base_quantization='int4'"):
        klr.LoRADense(dense, rank=2, base_quantization="int4")
    with pytest.raises(ValueError, match=r"quantized as 'int8' and base_quantization=None"):
        klr.LoRADense(dense, rank=2)


def test_config_fields_validate_and_round_trip():
    config = klr.LoRAConfig(base_quantization="int4", quantize_frozen="all")
    assert klr.LoRAConfig.from_json(config.to_json()) == config
    assert klr.LoRAConfig().base_quantization is None
    assert klr.LoRAConfig().quantize_frozen == "adapted"
    with pytest.raises(ValueError, match=r"^LoRAConfig got an unknown `base_quantization`. "
                       r"Received: base_quantization='INT8'. Supported: \[None, 'int8', 'int4'\]"):
        klr.LoRAConfig(base_quantization="INT8")
    with pytest.raises(ValueError, match=r"^LoRAConfig got an unknown `quantize_frozen`. "
                       r"Received: quantize_frozen='frozen'. Supported: \['adapted', 'all'\]$"):
        klr.LoRAConfig(base_quantization="int8", quantize_frozen="frozen")
    with pytest.raises(ValueError, match=r"quantize_frozen='all' without a `base_quantization`"):
        klr.LoRAConfig(quantize_frozen="all")


def test_quantizing_runs_no_full_collection():
    """Keras collects all garbage for each variable a layer drops; quantizing
    a layer of a large model would pay a walk over every object of the
    process per layer (`_compat.keras.no_collection_per_dropped_variable`)."""
    import gc

    from keras_lowrank.layers.quantized_base import quantize_layer

    collections = []
    count = lambda phase, info: collections.append(phase)  # noqa: E731
    for mode in ("int8", "int4"):
        layer = keras.layers.Dense(4)
        layer.build((None, 8))
        gc.disable()  # no automatic collection in between: only explicit ones
        gc.callbacks.append(count)
        try:
            quantize_layer(layer, mode)
        finally:
            gc.callbacks.remove(count)
            gc.enable()
        assert layer.quantization_mode == mode and collections == []
