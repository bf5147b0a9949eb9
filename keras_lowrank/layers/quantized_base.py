"""A frozen base kernel held in Keras' own int8/int4 form (QLoRA-like).

`LoRAConfig(base_quantization="int8" | "int4")` quantizes the kernel an
adapter wraps with Keras' public `layer.quantize(mode)` (abs-max per output
column for int8; Keras' default int4 groups of 128 values with zero points),
so the frozen weights take 1 byte (int8) or half a byte (int4) per value.
The adapter dequantizes the kernel in its forward pass and adds the float32
factors' product on top: the inputs are not quantized (Keras' own int8
`call` would also quantize them), so merging gives the same outputs within
float tolerance.

Only the plain Keras classes are quantized: `layer.quantize` refuses
subclasses. A tied `ReversibleEmbedding` (a decoder LM's shared token table
and output head) is quantized only as a frozen layer under
`quantize_frozen="all"`, where Keras' own quantized call projects the
outputs; under an adapter it is refused, since the adapter does not
dequantize the reverse projection.
"""

import contextlib
import gc

import keras

from keras_lowrank._compat import keras as keras_compat

QUANTIZATION_MODES = ("int8", "int4")
QUANTIZABLE_CLASSES = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding)


def check_quantization_mode(mode, owner, name="base_quantization"):
    """Refuses a mode other than None, "int8" and "int4"."""
    if mode is not None and mode not in QUANTIZATION_MODES:
        raise ValueError(
            f"{owner} got an unknown `{name}`. Received: {name}={mode!r}. "
            f"Supported: {[None, *QUANTIZATION_MODES]} (None keeps the float "
            "kernel)."
        )


def is_quantizable(layer) -> bool:
    """Whether `layer` is a plain Dense, EinsumDense or Embedding."""
    return type(layer) in QUANTIZABLE_CLASSES


def is_frozen_quantizable(layer) -> bool:
    """Whether `quantize_frozen="all"` can hold `layer` quantized: the
    adapters' kinds, and Keras' tied `ReversibleEmbedding`, whose reverse
    projection Keras' quantized call computes from the one int8/int4 table
    (an untied one keeps a second float table, and stays float)."""
    if is_quantizable(layer):
        return True
    return type(layer) is keras.layers.ReversibleEmbedding and layer.tie_weights


def check_quantizable(layer, mode, owner):
    """Refuses a layer whose kernel Keras cannot hold as `mode`."""
    if not is_quantizable(layer):
        raise ValueError(
            f"{owner}: base_quantization={mode!r} holds the kernels of plain "
            "keras.layers.Dense, EinsumDense and Embedding layers only "
            "(Keras' `layer.quantize` refuses other kinds and subclasses; a "
            "ReversibleEmbedding's tied output projection would read the "
            f"quantized table). Received: layer '{layer.name}' of class "
            f"{type(layer).__name__}. Leave it out with `exclude=`, or use "
            "base_quantization=None."
        )


def quantize_layer(layer, mode):
    """Quantizes a built float `layer` to `mode` in place (Keras' own form).

    Weights only: Keras' int8 default also quantizes a Dense's inputs, which
    would make the layer differ from its dequantized float twin (the merge).
    """
    if layer.quantization_mode is None:
        config = None  # int4: Keras' default is weight-only, 128-row groups
        if mode == "int8":
            config = keras.quantizers.Int8QuantizationConfig(activation_quantizer=None)
        with _collections_of_new_objects():
            layer.quantize(mode, config=config)
    return layer


@contextlib.contextmanager
def _collections_of_new_objects():
    """Keras runs a full `gc.collect()` for each variable a layer drops
    (`Layer.__delattr__`; quantizing drops the float kernel), which in a
    process holding a model and TensorFlow takes a good part of a second,
    per layer. With the objects alive before frozen (`gc.freeze`), those
    collections look at the new ones only; `gc.unfreeze` afterwards gives
    every object back to the next collection. A process that froze objects
    itself is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def quantized_copy(layer, mode):
    """A new built layer equal to the float `layer`, quantized to `mode`."""
    copy = type(layer).from_config(layer.get_config())
    copy.build(_input_shape(layer))
    copy.set_weights(layer.get_weights())
    return quantize_layer(copy, mode)


def float_config(layer):
    """`layer`'s config, with the float dtype policy it had before Keras
    quantized it (`"int8_from_float32"` gives `"float32"`)."""
    config = layer.get_config()
    if layer.quantization_mode is not None:
        config["dtype"] = float_policy(layer).name
        config["quantization_config"] = None
    return config


def float_policy(layer):
    """`layer`'s dtype policy, or the float one it was quantized from."""
    if layer.quantization_mode is None:
        return layer.dtype_policy
    return keras.dtype_policies.get(layer.dtype_policy.get_config()["source_name"])


def dequantized_copy(layer):
    """A new built float layer whose kernel is the quantized `layer`'s,
    dequantized (float32, or the float policy's variable dtype)."""
    copy = type(layer).from_config(float_config(layer))
    copy.build(_input_shape(layer))
    kernel = keras_compat.kernel_variable(copy, _kernel_name(layer))
    own = {v.name: v for v in layer.weights}
    dequantized = keras.ops.convert_to_numpy(keras_compat.dequantized_kernel(layer))
    copy.set_weights([
        dequantized.astype(v.dtype) if v is kernel else own[v.name].numpy()
        for v in copy.weights
    ])
    return copy


def _kernel_name(layer):
    return "embeddings" if isinstance(layer, keras.layers.Embedding) else "kernel"


def _input_shape(layer):
    return (layer.get_build_config() or {}).get("input_shape")
