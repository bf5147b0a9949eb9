"""The class that lets a rewritten model save to `.keras` and load back.

The configs of keras-hub models (hyperparameters) and of nested layers
(which build their sublayers themselves) cannot describe the swapped layers,
so a rewritten model records them: its class becomes a subclass of the
input's class (so `isinstance`, `generate()` and the preprocessor keep
working) whose config is the original model's config plus `{layer path:
serialized new layer}`. Loading rebuilds the original, swaps the same layers
back in, and Keras then restores the weights. When no keras_lowrank layer is
left (after `merge_adapters`), the model gets its original class back, and
its config is plain Keras / keras-hub again.
"""

import keras

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.surgery import model_state
from keras_lowrank.surgery.layer_paths import is_lowrank_layer
from keras_lowrank.surgery.layer_paths import layer_paths
from keras_lowrank.surgery.swapping import name_scope_of
from keras_lowrank.surgery.swapping import swap_all
from keras_lowrank.surgery.trainable_flags import apply_trainable_flags
from keras_lowrank.surgery.trainable_flags import freeze_own_weights
from keras_lowrank.surgery.trainable_flags import frozen_own_weights

_REGISTERED_NAME = "keras_lowrank>RewrittenModel"
_REWRITTEN_CLASSES = {}


def record(fresh, original):
    """The list of replaced paths of `fresh`, started from `original`'s."""
    if not model_state.has_record(fresh):
        base = model_state.base_config(original)
        if base is None:
            base = keras.saving.serialize_keras_object(original)
            base.pop("compile_config", None)
        model_state.set_record(fresh, list(model_state.replaced_paths(original)), base)
    return model_state.replaced_paths(fresh)


def settle_class(fresh, original):
    """Gives `fresh` the rewritten class while keras_lowrank layers remain."""
    paths = layer_paths(fresh)
    replaced = [
        p for p in model_state.replaced_paths(fresh) if _kept_in_record(paths.get(p))
    ]
    base_class = _base_class(type(original))
    if replaced:
        model_state.set_replaced_paths(fresh, replaced)
        fresh.__class__ = _rewritten_class(base_class)
    else:
        model_state.clear_record(fresh)
        fresh.__class__ = base_class


def _kept_in_record(layer):
    """A keras_lowrank layer, or a layer `add_adapters` quantized
    (`quantize_frozen="all"`): the base model's config describes neither."""
    return is_lowrank_layer(layer) or getattr(layer, "quantization_mode", None) is not None


def is_rewritten(model):
    """Whether `model`'s class is a rewritten class (keras_lowrank layers inside)."""
    return "_klr_base_class" in vars(type(model))


def from_config(config):
    """The model a rewritten model's config describes."""
    base = copy_containers(config["base"])
    # Keras' `Functional.from_config` pops "layers", "input_layers", ...
    # out of the config it is given: it gets a copy, the record stays whole.
    model = keras.saving.deserialize_keras_object(copy_containers(base))
    paths = layer_paths(model)
    model_state.set_record(model, [], base)
    pairs = []
    for path, layer_config in config["replaced"].items():
        if path not in paths:
            raise ValueError(
                f"The saved model replaces layer '{path}', which its base "
                "model does not have."
            )
        with name_scope_of(path):
            pairs.append((paths[path], keras.saving.deserialize_keras_object(layer_config)))
    swap_all(model, pairs)
    model_state.replaced_paths(model).extend(config["replaced"])
    frozen = set(config.get("frozen", []))
    flags = {p: p not in frozen for p in layer_paths(model)}
    apply_trainable_flags(model, flags)
    freeze_own_weights(model, config.get("frozen_own_weights", {}))
    settle_class(model, model)
    return model


def copy_containers(config):
    """`config` with its dicts and lists copied and any other value shared.

    A copy of a task's config may hold its live preprocessor (see
    `rewriting.copy_model`); deep-copying that would pickle it through a
    `.keras` round trip, which a tokenizer without a vocabulary file cannot
    survive.
    """
    if isinstance(config, dict):
        return {key: copy_containers(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return type(config)(copy_containers(value) for value in config)
    return config


def _base_class(cls):
    return getattr(cls, "_klr_base_class", cls)


def _rewritten_class(base_class):
    if base_class not in _REWRITTEN_CLASSES:

        class Rewritten(base_class):
            _klr_base_class = base_class

            def get_config(self):
                paths = layer_paths(self)
                return {
                    "base": model_state.base_config(self),
                    "replaced": {
                        p: keras.saving.serialize_keras_object(paths[p])
                        for p in model_state.replaced_paths(self)
                    },
                    "frozen": [p for p, l in paths.items() if not l.trainable],
                    "frozen_own_weights": frozen_own_weights(self),
                }

            from_config = classmethod(lambda cls, config: from_config(config))

        Rewritten.__name__ = Rewritten.__qualname__ = base_class.__name__
        Rewritten.__module__ = __name__
        keras_compat.register_serializable_name(Rewritten, _REGISTERED_NAME)
        _REWRITTEN_CLASSES[base_class] = Rewritten
    return _REWRITTEN_CLASSES[base_class]


class _RewrittenModelLoader:
    """What `keras.models.load_model` finds under the registered name."""

    @classmethod
    def from_config(cls, config):
        return from_config(config)


keras.saving.get_custom_objects()[_REGISTERED_NAME] = _RewrittenModelLoader
