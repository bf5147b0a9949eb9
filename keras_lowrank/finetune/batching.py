"""Batches of token ids padded to their own longest text, not to the maximum.

MR sentences have a median of 26 tokens under a sequence length of 64, so a
batch cut to its longest row costs about half the compute of a full-length
one. The padding mask hides the pad positions from attention and the
classifier reads the first token, so logits do not depend on how much
padding a row gets: trimming changes speed, not results.
"""

import numpy as np
import tensorflow as tf

PADDING_MASK = "padding_mask"
# Batch lengths are rounded up to a multiple of this: fewer distinct shapes.
LENGTH_MULTIPLE = 8
# Training batches are formed within pools of this many batches, sorted by
# length inside each pool: similar lengths together, the order still random.
POOL_BATCHES = 50


def lengths_of(inputs):
    """Tokens per row (the padding mask's sum), shape (n,)."""
    return np.asarray(inputs[PADDING_MASK]).astype(bool).sum(axis=1)


def trim(inputs, rows, length):
    """Rows `rows` of every input, cut to the first `length` positions."""
    return {name: value[rows, :length] for name, value in inputs.items()}


def batch_length(lengths):
    """The padded length of a batch whose rows have `lengths` tokens."""
    longest = int(np.max(lengths)) if len(lengths) else 1
    return -(-max(longest, 1) // LENGTH_MULTIPLE) * LENGTH_MULTIPLE


def length_sorted_batches(inputs, labels, batch_size):
    """Yields `(inputs, labels)` batches in order of length, each trimmed.

    Every row is yielded once; used for evaluation, where order is free.
    """
    lengths = lengths_of(inputs)
    order = np.argsort(lengths, kind="stable")
    full = next(iter(inputs.values())).shape[1]
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        length = min(batch_length(lengths[rows]), full)
        yield trim(inputs, rows, length), labels[rows]


def epoch_batches(lengths, batch_size, rng):
    """Row indices of one training epoch's batches, in a random order.

    Rows are shuffled, cut into pools of `POOL_BATCHES` batches, sorted by
    length within each pool and cut into batches; the batches are shuffled.
    """
    order = rng.permutation(len(lengths))
    pool = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, len(order), pool):
        rows = order[start:start + pool]
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def training_dataset(inputs, labels, batch_size, seed, epoch=None):
    """A tf.data.Dataset of length-bucketed batches, reshuffled each epoch.

    Args:
        inputs: `{name: int32 array (n, sequence_length)}`.
        labels: int64 array (n,).
        batch_size: int.
        seed: int. Seeds the epoch orders (epoch `k` differs from epoch 0):
            the k-th order drawn from it is epoch k's.
        epoch: callable returning the index of the epoch being trained, or
            None: each pass over the dataset is then the next epoch. With
            it, a pass that is not an epoch takes the current epoch's order
            and draws nothing: Keras' `fit` under a `tf.distribute` strategy
            reads one batch of an extra pass to build the model first.

    Returns:
        A dataset of `(inputs, labels)` with a known number of batches.
    """
    lengths = lengths_of(inputs)
    full = next(iter(inputs.values())).shape[1]
    rng = np.random.default_rng(seed)
    orders, passes = [], [0]

    def generate():
        index = passes[0] if epoch is None else epoch()
        passes[0] += 1
        while len(orders) <= index:
            orders.append(epoch_batches(lengths, batch_size, rng))
        for rows in orders[index]:
            length = min(batch_length(lengths[rows]), full)
            yield trim(inputs, rows, length), labels[rows]

    signature = (
        {
            name: tf.TensorSpec((None, None), tf.as_dtype(value.dtype), name=name)
            for name, value in inputs.items()
        },
        tf.TensorSpec((None,), tf.int64),
    )
    steps = -(-len(labels) // batch_size)
    return (
        tf.data.Dataset.from_generator(generate, output_signature=signature)
        .apply(tf.data.experimental.assert_cardinality(steps))
        .prefetch(tf.data.AUTOTUNE)
    )


def evaluation_dataset(inputs, labels, batch_size):
    """A tf.data.Dataset of `length_sorted_batches`, for validation."""
    batches = list(length_sorted_batches(inputs, labels, batch_size))
    signature = (
        {
            name: tf.TensorSpec((None, None), tf.as_dtype(value.dtype), name=name)
            for name, value in inputs.items()
        },
        tf.TensorSpec((None,), tf.int64),
    )
    return (
        tf.data.Dataset.from_generator(lambda: iter(batches), output_signature=signature)
        .apply(tf.data.experimental.assert_cardinality(len(batches)))
        .prefetch(tf.data.AUTOTUNE)
    )
