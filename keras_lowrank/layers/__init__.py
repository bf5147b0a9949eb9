"""Keras layers of keras_lowrank: LoRA adapters and factorized layers.

The seams: a layer kind is a `LoRAAdapter` subclass registered with
`register_adapter_class`; a variant is an `AdapterVariant` subclass
registered with `register_variant`.
"""

from keras_lowrank.layers.adalora import AdaLoRA
from keras_lowrank.layers.adalora import AdaLoRAVariant
from keras_lowrank.layers.dispatch import adapter_class_for
from keras_lowrank.layers.dispatch import register_adapter_class
from keras_lowrank.layers.dispatch import supported_classes
from keras_lowrank.layers.dora import DoRAVariant
from keras_lowrank.layers.lora_adapter import LoRAAdapter
from keras_lowrank.layers.lora_conv import LoRAConv
from keras_lowrank.layers.lora_conv import LoRAConv1D
from keras_lowrank.layers.lora_conv import LoRAConv2D
from keras_lowrank.layers.lora_conv import LoRAConv3D
from keras_lowrank.layers.lora_conv import LoRADepthwiseConv
from keras_lowrank.layers.lora_conv import LoRADepthwiseConv1D
from keras_lowrank.layers.lora_conv import LoRADepthwiseConv2D
from keras_lowrank.layers.lora_dense import LoRADense
from keras_lowrank.layers.lora_einsum_dense import LoRAEinsumDense
from keras_lowrank.layers.lora_embedding import LoRAEmbedding
from keras_lowrank.layers.low_rank_dense import LowRankDense
from keras_lowrank.layers.low_rank_einsum_dense import LowRankEinsumDense
from keras_lowrank.layers.variants import AdapterVariant
from keras_lowrank.layers.variants import get_variant
from keras_lowrank.layers.variants import register_variant
from keras_lowrank.svd.kernel_layout import KernelLayout

register_adapter_class(LoRADense)
register_adapter_class(LoRAEinsumDense)
register_adapter_class(LoRAEmbedding)
register_adapter_class(LoRAConv1D)
register_adapter_class(LoRAConv2D)
register_adapter_class(LoRAConv3D)
register_adapter_class(LoRADepthwiseConv1D)
register_adapter_class(LoRADepthwiseConv2D)
register_variant(DoRAVariant)
register_variant(AdaLoRAVariant)

__all__ = [
    "AdaLoRA",
    "AdaLoRAVariant",
    "AdapterVariant",
    "DoRAVariant",
    "KernelLayout",
    "LoRAAdapter",
    "LoRAConv",
    "LoRAConv1D",
    "LoRAConv2D",
    "LoRAConv3D",
    "LoRADepthwiseConv",
    "LoRADepthwiseConv1D",
    "LoRADepthwiseConv2D",
    "LoRADense",
    "LoRAEinsumDense",
    "LoRAEmbedding",
    "LowRankDense",
    "LowRankEinsumDense",
    "adapter_class_for",
    "get_variant",
    "register_adapter_class",
    "register_variant",
    "supported_classes",
]
