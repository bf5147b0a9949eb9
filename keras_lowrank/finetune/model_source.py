"""The model of a run: its folder (or preset name) and its longest input.

The longest input is read from the folder's config.json before anything
slow runs, so that a `sequence_length` the model cannot take fails in a
second rather than after loading and tokenizing the data.
"""

import json
import os

from keras_lowrank.finetune.options import FinetuneOptions

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def model_source(options: FinetuneOptions) -> str:
    """The keras-hub preset `options.model` names: a folder, or a name.

    None means all-MiniLM-L6-v2 (`presets.minilm_path()`).

    Raises:
        NotADirectoryError: a path that is a file.
        FileNotFoundError: a path that does not exist, or the default
            model is not installed.
    """
    from keras_lowrank.models import presets

    folder = options.model or presets.minilm_path()
    if _looks_like_path(folder) and os.path.isfile(folder):
        raise NotADirectoryError(
            f"model={folder!r} is a file, not a folder. Pass the Hugging Face "
            "BERT folder that holds it (config.json, model.safetensors, "
            "vocab.txt) or a keras-hub preset name."
        )
    if _looks_like_path(folder) and not os.path.isdir(folder):
        raise FileNotFoundError(
            f"model={folder!r}: no such folder. Pass a Hugging Face BERT "
            "folder (config.json, model.safetensors, vocab.txt) or a keras-hub "
            "preset name."
        )
    return folder


def config_max_sequence_length(source) -> int | None:
    """The longest input of the model at `source`, from its config.json.

    Reads `max_sequence_length` of a keras-hub preset folder's backbone, or
    `max_position_embeddings` of a Hugging Face folder (keras-hub's BERT
    converter maps one to the other).

    Returns:
        int, or None for a preset name or a folder without a readable
        config (the loaded backbone is checked then).
    """
    try:
        with open(os.path.join(source, "config.json"), encoding="utf-8") as file:
            config = json.load(file)
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    if isinstance(config.get("config"), dict):  # keras-hub: the backbone's
        value = config["config"].get("max_sequence_length")
    else:
        value = config.get("max_position_embeddings")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def check_sequence_length(options: FinetuneOptions, maximum: int | None):
    """Raises unless the model takes `options.sequence_length` tokens.

    Args:
        options: the run's options.
        maximum: int or None. The model's longest input; None skips the
            check.

    Raises:
        ValueError: naming the value, the model and its maximum.
    """
    if maximum is None or options.sequence_length <= maximum:
        return
    name = options.model or DEFAULT_MODEL_NAME
    raise ValueError(
        f"sequence_length must be at most {maximum}, the longest input of "
        f"model {name!r} (its max_sequence_length). Received: "
        f"sequence_length={options.sequence_length}"
    )


def _looks_like_path(name):
    return os.sep in name or name.startswith(".") or os.path.exists(name)
