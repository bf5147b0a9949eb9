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

import numpy as np

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.adapted_model import apply_adapters
from keras_lowrank.adapters.pissa import remove_principal_part
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.layers.adapter_spec import AdapterSpec
from keras_lowrank.layers.variants import get_variant
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import layer_paths
from keras_lowrank.surgery import model_state
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.version import __version__

FORMAT = "keras_lowrank.adapters/1"
DEFAULT = "default"


def save_adapters(model, path):
    """Writes the adapters of `model` (and its trainable head) to `path`.

    The write is atomic: a temporary file in a hidden folder beside `path`,
    then a rename, so an interrupted save leaves any earlier file at `path`
    intact. Every named adapter of the model is saved.

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
    _check_path_argument(path, "save_adapters")
    found = adapters(model)
    if not found:
        raise ValueError(
            f"Model '{model.name}' holds no LoRA adapter to save. Add some "
            "with `klr.add_adapters` first."
        )
    tensors, named = {}, {}
    for layer_path, adapter in found.items():
        for adapter_name in adapter.adapter_names:
            for key, weight in adapter.adapter_weights(adapter_name).items():
                tensors[_key(layer_path, key, adapter_name)] = _numpy(weight)
            named.setdefault(adapter_name, {})[layer_path] = {
                "kind": type(adapter).__name__,
                **adapter.view(adapter_name).spec.to_dict(),
                "base_kernel_shape": list(adapter.base_kernel.shape),
            }
    kept = _trainable_layers(model)
    for layer_path, layer in kept.items():
        for weight in layer.weights:
            tensors[f"{layer_path}/{_weight_name(weight)}"] = _numpy(weight)
    _check_finite_tensors(tensors, f"model '{model.name}'", "Nothing was written")
    configs = model_state.lora_configs(model)
    config = configs.get(DEFAULT)
    metadata = {
        "format": FORMAT,
        "keras_lowrank_version": __version__,
        "model_class": type(model).__name__,
        "adapters": named.pop(DEFAULT, {}),
        "trainable_layers": sorted(kept),
        "config": config.to_dict() if config is not None else None,
    }
    if named:
        metadata["named_adapters"] = named
        metadata["named_configs"] = {
            n: configs[n].to_dict() for n in named if n in configs
        }
    metadata["active"] = _active_names(found)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"keras_lowrank": json.dumps(metadata)})
    return os.path.getsize(path)


def read_adapter_metadata(path):
    """The JSON metadata of an adapter file, as a dict.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not a safetensors file, or not one that
            `save_adapters` wrote.
    """
    from safetensors import SafetensorError
    from safetensors import safe_open

    _check_path_argument(path, "read_adapter_metadata")
    _check_exists(path)
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
    _check_metadata_fields(metadata, path)
    return metadata


def load_adapters(model, path):
    """A new model: `model` with the adapters (and head) saved at `path`.

    Every path and shape is checked before anything is built; the input model
    is untouched. Predictions equal those of the model that was saved.

    Args:
        model: keras.Model. A base model of the saved model's architecture,
            without adapters (for example a fresh `from_preset`).
        path: str. A file written by `save_adapters`.

    Returns:
        A new model with the adapters, frozen as `add_adapters` leaves it.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: a saved layer path is missing from `model`, or a shape
            differs (the message names the layer path and both shapes).
    """
    from safetensors.numpy import load_file

    checks.check_model(model, "load_adapters")
    _check_path_argument(path, "load_adapters")
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
    _check_finite_tensors(tensors, f"adapter file '{path}'", "Nothing was loaded")
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
        _check_adapters_fit(
            model, paths, specs[adapter_name], kinds, tensors, path, adapter_name
        )
    kept = metadata["trainable_layers"]
    _check_kept_fit(paths, kept, tensors, path)
    _check_no_unnamed_tensors(specs, kept, paths, tensors, path)

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
                weight.assign(_tensor(tensors, _key(layer_path, key, adapter_name), weight, path))
    for layer_path in kept:
        for weight in new_paths[layer_path].weights:
            weight.assign(tensors[f"{layer_path}/{_weight_name(weight)}"])
    active = metadata.get("active", [DEFAULT])
    for adapter in adapters(adapted).values():
        adapter.set_active([n for n in active if n in adapter.adapter_names])
    return adapted


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


def _key(layer_path, weight_name, adapter_name):
    """`<path>/lora_a` for the default adapter, `<path>/lora_a.<name>` else."""
    suffix = "" if adapter_name == DEFAULT else f".{adapter_name}"
    return f"{layer_path}/{weight_name}{suffix}"


def _active_names(found):
    names = []
    for adapter in found.values():
        names += [n for n in adapter.active if n not in names]
    return names


# === Checks ===


def _check_adapters_fit(model, paths, specs, kinds, tensors, file, adapter_name=None):
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
            key = _key(layer_path, name, adapter_name or DEFAULT)
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


def _check_kept_fit(paths, kept, tensors, file):
    for layer_path in kept:
        layer = paths.get(layer_path)
        if layer is None:
            raise ValueError(
                f"The adapter file has weights for trainable layer "
                f"'{layer_path}', which the model does not have."
            )
        for weight in layer.weights:
            key = f"{layer_path}/{_weight_name(weight)}"
            if key not in tensors:
                raise ValueError(
                    f"The adapter file lacks weight '{key}' ('{file}')."
                )
            got, want = tuple(tensors[key].shape), tuple(weight.shape)
            if got != want:
                raise ValueError(
                    f"Shape mismatch at layer '{layer_path}' "
                    f"({_weight_name(weight)}): the file has {got}, the "
                    f"model has {want}."
                )


def _check_no_unnamed_tensors(specs, kept, paths, tensors, file):
    """Every tensor of the file is one its metadata names: none is dropped."""
    named = {
        _key(layer_path, weight_name, adapter_name)
        for adapter_name, table in specs.items()
        for layer_path, spec in table.items()
        for weight_name in ("lora_a", "lora_b", *get_variant(spec.variant).extra_weight_names)
    }
    named |= {f"{p}/{_weight_name(w)}" for p in kept for w in paths[p].weights}
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


def _check_metadata_fields(metadata, path):
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


def _check_finite_tensors(tensors, where, outcome):
    for key, value in tensors.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise ValueError(
                f"{where}: tensor '{key}' holds {bad} NaN or Inf value(s) "
                f"of {value.size}. {outcome}; adapters with non-finite "
                "weights would make every output NaN."
            )


def _check_path_argument(path, function):
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(
            f"{function} expected the path of a .safetensors file. "
            f"Received: path={path!r}"
        )


def layer_kernel_shape(layer, adapter_class):
    return getattr(layer, adapter_class.kernel_name).shape


def _check_exists(path):
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(
            f"No adapter file at '{path}'. Write one with "
            "`klr.save_adapters(model, path)`."
        )


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


def _weight_name(weight):
    return weight.path.rsplit("/", 1)[-1]


def _numpy(weight):
    return np.ascontiguousarray(np.asarray(weight.numpy()))
