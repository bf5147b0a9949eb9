"""`load_tokenizer`: a `tokenizer.json`, checked against a model's vocabulary.

Needs only `tokenizers`: no TensorFlow, no Keras, no keras_lowrank import,
since `runtime.py` loads this file by path beside it on machines that have
nothing else (`export/generate.py`).
"""

import os

# The model's vocabulary may exceed the tokenizer's by fewer ids than this:
# embedding matrices are often padded to a multiple of 64 or 128.
VOCABULARY_PADDING = 128


def load_tokenizer(path, vocabulary_size):
    """A `tokenizers.Tokenizer` from `tokenizer.json`, checked against the model.

    Raises:
        ValueError: the file is not a tokenizer, or its vocabulary does not
            fit the model's: an id at or past `vocabulary_size`, or fewer
            ids than the model's by `VOCABULARY_PADDING` or more.
    """
    try:
        from tokenizers import Tokenizer
    except ImportError as error:
        raise ImportError(
            "tokenizers is required to read tokenizer.json: "
            "pip install 'tokenizers==0.23.3'"
        ) from error
    try:
        tokenizer = Tokenizer.from_file(os.fspath(path))
    except Exception as error:  # tokenizers raises a bare Exception
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"{path} is not a readable tokenizer.json ({reason})."
        ) from None
    check_tokenizer(tokenizer, vocabulary_size, path)
    return tokenizer


def check_tokenizer(tokenizer, vocabulary_size, source="the tokenizer"):
    """Raises ValueError unless `tokenizer`'s ids fit a model's vocabulary."""
    ids = tokenizer.get_vocab(with_added_tokens=True).values()
    size = max(ids) + 1 if ids else 0
    if size > vocabulary_size or vocabulary_size - size >= VOCABULARY_PADDING:
        raise ValueError(
            f"{source} does not match the model: its ids go up to {size - 1} "
            f"({size} tokens) but the model has a vocabulary of "
            f"{vocabulary_size} (allowed: "
            f"{max(1, vocabulary_size - VOCABULARY_PADDING + 1)} to "
            f"{vocabulary_size} tokens)."
        )
