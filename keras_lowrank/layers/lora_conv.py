"""LoRA on convolutions: `LoRAConv1D/2D/3D`, `LoRADepthwiseConv1D/2D`.

The delta lives on the kernel's matrix view (`KernelLayout.for_conv`), as
PEFT factors `Conv2d`: `A` `(kh·kw·in/groups, r)` is a convolution kernel
`(kh, kw, in/groups, r)` with the layer's strides, padding and dilation, and
`B` `(r, filters)` a 1×1 convolution, i.e. a matmul on the channel axis:

    y = act(conv(x, W) + s·conv(dropout(x), A)·B + b)

which is `act(conv(x, W + s·A·B) + b)` since a convolution is linear in its
kernel; that sum is the merged kernel.

Groups: group `g` sees its own `in/groups` channels and owns `filters/groups`
columns of the kernel matrix, so `conv(x, A)` runs per group (A tiled
`groups` times, `(..., groups·r)`) and each group's `r` channels meet their
columns of `B`. A depthwise kernel `(kh, kw, in, multiplier)` is the case
`groups = in`: its matrix is `(kh·kw, in·multiplier)`, `conv(x, A)` is a
depthwise convolution with `A` for every channel `(..., in·r)`, and channel
`c`'s `r` values meet `B`'s columns `c·multiplier ... c·multiplier + m`.
Its rank is at most `kh·kw` (9 for a 3×3 window).

Not supported (no adapter class, so `add_adapters` leaves them out and names
them when a target matches nothing else): transposed and separable
convolutions.
"""

import keras
from keras import ops

from keras_lowrank.layers.lora_adapter import LoRAAdapter


def _call_owner(layer_class):
    """The class in `layer_class`'s MRO whose `call` it runs."""
    return next(c for c in layer_class.__mro__ if "call" in vars(c))


class LoRAConv(LoRAAdapter):
    """Base of the convolution adapters: `act(conv(x, W + s·A·B) + b)`.

    The wrapped convolution is frozen (kernel and bias); `A`
    `(prod(window)·in/groups, rank)` and `B` `(rank, filters)` are the only
    trainable weights. Strides, padding (`"causal"` too), dilation, groups,
    `data_format` (`channels_last` and `channels_first`), bias and
    activation are the wrapped layer's. `targets="all-linear"` never picks
    convolutions (as PEFT's `all-linear`); name them in `targets`.

    Args:
        layer: the convolution to adapt, built or not.
        rank: int. Rank `r` of the delta, from 1 to min(fan_in, fan_out) of
            the kernel's matrix view (`KernelLayout.for_conv`).
        alpha: float. Scale numerator; `s = alpha / rank`. Defaults to rank.
        dropout: float in [0, 1). Dropout on the adapter path's input, in
            training only.
        use_rslora: bool. Use `s = alpha / sqrt(rank)`.
        variant: str. `"lora"` (DoRA does not apply to convolutions here).
        a_initializer: initializer of `A`. Defaults to `"he_uniform"`.
        b_initializer: initializer of `B`. Defaults to `"zeros"`, so the
            outputs equal the wrapped layer's at init.
        pissa_rank: int or None. Set by `LoRAConfig(init="pissa")`; leave it
            None.
        **kwargs: base layer arguments; `name` defaults to the layer's.
    """

    @classmethod
    def _check_call_reproduced(cls, layer):
        super()._check_call_reproduced(layer)
        # Keras' own `call` runs `convolution_op`: one overridden there (a
        # weight-standardized conv, say) would be dropped as silently.
        mine = getattr(type(layer), "convolution_op", None)
        if mine is not getattr(cls.wrapped_class, "convolution_op", None):
            raise ValueError(
                f"{cls.__name__} cannot adapt layer '{layer.name}' of class "
                f"{type(layer).__name__}: it overrides `convolution_op()` of "
                f"keras.layers.{cls.wrapped_class.__name__}, which the adapter "
                "does not run, so the merged model would differ from the "
                "trained one. Leave it out with `exclude=`."
            )

    def base_product(self, inputs):
        return self._convolve(inputs, self.layer.kernel)

    def factor_product(self, inputs, training=None, view=None):
        """`s·conv(dropout(x), A)·B` of adapter `view` (default: this one)."""
        view = self if view is None else view
        if view.dropout_layer is not None:
            inputs = view.dropout_layer(inputs, training=training)
        hidden = self._convolve(inputs, self._a_kernel(view.lora_a))  # groups·r channels
        return self._expand(hidden, view.lora_b) * view.scale

    def finish(self, outputs):
        layer = self.layer
        if layer.bias is not None:
            bias = layer.bias
            if layer.data_format == "channels_first":
                bias = ops.reshape(bias, (-1,) + (1,) * self._window_rank)
            outputs = ops.add(outputs, bias)
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    # === The convolution, as the wrapped layer runs it ===

    @property
    def _window_rank(self):
        return len(self.layout.kernel_shape) - 2

    @property
    def _groups(self):
        return self.layer.groups

    def _convolve(self, inputs, kernel):
        layer = self.layer
        padding = layer.padding
        if padding == "causal":  # Conv1D: left padding, then "valid"
            left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
            steps_axis = 1 if layer.data_format == "channels_last" else 2
            pads = [[0, 0], [0, 0], [0, 0]]
            pads[steps_axis] = [left, 0]
            inputs, padding = ops.pad(inputs, pads), "valid"
        return ops.conv(
            inputs,
            kernel,
            strides=list(layer.strides),
            padding=padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def _a_kernel(self, lora_a):
        """`A` as a conv kernel `(*window, in/groups, groups·r)`, per group."""
        window = self.layout.kernel_shape[:-2]
        rank = lora_a.shape[-1]
        a = ops.reshape(lora_a, window + (self.layout.kernel_shape[-2], rank))
        if self._groups == 1:
            return a
        return ops.tile(a, (1,) * (len(window) + 1) + (self._groups,))

    def _expand(self, hidden, lora_b):
        """Channels `(groups·r)` -> `(fan_out)`: each group's `r` times its `B` columns."""
        channels_first = self.layer.data_format == "channels_first"
        if channels_first:
            hidden = ops.moveaxis(hidden, 1, -1)
        groups, fan_out = self._groups, self.layout.fan_out
        rank = lora_b.shape[0]
        if groups == 1:
            outputs = ops.matmul(hidden, lora_b)  # (..., fan_out)
        else:
            lead = tuple(ops.shape(hidden)[:-1])
            hidden = ops.reshape(hidden, lead + (groups, rank))
            b = ops.reshape(lora_b, (rank, groups, fan_out // groups))
            outputs = ops.einsum("...gr,rgo->...go", hidden, b)
            outputs = ops.reshape(outputs, lead + (fan_out,))
        if channels_first:
            outputs = ops.moveaxis(outputs, -1, 1)
        return outputs


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LoRAConv1D(LoRAConv):
    """Wraps a `Conv1D` (`"causal"` padding too). See `LoRAConv`.

    Example:
    ```python
    conv = keras.layers.Conv1D(16, 3, padding="causal")
    conv.build((None, 20, 8))
    lora = klr.LoRAConv1D(conv, rank=4)   # A (24, 4), B (4, 16)
    y = lora(keras.random.normal((2, 20, 8)))
    ```
    """

    wrapped_class = keras.layers.Conv1D
    reproduces = (_call_owner(keras.layers.Conv1D),)


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LoRAConv2D(LoRAConv):
    """Wraps a `Conv2D`: `A` `(kh·kw·in/groups, r)`, `B` `(r, filters)`.

    See `LoRAConv` for the arguments.

    Example:
    ```python
    conv = keras.layers.Conv2D(32, 3, strides=2, padding="same")
    conv.build((None, 28, 28, 16))
    lora = klr.LoRAConv2D(conv, rank=8)   # A (144, 8), B (8, 32)
    y = lora(keras.random.normal((2, 28, 28, 16)))
    plain = lora.merge()  # a Conv2D with kernel W + s·A·B
    ```
    """

    wrapped_class = keras.layers.Conv2D
    reproduces = (_call_owner(keras.layers.Conv2D),)


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LoRAConv3D(LoRAConv):
    """Wraps a `Conv3D`: `A` `(kd·kh·kw·in/groups, r)`. See `LoRAConv`.

    Example:
    ```python
    conv = keras.layers.Conv3D(8, 3)
    conv.build((None, 6, 6, 6, 4))
    lora = klr.LoRAConv3D(conv, rank=2)   # A (108, 2), B (2, 8)
    ```
    """

    wrapped_class = keras.layers.Conv3D
    reproduces = (_call_owner(keras.layers.Conv3D),)


class LoRADepthwiseConv(LoRAConv):
    """Base of the depthwise adapters: kernel `(*window, in, multiplier)`.

    The matrix is `(prod(window), in·multiplier)`: `A` `(prod(window), r)`
    holds `r` window filters shared by all channels, `B`
    `(r, in·multiplier)` mixes them into each output channel's filter. The
    rank is at most `prod(window)`.
    """

    @property
    def _groups(self):
        return self.layout.kernel_shape[-2]  # one group per input channel

    def _convolve(self, inputs, kernel):
        layer = self.layer
        return ops.depthwise_conv(
            inputs,
            kernel,
            strides=layer.strides,
            padding=layer.padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def _a_kernel(self, lora_a):
        """`A` as a depthwise kernel `(*window, in, r)`, the same per channel."""
        window = self.layout.kernel_shape[:-2]
        rank = lora_a.shape[-1]
        a = ops.reshape(lora_a, window + (1, rank))
        return ops.broadcast_to(a, window + (self._groups, rank))


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LoRADepthwiseConv1D(LoRADepthwiseConv):
    """Wraps a `DepthwiseConv1D`. See `LoRADepthwiseConv` and `LoRAConv`.

    Example:
    ```python
    conv = keras.layers.DepthwiseConv1D(5, depth_multiplier=2)
    conv.build((None, 20, 8))
    lora = klr.LoRADepthwiseConv1D(conv, rank=3)   # A (5, 3), B (3, 16)
    ```
    """

    wrapped_class = keras.layers.DepthwiseConv1D
    reproduces = (_call_owner(keras.layers.DepthwiseConv1D),)


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LoRADepthwiseConv2D(LoRADepthwiseConv):
    """Wraps a `DepthwiseConv2D`. See `LoRADepthwiseConv` and `LoRAConv`.

    Example:
    ```python
    conv = keras.layers.DepthwiseConv2D(3, padding="same")
    conv.build((None, 16, 16, 32))
    lora = klr.LoRADepthwiseConv2D(conv, rank=4)   # A (9, 4), B (4, 32)
    plain = lora.merge()  # a DepthwiseConv2D with kernel W + s·A·B
    ```
    """

    wrapped_class = keras.layers.DepthwiseConv2D
    reproduces = (_call_owner(keras.layers.DepthwiseConv2D),)
