"""DoRAVariant on LoRADense and LoRAEinsumDense: forward, gradient, merge, files."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lowrank as klr
from keras_lowrank.layers import DoRAVariant
from keras_lowrank.layers import get_variant

# (equation, output_shape, bias_axes, input shape, activation): Dense-like,
# attention query, attention output, and outputs in another order than the
# kernel's axes (transposed, and split around an input axis).
EQUATIONS = [
    ("ab,bc->ac", (6,), "c", (5,), "relu"),
    ("abc,cde->abde", (None, 3, 4), "de", (5, 10), "gelu"),
    ("abcd,cde->abe", (None, 7), "e", (5, 3, 4), None),
    ("abc,cde->abed", (None, 4, 3), "ed", (5, 10), "tanh"),
    ("abc,cde->adbe", (3, None, 4), "e", (5, 10), "sigmoid"),
    ("...b,bc->...c", (6,), "c", (2, 5), None),
]
IDS = [e[0] for e in EQUATIONS]


def einsum_layer(equation, output_shape, bias_axes, input_shape, activation):
    layer = keras.layers.EinsumDense(
        equation, output_shape=output_shape, bias_axes=bias_axes,
        activation=activation, name="proj",
    )
    layer.build((None, *input_shape))
    return layer


def dense_layer(activation="gelu"):
    layer = keras.layers.Dense(12, activation=activation, name="proj")
    layer.build((None, 10))
    return layer


def randomize(adapter, rng):
    """Non-zero `B` and a magnitude away from `‖W‖_c`."""
    adapter.lora_b.assign(rng.normal(0, 0.5, adapter.lora_b.shape).astype("float32"))
    magnitude = rng.uniform(0.5, 2.0, adapter.lora_magnitude.shape)
    adapter.lora_magnitude.assign(magnitude.astype("float32"))


def reference(adapter, x):
    """`act(m / ‖W'‖_c · (x·W') + b)` in numpy, float64, on the matrix view."""
    layout, layer = adapter.layout, adapter.layer
    w = keras.ops.convert_to_numpy(layout.to_matrix(adapter.base_kernel)).astype("float64")
    a, b = adapter.lora_a.numpy().astype("float64"), adapter.lora_b.numpy().astype("float64")
    adapted = w + adapter.scale * a @ b
    kernel = adapted * adapter.lora_magnitude.numpy() / np.linalg.norm(adapted, axis=0)
    kernel = keras.ops.convert_to_numpy(layout.from_matrix(kernel))
    equation = getattr(layer, "equation", "...a,ab->...b")
    y = np.einsum(equation, x.astype("float64"), kernel)
    if layer.bias is not None:
        y = y + layer.bias.numpy()
    return keras.ops.convert_to_numpy(layer.activation(y.astype("float32")))


def np_out(value):
    return keras.ops.convert_to_numpy(value)


def test_registered_and_supports_only_dense_kinds():
    assert get_variant("dora") is DoRAVariant
    assert DoRAVariant.supports(klr.LoRADense)
    assert DoRAVariant.supports(klr.LoRAEinsumDense)
    assert not DoRAVariant.supports(klr.LoRAEmbedding)
    assert not DoRAVariant.supports(klr.LoRAConv2D)
    assert not DoRAVariant.supports(klr.layers.LoRAAdapter)


def test_embedding_is_refused_naming_variant_and_kind():
    table = keras.layers.Embedding(40, 12, name="table")
    table.build()
    with pytest.raises(
        ValueError,
        match=r"LoRAEmbedding\(layer='table'\): the 'dora' variant does not "
        r"support Embedding layers\. Use variant='lora' for them\.",
    ):
        klr.LoRAEmbedding(table, rank=2, variant="dora")
    assert table.trainable is True


@pytest.mark.parametrize("spec", EQUATIONS, ids=IDS)
def test_init_equals_wrapped_layer_and_magnitude_is_column_norm(spec, rng):
    layer = einsum_layer(*spec)
    x = rng.normal(size=(3, *spec[3])).astype("float32")
    expected = np_out(layer(x))
    adapter = klr.LoRAEinsumDense(layer, rank=2, variant="dora")
    np.testing.assert_array_equal(np_out(adapter(x)), expected)
    w = np_out(adapter.layout.to_matrix(layer.kernel))
    assert adapter.lora_magnitude.shape == (adapter.layout.fan_out,)
    np.testing.assert_allclose(adapter.lora_magnitude.numpy(), np.linalg.norm(w, axis=0), rtol=1e-6)


def test_trainable_weights_and_exact_parameter_count(rng):
    adapter = klr.LoRAEinsumDense(einsum_layer(*EQUATIONS[1]), rank=3, variant="dora")
    names = [w.path.split("/")[-1] for w in adapter.trainable_weights]
    assert names == ["lora_a", "lora_b", "lora_magnitude"]
    # fan_in 10, fan_out 3·4 = 12: 3·(10 + 12) + 12.
    assert sum(math.prod(w.shape) for w in adapter.trainable_weights) == 3 * 22 + 12 == 78
    assert DoRAVariant.extra_weights(adapter) == {"lora_magnitude": adapter.lora_magnitude}


@pytest.mark.parametrize("spec", EQUATIONS, ids=IDS)
def test_forward_is_the_dora_formula(spec, rng):
    layer = einsum_layer(*spec)
    adapter = klr.LoRAEinsumDense(layer, rank=2, alpha=3.0, variant="dora")
    randomize(adapter, rng)
    x = rng.normal(size=(3, *spec[3])).astype("float32")
    got = np_out(adapter(x))
    assert np.abs(got - reference(adapter, x)).max() < 1e-5
    # The delta and the magnitude really act: far from the plain layer.
    assert np.abs(got - np_out(layer(x))).max() > 1e-2


def _merge_cases():
    for spec in EQUATIONS:
        yield pytest.param("einsum", spec, id=spec[0])
    for activation in ("relu", "gelu", "tanh", None):
        yield pytest.param("dense", activation, id=f"dense-{activation}")


@pytest.mark.parametrize("kind, spec", _merge_cases())
def test_merge_is_exact(kind, spec, rng):
    if kind == "dense":
        layer, x = dense_layer(spec), rng.normal(size=(4, 10)).astype("float32")
        adapter = klr.LoRADense(layer, rank=4, alpha=8.0, variant="dora")
    else:
        layer, x = einsum_layer(*spec), rng.normal(size=(3, *spec[3])).astype("float32")
        adapter = klr.LoRAEinsumDense(layer, rank=2, alpha=3.0, variant="dora")
    randomize(adapter, rng)
    merged = adapter.merge()
    assert type(merged) is type(layer) and merged.name == layer.name
    assert np.abs(np_out(merged(x)) - np_out(adapter(x))).max() < 1e-5
    # merged kernel = m / ‖W + ΔW‖_c · (W + ΔW), on the matrix view.
    w = np_out(adapter.layout.to_matrix(adapter.base_kernel)).astype("float64")
    adapted = w + np_out(adapter.layout.to_matrix(adapter.delta_kernel()))
    want = adapted * adapter.lora_magnitude.numpy() / np.linalg.norm(adapted, axis=0)
    got = np_out(adapter.layout.to_matrix(merged.kernel))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_norm_is_detached_from_the_gradient(rng):
    """Gradients are those of `c ⊙ (x·W + s·x·A·B)` with `c` held constant."""
    adapter = klr.LoRADense(dense_layer(activation=None), rank=3, alpha=6.0, variant="dora")
    randomize(adapter, rng)
    x = rng.normal(size=(5, 10)).astype("float32")
    g = rng.normal(size=(5, 12)).astype("float32")
    variables = [adapter.lora_a, adapter.lora_b, adapter.lora_magnitude]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(adapter(x) * g)
    grad_a, grad_b, grad_m = (t.numpy() for t in tape.gradient(loss, variables))

    s = adapter.scale
    w = adapter.layer.kernel.numpy().astype("float64")
    a, b = adapter.lora_a.numpy().astype("float64"), adapter.lora_b.numpy().astype("float64")
    m = adapter.lora_magnitude.numpy().astype("float64")
    norm = np.linalg.norm(w + s * a @ b, axis=0)
    c = m / norm
    gc = g * c  # (batch, fan_out)
    np.testing.assert_allclose(grad_b, s * (x @ a).T @ gc, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_a, s * x.T @ gc @ b.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grad_m, np.sum(g * (x @ (w + s * a @ b)) / norm, axis=0),
                               rtol=1e-4, atol=1e-5)


def test_a_zero_column_stays_finite(rng):
    layer = dense_layer(activation=None)
    kernel = layer.kernel.numpy()
    kernel[:, 3] = 0.0
    layer.kernel.assign(kernel)
    x = rng.normal(size=(4, 10)).astype("float32")
    adapter = klr.LoRADense(layer, rank=2, variant="dora")
    np.testing.assert_array_equal(np_out(adapter(x)), np_out(layer(x)))
    assert np.isfinite(np_out(adapter.merge().kernel)).all()


def test_unbuilt_layer_starts_at_its_column_norm(rng):
    layer = keras.layers.Dense(7)
    adapter = klr.LoRADense(layer, rank=2, variant="dora")
    x = rng.normal(size=(3, 5)).astype("float32")
    np.testing.assert_array_equal(np_out(adapter(x)), np_out(layer(x)))
    np.testing.assert_allclose(adapter.lora_magnitude.numpy(),
                               np.linalg.norm(layer.kernel.numpy(), axis=0), rtol=1e-6)


def test_ellipsis_after_the_output_axes_is_refused():
    layer = keras.layers.EinsumDense("ab...,bc->ac...", output_shape=(4,), name="odd")
    layer.build((None, 5, 3))
    with pytest.raises(ValueError, match=r"DoRA cannot place the per-output magnitude "
                                         r"of equation 'ab...,bc->ac...'"):
        klr.LoRAEinsumDense(layer, rank=2, variant="dora")


def test_config_round_trip():
    adapter = klr.LoRAEinsumDense(einsum_layer(*EQUATIONS[1]), rank=2, variant="dora")
    config = adapter.get_config()
    assert config["variant"] == "dora"
    again = klr.LoRAEinsumDense.from_config(config)
    assert again.get_config() == config
    assert again.variant is DoRAVariant


def test_keras_file_keeps_the_magnitude(rng, tmp_path):
    layer = einsum_layer(*EQUATIONS[1])
    inputs = keras.Input((5, 10))
    adapter = klr.LoRAEinsumDense(layer, rank=2, variant="dora")
    randomize(adapter, rng)
    model = keras.Model(inputs, adapter(inputs))
    model.save(tmp_path / "dora.keras")
    loaded = keras.models.load_model(tmp_path / "dora.keras")
    x = rng.normal(size=(3, 5, 10)).astype("float32")
    np.testing.assert_array_equal(np_out(loaded(x)), np_out(model(x)))
    np.testing.assert_array_equal(loaded.layers[1].lora_magnitude.numpy(),
                                  adapter.lora_magnitude.numpy())
    assert len(loaded.trainable_weights) == 3


def test_fit_trains_magnitude_and_factors_and_keeps_base(rng):
    layer = dense_layer()
    frozen = [w.numpy().copy() for w in layer.weights]
    adapter = klr.LoRADense(layer, rank=3, variant="dora")
    m0 = adapter.lora_magnitude.numpy().copy()
    inputs = keras.Input((10,))
    model = keras.Model(inputs, adapter(inputs))
    x = rng.normal(size=(16, 10)).astype("float32")
    y = rng.normal(size=(16, 12)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=True)
    losses = model.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    assert np.abs(adapter.lora_magnitude.numpy() - m0).max() > 1e-3
    assert np.abs(adapter.lora_b.numpy()).max() > 0
    for before, after in zip(frozen, layer.weights):
        np.testing.assert_array_equal(after.numpy(), before)


def test_dropout_only_in_training(rng):
    adapter = klr.LoRADense(dense_layer(), rank=4, dropout=0.5, variant="dora")
    randomize(adapter, rng)
    x = rng.normal(size=(4, 10)).astype("float32")
    inference = np_out(adapter(x, training=False))
    assert np.abs(inference - np_out(adapter.merge()(x))).max() < 1e-5
    assert np.abs(np_out(adapter(x, training=True)) - inference).max() > 1e-3


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_a_float32_magnitude(policy, rng):
    keras.config.set_dtype_policy(policy)
    layer = keras.layers.EinsumDense("abc,cde->abde", output_shape=(None, 3, 4),
                                     bias_axes="de", name="query")
    adapter = klr.LoRAEinsumDense(layer, rank=2, variant="dora")
    inputs = keras.Input((5, 10))
    model = keras.Model(inputs, adapter(inputs))
    assert adapter.lora_magnitude.dtype == "float32"
    x = rng.normal(size=(8, 5, 10)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    losses = model.fit(x, np.zeros((8, 5, 3, 4), "float32"), epochs=3, verbose=0)
    assert np.all(np.isfinite(losses.history["loss"]))
    assert np.all(np.isfinite(adapter.lora_magnitude.numpy()))
