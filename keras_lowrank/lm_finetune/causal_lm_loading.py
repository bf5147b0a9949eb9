"""`load_causal_lm`: a keras-hub causal LM from a Hugging Face folder, ready
for adapters.

keras-hub 0.32's Llama3 converter ignores config.json's `rms_norm_eps`,
and `Llama3CausalLM.from_preset` does not pass `layer_norm_epsilon` on (see
`keras_lowrank.models.presets`): the backbone is loaded with it. A tied model
(SmolLM2) stays tied: `klr.add_adapters` and `klr.merge_adapters` restore
the `tie_word_embeddings` that `Llama3Backbone.get_config()` leaves out
(`keras_lowrank._compat.restore_dropped_config`).
"""

import json
import os

CONFIG_FILE = "config.json"
LLAMA_MODEL_TYPES = ("llama",)


def read_config(folder) -> dict:
    """config.json of a Hugging Face model folder.

    Raises:
        NotADirectoryError: `folder` is a file.
        FileNotFoundError: `folder` does not exist or has no config.json.
        ValueError: config.json is not a JSON object.
    """
    path = os.path.join(os.fspath(folder), CONFIG_FILE)
    if os.path.isfile(folder):
        raise NotADirectoryError(
            f"model={folder!r} is a file, not a folder. Pass the Hugging Face "
            "causal-LM folder that holds it (config.json, model.safetensors, "
            "tokenizer.json, tokenizer_config.json).")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"model={folder!r}: no such folder.")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"model={folder!r} has no {CONFIG_FILE}: pass a Hugging Face "
            "causal-LM folder (config.json, model.safetensors, "
            "tokenizer.json, tokenizer_config.json).")
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except ValueError as error:
        raise ValueError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a JSON object.")
    return config


def load_causal_lm(folder, dtype=None):
    """The causal LM of a Hugging Face folder, without a preprocessor.

    Llama-family folders (`model_type` "llama": Llama 3, SmolLM2, ...) load
    as a `Llama3CausalLM` with the folder's RMSNorm epsilon (see the
    module docstring); other families through
    `keras_hub.models.CausalLM.from_preset`.

    Args:
        folder: str. A Hugging Face folder keras-hub can convert.
        dtype: optional dtype policy name for the backbone.

    Returns:
        A keras-hub `CausalLM` with `preprocessor=None`.

    Raises:
        FileNotFoundError, ValueError: from `read_config`, or a folder
            keras-hub cannot load (the message names it).
    """
    import keras_hub

    config = read_config(folder)
    kwargs = {} if dtype is None else {"dtype": dtype}
    try:
        if config.get("model_type") not in LLAMA_MODEL_TYPES:
            return keras_hub.models.CausalLM.from_preset(
                folder, preprocessor=None, **kwargs)
        if "rms_norm_eps" in config:
            kwargs["layer_norm_epsilon"] = float(config["rms_norm_eps"])
        loaded = keras_hub.models.Llama3Backbone.from_preset(folder, **kwargs)
    except (KeyError, OSError, ValueError) as error:
        raise ValueError(f"Cannot load a causal LM from model={folder!r}: "
                         f"{error}") from None
    return keras_hub.models.Llama3CausalLM(backbone=loaded, preprocessor=None)

