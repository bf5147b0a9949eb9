"""`LoRAEinsumDense`: a low-rank delta on a frozen `keras.layers.EinsumDense`."""

import keras

from keras_lowrank.layers.lora_adapter import LoRAAdapter


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LoRAEinsumDense(LoRAAdapter):
    """Wraps an `EinsumDense` layer, such as an attention projection.

    The factors span the kernel's flattened input axes × its flattened output
    axes. For a query kernel `(d, heads, head_dim)` under `"abc,cde->abde"`,
    `A` is `(d, r)` and `B` is `(r, heads·head_dim)`; for an attention output
    kernel `(heads, head_dim, d)` under `"abcd,cde->abe"`, `A` is
    `(heads·head_dim, r)` and `B` is `(r, d)`. For MiniLM's `(384, 12, 32)`
    query at rank 8 that is 384·8 + 8·384 = 6,144 parameters, the count PEFT
    has for the same layer (Keras' own `enable_lora` factors only the first
    axis: 36,864 + 256). `y = act(einsum(x, W + s·A·B) + b)`, computed as the
    frozen einsum plus `(dropout(x)·A)·B·s` contracted over the same axes.

    Args:
        layer: keras.layers.EinsumDense. The layer to adapt.
        rank: int. Rank `r`, from 1 to min(fan_in, fan_out).
        alpha: float. Scale numerator; `s = alpha / rank`. Defaults to rank.
        dropout: float in [0, 1). Dropout on the adapter path, training only.
        use_rslora: bool. Use `s = alpha / sqrt(rank)`.
        variant: str. How the delta enters the outputs: `"lora"` or
            another registered variant (`keras_lowrank.layers.variants`).
        a_initializer: initializer of `A`. Defaults to `"he_uniform"`.
        b_initializer: initializer of `B`. Defaults to `"zeros"`.
        pissa_rank: int or None. Set by `LoRAConfig(init="pissa")`: the
            wrapped kernel then holds `W` minus its top-`pissa_rank` singular
            part, so that adapter files can rebuild it. Leave it None.
        **kwargs: base layer arguments; `name` defaults to the layer's.

    Example:
    ```python
    mha = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)
    x = keras.random.normal((2, 5, 32))
    mha(x, x)
    lora_query = klr.LoRAEinsumDense(mha._query_dense, rank=4)
    ```
    """

    wrapped_class = keras.layers.EinsumDense
