"""The ONNX generation artifact: one graph for prefill and decode.

ONNX has one graph per file; its token input has a dynamic length, so the
same graph writes a whole prompt (length n, `last_index` n - 1) and decodes
(length 1, `last_index` 0), the cache a fixed-size input and output. The
cache update is traced as Pad + Where (`onnx_friendly_slice_update`):
tf2onnx cannot convert XLA's DynamicUpdateSlice. The `GeneratorSpec` goes
into the model's `metadata_props`.

The weights enter the traced function as extra inputs, so tf2onnx converts
a graph without large constants (with SmolLM2's 538 MB frozen in, it ran
out of 16 GB of memory); they become initializers of the ONNX graph
afterwards, each stored once.
"""

import logging
import os

import keras

from keras_lowrank.exporters._optional import import_optional
from keras_lowrank.exporters._optional import tensorflow as tf
from keras_lowrank.generation.cached_causal_lm import onnx_friendly_slice_update
from keras_lowrank.generation.generator_spec import METADATA_KEY
from keras_lowrank.generation.step_functions import prefill_signature
from keras_lowrank.generation.step_functions import prefill_step

OPSET = 15
# tf2onnx deep-copies the graph before each optimizer pass unless this is
# "FALSE" (see keras_lowrank.exporters.onnx).
_CATCH_ERRORS_ENV = "TF2ONNX_CATCH_ERRORS"
_WEIGHT = "weight_{}"


def write_onnx_generator(model, spec, path):
    """Writes the `.onnx` of `model` (merged, float32) described by `spec`."""
    tf2onnx = import_optional("tf2onnx", "to export ONNX")
    onnx = import_optional("onnx", "to export ONNX")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    variables = list(model.variables)
    signature = prefill_signature(spec, None) + [
        tf.TensorSpec(v.shape, v.dtype, name=_WEIGHT.format(i))
        for i, v in enumerate(variables)
    ]
    step = prefill_step(model)

    def prefill(token_ids, cache, cache_update_index, last_index, *weights):
        with keras.StatelessScope(state_mapping=list(zip(variables, weights))):
            return step(token_ids, cache, cache_update_index, last_index)

    with onnx_friendly_slice_update():
        function = tf.function(prefill, input_signature=signature)
        function.get_concrete_function()  # traced while the patch holds
    previous = os.environ.get(_CATCH_ERRORS_ENV)
    os.environ[_CATCH_ERRORS_ENV] = previous or "FALSE"
    try:
        proto, _ = tf2onnx.convert.from_function(
            function, input_signature=signature, opset=OPSET
        )
    finally:
        if previous is None:
            os.environ.pop(_CATCH_ERRORS_ENV, None)
    _weights_to_initializers(onnx, proto, variables)
    onnx.helper.set_model_props(proto, {METADATA_KEY: spec.to_json()})
    with open(path, "wb") as file:
        file.write(proto.SerializeToString())


def _weights_to_initializers(onnx, proto, variables):
    """Moves the weight inputs of the graph into its initializers."""
    from onnx import numpy_helper

    names = {_WEIGHT.format(i): v for i, v in enumerate(variables)}
    graph = proto.graph
    kept = [i for i in graph.input if i.name not in names]
    used = {name for node in graph.node for name in node.input}
    for item in graph.input:
        if item.name in names and item.name in used:
            array = keras.ops.convert_to_numpy(names[item.name].value)
            graph.initializer.append(numpy_helper.from_array(array, item.name))
    del graph.input[:]
    graph.input.extend(kept)
