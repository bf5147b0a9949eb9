"""Behaviour shared by LoRADense, LoRAEinsumDense and LoRAEmbedding."""

import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lowrank as klr

KINDS = ("dense", "einsum", "embedding")


def make_base(kind, rng):
    """A built layer of `kind`, its adapter class and a sample input."""
    if kind == "dense":
        layer = keras.layers.Dense(12, activation="gelu", name="proj")
        layer.build((None, 10))
        return layer, klr.LoRADense, rng.normal(size=(4, 10)).astype("float32")
    if kind == "einsum":
        layer = keras.layers.EinsumDense(
            "abc,cde->abde", output_shape=(None, 3, 4), bias_axes="de", name="query"
        )
        layer.build((None, 5, 10))
        return layer, klr.LoRAEinsumDense, rng.normal(size=(2, 5, 10)).astype("float32")
    layer = keras.layers.Embedding(40, 12, name="table")
    layer.build()
    return layer, klr.LoRAEmbedding, rng.integers(0, 40, size=(3, 7))


def randomize_b(adapter, rng):
    adapter.lora_b.assign(rng.normal(size=adapter.lora_b.shape).astype("float32"))


@pytest.mark.parametrize("kind", KINDS)
def test_zero_init_equals_wrapped_layer(kind, rng):
    base, cls, x = make_base(kind, rng)
    expected = keras.ops.convert_to_numpy(base(x))
    adapter = cls(base, rank=4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(adapter(x)), expected)


@pytest.mark.parametrize("kind", KINDS)
def test_only_factors_are_trainable(kind, rng):
    base, cls, _ = make_base(kind, rng)
    adapter = cls(base, rank=3)
    assert [w.path.split("/")[-1] for w in adapter.trainable_weights] == [
        "lora_a",
        "lora_b",
    ]
    assert base.trainable is False
    assert all(not w.trainable for w in base.weights)
    fan_in, fan_out = adapter.layout.fan_in, adapter.layout.fan_out
    assert adapter.lora_a.shape == (fan_in, 3)
    assert adapter.lora_b.shape == (3, fan_out)
    assert sum(math.prod(w.shape) for w in adapter.trainable_weights) == 3 * (
        fan_in + fan_out
    )


@pytest.mark.parametrize("kind", KINDS)
def test_merge_matches_adapter_and_keeps_name(kind, rng):
    base, cls, x = make_base(kind, rng)
    adapter = cls(base, rank=4, alpha=6.0)
    randomize_b(adapter, rng)
    merged = adapter.merge()
    assert type(merged) is type(base)
    assert merged.name == base.name
    got = keras.ops.convert_to_numpy(merged(x))
    want = keras.ops.convert_to_numpy(adapter(x))
    assert np.abs(got - want).max() < 1e-5
    # The delta really is in the merged kernel: W + s·A·B.
    w = keras.ops.convert_to_numpy(adapter.base_kernel)
    delta = keras.ops.convert_to_numpy(adapter.delta_kernel())
    merged_kernel = keras.ops.convert_to_numpy(getattr(merged, adapter.kernel_name))
    np.testing.assert_allclose(merged_kernel, w + delta, atol=1e-6)
    assert np.abs(delta).max() > 1e-2


@pytest.mark.parametrize("kind", KINDS)
def test_scale_alpha_and_rslora(kind, rng):
    base, cls, _ = make_base(kind, rng)
    assert cls(base, rank=4).scale == 1.0
    base, cls, _ = make_base(kind, rng)
    assert cls(base, rank=4, alpha=8).scale == 2.0
    base, cls, _ = make_base(kind, rng)
    assert cls(base, rank=4, alpha=8, use_rslora=True).scale == 4.0


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip(kind, rng):
    base, cls, _ = make_base(kind, rng)
    adapter = cls(base, rank=2, alpha=3.0, dropout=0.25, use_rslora=True)
    config = adapter.get_config()
    again = cls.from_config(config)
    assert again.get_config() == config
    assert again.layer.get_config() == base.get_config()


def _model_with(kind, rng):
    base, cls, x = make_base(kind, rng)
    inputs = keras.Input(shape=x.shape[1:], dtype=x.dtype)
    adapter = cls(base, rank=3)
    randomize_b(adapter, rng)
    outputs = adapter(inputs)
    return keras.Model(inputs, outputs), x


@pytest.mark.parametrize("kind", KINDS)
def test_keras_file_round_trip_without_custom_objects(kind, rng, tmp_path):
    model, x = _model_with(kind, rng)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x))
    )
    assert type(loaded.layers[1]) is type(model.layers[1])
    assert len(loaded.trainable_weights) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_fit_changes_factors_and_keeps_base_bit_identical(kind, rng):
    base, cls, x = make_base(kind, rng)
    frozen = [w.numpy().copy() for w in base.weights]
    adapter = cls(base, rank=3)
    a0, b0 = adapter.lora_a.numpy().copy(), adapter.lora_b.numpy().copy()
    inputs = keras.Input(shape=x.shape[1:], dtype=x.dtype)
    model = keras.Model(inputs, adapter(inputs))
    y = rng.normal(size=model.output_shape[1:]).astype("float32")
    y = np.broadcast_to(y, (len(x),) + y.shape).copy()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    history = model.fit(x, y, epochs=8, batch_size=len(x), verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    for before, after in zip(frozen, base.weights):
        np.testing.assert_array_equal(after.numpy(), before)
    assert np.abs(adapter.lora_a.numpy() - a0).max() > 0
    assert np.abs(adapter.lora_b.numpy() - b0).max() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_tf_function_and_jit_compile(kind, rng):
    model, x = _model_with(kind, rng)
    eager = keras.ops.convert_to_numpy(model(x))
    traced = tf.function(lambda t: model(t, training=False))(x).numpy()
    jitted = tf.function(lambda t: model(t, training=False), jit_compile=True)(x).numpy()
    assert np.abs(traced - eager).max() < 1e-6
    assert np.abs(jitted - eager).max() < 1e-5
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    loss = model.fit(x, np.zeros_like(eager), epochs=1, verbose=0).history["loss"]
    assert np.isfinite(loss[0])


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_only_in_training_and_only_on_adapter(kind, rng):
    base, cls, x = make_base(kind, rng)
    base_out = keras.ops.convert_to_numpy(base(x))
    adapter = cls(base, rank=4, dropout=0.5)
    # With B = 0 the adapter path is zero, dropout or not: the frozen path
    # is never dropped.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(adapter(x, training=True)), base_out
    )
    randomize_b(adapter, rng)
    inference = keras.ops.convert_to_numpy(adapter(x, training=False))
    no_dropout = keras.ops.convert_to_numpy(adapter.merge()(x))
    assert np.abs(inference - no_dropout).max() < 1e-5
    training = keras.ops.convert_to_numpy(adapter(x, training=True))
    assert np.abs(training - inference).max() > 1e-3


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("kind", KINDS)
def test_mixed_precision_keeps_float32_factors(kind, policy, rng):
    keras.config.set_dtype_policy(policy)
    model, x = _model_with(kind, rng)
    adapter = model.layers[1]
    assert adapter.lora_a.dtype == "float32"
    assert adapter.lora_b.dtype == "float32"
    assert adapter.compute_dtype == policy.split("_")[1]
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    y = np.zeros(keras.ops.shape(model(x)), "float32")
    losses = model.fit(x, y, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert np.all(np.isfinite(adapter.lora_a.numpy()))
    assert np.all(np.isfinite(adapter.lora_b.numpy()))


# === Errors: each names the layer, the argument and the received value ===


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rank": 0}, r"expected `rank` to be a positive integer. Received: rank=0"),
        ({"rank": 2.5}, r"positive integer. Received: rank=2.5"),
        ({"rank": True}, r"positive integer. Received: rank=True"),
        ({"rank": 1000}, r"rank=1000 is larger than min\(fan_in, fan_out\)"),
        ({"dropout": 1.0}, r"expected `dropout` in \[0, 1\). Received: dropout=1.0"),
        ({"dropout": -0.1}, r"Received: dropout=-0.1"),
        ({"alpha": 0}, r"expected `alpha` > 0 .* Received: alpha=0"),
        ({"alpha": -2.0}, r"Received: alpha=-2.0"),
    ],
)
def test_bad_arguments_raise_and_modify_nothing(kind, kwargs, message, rng):
    base, cls, _ = make_base(kind, rng)
    with pytest.raises(ValueError, match=message) as info:
        cls(base, **kwargs)
    assert f"layer='{base.name}'" in str(info.value)
    assert base.trainable is True
    assert all(w.trainable for w in base.weights)


def test_wrong_class_names_the_adapter_that_fits(rng):
    einsum, _, _ = make_base("einsum", rng)
    with pytest.raises(ValueError, match=r"wraps a keras.layers.Dense.*layer 'query' of class EinsumDense. Use LoRAEinsumDense"):
        klr.LoRADense(einsum)
    conv = keras.layers.Conv1DTranspose(4, 3, name="conv")
    with pytest.raises(ValueError, match=r"class Conv1DTranspose. LoRA layers exist for Dense"):
        klr.LoRAEmbedding(conv)
    assert einsum.trainable is True


@pytest.mark.parametrize("kind", KINDS)
def test_wrapping_an_adapter_again_raises(kind, rng):
    base, cls, _ = make_base(kind, rng)
    adapter = cls(base, rank=2)
    with pytest.raises(ValueError, match=r"already a LoRA.*Adapters do not stack"):
        cls(adapter)


def test_keras_own_lora_is_refused(rng):
    base, _, _ = make_base("dense", rng)
    base.enable_lora(2)
    with pytest.raises(ValueError, match=r"Keras' own LoRA enabled"):
        klr.LoRADense(base)


def test_unbuilt_layer_is_built_on_first_call(rng):
    dense = keras.layers.Dense(7)
    adapter = klr.LoRADense(dense, rank=2)
    assert not adapter.built
    out = adapter(rng.normal(size=(3, 5)).astype("float32"))
    assert out.shape == (3, 7)
    assert adapter.lora_a.shape == (5, 2)


def test_unbuilt_layer_with_too_large_rank_fails_at_build(rng):
    adapter = klr.LoRADense(keras.layers.Dense(3), rank=4)
    with pytest.raises(ValueError, match=r"rank=4 is larger than min\(fan_in, fan_out\) = min\(5, 3\)"):
        adapter(rng.normal(size=(2, 5)).astype("float32"))


def test_runs_on_the_jax_backend(tmp_path):
    pytest.importorskip("jax")
    script = textwrap.dedent(
        """
        import numpy as np, keras, keras_lowrank as klr
        assert keras.backend.backend() == "jax"
        x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
        mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)
        mha(x, x)
        lora = klr.LoRAEinsumDense(mha._query_dense, rank=4)
        lora.lora_b.assign(np.ones(lora.lora_b.shape, "float32"))
        diff = np.abs(np.asarray(lora.merge()(x)) - np.asarray(lora(x))).max()
        dense = keras.layers.Dense(3); dense.build((None, 16))
        model = keras.Sequential([keras.Input((16,)), klr.LoRADense(dense, rank=2)])
        model.compile(optimizer="adam", loss="mse")
        loss = model.fit(x[:, 0], np.ones((2, 3)), epochs=2, verbose=0).history["loss"]
        print(diff, loss[-1] < loss[0])
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    diff, fell = result.stdout.split()[-2:]
    assert float(diff) < 1e-5
    assert fell == "True"
