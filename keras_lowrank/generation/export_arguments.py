"""The argument checks the generation exporters share.

`export_generator`, `export_litertlm` and `export_onnx_genai` take the same
kinds of argument (a target path, lengths, quantization, prompts, token
ids); each kind is checked here once, with one message, before any slow
work, so a bad argument fails the same way in every exporter.
"""

import numbers
import os

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.utils.atomic import check_target

# The prompt chunk lengths of the LiteRT graphs, those over `max_length` left out.
DEFAULT_PREFILL_LENGTHS = (32, 128)
QUANTIZE_MODES = (None, "dynamic")
# The least next-token agreement (teacher forced on Keras' continuations) a
# dynamic-range int8 artifact must reach. Free-running agreement is only
# reported: once greedy paths part at a near tie they rarely meet again, so
# one early tie costs the rest of that prompt. Measured figures:
# tests/generation/test_quantized_generation.py, docs/export.md.
DEFAULT_MIN_AGREEMENT = 0.8


def check_file_path(path, what) -> str:
    """`path` as a str, checked to be a file `atomic_path` can write.

    Raises:
        ValueError: not a non-empty path, an existing folder, or a folder
            that cannot hold it (`check_target`).
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`path` must be a non-empty file path. Received: {path!r}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{what} writes a file, but {path!r} is an existing folder.")
    check_target(path)
    return path


def is_integer(value) -> bool:
    """An int or NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name, value) -> int:
    """`value` as an int.

    Raises:
        ValueError: it is not a positive integer.
    """
    if not is_integer(value) or value < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return int(value)


def check_prefill_lengths(prefill_lengths, max_length) -> tuple:
    """The sorted prefill chunk lengths; None gives `DEFAULT_PREFILL_LENGTHS`
    up to `max_length` (or `(max_length,)` when none fits).

    Raises:
        ValueError: not a non-empty list of positive integers, or one
            longer than the cache.
    """
    if prefill_lengths is None:
        return tuple(n for n in DEFAULT_PREFILL_LENGTHS if n <= max_length) or (
            max_length,)
    if (not isinstance(prefill_lengths, (list, tuple)) or not prefill_lengths
            or not all(is_integer(n) and n > 0 for n in prefill_lengths)):
        raise ValueError(
            "`prefill_lengths` must be a non-empty list of positive integers. "
            f"Received: prefill_lengths={prefill_lengths!r}")
    if max(prefill_lengths) > max_length:
        raise ValueError(
            f"The cache (max_length={max_length}) is shorter than the longest "
            f"prefill length ({max(prefill_lengths)}): a chunk could not be "
            f"written. Received: prefill_lengths={prefill_lengths!r}")
    return tuple(sorted({int(n) for n in prefill_lengths}))


def check_quantize(quantize, min_agreement, modes=QUANTIZE_MODES):
    """Raises ValueError unless `quantize` is in `modes` (the exporter's;
    default `QUANTIZE_MODES`) and `min_agreement` a number in [0, 1]."""
    if quantize not in modes:
        raise ValueError(
            f"Unrecognized quantize={quantize!r} for generation export. "
            f"Supported modes are: {list(modes)}")
    if (isinstance(min_agreement, bool) or not isinstance(min_agreement, numbers.Real)
            or not 0 <= min_agreement <= 1):
        raise ValueError(
            "`min_agreement` must be a number in [0, 1]. Received: "
            f"min_agreement={min_agreement!r}")


def check_text_prompts(prompts, default) -> tuple:
    """`prompts` as a tuple of non-empty strings; `default` when None.

    Raises:
        ValueError: anything else.
    """
    if prompts is None:
        return tuple(default)
    if (not isinstance(prompts, (list, tuple)) or not prompts
            or not all(isinstance(p, str) and p for p in prompts)):
        raise ValueError(
            "`prompts` must be a non-empty list of non-empty strings (raw "
            f"text). Received: prompts={prompts!r}")
    return tuple(prompts)


def is_token_id(value, vocabulary) -> bool:
    return is_integer(value) and 0 <= value < vocabulary


def check_token_ids(name, ids, vocabulary) -> tuple:
    """`ids` (token ids, any iterable but a str) as a tuple of ints.

    Raises:
        ValueError: not an iterable of ids in [0, vocabulary).
    """
    try:
        values = None if isinstance(ids, str) else tuple(ids)
    except TypeError:
        values = None
    if values is None or not all(is_token_id(t, vocabulary) for t in values):
        raise ValueError(
            f"`{name}` must be token ids in [0, {vocabulary}). "
            f"Received: {name}={ids!r}")
    return tuple(int(t) for t in values)


def start_token(model, start_token_id, vocabulary):
    """The token put before a text prompt's ids, as Keras' `generate()`
    does, or None: `start_token_id` when given, else the preprocessor's
    start token where it adds one (`add_start_token`).

    Raises:
        ValueError: an id outside [0, vocabulary).
    """
    if start_token_id is None:
        start_token_id = cached_causal_lm.added_start_token(model)
        if start_token_id is None:
            return None
    if not is_token_id(start_token_id, vocabulary):
        raise ValueError(
            f"`start_token_id` must be a token id in [0, {vocabulary}). "
            f"Received: start_token_id={start_token_id!r}")
    return int(start_token_id)
