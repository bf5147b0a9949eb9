"""`PeftAdapterConfig`: a PEFT `adapter_config.json`, validated in one place.

A PEFT adapter folder holds `adapter_config.json` (the `LoraConfig`) and
`adapter_model.safetensors` (the factors). This module reads and writes the
config, refuses what keras_lowrank cannot reproduce exactly (another PEFT
method, trained biases, an initialization that rewrote the base weights,
variants other than DoRA), and answers the questions PEFT's `LoraModel`
asks of it for one module name: is it targeted (`targets`), and with which
`AdapterSpec` (`spec_for`: `r` and `lora_alpha` from `rank_pattern` and
`alpha_pattern`, `use_rslora`, `use_dora`). The matching rules are PEFT's own
(`check_target_module_exists`, `get_pattern_key` in `peft.utils.other`), so a
config means here what it means there. No torch or PEFT is needed.
"""

import dataclasses
import json
import os
import re

from keras_lowrank.layers.adapter_spec import AdapterSpec
from keras_lowrank.peft.adalora_config import ADALORA
from keras_lowrank.peft.adalora_config import adalora_fields
from keras_lowrank.peft.adalora_config import adalora_json
from keras_lowrank.peft.module_names import ALL_LINEAR
from keras_lowrank.peft.module_names import excluded
from keras_lowrank.peft.module_names import layer_index
from keras_lowrank.peft.module_names import pattern_key
from keras_lowrank.peft.module_names import target_names

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLED_WEIGHTS_FILE = "adapter_model.bin"
LORA = "LORA"
# Initializations that rewrite the base weights: the adapter is only right
# on that rewritten model unless PEFT converted it back to plain LoRA.
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "lora_ga", "loftq")
# Fields that change what the adapter computes and have no counterpart here:
# any value but these defaults is refused.
_UNSUPPORTED_FIELDS = {
    "lora_bias": False,
    "layer_replication": None,
    "trainable_token_indices": None,
    "target_parameters": None,
    "use_qalora": False,
    "alora_invocation_tokens": None,
    "use_bdlora": None,
    "arrow_config": None,
    "monteclora_config": None,
    "kasa_config": None,
    "velora_config": None,
    "megatron_config": None,
}
# Fields that only describe the training run or the writer.
_INFORMATIONAL_FIELDS = (
    "auto_mapping", "revision", "inference_mode", "peft_version",
    "runtime_config", "megatron_core", "qalora_group_size", "loftq_config",
    "eva_config", "corda_config", "lora_ga_config", "ensure_weight_tying",
)


@dataclasses.dataclass(frozen=True)
class PeftAdapterConfig:
    """The fields of a PEFT `LoraConfig` that decide the adapter's math.

    Args:
        r: int. Default rank.
        lora_alpha: float. Default scale numerator (`s = alpha / r`, or
            `alpha / sqrt(r)` with `use_rslora`).
        target_modules: tuple of module names (a name matches a module whose
            full name is it or ends with `.name`), a regular expression str
            (matched against the whole module name), or None (the weights
            file decides).
        exclude_modules: tuple of names, a regex str, or None; as
            `target_modules`, for modules never adapted.
        layers_to_transform: tuple of layer indices, or None for all.
        layers_pattern: tuple of names of the layer list (`"layers"`), or None.
        rank_pattern: `{regex: rank}`; the first key matching the end of a
            module name (after a `.`) wins.
        alpha_pattern: `{regex: alpha}`, matched as `rank_pattern`.
        modules_to_save: tuple of module names trained in full (a
            classifier head), or None.
        lora_dropout: float. Dropout on the adapter path in training.
        use_rslora: bool. Rank-stabilized scale `alpha / sqrt(r)`.
        use_dora: bool. DoRA: a magnitude per output unit.
        fan_in_fan_out: bool. Whether the base weights are stored
            `(in, out)` (GPT-2's `Conv1D`). PEFT's factors are `lora_A`
            `(r, in)` and `lora_B` `(out, r)` either way.
        task_type: str or None. PEFT's task (`"SEQ_CLS"`, `"CAUSAL_LM"`).
        base_model_name_or_path: str or None. The model trained on.
        init_lora_weights: bool or str. How the factors started.
        peft_type: str. `"LORA"`, or `"ADALORA"` for an AdaLoRA adapter
            (`variant="adalora"` adapters; `r` is then its `init_r`).
        adalora: dict or None. For ADALORA: the `ADALORA_FIELDS` and
            `rank_masks`, `{"<module>.lora_E": [bool, ...]}` (PEFT's
            `rank_pattern` there).

    Example:
    ```python
    config = klr.read_peft_config("my-lora")
    config.spec_for("encoder.layer.0.attention.self.query")
    # AdapterSpec(rank=8, alpha=16.0, ...)
    ```
    """

    r: int = 8
    lora_alpha: float = 8
    target_modules: tuple | str | None = None
    exclude_modules: tuple | str | None = None
    layers_to_transform: tuple | None = None
    layers_pattern: tuple | None = None
    rank_pattern: dict = dataclasses.field(default_factory=dict)
    alpha_pattern: dict = dataclasses.field(default_factory=dict)
    modules_to_save: tuple | None = None
    lora_dropout: float = 0.0
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    task_type: str | None = None
    base_model_name_or_path: str | None = None
    init_lora_weights: bool | str = True
    peft_type: str = LORA
    adalora: dict | None = None

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        set_("target_modules", target_names(self.target_modules, "target_modules"))
        set_("exclude_modules", target_names(self.exclude_modules, "exclude_modules"))
        set_("modules_to_save", target_names(self.modules_to_save, "modules_to_save", regex=False))
        layers = self.layers_to_transform
        set_("layers_to_transform", None if layers is None else tuple(
            [layers] if isinstance(layers, int) else layers))
        pattern = self.layers_pattern
        set_("layers_pattern", None if pattern is None else tuple(
            [pattern] if isinstance(pattern, str) else pattern))
        for field in ("rank_pattern", "alpha_pattern"):
            value = getattr(self, field) or {}
            if not isinstance(value, dict):
                raise ValueError(
                    f"PEFT config field `{field}` must be a dict of "
                    f"{{pattern: value}}. Received: {field}={value!r}"
                )
            set_(field, dict(value))
        # Validates r, lora_alpha and lora_dropout, then each pattern's value.
        self._spec(self.r, self.lora_alpha, "PEFT config")
        for key, rank in self.rank_pattern.items():
            self._spec(rank, self.lora_alpha, f"PEFT config (rank_pattern {key!r})")
        for key, alpha in self.alpha_pattern.items():
            self._spec(self.r, alpha, f"PEFT config (alpha_pattern {key!r})")

    # === PEFT's questions about one module ===

    def targets(self, name: str) -> bool:
        """Whether PEFT puts an adapter on the module with full name `name`.

        PEFT's `check_target_module_exists`: excluded and `modules_to_save`
        modules never; a regex `target_modules` must match the whole name; a
        list entry must be the name or its end after a `.`, and
        `layers_to_transform` then filters by the layer index.
        """
        if excluded(self.exclude_modules, name):
            return False
        if self.modules_to_save and any(
            re.match(rf"(^|.*\.){m}($|\..*)", name) for m in self.modules_to_save
        ):
            return False
        if self.target_modules is None:
            return True
        if self.target_modules == ALL_LINEAR:
            return True
        if isinstance(self.target_modules, str):
            return re.fullmatch(self.target_modules, name) is not None
        if name in self.target_modules:
            return True
        if not any(name.endswith(f".{t}") for t in self.target_modules):
            return False
        if self.layers_to_transform is None:
            return True
        index = layer_index(name, self.layers_pattern)
        return index is not None and index in self.layers_to_transform

    def rank_for(self, name: str) -> int:
        if self.adalora is not None:
            masks = (self.adalora.get("rank_masks") or {}).get(f"{name}.lora_E")
            return self.r if masks is None else int(sum(bool(m) for m in masks))
        return self.rank_pattern.get(pattern_key(self.rank_pattern, name), self.r)

    def alpha_for(self, name: str) -> float:
        return self.alpha_pattern.get(pattern_key(self.alpha_pattern, name), self.lora_alpha)

    def spec_for(self, name: str) -> AdapterSpec:
        """The `AdapterSpec` of the adapter on the module `name`."""
        return self._spec(self.rank_for(name), self.alpha_for(name), f"PEFT module '{name}'")

    def _spec(self, rank, alpha, source):
        try:
            return AdapterSpec(
                rank=rank, alpha=alpha, dropout=self.lora_dropout,
                use_rslora=self.use_rslora,
                variant=_variant(self),
            )
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from None

    # === The JSON file ===

    def to_json_dict(self) -> dict:
        """The `adapter_config.json` PEFT 0.21 reads (`LoraConfig` fields)."""
        targets = self.target_modules
        return {
            "peft_type": LORA,
            "task_type": self.task_type,
            "base_model_name_or_path": self.base_model_name_or_path,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": list(targets) if isinstance(targets, tuple) else targets,
            "exclude_modules": None,
            "rank_pattern": self.rank_pattern,
            "alpha_pattern": self.alpha_pattern,
            "modules_to_save": None if self.modules_to_save is None else list(self.modules_to_save),
            "use_rslora": self.use_rslora,
            "use_dora": self.use_dora,
            "fan_in_fan_out": self.fan_in_fan_out,
            "bias": "none",
            "init_lora_weights": True,
            "layers_to_transform": None,
            "layers_pattern": None,
            "inference_mode": True,
            **adalora_json(self),
        }


def read_peft_config(folder) -> PeftAdapterConfig:
    """Reads and checks the `adapter_config.json` of a PEFT adapter folder.

    Args:
        folder: str or path. A folder PEFT's `save_pretrained` wrote.

    Returns:
        A `PeftAdapterConfig`.

    Raises:
        FileNotFoundError: the folder or its `adapter_config.json` is missing.
        ValueError: the file is not JSON; the adapter is not LoRA (LoHa,
            IA3, prompt tuning, ...); `bias` is not `"none"`; it was
            initialized with PiSSA, OLoRA, CorDA, LoRA-GA or LoftQ and not
            converted back to plain LoRA; it uses a PEFT feature with no
            keras_lowrank counterpart. The message names the field.

    Example:
    ```python
    config = klr.read_peft_config("my-lora")
    print(config.r, config.lora_alpha, config.target_modules)
    ```
    """
    path = config_path(folder)
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"'{path}' is not valid JSON ({error}).") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"'{path}' must hold a JSON object of LoraConfig fields. "
            f"Received: {type(data).__name__}"
        )
    return config_from_dict(data, source=f"'{path}'")


def config_path(folder):
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"No PEFT adapter folder at '{folder}'. Give the folder PEFT's "
            "`save_pretrained` wrote (adapter_config.json and "
            "adapter_model.safetensors)."
        )
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"'{folder}' has no {CONFIG_FILE}, so it is not a PEFT adapter "
            f"folder. Files there: {sorted(os.listdir(folder))[:8]}"
        )
    return path


def config_from_dict(data, source="PEFT config") -> PeftAdapterConfig:
    """A `PeftAdapterConfig` from the fields of `adapter_config.json`.

    Raises:
        ValueError: as `read_peft_config`; the message starts with `source`.
    """
    peft_type = data.get("peft_type")
    adalora = None
    if peft_type == ADALORA:
        data, adalora = adalora_fields(data, source)
    elif peft_type != LORA:
        raise ValueError(
            f"{source} holds a PEFT adapter of type peft_type={peft_type!r}; "
            "keras_lowrank maps LoRA adapters only (peft_type 'LORA', "
            "with use_dora for DoRA, and 'ADALORA'). Other PEFT methods (LoHa, LoKr, IA3, "
            "prompt tuning, ...) have no keras_lowrank counterpart."
        )
    bias = data.get("bias", "none")
    if bias != "none":
        raise ValueError(
            f"{source} has bias={bias!r}: PEFT trained the base layers' "
            "biases too, and keras_lowrank adapters keep them frozen. Only "
            "bias='none' maps."
        )
    init = data.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise ValueError(
            f"{source} has init_lora_weights={init!r}: this initialization "
            "rewrote the base model's weights, so the factors only fit that "
            "rewritten model. Convert the adapter to plain LoRA in PEFT first: "
            "save it with `peft_model.save_pretrained(out_dir, "
            "path_initial_model_for_weight_conversion=<folder of the adapter "
            "saved right after initialization>)`, which writes an adapter of "
            "rank 2r with init_lora_weights=True that applies to the original "
            "base model."
        )
    for field, default in _UNSUPPORTED_FIELDS.items():
        value = data.get(field, default)
        if value not in (default, None, False, {}, []):
            raise ValueError(
                f"{source} sets {field}={value!r}, a PEFT feature keras_lowrank "
                f"adapters do not have (only {field}={default!r} maps)."
            )
    known = {f.name for f in dataclasses.fields(PeftAdapterConfig)}
    unknown = {
        k: v for k, v in data.items()
        if k not in known and k not in _UNSUPPORTED_FIELDS
        and k not in _INFORMATIONAL_FIELDS and k not in ("peft_type", "bias")
        and v not in (None, False, {}, [])
    }
    if unknown:
        field, value = next(iter(unknown.items()))
        raise ValueError(
            f"{source} sets {field}={value!r}, a field this version of "
            "keras_lowrank does not know (written by a newer PEFT?), so it "
            "cannot tell whether the adapter would compute the same thing."
        )
    fields = {k: data[k] for k in known if k in data and data[k] is not None}
    if adalora is not None:
        fields["adalora"] = adalora
    for flag in ("use_rslora", "use_dora", "fan_in_fan_out"):
        if flag in fields and not isinstance(fields[flag], bool):
            raise ValueError(
                f"{source}: `{flag}` must be true or false. "
                f"Received: {flag}={fields[flag]!r}"
            )
    try:
        return PeftAdapterConfig(**fields)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {error}") from None


# === AdaLoRA ===


def _variant(config):
    if config.peft_type == ADALORA:
        return "adalora"
    return "dora" if config.use_dora else "lora"
