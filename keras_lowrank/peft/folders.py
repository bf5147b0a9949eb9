"""A PEFT adapter folder for the command line: recognize, describe, load with its base.

`keras-lowrank inspect ADAPTER_FOLDER` prints `describe_peft_folder`;
`keras-lowrank export BASE_FOLDER --peft-adapters ADAPTER_FOLDER` loads
`load_peft_model(BASE_FOLDER, ADAPTER_FOLDER)`: the keras-hub class the
adapter's `task_type` asks for, converted from the HF folder, with the
adapter on it.
"""

import json
import math
import os

from keras_lowrank.peft.families import family_for_model_type
from keras_lowrank.peft.peft_config import CONFIG_FILE
from keras_lowrank.peft.peft_config import WEIGHTS_FILE
from keras_lowrank.peft.peft_config import read_peft_config
from keras_lowrank.peft.peft_weights import read_peft_weights


def is_peft_folder(path) -> bool:
    """Whether `path` is a folder holding a PEFT `adapter_config.json`."""
    return os.path.isdir(os.fspath(path)) and os.path.isfile(
        os.path.join(os.fspath(path), CONFIG_FILE))


def describe_peft_folder(folder) -> dict:
    """What a PEFT LoRA folder holds, checked as `load_peft_adapters` checks it.

    Returns:
        A dict: `summary` (one line), `rows` (a table, header first: module,
        rank, alpha, scale, lora_A and lora_B shapes, parameters) and
        `modules_to_save` (`{module: [weight shapes]}`).

    Raises:
        FileNotFoundError, ValueError: as `read_peft_config` and the weights
            reader (another PEFT method, an unconverted PiSSA adapter, ...).

    Example:
    ```python
    info = describe_peft_folder("my-lora")
    print(info["summary"])
    ```
    """
    config = read_peft_config(folder)
    weights = read_peft_weights(folder)
    rows = [("module", "rank", "alpha", "scale", "lora_A", "lora_B", "params")]
    total = 0
    for name, tensors in weights.lora.items():
        spec = config.spec_for(name)
        params = sum(int(t.size) for t in tensors.values())
        total += params
        rows.append((
            name, str(spec.rank), f"{spec.alpha:g}", f"{spec.scale:g}",
            "x".join(map(str, tensors["lora_A"].shape)),
            "x".join(map(str, tensors["lora_B"].shape)), f"{params:,}",
        ))
    saved = {
        module: {k: list(v.shape) for k, v in values.items()}
        for module, values in weights.full.items()
    }
    total += sum(math.prod(s) for values in saved.values() for s in values.values())
    variant = "DoRA" if config.use_dora else "LoRA"
    size = os.path.getsize(os.path.join(os.fspath(folder), WEIGHTS_FILE))
    summary = (
        f"PEFT {variant} adapter ({config.task_type or 'no task type'}"
        f"{', base ' + config.base_model_name_or_path if config.base_model_name_or_path else ''}):"
        f" {len(weights.lora)} adapted modules, r={config.r}, "
        f"lora_alpha={config.lora_alpha:g}{', rsLoRA' if config.use_rslora else ''}, "
        f"{total:,} parameters, {size:,} bytes"
    )
    return {"summary": summary, "rows": rows, "modules_to_save": saved}


def load_peft_base_model(base_folder, adapter_folder, *, preprocessor=True):
    """The keras-hub model a PEFT adapter goes on, from an HF model folder.

    `task_type` `"SEQ_CLS"` (or a saved `classifier`) gives a
    `TextClassifier` with the saved head's number of classes,
    `"CAUSAL_LM"` a `CausalLM`, anything else the backbone. Settings
    keras-hub's converter does not port (Llama's `rms_norm_eps`) are passed.

    Args:
        base_folder: str. An HF model folder keras-hub converts (config.json,
            model.safetensors, tokenizer files for a preprocessor).
        adapter_folder: str. The PEFT adapter folder.
        preprocessor: bool. Load the task's preprocessor (needs the
            tokenizer files). Backbones have none.

    Raises:
        FileNotFoundError: a folder or file is missing.
        ValueError: the HF model type has no mapped family.
    """
    import keras_hub

    hf_config_path = os.path.join(os.fspath(base_folder), "config.json")
    if not os.path.isfile(hf_config_path):
        raise FileNotFoundError(
            f"'{base_folder}' has no config.json, so it is not a Hugging Face "
            "model folder keras-hub can convert."
        )
    with open(hf_config_path, encoding="utf-8") as file:
        hf_config = json.load(file)
    family = family_for_model_type(hf_config.get("model_type"))
    config = read_peft_config(adapter_folder)
    kwargs = {
        argument: hf_config[key]
        for argument, key in family.preset_arguments.items()
        if key in hf_config
    }
    weights = read_peft_weights(adapter_folder)
    heads = [n for n in family.head_modules if n in weights.full]
    base_folder = os.fspath(base_folder)
    # A task's from_preset passes no such argument on to its backbone.
    backbone = keras_hub.models.Backbone.from_preset(base_folder, **kwargs)
    task = {"backbone": backbone}
    if not preprocessor:
        task["preprocessor"] = None
    if config.task_type == "SEQ_CLS" or heads:
        head = weights.full.get(heads[0]) if heads else None
        if head is None:
            raise ValueError(
                f"The PEFT adapter of '{adapter_folder}' is for sequence "
                "classification but saves no classifier head the "
                f"{family.name} family maps ({list(family.head_modules)})."
            )
        return keras_hub.models.TextClassifier.from_preset(
            base_folder, num_classes=int(head["weight"].shape[0]), **task)
    if config.task_type == "CAUSAL_LM":
        return keras_hub.models.CausalLM.from_preset(base_folder, **task)
    return backbone


def load_peft_model(base_folder, adapter_folder, *, preprocessor=True):
    """`load_peft_base_model`, with the adapter loaded on it.

    Example:
    ```python
    model = load_peft_model(hf_folder, "my-lora")
    klr.export(model, "model.tflite", "tflite")
    ```
    """
    from keras_lowrank.peft.loading import load_peft_adapters

    base = load_peft_base_model(base_folder, adapter_folder, preprocessor=preprocessor)
    return load_peft_adapters(base, adapter_folder)
