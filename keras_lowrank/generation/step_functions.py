"""The prefill and decode graphs, traced with the weights frozen.

`FrozenWeights` copies every variable of the model into a plain, never
assigned `tf.Variable` of a `tf.Module` and traces under a Keras
`StatelessScope` that reads those instead of the Keras variables. A
SavedModel of the module then stores each weight once, and the LiteRT
converter turns them into constants in every signature (with Keras'
variables in the graph it kept resource variables: `READ_VARIABLE` fails
in the interpreter, or gives NaN under XNNPACK); tf2onnx freezes them too.

The graphs are traced with `tf.nn.silu` as its forward ops alone
(`_compat.tensorflow.silu_without_custom_gradient`): the same values,
without the `tf.custom_gradient` these inference graphs never use, whose
gradient function the converter's SavedModel traced, stored and loaded
again for every SiLU of the model.
"""

import keras

from keras_lowrank._compat import tensorflow as tensorflow_compat
from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.utils.optional import tensorflow as tf


class FrozenWeights:
    """Plain TensorFlow copies of a model's variables, for tracing.

    Args:
        model: a Keras model (TensorFlow backend).
        fed: variables of `model` read from the traced function's last
            arguments instead (the LoRA factors of runtime adapters), in
            the order of those arguments.

    Example:
    ```python
    frozen = FrozenWeights(causal_lm)
    decode = frozen.signature("decode", step, input_signature=[...])
    flatbuffer = convert_signatures(frozen, [decode], "the decode graph")
    ```
    """

    def __init__(self, model, fed=()):
        self.model = model
        self.fed = list(fed)
        fed_ids = {id(v) for v in self.fed}
        kept = [v for v in model.variables if id(v) not in fed_ids]
        self.module = tf.Module()
        self.module.weights = [
            tf.Variable(v.value, trainable=False, name=f"w{i}")
            for i, v in enumerate(kept)
        ]
        self._mapping = list(zip(kept, self.module.weights))

    def wrap(self, function):
        """`function` reading the copies instead of the Keras variables,
        and the fed variables from its last arguments."""
        mapping, fed = self._mapping, self.fed

        def frozen(*args):
            own = args[:len(args) - len(fed)]
            state = mapping + list(zip(fed, args[len(own):]))
            with keras.StatelessScope(state_mapping=state):
                return function(*own)

        return frozen

    def signature(self, name, function, input_signature):
        """`function` over the copies, traced for `input_signature` as a
        concrete function whose graph is named `name`: the converter names
        the LiteRT signature after it (`litert_generator.convert_signatures`)."""
        step = self.wrap(function)
        step.__name__ = name
        with tensorflow_compat.silu_without_custom_gradient():
            return tf.function(
                step, input_signature=input_signature).get_concrete_function()


def fed_factors(model, spec):
    """The LoRA factor variables a runtime-adapter artifact takes as
    inputs (`A`, `B` of each layer of `spec.adapters`), in input order."""
    if not spec.adapters:
        return []
    from keras_lowrank.generation.runtime_adapters import runtime_factors

    layers = dict(runtime_factors(model))
    return [v for entry in spec.adapters
            for v in (layers[entry[0]].lora_a, layers[entry[0]].lora_b)]


def adapter_signature(spec):
    """Input specs of the factor inputs (none without runtime adapters)."""
    return [tf.TensorSpec(shape, tf.float32, name=name)
            for name, shape in spec.adapter_shapes().items()]


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
    and decoding overwrites them. The LM head runs on that one position
    only (`call_with_cache_at`), not on every position of the chunk.
    """

    def prefill(token_ids, cache, cache_update_index, last_index):
        # (1, length, hidden) -> (1, 1, hidden): the chunk's token `last_index`.
        logits, next_cache = cached_causal_lm.call_with_cache_at(
            model, token_ids, cache, cache_update_index,
            lambda hidden: tf.gather(hidden, tf.reshape(last_index, [1]), axis=1),
        )
        return {"logits": logits[:, 0, :], "next_cache": next_cache}

    return prefill


def decode_step(model):
    """`(token_ids, cache, cache_update_index) -> outputs` for one token."""

    def decode(token_ids, cache, cache_update_index):
        logits, next_cache = cached_causal_lm.call_with_cache(
            model, token_ids, cache, cache_update_index
        )
        return {"logits": logits[:, 0, :], "next_cache": next_cache}

    return decode
