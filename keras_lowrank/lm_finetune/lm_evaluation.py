"""Measures of a causal LM: held-out loss and perplexity on completion
tokens, greedy generation in Keras or in an exported artifact's runtime,
and the accuracy of generated answers.

An answer is right when the first words of the generated text equal the
reference's words, case, surrounding punctuation and spacing aside: for the
MR task, the generation's first word must be the label word.
"""

import re
import time

import numpy as np
import tensorflow as tf

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.lm_finetune import lm_batches

_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def heldout_loss(model, split, batch_size) -> dict:
    """Mean cross-entropy per completion token, and its exponential.

    Args:
        model: a keras-hub CausalLM (preprocessor None).
        split: lm_batches.TokenizedSplit.
        batch_size: int.

    Returns:
        `{"loss", "perplexity", "tokens", "seconds"}`; loss and perplexity
        are None for an empty split.
    """
    start = time.perf_counter()
    total, count = 0.0, 0.0
    for _, (inputs, targets, weights) in lm_batches.evaluation_batches(split, batch_size):
        # Eager: no graph to trace for each new batch length.
        logits = model(inputs, training=False)
        # (batch, length): -log p(target) at each position.
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(targets), logits=tf.cast(logits, tf.float32))
        total += float(np.sum(np.asarray(nll, np.float64) * weights))
        count += float(np.sum(weights))
    loss = total / count if count else None
    return {"loss": loss, "perplexity": None if loss is None else float(np.exp(loss)),
            "tokens": int(count), "seconds": time.perf_counter() - start}


def keras_greedy(model, prompts, max_new_tokens, stop_token_ids=(), batch_size=8):
    """Greedy continuations of `prompts` in Keras, batched by prompt length.

    Prompts of one length run together (no padding, so no row sees
    another's positions); each step takes the argmax, as
    `keras_lowrank.generation.greedy_reference` and the artifacts do. A row
    stops at a stop token (kept) or after `max_new_tokens`. The steps run
    eagerly: a few calls per batch cost less than tracing the model's graph
    for every prompt length.

    Returns:
        list of lists of int, in the order of `prompts`.
    """
    stop = set(int(t) for t in stop_token_ids)
    results = [None] * len(prompts)
    if not prompts:
        return results
    max_length = max(len(p) for p in prompts) + max_new_tokens
    shape = cached_causal_lm.cache_shape(model, max_length)
    def step(ids, cache, index):
        return cached_causal_lm.call_with_cache(model, ids, cache, index)

    by_length = {}
    for index, prompt in enumerate(prompts):
        by_length.setdefault(len(prompt), []).append(index)
    for length, indices in sorted(by_length.items()):
        for start in range(0, len(indices), batch_size):
            rows = indices[start:start + batch_size]
            ids = np.array([prompts[i] for i in rows], np.int32)
            cache = tf.zeros((len(rows),) + tuple(shape[1:]), tf.float32)
            logits, cache = step(tf.constant(ids), cache, tf.constant(0, tf.int32))
            tokens = [[] for _ in rows]
            done = [False] * len(rows)
            position = length
            while True:
                chosen = np.argmax(np.asarray(logits)[:, -1], axis=-1)
                for r, token in enumerate(chosen):
                    if not done[r]:
                        tokens[r].append(int(token))
                        done[r] = int(token) in stop or len(tokens[r]) >= max_new_tokens
                if all(done):
                    break
                logits, cache = step(tf.constant(chosen[:, None].astype(np.int32)),
                                     cache, tf.constant(position, tf.int32))
                position += 1
            for r, i in enumerate(rows):
                results[i] = tokens[r]
    return results


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
