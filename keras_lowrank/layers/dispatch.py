"""Which adapter class wraps which layer: an ordered, public registry.

As PEFT's dispatchers: the first registered layer class that a layer is an
instance of decides, and a subclass registers ahead of its bases. A new
layer kind is one `LoRAAdapter` subclass plus one `register_adapter_class`.
"""

import keras

from keras_lowrank.layers.adapter_registry import REGISTRY
from keras_lowrank.layers.adapter_registry import adapter_class_for
from keras_lowrank.layers.adapter_registry import add_entry
from keras_lowrank.layers.adapter_registry import supported_classes
from keras_lowrank.layers.lora_adapter import LoRAAdapter

__all__ = ["REGISTRY", "adapter_class_for", "register_adapter_class", "supported_classes"]


def register_adapter_class(adapter_class, wrapped_class=None):
    """Makes `add_adapters` wrap layers of `wrapped_class` in `adapter_class`.

    Args:
        adapter_class: a `LoRAAdapter` subclass.
        wrapped_class: the layer class it wraps. Defaults to
            `adapter_class.wrapped_class`.

    Returns:
        `adapter_class`, so that this works as a class decorator.

    Raises:
        ValueError: `adapter_class` is not a `LoRAAdapter` subclass.

    Example:
    ```python
    @klr.layers.register_adapter_class
    class LoRAMyProjection(klr.layers.LoRAAdapter):
        wrapped_class = MyProjection   # a Dense-like layer with `kernel`
    ```
    """
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, LoRAAdapter)):
        raise ValueError(
            "register_adapter_class expected a subclass of LoRAAdapter. "
            f"Received: {adapter_class!r}"
        )
    wrapped_class = wrapped_class or adapter_class.wrapped_class
    if not (isinstance(wrapped_class, type) and issubclass(wrapped_class, keras.layers.Layer)):
        raise ValueError(
            f"register_adapter_class({adapter_class.__name__}) expected a "
            f"keras Layer class to wrap. Received: wrapped_class={wrapped_class!r}"
        )
    add_entry(wrapped_class, adapter_class)
    return adapter_class
