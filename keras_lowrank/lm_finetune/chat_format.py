"""`ChatFormat`: a model folder's tokenizer and chat template, as training
and generation see them.

The tokenizer is the folder's `tokenizer.json` (the `tokenizers` library,
as `keras_lowrank.generation` and the exported artifacts' runner use it,
so training, Keras generation and the runtime see the same ids), checked
against the model's vocabulary. The chat template is the Jinja template of
`tokenizer_config.json` (`chat_template`), rendered in a sandbox as
`transformers` does; the completion ends with the folder's `eos_token`
(SmolLM2: `<|im_end|>`), so that the model learns to stop.
"""

import json
import os

from keras_lowrank.data.data_error import DataError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


class ChatFormat:
    """Renders `LMExample`s as token ids: prompt ids and completion ids.

    Args:
        tokenizer: a `tokenizers.Tokenizer`.
        chat_template: str or None. A Jinja chat template (messages,
            `add_generation_prompt`); None joins the turns' contents with
            newlines.
        eos_token: str or None. Appended to every chat completion.

    Example:
    ```python
    chat = ChatFormat.from_folder(presets.smollm2_path(), 49152)
    prompt_ids, completion_ids = chat.encode(example)
    ```
    """

    def __init__(self, tokenizer, chat_template=None, eos_token=None):
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.eos_token = eos_token
        self._template = None
        if chat_template is not None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            environment = ImmutableSandboxedEnvironment(
                trim_blocks=True, lstrip_blocks=True)
            self._template = environment.from_string(chat_template)

    @classmethod
    def from_folder(cls, folder, vocabulary_size, tokenizer_file=None):
        """The format of a Hugging Face model folder.

        Args:
            folder: str. Holds tokenizer.json and tokenizer_config.json.
            vocabulary_size: int. The model's; the tokenizer must fit it.
            tokenizer_file: optional str. Another tokenizer.json to use.

        Raises:
            FileNotFoundError: no tokenizer.json.
            ValueError: a tokenizer whose ids do not fit the model's
                vocabulary (the message names the file and both sizes), or
                an unreadable tokenizer_config.json.
        """
        from keras_lowrank.generation import load_tokenizer

        path = tokenizer_file or os.path.join(folder, TOKENIZER_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path}: no such file; the model folder needs a "
                f"{TOKENIZER_FILE} (or pass tokenizer_file).")
        tokenizer = load_tokenizer(path, vocabulary_size)
        config = {}
        config_path = os.path.join(folder, TOKENIZER_CONFIG_FILE)
        if os.path.isfile(config_path):
            try:
                with open(config_path, encoding="utf-8") as file:
                    config = json.load(file)
            except ValueError as error:
                raise ValueError(f"{config_path}: invalid JSON ({error})") from None
        return cls(tokenizer, _text_or_none(config.get("chat_template")),
                   _token_text(config.get("eos_token")))

    @property
    def stop_token_ids(self) -> tuple:
        """The eos token's id, as generation stops at it; () without one."""
        if self.eos_token is None:
            return ()
        token_id = self.tokenizer.token_to_id(self.eos_token)
        return () if token_id is None else (int(token_id),)

    def prompt_text(self, messages) -> str:
        """The prompt of `(role, content)` turns, ready for the answer."""
        if self._template is None:
            return "".join(content + "\n" for _, content in messages)
        return self._template.render(
            messages=[{"role": r, "content": c} for r, c in messages],
            add_generation_prompt=True,
            eos_token=self.eos_token or "",
        )

    def encode_text(self, text) -> list:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def encode(self, example):
        """`(prompt_ids, completion_ids)` of an `LMExample`.

        Plain text has no prompt and no eos; a chat completion ends with it.

        Raises:
            DataError: the completion has no tokens (names the line).
        """
        if example.is_plain_text:
            prompt, completion = [], self.encode_text(example.completion)
        else:
            prompt = self.encode_text(self.prompt_text(example.messages))
            completion = self.encode_text(example.completion + (self.eos_token or ""))
        if not completion:
            raise DataError(f"{example.source}: the completion has no tokens")
        return prompt, completion

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


def _text_or_none(value):
    return value if isinstance(value, str) and value else None


def _token_text(value):
    """tokenizer_config.json writes special tokens as text or as objects."""
    if isinstance(value, dict):
        value = value.get("content")
    return _text_or_none(value)
