"""`merge_adapters`: fold every adapter into its kernel, `W + s·A·B`."""

from keras_lowrank.adapters.named import check_adapter_names
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.layers.quantized_base import dequantized_copy
from keras_lowrank.layers.quantized_base import is_frozen_quantizable
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import layer_paths
from keras_lowrank.surgery import model_state
from keras_lowrank.surgery import rewriting
from keras_lowrank.surgery import trainable_flags


def merge_adapters(model, adapter_name=None):
    """A new model of the original architecture with the adapters merged.

    Each adapter becomes a plain layer of the class it wraps, kernel
    `W + s·A·B` (`LoRAAdapter.merge`). When no keras_lowrank layer is left the
    result is an instance of the original class (the keras-hub class where the
    input is one) whose config mentions nothing of keras_lowrank: it loads
    with plain Keras / keras-hub and `save_to_preset` works. Factorized layers
    from `klr.compress` are kept as they are. Every layer of the result is
    trainable, as in a freshly loaded model.

    Args:
        model: keras.Model. Left untouched.
        adapter_name: str or list of str. The named adapters to merge.
            Default: the active ones (see `klr.set_adapter`). The others
            are dropped.

    Returns:
        The merged model; a model without adapters is returned as it is.

    Raises:
        TypeError: `model` is not a keras.Model.
        FloatingPointError: a merged kernel would hold NaN or Inf (the
            message names the layer path); nothing is returned.

    Example:
    ```python
    merged = klr.merge_adapters(model)
    merged.save_to_preset("my_preset")  # keras-hub models
    ```
    """
    checks.check_model(model, "merge_adapters")
    checks.check_finite_weights(model, "merge_adapters")
    if not any(
        isinstance(layer, LoRAAdapter)
        for layer in layer_paths.layer_paths(model).values()
    ):
        return model

    names = None
    if adapter_name is not None:
        names = check_adapter_names(model, adapter_name, "merge_adapters")

    quantized = set(model_state.replaced_paths(model))  # by quantize_frozen="all"

    def merge(path, layer):
        if path in quantized and is_frozen_quantizable(layer) and layer.quantization_mode:
            return dequantized_copy(layer)
        if not isinstance(layer, LoRAAdapter):
            return None
        chosen = None if names is None else [n for n in names if n in layer.adapter_names]
        try:
            return layer.merge(chosen)
        except FloatingPointError as error:
            raise FloatingPointError(f"Layer '{path}': {error}") from None

    merged, _ = rewriting.rewrite_model(model, merge)
    trainable_flags.set_trainable(merged, True)
    return merged
