"""How a Dense, EinsumDense, Embedding or convolution kernel maps onto a matrix.

Low-rank factors live on that matrix: `A` is `(fan_in, rank)` and `B` is
`(rank, fan_out)`. For a Dense kernel the matrix is the kernel itself. For an
EinsumDense kernel the axes contracted with the input are flattened into
`fan_in` and the axes that reach the output into `fan_out`: a query kernel
`(384, 12, 32)` under `"abc,cde->abde"` is the matrix `(384, 384)`, an output
kernel `(12, 32, 384)` under `"abcd,cde->abe"` is `(384, 384)` as well. This is
the layout PEFT uses for the same projections.

A convolution kernel is the matrix of one window: a Conv2D kernel
`(kh, kw, in/groups, filters)` is `(kh·kw·in/groups, filters)`, as PEFT
factors `Conv2d` (`lora_A` a convolution to `r` channels, `lora_B` a 1×1
convolution). A depthwise kernel `(kh, kw, in, multiplier)` has no
in→out matrix shared by its channels; its matrix is `(kh·kw, in·multiplier)`:
each output channel's filter is a column, so a rank-`r` delta draws every
filter from `r` shared window filters.
"""

import dataclasses
import math
import string

import keras
from keras import ops

_MATRIX_EQUATION = "...a,ab->...b"
_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DEPTHWISE_CONV = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


@dataclasses.dataclass(frozen=True)
class KernelLayout:
    """The matrix view of a kernel, and the einsums that apply its factors.

    Args:
        equation: str. The layer's einsum equation, `"ab,bc->ac"` for Dense.
        kernel_shape: tuple of int. The kernel's shape.
        in_axes: tuple of int. Kernel axes contracted with the input.
        out_axes: tuple of int. Kernel axes that reach the output.
        rank_letter: str. A letter of no axis, for the rank axis.
    """

    equation: str
    kernel_shape: tuple
    in_axes: tuple
    out_axes: tuple
    rank_letter: str

    @classmethod
    def of(cls, layer):
        """The layout of a built Dense, EinsumDense, Embedding or conv kernel.

        An Embedding table `(vocab, dim)` is a `(fan_in, fan_out)` matrix
        whose rows a lookup gathers. Conv1D/2D/3D and DepthwiseConv1D/2D
        kernels are described by `for_conv`.

        Raises:
            ValueError: `layer` is none of these, or not built.
        """
        if not getattr(layer, "built", False):
            raise ValueError(
                f"Layer '{getattr(layer, 'name', layer)}' is not built, so its "
                "kernel has no shape yet. Build it (or call it on data) first."
            )
        if isinstance(layer, keras.layers.EinsumDense):
            return cls.for_einsum(layer.equation, tuple(layer.kernel.shape))
        if isinstance(layer, keras.layers.Dense):
            return cls.for_dense(tuple(layer.kernel.shape))
        if isinstance(layer, keras.layers.Embedding):
            return cls.for_dense(tuple(layer.embeddings.shape))
        if isinstance(layer, _CONV):
            return cls.for_conv(tuple(layer.kernel.shape))
        if isinstance(layer, _DEPTHWISE_CONV):
            return cls.for_conv(tuple(layer.kernel.shape), depthwise=True)
        raise ValueError(
            "KernelLayout.of expected a Dense, EinsumDense, Embedding, "
            "Conv1D/2D/3D or DepthwiseConv1D/2D layer. "
            f"Received: layer '{getattr(layer, 'name', layer)}' of class "
            f"{type(layer).__name__}"
        )

    @classmethod
    def for_dense(cls, kernel_shape):
        return cls.for_einsum(_MATRIX_EQUATION, kernel_shape)

    @classmethod
    def for_conv(cls, kernel_shape, depthwise=False):
        """The matrix view of a convolution kernel `(*window, in, out)`.

        A Conv kernel `(*window, in/groups, filters)` is the matrix
        `(prod(window)·in/groups, filters)`: its `equation` contracts one
        input window patch `(..., *window, in/groups)` (of a group's
        channels, for `groups > 1`) with it. A depthwise kernel
        `(*window, in, multiplier)` is `(prod(window), in·multiplier)`, and
        its equation keeps each patch's channel: `"...abc,abcd->...cd"`.
        Convolution adapters apply these kernels with convolutions; the
        equation documents the matrix view and is never run as an einsum.

        Raises:
            ValueError: the kernel has fewer than 3 axes.
        """
        kernel_shape = tuple(int(d) for d in kernel_shape)
        if len(kernel_shape) < 3:
            raise ValueError(
                "A convolution kernel has shape (*window, in, out), at least "
                f"3 axes. Received: kernel_shape={kernel_shape}"
            )
        window = string.ascii_lowercase[: len(kernel_shape) - 2]
        channel, out, rank_letter = string.ascii_lowercase[len(window):][:3]
        patch = f"...{window}{channel}"
        kernel_spec = f"{window}{channel}{out}"
        n = len(kernel_shape)
        if depthwise:
            equation = f"{patch},{kernel_spec}->...{channel}{out}"
            in_axes, out_axes = tuple(range(n - 2)), (n - 2, n - 1)
        else:
            equation = f"{patch},{kernel_spec}->...{out}"
            in_axes, out_axes = tuple(range(n - 1)), (n - 1,)
        return cls(
            equation=equation,
            kernel_shape=kernel_shape,
            in_axes=in_axes,
            out_axes=out_axes,
            rank_letter=rank_letter,
        )

    @classmethod
    def for_einsum(cls, equation, kernel_shape):
        """Splits the kernel axes of `equation` into input and output axes.

        Raises:
            ValueError: when the equation is not `input,kernel->output`, or a
                kernel axis is both contracted and kept (a per-head, batched
                kernel), which no single matrix describes.
        """
        inputs_spec, kernel_spec, output_spec = _split_equation(equation)
        if len(kernel_spec) != len(kernel_shape):
            raise ValueError(
                f"The kernel spec '{kernel_spec}' of equation '{equation}' "
                f"has {len(kernel_spec)} axes but the kernel has shape "
                f"{tuple(kernel_shape)}."
            )
        in_axes, out_axes = [], []
        for axis, letter in enumerate(kernel_spec):
            in_input, in_output = letter in inputs_spec, letter in output_spec
            if in_input and in_output:
                raise ValueError(
                    f"Kernel axis '{letter}' of equation '{equation}' is both "
                    "contracted with the input and kept in the output (a "
                    "batched kernel). Low-rank factors need each kernel axis "
                    "to be either an input axis or an output axis."
                )
            if in_input:
                in_axes.append(axis)
            elif in_output:
                out_axes.append(axis)
            else:
                raise ValueError(
                    f"Kernel axis '{letter}' of equation '{equation}' is "
                    "summed away; such kernels are not supported."
                )
        if not in_axes or not out_axes:
            raise ValueError(
                f"Equation '{equation}' needs at least one input and one "
                "output kernel axis for low-rank factors."
            )
        used = set(equation)
        rank_letter = next(c for c in string.ascii_letters if c not in used)
        return cls(
            equation=equation,
            kernel_shape=tuple(int(d) for d in kernel_shape),
            in_axes=tuple(in_axes),
            out_axes=tuple(out_axes),
            rank_letter=rank_letter,
        )

    @property
    def is_matrix(self):
        """Whether the kernel is a plain `(fan_in, fan_out)` matrix (Dense)."""
        return self.equation == _MATRIX_EQUATION

    @property
    def in_dims(self):
        return tuple(self.kernel_shape[a] for a in self.in_axes)

    @property
    def out_dims(self):
        return tuple(self.kernel_shape[a] for a in self.out_axes)

    @property
    def fan_in(self):
        return math.prod(self.in_dims)

    @property
    def fan_out(self):
        return math.prod(self.out_dims)

    def to_matrix(self, kernel):
        """`kernel` (kernel_shape) -> `(fan_in, fan_out)`."""
        kernel = ops.transpose(kernel, self.in_axes + self.out_axes)
        return ops.reshape(kernel, (self.fan_in, self.fan_out))

    def from_matrix(self, matrix):
        """`(fan_in, fan_out)` -> kernel_shape; the inverse of `to_matrix`."""
        kernel = ops.reshape(matrix, self.in_dims + self.out_dims)
        order = self.in_axes + self.out_axes
        return ops.transpose(kernel, [order.index(a) for a in range(len(order))])

    @property
    def left_equation(self):
        """Contracts the input with `A` reshaped to `in_dims + (rank,)`."""
        inputs_spec, kernel_spec, _ = _split_equation(self.equation)
        in_letters = "".join(kernel_spec[a] for a in self.in_axes)
        kept = "".join(c for c in inputs_spec if c not in in_letters)
        r = self.rank_letter
        return f"{inputs_spec},{in_letters}{r}->{kept}{r}"

    @property
    def right_equation(self):
        """Expands `(..., rank)` with `B` reshaped to `(rank,) + out_dims`."""
        inputs_spec, kernel_spec, output_spec = _split_equation(self.equation)
        in_letters = "".join(kernel_spec[a] for a in self.in_axes)
        out_letters = "".join(kernel_spec[a] for a in self.out_axes)
        kept = "".join(c for c in inputs_spec if c not in in_letters)
        r = self.rank_letter
        return f"{kept}{r},{r}{out_letters}->{output_spec}"

    def apply_kernel(self, inputs, kernel):
        """`inputs` contracted with a kernel of this layout, as the layer does."""
        if self.is_matrix:
            return ops.matmul(inputs, kernel)
        return ops.einsum(self.equation, inputs, kernel)

    def apply_factors(self, inputs, left, right):
        """`inputs · left · right` for `left` (fan_in, k), `right` (k, fan_out).

        Never forms the `(fan_in, fan_out)` product: the cost is that of two
        thin matmuls.
        """
        if self.is_matrix:
            return ops.matmul(ops.matmul(inputs, left), right)  # via (..., k)
        rank = left.shape[-1]
        left = ops.reshape(left, self.in_dims + (rank,))
        right = ops.reshape(right, (rank,) + self.out_dims)
        hidden = ops.einsum(self.left_equation, inputs, left)  # (..., rank)
        return ops.einsum(self.right_equation, hidden, right)


def _split_equation(equation):
    if "->" not in equation or equation.count(",") != 1:
        raise ValueError(
            "Expected an einsum equation of the form 'input,kernel->output'. "
            f"Received: equation='{equation}'"
        )
    lhs, output_spec = equation.replace(" ", "").split("->")
    inputs_spec, kernel_spec = lhs.split(",")
    return inputs_spec, kernel_spec, output_spec
