"""The state keras_lowrank keeps on a model, read and written in one place.

Keras models have no slot for it, so it lives in attributes set with
`object.__setattr__` (past Keras' tracking, which would otherwise wrap the
lists and dicts). Nothing else reads or writes these attributes.

- `lora_configs`: `{adapter name: LoRAConfig}` the adapters were made with.
- `replaced_paths` / `base_config`: what a rewritten model records to save
  and load (see `rewritten_model`).
"""

_LORA_CONFIGS = "_klr_lora_configs"
_REPLACED = "_klr_replaced"
_BASE_CONFIG = "_klr_base_config"


def lora_configs(model):
    """`{adapter name: LoRAConfig}` of `model` (a copy; empty if none)."""
    return dict(getattr(model, _LORA_CONFIGS, {}))


def set_lora_configs(model, configs):
    object.__setattr__(model, _LORA_CONFIGS, dict(configs))


def has_record(model):
    """Whether `model` itself (not its class) holds a rewrite record."""
    return _REPLACED in vars(model)


def replaced_paths(model):
    """The paths of the layers a rewrite replaced in `model` (a live list)."""
    return getattr(model, _REPLACED, [])


def base_config(model):
    """The serialized model a rewritten `model` was made from, or None."""
    return getattr(model, _BASE_CONFIG, None)


def set_record(model, replaced, base):
    object.__setattr__(model, _REPLACED, replaced)
    object.__setattr__(model, _BASE_CONFIG, base)


def set_replaced_paths(model, replaced):
    object.__setattr__(model, _REPLACED, replaced)


def clear_record(model):
    vars(model).pop(_REPLACED, None)
    vars(model).pop(_BASE_CONFIG, None)
