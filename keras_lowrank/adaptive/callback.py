"""`AdaLoRACallback`: AdaLoRA's rank allocation, step by step, in `fit`.

At `on_train_begin` it gives every AdaLoRA adapter of the model a
`TrainingState` (gradient buffers, the weight of its orthogonality term) and
makes Keras trace a new train function, so the forward pass taps the
gradients and adds the regularizer. After each optimizer step `t` it does
what PEFT's `AdaLoraModel.update_and_allocate(t)` does:

- `t < total - final`: update the importance with this step's gradients;
  mask down to `budget_at(t)` when the schedule says so;
- `t == total - final`: the final allocation, at the target budget;
- `t > total - final`: keep that allocation (re-zero the masked `Λ`).

At `on_train_end` it detaches, and the train function is dropped again: a
later `fit` without the callback traces anew and raises.

The gradients are the real ones: `keras_lowrank.layers.adalora` wraps `P`,
`Λ` and `Q` in an identity whose backward pass also writes the gradient to
a buffer (a side effect in the backward pass, which TensorFlow and torch
run; JAX does not allow it, so this callback refuses the JAX backend).
"""

import keras
import numpy as np
from keras import ops

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adaptive.budget import budget_at
from keras_lowrank.adaptive.importance import FACTORS
from keras_lowrank.adaptive.importance import Importance
from keras_lowrank.adaptive.importance import allocate
from keras_lowrank.layers.adalora import AdaLoRA
from keras_lowrank.layers.adalora import AdaLoRAVariant
from keras_lowrank.layers.adalora import TrainingState
from keras_lowrank.layers.adalora import attach_training
from keras_lowrank.layers.adalora import detach_training
from keras_lowrank.surgery import model_state


class AdaLoRACallback(keras.callbacks.Callback):
    """Trains AdaLoRA adapters: importance, budget schedule, masks.

    Args:
        adaptive: `klr.AdaLoRA` or None. The options; None reads them from
            the `LoRAConfig(adaptive=...)` the adapters were added with.

    Example:
    ```python
    config = klr.LoRAConfig(rank=12, adaptive=klr.AdaLoRA(
        target_rank=8, total_steps=300, warmup_steps=30, final_steps=60))
    model = klr.add_adapters(classifier, config)
    model.fit(data, epochs=3, steps_per_epoch=100,
              callbacks=[klr.AdaLoRACallback()])
    ```
    """

    def __init__(self, adaptive=None):
        super().__init__()
        if adaptive is not None and not isinstance(adaptive, AdaLoRA):
            raise ValueError(
                "AdaLoRACallback expected `adaptive` to be None or a "
                f"klr.AdaLoRA. Received: adaptive={adaptive!r}"
            )
        self.adaptive = adaptive
        self.views = {}
        self.importance = {}
        self.gradients = {}
        self.final_masks = None

    # === Keras hooks ===

    def on_train_begin(self, logs=None):
        if keras.backend.backend() == "jax":
            raise NotImplementedError(
                "AdaLoRACallback does not yet support the JAX backend (its "
                "gradient taps write to variables in the backward pass). Use "
                "KERAS_BACKEND=tensorflow or torch."
            )
        steps = getattr(self.model, "steps_per_execution", 1)
        if steps != 1:
            raise ValueError(
                "AdaLoRACallback updates the importance after every optimizer "
                "step, so it needs `model.compile(steps_per_execution=1)`. "
                f"Received: steps_per_execution={steps}"
            )
        self.views = _adalora_views(self.model)
        if not self.views:
            raise ValueError(
                f"AdaLoRACallback: model '{self.model.name}' holds no active "
                "AdaLoRA adapter. Add them with "
                "`klr.add_adapters(model, klr.LoRAConfig(adaptive=klr.AdaLoRA(...)))`."
            )
        self.adaptive = self.adaptive or _options(self.model)
        self.initial_budget = sum(v.spec.rank for v in self.views.values())
        self.target_budget = self.adaptive.target_rank * len(self.views)
        # PEFT's regularizer is the mean over the adapted P and Q matrices.
        coefficient = self.adaptive.orth_reg_weight / (2 * len(self.views))
        for key, view in self.views.items():
            shapes = {k: tuple(_weight(view, k).shape) for k in FACTORS}
            self.gradients[key] = {
                k: keras.Variable(np.zeros(s, "float32"), trainable=False, name=f"grad_{k}")
                for k, s in shapes.items()
            }
            self.importance.setdefault(key, Importance(shapes))
            attach_training(view, TrainingState(self.gradients[key], coefficient))
        self.model.make_train_function(force=True)

    def on_train_batch_end(self, batch, logs=None):
        self.update(int(ops.convert_to_numpy(self.model.optimizer.iterations)))

    def on_train_end(self, logs=None):
        for view in self.views.values():
            detach_training(view)
        self.model.make_train_function(force=True)

    # === One step ===

    def update(self, step):
        """What PEFT's `update_and_allocate(step)` does, after optimizer step `step`."""
        boundary = self.adaptive.total_steps - self.adaptive.final_steps
        if step < boundary:
            self._update_importance()
            budget, mask_now = budget_at(
                step, self.adaptive, self.initial_budget, self.target_budget
            )
            if mask_now:
                self.apply_masks(self.allocation(budget))
        elif step == boundary:
            self.final_masks = self.allocation(self.target_budget)
            self.apply_masks(self.final_masks)
            for importance in self.importance.values():
                importance.reset()
        elif self.final_masks is not None:
            self.apply_masks(self.final_masks)

    def _update_importance(self):
        for key, view in self.views.items():
            weights = {k: ops.convert_to_numpy(_weight(view, k)) for k in FACTORS}
            grads = {k: ops.convert_to_numpy(v) for k, v in self.gradients[key].items()}
            self.importance[key].update(
                weights, grads, self.adaptive.beta1, self.adaptive.beta2
            )

    def allocation(self, budget):
        """`{key: mask}` keeping the `budget` best triplets by current importance."""
        scores = {k: imp.triplet_scores() for k, imp in self.importance.items()}
        return allocate(scores, budget)

    def apply_masks(self, masks):
        """Sets each mask and zeroes the masked `Λ` (as PEFT's `masked_fill_`)."""
        for key, mask in masks.items():
            view = self.views[key]
            view.lora_mask.assign(mask.astype(view.lora_mask.dtype))
            values = ops.convert_to_numpy(view.lora_e) * mask
            view.lora_e.assign(values.astype(view.lora_e.dtype))


def _adalora_views(model):
    """`{(path, adapter name): view}` of the model's active AdaLoRA adapters."""
    views = {}
    for path, layer in adapters(model).items():
        for name in layer.active:
            view = layer.view(name)
            if view.spec.variant == AdaLoRAVariant.name:
                views[(path, name)] = view
    return views


def _options(model):
    found = {
        n: c.adaptive for n, c in model_state.lora_configs(model).items()
        if c.adaptive is not None
    }
    if len(found) != 1:
        raise ValueError(
            f"AdaLoRACallback: model '{model.name}' records "
            f"{'no' if not found else len(found)} AdaLoRA options "
            f"({sorted(found)}); pass them: AdaLoRACallback(adaptive=klr.AdaLoRA(...))."
        )
    return next(iter(found.values()))


def _weight(view, key):
    return {"lora_a": view.lora_a, "lora_e": view.lora_e, "lora_b": view.lora_b}[key]
