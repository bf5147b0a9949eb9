"""Layouts of LoRA factors under `keras.distribution.ModelParallel` (JAX).

A `LayoutMap` gives each kernel of the base model a sharding; the factors
of its adapter follow it. `A` `(fan_in, rank)` is sharded as the kernel's
input axes are, `B` `(rank, fan_out)` (and a DoRA magnitude `(fan_out,)`)
as its output axes are, and the rank axis is replicated: a column-parallel
kernel `(None, "model")` gets `A` `(None, None)` and `B` `(None, "model")`,
a row-parallel one `("model", None)` gets `A` `("model", None)` and `B`
`(None, None)`, as Megatron splits the two halves of an MLP. An EinsumDense
kernel's input (output) axes are flattened into `fan_in` (`fan_out`) in
order (`KernelLayout`), so the flattened axis takes the mesh axes of the
kernel axes it is made of: a query kernel `(hidden, heads, head_dim)`
sharded `(None, "model", None)` gives `B` `(None, "model")`, each device
holding the columns of its heads.

Layout patterns written for the base model may also match a factor's
path: `".*query.*"` matches `.../query/lora_a` and would give the 2-D
factor the 3-D kernel's layout (keras-team/keras#19496 was this bug for
Keras' own LoRA). The map here answers for factor paths by the rule above,
before any pattern of the base map is tried.
"""

import re

import keras

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.layers import adapter_class_for
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import layer_paths

# `lora_a`, `lora_b`, a named adapter's `lora_a_<name>`, DoRA's magnitude.
_FACTOR = re.compile(r"(?P<kind>lora_a|lora_b|lora_magnitude)(_[A-Za-z0-9_-]+)?")


def factor_axes(kernel_axes, kernel_layout):
    """The layouts of `A`, `B` and a magnitude from the kernel's layout.

    Args:
        kernel_axes: tuple. The kernel's mesh axis (or None) per kernel axis.
        kernel_layout: `KernelLayout` of the kernel.

    Returns:
        `{"lora_a": (in, None), "lora_b": (None, out), "lora_magnitude":
        (out,)}`, where `in` (`out`) is None when no input (output) axis of
        the kernel is sharded, its mesh axis when one is, and the tuple of
        mesh axes when several are.

    Raises:
        ValueError: `kernel_axes` has not one entry per kernel axis.
    """
    kernel_axes = tuple(kernel_axes)
    if len(kernel_axes) != len(kernel_layout.kernel_shape):
        raise ValueError(
            f"A kernel of shape {kernel_layout.kernel_shape} needs one layout "
            f"axis per kernel axis. Received: axes={kernel_axes}"
        )
    fan_in = _flattened([kernel_axes[a] for a in kernel_layout.in_axes])
    fan_out = _flattened([kernel_axes[a] for a in kernel_layout.out_axes])
    return {
        "lora_a": (fan_in, None),
        "lora_b": (None, fan_out),
        "lora_magnitude": (fan_out,),
    }


def _flattened(axes):
    """The mesh axes of kernel axes flattened into one, major first."""
    sharded = []
    for axis in axes:
        for name in axis if isinstance(axis, (tuple, list)) else (axis,):
            if name is not None:
                sharded.append(name)
    if not sharded:
        return None
    return sharded[0] if len(sharded) == 1 else tuple(sharded)


class LoRALayoutMap(keras.distribution.LayoutMap):
    """A `LayoutMap` that also lays out the LoRA factors of one model.

    Every key of `layout_map` is kept and answers as there, except for the
    paths of LoRA factors (`<layer path>/lora_a`, `lora_b`, `lora_a_<name>`,
    `lora_magnitude`, ...) of the layers `model` has a kernel at: those get
    `factor_axes` of their kernel's layout. Made by `lora_layout_map`.

    Args:
        layout_map: keras.distribution.LayoutMap. Layouts of the base model.
        model: keras.Model. The model adapters will be added to (or one that
            holds them); its layer paths name the factors' paths.
    """

    def __init__(self, layout_map, model):
        super().__init__(layout_map.device_mesh)
        for key in layout_map:  # a copy: later changes to it do not show
            self[key] = layout_map[key]
        self.kernels = _kernels(model)
        self.model_name = model.name

    def __getitem__(self, key):
        layer_path, _, name = key.rpartition("/")
        match = _FACTOR.fullmatch(name)
        if match is None or not layer_path:
            return super().__getitem__(key)
        if layer_path not in self.kernels:
            raise ValueError(
                f"No layout for LoRA weight '{key}': model '{self.model_name}', "
                "which `lora_layout_map` was given, has no adaptable layer at "
                f"'{layer_path}'. Build the layout map from the model you add "
                "adapters to."
            )
        kernel_path, kernel_layout = self.kernels[layer_path]
        layout = super().__getitem__(kernel_path)
        if layout is None:
            axes = (None,) * len(kernel_layout.kernel_shape)
        else:
            axes = tuple(layout.axes)
        try:
            chosen = factor_axes(axes, kernel_layout)[match["kind"]]
        except ValueError as error:
            raise ValueError(f"Kernel '{kernel_path}': {error}") from None
        return keras.distribution.TensorLayout(chosen, self.device_mesh)


def lora_layout_map(layout_map, model):
    """`layout_map` plus the layouts of the LoRA factors of `model`'s layers.

    For `keras.distribution.ModelParallel` (JAX backend): pass the result as
    its `layout_map`, and call `klr.add_adapters` (or `klr.load_adapters`)
    inside that distribution's scope. Each factor is sharded along its
    kernel's sharding (see this module's docstring), whatever patterns of
    `layout_map` also match its path.

    Args:
        layout_map: keras.distribution.LayoutMap. The layouts of the base
            model's weights (kernels, embeddings, ...).
        model: keras.Model. The base model adapters will be added to.

    Returns:
        A `LoRALayoutMap` (a `keras.distribution.LayoutMap`).

    Raises:
        TypeError: `layout_map` is not a LayoutMap.

    Example:
    ```python
    mesh = keras.distribution.DeviceMesh((2, 2), ["batch", "model"])
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*(query|key|value)/kernel"] = (None, "model", None)
    layout_map[".*attention_output/kernel"] = ("model", None, None)
    layout_map[".*intermediate_dense/kernel"] = (None, "model")
    layout_map[".*output_dense/kernel"] = ("model", None)
    distribution = keras.distribution.ModelParallel(
        layout_map=klr.distribution.lora_layout_map(layout_map, base),
        batch_dim_name="batch")
    with distribution.scope():
        model = klr.add_adapters(base, targets="all-linear")
    ```
    """
    if not isinstance(layout_map, keras.distribution.LayoutMap):
        raise TypeError(
            "lora_layout_map expected a keras.distribution.LayoutMap. "
            f"Received: layout_map={layout_map!r:.80}"
        )
    checks.check_model(model, "lora_layout_map")
    return LoRALayoutMap(layout_map, model)


def _kernels(model):
    """`{layer path: (kernel variable path, KernelLayout)}` of `model`."""
    found = {}
    for path, layer in layer_paths.layer_paths(model).items():
        if isinstance(layer, LoRAAdapter):
            if layer.layer.quantization_mode is not None:
                raise NotImplementedError(
                    f"lora_layout_map does not yet lay out a quantized base: "
                    f"layer '{path}' holds its kernel as "
                    f"'{layer.layer.quantization_mode}' (base_quantization). "
                    "Distribute a model adapted with base_quantization=None."
                )
            found[path] = (layer.base_kernel.path, layer.layout)
            continue
        adapter_class = adapter_class_for(layer)
        if adapter_class is None or not layer.built:
            continue
        try:
            kernel_layout = adapter_class.layout_of(layer)
        except ValueError:
            continue  # a kernel no adapter can take (a batched einsum)
        kernel = keras_compat.kernel_variable(layer, adapter_class.kernel_name)
        found[path] = (kernel.path, kernel_layout)
    return found
