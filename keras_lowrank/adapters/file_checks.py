"""The checks an adapter file passes before any weight of a model changes."""

import os

import numpy as np

from keras_lowrank.adapters.file_format import DEFAULT
from keras_lowrank.adapters.file_format import tensor_key
from keras_lowrank.adapters.file_format import weight_name
from keras_lowrank.layers.adapter_spec import AdapterSpec
from keras_lowrank.layers.variants import get_variant


def check_adapters_fit(model, paths, specs, kinds, tensors, file, adapter_name=None):
    from keras_lowrank.layers import adapter_class_for

    for layer_path, spec in specs.items():
        layer = paths.get(layer_path)
        if layer is None:
            raise ValueError(
                f"The adapter file has an adapter for layer '{layer_path}', "
                f"which model '{model.name}' does not have. Load it on a base "
                "model of the same architecture."
            )
        adapter_class = adapter_class_for(layer)
        if adapter_class is None or adapter_class.__name__ != kinds[layer_path]:
            raise ValueError(
                f"Layer '{layer_path}' is a {type(layer).__name__}; the file "
                f"has a {kinds[layer_path]} adapter for it."
            )
        layout = adapter_class.layout_of(layer)
        limit = min(layout.fan_in, layout.fan_out)
        if spec.pissa_rank and spec.pissa_rank > limit:
            raise ValueError(
                f"Layer '{layer_path}': the file's adapter was trained on a "
                f"PiSSA residual of rank {spec.pissa_rank}, more than the "
                f"layer's min(fan_in, fan_out) = {limit}."
            )
        for name, want in (
            ("lora_a", (layout.fan_in, spec.rank)),
            ("lora_b", (spec.rank, layout.fan_out)),
        ):
            key = tensor_key(layer_path, name, adapter_name or DEFAULT)
            if key not in tensors:
                raise ValueError(
                    f"The adapter file '{file}' lacks tensor '{key}' of the "
                    f"adapter on layer '{layer_path}'. The file is damaged or "
                    "was not written by save_adapters."
                )
            got = tuple(tensors[key].shape)
            if got != want:
                raise ValueError(
                    f"Shape mismatch at layer '{layer_path}' ({name}): the "
                    f"file has {got}, the model's layer needs {want} (kernel "
                    f"{tuple(layer_kernel_shape(layer, adapter_class))})."
                )


def check_kept_fit(paths, kept, tensors, file):
    for layer_path in kept:
        layer = paths.get(layer_path)
        if layer is None:
            raise ValueError(
                f"The adapter file has weights for trainable layer "
                f"'{layer_path}', which the model does not have."
            )
        for weight in layer.weights:
            key = f"{layer_path}/{weight_name(weight)}"
            if key not in tensors:
                raise ValueError(
                    f"The adapter file lacks weight '{key}' ('{file}')."
                )
            got, want = tuple(tensors[key].shape), tuple(weight.shape)
            if got != want:
                raise ValueError(
                    f"Shape mismatch at layer '{layer_path}' "
                    f"({weight_name(weight)}): the file has {got}, the "
                    f"model has {want}."
                )


def check_no_unnamed_tensors(specs, kept, paths, tensors, file):
    """Every tensor of the file is one its metadata names: none is dropped."""
    named = {
        tensor_key(layer_path, weight_name, adapter_name)
        for adapter_name, table in specs.items()
        for layer_path, spec in table.items()
        for weight_name in ("lora_a", "lora_b", *get_variant(spec.variant).extra_weight_names)
    }
    named |= {f"{p}/{weight_name(w)}" for p in kept for w in paths[p].weights}
    unnamed = sorted(set(tensors) - named)
    if unnamed:
        shown = ", ".join(repr(k) for k in unnamed[:5]) + (", ..." if len(unnamed) > 5 else "")
        raise ValueError(
            f"The adapter file '{file}' holds {len(unnamed)} tensor(s) that its "
            f"metadata does not name ({shown}); loading would silently drop "
            "them. A file holds the tensors of the adapters and trainable "
            "layers its metadata lists, and no others. Nothing was loaded. "
            "The file was edited or written by another tool: save the "
            "adapters again with `klr.save_adapters`, or remove those tensors."
        )


def check_metadata_fields(metadata, path):
    adapters_ = metadata.get("adapters")
    named = metadata.get("named_adapters", {})
    if not isinstance(adapters_, dict) or not isinstance(named, dict) or not (
        adapters_ or named
    ):
        raise ValueError(
            f"'{path}': its metadata has no 'adapters' table (received "
            f"{type(adapters_).__name__}). The file is damaged or was not "
            "written by save_adapters."
        )
    tables = [adapters_, *named.values()]
    for layer_path, fields in (i for t in tables if isinstance(t, dict) for i in t.items()):
        if not isinstance(fields, dict) or not isinstance(fields.get("kind"), str):
            raise ValueError(
                f"'{path}': the metadata of adapter '{layer_path}' has no "
                f"'kind' (received {fields!r}). The file is damaged."
            )
        AdapterSpec.from_dict(fields, source=f"'{path}', adapter '{layer_path}'")
    kept = metadata.get("trainable_layers", [])
    if not isinstance(kept, list) or not all(isinstance(p, str) for p in kept):
        raise ValueError(
            f"'{path}': its metadata's 'trainable_layers' must be a list of "
            f"layer paths. Received: {kept!r}"
        )
    metadata.setdefault("trainable_layers", kept)


def check_finite_tensors(tensors, where, outcome):
    for key, value in tensors.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise ValueError(
                f"{where}: tensor '{key}' holds {bad} NaN or Inf value(s) "
                f"of {value.size}. {outcome}; adapters with non-finite "
                "weights would make every output NaN."
            )


def check_path_argument(path, function):
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(
            f"{function} expected the path of a .safetensors file. "
            f"Received: path={path!r}"
        )


def layer_kernel_shape(layer, adapter_class):
    return getattr(layer, adapter_class.kernel_name).shape


def check_exists(path):
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(
            f"No adapter file at '{path}'. Write one with "
            "`klr.save_adapters(model, path)`."
        )
