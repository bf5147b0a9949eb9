"""`LoRADense`: a trainable low-rank delta on a frozen `keras.layers.Dense`."""

import keras

from keras_lowrank.layers.lora_adapter import LoRAAdapter


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LoRADense(LoRAAdapter):
    """Wraps a `Dense` layer: `y = act(x·(W + s·A·B) + b)`.

    The wrapped layer is frozen (kernel and bias); `A` `(fan_in, rank)` and
    `B` `(rank, units)` are the only trainable weights. The low-rank path
    `(dropout(x)·A)·B·s` is added to the frozen path before the activation,
    so the delta acts inside it. With `B = 0` at init the outputs equal the
    wrapped layer's.

    Args:
        layer: keras.layers.Dense. The layer to adapt, built or not.
        rank: int. Rank `r` of the delta, from 1 to min(fan_in, units).
        alpha: float. Scale numerator; `s = alpha / rank`. Defaults to rank.
        dropout: float in [0, 1). Dropout on the adapter path's input, in
            training only.
        use_rslora: bool. Use `s = alpha / sqrt(rank)` (rank-stabilized LoRA).
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
    dense = keras.layers.Dense(64, activation="relu")
    dense.build((None, 32))
    lora = klr.LoRADense(dense, rank=4)
    y = lora(keras.random.normal((2, 32)))
    plain = lora.merge()  # a Dense with kernel W + s·A·B
    ```
    """

    wrapped_class = keras.layers.Dense
