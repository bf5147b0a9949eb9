"""Which layers and weights of a model are frozen, read and applied by path."""

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.surgery.layer_paths import layer_paths


def set_trainable(root, value):
    """Sets `trainable` on `root` and every layer and weight below it.

    Not `root.trainable = value`: TensorFlow's tracking skips assigning an
    attribute the value it already has, so a `True` would not reach the
    frozen layers below a trainable one.
    """
    for layer in keras_compat.flatten_layers(root, include_self=True):
        type(layer).trainable.fset(layer, value)


def trainable_flags(model):
    """`{path: layer.trainable}` for every layer of `model`."""
    return {path: layer.trainable for path, layer in layer_paths(model).items()}


def apply_trainable_flags(model, flags):
    """Sets `trainable` of each layer of `model` named in `flags`, parents first."""
    by_depth = sorted(flags.items(), key=lambda item: item[0].count("/"))
    current = layer_paths(model)
    for path, trainable in by_depth:
        layer = current.get(path)
        if layer is not None and layer.trainable != trainable:
            layer.trainable = trainable


def frozen_own_weights(model):
    """`{path: [index]}`: frozen own weights of trainable containers.

    A container (a layer with sublayers) whose own weight is frozen while
    the container stays trainable, as `add_adapters` leaves a ViT's class
    token. Indices are into the layer's own trainable-variable list.
    """
    found = {}
    for path, layer in layer_paths(model).items():
        if not keras_compat.has_sublayers(layer) or not layer.trainable:
            continue
        own = keras_compat.own_trainable_weights(layer)
        frozen = [i for i, v in enumerate(own) if not v.trainable]
        if frozen:
            found[path] = frozen
    return found


def freeze_own_weights(model, frozen):
    """Freezes the own weights `frozen_own_weights` listed, in `model`."""
    current = layer_paths(model)
    for path, indices in frozen.items():
        layer = current.get(path)
        if layer is None:
            continue
        own = keras_compat.own_trainable_weights(layer)
        for i in indices:
            own[i].trainable = False
