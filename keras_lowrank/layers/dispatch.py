"""Which adapter class wraps which layer: an ordered, public registry.

As PEFT's dispatchers: the first registered layer class that a layer is an
instance of decides, and a subclass registers ahead of its bases. A new
layer kind is one `LoRAAdapter` subclass plus one `register_adapter_class`.
"""

import keras

_REGISTRY = []  # [(wrapped layer class, adapter class)], subclasses first


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
    from keras_lowrank.layers.lora_adapter import LoRAAdapter

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
    entry = (wrapped_class, adapter_class)
    _REGISTRY[:] = [e for e in _REGISTRY if e[0] is not wrapped_class]
    position = next(
        (i for i, (known, _) in enumerate(_REGISTRY) if issubclass(wrapped_class, known)),
        len(_REGISTRY),
    )
    _REGISTRY.insert(position, entry)
    return adapter_class


def adapter_class_for(layer):
    """The adapter class that wraps `layer`, or None when none does."""
    for wrapped, adapter in _REGISTRY:
        if isinstance(layer, wrapped):
            return adapter
    return None


def supported_classes():
    """The names of the layer classes adapters exist for, as a string."""
    return ", ".join(wrapped.__name__ for wrapped, _ in _REGISTRY)
