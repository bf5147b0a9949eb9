"""A frozen base kernel held in Keras' own int8/int4 form (QLoRA-like).

`LoRAConfig(base_quantization="int8" | "int4")` quantizes the kernel an
adapter wraps with Keras' public `layer.quantize(mode)` (abs-max per output
column for int8; for int4, groups of 64 input values with a scale and a
zero point each, the block size of QLoRA's NF4), so the frozen weights take
1 byte (int8) or half a byte (int4) per value.
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
import sys

import keras

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.layers.gptq import gptq_int4

QUANTIZATION_MODES = ("int8", "int4")
# Values per int4 group along a kernel's input axis. Keras' default is 128;
# 64 (bitsandbytes' NF4 block in QLoRA) lowers SmolLM2's next-token loss
# with its linear layers in int4 from 5.82 to 5.75 (float: 5.57) for 0.007x
# more bytes (docs/quantized_base.md, examples/quantized_base_loss.py).
INT4_BLOCK_SIZE = 64
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


def frozen_quantization_mode(mode, output_head):
    """The mode `quantize_frozen="all"` holds a frozen layer in: `mode`,
    except a causal LM's output head (`output_head`: keras-hub ties it to
    the token table, one `ReversibleEmbedding`), which an int4 base holds in
    int8.

    QLoRA (bitsandbytes) leaves the head in 16 bits and llama.cpp's Q4 files
    keep it in 6: on SmolLM2 an int4 head costs half of int4's next-token
    loss, an int8 one next to nothing, for 0.025x of the float model's bytes
    (docs/quantized_base.md). A classifier's token table is a lookup only
    and stays int4."""
    return "int8" if mode == "int4" and output_head else mode


def output_head_table(model):
    """A keras-hub causal LM's token table tied to its output head, or None.

    keras-hub is not imported for it: a process that has not imported it
    holds no keras-hub model."""
    keras_hub = sys.modules.get("keras_hub")
    if keras_hub is None or not isinstance(model, keras_hub.models.CausalLM):
        return None
    table = getattr(getattr(model, "backbone", None), "token_embedding", None)
    if isinstance(table, keras.layers.ReversibleEmbedding) and table.tie_weights:
        return table
    return None


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


def quantize_layer(layer, mode, hessian=None):
    """Quantizes a built float `layer` to `mode` in place (Keras' own form).

    Weights only: Keras' int8 default also quantizes a Dense's inputs, which
    would make the layer differ from its dequantized float twin (the merge).
    With `hessian` (`XᵀX` of the layer's inputs, `adapters.calibration`), an
    int4 kernel is rounded by GPTQ (`layers.gptq`) instead of to nearest.
    """
    if layer.quantization_mode is not None:
        return layer
    if mode == "int8":
        config = keras.quantizers.Int8QuantizationConfig(activation_quantizer=None)
    else:  # weight-only, as Keras' int4 default is
        config = keras.quantizers.Int4QuantizationConfig(block_size=INT4_BLOCK_SIZE)
    rounding = contextlib.nullcontext()
    if hessian is not None and mode == "int4":
        rounding = keras_compat.grouped_int4_rounding(
            lambda kernel, block_size: gptq_int4(kernel, hessian, block_size))
    with keras_compat.no_collection_per_dropped_variable(), rounding:
        layer.quantize(mode, config=config)
    return layer


def quantized_copy(layer, mode, hessian=None):
    """A new built layer equal to the float `layer`, quantized to `mode`
    (by GPTQ against `hessian`, if given: `quantize_layer`)."""
    copy = type(layer).from_config(layer.get_config())
    copy.build(_input_shape(layer))
    copy.set_weights(layer.get_weights())
    return quantize_layer(copy, mode, hessian)


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
