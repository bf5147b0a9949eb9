"""LoRAConv1D/2D/3D and LoRADepthwiseConv1D/2D: the math, merge, files, errors."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_lowrank as klr
from keras_lowrank.layers import KernelLayout
from keras_lowrank.layers import adapter_class_for
from keras_lowrank.layers import supported_classes

L = keras.layers

# name: (layer factory, input shape without batch, adapter class, (fan_in, fan_out))
CASES = {
    "conv1d_causal": (
        lambda: L.Conv1D(6, 3, padding="causal", dilation_rate=2, name="c"),
        (10, 4), klr.LoRAConv1D, (12, 6),
    ),
    "conv1d_channels_first": (
        lambda: L.Conv1D(6, 3, strides=2, data_format="channels_first", name="c"),
        (4, 11), klr.LoRAConv1D, (12, 6),
    ),
    "conv2d": (
        lambda: L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c"),
        (9, 9, 4), klr.LoRAConv2D, (36, 6),
    ),
    "conv2d_groups": (
        lambda: L.Conv2D(6, 3, groups=2, dilation_rate=2, name="c"),
        (9, 9, 4), klr.LoRAConv2D, (18, 6),
    ),
    "conv2d_channels_first": (
        lambda: L.Conv2D(6, (3, 2), strides=(1, 2), data_format="channels_first", name="c"),
        (4, 9, 9), klr.LoRAConv2D, (24, 6),
    ),
    "conv2d_groups_channels_first": (
        lambda: L.Conv2D(6, 3, groups=3, activation="tanh", data_format="channels_first", name="c"),
        (6, 8, 8), klr.LoRAConv2D, (18, 6),
    ),
    "conv3d": (
        lambda: L.Conv3D(5, 2, strides=(1, 2, 1), name="c"),
        (5, 6, 5, 3), klr.LoRAConv3D, (24, 5),
    ),
    "depthwise2d": (
        lambda: L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", name="c"),
        (9, 9, 4), klr.LoRADepthwiseConv2D, (9, 8),
    ),
    "depthwise2d_channels_first": (
        lambda: L.DepthwiseConv2D(
            3, depth_multiplier=2, dilation_rate=2, data_format="channels_first", name="c"),
        (4, 9, 9), klr.LoRADepthwiseConv2D, (9, 8),
    ),
    "depthwise1d": (
        lambda: L.DepthwiseConv1D(3, depth_multiplier=3, activation="relu", name="c"),
        (10, 4), klr.LoRADepthwiseConv1D, (3, 12),
    ),
}
RANK = 2


def make_base(case, rng):
    """A built conv layer with a random bias, its adapter class and an input."""
    factory, shape, cls, _ = CASES[case]
    layer = factory()
    layer.build((None,) + shape)
    layer.bias.assign(rng.normal(size=layer.bias.shape).astype("float32"))
    return layer, cls, rng.normal(size=(3,) + shape).astype("float32")


def randomize_b(adapter, rng):
    adapter.lora_b.assign(rng.normal(size=adapter.lora_b.shape).astype("float32"))


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("case", CASES)
def test_zero_init_equals_wrapped_layer(case, rng):
    base, cls, x = make_base(case, rng)
    expected = numpy(base(x))
    np.testing.assert_array_equal(numpy(cls(base, rank=RANK)(x)), expected)


@pytest.mark.parametrize("case", CASES)
def test_factor_shapes_and_only_factors_trainable(case, rng):
    base, cls, _ = make_base(case, rng)
    fan_in, fan_out = CASES[case][3]
    adapter = cls(base, rank=RANK)
    assert (adapter.layout.fan_in, adapter.layout.fan_out) == (fan_in, fan_out)
    assert adapter.lora_a.shape == (fan_in, RANK)
    assert adapter.lora_b.shape == (RANK, fan_out)
    assert [w.path.split("/")[-1] for w in adapter.trainable_weights] == ["lora_a", "lora_b"]
    assert sum(math.prod(w.shape) for w in adapter.trainable_weights) == RANK * (fan_in + fan_out)
    assert base.trainable is False


@pytest.mark.parametrize("case", CASES)
def test_merge_is_exact_and_in_the_kernels_own_shape(case, rng):
    base, cls, x = make_base(case, rng)
    adapter = cls(base, rank=RANK, alpha=3.0)
    randomize_b(adapter, rng)
    merged = adapter.merge()
    assert type(merged) is type(base)
    assert merged.name == base.name
    assert merged.get_config() == {**base.get_config(), "trainable": True}
    got, want = numpy(merged(x)), numpy(adapter(x))
    assert np.abs(got - want).max() < 1e-5
    assert np.abs(want - numpy(base(x))).max() > 1e-1  # the delta does something
    # The merged kernel is W + s·A·B, A·B laid out as PEFT does: rows of
    # (window, in/groups) for a conv; (window) rows, (in, multiplier)
    # columns for a depthwise kernel.
    a, b = adapter.lora_a.numpy(), adapter.lora_b.numpy()
    w = base.kernel.numpy()
    delta = (1.5 * a @ b).reshape(w.shape)
    np.testing.assert_allclose(merged.kernel.numpy(), w + delta, atol=1e-6)
    np.testing.assert_allclose(numpy(adapter.delta_kernel()), delta, atol=1e-6)
    np.testing.assert_array_equal(merged.bias.numpy(), base.bias.numpy())


def test_conv2d_factors_are_peft_convolutions(rng):
    """`A` is a conv with the layer's window, strides, padding and dilation to
    `r` channels, `B` a 1×1 conv to the filters (PEFT's lora_A / lora_B)."""
    base = L.Conv2D(7, (3, 2), strides=(2, 1), padding="same", dilation_rate=1)
    base.build((None, 10, 9, 5))
    adapter = klr.LoRAConv2D(base, rank=3, alpha=6.0)
    randomize_b(adapter, rng)
    x = rng.normal(size=(2, 10, 9, 5)).astype("float32")
    lora_a = L.Conv2D(3, (3, 2), strides=(2, 1), padding="same", use_bias=False)
    lora_b = L.Conv2D(7, 1, use_bias=False)
    lora_a.build(x.shape)
    lora_b.build((None, 5, 9, 3))
    lora_a.kernel.assign(adapter.lora_a.numpy().reshape(3, 2, 5, 3))
    lora_b.kernel.assign(adapter.lora_b.numpy().reshape(1, 1, 3, 7))
    want = numpy(base(x)) + 2.0 * numpy(lora_b(lora_a(x)))
    assert np.abs(numpy(adapter(x)) - want).max() < 1e-5


def test_depthwise_delta_draws_each_filter_from_rank_window_filters(rng):
    base = L.DepthwiseConv2D(3, depth_multiplier=2)
    base.build((None, 6, 6, 4))
    adapter = klr.LoRADepthwiseConv2D(base, rank=2)
    randomize_b(adapter, rng)
    delta = numpy(adapter.delta_kernel())  # (3, 3, 4, 2)
    a, b = adapter.lora_a.numpy(), adapter.lora_b.numpy()  # (9, 2), (2, 8)
    for channel in range(4):
        for m in range(2):
            column = b[:, channel * 2 + m]  # output channel c·multiplier + m
            np.testing.assert_allclose(
                delta[:, :, channel, m], (a @ column).reshape(3, 3), atol=1e-6
            )
    assert np.linalg.matrix_rank(delta.reshape(9, 8)) == 2


@pytest.mark.parametrize("case", CASES)
def test_config_round_trip(case, rng):
    base, cls, _ = make_base(case, rng)
    adapter = cls(base, rank=RANK, alpha=3.0, dropout=0.25, use_rslora=True)
    config = adapter.get_config()
    again = cls.from_config(config)
    assert again.get_config() == config
    assert again.layer.get_config() == base.get_config()


def _model_with(case, rng):
    base, cls, x = make_base(case, rng)
    inputs = keras.Input(shape=x.shape[1:])
    adapter = cls(base, rank=RANK)
    randomize_b(adapter, rng)
    return keras.Model(inputs, adapter(inputs)), x


@pytest.mark.parametrize("case", CASES)
def test_keras_file_round_trip(case, rng, tmp_path):
    model, x = _model_with(case, rng)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.layers[1]) is CASES[case][2]
    np.testing.assert_array_equal(numpy(loaded(x)), numpy(model(x)))
    assert [w.path.split("/")[-1] for w in loaded.trainable_weights] == ["lora_a", "lora_b"]


@pytest.mark.parametrize("case", CASES)
def test_fit_changes_factors_and_keeps_base_bit_identical(case, rng):
    base, cls, x = make_base(case, rng)
    frozen = [w.numpy().copy() for w in base.weights]
    adapter = cls(base, rank=RANK)
    a0, b0 = adapter.lora_a.numpy().copy(), adapter.lora_b.numpy().copy()
    inputs = keras.Input(shape=x.shape[1:])
    model = keras.Model(inputs, adapter(inputs))
    y = rng.normal(size=(len(x),) + model.output_shape[1:]).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    losses = model.fit(x, y, epochs=6, batch_size=len(x), verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    for before, after in zip(frozen, base.weights):
        np.testing.assert_array_equal(after.numpy(), before)
    assert np.abs(adapter.lora_a.numpy() - a0).max() > 0
    assert np.abs(adapter.lora_b.numpy() - b0).max() > 0


@pytest.mark.parametrize("case", ["conv1d_causal", "conv2d_groups", "depthwise2d_channels_first"])
def test_tf_function_and_jit_compile(case, rng):
    model, x = _model_with(case, rng)
    eager = numpy(model(x))
    traced = tf.function(lambda t: model(t, training=False))(x).numpy()
    jitted = tf.function(lambda t: model(t, training=False), jit_compile=True)(x).numpy()
    assert np.abs(traced - eager).max() < 1e-5
    assert np.abs(jitted - eager).max() < 1e-5


@pytest.mark.parametrize("case", ["conv2d", "depthwise2d"])
def test_dropout_only_in_training_and_only_on_adapter(case, rng):
    base, cls, x = make_base(case, rng)
    adapter = cls(base, rank=RANK, dropout=0.5)
    np.testing.assert_array_equal(numpy(adapter(x, training=True)), numpy(base(x)))
    randomize_b(adapter, rng)
    inference = numpy(adapter(x, training=False))
    assert np.abs(inference - numpy(adapter.merge()(x))).max() < 1e-5
    assert np.abs(numpy(adapter(x, training=True)) - inference).max() > 1e-3


@pytest.mark.parametrize("case", ["conv2d", "depthwise2d"])
def test_mixed_bfloat16_keeps_float32_factors(case, rng):
    keras.config.set_dtype_policy("mixed_bfloat16")
    model, x = _model_with(case, rng)
    adapter = model.layers[1]
    assert adapter.lora_a.dtype == "float32" and adapter.compute_dtype == "bfloat16"
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    y = np.zeros(keras.ops.shape(model(x)), "float32")
    assert np.all(np.isfinite(model.fit(x, y, epochs=2, verbose=0).history["loss"]))
    assert np.all(np.isfinite(adapter.lora_b.numpy()))


def test_unbuilt_conv_is_built_on_first_call(rng):
    adapter = klr.LoRAConv2D(L.Conv2D(8, 3), rank=4)
    assert not adapter.built
    out = adapter(rng.normal(size=(2, 7, 7, 3)).astype("float32"))
    assert out.shape == (2, 5, 5, 8)
    assert adapter.lora_a.shape == (27, 4) and adapter.lora_b.shape == (4, 8)


# === The kernel's matrix view ===


@pytest.mark.parametrize(
    "kernel_shape, depthwise, equation, fan_in, fan_out",
    [
        ((5, 4, 6), False, "...ab,abc->...c", 20, 6),
        ((3, 3, 4, 8), False, "...abc,abcd->...d", 36, 8),
        ((2, 3, 3, 4, 8), False, "...abcd,abcde->...e", 72, 8),
        ((3, 3, 4, 2), True, "...abc,abcd->...cd", 9, 8),
        ((5, 4, 3), True, "...ab,abc->...bc", 5, 12),
    ],
)
def test_conv_layout(kernel_shape, depthwise, equation, fan_in, fan_out, rng):
    layout = KernelLayout.for_conv(kernel_shape, depthwise=depthwise)
    assert layout.equation == equation
    assert (layout.fan_in, layout.fan_out) == (fan_in, fan_out)
    assert not layout.is_matrix
    kernel = rng.normal(size=kernel_shape).astype("float32")
    matrix = numpy(layout.to_matrix(kernel))
    np.testing.assert_array_equal(matrix, kernel.reshape(fan_in, fan_out))
    np.testing.assert_array_equal(numpy(layout.from_matrix(matrix)), kernel)


def test_layout_of_conv_layers(rng):
    conv = L.Conv2D(6, 3, groups=2)
    conv.build((None, 8, 8, 4))
    assert KernelLayout.of(conv) == KernelLayout.for_conv((3, 3, 2, 6))
    depthwise = L.DepthwiseConv1D(5, depth_multiplier=2)
    depthwise.build((None, 9, 3))
    assert KernelLayout.of(depthwise) == KernelLayout.for_conv((5, 3, 2), depthwise=True)


def test_conv_layout_needs_three_axes():
    with pytest.raises(ValueError, match=r"at least 3 axes. Received: kernel_shape=\(3, 4\)"):
        KernelLayout.for_conv((3, 4))


# === Dispatch and errors ===


def test_dispatch_picks_each_conv_kind():
    pairs = {
        L.Conv1D(2, 3): klr.LoRAConv1D,
        L.Conv2D(2, 3): klr.LoRAConv2D,
        L.Conv3D(2, 3): klr.LoRAConv3D,
        L.DepthwiseConv1D(3): klr.LoRADepthwiseConv1D,
        L.DepthwiseConv2D(3): klr.LoRADepthwiseConv2D,
    }
    for layer, cls in pairs.items():
        assert adapter_class_for(layer) is cls
    for name in ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D"):
        assert name in supported_classes().split(", ")


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (L.Conv2DTranspose(4, 3, name="up"), (None, 6, 6, 3)),
        (L.SeparableConv2D(4, 3, name="sep"), (None, 6, 6, 3)),
        (L.Conv1DTranspose(4, 3, name="up1"), (None, 6, 3)),
    ],
)
def test_transposed_and_separable_convs_are_refused(layer, input_shape):
    layer.build(input_shape)
    assert adapter_class_for(layer) is None
    with pytest.raises(ValueError, match=rf"class {type(layer).__name__}. LoRA layers exist for .*Conv2D"):
        klr.LoRAConv2D(layer)
    with pytest.raises(ValueError, match=rf"of class {type(layer).__name__}$"):
        KernelLayout.of(layer)


def test_wrong_conv_class_names_the_adapter_that_fits():
    depthwise = L.DepthwiseConv2D(3, name="dw")
    with pytest.raises(ValueError, match=r"wraps a keras.layers.Conv2D.*class DepthwiseConv2D. Use LoRADepthwiseConv2D"):
        klr.LoRAConv2D(depthwise)
    with pytest.raises(ValueError, match=r"class Conv1D. Use LoRAConv1D for it"):
        klr.LoRAEmbedding(L.Conv1D(4, 3, name="conv"))


def test_depthwise_rank_is_at_most_the_window_size(rng):
    base = L.DepthwiseConv2D(3, depth_multiplier=4)
    base.build((None, 8, 8, 16))
    with pytest.raises(ValueError, match=r"rank=10 is larger than min\(fan_in, fan_out\) = min\(9, 64\) = 9"):
        klr.LoRADepthwiseConv2D(base, rank=10)
    assert klr.LoRADepthwiseConv2D(base, rank=9).lora_a.shape == (9, 9)


def test_conv_overriding_convolution_op_is_refused():
    class StandardizedConv2D(L.Conv2D):
        def convolution_op(self, inputs, kernel):
            kernel = kernel - keras.ops.mean(kernel, axis=(0, 1, 2), keepdims=True)
            return super().convolution_op(inputs, kernel)

    layer = StandardizedConv2D(4, 3, name="ws")
    layer.build((None, 6, 6, 3))
    with pytest.raises(ValueError, match=r"LoRAConv2D cannot adapt layer 'ws' of class StandardizedConv2D: it overrides `convolution_op\(\)`"):
        klr.LoRAConv2D(layer)
    assert layer.trainable is True


def test_conv_overriding_call_is_refused_and_plain_subclass_is_not(rng):
    class ScaledConv2D(L.Conv2D):
        def call(self, inputs):
            return 2.0 * super().call(inputs)

    class NamedConv2D(L.Conv2D):
        pass

    scaled = ScaledConv2D(4, 3, name="scaled")
    scaled.build((None, 6, 6, 3))
    with pytest.raises(ValueError, match=r"cannot adapt layer 'scaled' of class ScaledConv2D: it overrides `call\(\)`"):
        klr.LoRAConv2D(scaled)
    named = NamedConv2D(4, 3, name="named")
    named.build((None, 6, 6, 3))
    x = rng.normal(size=(1, 6, 6, 3)).astype("float32")
    np.testing.assert_array_equal(numpy(klr.LoRAConv2D(named, rank=2)(x)), numpy(named(x)))


def test_dora_is_refused_for_convolutions():
    from keras_lowrank.layers.variants import variant_names

    if "dora" not in variant_names():
        pytest.skip("no DoRA variant registered")
    base = L.Conv2D(4, 3, name="c")
    base.build((None, 6, 6, 3))
    with pytest.raises(ValueError, match=r"LoRAConv2D\(layer='c'\): the 'dora' variant does not support Conv2D"):
        klr.LoRAConv2D(base, rank=2, variant="dora")
