"""Parameter counts of a model, as PEFT's `print_trainable_parameters` has them."""

import math

import keras
import numpy as np


def parameter_counts(model):
    """`(trainable, total)` parameter counts of `model`, each weight once."""
    seen, trainable, total = set(), 0, 0
    trainable_ids = {id(w) for w in model.trainable_weights}
    for weight in model.weights:
        if id(weight) in seen:
            continue
        seen.add(id(weight))
        size = math.prod(weight.shape)
        total += size
        if id(weight) in trainable_ids:
            trainable += size
    return trainable, total


def weight_bytes(model) -> int:
    """Bytes the weights of `model` hold, each weight once.

    Each variable counts `size × itemsize` of its own dtype: an int8 kernel
    1 byte a value, an int4 kernel (Keras packs two values into one int8)
    half a byte, their float32 scales 4 bytes each. Optimizer slots are not
    counted.

    Example:
    ```python
    small = klr.add_adapters(model, rank=8, base_quantization="int4")
    klr.weight_bytes(small) / klr.weight_bytes(model)
    ```
    """
    seen, total = set(), 0
    for weight in model.weights:
        if id(weight) not in seen:
            seen.add(id(weight))
            total += math.prod(weight.shape) * _itemsize(weight.dtype)
    return total


def _itemsize(dtype):
    name = keras.backend.standardize_dtype(dtype)
    return 2 if name == "bfloat16" else np.dtype(name).itemsize


def trainable_summary(model) -> str:
    """One line: trainable and total parameters, and the trainable share.

    Example:
    ```python
    klr.trainable_summary(model)
    # 'trainable params: 74,498 || all params: 22,788,484 || trainable%: 0.3269'
    ```
    """
    trainable, total = parameter_counts(model)
    share = 100.0 * trainable / total if total else 0.0
    return (
        f"trainable params: {trainable:,} || all params: {total:,} "
        f"|| trainable%: {share:.4f}"
    )
