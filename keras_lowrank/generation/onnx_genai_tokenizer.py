"""`GenAITokenizerFiles`: the two tokenizer files a GenAI folder needs,
checked before anything is built.

GenAI refuses a folder without `tokenizer.json` or `tokenizer_config.json`,
and takes its chat template from the latter; both are copied unchanged.
The stop tokens of `genai_config.json` are resolved here too: the caller's,
else the keras-hub preprocessor's, else the `eos_token` named in
`tokenizer_config.json` (the start token as for every exporter:
`export_arguments.start_token`).
"""

import dataclasses
import json
import os

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.export_arguments import check_token_ids
from keras_lowrank.generation.export_arguments import is_integer
from keras_lowrank.generation.runtime_tokenizer import load_tokenizer

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


@dataclasses.dataclass(frozen=True)
class GenAITokenizerFiles:
    """A checked `tokenizer.json` and `tokenizer_config.json`.

    Args:
        tokenizer_path: str. The `tokenizer.json`.
        config_path: str. The `tokenizer_config.json` (with a chat template).
        tokenizer: `tokenizers.Tokenizer`. The first, loaded and checked
            against the model's vocabulary.
        config: dict. The second, read.
    """

    tokenizer_path: str
    config_path: str
    tokenizer: object
    config: dict

    def encode(self, text) -> list:
        """`text`'s ids without special tokens: keras-hub's preprocessor
        adds its start token itself, never the tokenizer's template."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def special_token_id(self, key):
        """The id of `tokenizer_config.json`'s `key` (`"bos_token"`, ...),
        or None when it names none or a token the tokenizer lacks."""
        token = self.config.get(key)
        if isinstance(token, dict):  # {"content": "<s>", ...}
            token = token.get("content")
        return None if not isinstance(token, str) else self.tokenizer.token_to_id(token)


def read_tokenizer_files(tokenizer, tokenizer_config, vocabulary_size):
    """Reads and checks the tokenizer files for a model.

    Args:
        tokenizer: path of a Hugging Face `tokenizer.json`.
        tokenizer_config: path of its `tokenizer_config.json`; None: the one
            beside `tokenizer`.
        vocabulary_size: int. The model's vocabulary.

    Returns:
        A `GenAITokenizerFiles`.

    Raises:
        ValueError: no tokenizer, a tokenizer that does not fit the
            vocabulary, or a configuration without a chat template.
        FileNotFoundError: a file is missing.
    """
    if tokenizer is None:
        raise ValueError(
            "export_onnx_genai needs `tokenizer`, the path of the model's "
            "Hugging Face tokenizer.json: GenAI requires it in the folder. "
            "Received: tokenizer=None"
        )
    tokenizer = os.fspath(tokenizer)
    if not os.path.isfile(tokenizer):
        raise FileNotFoundError(
            f"`tokenizer` must be the path of a tokenizer.json file. "
            f"Received: tokenizer={tokenizer!r}, which is not a file."
        )
    loaded = load_tokenizer(tokenizer, vocabulary_size)
    if tokenizer_config is None:
        tokenizer_config = os.path.join(os.path.dirname(tokenizer), TOKENIZER_CONFIG_FILE)
        if not os.path.isfile(tokenizer_config):
            raise FileNotFoundError(
                f"GenAI needs a tokenizer_config.json (it holds the chat "
                f"template); none lies beside the tokenizer at "
                f"{tokenizer_config!r}. Pass tokenizer_config= the model's "
                "tokenizer_config.json. Received: tokenizer_config=None"
            )
    tokenizer_config = os.fspath(tokenizer_config)
    if not os.path.isfile(tokenizer_config):
        raise FileNotFoundError(
            "`tokenizer_config` must be the path of a tokenizer_config.json "
            f"file. Received: tokenizer_config={tokenizer_config!r}, which is "
            "not a file."
        )
    config = _read_json(tokenizer_config)
    template = config.get("chat_template")
    if not isinstance(template, str) or not template.strip():
        raise ValueError(
            f"{tokenizer_config} has no chat template: GenAI takes it from "
            "the `chat_template` string of tokenizer_config.json. Received: "
            f"chat_template={template!r}. Use the model's own "
            "tokenizer_config.json, or add its Jinja chat template there."
        )
    return GenAITokenizerFiles(tokenizer, tokenizer_config, loaded, config)


def stop_tokens(causal_lm, stop_token_ids, files, vocabulary_size):
    """The tokens that end generation (GenAI's `eos_token_id`).

    `stop_token_ids` when given; else the preprocessor tokenizer's end
    token; else `tokenizer_config.json`'s `eos_token`.

    Raises:
        ValueError: none found, or an id outside the vocabulary.
    """
    if stop_token_ids is None:
        end = cached_causal_lm.preprocessor_token(causal_lm, "end_token_id")
        if end is None:
            end = files.special_token_id("eos_token")
        if end is None:
            raise ValueError(
                "GenAI needs an end-of-sequence token, and neither the model's "
                f"preprocessor nor {files.config_path} (eos_token) names one. "
                "Pass stop_token_ids=(id, ...). Received: stop_token_ids=None"
            )
        stop_token_ids = (end,)
    if is_integer(stop_token_ids):
        stop_token_ids = [stop_token_ids]
    stop = check_token_ids("stop_token_ids", stop_token_ids, vocabulary_size)
    if not stop:
        raise ValueError(
            f"`stop_token_ids` must be token ids in [0, {vocabulary_size}), at "
            f"least one. Received: stop_token_ids={stop_token_ids!r}")
    return stop


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable JSON file ({error}).") from None
