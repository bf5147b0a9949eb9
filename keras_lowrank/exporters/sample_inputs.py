"""Inputs that verification runs through Keras and through the runtime.

Either the user's own arrays, or arrays made from the input signature: for
keras-hub text models realistic token batches (`token_ids` below the
vocabulary size, a `padding_mask` of ones then zeros, `segment_ids` of a
sentence pair), for anything else seeded random values. The user's arrays
are checked up front against what the model accepts: for a keras-hub text
model, token ids below the backbone's `vocabulary_size` and sequences no
longer than its `max_sequence_length` (Keras would fail deep inside).
"""

import keras
import numpy as np

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.exporters.signature import flat_specs
from keras_lowrank.exporters.signature import input_names

# Batch sizes checked in every runtime: 1 and at least this many rows.
VERIFY_BATCH_SIZE = 8
# Length used for a `None` non-batch dimension, capped by the model's maximum.
DEFAULT_SEQUENCE_LENGTH = 64

_TOKEN_IDS = "token_ids"
_PADDING_MASK = "padding_mask"
_SEGMENT_IDS = "segment_ids"
# keras-hub's text inputs, of shape (batch, sequence_length).
_SEQUENCE_INPUTS = (_TOKEN_IDS, _PADDING_MASK, _SEGMENT_IDS)


def to_flat_inputs(signature, inputs, what="sample_inputs"):
    """Validates `inputs` against `signature`; returns `{name: ndarray}`.

    Args:
        signature: the structure from `input_signature`.
        inputs: a dict keyed by input name, a list in input order, or a
            single array for a single-input model.
        what: the argument name used in error messages.
    """
    names = input_names(signature)
    specs = flat_specs(signature)
    if isinstance(inputs, dict):
        flat = dict(inputs)
    elif isinstance(inputs, (list, tuple)):
        if len(inputs) != len(names):
            raise ValueError(
                f"`{what}` must hold one array per model input {names}. "
                f"Received: {len(inputs)} arrays"
            )
        flat = dict(zip(names, inputs))
    elif len(names) == 1:
        flat = {names[0]: inputs}
    else:
        raise ValueError(
            f"`{what}` must be a dict keyed by input name for a model with "
            f"inputs {names}. Received: {type(inputs).__name__}"
        )
    if sorted(flat) != sorted(names):
        raise ValueError(
            f"`{what}` must have exactly the model's inputs {sorted(names)}. "
            f"Received: keys={sorted(flat)}"
        )
    result = {}
    for name in names:
        array = np.asarray(flat[name]).astype(specs[name].dtype.as_numpy_dtype)
        expected = specs[name].shape
        if array.ndim != expected.rank or not expected[1:].is_compatible_with(
            array.shape[1:]
        ):
            raise ValueError(
                f"`{what}[{name!r}]` does not fit the input shape "
                f"{tuple(expected)}. Received: shape={array.shape}"
            )
        result[name] = array
    return result


def check_input_ranges(model, flat, what="sample_inputs"):
    """Raises unless `flat` holds values the model accepts.

    For a keras-hub text model (a task or a backbone): `token_ids` in
    `[0, vocabulary_size)` and sequences of `token_ids`, `padding_mask` and
    `segment_ids` at most `max_sequence_length` long, as the backbone says.
    Other models and inputs pass unchecked.

    Args:
        model: the Keras model.
        flat: `{name: ndarray}`, from `to_flat_inputs`.
        what: the argument name used in error messages.

    Raises:
        ValueError: naming the input, the received value (the largest or
            smallest id, the length) and the allowed range.
    """
    vocabulary_size = _backbone_attr(model, "vocabulary_size")
    ids = flat.get(_TOKEN_IDS)
    if vocabulary_size and ids is not None and ids.size and _is_integer(ids):
        allowed = (
            f"the model's vocabulary_size is {vocabulary_size}, so ids must be "
            f"in [0, {vocabulary_size - 1}]"
        )
        if int(ids.max()) >= vocabulary_size:
            raise ValueError(
                f"`{what}[{_TOKEN_IDS!r}]` holds ids outside the vocabulary: "
                f"{allowed}. Received: largest id {int(ids.max())}"
            )
        if int(ids.min()) < 0:
            raise ValueError(
                f"`{what}[{_TOKEN_IDS!r}]` holds negative ids: {allowed}. "
                f"Received: smallest id {int(ids.min())}"
            )
    max_length = _backbone_attr(model, "max_sequence_length")
    for name in _SEQUENCE_INPUTS:
        value = flat.get(name)
        if max_length and value is not None and value.ndim >= 2:
            if value.shape[1] > max_length:
                raise ValueError(
                    f"`{what}[{name!r}]` holds sequences longer than the "
                    f"model's max_sequence_length={max_length}: the length "
                    f"must be 1 to {max_length}. Received: length "
                    f"{value.shape[1]} (shape={value.shape})"
                )


def make_sample_inputs(model, signature, batch_size, seed=0):
    """Makes a batch of `batch_size` rows for every input of `signature`."""
    rng = np.random.default_rng(seed)
    specs = flat_specs(signature)
    max_length = _backbone_attr(model, "max_sequence_length")
    length = DEFAULT_SEQUENCE_LENGTH
    if max_length:
        length = min(length, int(max_length))
    vocabulary_size = _vocabulary_size(model)
    shapes = {
        name: (batch_size,) + tuple(d if d is not None else length for d in s.shape[1:])
        for name, s in specs.items()
    }
    mask = None
    if _PADDING_MASK in specs and len(shapes[_PADDING_MASK]) == 2:
        mask = _padding_mask(rng, shapes[_PADDING_MASK])
    flat = {}
    for name, spec in specs.items():
        shape, dtype = shapes[name], spec.dtype.as_numpy_dtype
        if name == _PADDING_MASK and mask is not None:
            value = mask
        elif name == _TOKEN_IDS and spec.dtype.is_integer:
            high = vocabulary_size or 2
            value = rng.integers(1, max(high, 2), size=shape)
            if mask is not None and mask.shape == shape:
                value = value * mask  # padding id 0 after the text
        elif name == _SEGMENT_IDS and spec.dtype.is_integer:
            value = _segment_ids(model, mask, shape)
        elif spec.dtype.is_bool:
            value = rng.integers(0, 2, size=shape)
        elif spec.dtype.is_integer:
            value = rng.integers(0, vocabulary_size or 2, size=shape)
        else:
            value = rng.standard_normal(size=shape)
        flat[name] = np.asarray(value).astype(dtype)
    return flat


def verification_batches(model, signature, sample_inputs=None, seed=0):
    """The batches to verify: batch 1 and a batch of >= 8 rows.

    User inputs of `n` rows give their first row and the rows repeated
    cyclically up to `max(n, 8)` rows; without inputs both are made by
    `make_sample_inputs`.

    Returns:
        A list of `{name: ndarray}`, smallest batch first.
    """
    if sample_inputs is None:
        flat = make_sample_inputs(model, signature, VERIFY_BATCH_SIZE, seed)
    else:
        flat = to_flat_inputs(signature, sample_inputs)
        check_input_ranges(model, flat)
    rows = {int(value.shape[0]) for value in flat.values()}
    if len(rows) != 1 or 0 in rows:
        raise ValueError(
            "All sample inputs must share one non-zero batch size. Received: "
            f"{ {name: value.shape for name, value in flat.items()} }"
        )
    (n,) = rows
    large = max(n, VERIFY_BATCH_SIZE)
    index = np.arange(large) % n
    return [
        {name: value[:1] for name, value in flat.items()},
        {name: value[index] for name, value in flat.items()},
    ]


def _padding_mask(rng, shape):
    batch, length = shape
    lengths = rng.integers(max(length // 2, 1), length + 1, size=batch)
    lengths[0] = length  # one row without padding
    return (np.arange(length)[None, :] < lengths[:, None]).astype("int32")


def _segment_ids(model, mask, shape):
    segments = np.zeros(shape, dtype="int32")
    num_segments = _backbone_attr(model, "num_segments") or 1
    if num_segments >= 2 and mask is not None and mask.shape == shape:
        lengths = mask.sum(axis=1)
        # A sentence pair: the second half of the text is segment 1.
        second = np.arange(shape[1])[None, :] >= (lengths[:, None] // 2)
        segments = (second & (mask > 0)).astype("int32")
    return segments


def _is_integer(array):
    return np.issubdtype(array.dtype, np.integer)


def _backbone_attr(model, name):
    backbone = getattr(model, "backbone", model)
    value = getattr(backbone, name, None)
    return value if isinstance(value, int) else None


def _vocabulary_size(model):
    size = _backbone_attr(model, "vocabulary_size")
    if size:
        return size
    sizes = [
        layer.input_dim
        for layer in keras_compat.flatten_layers(model, include_self=False)
        if isinstance(layer, keras.layers.Embedding)
    ]
    return min(sizes) if sizes else None
