"""Text to the fixed-size batches of a trainable artifact, without TensorFlow.

Needs `numpy` and `tokenizers` only: `export/train_on_device.py` loads this
file by path. The tokenizer comes from the artifact itself (`vocab.txt` or
`tokenizer.json`, `load_tokenizer`); rows follow the artifact's contract:

- classifier: `[CLS] word pieces [SEP]`, padded with `[PAD]` to
  `sequence_length` and truncated to it (keeping `[SEP]` last), as
  keras-hub's `BertTextClassifierPreprocessor`; `segment_ids` all 0.
- causal LM: a window of `sequence_length + 1` tokens, `start` (when the
  artifact has one), prompt, completion, `end` (when it has one), truncated
  to the window (the start kept): `token_ids` its first T tokens, `labels`
  the next ones, `loss_mask` 1.0 where the label is a completion token.

`batches` yields exactly `batch_size` rows each time: a short last batch of
a classifier is filled with the first rows of the epoch (they count twice
in that epoch), one of a causal LM is padded with all-zero rows whose
`loss_mask` is 0 (they count nothing).
"""

import dataclasses
import json
import os
import sys

import numpy as np

if __package__:
    from keras_lowrank.generation import runtime_tokenizer
    from keras_lowrank.on_device import artifact_files
else:  # loaded by path, without the package (and Keras): standalone.py
    artifact_files = sys.modules["_klr_standalone"].load("artifact_files")
    runtime_tokenizer = sys.modules["_klr_standalone"].load("../generation/runtime_tokenizer")


@dataclasses.dataclass(frozen=True)
class Rows:
    """Rows of one task: `inputs` `{name: (N, T)}`, `labels` `(N,)` or
    `(N, T)`, `loss_mask` `(N, T)` float32 (causal LM) or None."""

    inputs: dict
    labels: np.ndarray
    loss_mask: np.ndarray | None = None

    def __len__(self):
        return len(self.labels)

    def take(self, indices):
        """The rows at `indices`, in that order."""
        return Rows({k: v[indices] for k, v in self.inputs.items()}, self.labels[indices],
                    None if self.loss_mask is None else self.loss_mask[indices])


# === Tokenizers ===


def load_tokenizer(path, metadata):
    """The `tokenizers.Tokenizer` an artifact carries.

    Raises:
        ValueError: the artifact carries no tokenizer, or a broken one.
    """
    info = metadata.get("tokenizer")
    if not info:
        raise ValueError(
            f"'{path}' carries no tokenizer (its model took token ids). Give "
            "token ids to OnDeviceTrainer directly, or export a model with a preprocessor.")
    content = artifact_files.read_file(path, info["file"]).decode("utf-8")
    if info["kind"] == "wordpiece":
        return wordpiece_tokenizer(content.removesuffix("\n").split("\n"), info)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(content)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    runtime_tokenizer.check_tokenizer(tokenizer, metadata["vocabulary_size"], f"'{path}' tokenizer")
    return tokenizer


def wordpiece_tokenizer(vocabulary, info):
    """keras-hub's `BertTokenizer` as a `tokenizers.Tokenizer`.

    Args:
        vocabulary: list of tokens, in id order.
        info: the metadata's `tokenizer` entry: `lowercase` (then NFKC and
            lowercase, as keras-hub's case folding), `strip_accents`
            (default: `lowercase`; NFD then drop marks), the special tokens.
    """
    from tokenizers import Tokenizer
    from tokenizers import models
    from tokenizers import normalizers
    from tokenizers import pre_tokenizers

    ids = {token: i for i, token in enumerate(vocabulary)}
    special = [info[k] for k in ("cls_token", "sep_token", "pad_token", "unk_token")]
    absent = [token for token in special if token not in ids]
    if absent:
        raise ValueError(f"The artifact's vocab.txt lacks the special token(s) {absent}.")
    tokenizer = Tokenizer(models.WordPiece(ids, unk_token=info["unk_token"]))
    steps = [normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True,
        strip_accents=info.get("strip_accents", info["lowercase"]), lowercase=False)]
    if info["lowercase"]:
        steps += [normalizers.NFKC(), normalizers.Lowercase()]
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


# === Examples ===


def read_examples(path, metadata):
    """The examples of a `.jsonl` file: `(text, label id)` pairs for a
    classifier (`{"text", "label"}`), `(prompt, completion)` for a causal LM.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: a line that is not such a JSON object, or a label that
            is not one of the artifact's; naming the line number.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No examples file at '{path}'.")
    fields = ("text", "label") if metadata["task"] == "classifier" else ("prompt", "completion")
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"'{path}' line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where} is not valid JSON ({error.msg}).") from None
            if not isinstance(record, dict) or any(k not in record for k in fields):
                raise ValueError(f"{where} must be a JSON object with {list(fields)}. Received: {line.strip()[:80]}")
            texts = fields if fields[1] == "completion" else fields[:1]
            if not all(isinstance(record[k], str) for k in texts):
                raise ValueError(f"{where}: {list(texts)} must be text. Received: {line.strip()[:80]}")
            second = label_id(metadata, record["label"], where) if fields[1] == "label" else record[fields[1]]
            examples.append((record[fields[0]], second))
    if not examples:
        raise ValueError(f"'{path}' holds no examples.")
    return examples


def label_id(metadata, label, where):
    """The class id of `label` (an id or one of the artifact's label names)."""
    names, count = metadata.get("labels"), metadata["num_classes"]
    if isinstance(label, str) and names and label in names:
        return names.index(label)
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < count:
        return label
    allowed = f"an id in [0, {count})" + (f" or one of {names}" if names else "")
    raise ValueError(f"{where}: label {label!r} is not {allowed}.")


def rows(tokenizer, metadata, examples):
    """The `Rows` of `read_examples`' examples, for the artifact's task."""
    if metadata["task"] == "classifier":
        return classifier_rows(tokenizer, metadata, *zip(*examples))
    return causal_lm_rows(tokenizer, metadata, examples)


def classifier_rows(tokenizer, metadata, texts, labels):
    """`Rows` of texts and labels (ids or label names) for a classifier."""
    info, length = metadata["tokenizer"], metadata["sequence_length"]
    cls, sep, pad = (tokenizer.token_to_id(info[k]) for k in ("cls_token", "sep_token", "pad_token"))
    token_ids = np.full((len(texts), length), pad, np.int32)
    for row, encoding in enumerate(tokenizer.encode_batch(list(texts), add_special_tokens=False)):
        pieces = [cls] + encoding.ids[:length - 2] + [sep]
        token_ids[row, :len(pieces)] = pieces
    padding_mask = token_ids != pad
    ids = [label_id(metadata, label, f"row {row}") for row, label in enumerate(labels)]
    return Rows(_inputs(metadata, token_ids, padding_mask), np.asarray(ids, np.int32))


def causal_lm_rows(tokenizer, metadata, pairs):
    """`Rows` of `(prompt, completion)` pairs for a causal LM.

    Raises:
        ValueError: a pair leaves no completion token in the window of
            `sequence_length + 1` tokens (its prompt is too long, or both
            its completion and the end token are empty), naming the row.
    """
    info, length = metadata["tokenizer"], metadata["sequence_length"]
    start = [info["start_token_id"]] if info.get("start_token_id") is not None else []
    end = [info["end_token_id"]] if info.get("end_token_id") is not None else []
    pad = info["pad_token_id"]
    token_ids = np.full((len(pairs), length), pad, np.int32)
    labels = np.full((len(pairs), length), pad, np.int32)
    loss_mask = np.zeros((len(pairs), length), np.float32)
    padding_mask = np.zeros((len(pairs), length), bool)
    for row, (prompt, completion) in enumerate(pairs):
        head = start + tokenizer.encode(prompt, add_special_tokens=False).ids
        window = (head + tokenizer.encode(completion, add_special_tokens=False).ids + end)[:length + 1]
        count, first = len(window) - 1, max(len(head) - 1, 0)  # label t is token t + 1
        if count <= first:
            raise ValueError(
                f"Row {row}: its prompt takes {len(head)} of the {length + 1} tokens of a "
                "window and leaves no completion token to learn. Shorten the prompt, "
                "give a completion, or export with a longer sequence_length.")
        token_ids[row, :count] = window[:-1]
        labels[row, :count] = window[1:]
        padding_mask[row, :count] = True
        loss_mask[row, first:count] = 1.0
    return Rows(_inputs(metadata, token_ids, padding_mask), labels, loss_mask)


def _inputs(metadata, token_ids, padding_mask):
    inputs = {"token_ids": token_ids,
              "padding_mask": padding_mask.astype(metadata["inputs"]["padding_mask"]["dtype"])}
    if "segment_ids" in metadata["inputs"]:
        inputs["segment_ids"] = np.zeros_like(token_ids)
    return inputs


# === Batches ===


def batches(rows, batch_size):
    """Yields `(batch, count)`: `Rows` of exactly `batch_size` rows, of
    which the first `count` are new (see the module docstring)."""
    if not len(rows):
        raise ValueError("No rows to batch.")
    for begin in range(0, len(rows), batch_size):
        indices = np.arange(begin, min(begin + batch_size, len(rows)))
        count = len(indices)
        if rows.loss_mask is None:  # classifier: fill from the epoch's first rows
            indices = np.resize(np.concatenate([indices, np.arange(len(rows))]), batch_size)
            yield rows.take(indices), count
            continue
        batch, fill = rows.take(indices), batch_size - count
        pad = lambda a: np.concatenate([a, np.zeros((fill, *a.shape[1:]), a.dtype)])  # noqa: E731
        yield Rows({k: pad(v) for k, v in batch.inputs.items()}, pad(batch.labels),
                   pad(batch.loss_mask)), count
