"""Measures of a causal LM: held-out loss and perplexity on completion
tokens, greedy generation in Keras or in an exported artifact's runtime,
and the accuracy of generated answers.

An answer is right when the first words of the generated text equal the
reference's words, case, surrounding punctuation and spacing aside: for the
MR task, the generation's first word must be the label word.
"""

import re
import time

import keras
import numpy as np
import tensorflow as tf

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.lm_finetune import lm_batches

# Tokens generated past the longest reference answer when scoring.
ANSWER_SLACK = 2
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def forward_function(model):
    """`model(inputs, training=False)` as one graph for every batch shape
    (traced once, not per length)."""
    ids = tf.TensorSpec((None, None), tf.int32)
    return tf.function(lambda x: model(x, training=False), input_signature=[
        {"token_ids": ids, "padding_mask": ids}])


def heldout_loss(model, split, batch_size, forward=None) -> dict:
    """Mean cross-entropy per completion token, its exponential, and the
    share of completion tokens that are the argmax of their logits.

    Args:
        model: a keras-hub CausalLM (preprocessor None).
        split: lm_batches.TokenizedSplit.
        batch_size: int.
        forward: optional. `forward_function(model)`, traced already.

    Returns:
        `{"loss", "perplexity", "accuracy", "tokens", "seconds"}`; the
        first three are None for an empty split.
    """
    start = time.perf_counter()
    forward = forward or forward_function(model)
    total, right, count = 0.0, 0.0, 0.0
    for _, (inputs, targets, weights) in lm_batches.evaluation_batches(split, batch_size):
        logits = forward({k: tf.constant(v) for k, v in inputs.items()})
        # (batch, length): -log p(target) at each position.
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(targets), logits=tf.cast(logits, tf.float32))
        total += float(np.sum(np.asarray(nll, np.float64) * weights))
        right += float(np.sum((np.argmax(logits, axis=-1) == targets) * weights))
        count += float(np.sum(weights))
    loss = total / count if count else None
    return {"loss": loss, "perplexity": None if loss is None else float(np.exp(loss)),
            "accuracy": right / count if count else None,
            "tokens": int(count), "seconds": time.perf_counter() - start}


class HeldOutValidation(keras.callbacks.Callback):
    """Validation after each round of `fit`, through the run's own traced
    forward pass: `val_loss` and `val_accuracy` in the round's logs are
    `heldout_loss`'s loss and accuracy (per completion token).

    Keras' own validation traces the model's forward pass once more (for
    SmolLM2's 30 blocks, ~17 s of a two-step run), and averages its batches
    by rows rather than by tokens. Place it before the callbacks that read
    `val_loss` (early stopping).

    Args:
        split: lm_batches.TokenizedSplit. The validation examples.
        batch_size: int.
        forward: `forward_function(model)`, traced once for the run.
    """

    def __init__(self, split, batch_size, forward):
        super().__init__()
        self.split = split
        self.batch_size = batch_size
        self.forward = forward

    def on_epoch_end(self, epoch, logs=None):
        measured = heldout_loss(self.model, self.split, self.batch_size, self.forward)
        logs["val_loss"] = measured["loss"]
        logs["val_accuracy"] = measured["accuracy"]


class KerasGreedy:
    """Greedy generation in Keras, batched by prompt length.

    Prompts of one length run together (no padding, so no row sees
    another's positions); each step takes the argmax, as
    `keras_lowrank.generation.greedy_reference` and the artifacts do. A row
    stops at a stop token (kept) or after `max_new_tokens`. Prefill and
    decode steps are one graph with dynamic batch and length, traced once
    per model (eager steps were ~5 s each on 2 busy cores).

    Args:
        model: a keras-hub CausalLM with `call_with_cache`.
        max_length: int. Cache positions: at least the longest prompt plus
            the tokens generated after it.
    """

    def __init__(self, model, max_length):
        self.max_length = max_length
        shape = cached_causal_lm.cache_shape(model, max_length)
        self._cache_shape = tuple(shape[1:])
        self._step = tf.function(
            lambda ids, cache, index: cached_causal_lm.call_with_cache(
                model, ids, cache, index),
            input_signature=[tf.TensorSpec((None, None), tf.int32),
                             tf.TensorSpec((None,) + self._cache_shape, tf.float32),
                             tf.TensorSpec((), tf.int32)])
        self._model = model
        self._checked = False

    def __call__(self, prompts, max_new_tokens, stop_token_ids=(), batch_size=8):
        """Greedy continuations: a list of lists of int, in prompt order.

        Raises:
            ValueError: a prompt and its new tokens do not fit the cache.
            TypeError: the model's `call_with_cache` returns a cache of
                another shape than it was given (at the first call).
        """
        stop = set(int(t) for t in stop_token_ids)
        results = [None] * len(prompts)
        longest = max((len(p) for p in prompts), default=0)
        if longest + max_new_tokens > self.max_length:
            raise ValueError(
                f"A prompt of {longest} tokens and {max_new_tokens} new ones "
                f"do not fit a cache of {self.max_length} positions.")
        if not self._checked:
            cached_causal_lm.check_step_keeps_cache(self._model, self._step)
            self._checked = True
        by_length = {}
        for index, prompt in enumerate(prompts):
            by_length.setdefault(len(prompt), []).append(index)
        for length, indices in sorted(by_length.items()):
            for start in range(0, len(indices), batch_size):
                rows = indices[start:start + batch_size]
                tokens = self._batch([prompts[i] for i in rows], length,
                                     max_new_tokens, stop)
                for r, i in enumerate(rows):
                    results[i] = tokens[r]
        return results

    def _batch(self, prompts, length, max_new_tokens, stop):
        cache = tf.zeros((len(prompts),) + self._cache_shape, tf.float32)
        logits, cache = self._step(tf.constant(np.array(prompts, np.int32)),
                                   cache, tf.constant(0, tf.int32))
        tokens = [[] for _ in prompts]
        done = [False] * len(prompts)
        position = length
        while True:
            chosen = np.argmax(np.asarray(logits)[:, -1], axis=-1)
            for r, token in enumerate(chosen):
                if not done[r]:
                    tokens[r].append(int(token))
                    done[r] = int(token) in stop or len(tokens[r]) >= max_new_tokens
            if all(done):
                return tokens
            logits, cache = self._step(tf.constant(chosen[:, None].astype(np.int32)),
                                       cache, tf.constant(position, tf.int32))
            position += 1


def runtime_greedy(path, prompts, max_new_tokens, stop_token_ids=()):
    """Greedy continuations of `prompts` from an exported generator, in its
    runtime (`keras_lowrank.generation.load_generator`), one prompt at a
    time as an app runs it."""
    from keras_lowrank.generation import load_generator

    generator = load_generator(path)
    return [list(generator.greedy(prompt, max_new_tokens, stop_token_ids).tokens)
            for prompt in prompts]


def words(text) -> list:
    """The lowercased words of `text`, punctuation dropped."""
    return _WORD.findall(text.lower())


def answer_matches(generated, reference) -> bool:
    """Whether the generated text begins with the reference's words."""
    expected = words(reference)
    return bool(expected) and words(generated)[:len(expected)] == expected


def answer_accuracy(generated_texts, references) -> float | None:
    """Share of `answer_matches`; None without references."""
    if not references:
        return None
    hits = sum(answer_matches(g, r) for g, r in zip(generated_texts, references))
    return hits / len(references)


def scored_rows(split):
    """Test rows answered by generation: those with a prompt."""
    return [i for i, prompt in enumerate(split.prompts) if prompt]


def answer_tokens(split, scored):
    """Tokens to generate for the `scored` rows of `split`: the longest
    reference answer and `ANSWER_SLACK` more."""
    longest = max((len(split.completions[i]) for i in scored), default=0)
    return longest + ANSWER_SLACK
