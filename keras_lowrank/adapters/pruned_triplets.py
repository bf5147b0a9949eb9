"""`drop_pruned_triplets`: AdaLoRA adapters holding only their surviving triplets.

An AdaLoRA adapter of rank `r` whose mask keeps `k` triplets computes
`s·P[:, kept]·diag(Λ[kept])·Q[kept, :]`; the rewritten adapter has rank `k`
and exactly those slices (mask all ones, `ranknum` unchanged, so the scale
`alpha / ranknum` stays). An adapter with no surviving triplet adds nothing:
its layer goes back to the wrapped one. Adapter files and PEFT folders are
written from the rewritten model, so they hold no pruned triplet.
"""

import numpy as np
from keras import ops

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.layers.adalora import AdaLoRAVariant
from keras_lowrank.surgery import model_state
from keras_lowrank.surgery import rewriting


def drop_pruned_triplets(model):
    """`model` itself when no AdaLoRA adapter has a pruned triplet, else a
    new model whose AdaLoRA adapters keep their surviving triplets only.

    A layer may hold an AdaLoRA adapter beside other named adapters: those
    are kept as they are, and an AdaLoRA adapter with no surviving triplet
    leaves the layer (the layer goes back to the wrapped one when it was
    the only adapter).
    """
    kept = {}
    for path, layer in adapters(model).items():
        for name in layer.adapter_names:
            view = layer.view(name)
            if view.spec.variant != AdaLoRAVariant.name:
                continue
            mask = ops.convert_to_numpy(view.lora_mask) > 0
            if not mask.all():
                kept.setdefault(path, {})[name] = np.flatnonzero(mask)
    if not kept:
        return model

    def replace(path, layer):
        return _sliced(layer, kept[path]) if path in kept else None

    trimmed, _ = rewriting.rewrite_model(model, replace)
    model_state.set_lora_configs(trimmed, model_state.lora_configs(model))
    return trimmed


def _sliced(layer, kept):
    """A new adapter on `layer.layer` whose AdaLoRA adapters `kept`
    (`{name: indices}`) hold those triplets only (none: left out); the
    layer's other adapters are copied as they are."""
    specs = {}
    for name in layer.adapter_names:
        spec = layer.view(name).spec
        if name in kept:
            if kept[name].size == 0:
                continue
            spec = spec.replace(rank=int(kept[name].size))
        specs[name] = spec
    if not specs:
        return layer.layer
    (first, first_spec), *more = specs.items()
    new = type(layer).from_spec(
        layer.layer, first_spec, adapter_name=first, more_adapters=dict(more),
        a_initializer=layer.a_initializer, b_initializer=layer.b_initializer,
    )
    for name in specs:
        values = {k: ops.convert_to_numpy(v) for k, v in layer.adapter_weights(name).items()}
        if name in kept:
            values = _triplets(values, kept[name])
        for key, weight in new.adapter_weights(name).items():
            weight.assign(values[key])
    new.set_active([n for n in layer.active if n in specs])
    new.trainable = layer.trainable
    return new


def _triplets(values, kept):
    """An AdaLoRA adapter's weights sliced to the triplets `kept` (mask all
    ones, `ranknum` unchanged)."""
    return {
        "lora_a": values["lora_a"][:, kept],  # (fan_in, k)
        "lora_b": values["lora_b"][kept, :],  # (k, fan_out)
        "lora_e": values["lora_e"][kept],
        "lora_mask": np.ones(kept.size, values["lora_mask"].dtype),
        "lora_ranknum": values["lora_ranknum"],
    }
