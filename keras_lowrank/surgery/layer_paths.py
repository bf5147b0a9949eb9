"""`layer_paths`: every layer nested in a model, by a path of its own."""

import keras

from keras_lowrank._compat import keras as keras_compat


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
        for child in keras_compat.sublayers(layer):
            if isinstance(child, keras.layers.InputLayer) or child is preprocessor:
                continue
            if id(child) in seen:
                continue
            seen.add(id(child))
            child_short = _join(short, child.name)
            child_full = _join(full, child.name)
            found.append((child_short, child_full, child))
            if is_lowrank_layer(child):
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


def is_lowrank_layer(layer):
    """Whether `layer` is one of keras_lowrank's (an adapter, a factorization)."""
    return layer is not None and type(layer).__module__.startswith("keras_lowrank.")


def _join(prefix, name):
    return name if not prefix else f"{prefix}/{name}"
