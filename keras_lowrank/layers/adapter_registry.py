"""The registry of which adapter class wraps which layer class.

The first registered layer class that a layer is an instance of decides, and
a subclass sits ahead of its bases. Filled by `dispatch.register_adapter_class`.
"""

REGISTRY = []  # [(wrapped layer class, adapter class)], subclasses first


def add_entry(wrapped_class, adapter_class):
    """Registers `adapter_class` for `wrapped_class`, ahead of its bases."""
    REGISTRY[:] = [e for e in REGISTRY if e[0] is not wrapped_class]
    position = next(
        (i for i, (known, _) in enumerate(REGISTRY) if issubclass(wrapped_class, known)),
        len(REGISTRY),
    )
    REGISTRY.insert(position, (wrapped_class, adapter_class))


def adapter_class_for(layer):
    """The adapter class that wraps `layer`, or None when none does."""
    for wrapped, adapter in REGISTRY:
        if isinstance(layer, wrapped):
            return adapter
    return None


def supported_classes():
    """The names of the layer classes adapters exist for, as a string."""
    return ", ".join(wrapped.__name__ for wrapped, _ in REGISTRY)
