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
    swap_all(root, [(old, new)])


def swap_all(root, pairs):
    """`swap` for each `(old, new)` of `pairs`, in one walk of `root`.

    The layers of `root` are listed once, before any swap (a new layer is
    not walked: its own reference to the layer it wraps stays), and each
    attribute is looked up in a map of the old layers: one pass instead of
    one per swap (SmolLM2's 210 adapters made 118,125 attribute walks, most
    of `add_adapters`' time).
    """
    replacing = {id(old): new for old, new in pairs}
    if not replacing:
        return
    for old, new in pairs:
        keras_compat.move_nodes(old, new)
    for owner in _all_layers(root):
        _swap_in_attributes(owner, replacing)
        if keras_compat.is_graph(owner):
            for old, new in pairs:
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


def _swap_in_attributes(owner, replacing):
    with keras_compat.unlocked_tracker(owner):
        for name, value in list(vars(owner).items()):
            if id(value) in replacing:
                setattr(owner, name, replacing[id(value)])
            elif isinstance(value, list) and not keras_compat.is_sublayer_list(owner, value):
                _swap_in_list(value, replacing)
            elif isinstance(value, dict):
                for key, item in list(value.items()):
                    if id(item) in replacing:
                        value[key] = replacing[id(item)]
    layers = keras_compat.sublayers(owner)
    swapped = {id(item) for item in layers if id(item) in replacing}
    if swapped:
        # Each new layer at its old one's position (weight order follows the
        # sublayers), not where tracking the attribute appended it.
        appended = {id(replacing[i]) for i in swapped}
        kept = [replacing.get(id(item), item) for item in layers
                if id(item) not in appended]
        keras_compat.set_sublayers(owner, kept)


def _swap_in_list(items, replacing):
    for i, item in enumerate(list(items)):
        if id(item) in replacing:
            items[i] = replacing[id(item)]
