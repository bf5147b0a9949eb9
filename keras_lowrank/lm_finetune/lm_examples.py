"""Readers of language-model training files: `LMExample` and `read_lm_file`.

Three kinds of example, each one line of JSONL (any mix in one file), or
plain text:
- `{"prompt": "...", "completion": "..."}`: the prompt becomes a user turn
  of the model's chat template; the loss falls on the completion only.
- `{"messages": [{"role": ..., "content": ...}, ...]}`: a chat whose last
  message (the assistant's) is the completion; the turns before it are the
  prompt.
- `{"text": "..."}` (the key is `text_field`), or a `.txt` file of
  paragraphs separated by blank lines: plain text, loss on every token.

Every problem is a `DataError` naming the file and the line.
"""

import dataclasses
import json
import os

from keras_lowrank.data.data_error import DataError

TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl", ".json")
ROLES = ("system", "user", "assistant")


@dataclasses.dataclass(frozen=True)
class LMExample:
    """One training example of a causal LM.

    Args:
        messages: tuple of `(role, content)` pairs before the completion;
            empty for plain text (no chat template, loss on every token).
        completion: str. The text the loss is computed on.
        source: str. `file:line` it came from, for error messages.
    """

    messages: tuple
    completion: str
    source: str = ""

    @property
    def is_plain_text(self) -> bool:
        return not self.messages


def read_lm_file(path, text_field="text") -> list:
    """The `LMExample`s of one `.jsonl` or `.txt` file, in file order.

    Args:
        path: str. A `.jsonl` (or `.json`, one object a line) or `.txt` file.
        text_field: str. The JSON key of plain-text examples.

    Returns:
        list of `LMExample`.

    Raises:
        DataError: a missing or empty file, an unknown suffix, a line that
            is not a JSON object or lacks the fields of every kind; the
            message names the file and the line.

    Example:
    ```python
    examples = read_lm_file("train.jsonl")
    examples[0].messages, examples[0].completion
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in TEXT_SUFFIXES:
        examples = _read_text(path)
    elif suffix in JSONL_SUFFIXES:
        examples = _read_jsonl(path, text_field)
    else:
        raise DataError(
            f"{path}: unrecognized file type {suffix!r}. Supported types "
            f"are: {list(JSONL_SUFFIXES + TEXT_SUFFIXES)}"
        )
    if not examples:
        raise DataError(f"{path}: empty file, no examples")
    return examples


def _read_text(path):
    with open(path, encoding="utf-8") as file:
        text = file.read()
    examples, lines, start = [], [], 1
    for number, line in enumerate(text.split("\n") + [""], start=1):
        if line.strip():
            if not lines:
                start = number
            lines.append(line)
        elif lines:
            examples.append(LMExample((), "\n".join(lines), f"{path}:{start}"))
            lines = []
    return examples


def _read_jsonl(path, text_field):
    examples = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                examples.append(_example(line, f"{path}:{number}", text_field))
    return examples


def _example(line, where, text_field):
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: invalid JSON ({error.msg} at column "
                        f"{error.colno})") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object. Received: "
                        f"{type(record).__name__}")
    if "prompt" in record or "completion" in record:
        prompt = _string(record, "prompt", where)
        return LMExample((("user", prompt),),
                         _string(record, "completion", where), where)
    if "messages" in record:
        return _chat_example(record["messages"], where)
    if text_field in record:
        return LMExample((), _string(record, text_field, where), where)
    raise DataError(
        f"{where}: expected 'prompt' and 'completion', 'messages', or "
        f"{text_field!r} fields. Received keys: {sorted(record)}"
    )


def _chat_example(messages, where):
    if not isinstance(messages, list) or len(messages) < 2:
        raise DataError(f"{where}: 'messages' must be a list of at least two "
                        "messages ending with the assistant's")
    turns = []
    for index, message in enumerate(messages):
        if (not isinstance(message, dict)
                or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise DataError(
                f"{where}: messages[{index}] must be an object with 'role' in "
                f"{list(ROLES)} and a string 'content'. Received: {message!r}"
            )
        turns.append((message["role"], message["content"]))
    if turns[-1][0] != "assistant":
        raise DataError(f"{where}: the last message is the completion and "
                        f"must be the assistant's. Received role: {turns[-1][0]!r}")
    return LMExample(tuple(turns[:-1]), turns[-1][1], where)


def _string(record, key, where):
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {key!r} must be a non-empty string. "
                        f"Received: {key}={value!r}")
    return value
