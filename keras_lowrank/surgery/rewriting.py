"""Rewriting a model: new copies with some of their layers replaced.

`rewrite_model(model, replace)`: copy the model (a fresh instance of its
class from its config, with its weights), then swap the chosen layers, at
any depth, for new ones. The input model is never touched. The copy still
saves to `.keras` and loads back (`rewritten_model`).
"""

import keras

from keras_lowrank._compat import keras_hub as keras_hub_compat
from keras_lowrank.surgery.layer_paths import layer_paths
from keras_lowrank.surgery.rewritten_model import is_rewritten
from keras_lowrank.surgery.rewritten_model import record
from keras_lowrank.surgery.rewritten_model import settle_class
from keras_lowrank.surgery.swapping import name_scope_of
from keras_lowrank.surgery.swapping import swap_all
from keras_lowrank.surgery.trainable_flags import apply_trainable_flags
from keras_lowrank.surgery.trainable_flags import freeze_own_weights
from keras_lowrank.surgery.trainable_flags import frozen_own_weights
from keras_lowrank.surgery.trainable_flags import trainable_flags


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
    config = keras_hub_compat.restore_dropped_config(
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
    apply_trainable_flags(fresh, trainable_flags(model))
    freeze_own_weights(fresh, frozen_own_weights(model))
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
    pairs = []
    for path, layer in list(layer_paths(fresh).items()):
        if any(path.startswith(p + "/") for p in replaced):
            continue
        with name_scope_of(path):
            new = replace(path, layer)
        if new is None or new is layer:
            continue
        pairs.append((layer, new))
        replaced.append(path)
    swap_all(fresh, pairs)
    if replaced:
        record(fresh, model).extend(replaced)
    settle_class(fresh, model)
    return fresh, replaced


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
