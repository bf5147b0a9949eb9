"""The preconditions every model operation checks first."""

import keras
import numpy as np

from keras_lowrank._compat import keras as keras_compat


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
    for layer in keras_compat.flatten_layers(model, include_self=False):
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
