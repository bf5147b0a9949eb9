"""`LoRADense`: a trainable low-rank delta on a frozen `keras.layers.Dense`."""

import keras
from keras import ops

from keras_lowrank.layers.kernel_layout import KernelLayout
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

    @classmethod
    def layout_of(cls, layer):
        return KernelLayout.for_dense(tuple(layer.kernel.shape))

    def call(self, inputs, training=None):
        layer = self.layer
        outputs = ops.matmul(inputs, layer.kernel)
        hidden = ops.matmul(self._adapter_inputs(inputs, training), self.lora_a)
        outputs = outputs + ops.matmul(hidden, self.lora_b) * self.scale
        if layer.bias is not None:
            outputs = ops.add(outputs, layer.bias)
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs
