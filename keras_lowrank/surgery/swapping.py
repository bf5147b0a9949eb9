"""Swapping one layer of a model for another, wherever it is referenced.

A swapped layer can sit anywhere: an attribute of a keras-hub transformer
block, an item of `backbone.transformer_layers`, an operation of a Functional
graph. `swap` updates every reference the model holds to it.
"""

import contextlib

import keras

from keras_lowrank._compat import keras as keras_compat


def swap(root, old, new):
    """Points every reference that objects in `root` hold to `old` at `new`."""
    keras_compat.move_nodes(old, new)
    for owner in _all_layers(root):
        _swap_in_attributes(owner, old, new)
        if keras_compat.is_graph(owner):
            keras_compat.replace_in_graph(owner, old, new)


@contextlib.contextmanager
def name_scope_of(path):
    """Builds new layers under their parent's path, as Keras would have."""
    with contextlib.ExitStack() as stack:
        for part in path.split("/")[:-1]:
            stack.enter_context(keras.name_scope(part))
        yield


def _all_layers(root):
    seen, stack, found = set(), [root], []
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        found.append(layer)
        stack.extend(keras_compat.sublayers(layer))
        functional = keras_compat.sequential_graph(layer)
        if functional is not None:
            stack.append(functional)
    return found


def _swap_in_attributes(owner, old, new):
    with keras_compat.unlocked_tracker(owner):
        for name, value in list(vars(owner).items()):
            if value is old:
                setattr(owner, name, new)
            elif isinstance(value, list) and not keras_compat.is_sublayer_list(owner, value):
                _swap_in_list(value, old, new)
            elif isinstance(value, dict):
                for key, item in list(value.items()):
                    if item is old:
                        value[key] = new
    layers = keras_compat.sublayers(owner)
    if any(item is old for item in layers):
        # Keep the old layer's position: weight order follows the sublayers.
        position = next(i for i, item in enumerate(layers) if item is old)
        kept = [item for item in layers if item is not old and item is not new]
        kept.insert(min(position, len(kept)), new)
        keras_compat.set_sublayers(owner, kept)


def _swap_in_list(items, old, new):
    for i, item in enumerate(list(items)):
        if item is old:
            items[i] = new
