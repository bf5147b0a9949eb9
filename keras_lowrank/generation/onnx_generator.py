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
import tempfile

import keras

from keras_lowrank.generation.cached_causal_lm import onnx_friendly_slice_update
from keras_lowrank.generation.generator_spec import METADATA_KEY
from keras_lowrank.generation.generator_spec import adapter_input_names
from keras_lowrank.generation.step_functions import fed_factors
from keras_lowrank.generation.step_functions import prefill_signature
from keras_lowrank.generation.step_functions import prefill_step
from keras_lowrank.utils.optional import import_optional
from keras_lowrank.utils.optional import tensorflow as tf

OPSET = 15
# tf2onnx deep-copies the graph before each optimizer pass unless this is
# "FALSE" (see keras_lowrank.exporters.onnx).
_CATCH_ERRORS_ENV = "TF2ONNX_CATCH_ERRORS"
_WEIGHT = "weight_{}"


def write_onnx_generator(model, spec, path, quantize=None):
    """Writes the `.onnx` of `model` (merged, float32) described by `spec`.

    With `quantize="dynamic"`, ONNX Runtime's `quantize_dynamic` of the
    float graph (int8 weights per channel, uint8 activations on the fly).
    """
    tf2onnx = import_optional("tf2onnx", "to export ONNX")
    onnx = import_optional("onnx", "to export ONNX")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    variables = list(model.variables)
    # Runtime adapters' factors stay graph inputs, named as the spec says.
    factor_names = {
        id(v): adapter_input_names(i // 2)[i % 2]
        for i, v in enumerate(fed_factors(model, spec))
    }
    names = [factor_names.get(id(v), _WEIGHT.format(i))
             for i, v in enumerate(variables)]
    signature = prefill_signature(spec, None) + [
        tf.TensorSpec(v.shape, v.dtype, name=name)
        for name, v in zip(names, variables)
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
    _weights_to_initializers(onnx, proto, {
        name: v for name, v in zip(names, variables) if id(v) not in factor_names
    })
    onnx.helper.set_model_props(proto, {METADATA_KEY: spec.to_json()})
    if quantize is None:
        with open(path, "wb") as file:
            file.write(proto.SerializeToString())
        return
    quantization = import_optional("onnxruntime.quantization",
                                   "to quantize ONNX")
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix="klr_onnx_float_", dir=folder) as tmp:
        float_path = os.path.join(tmp, "float.onnx")
        with open(float_path, "wb") as file:
            file.write(proto.SerializeToString())
        del proto
        # It logs a warning per tensor whose type shape inference cannot
        # follow (tf2onnx's integer index arithmetic), which it leaves as is.
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)
        try:
            quantization.quantize_dynamic(
                float_path, path, weight_type=quantization.QuantType.QInt8,
                per_channel=True,
            )
        finally:
            root.setLevel(level)
    quantized = onnx.load(path)
    if METADATA_KEY not in {p.key for p in quantized.metadata_props}:
        onnx.helper.set_model_props(quantized, {METADATA_KEY: spec.to_json()})
        onnx.save(quantized, path)


def _weights_to_initializers(onnx, proto, names):
    """Moves the weight inputs `{name: variable}` into the initializers."""
    from onnx import numpy_helper

    graph = proto.graph
    kept = [i for i in graph.input if i.name not in names]
    used = {name for node in graph.node for name in node.input}
    for item in graph.input:
        if item.name in names and item.name in used:
            array = keras.ops.convert_to_numpy(names[item.name].value)
            graph.initializer.append(numpy_helper.from_array(array, item.name))
    del graph.input[:]
    graph.input.extend(kept)
