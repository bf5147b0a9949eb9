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

    Raises:
        NotImplementedError: a layer holds an AdaLoRA adapter beside other
            named adapters.
    """
    kept = {}
    for path, layer in adapters(model).items():
        variants = [layer.view(n).spec.variant for n in layer.adapter_names]
        if AdaLoRAVariant.name not in variants:
            continue
        if len(variants) > 1:
            raise NotImplementedError(
                f"Layer '{path}': an AdaLoRA adapter beside other named adapters "
                f"({list(layer.adapter_names)}) is not yet supported in files."
            )
        mask = ops.convert_to_numpy(layer.lora_mask) > 0
        if not mask.all():
            kept[path] = np.flatnonzero(mask)
    if not kept:
        return model

    def replace(path, layer):
        if path not in kept:
            return None
        if kept[path].size == 0:
            return layer.layer
        return _sliced(layer, kept[path])

    trimmed, _ = rewriting.rewrite_model(model, replace)
    model_state.set_lora_configs(trimmed, model_state.lora_configs(model))
    return trimmed


def _sliced(layer, kept):
    """A new adapter on `layer.layer` with the triplets `kept` of `layer`."""
    new = type(layer).from_spec(
        layer.layer, layer.spec.replace(rank=int(kept.size)),
        adapter_name=layer.adapter_name,
    )
    weights = layer.adapter_weights(layer.adapter_name)
    values = {k: ops.convert_to_numpy(v) for k, v in weights.items()}
    sliced = {
        "lora_a": values["lora_a"][:, kept],  # (fan_in, k)
        "lora_b": values["lora_b"][kept, :],  # (k, fan_out)
        "lora_e": values["lora_e"][kept],
        "lora_mask": np.ones(kept.size, values["lora_mask"].dtype),
        "lora_ranknum": values["lora_ranknum"],
    }
    for key, weight in new.adapter_weights(new.adapter_name).items():
        weight.assign(sliced[key])
    new.trainable = layer.trainable
    return new
