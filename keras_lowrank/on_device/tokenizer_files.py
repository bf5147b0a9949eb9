"""The tokenizer a trainable artifact carries, so the phone trains on text.

- A keras-hub classifier with a WordPiece preprocessor (BERT, MiniLM): its
  vocabulary as `vocab.txt`, with its case folding and special tokens.
- A causal LM exported with `tokenizer=` (its Hugging Face
  `tokenizer.json`, checked against the model's vocabulary): that file,
  with the start, end and padding ids of its keras-hub preprocessor (the
  end token, without one, from the `tokenizer_config.json` beside the file).
- Otherwise none: the artifact trains on token ids.
"""

import json
import os

from keras_lowrank.generation.runtime_tokenizer import load_tokenizer
from keras_lowrank.on_device import artifact_files
from keras_lowrank.on_device.trainable_module import CAUSAL_LM

# Beside a tokenizer.json: its special tokens (the end token).
CONFIG_FILE = "tokenizer_config.json"


def tokenizer_files(model, task, tokenizer_path=None):
    """`(info dict or None, {file name: bytes})` for the artifact."""
    import keras_hub

    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    if task == CAUSAL_LM:
        if tokenizer_path is None:
            return None, {}
        return _hugging_face_files(model, tokenizer, tokenizer_path)
    if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        vocabulary = tokenizer.get_vocabulary()
        info = {
            "kind": "wordpiece", "file": artifact_files.VOCABULARY_FILE,
            "lowercase": bool(tokenizer.lowercase),
            "strip_accents": bool(tokenizer.strip_accents),
            "cls_token": getattr(tokenizer, "cls_token", "[CLS]"),
            "sep_token": getattr(tokenizer, "sep_token", "[SEP]"),
            "pad_token": getattr(tokenizer, "pad_token", "[PAD]"),
            "unk_token": tokenizer.oov_token,
        }
        return info, {artifact_files.VOCABULARY_FILE: "\n".join(vocabulary).encode("utf-8")}
    return None, {}


def _hugging_face_files(model, tokenizer, path):
    """The `tokenizer.json` and the ids around a completion: the start token
    if the preprocessor adds one, the end token of the preprocessor, else of
    the `tokenizer_config.json` beside the file (`eos_token`)."""
    if not os.path.isfile(path):
        raise ValueError(
            f"`tokenizer` must be the model's tokenizer.json. Received: "
            f"{path!r}, which is not a file.")
    loaded = load_tokenizer(path, int(model.backbone.vocabulary_size))
    preprocessor = getattr(model, "preprocessor", None)
    add_start = bool(getattr(preprocessor, "add_start_token", False))
    end = _id(tokenizer, "end_token_id")
    if end is None:
        end = _config_token(loaded, os.path.join(os.path.dirname(path), CONFIG_FILE))
    info = {
        "kind": "tokenizer.json", "file": artifact_files.TOKENIZER_FILE,
        "start_token_id": _id(tokenizer, "start_token_id") if add_start else None,
        "end_token_id": end,
        "pad_token_id": _id(tokenizer, "pad_token_id") or 0,
    }
    with open(path, "rb") as file:
        return info, {artifact_files.TOKENIZER_FILE: file.read()}


def _config_token(loaded, config_path, key="eos_token"):
    """The id of `key` in a `tokenizer_config.json`, or None."""
    if not os.path.isfile(config_path):
        return None
    with open(config_path, encoding="utf-8") as file:
        token = json.load(file).get(key)
    if isinstance(token, dict):  # {"content": "<|im_end|>", ...}
        token = token.get("content")
    return loaded.token_to_id(token) if isinstance(token, str) else None


def _id(tokenizer, name):
    value = getattr(tokenizer, name, None)
    return None if value is None else int(value)
