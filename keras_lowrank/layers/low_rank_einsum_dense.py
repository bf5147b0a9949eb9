"""`LowRankEinsumDense`: an EinsumDense layer with a rank-`k` factored kernel."""

import keras
from keras import activations
from keras import constraints
from keras import initializers
from keras import regularizers

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.layers.low_rank_common import assign
from keras_lowrank.layers.low_rank_common import check_built
from keras_lowrank.layers.low_rank_common import check_positive_int
from keras_lowrank.layers.low_rank_common import check_rank_fits
from keras_lowrank.layers.low_rank_common import product
from keras_lowrank.svd import factorization
from keras_lowrank.svd.kernel_layout import KernelLayout

# EinsumDense's own shape analysis: the kernel, bias and output shapes here are
# exactly those of keras.layers.EinsumDense (keras is pinned).



@keras.saving.register_keras_serializable(package="keras_lowrank")
class LowRankEinsumDense(keras.layers.Layer):
    """An EinsumDense whose kernel is `left @ right` on its `KernelLayout`.

    The kernel that `keras.layers.EinsumDense(equation, output_shape)` would
    hold is viewed as the `(fan_in, fan_out)` matrix of its `KernelLayout`
    (input axes flattened into rows, output axes into columns) and stored as
    `left (fan_in, rank)` and `right (rank, fan_out)`. The output is
    `activation((x · left) · right + bias)`, computed as two thin einsums; the
    bias has EinsumDense's shape and broadcasting.

    Args:
        equation: str. An einsum equation `input,kernel->output`, as for
            EinsumDense, e.g. `"abc,cde->abde"` for an attention query.
        output_shape: int or tuple. The output shape without the batch axis;
            `None` for dimensions taken from the input.
        rank: int. Inner dimension, at most `min(fan_in, fan_out)`.
        activation: Activation function to use; `None` means linear.
        bias_axes: str. Output axes that get a bias, as for EinsumDense;
            `None` for no bias.
        left_initializer: Initializer for `left`.
        right_initializer: Initializer for `right`.
        bias_initializer: Initializer for `bias`.
        left_regularizer: Regularizer for `left`.
        right_regularizer: Regularizer for `right`.
        bias_regularizer: Regularizer for `bias`.
        activity_regularizer: Regularizer for the output.
        left_constraint: Constraint for `left`.
        right_constraint: Constraint for `right`.
        bias_constraint: Constraint for `bias`.
        **kwargs: Base layer arguments (`name`, `dtype`, `trainable`).

    Example:
    ```python
    query = LowRankEinsumDense(
        "abc,cde->abde", output_shape=(None, 12, 32), rank=64, bias_axes="de"
    )
    query(keras.ops.ones((2, 16, 384))).shape  # (2, 16, 12, 32)
    ```
    """

    def __init__(
        self,
        equation,
        output_shape,
        rank,
        activation=None,
        bias_axes=None,
        left_initializer="glorot_uniform",
        right_initializer="glorot_uniform",
        bias_initializer="zeros",
        left_regularizer=None,
        right_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        left_constraint=None,
        right_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        check_positive_int("rank", rank, layer="LowRankEinsumDense")
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.equation = equation
        # Stored under EinsumDense's name: `output_shape` is a Layer property.
        if isinstance(output_shape, int):
            self.partial_output_shape = (output_shape,)
        else:
            self.partial_output_shape = tuple(output_shape)
        self.rank = rank
        self.activation = activations.get(activation)
        self.bias_axes = bias_axes
        self.left_initializer = initializers.get(left_initializer)
        self.right_initializer = initializers.get(right_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.left_regularizer = regularizers.get(left_regularizer)
        self.right_regularizer = regularizers.get(right_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.left_constraint = constraints.get(left_constraint)
        self.right_constraint = constraints.get(right_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        kernel_shape, bias_shape, _, _, _ = keras_compat.analyze_einsum_string(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape
        )
        try:
            self._layout = KernelLayout.for_einsum(self.equation, kernel_shape)
        except ValueError as error:
            raise ValueError(f"LowRankEinsumDense '{self.name}': {error}") from None
        fan_in, fan_out = self._layout.fan_in, self._layout.fan_out
        check_rank_fits("LowRankEinsumDense", self.name, self.rank, fan_in, fan_out)
        self.left = self.add_weight(
            name="left",
            shape=(fan_in, self.rank),
            initializer=self.left_initializer,
            regularizer=self.left_regularizer,
            constraint=self.left_constraint,
        )
        self.right = self.add_weight(
            name="right",
            shape=(self.rank, fan_out),
            initializer=self.right_initializer,
            regularizer=self.right_regularizer,
            constraint=self.right_constraint,
        )
        self.bias = None
        if bias_shape is not None:
            self.bias = self.add_weight(
                name="bias",
                shape=tuple(bias_shape),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_spec = keras.layers.InputSpec(ndim=len(input_shape))

    def call(self, inputs):
        outputs = self._layout.apply_factors(inputs, self.left, self.right)
        if self.bias is not None:
            outputs = keras.ops.add(outputs, self.bias)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        _, _, output_shape, _, _ = keras_compat.analyze_einsum_string(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape
        )
        return tuple(output_shape)

    @property
    def layout(self) -> KernelLayout:
        """The `KernelLayout` of the equivalent EinsumDense kernel."""
        check_built(self, "layout")
        return self._layout

    @classmethod
    def from_layer(cls, layer, rank=None, energy=None):
        """Factors a built `keras.layers.EinsumDense` by truncated SVD.

        Args:
            layer: keras.layers.EinsumDense. A built, unquantized layer whose
                kernel axes are each either contracted or kept (not batched).
            rank: int. The rank to keep, in `[1, min(fan_in, fan_out)]`.
            energy: float in (0, 1]. Keep the smallest rank holding this share
                of the kernel's `sum σ²`. Exactly one of `rank`/`energy`.

        Returns:
            A built `LowRankEinsumDense` with the layer's equation, output
            shape, bias axes, activation, bias, name and dtype policy.

        Raises:
            TypeError: when `layer` is not an EinsumDense layer.
            ValueError: when the layer is not built, is quantized, has a
                batched kernel, or for a bad `rank`/`energy`.

        Example:
        ```python
        query = keras.layers.EinsumDense(
            "abc,cde->abde", output_shape=(None, 12, 32), bias_axes="de"
        )
        query.build((None, 16, 384))
        low_rank = LowRankEinsumDense.from_layer(query, rank=64)
        ```
        """
        if not isinstance(layer, keras.layers.EinsumDense):
            raise TypeError(
                "LowRankEinsumDense.from_layer expects a keras.layers."
                f"EinsumDense. Received: layer '{getattr(layer, 'name', layer)}' "
                f"of class {type(layer).__name__}"
                + (
                    "; use LowRankDense.from_layer for Dense layers."
                    if isinstance(layer, keras.layers.Dense)
                    else "."
                )
            )
        try:
            matrix, _ = factorization.kernel_matrix(layer)
            left, right = factorization.truncated_svd(
                matrix, rank=rank, energy=energy
            )
        except ValueError as error:
            raise ValueError(
                "LowRankEinsumDense.from_layer cannot factor layer "
                f"'{layer.path or layer.name}': {error}"
            ) from None
        low_rank = cls(
            equation=layer.equation,
            output_shape=layer.partial_output_shape,
            rank=left.shape[1],
            activation=layer.activation,
            bias_axes=layer.bias_axes,
            bias_initializer=layer.bias_initializer,
            bias_regularizer=layer.bias_regularizer,
            activity_regularizer=layer.activity_regularizer,
            bias_constraint=layer.bias_constraint,
            name=layer.name,
            dtype=layer.dtype_policy,
            trainable=layer.trainable,
        )
        low_rank.build_from_config(layer.get_build_config())
        assign(low_rank.left, left)
        assign(low_rank.right, right)
        if layer.bias is not None:
            assign(low_rank.bias, layer.bias)
        return low_rank

    def to_dense(self):
        """Multiplies the factors back into a plain `keras.layers.EinsumDense`.

        Returns:
            A built `keras.layers.EinsumDense` with kernel `left @ right`
            (float64) reshaped by the layout, and the same bias, activation,
            name and dtype policy.

        Raises:
            ValueError: when this layer is not built.

        Example:
        ```python
        einsum_dense = low_rank.to_dense()
        ```
        """
        check_built(self, "to_dense")
        einsum_dense = keras.layers.EinsumDense(
            equation=self.equation,
            output_shape=self.partial_output_shape,
            activation=self.activation,
            bias_axes=self.bias_axes,
            bias_initializer=self.bias_initializer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.activity_regularizer,
            bias_constraint=self.bias_constraint,
            name=self.name,
            dtype=self.dtype_policy,
            trainable=self.trainable,
        )
        einsum_dense.build_from_config(self.get_build_config())
        kernel = self._layout.from_matrix(product(self.left, self.right))
        assign(einsum_dense.kernel, kernel)
        if self.bias is not None:
            assign(einsum_dense.bias, self.bias)
        return einsum_dense

    def get_config(self):
        config = {
            "equation": self.equation,
            "output_shape": self.partial_output_shape,
            "rank": self.rank,
            "activation": activations.serialize(self.activation),
            "bias_axes": self.bias_axes,
            "left_initializer": initializers.serialize(self.left_initializer),
            "right_initializer": initializers.serialize(self.right_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "left_regularizer": regularizers.serialize(self.left_regularizer),
            "right_regularizer": regularizers.serialize(self.right_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(
                self.activity_regularizer
            ),
            "left_constraint": constraints.serialize(self.left_constraint),
            "right_constraint": constraints.serialize(self.right_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }
        return {**super().get_config(), **config}
