import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank.layers.low_rank_dense import LowRankDense
from keras_lowrank.svd import relative_error
from keras_lowrank.svd import singular_values


def trained_dense(units=24, input_dim=32, activation=None, use_bias=True, name="ffn"):
    """A built Dense with a random kernel and a non-zero bias."""
    dense = keras.layers.Dense(units, activation=activation, use_bias=use_bias, name=name)
    dense.build((None, input_dim))
    rng = np.random.default_rng(0)
    dense.kernel.assign(rng.standard_normal((input_dim, units)).astype("float32"))
    if use_bias:
        dense.bias.assign(rng.standard_normal(units).astype("float32"))
    return dense


def inputs(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def test_parameter_count_and_weight_names():
    layer = LowRankDense(16, rank=4)
    layer.build((None, 32))
    assert layer.count_params() == 4 * (32 + 16) + 16 == 208
    assert [w.name for w in layer.weights] == ["left", "right", "bias"]
    no_bias = LowRankDense(16, rank=4, use_bias=False)
    no_bias.build((None, 32))
    assert no_bias.count_params() == 192


def test_call_is_x_left_right_plus_bias():
    layer = LowRankDense(8, rank=3, activation="relu", bias_initializer="ones")
    x = inputs(2, 5, 12)  # a 3-D input: factors apply to the last axis
    y = keras.ops.convert_to_numpy(layer(x))
    left, right = (keras.ops.convert_to_numpy(w) for w in (layer.left, layer.right))
    expected = np.maximum(x @ left @ right + 1.0, 0.0)
    assert y.shape == (2, 5, 8)
    assert np.max(np.abs(y - expected)) <= 1e-5


@pytest.mark.parametrize("rank", [1, 6, 12])
def test_from_layer_output_within_reconstruction_bound(rank):
    dense = trained_dense()
    low_rank = LowRankDense.from_layer(dense, rank=rank)
    s = singular_values(dense)
    x = inputs(64, 32)
    diff = keras.ops.convert_to_numpy(low_rank(x)) - keras.ops.convert_to_numpy(dense(x))
    # ‖x(W − LR)‖_F ≤ ‖x‖_F · σ_{k+1}: the spectral norm of the dropped part.
    bound = np.linalg.norm(x) * s[rank]
    assert np.linalg.norm(diff) <= bound * (1 + 1e-5)
    assert np.linalg.norm(diff) >= 0.1 * bound  # the bound is not vacuous
    expected_error = np.sqrt(np.sum(s[rank:] ** 2) / np.sum(s**2))
    error = relative_error(dense.kernel, low_rank.left, low_rank.right)
    assert abs(error - expected_error) <= 1e-6


def test_from_layer_full_rank_and_copied_attributes():
    dense = trained_dense(activation="gelu", name="intermediate")
    dense.trainable = False
    low_rank = LowRankDense.from_layer(dense, rank=24)
    x = inputs(8, 32)
    assert np.max(np.abs(low_rank(x) - dense(x))) <= 1e-5
    assert low_rank.name == "intermediate" and low_rank.rank == 24
    assert low_rank.activation is dense.activation
    assert low_rank.trainable is False
    np.testing.assert_array_equal(low_rank.bias.numpy(), dense.bias.numpy())


def test_from_layer_by_energy_and_dtype_policy():
    dense = keras.layers.Dense(16, use_bias=False, dtype="mixed_bfloat16")
    dense.build((None, 16))
    dense.kernel.assign(np.diag(np.arange(16, 0, -1)).astype("float32"))
    # σ² = 256, 225, ..., 1: the top 6 hold 1111/1496 = 0.743, the top 7
    # hold 1211/1496 = 0.809.
    low_rank = LowRankDense.from_layer(dense, energy=0.75)
    assert low_rank.rank == 7 and low_rank.bias is None
    assert low_rank.dtype_policy.name == "mixed_bfloat16"
    assert low_rank.left.dtype == "float32"


def test_to_layer_round_trip():
    layer = LowRankDense(10, rank=3, activation="tanh", bias_initializer="random_normal")
    x = inputs(4, 7, 6)
    expected = layer(x)
    dense = layer.to_dense()
    assert type(dense) is keras.layers.Dense and dense.name == layer.name
    np.testing.assert_allclose(
        dense.kernel.numpy(), layer.left.numpy() @ layer.right.numpy(), atol=1e-6
    )
    assert np.max(np.abs(dense(x) - expected)) <= 1e-5
    # Dense -> factors at full rank -> Dense gives the original kernel back.
    original = trained_dense()
    rebuilt = LowRankDense.from_layer(original, rank=24).to_dense()
    assert np.max(np.abs(rebuilt.kernel.numpy() - original.kernel.numpy())) <= 1e-5


def test_config_round_trip():
    layer = LowRankDense(
        12,
        rank=4,
        activation="relu",
        use_bias=False,
        left_initializer="he_normal",
        right_regularizer="l2",
        activity_regularizer="l1",
        left_constraint="non_neg",
        name="compressed",
    )
    config = layer.get_config()
    restored = LowRankDense.from_config(config)
    assert restored.get_config() == config
    assert config["rank"] == 4 and config["units"] == 12


def test_saved_model_restores_predictions(tmp_path):
    inputs_ = keras.Input((9, 16))
    x = LowRankDense.from_layer(trained_dense(24, 16), rank=5)(inputs_)
    outputs = LowRankDense(3, rank=2, activation="softmax")(x)
    model = keras.Model(inputs_, outputs)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    assert isinstance(loaded.layers[1], LowRankDense)
    x = inputs(2, 9, 16)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_tf_function_jit_and_training():
    layer = LowRankDense(6, rank=2)
    x = inputs(4, 8)
    eager = layer(x)
    compiled = tf.function(lambda t: layer(t), jit_compile=True)
    assert np.max(np.abs(compiled(x) - eager)) <= 1e-6
    model = keras.Sequential([keras.Input((8,)), layer])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    before = [w.numpy().copy() for w in layer.weights]
    model.fit(x, inputs(4, 6, seed=2), epochs=1, verbose=0)
    assert all(np.max(np.abs(w.numpy() - b)) > 0 for w, b in zip(layer.weights, before))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"units": 0, "rank": 2}, r"LowRankDense expected `units` to be a positive "
                                  r"integer\. Received: units=0"),
        ({"units": 4, "rank": 0}, r"`rank` to be a positive integer\. Received: rank=0"),
        ({"units": 4, "rank": True}, r"Received: rank=True"),
        ({"units": 4, "rank": 2.0}, r"Received: rank=2\.0"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LowRankDense(**kwargs)


def test_build_errors():
    with pytest.raises(ValueError, match=r"LowRankDense 'big' expected rank <= min\(fan_in, "
                                         r"fan_out\) = min\(8, 4\) = 4.*Received: rank=5"):
        LowRankDense(4, rank=5, name="big").build((None, 8))
    with pytest.raises(ValueError, match=r"needs a known last input dimension"):
        LowRankDense(4, rank=2).build((None, None))


def test_from_layer_and_to_layer_errors():
    einsum = keras.layers.EinsumDense("ab,bc->ac", (4,), name="proj")
    einsum.build((None, 8))
    with pytest.raises(TypeError, match=r"expects a keras\.layers\.Dense\. Received: layer "
                                        r"'proj' of class EinsumDense; use LowRankEinsumDense"):
        LowRankDense.from_layer(einsum, rank=2)
    with pytest.raises(TypeError, match=r"of class Conv1D\.$"):
        LowRankDense.from_layer(keras.layers.Conv1D(2, 3), rank=2)
    with pytest.raises(ValueError, match=r"Layer 'unbuilt' is not built"):
        LowRankDense.from_layer(keras.layers.Dense(4, name="unbuilt"), rank=2)
    dense = trained_dense()
    with pytest.raises(ValueError, match=r"cannot factor layer 'ffn': Expected `rank` to be a "
                                         r"positive integer at most .* = 24\. Received: rank=25"):
        LowRankDense.from_layer(dense, rank=25)
    with pytest.raises(ValueError, match=r"cannot factor layer 'ffn': Expected exactly one of "
                                         r"`rank` or `energy`\. Received: rank=None, energy=None"):
        LowRankDense.from_layer(dense)
    with pytest.raises(ValueError, match=r"LowRankDense 'lazy' is not built; `to_dense`"):
        LowRankDense(4, rank=2, name="lazy").to_dense()
