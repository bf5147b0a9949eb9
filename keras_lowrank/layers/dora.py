"""DoRA: weight-decomposed low-rank adaptation (Liu et al., 2024).

DoRA splits the adapted kernel `W' = W + s·A·B` into a direction, its
columns scaled to unit norm, and a trainable magnitude `m`, one value per
output unit:

    y = act(m / ‖W'‖_c · (x·W') + b)

where `‖W'‖_c` is the L2 norm of each column of the `(fan_in, fan_out)`
matrix view of the kernel (`KernelLayout`), taken over `fan_in`. As in the
paper (section 4.3) and PEFT, the norm is treated as a constant in the
backward pass: it follows the factors in the forward pass but sends them no
gradient, which saves memory and barely changes accuracy.

`x·W'` is never formed as such: it is the frozen product plus the factors'
product, as for LoRA, and the per-column factor `m / ‖W'‖_c` (one norm per
call, from `s·A·B` in the kernel's shape) multiplies their sum. An
EinsumDense output gets that factor broadcast on the output axes of its
equation (`"abc,cde->abde"`: the last two; `"abcd,cde->abe"`: the last).
"""

from keras import ops

from keras_lowrank.layers.variants import AdapterVariant
from keras_lowrank.layers.variants import wraps_dense_kernel

MAGNITUDE = "lora_magnitude"
# Floor of a column norm: an all-zero column (and so m = 0) gives 0, not NaN.
_NORM_FLOOR = 1e-12


class DoRAVariant(AdapterVariant):
    """DoRA: a trainable magnitude per output unit over a normalized `W + s·A·B`.

    Adds `lora_magnitude`, shape `(fan_out,)`, to the adapter's trainable
    weights (so a DoRA adapter has `rank·(fan_in + fan_out) + fan_out`
    parameters). It starts at `‖W + s·A·B‖_c`, the norm of the adapted
    kernel when the adapter is created (`‖W‖_c` with `B = 0`; after PiSSA,
    the norm of the residual plus the principal part), so the outputs start
    where LoRA's would. Merging gives `m / ‖W'‖_c · W'` exactly. Dense and
    EinsumDense layers only: a lookup table has no per-output norm over an
    input.

    Example:
    ```python
    model = klr.add_adapters(model, rank=8, use_dora=True)
    dense = keras.layers.Dense(16)
    dense.build((None, 8))
    adapter = klr.LoRADense(dense, rank=4, variant="dora")
    adapter.lora_magnitude.shape  # (16,)
    ```
    """

    name = "dora"
    extra_weight_names = (MAGNITUDE,)

    @classmethod
    def supports(cls, adapter_class) -> bool:
        return wraps_dense_kernel(adapter_class)

    @classmethod
    def build(cls, adapter):
        _output_axes_shape(adapter.layout)  # refuses what cannot broadcast
        adapter.lora_magnitude = adapter.add_weight(
            name=MAGNITUDE,
            shape=(adapter.layout.fan_out,),
            initializer=lambda shape, dtype: ops.cast(
                ops.reshape(column_norm(adapter), shape), dtype
            ),
        )

    @classmethod
    def initialize(cls, adapter):
        # After PiSSA moved the principal part into the factors.
        adapter.lora_magnitude.assign(
            ops.cast(ops.reshape(column_norm(adapter), (-1,)), adapter.lora_magnitude.dtype)
        )

    @classmethod
    def combine(cls, adapter, base, delta):
        # m / ‖W'‖_c, the norm a constant for the gradient: (*out_dims).
        factor = _magnitude(adapter) / ops.stop_gradient(column_norm(adapter))
        factor = _to_outputs(adapter.layout, factor)  # broadcasts to outputs
        return ops.cast(factor, base.dtype) * (base + delta)

    @classmethod
    def merged_kernel(cls, adapter):
        layout = adapter.layout
        kernel = adapted_kernel(adapter)
        factor = _magnitude(adapter) / column_norm(adapter, kernel)  # (*out_dims)
        shape = [d if a in layout.out_axes else 1 for a, d in enumerate(layout.kernel_shape)]
        return kernel * ops.reshape(factor, shape)

    @classmethod
    def extra_weights(cls, adapter) -> dict:
        return {MAGNITUDE: adapter.lora_magnitude}

    # === Used by shrink_adapters ===

    @classmethod
    def column_scale(cls, adapter):
        """`m / ‖W + s·A·B‖_c`, `(fan_out,)`: the merged kernel's column scale."""
        norm = ops.reshape(column_norm(adapter), (-1,))
        return ops.convert_to_numpy(ops.cast(adapter.lora_magnitude, "float32") / norm)

    @classmethod
    def set_column_scale(cls, adapter, scale):
        """Sets `m` so that `m / ‖W + s·A·B‖_c` is `scale` with the current factors."""
        norm = ops.convert_to_numpy(ops.reshape(column_norm(adapter), (-1,)))
        adapter.lora_magnitude.assign((scale * norm).astype(adapter.lora_magnitude.dtype))


def adapted_kernel(adapter):
    """`W + s·A·B` in the kernel's shape, float32."""
    return ops.cast(adapter.base_kernel, "float32") + adapter.delta_kernel()


def column_norm(adapter, kernel=None):
    """`‖W + s·A·B‖_c`: the norm over the input axes, shape `out_dims`, float32.

    Args:
        adapter: a built `LoRAAdapter`.
        kernel: the adapted kernel when the caller has it already.
    """
    kernel = adapted_kernel(adapter) if kernel is None else kernel
    squares = ops.sum(ops.square(kernel), axis=adapter.layout.in_axes)
    return ops.maximum(ops.sqrt(squares), _NORM_FLOOR)


def _magnitude(adapter):
    return ops.reshape(ops.cast(adapter.lora_magnitude, "float32"), adapter.layout.out_dims)


def _to_outputs(layout, values):
    """`values` (out_dims, in kernel order) shaped to broadcast to outputs."""
    order, shape = _output_axes_shape(layout)
    if order != sorted(order):
        values = ops.transpose(values, order)
    return ops.reshape(values, shape)


def _output_axes_shape(layout):
    """How out_dims meet the output: `(permutation, broadcast shape)`.

    The output axes of the kernel appear in the output spec, possibly in
    another order and interleaved with axes that come from the input. The
    shape covers the output's axes from the first kernel axis on; axes
    before it broadcast.

    Raises:
        ValueError: an ellipsis follows an output axis of the kernel, so the
            position of the kernel's axes in the output is not fixed.
    """
    lhs, output_spec = layout.equation.replace(" ", "").split("->")
    kernel_spec = lhs.split(",")[1]
    letters = [kernel_spec[a] for a in layout.out_axes]  # kernel order
    dims = dict(zip(letters, layout.out_dims))
    tail = output_spec[min(output_spec.index(c) for c in letters):]
    if "." in tail:
        raise ValueError(
            f"DoRA cannot place the per-output magnitude of equation "
            f"'{layout.equation}': an ellipsis follows the kernel's output "
            "axes. Use variant='lora' for this layer."
        )
    order = [letters.index(c) for c in tail if c in dims]
    return order, tuple(dims.get(c, 1) for c in tail)
