"""Token ids of causal-LM examples, and length-bucketed batches of them.

Each example is `prompt + completion` tokens, shifted by one: the model
reads `ids[:-1]` and predicts `ids[1:]`. A position's sample weight is 1
where the token it predicts belongs to the completion and 0 elsewhere (the
prompt, and the padding after the row), so the loss falls on completion
tokens only; plain text (no prompt) weighs every token. Batches are cut
to their longest row as the classifier's are (`finetune.batching`: pools
sorted by length, a multiple of 8 positions).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_lowrank.finetune import batching

PAD_ID = 0


@dataclasses.dataclass(frozen=True)
class TokenizedSplit:
    """The model's inputs, targets and weights for one split.

    Args:
        token_ids: int32 (n, length). Inputs, right-padded with `PAD_ID`.
        padding_mask: int32 (n, length). 1 on real tokens.
        targets: int32 (n, length). The next token at each position.
        weights: float32 (n, length). 1 where the target is a completion
            token, else 0.
        prompts: list of lists of int. Each example's prompt ids (what
            generation starts from).
        completions: list of lists of int. Each example's completion ids.
        truncated: int. Examples cut to the sequence length.
        dropped: int. Examples left out: no completion token fit.
        longest: int. Tokens of the longest example (prompt, completion
            and chat template), before truncation.
    """

    token_ids: np.ndarray
    padding_mask: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    prompts: list
    completions: list
    truncated: int = 0
    dropped: int = 0
    longest: int = 0

    def __len__(self):
        return len(self.token_ids)

    @property
    def inputs(self) -> dict:
        return {"token_ids": self.token_ids, "padding_mask": self.padding_mask}

    @property
    def lengths(self) -> np.ndarray:
        return self.padding_mask.sum(axis=1)

    def rows(self, rows, length=None) -> tuple:
        """`(inputs, targets, weights)` of `rows`, cut to `length` positions."""
        length = length or self.token_ids.shape[1]
        return (batching.trim(self.inputs, rows, length),
                self.targets[rows, :length], self.weights[rows, :length])


def encode_split(chat, examples, sequence_length) -> TokenizedSplit:
    """Tokenizes `LMExample`s with `chat` (a `ChatFormat`).

    Args:
        chat: ChatFormat.
        examples: list of LMExample.
        sequence_length: int. The most input positions; a longer example
            loses its last tokens (counted in `truncated`), and one left
            with no completion token is dropped (counted in `dropped`).

    Returns:
        TokenizedSplit.
    """
    rows, prompts, completions, truncated, dropped, longest = [], [], [], 0, 0, 0
    for example in examples:
        prompt, completion = chat.encode(example)
        ids = prompt + completion
        longest = max(longest, len(ids))
        if len(ids) - 1 > sequence_length:
            truncated += 1
            ids = ids[:sequence_length + 1]
        # The first position whose target is a completion token.
        first = max(len(prompt) - 1, 0)
        if first >= len(ids) - 1:
            dropped += 1
            continue
        rows.append((ids, first))
        prompts.append(prompt)
        completions.append(completion)
    length = max([len(ids) - 1 for ids, _ in rows], default=1)
    shape = (len(rows), length)
    token_ids = np.full(shape, PAD_ID, np.int32)
    targets = np.full(shape, PAD_ID, np.int32)
    mask = np.zeros(shape, np.int32)
    weights = np.zeros(shape, np.float32)
    for i, (ids, first) in enumerate(rows):
        n = len(ids) - 1
        token_ids[i, :n], targets[i, :n], mask[i, :n] = ids[:-1], ids[1:], 1
        weights[i, first:n] = 1.0
    return TokenizedSplit(token_ids, mask, targets, weights, prompts,
                          completions, truncated, dropped, longest)


def _signature():
    ids = tf.TensorSpec((None, None), tf.int32)
    return ({"token_ids": ids, "padding_mask": ids}, ids,
            tf.TensorSpec((None, None), tf.float32))


def training_dataset(split, batch_size, seed):
    """Endless `(inputs, targets, weights)` batches, bucketed by length.

    Each pass over the split is reshuffled (`finetune.batching.epoch_batches`
    with a generator seeded by `seed`); training takes steps from it.
    """
    lengths = split.lengths
    rng = np.random.default_rng(seed)

    def generate():
        while True:
            for rows in batching.epoch_batches(lengths, batch_size, rng):
                yield split.rows(rows, _length(split, lengths[rows]))

    return (tf.data.Dataset.from_generator(generate, output_signature=_signature())
            .prefetch(tf.data.AUTOTUNE))


def evaluation_batches(split, batch_size):
    """`(rows, (inputs, targets, weights))` in order of length, every row once."""
    lengths = split.lengths
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        yield rows, split.rows(rows, _length(split, lengths[rows]))


def _length(split, lengths):
    return min(batching.batch_length(lengths), split.token_ids.shape[1])
