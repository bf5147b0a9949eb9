import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank.layers.low_rank_einsum_dense import LowRankEinsumDense
from keras_lowrank.svd import singular_values

# (equation, output_shape, bias_axes, input_shape, kernel_shape, fan_in, fan_out)
CASES = {
    "attention_query": ("abc,cde->abde", (None, 4, 8), "de", (2, 5, 16), (16, 4, 8), 16, 32),
    "attention_output": ("abcd,cde->abe", (None, 16), "e", (2, 5, 4, 8), (4, 8, 16), 32, 16),
    "plain_matmul": ("ab,bc->ac", (12,), "c", (3, 20), (20, 12), 20, 12),
    "ellipsis": ("...b,bc->...c", (12,), "c", (2, 3, 20), (20, 12), 20, 12),
    # A bias on a leading output axis broadcasts as (seq, 1).
    "bias_on_sequence": ("abc,cd->abd", (5, 12), "b", (2, 5, 20), (20, 12), 20, 12),
    "no_bias": ("abc,cde->abde", (None, 4, 8), None, (2, 5, 16), (16, 4, 8), 16, 32),
}


def trained_einsum(case, name="proj"):
    equation, output_shape, bias_axes, input_shape, _, _, _ = CASES[case]
    layer = keras.layers.EinsumDense(
        equation, output_shape, bias_axes=bias_axes, activation="relu", name=name
    )
    layer.build((None,) + input_shape[1:])
    rng = np.random.default_rng(0)
    layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype("float32"))
    if layer.bias is not None:
        layer.bias.assign(rng.standard_normal(layer.bias.shape).astype("float32"))
    return layer


def inputs(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.mark.parametrize("case", sorted(CASES))
def test_shapes_and_parameter_count_match_einsum_dense(case):
    _, _, _, input_shape, kernel_shape, fan_in, fan_out = CASES[case]
    original = trained_einsum(case)
    low_rank = LowRankEinsumDense.from_layer(original, rank=3)
    assert low_rank.layout.kernel_shape == kernel_shape == tuple(original.kernel.shape)
    assert tuple(low_rank.left.shape) == (fan_in, 3)
    assert tuple(low_rank.right.shape) == (3, fan_out)
    bias_size = 0
    if original.bias is not None:
        assert tuple(low_rank.bias.shape) == tuple(original.bias.shape)
        bias_size = int(np.prod(original.bias.shape))
    assert low_rank.count_params() == 3 * (fan_in + fan_out) + bias_size
    x = inputs(input_shape)
    assert low_rank(x).shape == original(x).shape
    assert low_rank.compute_output_shape(input_shape) == original.compute_output_shape(
        input_shape
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_from_layer_full_rank_matches_and_to_layer_round_trips(case):
    _, _, _, input_shape, _, fan_in, fan_out = CASES[case]
    original = trained_einsum(case)
    low_rank = LowRankEinsumDense.from_layer(original, rank=min(fan_in, fan_out))
    x = inputs(input_shape)
    assert np.max(np.abs(low_rank(x) - original(x))) <= 1e-5
    rebuilt = low_rank.to_dense()
    assert type(rebuilt) is keras.layers.EinsumDense and rebuilt.name == "proj"
    assert np.max(np.abs(rebuilt.kernel.numpy() - original.kernel.numpy())) <= 1e-5
    assert np.max(np.abs(rebuilt(x) - low_rank(x))) <= 1e-5


@pytest.mark.parametrize("case", ["attention_query", "attention_output"])
@pytest.mark.parametrize("rank", [2, 8])
def test_truncated_output_within_reconstruction_bound(case, rank):
    _, _, _, input_shape, _, _, _ = CASES[case]
    original = trained_einsum(case)
    original.activation = keras.activations.linear  # compare pre-activations
    low_rank = LowRankEinsumDense.from_layer(original, rank=rank)
    x = inputs((8,) + input_shape[1:])
    diff = keras.ops.convert_to_numpy(low_rank(x) - original(x))
    sigma_next = singular_values(original)[rank]
    # Every input row meets the kernel matrix once: ‖Δy‖_F ≤ ‖x‖_F σ_{k+1}.
    bound = np.linalg.norm(x) * sigma_next
    assert 0.1 * bound <= np.linalg.norm(diff) <= bound * (1 + 1e-5)


def test_to_layer_of_a_fresh_layer():
    layer = LowRankEinsumDense(
        "abc,cde->abde", (None, 4, 8), rank=5, bias_axes="de",
        bias_initializer="random_normal",
    )
    x = inputs((2, 6, 16))
    expected = layer(x)
    merged = layer.to_dense()
    assert np.max(np.abs(merged(x) - expected)) <= 1e-5
    kernel = (layer.left.numpy() @ layer.right.numpy()).reshape(16, 4, 8)
    np.testing.assert_allclose(merged.kernel.numpy(), kernel, atol=1e-6)


def test_config_round_trip():
    layer = LowRankEinsumDense(
        "abcd,cde->abe", output_shape=16, rank=4, activation="gelu",
        bias_axes="e", right_initializer="zeros", left_regularizer="l2",
        bias_constraint="non_neg", name="attention_output",
    )
    config = layer.get_config()
    assert config["output_shape"] == (16,) and config["equation"] == "abcd,cde->abe"
    assert LowRankEinsumDense.from_config(config).get_config() == config


def test_saved_model_restores_predictions(tmp_path):
    inputs_ = keras.Input((5, 16))
    query = LowRankEinsumDense.from_layer(trained_einsum("attention_query"), rank=6)
    x = query(inputs_)
    outputs = LowRankEinsumDense("abcd,cde->abe", (None, 16), rank=3, bias_axes="e")(x)
    model = keras.Model(inputs_, outputs)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    assert [type(layer).__name__ for layer in loaded.layers[1:]] == [
        "LowRankEinsumDense", "LowRankEinsumDense"
    ]
    x = inputs((3, 5, 16))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_tf_function_and_jit_compile():
    layer = LowRankEinsumDense("abc,cde->abde", (None, 4, 8), rank=3, bias_axes="de")
    x = inputs((2, 5, 16))
    eager = layer(x)
    compiled = tf.function(lambda t: layer(t), jit_compile=True)
    assert np.max(np.abs(compiled(x) - eager)) <= 1e-6
    dynamic = tf.function(
        lambda t: layer(t),
        input_signature=[tf.TensorSpec((None, None, 16), tf.float32)],
    )
    assert np.max(np.abs(dynamic(x) - eager)) <= 1e-6


def test_errors():
    with pytest.raises(ValueError, match=r"LowRankEinsumDense expected `rank` to be a "
                                         r"positive integer\. Received: rank=-1"):
        LowRankEinsumDense("ab,bc->ac", (4,), rank=-1)
    with pytest.raises(ValueError, match=r"LowRankEinsumDense 'wide' expected rank <= "
                                         r"min\(fan_in, fan_out\) = min\(16, 32\) = 16.*"
                                         r"Received: rank=17"):
        LowRankEinsumDense("abc,cde->abde", (None, 4, 8), rank=17, name="wide").build(
            (None, 5, 16)
        )
    with pytest.raises(ValueError, match=r"LowRankEinsumDense 'batched': Kernel axis 'b'.*"
                                         r"batched kernel"):
        LowRankEinsumDense("abc,bcd->abd", (5, 8), rank=2, name="batched").build(
            (None, 5, 16)
        )
    dense = keras.layers.Dense(4, name="ffn")
    dense.build((None, 8))
    with pytest.raises(TypeError, match=r"expects a keras\.layers\.EinsumDense\. Received: "
                                        r"layer 'ffn' of class Dense; use LowRankDense"):
        LowRankEinsumDense.from_layer(dense, rank=2)
    with pytest.raises(ValueError, match=r"cannot factor layer 'proj': Expected `rank` to be "
                                         r"a positive integer at most .* = 16\. Received: rank=20"):
        LowRankEinsumDense.from_layer(trained_einsum("attention_output"), rank=20)
    with pytest.raises(ValueError, match=r"LowRankEinsumDense 'lazy' is not built; `layout`"):
        LowRankEinsumDense("ab,bc->ac", (4,), rank=2, name="lazy").layout
