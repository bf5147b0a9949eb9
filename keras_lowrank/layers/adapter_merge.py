"""Merging an adapter layer: a plain layer whose kernel holds the delta.

`MergeableAdapter` gives `LoRAAdapter` its `merged_kernel` and `merge`. The
variants decide the merged kernel (`W + s·A·B` for LoRA); this module turns
it into a new layer of the wrapped class, and refuses a kernel that would
not compute what the adapter computes: one with a NaN or Inf, one beyond
the range of the kernel's dtype, and one beyond the range of the dtype the
layer computes in (a `mixed_float16` policy keeps float32 kernels but
computes in float16).
"""

import numpy as np
from keras import ops

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.layers.quantized_base import float_config


class MergeableAdapter:
    """The merge of an adapter layer (mixed into `LoRAAdapter`)."""

    def merged_kernel(self, names=None):
        """The kernel of the merged layer, float32 (the variants decide).

        Args:
            names: the adapters to merge. Default: the active ones.
        """
        views = [self.view(n) for n in (self._active if names is None else names)]
        if len(views) == 1:
            return views[0].variant.merged_kernel(views[0])
        kernel = ops.cast(self.base_kernel, "float32")
        for view in views:
            if view.spec.variant != "lora":
                raise ValueError(
                    f"Layer '{self.name}': a {view.spec.variant!r} adapter "
                    "merges only alone, not together with others."
                )
            kernel = kernel + view.delta_kernel()
        return kernel

    def merge(self, names=None):
        """A new plain layer of the wrapped class with the merged kernel.

        For LoRA the kernel is `W + s·A·B` (plus the other named adapters'
        deltas when several are merged). It has the wrapped layer's config
        and name; it is trainable.

        Args:
            names: the adapters to merge. Default: the active ones.

        Returns:
            A new layer of the wrapped layer's class. This adapter is left
            untouched.

        Raises:
            FloatingPointError: the merged kernel has a NaN or Inf value, or
                does not fit the kernel's dtype (float16 overflow), or the
                dtype the layer computes in (`mixed_float16`).
        """
        layer = self.layer
        config = float_config(layer)
        config["trainable"] = True
        merged = type(layer).from_config(config)
        merged.build(built_input_shape(layer))
        kernel_var = self.base_kernel
        dtype = keras_compat.kernel_variable(merged, self.kernel_name).dtype
        kernel = ops.convert_to_numpy(self.merged_kernel(names))
        with np.errstate(over="ignore", invalid="ignore"):  # raised below
            cast = kernel.astype(dtype)
        where = f"layer '{self.name}'"
        check_finite_kernel(cast, where, dtype)
        check_fits_compute_dtype(cast, where, merged.dtype_policy)
        if layer.quantization_mode is None:
            values = [cast if v is kernel_var else v.numpy() for v in layer.weights]
        else:  # the float layer has the kernel and the quantized one's float weights
            own = {v.name: v for v in layer.weights}
            merged_kernel = keras_compat.kernel_variable(merged, self.kernel_name)
            values = [cast if v is merged_kernel else own[v.name].numpy()
                      for v in merged.weights]
        merged.set_weights(values)
        return merged


def check_finite_kernel(kernel, where, dtype):
    if np.isfinite(kernel).all():
        return
    bad = int((~np.isfinite(kernel)).sum())
    raise FloatingPointError(
        f"Merging {where} gives {bad} non-finite value(s) in its {dtype} "
        "kernel (NaN or Inf in the base kernel or the factors, or a merged "
        f"value beyond the range of {dtype}). Nothing was merged. Check the "
        "adapter's weights, or merge in float32."
    )


def check_fits_compute_dtype(kernel, where, policy):
    """Refuses a finite kernel that turns Inf in the dtype the layer computes in.

    The adapter never forms `W + s·A·B` in that dtype (it adds `s·(x·A)·B`
    to `x·W`), so its outputs can be finite where the merged layer's are not.
    """
    dtype = policy.compute_dtype
    if dtype == str(kernel.dtype):
        return
    finite = ops.convert_to_numpy(ops.isfinite(ops.cast(kernel, dtype)))
    if finite.all():
        return
    bad = int((~finite).sum())
    raise FloatingPointError(
        f"Merging {where} gives {bad} kernel value(s) beyond the range of "
        f"{dtype}, the dtype the layer computes in (dtype policy "
        f"'{policy.name}'; largest magnitude {float(np.abs(kernel).max()):.4g}): "
        "the merged layer's outputs would be Inf or NaN. The adapter never "
        "forms W + s·A·B in that dtype, so its outputs can be finite where "
        "the merged layer's are not. Nothing was merged. Merge a copy of the "
        "model built under the 'float32' policy (`keras.mixed_precision."
        "set_dtype_policy('float32')`, then `klr.load_adapters`), or keep the "
        "adapter unmerged."
    )


def built_input_shape(layer):
    """The input shape a built layer was built with, if Keras recorded it."""
    build_config = layer.get_build_config() or {}
    return build_config.get("input_shape")
