"""The LiteRT generation artifact: prefill and decode signatures, one file.

One concrete function per prefill length and one for decoding, all reading
the same frozen weights (stored once), converted with builtin ops only
(`convert_signatures`); the converter turns the weights into constants
shared by the signatures, so the file holds each weight once (a tied
embedding is held twice: the lookup table, and the output projection, into
which the converter folds the final norm's scale). The `GeneratorSpec`
goes into the flatbuffer's model metadata.
"""

import numpy as np

from keras_lowrank._compat import tensorflow as tensorflow_compat
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
    signatures = [
        frozen.signature(f"prefill_{n}", prefill_step(model),
                         prefill_signature(spec, n) + factors)
        for n in spec.prefill_lengths
    ]
    signatures.append(frozen.signature(
        "decode", decode_step(model), decode_signature(spec) + factors))
    # TensorFlow's own conversion metadata is left out: adding it unpacked
    # and repacked the whole flatbuffer in Python (~9 s of CPU for
    # SmolLM2's 652 MB), and `with_metadata` does that once more.
    flatbuffer = convert_signatures(frozen, signatures, "The generation graphs",
                                    conversion_metadata=False)
    if quantize == "dynamic":
        flatbuffer, _ = quantize_dynamic_range(flatbuffer, keep_float)
    packed = with_metadata(flatbuffer, METADATA_KEY, spec.to_json())
    del flatbuffer  # 652 MB for SmolLM2, not to be held while writing
    with open(path, "wb") as file:
        file.write(packed)


def convert_signatures(frozen, signatures, what, conversion_metadata=True):
    """The `.tflite` bytes of `signatures`, builtin ops only.

    The converter saves `frozen.module` with the signatures itself and
    reads back that SavedModel's protos, not its variables
    (`_compat.tensorflow.converted`); `from_saved_model` on a SavedModel of ours
    loaded it twice (once for its signature keys, once for debug
    information) and ran a full `gc.collect()`. Measured on the tiny Llama
    (5 runs each, alternating, median CPU): the generator's 3 signatures
    2.78 s -> 2.28 s, the LiteRT-LM contract's 2 signatures 2.21 s ->
    1.58 s; the same subgraphs, tensors and weights (the conversion
    metadata says `TF_CONCRETE_FUNCTIONS` instead of `TF_SAVED_MODEL`).

    Args:
        frozen: the `FrozenWeights` the signatures read.
        signatures: concrete functions from `frozen.signature(name, ...)`:
            each LiteRT signature is named after its function's graph.
        what: str. The graphs, for the error message ("The generation
            graphs").
        conversion_metadata: bool. Whether the file keeps the converter's
            `CONVERSION_METADATA` entry (TensorFlow version, options, a
            model hash), which the converter adds by unpacking and
            repacking the whole flatbuffer in Python. Runners do not read
            it; the subgraphs, tensors and weights are the same without it.

    Raises:
        UnsupportedOpsError: the graphs need ops outside LiteRT's builtins.
    """
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        list(signatures), frozen.module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.exclude_conversion_metadata = not conversion_metadata
    try:
        # The converter shares each weight between the signatures itself.
        return tensorflow_compat.converted(converter, deduplicate_buffers=False)
    except Exception as error:  # the converter raises a bare Exception
        message = str(error)
        if "Select ops" not in message and "neither a custom op" not in message:
            raise
        raise UnsupportedOpsError(
            f"{what} need TensorFlow ops outside LiteRT's builtins: "
            + _last_line(message), ops=(), flex=True,
        ) from error


def with_metadata(flatbuffer, name, text):
    """`flatbuffer` with a model metadata entry `name` holding `text`.

    Returns:
        A memoryview of the packed model in the builder's own buffer, not
        a copy: `Builder.Output()` slices a copy of it, and `bytes()` of
        that is one more (SmolLM2's generator: 2 x 652 MB that set the
        export's peak memory).
    """
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
    return memoryview(builder.Bytes)[builder.Head():]


def _last_line(message):
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else message
