import keras
import numpy as np
import pytest

import keras_lowrank as klr


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "tanh", "sigmoid", "softmax"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_merge_for_each_activation_and_bias(activation, use_bias, rng):
    dense = keras.layers.Dense(9, activation=activation, use_bias=use_bias)
    dense.build((None, 6))
    if use_bias:
        dense.bias.assign(rng.normal(size=9).astype("float32"))
    lora = klr.LoRADense(dense, rank=3, alpha=5)
    lora.lora_b.assign(rng.normal(size=(3, 9)).astype("float32"))
    x = rng.normal(size=(5, 6)).astype("float32")
    merged = lora.merge()
    assert merged.get_config()["activation"] == dense.get_config()["activation"]
    assert merged.use_bias == use_bias
    diff = np.abs(keras.ops.convert_to_numpy(merged(x) - lora(x))).max()
    assert diff < 1e-5


def test_delta_goes_inside_the_activation(rng):
    dense = keras.layers.Dense(4, activation="relu", use_bias=False)
    dense.build((None, 3))
    lora = klr.LoRADense(dense, rank=1)
    lora.lora_b.assign(rng.normal(size=(1, 4)).astype("float32"))
    x = rng.normal(size=(8, 3)).astype("float32")
    w = keras.ops.convert_to_numpy(dense.kernel + lora.delta_kernel())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(lora(x)), np.maximum(x @ w, 0), atol=1e-6
    )


def test_three_dimensional_inputs(rng):
    dense = keras.layers.Dense(5)
    dense.build((None, None, 8))
    lora = klr.LoRADense(dense, rank=2)
    lora.lora_b.assign(np.ones((2, 5), "float32"))
    x = rng.normal(size=(2, 3, 8)).astype("float32")
    assert np.abs(keras.ops.convert_to_numpy(lora.merge()(x) - lora(x))).max() < 1e-5
