"""Merge equals the unmerged forward pass, on seeded random cases that meet
every branch.

Each branch (layer kind, with and without bias, each einsum equation, each
registered variant the kind supports, each activation) is met twice, once
with rsLoRA and once without; the sizes, rank and alpha of each case are
drawn at random. A
case builds a layer, wraps it, sets random non-zero factors (and random
extra weights of the variant), and compares `adapter.merge()(x)` with
`adapter(x)`.
"""

import itertools
import time

import keras
import numpy as np
from keras import ops

from keras_lowrank.layers import adapter_class_for
from keras_lowrank.layers import get_variant
from keras_lowrank.layers.variants import variant_names

ACTIVATIONS = ("linear", "relu", "tanh", "gelu", "sigmoid")
# (equation, input shape without batch, output shape, bias axes)
EQUATIONS = (
    ("ab,bc->ac", lambda d: ((d[0],), (d[1],)), "c"),
    ("abc,cd->abd", lambda d: ((d[2], d[0]), (d[2], d[1])), "d"),
    ("abc,cde->abde", lambda d: ((d[2], d[0]), (d[2], d[3], d[1])), "de"),
    ("abcd,cde->abe", lambda d: ((d[2], d[3], d[0]), (d[2], d[1])), "e"),
    ("abc,cd->abd", lambda d: ((d[2], d[0]), (d[2], d[1])), None),
)


def _dense(rng, dims, use_bias, activation):
    layer = keras.layers.Dense(dims[1], activation=activation, use_bias=use_bias)
    layer.build((None, dims[0]))
    return layer, rng.normal(size=(3, dims[0])).astype("float32")


def _einsum(rng, dims, equation, activation):
    equation, shapes, bias_axes = EQUATIONS[equation]
    input_shape, output_shape = shapes(dims)
    layer = keras.layers.EinsumDense(equation, output_shape=output_shape,
                                     bias_axes=bias_axes, activation=activation)
    layer.build((None, *input_shape))
    return layer, rng.normal(size=(2, *input_shape)).astype("float32")


def _embedding(rng, dims):
    layer = keras.layers.Embedding(dims[0] + 2, dims[1])
    layer.build()
    return layer, rng.integers(0, dims[0] + 2, size=(2, 5))


def _layers():
    """`(name, build(rng, dims))` of every layer branch."""
    for use_bias, activation in itertools.product((True, False), ACTIVATIONS):
        yield (f"Dense(use_bias={use_bias}, {activation})",
               lambda rng, d, b=use_bias, a=activation: _dense(rng, d, b, a))
    for equation, activation in itertools.product(range(len(EQUATIONS)), ACTIVATIONS):
        yield (f"EinsumDense({EQUATIONS[equation][0]} #{equation}, {activation})",
               lambda rng, d, e=equation, a=activation: _einsum(rng, d, e, a))
    yield "Embedding", _embedding


def _case(rng, build, variant, use_rslora):
    """The relative merge error of one case, or None if `variant` does not
    support the layer's adapter class."""
    dims = [int(d) for d in rng.integers(2, 9, size=4)]
    layer, x = build(rng, dims)
    cls = adapter_class_for(layer)
    if not get_variant(variant).supports(cls):
        return None
    layout = cls.layout_of(layer)
    rank = int(rng.integers(1, min(layout.fan_in, layout.fan_out) + 1))
    adapter = cls(layer, rank=rank, alpha=float(rng.uniform(0.5, 16)),
                  use_rslora=use_rslora, variant=variant)
    adapter.variant.initialize(adapter)
    adapter.lora_a.assign(rng.normal(size=adapter.lora_a.shape).astype("float32"))
    adapter.lora_b.assign(rng.normal(size=adapter.lora_b.shape).astype("float32") * 0.3)
    for weight in adapter.variant.extra_weights(adapter).values():
        value = ops.convert_to_numpy(weight)
        weight.assign(value * rng.uniform(0.5, 1.5, size=value.shape).astype("float32"))
    want = ops.convert_to_numpy(adapter(x))
    got = ops.convert_to_numpy(adapter.merge()(x))
    scale = max(1.0, float(np.abs(want).max()))
    return float(np.abs(got - want).max()) / scale


def test_merge_equals_unmerged_forward_on_random_cases():
    rng = np.random.default_rng(20261201)
    start = time.perf_counter()
    worst, cases, seen = 0.0, 0, set()
    for (name, build), variant, use_rslora in itertools.product(
            _layers(), variant_names(), (False, True)):
        diff = _case(rng, build, variant, use_rslora)
        if diff is None:
            continue
        assert diff < 1e-5, (name, variant, use_rslora, diff)
        worst, cases = max(worst, diff), cases + 1
        seen.add((name.split("(")[0], variant))
    # Every registered variant met every layer kind it supports.
    kinds = {"Dense", "EinsumDense", "Embedding"}
    for variant in variant_names():
        supported = {k for k in kinds if (k, variant) in seen}
        assert supported, variant
    assert ("Embedding", "lora") in seen and ("EinsumDense", "dora") in seen
    print(f"{cases} cases, worst relative diff {worst:.2e}, "
          f"{time.perf_counter() - start:.1f} s, kinds {sorted(seen)}")
