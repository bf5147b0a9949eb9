"""`load_peft_adapters`: a PEFT LoRA folder onto a keras-hub model.

Everything is checked before a layer is built: the config (`read_peft_config`
refuses what does not map), each module of the weights file (it must have a
keras-hub counterpart in the family's `ModuleTable`, be targeted by the
config, and have the shapes the model's layers need), and each
`modules_to_save` module. Then `apply_adapters` builds a new model with one
`AdapterSpec` per keras layer (derived from the config, as PEFT derives each
layer's), and the factors are assigned through `factors.from_peft`. The input
model is never touched.
"""

import re
import warnings

import numpy as np
from keras import ops

from keras_lowrank.adapters.adapted_model import apply_adapters
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.peft import adalora
from keras_lowrank.peft import factors
from keras_lowrank.peft.families import family_of
from keras_lowrank.peft.name_map import ModuleTable
from keras_lowrank.peft.peft_config import ALL_LINEAR
from keras_lowrank.peft.peft_config import WEIGHTS_FILE
from keras_lowrank.peft.peft_config import read_peft_config
from keras_lowrank.peft.peft_weights import read_peft_weights
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import layer_paths
from keras_lowrank.svd.kernel_layout import KernelLayout

DEFAULT = "default"


def load_peft_adapters(model, folder, *, adapter_name=None):
    """A new model: `model` with the PEFT LoRA adapter of `folder` on it.

    `model` is a keras-hub model converted from the HF checkpoint the adapter
    was trained on (`from_preset(hf_folder)`): a backbone (`BertBackbone`,
    `Llama3Backbone`, `GPT2Backbone`) or a task holding one
    (`BertTextClassifier`, `Llama3CausalLM`, `GPT2CausalLM`). Each PEFT
    module maps to its keras-hub layer(s) through the family's name map;
    `r`, `lora_alpha`, `rank_pattern`, `alpha_pattern`, `use_rslora`,
    `use_dora` and `lora_dropout` give each adapter's `AdapterSpec`
    (an ADALORA folder gives AdaLoRA adapters, `keras_lowrank.peft.adalora`);
    `modules_to_save` weights (a classifier head) replace the head's and it
    stays trainable. GPT-2's fused `c_attn` becomes adapters on query, key
    and value sharing `A` (exact). Outputs match PEFT's model.

    Args:
        model: keras-hub backbone or task of a mapped family (BERT, Llama,
            GPT-2). Left untouched.
        folder: str or path. A folder PEFT's `save_pretrained` wrote
            (`adapter_config.json`, `adapter_model.safetensors`).
        adapter_name: str or None. The new adapter's name; None means
            `"default"` (on a model without adapters).

    Returns:
        A new model of `model`'s class with the adapters, frozen as
        `add_adapters` leaves it (adapters and saved modules trainable).

    Raises:
        FileNotFoundError: the folder or one of its files is missing.
        ValueError: the adapter is not LoRA/DoRA/AdaLoRA, trained biases, or was
            initialized with PiSSA/OLoRA (not converted); a module has no
            keras-hub counterpart (the message names it and lists the
            mappable ones); a shape differs from the model's (module, layer
            path and both shapes); the model is not a mapped family. Nothing
            is built then.

    Example:
    ```python
    backbone = keras_hub.models.BertBackbone.from_preset(klr.presets.minilm_path())
    adapted = klr.load_peft_adapters(backbone, "my-minilm-lora")
    merged = klr.merge_adapters(adapted)
    ```
    """
    checks.check_model(model, "load_peft_adapters")
    config = read_peft_config(folder)
    weights = read_peft_weights(folder)
    family = family_of(model, "load_peft_adapters")
    table = ModuleTable(family, model)
    plan = _plan(config, weights, table)
    name = DEFAULT if adapter_name is None else adapter_name
    adapted = apply_adapters(
        model,
        plan["specs"],
        keep_trainable=tuple(f"re:{re.escape(p)}" for p in plan["full"]),
        adapter_name=adapter_name,
    )
    layers = layer_paths.layer_paths(adapted)
    for path, values in plan["factors"].items():
        targets = layers[path].adapter_weights(name)
        for key, value in values.items():
            targets[key].assign(value)
    for path, values in plan["full"].items():
        for weight, value in zip(_full_weights(layers[path]), values):
            weight.assign(value)
    return adapted


def _plan(config, weights, table):
    """Checks everything; returns specs and values per keras layer path."""
    prefix = table.prefix_of(list(weights.lora))
    file = weights.path
    for module in weights.other_lora:
        _unmappable(module, table, file, "LoRA factors of a kind (embedding) ")
    specs, values = {}, {}
    for module_name, tensors in weights.lora.items():
        module = table.find(module_name, prefix)
        if module is None:
            _unmappable(module_name, table, file, "LoRA factors ")
        if not config.targets(module_name):
            raise ValueError(
                f"'{file}' has LoRA factors of module '{module_name}', which "
                "its adapter_config.json does not target (target_modules="
                f"{config.target_modules!r}). The folder's two files do not "
                "belong together."
            )
        if config.adalora is not None and config.rank_for(module_name) == 0:
            continue  # AdaLoRA pruned every triplet: no adapter
        spec = config.spec_for(module_name)
        layouts = [_layout(table.layers[p]) for p in module.paths]
        parts = factors.from_peft(
            *_checked(module_name, module, tensors, spec, layouts, config),
            widths=[layout.fan_out for layout in layouts],
        )
        if config.adalora is not None:
            parts = adalora.from_peft(parts, tensors["lora_E"], config.adalora["init_r"])
        for path, layout, part in zip(module.paths, layouts, parts):
            limit = min(layout.fan_in, layout.fan_out)
            if spec.rank > limit:
                raise ValueError(
                    f"PEFT module '{module_name}' has rank {spec.rank}, more than "
                    f"min(fan_in, fan_out) = {limit} of keras-hub layer "
                    f"'{path}'; keras_lowrank adapters need a rank from 1 to "
                    f"{limit}."
                )
            specs[path] = spec
            values[path] = part
    _check_targets(config, table, prefix, weights)
    full = {}
    for module_name, tensors in weights.full.items():
        saved = config.modules_to_save or ()
        if not any(module_name == m or module_name.endswith(f".{m}") for m in saved):
            raise ValueError(
                f"'{file}' has weights of module '{module_name}' "
                f"({sorted(tensors)}), which is neither LoRA factors nor in "
                f"the config's modules_to_save={config.modules_to_save!r}. The "
                "folder's two files do not belong together."
            )
        module = table.find(module_name, prefix)
        if module is None or len(module.paths) != 1 or module.paths[0] in specs:
            _unmappable(module_name, table, file, "full weights (modules_to_save) ")
        path = module.paths[0]
        full[path] = _full_values(module_name, path, table.layers[path], tensors)
    if not specs:
        raise ValueError(
            f"'{file}' holds no LoRA factors (no lora_A / lora_B tensors in "
            f"{WEIGHTS_FILE}): nothing to load."
        )
    return {"specs": specs, "factors": values, "full": full}


def _checked(module_name, module, tensors, spec, layouts, config):
    fan_in = layouts[0].fan_in
    fan_out = sum(layout.fan_out for layout in layouts)
    where = (
        f"PEFT module '{module_name}' (keras-hub layer"
        f"{'s' if len(module.paths) > 1 else ''} {', '.join(module.paths)})"
    )
    expected = {
        "lora_A": (spec.rank, fan_in),
        "lora_B": (fan_out, spec.rank),
    }
    if config.use_dora:
        expected["magnitude"] = (fan_out,)
    if config.adalora is not None:
        expected["lora_E"] = (spec.rank, 1)
    for key, shape in expected.items():
        if key not in tensors:
            raise ValueError(
                f"{where}: adapter_config.json sets use_dora=true but the "
                "weights have no lora_magnitude_vector for it."
                if key == "magnitude" else
                f"{where}: the weights have no {key} (the file is damaged, or "
                "its adapter_config.json is another adapter's)."
            )
        got = tuple(tensors[key].shape)
        if got != shape:
            label = "lora_magnitude_vector" if key == "magnitude" else key
            raise ValueError(
                f"Shape mismatch at {where}: the adapter's {label} has shape "
                f"{got}, the model's layer needs {shape} (in_features={fan_in}, "
                f"out_features={fan_out}, r={spec.rank} from adapter_config."
                "json). Load the adapter on the model it was trained on."
            )
    if "magnitude" in tensors and not config.use_dora:
        raise ValueError(
            f"{where}: the weights hold a DoRA lora_magnitude_vector but "
            "adapter_config.json sets use_dora=false."
        )
    return tensors["lora_A"], tensors["lora_B"], tensors.get("magnitude")


def _check_targets(config, table, prefix, weights):
    """Warns about target_modules entries that matched nothing mapped."""
    targets = config.target_modules
    if targets is None or targets == ALL_LINEAR:
        return
    names = list(table.full_names(prefix)) + list(weights.lora)
    entries = [targets] if isinstance(targets, str) else targets
    for entry in entries:
        if isinstance(targets, str):
            hit = any(re.fullmatch(entry, n) for n in names)
        else:
            hit = any(n == entry or n.endswith(f".{entry}") for n in names)
        if not hit:
            warnings.warn(
                f"target_modules entry {entry!r} of the PEFT adapter matches no "
                f"module the model has a layer for, and the weights hold none "
                f"for it: it changes nothing. {table.describe()}",
                stacklevel=4,
            )


def _unmappable(module_name, table, file, what):
    raise ValueError(
        f"'{file}' has {what}for PEFT module '{module_name}', which has no "
        f"keras-hub counterpart in {type(table.model).__name__} "
        f"'{table.model.name}'. Mappable: {table.describe()}. Nothing was "
        "loaded."
    )


def _full_values(module_name, path, layer, tensors):
    """`modules_to_save` weights `{weight, bias}` -> the layer's kernel, bias."""
    base = layer.layer if isinstance(layer, LoRAAdapter) else layer
    layout = _layout(base)
    want = {"weight": (layout.fan_out, layout.fan_in)}
    if getattr(base, "bias", None) is not None:
        want["bias"] = (int(np.prod(base.bias.shape)),)
    if set(tensors) != set(want):
        raise ValueError(
            f"PEFT module '{module_name}' (modules_to_save, keras-hub layer "
            f"'{path}'): the adapter has weights {sorted(tensors)}, the layer "
            f"holds {sorted(want)}."
        )
    for key, shape in want.items():
        got = tuple(tensors[key].shape)
        if got != shape:
            raise ValueError(
                f"Shape mismatch at PEFT module '{module_name}' (modules_to_save,"
                f" keras-hub layer '{path}'): the adapter's {key} has shape "
                f"{got}, the model's layer needs {shape}."
            )
    kernel = ops.convert_to_numpy(
        layout.from_matrix(factors.peft_weight_to_matrix(tensors["weight"])))
    values = [kernel]
    if "bias" in want:
        values.append(tensors["bias"].reshape(tuple(base.bias.shape)))
    return values


def _full_weights(layer):
    base = layer.layer if isinstance(layer, LoRAAdapter) else layer
    weights = [base.kernel]
    if getattr(base, "bias", None) is not None:
        weights.append(base.bias)
    return weights


def _layout(layer):
    return KernelLayout.of(layer.layer if isinstance(layer, LoRAAdapter) else layer)
