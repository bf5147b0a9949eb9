"""Adapter files: the adapters of a model in one small safetensors file.

A file holds, keyed by layer path, `<path>/lora_a` and `<path>/lora_b` of
every adapter (and `<path>/<name>` of a variant's extra weights), and the
weights of the layers kept fully trainable (a task's head, as PEFT's
`modules_to_save`), `<path>/<weight name>`. Its metadata holds JSON: each
adapter's kind and `AdapterSpec`, the trainable layers, the `LoRAConfig`, and
the model's class. Keys are paths, never layer indices, so weights cannot land
in the wrong layer; nothing is pickled. A NaN or Inf is never written or
read: it names the tensor.

Named adapters (`add_adapters(..., adapter_name=...)`) share one file: the
adapter called "default" keeps the keys above, any other adapter `name` has
`<path>/lora_a.<name>` (PEFT's `lora_A.<name>`), its specs under
`named_adapters[name]`, and `active` lists the adapters that act. A file of
one "default" adapter is exactly what earlier versions wrote.
"""

import json
import os
from collections.abc import Mapping

import numpy as np

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.adapted_model import apply_adapters
from keras_lowrank.adapters.file_checks import check_adapters_fit
from keras_lowrank.adapters.file_checks import check_exists
from keras_lowrank.adapters.file_checks import check_finite_tensors
from keras_lowrank.adapters.file_checks import check_kept_fit
from keras_lowrank.adapters.file_checks import check_metadata_fields
from keras_lowrank.adapters.file_checks import check_no_unnamed_tensors
from keras_lowrank.adapters.file_checks import check_path_argument
from keras_lowrank.adapters.file_format import DEFAULT
from keras_lowrank.adapters.file_format import FORMAT
from keras_lowrank.adapters.file_format import tensor_key
from keras_lowrank.adapters.file_format import weight_name
from keras_lowrank.adapters.pissa import remove_principal_part
from keras_lowrank.adapters.pruned_triplets import drop_pruned_triplets
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.layers.adapter_spec import AdapterSpec
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import layer_paths
from keras_lowrank.surgery import model_state
from keras_lowrank.surgery import rewriting
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.version import __version__


def save_adapters(model, path):
    """Writes the adapters of `model` (and its trainable head) to `path`.

    The write is atomic: a temporary file in a hidden folder beside `path`,
    then a rename, so an interrupted save leaves any earlier file at `path`
    intact. Every named adapter of the model is saved. An AdaLoRA adapter
    is saved with its surviving triplets only (rank = what its mask keeps;
    `keras_lowrank.adapters.pruned_triplets`), one with none is left out.

    Args:
        model: keras.Model holding LoRA adapters (from `add_adapters`).
        path: str. The `.safetensors` file to write.

    Returns:
        The number of bytes written.

    Raises:
        ValueError: the model holds no adapter.
    """
    from safetensors.numpy import save_file

    checks.check_model(model, "save_adapters")
    check_path_argument(path, "save_adapters")
    found = adapters(model)
    if not found:
        raise ValueError(
            f"Model '{model.name}' holds no LoRA adapter to save. Add some "
            "with `klr.add_adapters` first."
        )
    model = drop_pruned_triplets(model)  # AdaLoRA: surviving triplets only
    tensors = {key: _numpy(weight) for key, weight in file_weights(model).items()}
    check_finite_tensors(tensors, f"model '{model.name}'", "Nothing was written")
    metadata = file_metadata(model)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"keras_lowrank": json.dumps(metadata)})
    return os.path.getsize(path)


def file_weights(model):
    """`{tensor key: weight}`: what an adapter file of `model` holds.

    Every adapter's factors (and a variant's extra weights) under
    `tensor_key(path, key, adapter_name)`, and every weight of the layers
    kept fully trainable under `<path>/<weight name>`. The order is the
    file's: adapters by layer path, then the kept layers.
    """
    weights = {}
    for layer_path, adapter in adapters(model).items():
        for adapter_name in adapter.adapter_names:
            for key, weight in adapter.adapter_weights(adapter_name).items():
                weights[tensor_key(layer_path, key, adapter_name)] = weight
    for layer_path, layer in _trainable_layers(model).items():
        for weight in layer.weights:
            weights[f"{layer_path}/{weight_name(weight)}"] = weight
    return weights


def file_metadata(model):
    """The JSON dict an adapter file of `model` stores as "keras_lowrank"."""
    named = {}
    found = adapters(model)
    for layer_path, adapter in found.items():
        for adapter_name in adapter.adapter_names:
            named.setdefault(adapter_name, {})[layer_path] = {
                "kind": type(adapter).__name__,
                **adapter.view(adapter_name).spec.to_dict(),
                "base_kernel_shape": list(adapter.base_kernel.shape),
            }
    configs = model_state.lora_configs(model)
    config = configs.get(DEFAULT)
    metadata = {
        "format": FORMAT,
        "keras_lowrank_version": __version__,
        "model_class": type(model).__name__,
        "adapters": named.pop(DEFAULT, {}),
        "trainable_layers": sorted(_trainable_layers(model)),
        "config": config.to_dict() if config is not None else None,
    }
    if named:
        metadata["named_adapters"] = named
        metadata["named_configs"] = {
            n: configs[n].to_dict() for n in named if n in configs
        }
    metadata["active"] = _active_names(found)
    return metadata


def read_adapter_metadata(path):
    """The JSON metadata of an adapter file, as a dict.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a safetensors file, or not one that
            `save_adapters` wrote.
    """
    from safetensors import SafetensorError
    from safetensors import safe_open

    check_path_argument(path, "read_adapter_metadata")
    check_exists(path)
    try:
        with safe_open(os.fspath(path), framework="numpy") as handle:
            raw = (handle.metadata() or {}).get("keras_lowrank")
    except SafetensorError as error:
        raise ValueError(
            f"'{path}' is not a safetensors adapter file ({error}). Give a "
            "file written by save_adapters."
        ) from error
    if raw is None:
        raise ValueError(
            f"'{path}' is a safetensors file but not a keras_lowrank adapter "
            "file (no 'keras_lowrank' metadata)."
        )
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"'{path}': its 'keras_lowrank' metadata is not valid JSON "
            f"({error}). The file is damaged; write it again with save_adapters."
        ) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else metadata
        raise ValueError(
            f"'{path}' has adapter format {found!r}; this "
            f"version of keras_lowrank reads {FORMAT!r}."
        )
    check_metadata_fields(metadata, path)
    return metadata


def load_adapters(model, path):
    """A new model: `model` with the adapters (and head) saved at `path`.

    Every path and shape is checked before anything is built; the input model
    is untouched. Predictions equal those of the model that was saved.

    `path` may also be a dict of arrays keyed as in an adapter file, such as
    the factors a trainable LiteRT artifact's `save` signature returns
    (`keras_lowrank.on_device`): `model` is then the adapted model the
    artifact was exported from, and the new model is a copy of it holding
    those values.

    Args:
        model: keras.Model. A base model of the saved model's architecture,
            without adapters (for example a fresh `from_preset`); for a
            dict, the adapted model.
        path: str. A file written by `save_adapters`; or a dict
            `{tensor key: array}` with every trainable weight of the
            adapted model's adapter file.

    Returns:
        A new model with the adapters, frozen as `add_adapters` leaves it.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: a saved layer path is missing from `model`, or a shape
            differs (the message names the layer path and both shapes).
    """
    from safetensors.numpy import load_file

    checks.check_model(model, "load_adapters")
    if isinstance(path, Mapping):
        return _with_factors(model, path)
    check_path_argument(path, "load_adapters")
    metadata = read_adapter_metadata(path)
    existing = list(adapters(model))
    if existing:
        raise ValueError(
            f"Model '{model.name}' already holds adapters at {existing}; "
            "adapter files load onto the base model they were trained on. "
            "Pass the base model (or `klr.merge_adapters(model)` to stack "
            "the file's adapters on top of merged ones)."
        )
    tensors = load_file(os.fspath(path))
    check_finite_tensors(tensors, f"adapter file '{path}'", "Nothing was loaded")
    paths = layer_paths.layer_paths(model)
    named = {DEFAULT: metadata["adapters"], **metadata.get("named_adapters", {})}
    named = {n: table for n, table in named.items() if table}
    specs = {
        adapter_name: {
            layer_path: AdapterSpec.from_dict(
                fields, source=f"'{path}', adapter '{layer_path}'"
            )
            for layer_path, fields in table.items()
        }
        for adapter_name, table in named.items()
    }
    for adapter_name, table in named.items():
        kinds = {p: fields["kind"] for p, fields in table.items()}
        check_adapters_fit(
            model, paths, specs[adapter_name], kinds, tensors, path, adapter_name
        )
    kept = metadata["trainable_layers"]
    check_kept_fit(paths, kept, tensors, path)
    check_no_unnamed_tensors(specs, kept, paths, tensors, path)

    configs = {DEFAULT: metadata.get("config"), **metadata.get("named_configs", {})}
    adapted = model
    for adapter_name, table in specs.items():
        adapted = apply_adapters(
            adapted,
            {p: spec.replace(pissa_rank=None) for p, spec in table.items()},
            keep_trainable=tuple(kept),
            config=_config(configs.get(adapter_name)),
            adapter_name=adapter_name,
        )
    new_paths = layer_paths.layer_paths(adapted)
    for adapter_name, table in specs.items():
        for layer_path, spec in table.items():
            adapter = new_paths[layer_path]
            if spec.pissa_rank:
                # Trained on a PiSSA residual kernel: rebuild it from the base.
                remove_principal_part(adapter, spec.pissa_rank)
            weights = adapter.adapter_weights(adapter_name)
            for key, weight in weights.items():
                weight.assign(_tensor(tensors, tensor_key(layer_path, key, adapter_name), weight, path))
    for layer_path in kept:
        for weight in new_paths[layer_path].weights:
            weight.assign(tensors[f"{layer_path}/{weight_name(weight)}"])
    active = metadata.get("active", [DEFAULT])
    for adapter in adapters(adapted).values():
        adapter.set_active([n for n in active if n in adapter.adapter_names])
    return adapted


def _with_factors(model, factors):
    """A copy of the adapted `model` holding `factors` (`{tensor key: array}`)."""
    if not adapters(model):
        raise ValueError(
            f"load_adapters got a dict of factors, which loads onto the adapted "
            f"model they were trained from; model '{model.name}' holds no "
            "adapter. Pass the model given to klr.export(..., "
            "on_device_training=...), or an adapter file's path.")
    trained = {k: w for k, w in file_weights(model).items() if w.trainable}
    missing = sorted(set(trained) - set(factors))
    unknown = sorted(set(factors) - set(trained))
    if missing or unknown:
        raise ValueError(
            f"load_adapters: the factors do not fit model '{model.name}': "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unknown "
            f"{unknown[:5]}{'...' if len(unknown) > 5 else ''}. Give every "
            f"trainable tensor of its adapter file ({len(trained)} keys, e.g. "
            f"{next(iter(trained))!r}).")
    tensors = {key: np.asarray(value) for key, value in factors.items()}
    check_finite_tensors(tensors, "the factors given", "Nothing was loaded")
    for key, weight in trained.items():
        if tensors[key].shape != tuple(weight.shape):
            raise ValueError(
                f"load_adapters: factor '{key}' has shape {tensors[key].shape}; "
                f"model '{model.name}' needs {tuple(weight.shape)}. Give the "
                "factors of an artifact exported from this model.")
    fresh, _ = rewriting.rewrite_model(model, lambda path, layer: None)
    model_state.set_lora_configs(fresh, model_state.lora_configs(model))
    for key, weight in file_weights(fresh).items():
        if key in tensors:
            weight.assign(tensors[key].astype(weight.dtype))
    return fresh


def _tensor(tensors, key, weight, file):
    """The file's tensor for `weight` (a variant's extra weight too), checked."""
    if key not in tensors:
        raise ValueError(
            f"The adapter file '{file}' lacks tensor '{key}'. The file is "
            "damaged or was written for another adapter variant."
        )
    got, want = tuple(tensors[key].shape), tuple(weight.shape)
    if got != want:
        raise ValueError(
            f"Shape mismatch for '{key}': the file '{file}' has {got}, the "
            f"model's layer needs {want}."
        )
    return tensors[key]


def _config(data):
    if not data:
        return None
    from keras_lowrank.adapters.config import LoRAConfig

    return LoRAConfig.from_dict(data)


def _active_names(found):
    names = []
    for adapter in found.values():
        names += [n for n in adapter.active if n not in names]
    return names


# === Checks ===


# === Helpers ===


def _trainable_layers(model):
    """Non-adapter leaf layers with trainable weights: the kept head."""
    found = {}
    for layer_path, layer in layer_paths.layer_paths(model).items():
        if isinstance(layer, LoRAAdapter) or keras_compat.has_sublayers(layer):
            continue
        if layer.trainable_weights:
            found[layer_path] = layer
    return found


def _numpy(weight):
    return np.ascontiguousarray(np.asarray(weight.numpy()))
