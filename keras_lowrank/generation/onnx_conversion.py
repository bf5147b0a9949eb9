"""`convert_step`: a step over a causal LM as an ONNX graph, weights stored once.

The model's variables enter the traced function as extra inputs, so
tf2onnx converts a graph without large constants (with SmolLM2's 538 MB
frozen in, it ran out of 16 GB of memory); they become initializers of the
ONNX graph afterwards, each stored once. The cache update is traced as
Pad + Where (`onnx_friendly_slice_update`): tf2onnx cannot convert XLA's
DynamicUpdateSlice. Used by `onnx_generator` and `onnx_genai_model`.
"""

import contextlib
import logging
import os

import keras
import numpy as np

from keras_lowrank._compat import tf2onnx as tf2onnx_compat
from keras_lowrank.generation.cached_causal_lm import onnx_friendly_slice_update
from keras_lowrank.utils.optional import import_optional
from keras_lowrank.utils.optional import tensorflow as tf

# tf2onnx deep-copies the graph before each optimizer pass unless this is
# "FALSE" (see keras_lowrank.exporters.onnx).
_CATCH_ERRORS_ENV = "TF2ONNX_CATCH_ERRORS"


def convert_step(step, signature, variables, names, opset, fed=()):
    """`step(*inputs)` as an ONNX `ModelProto`, `variables` as initializers.

    Args:
        step: a function of the tensors `signature` describes, reading the
            model's variables.
        signature: list of `tf.TensorSpec`, named: the graph's inputs.
        variables: the model's variables, in the order of `names`.
        names: list of str. A graph input name per variable.
        opset: int. The ONNX opset.
        fed: names among `names` that stay graph inputs (runtime adapters'
            factors); every other variable becomes an initializer.

    Returns:
        `(proto, frozen_bytes)`: the model, and the bytes of its
        initializers.
    """
    tf2onnx = import_optional("tf2onnx", "to export ONNX")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    count = len(signature)
    signature = list(signature) + [
        tf.TensorSpec(v.shape, v.dtype, name=name) for name, v in zip(names, variables)]

    def traced(*args):
        with keras.StatelessScope(state_mapping=list(zip(variables, args[count:]))):
            return step(*args[:count])

    with onnx_friendly_slice_update():
        function = tf.function(traced, input_signature=signature)
        function.get_concrete_function()  # traced while the patch holds
    # No `_compat.tf2onnx.optimizer_without_copies_per_pass` here: it keeps
    # tf2onnx's passes from copying the graph's constants, and with the
    # weights as inputs the largest constant is a position range (256
    # values for a 256-position cache). Measured on the tiny Llama
    # generator: the same operators, initializers and logits without it,
    # and 5-7% less CPU per export (fastest of 5-8 alternating runs:
    # 1.69 s -> 1.58 s, and 1.99 s -> 1.88 s on a loaded machine).
    # keras-hub's attention projections are Einsums: tf2onnx's search for
    # their decomposition runs on shapes only, and the nodes the step's
    # outputs (one per cache tensor) need are found in one walk of the
    # graph, and each Identity removed rewires its own consumers only, not
    # a walk of the whole graph (`_compat.tf2onnx`).
    with _tf2onnx_without_copies(), tf2onnx_compat.einsum_search_on_shapes(), \
            tf2onnx_compat.subgraph_walked_once(), \
            tf2onnx_compat.identities_removed_through_consumers():
        proto, _ = tf2onnx.convert.from_function(
            function, input_signature=signature, opset=opset)
    fed = set(fed)
    weights = {name: v for name, v in zip(names, variables) if name not in fed}
    return proto, weight_inputs_to_initializers(proto, weights)


def weight_inputs_to_initializers(proto, weights) -> int:
    """Turns the graph inputs named in `weights` ({name: Keras variable})
    into initializers holding the variables' values; returns their bytes.

    An input the converted graph no longer reads is dropped.
    """
    from onnx import numpy_helper

    graph = proto.graph
    read = {name for node in graph.node for name in node.input}
    inputs = list(graph.input)
    del graph.input[:]
    graph.input.extend(i for i in inputs if i.name not in weights)
    total = 0
    for name in (i.name for i in inputs if i.name in weights and i.name in read):
        array = np.asarray(keras.ops.convert_to_numpy(weights[name].value))
        graph.initializer.append(numpy_helper.from_array(array, name))
        total += array.nbytes
    return total


@contextlib.contextmanager
def _tf2onnx_without_copies():
    previous = os.environ.get(_CATCH_ERRORS_ENV)
    os.environ[_CATCH_ERRORS_ENV] = previous or "FALSE"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_CATCH_ERRORS_ENV, None)
