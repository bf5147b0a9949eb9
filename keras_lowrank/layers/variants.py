"""Adapter variants: how an adapter turns its factors into outputs.

A variant is a small strategy object, not a flag checked everywhere (as
PEFT's `LoraVariant`). Every adapter layer computes, in one place
(`LoRAAdapter.call`):

    base  = x · W                      # the frozen kernel, before bias
    delta = (dropout(x) · A) · B · s   # the factors, never forming A·B
    y     = act(variant.combine(adapter, base, delta) + bias)

and merges to a kernel `variant.merged_kernel(adapter)`. A new variant is
one subclass of `AdapterVariant` plus `register_variant`, and its tests:

- `build(adapter)`: create extra weights (after `A` and `B` exist).
- `initialize(adapter)`: set them from the base kernel, once, when
  `add_adapters` creates the adapter (not when a saved model is loaded).
- `combine(adapter, base, delta)`: the outputs before bias and activation.
- `merged_kernel(adapter)`: the kernel of the merged layer, float32.
- `extra_weights(adapter)`: `{name: variable}` that adapter files save;
  `extra_weight_names` lists those names, for reading a file before any
  adapter is built; `frozen_weight_names` those of them never trained.
- `supports(adapter_class)`: whether it applies to a layer kind.
- `factor_product(adapter, inputs, training)`: `s·(x·A)·B`, the delta's
  product with the (dropped-out) inputs; a variant may put weights between
  the factors (AdaLoRA's `diag(Λ)`).
- `delta_matrix(adapter)`: the same delta as a `(fan_in, fan_out)` float32
  matrix, the one source of `delta_kernel()` for merge and export.
"""

import keras
from keras import ops


def wraps_dense_kernel(adapter_class) -> bool:
    """Whether `adapter_class` wraps a Dense or EinsumDense (the kinds whose
    kernel has output columns: DoRA's magnitudes, AdaLoRA's triplets)."""
    wrapped = getattr(adapter_class, "wrapped_class", None)
    return isinstance(wrapped, type) and issubclass(
        wrapped, (keras.layers.Dense, keras.layers.EinsumDense)
    )


class AdapterVariant:
    """Plain LoRA: `y = x·W + s·(x·A)·B`. The base of every variant."""

    name = "lora"
    extra_weight_names = ()
    frozen_weight_names = ()

    @classmethod
    def supports(cls, adapter_class) -> bool:
        return True

    @classmethod
    def build(cls, adapter):
        pass

    @classmethod
    def initialize(cls, adapter):
        pass

    @classmethod
    def combine(cls, adapter, base, delta):
        return base + delta

    @classmethod
    def merged_kernel(cls, adapter):
        return ops.cast(adapter.base_kernel, "float32") + adapter.delta_kernel()

    @classmethod
    def extra_weights(cls, adapter) -> dict:
        return {}

    @classmethod
    def factor_product(cls, adapter, inputs, training=None):
        return adapter.layout.apply_factors(inputs, adapter.lora_a, adapter.lora_b) * adapter.scale

    @classmethod
    def delta_matrix(cls, adapter):
        a = ops.cast(adapter.lora_a, "float32")
        b = ops.cast(adapter.lora_b, "float32")
        return ops.matmul(a, b) * adapter.scale  # (fan_in, fan_out)


_VARIANTS = {"lora": AdapterVariant}


def register_variant(variant):
    """Makes `variant` (an `AdapterVariant` subclass) usable by name.

    Returns:
        `variant`, so that this works as a class decorator.

    Raises:
        ValueError: not an `AdapterVariant` subclass, or the name is taken.
    """
    if not (isinstance(variant, type) and issubclass(variant, AdapterVariant)):
        raise ValueError(
            "register_variant expected a subclass of AdapterVariant. "
            f"Received: {variant!r}"
        )
    if variant.name in _VARIANTS and _VARIANTS[variant.name] is not variant:
        raise ValueError(
            f"A variant named {variant.name!r} is already registered "
            f"({_VARIANTS[variant.name].__name__})."
        )
    _VARIANTS[variant.name] = variant
    return variant


def get_variant(name):
    """The registered variant called `name`.

    Raises:
        ValueError: no variant has that name; the message lists them.
    """
    if not isinstance(name, str) or name not in _VARIANTS:
        raise ValueError(
            f"Unknown adapter variant. Received: variant={name!r}. "
            f"Registered: {sorted(_VARIANTS)}"
        )
    return _VARIANTS[name]


def variant_names():
    return sorted(_VARIANTS)
