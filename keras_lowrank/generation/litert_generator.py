"""The LiteRT generation artifact: prefill and decode signatures, one file.

A SavedModel with one signature per prefill length and one for decoding,
all reading the same frozen weights (stored once), converted with builtin
ops only; the converter turns the weights into constants shared by the
signatures, so the file holds each weight once (a tied embedding is held
twice: the lookup table, and the output projection, into which the
converter folds the final norm's scale). The `GeneratorSpec` goes into
the flatbuffer's model metadata.
"""

import os
import tempfile

import numpy as np

from keras_lowrank.exporters.dynamic_range import quantize_dynamic_range
from keras_lowrank.exporters.tflite import UnsupportedOpsError
from keras_lowrank.generation.generator_spec import METADATA_KEY
from keras_lowrank.generation.step_functions import FrozenWeights
from keras_lowrank.generation.step_functions import adapter_signature
from keras_lowrank.generation.step_functions import decode_signature
from keras_lowrank.generation.step_functions import decode_step
from keras_lowrank.generation.step_functions import fed_factors
from keras_lowrank.generation.step_functions import prefill_signature
from keras_lowrank.generation.step_functions import prefill_step
from keras_lowrank.utils.optional import tensorflow as tf

# Ops that mean a weight was left as a variable, which LiteRT cannot run.
VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


def write_litert_generator(model, spec, path, quantize=None, keep_float=()):
    """Writes the `.tflite` of `model` (merged, float32) described by `spec`.

    With `quantize="dynamic"`, LiteRT's dynamic-range quantization: int8
    weights (tensors under 1024 values stay in float), activations
    quantized on the fly in the fully connected layers, the KV cache
    float32; the layers whose op output names match a `keep_float` pattern
    stay in float (`keras_lowrank.exporters.dynamic_range`).

    With `spec.adapters` (runtime adapters), `model` is the adapted model,
    unmerged: its LoRA factors are inputs of every signature
    (`runtime_adapters`), the other weights frozen.

    Raises:
        UnsupportedOpsError: the graphs need ops outside LiteRT's builtins.
    """
    frozen = FrozenWeights(model, fed_factors(model, spec))
    factors = adapter_signature(spec)
    signatures = {
        f"prefill_{n}": tf.function(
            frozen.wrap(prefill_step(model)),
            input_signature=prefill_signature(spec, n) + factors,
        ).get_concrete_function()
        for n in spec.prefill_lengths
    }
    signatures["decode"] = tf.function(
        frozen.wrap(decode_step(model)),
        input_signature=decode_signature(spec) + factors,
    ).get_concrete_function()
    with tempfile.TemporaryDirectory(prefix="klr_generator_") as folder:
        saved_model = os.path.join(folder, "saved_model")
        tf.saved_model.save(frozen.module, saved_model, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model, signature_keys=list(signatures)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        try:
            flatbuffer = converter.convert()
        except Exception as error:
            message = str(error)
            if "Select ops" not in message and "neither a custom op" not in message:
                raise
            raise UnsupportedOpsError(
                "The generation graphs need TensorFlow ops outside LiteRT's "
                "builtins: " + _last_line(message), ops=(), flex=True,
            ) from error
    if quantize == "dynamic":
        flatbuffer, _ = quantize_dynamic_range(flatbuffer, keep_float)
    with open(path, "wb") as file:
        file.write(with_metadata(flatbuffer, METADATA_KEY, spec.to_json()))


def with_metadata(flatbuffer, name, text):
    """`flatbuffer` with a model metadata entry `name` holding `text`."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(text.encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != name.encode()]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _last_line(message):
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else message
