"""`LowRankDense`: a Dense layer whose kernel is a product of two thin factors."""

import keras
from keras import activations
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

from keras_lowrank.layers.low_rank_common import assign
from keras_lowrank.layers.low_rank_common import check_built
from keras_lowrank.layers.low_rank_common import check_positive_int
from keras_lowrank.layers.low_rank_common import check_rank_fits
from keras_lowrank.layers.low_rank_common import product
from keras_lowrank.svd import factorization
from keras_lowrank.svd.kernel_layout import KernelLayout


@keras.saving.register_keras_serializable(package="keras_lowrank")
class LowRankDense(keras.layers.Layer):
    """`y = activation((x · left) · right + bias)` with a rank-`rank` kernel.

    Holds `rank · (input_dim + units)` kernel parameters instead of
    `input_dim · units`, and applies them as two thin matmuls. Built from a
    trained `keras.layers.Dense` by truncated SVD (`from_layer`), and
    multiplied back into one (`to_dense`).

    Args:
        units: int. Dimensionality of the output space.
        rank: int. Inner dimension of the factorization, at most
            `min(input_dim, units)`.
        activation: Activation function to use; `None` means linear.
        use_bias: bool. Whether the layer adds a bias vector.
        left_initializer: Initializer for `left`, `(input_dim, rank)`.
        right_initializer: Initializer for `right`, `(rank, units)`.
        bias_initializer: Initializer for `bias`, `(units,)`.
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
    dense = model.get_layer("feedforward")  # a built keras.layers.Dense
    low_rank = LowRankDense.from_layer(dense, energy=0.9)
    dense_again = low_rank.to_dense()  # keras.layers.Dense, kernel left @ right
    ```
    """

    def __init__(
        self,
        units,
        rank,
        activation=None,
        use_bias=True,
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
        check_positive_int("units", units)
        check_positive_int("rank", rank)
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        self.units = units
        self.rank = rank
        self.activation = activations.get(activation)
        self.use_bias = use_bias
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
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                f"LowRankDense '{self.name}' needs a known last input "
                f"dimension. Received: input_shape={input_shape}"
            )
        check_rank_fits("LowRankDense", self.name, self.rank, input_dim, self.units)
        self.left = self.add_weight(
            name="left",
            shape=(input_dim, self.rank),
            initializer=self.left_initializer,
            regularizer=self.left_regularizer,
            constraint=self.left_constraint,
        )
        self.right = self.add_weight(
            name="right",
            shape=(self.rank, self.units),
            initializer=self.right_initializer,
            regularizer=self.right_regularizer,
            constraint=self.right_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs):
        hidden = ops.matmul(inputs, self.left)  # (..., rank)
        outputs = ops.matmul(hidden, self.right)  # (..., units)
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    @property
    def layout(self) -> KernelLayout:
        """The `(input_dim, units)` layout of the equivalent Dense kernel."""
        check_built(self, "layout")
        return KernelLayout.for_dense((self.left.shape[0], self.units))

    @classmethod
    def from_layer(cls, layer, rank=None, energy=None):
        """Factors a built `keras.layers.Dense` by truncated SVD.

        Args:
            layer: keras.layers.Dense. A built, unquantized Dense layer (a
                Keras-LoRA-enabled one is factored with its LoRA delta).
            rank: int. The rank to keep, in `[1, min(input_dim, units)]`.
            energy: float in (0, 1]. Keep the smallest rank holding this share
                of the kernel's `sum σ²`. Exactly one of `rank`/`energy`.

        Returns:
            A built `LowRankDense` with the layer's name, dtype policy,
            activation and bias, whose `left @ right` is the best rank-`k`
            approximation of the kernel.

        Raises:
            TypeError: when `layer` is not a Dense layer.
            ValueError: when the layer is not built or is quantized, or for a
                bad `rank`/`energy`.

        Example:
        ```python
        low_rank = LowRankDense.from_layer(dense, rank=64)
        ```
        """
        if not isinstance(layer, keras.layers.Dense):
            raise TypeError(
                "LowRankDense.from_layer expects a keras.layers.Dense. Received: "
                f"layer '{getattr(layer, 'name', layer)}' of class "
                f"{type(layer).__name__}"
                + (
                    "; use LowRankEinsumDense.from_layer for EinsumDense layers."
                    if isinstance(layer, keras.layers.EinsumDense)
                    else "."
                )
            )
        matrix, layout = factorization.kernel_matrix(layer)
        try:
            left, right = factorization.truncated_svd(
                matrix, rank=rank, energy=energy
            )
        except ValueError as error:
            raise ValueError(
                f"LowRankDense.from_layer cannot factor layer '{layer.path}': "
                f"{error}"
            ) from None
        low_rank = cls(
            units=layer.units,
            rank=left.shape[1],
            activation=layer.activation,
            use_bias=layer.use_bias,
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
        if layer.use_bias:
            assign(low_rank.bias, layer.bias)
        return low_rank

    def to_dense(self):
        """Multiplies the factors back into a plain `keras.layers.Dense`.

        Returns:
            A built `keras.layers.Dense` with kernel `left @ right` (computed
            in float64), the same bias, activation, name and dtype policy.

        Raises:
            ValueError: when this layer is not built.

        Example:
        ```python
        dense = low_rank.to_dense()
        ```
        """
        check_built(self, "to_dense")
        dense = keras.layers.Dense(
            units=self.units,
            activation=self.activation,
            use_bias=self.use_bias,
            bias_initializer=self.bias_initializer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.activity_regularizer,
            bias_constraint=self.bias_constraint,
            name=self.name,
            dtype=self.dtype_policy,
            trainable=self.trainable,
        )
        dense.build_from_config(self.get_build_config())
        assign(dense.kernel, self.layout.from_matrix(product(self.left, self.right)))
        if self.use_bias:
            assign(dense.bias, self.bias)
        return dense

    def get_config(self):
        config = {
            "units": self.units,
            "rank": self.rank,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
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
