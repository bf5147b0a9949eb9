"""The prefill and decode graphs, traced with the weights frozen.

`FrozenWeights` copies every variable of the model into a plain, never
assigned `tf.Variable` of a `tf.Module` and traces under a Keras
`StatelessScope` that reads those instead of the Keras variables. A
SavedModel of the module then stores each weight once, and the LiteRT
converter turns them into constants in every signature (with Keras'
variables in the graph it kept resource variables: `READ_VARIABLE` fails
in the interpreter, or gives NaN under XNNPACK); tf2onnx freezes them too.
"""

import keras

from keras_lowrank.exporters._optional import tensorflow as tf
from keras_lowrank.generation import cached_causal_lm


class FrozenWeights:
    """Plain TensorFlow copies of a model's variables, for tracing.

    Args:
        model: a Keras model (TensorFlow backend).

    Example:
    ```python
    frozen = FrozenWeights(causal_lm)
    fn = tf.function(frozen.wrap(step), input_signature=[...])
    tf.saved_model.save(frozen.module, folder, signatures={"decode": fn})
    ```
    """

    def __init__(self, model):
        self.model = model
        self.module = tf.Module()
        self.module.weights = [
            tf.Variable(v.value, trainable=False, name=f"w{i}")
            for i, v in enumerate(model.variables)
        ]

    def wrap(self, function):
        """`function` reading the copies instead of the Keras variables."""
        mapping = list(zip(self.model.variables, self.module.weights))

        def frozen(*args):
            with keras.StatelessScope(state_mapping=mapping):
                return function(*args)

        return frozen


def prefill_signature(spec, length):
    """Input specs of a prefill chunk of `length` tokens (None: any)."""
    return [
        tf.TensorSpec((1, length), tf.int32, name="token_ids"),
        tf.TensorSpec(spec.cache_shape, tf.float32, name="cache"),
        tf.TensorSpec((), tf.int32, name="cache_update_index"),
        tf.TensorSpec((), tf.int32, name="last_index"),
    ]


def decode_signature(spec):
    """Input specs of one decoding step."""
    return prefill_signature(spec, 1)[:3]


def prefill_step(model):
    """`(token_ids, cache, cache_update_index, last_index) -> outputs`.

    Writes the chunk into the cache at `cache_update_index` and returns the
    logits of the chunk's token `last_index`: right padding after it is
    written too, but the causal mask hides positions after the current one,
    and decoding overwrites them.
    """

    def prefill(token_ids, cache, cache_update_index, last_index):
        logits, next_cache = cached_causal_lm.call_with_cache(
            model, token_ids, cache, cache_update_index
        )
        # (1, length, vocabulary) -> (1, vocabulary)
        logits = tf.gather(logits, last_index, axis=1)
        return {"logits": logits, "next_cache": next_cache}

    return prefill


def decode_step(model):
    """`(token_ids, cache, cache_update_index) -> outputs` for one token."""

    def decode(token_ids, cache, cache_update_index):
        logits, next_cache = cached_causal_lm.call_with_cache(
            model, token_ids, cache, cache_update_index
        )
        return {"logits": logits[:, 0, :], "next_cache": next_cache}

    return decode
