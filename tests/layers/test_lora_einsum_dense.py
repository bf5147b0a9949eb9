import keras
import numpy as np
import pytest

import keras_lowrank as klr

CASES = [
    # equation, output_shape, bias_axes, input shape, kernel shape
    ("abc,cde->abde", (None, 12, 32), "de", (2, 5, 384), (384, 12, 32)),
    ("abcd,cde->abe", (None, 384), "e", (2, 5, 12, 32), (12, 32, 384)),
    ("ab,bc->ac", (16,), "c", (3, 8), (8, 16)),
    ("...b,bc->...c", (16,), None, (2, 3, 8), (8, 16)),
    ("abc,cd->abd", (None, 6), "d", (2, 4, 10), (10, 6)),
    ("abc,cde->abde", (None, 4, 3), None, (2, 5, 10), (10, 4, 3)),
]


@pytest.mark.parametrize("equation, output_shape, bias_axes, x_shape, kernel_shape", CASES)
@pytest.mark.parametrize("activation", [None, "gelu"])
def test_merge_for_each_equation(equation, output_shape, bias_axes, x_shape, kernel_shape, activation, rng):
    layer = keras.layers.EinsumDense(equation, output_shape, bias_axes=bias_axes, activation=activation)
    layer.build(x_shape)
    assert tuple(layer.kernel.shape) == kernel_shape
    lora = klr.LoRAEinsumDense(layer, rank=4, alpha=8)
    lora.lora_b.assign(rng.normal(size=lora.lora_b.shape).astype("float32") * 0.1)
    x = rng.normal(size=x_shape).astype("float32")
    diff = np.abs(keras.ops.convert_to_numpy(lora.merge()(x) - lora(x))).max()
    assert diff < 1e-5


def test_query_kernel_counts_what_peft_counts():
    query = keras.layers.EinsumDense("abc,cde->abde", (None, 12, 32), bias_axes="de")
    query.build((None, None, 384))
    lora = klr.LoRAEinsumDense(query, rank=8)
    assert lora.lora_a.shape == (384, 8)
    assert lora.lora_b.shape == (8, 384)
    assert sum(int(np.prod(w.shape)) for w in lora.trainable_weights) == 6_144
    # Keras' own enable_lora on the same kernel trains 36,864 + 256.
    keras_own = keras.layers.EinsumDense("abc,cde->abde", (None, 12, 32), bias_axes="de")
    keras_own.build((None, None, 384))
    keras_own.enable_lora(8)
    lora_weights = [w for w in keras_own.trainable_weights if "lora" in w.path]
    assert sum(int(np.prod(w.shape)) for w in lora_weights) == 36_864 + 256


def test_batched_kernel_equation_is_refused():
    layer = keras.layers.EinsumDense("abc,bcd->abd", (3, 4), bias_axes=None)
    layer.build((2, 3, 5))
    with pytest.raises(ValueError, match=r"Kernel axis 'b' of equation 'abc,bcd->abd' is both contracted"):
        klr.LoRAEinsumDense(layer)
