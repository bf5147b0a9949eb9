"""Keras layers of keras_lowrank: LoRA adapters and factorized layers."""

import keras

from keras_lowrank.layers.kernel_layout import KernelLayout
from keras_lowrank.layers.lora_adapter import LoRAAdapter
from keras_lowrank.layers.lora_dense import LoRADense
from keras_lowrank.layers.lora_einsum_dense import LoRAEinsumDense
from keras_lowrank.layers.lora_embedding import LoRAEmbedding
from keras_lowrank.layers.low_rank_dense import LowRankDense
from keras_lowrank.layers.low_rank_einsum_dense import LowRankEinsumDense

# First match wins: the order puts subclasses before their bases.
_ADAPTER_CLASSES = (
    (keras.layers.EinsumDense, LoRAEinsumDense),
    (keras.layers.Dense, LoRADense),
    (keras.layers.Embedding, LoRAEmbedding),
)


def adapter_class_for(layer):
    """The LoRA class that wraps `layer`, or None when none does."""
    for wrapped, adapter in _ADAPTER_CLASSES:
        if isinstance(layer, wrapped):
            return adapter
    return None


__all__ = [
    "KernelLayout",
    "LoRAAdapter",
    "LoRADense",
    "LoRAEinsumDense",
    "LoRAEmbedding",
    "LowRankDense",
    "LowRankEinsumDense",
    "adapter_class_for",
]
