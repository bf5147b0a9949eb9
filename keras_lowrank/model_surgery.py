"""Rewriting a model: new copies with some of their layers replaced.

Every model operation of keras_lowrank (`add_adapters`, `load_adapters`,
`merge_adapters`, `compress`, `shrink_adapters`) is one call to
`rewrite_model(model, replace)`: copy the model (a fresh instance of its class
from its config, with its weights), then swap the chosen layers, at any depth,
for new ones. The input model is never touched.

A swapped layer can sit anywhere: an attribute of a keras-hub transformer
block, an item of `backbone.transformer_layers`, an operation of a Functional
graph. `_swap` updates every reference the copy holds to it.

The copy must still save to `.keras` and load back. The configs of keras-hub
models (hyperparameters) and of nested layers (which build their sublayers
themselves) cannot describe the swapped layers, so a rewritten model records
them: its class becomes a subclass of the input's class (so `isinstance`,
`generate()` and the preprocessor keep working) whose config is the original
model's config plus `{layer path: serialized new layer}`. Loading rebuilds the
original, swaps the same layers back in, and Keras then restores the weights.
When no keras_lowrank layer is left (after `merge_adapters`), the model gets its
original class back, and its config is plain Keras / keras-hub again.
"""

import contextlib

import keras
import numpy as np

from keras_lowrank import _compat

_REGISTERED_NAME = "keras_lowrank>RewrittenModel"
_REWRITTEN_CLASSES = {}


# === Paths ===


def layer_paths(model):
    """`{path: layer}` for every layer nested in `model`, depth first.

    The layers of keras_lowrank (adapters, factorized layers) are leaves: the
    layer an adapter wraps is reached through it, not listed.

    Paths are those Keras gives layers built the usual way
    (`transformer_layer_3/self_attention_layer/query`): a layer's path is its
    parent's path plus its name, and the layers of a model (a backbone inside
    a task, too) start at the top, since a model builds its layers itself.
    Where that would give two layers one path (two nested models that each
    hold a `proj`), those layers get the names of the models around them
    (`tower_a/proj`, `tower_b/proj`), so that every layer has a path of its
    own. A layer reached twice (a shared layer) keeps its first path.

    Raises:
        ValueError: two different layers still share a path (two sibling
            layers with one name inside a custom layer); the message names
            the path and how to fix it.
    """
    # A keras-hub task's preprocessor is tracked but is not part of the model.
    preprocessor = getattr(model, "preprocessor", None)
    found = []  # (short path, full path, layer), depth first
    seen = set()

    def visit(layer, short, full):
        for child in _sublayers(layer):
            if isinstance(child, keras.layers.InputLayer) or child is preprocessor:
                continue
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_short = _join(short, child.name)
            child_full = _join(full, child.name)
            found.append((child_short, child_full, child))
            if _is_ours(child):
                continue  # an adapter or factorized layer is one unit
            is_model = isinstance(child, keras.Model)
            visit(child, "" if is_model else child_short, child_full)

    visit(model, "", "")
    owners = {}
    for short, _, layer in found:
        owners.setdefault(short, []).append(layer)
    paths = {}
    for short, full, layer in found:
        path = short if len(owners[short]) == 1 else full
        if path in paths:
            raise ValueError(
                f"Model '{model.name}' has two layers at path '{path}' (a "
                f"{type(paths[path]).__name__} and a {type(layer).__name__}): "
                "sibling layers with one name, which Keras also cannot tell "
                "apart in weight paths. Give them distinct names."
            )
        paths[path] = layer
    return paths


def _join(prefix, name):
    return name if not prefix else f"{prefix}/{name}"


def _sublayers(layer):
    return _compat.sublayers(layer)


# === Copy and rewrite ===


def check_model(model, function):
    """Raises unless `model` is a built keras.Model that can be copied.

    Args:
        model: what the user passed.
        function: str. The public function's name, for the message.
    """
    if not isinstance(model, keras.Model):
        name = getattr(model, "name", None)
        shown = f"{type(model).__name__} '{name}'" if isinstance(name, str) else (
            f"{type(model).__name__} {model!r:.60}"
        )
        raise TypeError(
            f"{function} expected a keras.Model (Functional, Sequential, or a "
            f"keras-hub Backbone or Task). Received: {shown}. To adapt one "
            "layer, wrap it directly (klr.LoRADense(layer), ...)."
        )
    if not model.built:
        raise ValueError(
            f"{function}: model '{model.name}' is not built, so its layers "
            "have no weights yet. Call it on data or `model.build(shape)` first."
        )
    for layer in _compat.flatten_layers(model, include_self=False):
        if getattr(layer, "lora_enabled", False):
            raise ValueError(
                f"{function}: layer '{layer.name}' of model '{model.name}' has "
                "Keras' own LoRA enabled (`enable_lora`), which keras_lowrank "
                "cannot copy or combine with its adapters. Use one or the "
                "other: start from the model before `enable_lora`."
            )


def check_finite_weights(model, function):
    """Raises when a weight of `model` holds NaN or Inf, naming its path.

    Such a model gives NaN outputs; every operation that would carry the
    values on (adapting, merging, saving) stops here instead.
    """
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).sum())
            raise ValueError(
                f"{function}: weight '{variable.path}' of model '{model.name}' "
                f"holds {bad} NaN or Inf value(s) of {value.size}; every "
                "output through it would be NaN. Nothing was changed. Reload "
                "the weights (a diverged training run leaves such values)."
            )


def copy_model(model):
    """A new instance of `model`'s class with equal config, weights and flags.

    A keras-hub task's preprocessor holds no weights and is shared, not
    copied (its tokenizer's vocabulary lives in assets, not in its config);
    a task whose preprocessor was set to None gets a copy without one.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected a keras.Model (Functional, Sequential, or a keras-hub "
            f"Backbone or Task). Received: {type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built: call it on data or build it "
            "first, so that its layers have weights to copy."
        )
    config = _compat.restore_dropped_config(
        model, keras.saving.serialize_keras_object(model))
    config.pop("compile_config", None)
    inner = config["config"]
    if is_rewritten(model):
        inner["base"] = {**inner["base"], "config": dict(inner["base"]["config"])}
        inner = inner["base"]["config"]
    if "preprocessor" in inner:
        # The copy gets the model's preprocessor as it is now: the same
        # object, or none when it was detached. A rebuilt one would have no
        # vocabulary, and the recorded config may predate the detaching.
        inner["preprocessor"] = getattr(model, "preprocessor", None)
    fresh = keras.saving.deserialize_keras_object(config)
    _copy_weights(model, fresh)
    _apply_trainable_flags(fresh, _trainable_flags(model))
    _freeze_own_weights(fresh, _frozen_own_weights(model))
    return fresh


def rewrite_model(model, replace):
    """A copy of `model` where `replace(path, layer)` swaps layers.

    Args:
        model: keras.Model. Left untouched.
        replace: callable `(path, layer) -> new layer or None`, called once
            per nested layer of the copy, parents before children. It receives
            the copy's layer (free to wrap), never the input's. The layers
            inside a replaced layer are not visited.

    Returns:
        `(new_model, replaced_paths)`.
    """
    fresh = copy_model(model)
    replaced = []
    skip_below = []
    for path, layer in list(layer_paths(fresh).items()):
        if any(path.startswith(p + "/") for p in skip_below):
            continue
        with _name_scope_of(path):
            new = replace(path, layer)
        if new is None or new is layer:
            continue
        _swap(fresh, layer, new)
        _record(fresh, model).append(path)
        replaced.append(path)
        skip_below.append(path)
    _settle_class(fresh, model)
    return fresh, replaced


# === Swapping one layer for another ===


def _swap(root, old, new):
    """Points every reference that objects in `root` hold to `old` at `new`."""
    _compat.move_nodes(old, new)
    for owner in _all_layers(root):
        _swap_in_attributes(owner, old, new)
        if _compat.is_graph(owner):
            _compat.replace_in_graph(owner, old, new)


def _all_layers(root):
    seen, stack, found = set(), [root], []
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        found.append(layer)
        stack.extend(_sublayers(layer))
        functional = _compat.sequential_graph(layer)
        if functional is not None:
            stack.append(functional)
    return found


def _swap_in_attributes(owner, old, new):
    with _compat.unlocked_tracker(owner):
        for name, value in list(vars(owner).items()):
            if value is old:
                setattr(owner, name, new)
            elif isinstance(value, list) and name != "_layers":
                _swap_in_list(value, old, new)
            elif isinstance(value, dict):
                for key, item in list(value.items()):
                    if item is old:
                        value[key] = new
    layers = _compat.sublayers(owner)
    if any(item is old for item in layers):
        # Keep the old layer's position: weight order follows `_layers`.
        position = next(i for i, item in enumerate(layers) if item is old)
        kept = [item for item in layers if item is not old and item is not new]
        kept.insert(min(position, len(kept)), new)
        _compat.set_sublayers(owner, kept)


def _swap_in_list(items, old, new):
    for i, item in enumerate(list(items)):
        if item is old:
            items[i] = new


@contextlib.contextmanager
def _name_scope_of(path):
    """Builds new layers under their parent's path, as Keras would have."""
    with contextlib.ExitStack() as stack:
        for part in path.split("/")[:-1]:
            stack.enter_context(keras.name_scope(part))
        yield


# === Weights and flags ===


def _copy_weights(source, target):
    values = source.get_weights()
    shapes = [tuple(w.shape) for w in target.weights]
    if len(values) != len(shapes) or any(
        tuple(v.shape) != s for v, s in zip(values, shapes)
    ):
        raise ValueError(
            f"Could not copy model '{source.name}': a rebuild from its config "
            f"has {len(shapes)} weights, the model {len(values)}. Models whose "
            "config does not describe all their layers cannot be copied."
        )
    target.set_weights(values)


def set_trainable(root, value):
    """Sets `trainable` on `root` and every layer and weight below it.

    Not `root.trainable = value`: TensorFlow's tracking skips assigning an
    attribute the value it already has, so a `True` would not reach the
    frozen layers below a trainable one.
    """
    for layer in _compat.flatten_layers(root, include_self=True):
        type(layer).trainable.fset(layer, value)


def _trainable_flags(model):
    return {path: layer.trainable for path, layer in layer_paths(model).items()}


def _apply_trainable_flags(model, flags):
    by_depth = sorted(flags.items(), key=lambda item: item[0].count("/"))
    current = layer_paths(model)
    for path, trainable in by_depth:
        layer = current.get(path)
        if layer is not None and layer.trainable != trainable:
            layer.trainable = trainable


def _frozen_own_weights(model):
    """`{path: [index]}`: frozen own weights of trainable containers.

    A container (a layer with sublayers) whose own weight is frozen while
    the container stays trainable, as `add_adapters` leaves a ViT's class
    token. Indices are into the layer's own trainable-variable list.
    """
    found = {}
    for path, layer in layer_paths(model).items():
        if not _compat.has_sublayers(layer) or not layer.trainable:
            continue
        own = _compat.own_trainable_weights(layer)
        frozen = [i for i, v in enumerate(own) if not v.trainable]
        if frozen:
            found[path] = frozen
    return found


def _freeze_own_weights(model, frozen):
    current = layer_paths(model)
    for path, indices in frozen.items():
        layer = current.get(path)
        if layer is None:
            continue
        own = _compat.own_trainable_weights(layer)
        for i in indices:
            own[i].trainable = False


# === The record that makes rewritten models serializable ===


def _record(fresh, original):
    """The list of replaced paths of `fresh`, started from `original`'s."""
    if "_klr_replaced" not in vars(fresh):
        inherited = list(getattr(original, "_klr_replaced", []))
        base = getattr(original, "_klr_base_config", None)
        if base is None:
            base = keras.saving.serialize_keras_object(original)
            base.pop("compile_config", None)
        object.__setattr__(fresh, "_klr_replaced", inherited)
        object.__setattr__(fresh, "_klr_base_config", base)
    return fresh._klr_replaced


def _settle_class(fresh, original):
    """Gives `fresh` the rewritten class while keras_lowrank layers remain."""
    paths = layer_paths(fresh)
    replaced = [
        p for p in getattr(fresh, "_klr_replaced", []) if _is_ours(paths.get(p))
    ]
    base_class = _base_class(type(original))
    if replaced:
        object.__setattr__(fresh, "_klr_replaced", replaced)
        fresh.__class__ = _rewritten_class(base_class)
    else:
        vars(fresh).pop("_klr_replaced", None)
        vars(fresh).pop("_klr_base_config", None)
        fresh.__class__ = base_class


def _is_ours(layer):
    return layer is not None and type(layer).__module__.startswith("keras_lowrank.")


def _base_class(cls):
    return getattr(cls, "_klr_base_class", cls)


def is_rewritten(model):
    return "_klr_base_class" in vars(type(model))


def _rewritten_class(base_class):
    if base_class not in _REWRITTEN_CLASSES:

        class Rewritten(base_class):
            _klr_base_class = base_class

            def get_config(self):
                paths = layer_paths(self)
                return {
                    "base": self._klr_base_config,
                    "replaced": {
                        p: keras.saving.serialize_keras_object(paths[p])
                        for p in self._klr_replaced
                    },
                    "frozen": [p for p, l in paths.items() if not l.trainable],
                    "frozen_own_weights": _frozen_own_weights(self),
                }

            from_config = classmethod(lambda cls, config: _from_config(config))

        Rewritten.__name__ = Rewritten.__qualname__ = base_class.__name__
        Rewritten.__module__ = __name__
        _compat.register_serializable_name(Rewritten, _REGISTERED_NAME)
        _REWRITTEN_CLASSES[base_class] = Rewritten
    return _REWRITTEN_CLASSES[base_class]


class _RewrittenModelLoader:
    """What `keras.models.load_model` finds under the registered name."""

    @classmethod
    def from_config(cls, config):
        return _from_config(config)


def _copy_containers(config):
    """`config` with its dicts and lists copied and any other value shared.

    A copy of a task's config may hold its live preprocessor (see
    `copy_model`); deep-copying that would pickle it through a `.keras`
    round trip, which a tokenizer without a vocabulary file cannot survive.
    """
    if isinstance(config, dict):
        return {key: _copy_containers(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return type(config)(_copy_containers(value) for value in config)
    return config


def _from_config(config):
    base = _copy_containers(config["base"])
    # Keras' `Functional.from_config` pops "layers", "input_layers", ...
    # out of the config it is given: it gets a copy, the record stays whole.
    model = keras.saving.deserialize_keras_object(_copy_containers(base))
    paths = layer_paths(model)
    object.__setattr__(model, "_klr_replaced", [])
    object.__setattr__(model, "_klr_base_config", base)
    for path, layer_config in config["replaced"].items():
        if path not in paths:
            raise ValueError(
                f"The saved model replaces layer '{path}', which its base "
                "model does not have."
            )
        with _name_scope_of(path):
            new = keras.saving.deserialize_keras_object(layer_config)
        _swap(model, paths[path], new)
        model._klr_replaced.append(path)
    frozen = set(config.get("frozen", []))
    flags = {p: p not in frozen for p in layer_paths(model)}
    _apply_trainable_flags(model, flags)
    _freeze_own_weights(model, config.get("frozen_own_weights", {}))
    _settle_class(model, model)
    return model


keras.saving.get_custom_objects()[_REGISTERED_NAME] = _RewrittenModelLoader
