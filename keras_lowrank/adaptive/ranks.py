"""`adapter_ranks`: the rank each adapter of a model has now."""

import numpy as np
from keras import ops

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.layers.adalora import AdaLoRAVariant


def adapter_ranks(model, adapter_name=None) -> dict:
    """`{layer path: rank}` of a model's adapters.

    For an AdaLoRA adapter, the number of triplets its mask keeps (what
    `AdaLoRACallback` has left); for other adapters, their rank.

    Args:
        model: keras.Model holding adapters.
        adapter_name: str or None. Which named adapter; None means each
            layer's first.

    Example:
    ```python
    model.fit(data, callbacks=[klr.AdaLoRACallback()])
    klr.adapter_ranks(model)   # {"backbone/.../query": 5, ...}
    ```
    """
    ranks = {}
    for path, layer in adapters(model).items():
        name = layer.adapter_names[0] if adapter_name is None else adapter_name
        if name not in layer.adapter_names:
            continue
        view = layer.view(name)
        if view.spec.variant == AdaLoRAVariant.name:
            ranks[path] = int(np.sum(ops.convert_to_numpy(view.lora_mask) > 0))
        else:
            ranks[path] = view.spec.rank
    return ranks
