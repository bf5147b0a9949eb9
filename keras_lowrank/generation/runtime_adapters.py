"""Adapters swapped at run time: LoRA factors as inputs of the artifact.

With `export_generator(..., runtime_adapters=True)` the base weights are
frozen into the artifact once, and every adapted layer's factors `A`
`(fan_in, rank)` and `B` `(rank, fan_out)` become inputs of each signature
(`lora_a_<i>`, `lora_b_<i>`, in the order of `GeneratorSpec.adapters`); the
layer computes `base + s·(x·A)·B` with the scale `s` of the exported
adapter baked in. Zeros give the base model.

`write_runtime_adapter(adapted_model, artifact, path)` writes an adapter
in the form the app loads: one `.npz` of those inputs, float32, `B` scaled
by `s_adapter / s_artifact` (so a different alpha fits), a smaller rank
padded with zeros (which adds nothing). `Generator.load_adapter(path)`
(`runtime.py`, numpy only) feeds it.
"""

import os

import numpy as np

from keras_lowrank.generation.generator_spec import GeneratorSpec
from keras_lowrank.generation.generator_spec import adapter_input_names
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target

_PLAIN_LORA = "lora"


def runtime_factors(model, what="runtime_adapters=True"):
    """`[(path, layer)]` of `model`'s adapted layers, in order, each one
    plain LoRA adapter that the artifact can take as inputs.

    Raises:
        ValueError: no adapters, or a layer with a variant (DoRA, ...) or
            several named adapters, naming the layer.
    """
    from keras_lowrank.adapters.adapted_model import adapters

    layers = list(adapters(model).items())
    if not layers:
        raise ValueError(
            f"{what} needs a model with LoRA adapters (klr.add_adapters); "
            f"{type(model).__name__} has none."
        )
    for path, layer in layers:
        if layer.spec.variant != _PLAIN_LORA or layer.more_specs:
            raise ValueError(
                f"{what} takes one plain LoRA adapter per layer. Received: "
                f"layer '{path}' with variant={layer.spec.variant!r} and "
                f"adapters {list(layer.adapter_names)}"
            )
    return layers


def adapter_entries(model):
    """`GeneratorSpec.adapters` of `model`: `(path, fan_in, rank, fan_out,
    scale)` per adapted layer."""
    return tuple(
        (path, layer.layout.fan_in, layer.rank, layer.layout.fan_out,
         float(layer.scale))
        for path, layer in runtime_factors(model)
    )


def runtime_adapter_arrays(model, spec):
    """`{input name: float32 array}` of `model`'s adapters for `spec`.

    Raises:
        ValueError: `spec` takes no adapters, `model` adapts a layer the
            artifact does not, a factor of another shape, or a rank above
            the artifact's.
    """
    if not spec.adapters:
        raise ValueError(
            f"The artifact ({spec.model}) was exported without "
            "runtime_adapters=True: it takes no adapter inputs."
        )
    layers = dict(runtime_factors(model, "write_runtime_adapter"))
    slots = {entry[0]: i for i, entry in enumerate(spec.adapters)}
    unknown = sorted(set(layers) - set(slots))
    if unknown:
        raise ValueError(
            f"The adapter adapts layers the artifact takes no factors for: "
            f"{unknown}. The artifact's layers: {list(slots)}"
        )
    arrays = {}
    for i, (path, fan_in, rank, fan_out, scale) in enumerate(spec.adapters):
        name_a, name_b = adapter_input_names(i)
        a = np.zeros((fan_in, rank), np.float32)
        b = np.zeros((rank, fan_out), np.float32)
        layer = layers.get(path)
        if layer is not None:
            own_a = np.asarray(layer.lora_a.numpy(), np.float32)
            own_b = np.asarray(layer.lora_b.numpy(), np.float32)
            if own_a.shape[0] != fan_in or own_b.shape[1] != fan_out:
                raise ValueError(
                    f"Layer '{path}': the adapter's factors {own_a.shape} x "
                    f"{own_b.shape} do not fit the artifact's "
                    f"({fan_in}, {rank}) x ({rank}, {fan_out})."
                )
            if own_a.shape[1] > rank:
                raise ValueError(
                    f"Layer '{path}': the adapter's rank {own_a.shape[1]} is "
                    f"above the artifact's {rank}; export the base with "
                    f"rank >= {own_a.shape[1]}."
                )
            # Unused rank columns of A and rows of B stay zero: they add 0.
            a[:, :own_a.shape[1]] = own_a
            b[:own_b.shape[0]] = own_b * (float(layer.scale) / scale)
        arrays[name_a], arrays[name_b] = a, b
    return arrays


def write_npz_adapter(model, artifact, path) -> int:
    """Writes `model`'s adapters as the `.npz` an app feeds the artifact
    (`write_runtime_adapter` calls it for this project's generators).

    Args:
        model: the adapted causal LM (plain LoRA, the artifact's layers or
            a subset, rank at most the artifact's).
        artifact: the `.tflite` / `.onnx` file written with
            `runtime_adapters=True`, or its `GeneratorSpec`.
        path: str. The `.npz` file to write (atomically).

    Returns:
        int. The bytes written: what an app downloads per task.

    Raises:
        ValueError: see `runtime_adapter_arrays`; a path not ending in .npz.

    Example:
    ```python
    export_generator(adapted, "base.tflite", "tflite", runtime_adapters=True)
    write_npz_adapter(other_adapted, "base.tflite", "task_b.npz")
    generator = load_generator("base.tflite")
    generator.load_adapter("task_b.npz")
    ```
    """
    path = os.fspath(path)
    if not path.endswith(".npz"):
        raise ValueError(f"`path` must end in .npz. Received: path={path!r}")
    check_target(path)
    spec = artifact
    if not isinstance(artifact, GeneratorSpec):
        from keras_lowrank.generation.runtime import load_generator

        spec = load_generator(artifact).spec
    arrays = runtime_adapter_arrays(model, spec)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as file:
            np.savez(file, **arrays)
    return os.path.getsize(path)
