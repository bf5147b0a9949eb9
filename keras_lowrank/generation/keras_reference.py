"""`greedy_reference`: Keras' own greedy generation, the artifact's yardstick.

The loop of keras-hub's `generate()` with a greedy sampler, over
`call_with_cache`: the prompt in one call at its exact length, then one
token at a time, argmax each step, on a cache of the exported length. It
runs the model as given (adapters unmerged), so checking an artifact
against it checks the merge, the freezing, the bucketing and the
conversion together.
"""

import dataclasses

import numpy as np

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.utils.optional import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ReferenceGeneration:
    """Keras' greedy tokens and, per token, the top-2 logit gap (a gap near
    0 means a near tie, where float rounding may pick either)."""

    tokens: tuple
    margins: tuple


class GreedyReference:
    """Greedy generation in Keras for one model and cache length.

    The prompt step and the decode steps are one `tf.function` whose token
    axis has no fixed length, traced once at the first call and reused
    across prompts, as keras-hub's `generate()` runs both in its graph
    (a 17-token SmolLM2 prompt: 0.16 s, where the eager call took 0.78 s).
    At the first call the trace is checked to keep the cache's shape
    (`cached_causal_lm.check_step_keeps_cache`).

    Args:
        model: a keras-hub CausalLM with `call_with_cache`.
        cache_shape: tuple. Batch-1 cache shape (from `cache_shape`).
    """

    def __init__(self, model, cache_shape):
        self.model = model
        self.cache_shape = tuple(cache_shape)
        self.max_length = self.cache_shape[3]
        self._step = tf.function(
            lambda token_ids, cache, index: cached_causal_lm.call_with_cache(
                model, token_ids, cache, index),
            input_signature=[tf.TensorSpec((1, None), tf.int32),
                             tf.TensorSpec(self.cache_shape, tf.float32),
                             tf.TensorSpec((), tf.int32)])
        self._checked = False

    def __call__(self, prompt_ids, max_new_tokens) -> ReferenceGeneration:
        """Greedy tokens after `prompt_ids`, stopping only at
        `max_new_tokens` or a full cache, as `Generator.greedy` without
        stop tokens.

        Raises:
            TypeError: the model's `call_with_cache` returns a cache of
                another shape than it was given (at the first call).
        """
        self._check_step()
        prompt = np.asarray(prompt_ids, np.int32)[None, :]
        logits, cache = self._step(
            tf.constant(prompt), tf.zeros(self.cache_shape, tf.float32),
            tf.constant(0, tf.int32))
        tokens, margins = [], []
        self._choose(np.asarray(logits)[0, -1], tokens, margins)
        index = prompt.shape[1]
        while len(tokens) < max_new_tokens and index < self.max_length:
            logits, cache = self._step(
                tf.constant([[tokens[-1]]], tf.int32), cache,
                tf.constant(index, tf.int32),
            )
            self._choose(np.asarray(logits)[0, 0], tokens, margins)
            index += 1
        return ReferenceGeneration(tuple(tokens), tuple(margins))

    def _check_step(self):
        if not self._checked:
            cached_causal_lm.check_step_keeps_cache(self.model, self._step)
            self._checked = True

    @staticmethod
    def _choose(logits, tokens, margins):
        top2 = np.partition(logits, -2)[-2:]
        tokens.append(int(np.argmax(logits)))
        margins.append(float(abs(top2[1] - top2[0])))


def checked_reference(reference, model, cache_shape) -> GreedyReference:
    """`reference`, checked to run `model` on `cache_shape`; a new
    `GreedyReference` when None (an exporter's `reference=` argument).

    Raises:
        TypeError: `reference` is not a `GreedyReference`.
        ValueError: it runs another model or another cache shape.
    """
    if reference is None:
        return GreedyReference(model, cache_shape)
    if not isinstance(reference, GreedyReference):
        raise TypeError(
            "`reference` must be a GreedyReference "
            "(keras_lowrank.generation.keras_reference). Received: "
            f"{type(reference).__name__}")
    if reference.model is not model or reference.cache_shape != tuple(cache_shape):
        raise ValueError(
            "`reference` must run the exported model on the export's cache "
            f"shape {tuple(cache_shape)}. Received: a GreedyReference of "
            f"{type(reference.model).__name__} on {reference.cache_shape}; "
            "make it with GreedyReference(causal_lm, cache_shape(causal_lm, "
            "max_length)).")
    return reference


def greedy_reference(model, prompt_ids, max_new_tokens, max_length):
    """Keras' greedy tokens after `prompt_ids` (see `GreedyReference`).

    Example:
    ```python
    tokens = greedy_reference(causal_lm, [5, 9, 3], 32, max_length=128).tokens
    ```
    """
    cached_causal_lm.check_cached_causal_lm(model, "greedy_reference")
    shape = cached_causal_lm.cache_shape(model, max_length)
    return GreedyReference(model, shape)(prompt_ids, max_new_tokens)
