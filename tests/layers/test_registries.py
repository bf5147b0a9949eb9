"""The public seams: registering a layer kind and a variant."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_lowrank as klr
from keras_lowrank.layers import dispatch
from keras_lowrank.layers import variants
from keras_lowrank.surgery.layer_paths import layer_paths


class ScaledOutput(klr.layers.AdapterVariant):
    """A test variant: the delta enters at twice its size."""

    name = "test-double"

    @classmethod
    def combine(cls, adapter, base, delta):
        return base + 2.0 * delta

    @classmethod
    def merged_kernel(cls, adapter):
        return ops.cast(adapter.base_kernel, "float32") + 2.0 * adapter.delta_kernel()


@pytest.fixture
def double_variant():
    klr.layers.register_variant(ScaledOutput)
    yield ScaledOutput
    variants._VARIANTS.pop(ScaledOutput.name)


def test_a_registered_variant_runs_merges_and_serializes(double_variant, rng):
    dense = keras.layers.Dense(5, activation="tanh", name="proj")
    dense.build((None, 6))
    adapter = klr.LoRADense(dense, rank=2, variant="test-double")
    adapter.lora_b.assign(rng.normal(size=(2, 5)).astype("float32"))
    x = rng.normal(size=(3, 6)).astype("float32")
    plain = klr.LoRADense(dense, rank=2)
    plain.lora_a.assign(adapter.lora_a)
    plain.lora_b.assign(adapter.lora_b * 2.0)
    got = ops.convert_to_numpy(adapter(x))
    np.testing.assert_allclose(got, ops.convert_to_numpy(plain(x)), atol=1e-6)
    merged = adapter.merge()
    assert np.abs(ops.convert_to_numpy(merged(x)) - got).max() < 1e-5
    clone = klr.LoRADense.from_config(adapter.get_config())
    assert clone.spec.variant == "test-double"


def test_unknown_variant_lists_the_registered_ones():
    dense = keras.layers.Dense(5)
    dense.build((None, 6))
    with pytest.raises(ValueError, match=r"Unknown adapter variant. Received: variant='nope'. "
                                         r"Registered: \[.*'lora'.*\]"):
        klr.LoRADense(dense, rank=2, variant="nope")


def test_register_variant_refuses_non_variants_and_name_clashes():
    with pytest.raises(ValueError, match=r"expected a subclass of AdapterVariant"):
        klr.layers.register_variant(object)

    class Clash(klr.layers.AdapterVariant):
        name = "lora"

    with pytest.raises(ValueError, match=r"A variant named 'lora' is already registered"):
        klr.layers.register_variant(Clash)


@keras.saving.register_keras_serializable(package="tests")
class Projection(keras.layers.Dense):
    """A Dense subclass that keeps Dense's forward pass."""


class LoRAProjection(klr.layers.LoRAAdapter):
    wrapped_class = Projection
    reproduces = (keras.layers.Dense,)


@pytest.fixture
def projection_kind():
    before = list(dispatch.REGISTRY)
    klr.layers.register_adapter_class(LoRAProjection)
    yield LoRAProjection
    dispatch.REGISTRY[:] = before


def test_a_registered_layer_kind_is_picked_by_add_adapters(projection_kind, rng):
    # Registered after Dense, yet it is checked first: it wraps a subclass.
    assert [a for _, a in dispatch.REGISTRY][0] is LoRAProjection
    inputs = keras.Input((6,))
    outputs = Projection(4, name="proj")(keras.layers.Dense(6, name="plain")(inputs))
    model = keras.Model(inputs, outputs)
    adapted = klr.add_adapters(model, targets=["proj", "plain"], rank=2)
    paths = layer_paths(adapted)
    assert type(paths["proj"]) is LoRAProjection
    assert type(paths["plain"]) is klr.LoRADense
    assert klr.parameter_counts(adapted)[0] == 2 * (6 + 4) + 2 * (6 + 6)


def test_register_adapter_class_refuses_non_adapters():
    with pytest.raises(ValueError, match=r"expected a subclass of LoRAAdapter"):
        klr.layers.register_adapter_class(keras.layers.Dense)


def test_one_forward_pass_serves_dense_and_einsum(rng):
    """LoRADense is LoRAEinsumDense with the equation `...a,ab->...b`."""
    dense = keras.layers.Dense(5, activation="relu", name="d")
    dense.build((None, 4))
    einsum = keras.layers.EinsumDense("ab,bc->ac", output_shape=5, bias_axes="c",
                                      activation="relu", name="e")
    einsum.build((None, 4))
    einsum.set_weights(dense.get_weights())
    a, b = klr.LoRADense(dense, rank=2), klr.LoRAEinsumDense(einsum, rank=2)
    b.lora_a.assign(a.lora_a)
    factor = rng.normal(size=(2, 5)).astype("float32")
    a.lora_b.assign(factor)
    b.lora_b.assign(factor)
    x = rng.normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(ops.convert_to_numpy(a(x)), ops.convert_to_numpy(b(x)), atol=1e-6)
    assert type(a).call is type(b).call
