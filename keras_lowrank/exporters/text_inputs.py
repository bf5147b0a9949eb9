"""Raw texts where export takes inputs: tokenized by the model's preprocessor.

A keras-hub text task carries its preprocessor (`model.preprocessor`), which
turns strings into the token inputs the backbone takes (`token_ids`,
`padding_mask`, `segment_ids`). Export accepts texts wherever it takes
inputs (`sample_inputs`, `calibration_data`, `eval_data`) and tokenizes them
here, so the token-id artifacts are checked on the very ids an app would
feed them. The token lengths (the padding mask's sums) give the median and
the maximum length that latency is measured at.
"""

import numpy as np

_PADDING_MASK = "padding_mask"


def is_texts(value) -> bool:
    """Whether `value` is a non-empty list, tuple or array of strings."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and value.size > 0 and value.dtype.kind in "USO" and all(
            isinstance(v, (str, bytes, np.str_)) for v in value.tolist()
        )
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(v, str) for v in value)
    )


def as_text_list(value) -> list:
    """`value` (from `is_texts`) as a list of `str`."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in list(value)]


def preprocessor_of(model):
    """The model's keras-hub preprocessor, or None."""
    return getattr(model, "preprocessor", None)


def tokenize(model, texts, what="sample_inputs"):
    """Token inputs `{name: int32 array}` for `texts`, by the model's preprocessor.

    Args:
        model: a keras-hub text task with its `preprocessor`.
        texts: strings.
        what: the argument the texts came in, for the error.

    Raises:
        ValueError: if the model has no preprocessor to tokenize with.
    """
    preprocessor = preprocessor_of(model)
    if preprocessor is None:
        raise ValueError(
            f"`{what}` holds texts, but the model has no preprocessor to "
            "tokenize them (model.preprocessor is None). Pass token inputs "
            f"(a dict of arrays), or a model with its preprocessor. Received: "
            f"{len(texts)} texts for a {type(model).__name__}"
        )
    flat = {}
    for start in range(0, len(texts), 256):  # bounded memory per call
        outputs = preprocessor(as_text_list(texts[start : start + 256]))
        if isinstance(outputs, tuple):  # (x, y, sample_weight) forms
            outputs = outputs[0]
        for name, value in outputs.items():
            flat.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(parts).astype("int32") for name, parts in flat.items()}


def token_lengths(flat) -> np.ndarray:
    """Tokens per row: the padding mask's sums, else the full width."""
    mask = flat.get(_PADDING_MASK)
    if mask is not None and np.ndim(mask) == 2:
        return np.asarray(mask).astype(bool).sum(axis=1)
    first = np.asarray(next(iter(flat.values())))
    width = first.shape[1] if first.ndim >= 2 else 1
    return np.full(first.shape[0], width)


def median_row(flat):
    """Index of the row whose token length is the (upper) median."""
    lengths = token_lengths(flat)
    order = np.argsort(lengths, kind="stable")
    return int(order[len(order) // 2])


def longest_row(flat):
    """Index of the row with the most tokens (the first such)."""
    return int(np.argmax(token_lengths(flat)))


def trimmed_row(flat, row, length):
    """Row `row` as a batch of 1, its sequence inputs cut to `length` columns."""
    trimmed = {}
    for name, value in flat.items():
        value = np.asarray(value)[row : row + 1]
        if value.ndim >= 2 and name in ("token_ids", _PADDING_MASK, "segment_ids"):
            value = value[:, :length]
        trimmed[name] = value
    return trimmed
