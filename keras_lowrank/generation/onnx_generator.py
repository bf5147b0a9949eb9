"""The ONNX generation artifact: one graph for prefill and decode.

ONNX has one graph per file; its token input has a dynamic length, so the
same graph writes a whole prompt (length n, `last_index` n - 1) and decodes
(length 1, `last_index` 0), the cache a fixed-size input and output. The
cache update is traced as Pad + Where (`onnx_friendly_slice_update`):
tf2onnx cannot convert XLA's DynamicUpdateSlice. The `GeneratorSpec` goes
into the model's `metadata_props`.

The weights enter the traced function as extra inputs and become
initializers afterwards (`onnx_conversion.convert_step`).
"""

import logging
import os
import tempfile

from keras_lowrank.generation.generator_spec import METADATA_KEY
from keras_lowrank.generation.generator_spec import adapter_input_names
from keras_lowrank.generation.onnx_conversion import convert_step
from keras_lowrank.generation.step_functions import fed_factors
from keras_lowrank.generation.step_functions import prefill_signature
from keras_lowrank.generation.step_functions import prefill_step
from keras_lowrank.utils.optional import import_optional

OPSET = 15
_WEIGHT = "weight_{}"


def write_onnx_generator(model, spec, path, quantize=None):
    """Writes the `.onnx` of `model` (merged, float32) described by `spec`.

    With `quantize="dynamic"`, ONNX Runtime's `quantize_dynamic` of the
    float graph (uint8 weights per channel, which no x86 CPU saturates:
    `exporters.onnx_quantization`; uint8 activations on the fly).
    """
    variables = list(model.variables)
    # Runtime adapters' factors stay graph inputs, named as the spec says.
    factor_names = {
        id(v): adapter_input_names(i // 2)[i % 2]
        for i, v in enumerate(fed_factors(model, spec))
    }
    names = [factor_names.get(id(v), _WEIGHT.format(i))
             for i, v in enumerate(variables)]
    proto, _ = convert_step(prefill_step(model), prefill_signature(spec, None),
                            variables, names, OPSET, fed=factor_names.values())
    onnx = import_optional("onnx", "to export ONNX")
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
                float_path, path, weight_type=quantization.QuantType.QUInt8,
                per_channel=True,
            )
        finally:
            root.setLevel(level)
    quantized = onnx.load(path)
    if METADATA_KEY not in {p.key for p in quantized.metadata_props}:
        onnx.helper.set_model_props(quantized, {METADATA_KEY: spec.to_json()})
        onnx.save(quantized, path)

