"""`save_peft_adapters`: a keras-hub model's adapters as a PEFT LoRA folder.

The inverse of `load_peft_adapters`: each adapted keras layer is found in the
family's `ModuleTable`, the parts of a fused HF module are joined
(`factors.to_peft`), and the config is written so that PEFT derives the
same rank and scale for every module (`r` and `lora_alpha` the most common,
`rank_pattern` / `alpha_pattern` for the others). Layers kept fully
trainable (a classifier head) become `modules_to_save`. The folder is built
aside and renamed into place.
"""

import collections
import json
import math
import os
import re

import numpy as np
from keras import ops

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.adapters.pruned_triplets import drop_pruned_triplets
from keras_lowrank.layers.adalora import AdaLoRAVariant
from keras_lowrank.peft import adalora
from keras_lowrank.peft import factors
from keras_lowrank.peft.families import family_of
from keras_lowrank.peft.name_map import ModuleTable
from keras_lowrank.peft.peft_config import ADALORA
from keras_lowrank.peft.peft_config import CONFIG_FILE
from keras_lowrank.peft.peft_config import WEIGHTS_FILE
from keras_lowrank.peft.peft_config import PeftAdapterConfig
from keras_lowrank.peft.peft_weights import ROOT
from keras_lowrank.surgery import checks
from keras_lowrank.surgery import layer_paths
from keras_lowrank.surgery import model_state
from keras_lowrank.svd.kernel_layout import KernelLayout
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import has_files


def save_peft_adapters(
    model, folder, *, adapter_name=None, module_prefix=None,
    base_model_name_or_path=None,
) -> PeftAdapterConfig:
    """Writes the adapters of a keras-hub model as a PEFT LoRA folder.

    PEFT loads the folder on the HF model the keras-hub model was converted
    from: `PeftModel.from_pretrained(hf_model, folder)`, with outputs
    matching the keras model's. A `BertBackbone` maps to `BertModel`, a
    `BertTextClassifier` to `BertForSequenceClassification` (its head as
    `modules_to_save=["classifier"]`), `Llama3CausalLM` to
    `LlamaForCausalLM`, `GPT2CausalLM` to `GPT2LMHeadModel`.

    Args:
        model: keras-hub backbone or task of a mapped family, holding
            adapters (from `add_adapters`, `load_adapters` or
            `load_peft_adapters`).
        folder: str or path. The folder to write; an existing one is
            replaced only when it is empty or a PEFT adapter folder.
        adapter_name: str or None. Which adapter to write; None means the
            model's only one.
        module_prefix: str or None. Prefix of the HF module names (`"bert."`
            for `BertForSequenceClassification`); None derives it from the
            model's class. Give `""` to load on the HF base model
            (`BertModel`) an adapter trained in a keras-hub task.
        base_model_name_or_path: str or None. Recorded in the config.

    Returns:
        The `PeftAdapterConfig` written.

    Raises:
        ValueError: no adapter; several and no `adapter_name`; an adapter or
            trainable layer with no HF counterpart (named, with the mappable
            ones); DoRA and plain LoRA adapters mixed (PEFT has one
            `use_dora`); a PiSSA adapter (its base kernel holds a residual
            PEFT's base model lacks). Nothing is written then.

    Example:
    ```python
    model = klr.add_adapters(classifier, rank=8)
    model.fit(train_data, epochs=2)
    klr.save_peft_adapters(model, "my-peft-lora")
    # In PyTorch: PeftModel.from_pretrained(
    #     BertForSequenceClassification.from_pretrained(hf_folder), "my-peft-lora")
    ```
    """
    checks.check_model(model, "save_peft_adapters")
    model = drop_pruned_triplets(model)  # AdaLoRA: surviving triplets only
    found = adapters(model)
    if not found:
        raise ValueError(
            f"Model '{model.name}' holds no LoRA adapter to save. Add some "
            "with `klr.add_adapters` or load them first."
        )
    name = _adapter_name(model, found, adapter_name)
    family = family_of(model, "save_peft_adapters")
    table = ModuleTable(family, model)
    prefix = table.default_prefix() if module_prefix is None else module_prefix
    _check_prefix(prefix)
    modules = _modules(found, name, table)
    config, tensors = _config_and_tensors(modules, table, prefix, name)
    if config.get("peft_type") == ADALORA:
        config["adalora"].update(_adalora_options(model, name, config["r"]))
    heads = _kept_layers(model, table, prefix)
    for full_name, values in heads.items():
        for key, value in values.items():
            tensors[f"{ROOT}{full_name}.{key}"] = value
    config = PeftAdapterConfig(
        **config,
        modules_to_save=tuple(heads) or None,
        fan_in_fan_out=family.fan_in_fan_out,
        task_type=_task_type(model),
        base_model_name_or_path=base_model_name_or_path,
    )
    _write(folder, config, tensors)
    return config


def _adapter_name(model, found, adapter_name):
    names = []
    for adapter in found.values():
        names += [n for n in adapter.adapter_names if n not in names]
    if adapter_name is None:
        if len(names) > 1:
            raise ValueError(
                f"Model '{model.name}' holds adapters {names}; a PEFT folder "
                "holds one. Pass adapter_name=..."
            )
        return names[0]
    if adapter_name not in names:
        raise ValueError(
            f"Model '{model.name}' has no adapter named {adapter_name!r}. "
            f"Adapters: {names}"
        )
    return adapter_name


def _check_prefix(prefix):
    if not isinstance(prefix, str) or (prefix and not prefix.endswith(".")):
        raise ValueError(
            "save_peft_adapters expected `module_prefix` to be '' or a module "
            f"path ending in '.', like 'bert.'. Received: module_prefix={prefix!r}"
        )


def _modules(found, name, table):
    """`{MappedModule name: (module, [Part or None per path])}`."""
    modules = {}
    for path, adapter in found.items():
        if name not in adapter.adapter_names:
            continue
        located = table.module_at(path)
        if located is None:
            raise ValueError(
                f"Layer '{path}' holds an adapter, but no HF module of the "
                f"{table.family.name} family maps to it, so PEFT could not "
                f"load it. {table.describe()}. Adapt only those layers."
            )
        module, part = located
        view = adapter.view(name)
        spec = view.spec
        if spec.pissa_rank:
            raise ValueError(
                f"Layer '{path}': its adapter was initialized with PiSSA, so "
                "the model's kernel holds a residual that PEFT's base model "
                "lacks. Save the merged model instead (`klr.merge_adapters`), "
                "or train with init='default' to exchange adapters with PEFT."
            )
        weights = {k: ops.convert_to_numpy(v).astype(np.float32)
                   for k, v in adapter.adapter_weights(name).items()}
        entry = modules.setdefault(module.name, (module, [None] * len(module.paths), []))
        adaptive = spec.variant == AdaLoRAVariant.name
        entry[1][part] = factors.Part(
            lora_a=weights["lora_a"], lora_b=weights["lora_b"],
            scale=float(AdaLoRAVariant.scale(view)) if adaptive else spec.scale,
            magnitude=weights.get(factors.MAGNITUDE),
            singular_values=weights.get("lora_e"),
            ranknum=float(weights["lora_ranknum"][0]) if adaptive else None,
        )
        entry[2].append((path, spec))
    variants = {spec.variant: path for _, _, specs in modules.values() for path, spec in specs}
    if len(variants) > 1 or not set(variants) <= {"lora", "dora", "adalora"}:
        raise ValueError(
            f"A PEFT adapter is all LoRA, all DoRA or all AdaLoRA; these "
            f"layers hold adapters of variants {variants} (variant: a layer)."
        )
    return modules


def _config_and_tensors(modules, table, prefix, name):
    rows = []  # (full name, rank, scale)
    tensors = {}
    specs = [spec for _, _, s in modules.values() for _, spec in s]
    use_rslora = all(spec.use_rslora for spec in specs)
    use_dora = specs[0].variant == "dora"
    dropout = collections.Counter(spec.dropout for spec in specs).most_common(1)[0][0]
    if specs[0].variant == AdaLoRAVariant.name:
        return _adalora_config_and_tensors(modules, table, prefix, dropout)
    for module, parts, _ in modules.values():
        layouts = [_layout(table.layers[p]) for p in module.paths]
        norms = [_column_norms(table.layers[p]) for p in module.paths] if use_dora else None
        lora_A, lora_B, magnitude, scale = factors.to_peft(
            parts, [layout.fan_out for layout in layouts], norms)
        full_name = module.full_name(prefix)
        tensors[f"{ROOT}{full_name}.lora_A.weight"] = lora_A
        tensors[f"{ROOT}{full_name}.lora_B.weight"] = lora_B
        if magnitude is not None:
            tensors[f"{ROOT}{full_name}.lora_magnitude_vector"] = magnitude
        rows.append((full_name, lora_A.shape[0], scale))
    alphas = [(n, r, s * (math.sqrt(r) if use_rslora else r)) for n, r, s in rows]
    r = collections.Counter(row[1] for row in alphas).most_common(1)[0][0]
    alpha = collections.Counter(row[2] for row in alphas).most_common(1)[0][0]
    config = {
        "r": int(r),
        "lora_alpha": _number(alpha),
        "lora_dropout": dropout,
        "use_rslora": use_rslora,
        "use_dora": use_dora,
        "target_modules": _target_modules(table, prefix, [n for n, _, _ in rows]),
        # PEFT reads a pattern as a regex matched at the end of a name.
        "rank_pattern": {re.escape(n): int(k) for n, k, _ in alphas if k != r},
        "alpha_pattern": {re.escape(n): _number(a) for n, _, a in alphas if a != alpha},
    }
    return config, tensors


def _adalora_config_and_tensors(modules, table, prefix, dropout):
    """As `_config_and_tensors`, for AdaLoRA: one `init_r` and one alpha."""
    parts = [p for _, module_parts, _ in modules.values() for p in module_parts if p]
    ranknums = {p.ranknum for p in parts}
    alphas = {p.scale * p.ranknum for p in parts}
    if len(ranknums) > 1 or len(alphas) > 1:
        raise ValueError(
            "A PEFT AdaLoRA adapter has one init_r and one lora_alpha for all "
            f"modules; these adapters started at ranks {sorted(ranknums)} with "
            f"alpha {sorted(alphas)}. Save them with klr.save_adapters instead."
        )
    init_r = int(ranknums.pop())
    tensors, ranks = {}, {}
    for module, module_parts, _ in modules.values():
        widths = [_layout(table.layers[p]).fan_out for p in module.paths]
        full_name = module.full_name(prefix)
        lora_A, lora_B, lora_E, _ = adalora.to_peft(module_parts, widths, full_name, init_r)
        tensors[f"{ROOT}{full_name}.lora_A"] = lora_A
        tensors[f"{ROOT}{full_name}.lora_B"] = lora_B
        tensors[f"{ROOT}{full_name}.lora_E"] = lora_E
        ranks[full_name] = lora_A.shape[0]
    config = {
        "peft_type": ADALORA,
        "r": init_r,
        "lora_alpha": _number(alphas.pop()),
        "lora_dropout": dropout,
        "target_modules": _target_modules(table, prefix, list(ranks)),
        "adalora": {"init_r": init_r, "rank_masks": adalora.rank_masks(ranks, init_r)},
    }
    return config, tensors


def _adalora_options(model, name, init_r):
    """AdaLoraConfig's schedule fields: the recorded `klr.AdaLoRA`, if any."""
    config = model_state.lora_configs(model).get(name)
    options = getattr(config, "adaptive", None)
    if options is None:  # loaded without its LoRAConfig: a valid schedule
        return {"target_r": init_r, "total_step": 1, "tinit": 0, "tfinal": 0,
                "deltaT": 1, "beta1": 0.85, "beta2": 0.85, "orth_reg_weight": 0.5}
    return {
        "target_r": options.target_rank, "total_step": options.total_steps,
        "tinit": options.warmup_steps, "tfinal": options.final_steps,
        "deltaT": options.interval, "beta1": options.beta1, "beta2": options.beta2,
        "orth_reg_weight": options.orth_reg_weight,
    }


def _target_modules(table, prefix, adapted):
    """Short names (`query`) where every module so named is adapted, else full ones."""
    by_leaf = collections.defaultdict(list)
    for full_name in table.full_names(prefix):
        by_leaf[full_name.rsplit(".", 1)[-1]].append(full_name)
    adapted = set(adapted)
    targets = []
    for leaf, names in by_leaf.items():
        chosen = [n for n in names if n in adapted]
        if not chosen:
            continue
        targets += [leaf] if len(chosen) == len(names) else chosen
    return tuple(targets)


def _kept_layers(model, table, prefix):
    """`{HF module name: {"weight", "bias"}}` of the layers kept trainable."""
    kept = {}
    for path, layer in layer_paths.layer_paths(model).items():
        if isinstance(layer, LoRAAdapter) or keras_compat.has_sublayers(layer):
            continue
        if not layer.trainable_weights:
            continue
        located = table.module_at(path)
        if located is None or len(located[0].paths) != 1:
            raise ValueError(
                f"Layer '{path}' is trainable (a head kept fully trainable), "
                "but no single HF module maps to it, so it cannot be written "
                f"as PEFT's modules_to_save. {table.describe()}. Freeze it "
                "(layer.trainable = False) or merge it into the base model."
            )
        module = located[0]
        layout = _layout(layer)
        values = {"weight": factors.matrix_to_peft_weight(
            ops.convert_to_numpy(layout.to_matrix(layer.kernel)))}
        if getattr(layer, "bias", None) is not None:
            values["bias"] = ops.convert_to_numpy(layer.bias).reshape(-1).astype(np.float32)
        kept[module.full_name(prefix)] = values
    return kept


def _task_type(model):
    import keras_hub

    if isinstance(model, keras_hub.models.TextClassifier):
        return "SEQ_CLS"
    if isinstance(model, keras_hub.models.CausalLM):
        return "CAUSAL_LM"
    return None


def _column_norms(layer):
    base = layer.layer if isinstance(layer, LoRAAdapter) else layer
    matrix = ops.convert_to_numpy(_layout(base).to_matrix(base.kernel)).astype(np.float64)
    return np.linalg.norm(matrix, axis=0).astype(np.float32)  # (fan_out,)


def _layout(layer):
    return KernelLayout.of(layer.layer if isinstance(layer, LoRAAdapter) else layer)


def _number(value):
    value = float(value)
    return int(value) if value.is_integer() else value


def _write(folder, config, tensors):
    from safetensors.numpy import save_file

    with atomic_path(folder, directory=True, replaceable=has_files(CONFIG_FILE)) as tmp:
        os.makedirs(tmp)
        # "format": "pt" is what transformers' and PEFT's loaders expect.
        save_file(
            {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()},
            os.path.join(tmp, WEIGHTS_FILE),
            metadata={"format": "pt"},
        )
        with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as file:
            json.dump(config.to_json_dict(), file, indent=2, sort_keys=True)
            file.write("\n")
