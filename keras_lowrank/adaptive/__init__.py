"""Training-side AdaLoRA: the callback, its budget schedule and importance.

The adapters themselves are `keras_lowrank.layers.adalora`; this package
decides, while a model trains, which of their triplets survive.
"""

from keras_lowrank.adaptive.budget import budget_at
from keras_lowrank.adaptive.callback import AdaLoRACallback
from keras_lowrank.adaptive.importance import Importance
from keras_lowrank.adaptive.importance import allocate
from keras_lowrank.adaptive.ranks import adapter_ranks

__all__ = ["AdaLoRACallback", "Importance", "adapter_ranks", "allocate", "budget_at"]
