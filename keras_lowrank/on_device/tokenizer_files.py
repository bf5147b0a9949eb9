"""The tokenizer a trainable artifact carries, so the phone trains on text.

- A keras-hub classifier with a WordPiece preprocessor (BERT, MiniLM): its
  vocabulary as `vocab.txt`, with its case folding and special tokens.
- A causal LM exported with `tokenizer=` (its Hugging Face
  `tokenizer.json`): that file, with the start, end and padding ids of its
  keras-hub preprocessor.
- Otherwise none: the artifact trains on token ids.
"""

import os

from keras_lowrank.on_device import artifact_files
from keras_lowrank.on_device.trainable_module import CAUSAL_LM


def tokenizer_files(model, task, tokenizer_path=None):
    """`(info dict or None, {file name: bytes})` for the artifact."""
    import keras_hub

    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    if task == CAUSAL_LM:
        if tokenizer_path is None:
            return None, {}
        if not os.path.isfile(tokenizer_path):
            raise ValueError(
                f"`tokenizer` must be the model's tokenizer.json. Received: "
                f"{tokenizer_path!r}, which is not a file.")
        with open(tokenizer_path, "rb") as file:
            content = file.read()
        preprocessor = getattr(model, "preprocessor", None)
        add_start = bool(getattr(preprocessor, "add_start_token", False))
        info = {
            "kind": "tokenizer.json", "file": artifact_files.TOKENIZER_FILE,
            "start_token_id": _id(tokenizer, "start_token_id") if add_start else None,
            "end_token_id": _id(tokenizer, "end_token_id"),
            "pad_token_id": _id(tokenizer, "pad_token_id") or 0,
        }
        return info, {artifact_files.TOKENIZER_FILE: content}
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


def _id(tokenizer, name):
    value = getattr(tokenizer, name, None)
    return None if value is None else int(value)
