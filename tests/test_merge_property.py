"""Merge equals the unmerged forward pass, over 1,000+ seeded random cases.

Layer kind x shape x einsum equation x rank x variant x activation: each case
builds a layer, wraps it, sets random non-zero factors (and random extra
weights of the variant), and compares `adapter.merge()(x)` with `adapter(x)`.
"""

import time

import keras
import numpy as np
from keras import ops

from keras_lowrank.layers import adapter_class_for
from keras_lowrank.layers import get_variant
from keras_lowrank.layers.variants import variant_names

CASES = 1_000
ACTIVATIONS = ("linear", "relu", "tanh", "gelu", "sigmoid")
# (equation, input shape without batch, output shape, bias axes)
EQUATIONS = (
    ("ab,bc->ac", lambda d: ((d[0],), (d[1],)), "c"),
    ("abc,cd->abd", lambda d: ((d[2], d[0]), (d[2], d[1])), "d"),
    ("abc,cde->abde", lambda d: ((d[2], d[0]), (d[2], d[3], d[1])), "de"),
    ("abcd,cde->abe", lambda d: ((d[2], d[3], d[0]), (d[2], d[1])), "e"),
    ("abc,cd->abd", lambda d: ((d[2], d[0]), (d[2], d[1])), None),
)


def _dense(rng, dims):
    layer = keras.layers.Dense(dims[1], activation=str(rng.choice(ACTIVATIONS)),
                               use_bias=bool(rng.integers(2)))
    layer.build((None, dims[0]))
    return layer, rng.normal(size=(3, dims[0])).astype("float32")


def _einsum(rng, dims):
    equation, shapes, bias_axes = EQUATIONS[rng.integers(len(EQUATIONS))]
    input_shape, output_shape = shapes(dims)
    layer = keras.layers.EinsumDense(equation, output_shape=output_shape,
                                     bias_axes=bias_axes, activation=str(rng.choice(ACTIVATIONS)))
    layer.build((None, *input_shape))
    return layer, rng.normal(size=(2, *input_shape)).astype("float32")


def _embedding(rng, dims):
    layer = keras.layers.Embedding(dims[0] + 2, dims[1])
    layer.build()
    return layer, rng.integers(0, dims[0] + 2, size=(2, 5))


KINDS = (_dense, _einsum, _embedding)


def _case(rng):
    dims = [int(d) for d in rng.integers(2, 9, size=4)]
    layer, x = KINDS[rng.integers(len(KINDS))](rng, dims)
    cls = adapter_class_for(layer)
    layout = cls.layout_of(layer)
    rank = int(rng.integers(1, min(layout.fan_in, layout.fan_out) + 1))
    variants = [v for v in variant_names() if get_variant(v).supports(cls)]
    variant = variants[rng.integers(len(variants))]
    adapter = cls(layer, rank=rank, alpha=float(rng.uniform(0.5, 16)),
                  use_rslora=bool(rng.integers(2)), variant=variant)
    adapter.variant.initialize(adapter)
    adapter.lora_a.assign(rng.normal(size=adapter.lora_a.shape).astype("float32"))
    adapter.lora_b.assign(rng.normal(size=adapter.lora_b.shape).astype("float32") * 0.3)
    for weight in adapter.variant.extra_weights(adapter).values():
        value = ops.convert_to_numpy(weight)
        weight.assign(value * rng.uniform(0.5, 1.5, size=value.shape).astype("float32"))
    want = ops.convert_to_numpy(adapter(x))
    got = ops.convert_to_numpy(adapter.merge()(x))
    scale = max(1.0, float(np.abs(want).max()))
    return float(np.abs(got - want).max()) / scale, (type(layer).__name__, variant)


def test_merge_equals_unmerged_forward_on_random_cases():
    rng = np.random.default_rng(20261201)
    start = time.perf_counter()
    worst, seen = 0.0, set()
    for _ in range(CASES):
        diff, kind = _case(rng)
        seen.add(kind)
        worst = max(worst, diff)
    assert worst < 1e-5, worst
    # Every registered variant met every layer kind it supports.
    kinds = {"Dense", "EinsumDense", "Embedding"}
    for variant in variant_names():
        supported = {k for k in kinds if (k, variant) in seen}
        assert supported, variant
    print(f"{CASES} cases, worst relative diff {worst:.2e}, "
          f"{time.perf_counter() - start:.1f} s, kinds {sorted(seen)}")
