"""The losses a trainable artifact computes, written out in builtin ops.

TensorFlow's fused `SparseSoftmaxCrossEntropyWithLogits` is a Flex op in
LiteRT, so the cross-entropy is log-softmax and a one-hot sum. Both equal
`keras.losses.SparseCategoricalCrossentropy(from_logits=True)` with Keras'
default reduction, the mean over every (weighted) element.
"""

from keras_lowrank.utils.optional import tensorflow as tf


def classifier_loss(logits, labels):
    """Mean cross-entropy of `[B, C]` logits against `[B]` integer labels."""
    return tf.reduce_mean(_cross_entropy(logits, labels))


def causal_lm_loss(logits, labels, loss_mask):
    """Next-token cross-entropy on the completion tokens.

    `logits` `[B, T, V]`, `labels` `[B, T]` (the next token at each
    position), `loss_mask` `[B, T]` float (1 on completion tokens). As Keras
    weighs `sample_weight`: the sum of masked losses over `B * T`.
    """
    return tf.reduce_mean(_cross_entropy(logits, labels) * loss_mask)


def _cross_entropy(logits, labels):
    log_probs = logits - tf.reduce_logsumexp(logits, axis=-1, keepdims=True)
    one_hot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
    return -tf.reduce_sum(one_hot * log_probs, axis=-1)
