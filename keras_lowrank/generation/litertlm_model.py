"""The TFLite model of a `.litertlm` bundle, in LiteRT-LM's CPU contract.

LiteRT-LM's CPU executor drives a `PREFILL_DECODE` model through named
signatures: `prefill_<n>` (a chunk of `n` tokens) and `decode` (one token).
Each takes `tokens` int32 (1, T), `input_pos` int32 (T,), `mask` float32
(1, 1, T, C) (additive: 0 attends) and, per layer `i`, the whole cache
`kv_cache_k_<i>` / `kv_cache_v_<i>` float32 (1, C, KVH, D); each returns
the updated cache under the same names, and `decode` returns `logits`
(1, 1, V). The runtime keeps the last prompt token back from prefill and
feeds it to the first decode step, so prefill returns no logits (and
skips the output projection of T tokens). C, the context, is read from
the mask's last dimension. Static shapes, builtin ops, weights constant.

The graphs are keras-hub's own `call_with_cache` on its cache layout
(batch, layers, 2, C, KVH, D), assembled from and split back into the
per-layer tensors. keras-hub masks causally from the write position
itself, so the runtime's `mask` adds nothing to the result; it is read
(times zero) only so that the converter keeps it as an input, which the
runtime requires.

With runtime LoRA (`litertlm_adapter`) every signature also takes the
runtime's `lora_atten_*` factor inputs after the cache.
"""

from keras_lowrank._compat import litert as litert_compat
from keras_lowrank.exporters.dynamic_range import quantize_dynamic_range
from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.litert_generator import VARIABLE_OPS
from keras_lowrank.generation.litert_generator import convert_signatures
from keras_lowrank.generation.step_functions import FrozenWeights
from keras_lowrank.utils.optional import tensorflow as tf

DECODE = "decode"
# The keras-hub classes whose cached decoding this contract has been checked
# on (tests/generation/test_litertlm.py); subclasses count.
SUPPORTED_FAMILIES = ("Llama3CausalLM", "GemmaCausalLM", "GPT2CausalLM",
                      "Gemma3CausalLM", "QwenCausalLM", "Qwen3CausalLM",
                      "MistralCausalLM", "Phi3CausalLM")


def check_family(model):
    """Raises unless `model` is of a family the bundle can express.

    Raises:
        TypeError: naming the received class and the supported ones.
    """
    names = {cls.__name__ for cls in type(model).__mro__}
    if not names & set(SUPPORTED_FAMILIES):
        raise TypeError(
            f"export_litertlm does not export {type(model).__name__}: its "
            "LiteRT-LM contract graphs are written and checked for "
            f"{list(SUPPORTED_FAMILIES)} (and their subclasses) only. Export "
            "another family with export_generator(..., 'tflite') instead.")


def variable_ops(flatbuffer):
    """The ops of `flatbuffer` that read or write resource variables (the
    runtime runs such a model, but every token comes out 0)."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = Interpreter(
        model_content=flatbuffer,
        experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    return sorted({op["op_name"] for op in litert_compat.ops_details(interpreter)}
                  & set(VARIABLE_OPS))


def prefill_name(length):
    """The runtime's name of the prefill signature of `length` tokens."""
    return f"prefill_{length}"


def kv_names(num_layers):
    """The cache inputs (and outputs) in order: all keys, then all values."""
    return ([f"kv_cache_k_{i}" for i in range(num_layers)]
            + [f"kv_cache_v_{i}" for i in range(num_layers)])


def contract_signature(cache_shape, length):
    """Input specs of a signature taking `length` tokens.

    Args:
        cache_shape: keras-hub's batch-1 cache shape
            (1, layers, 2, C, KVH, D), from `cached_causal_lm.cache_shape`.
        length: int. Tokens per call (1 for decode).
    """
    _, layers, _, context, kv_heads, head_dim = cache_shape
    kv = (1, context, kv_heads, head_dim)
    return [
        tf.TensorSpec((1, length), tf.int32, name="tokens"),
        tf.TensorSpec((length,), tf.int32, name="input_pos"),
        tf.TensorSpec((1, 1, length, context), tf.float32, name="mask"),
    ] + [tf.TensorSpec(kv, tf.float32, name=name) for name in kv_names(layers)]


def contract_step(model, num_layers, with_logits):
    """`(tokens, input_pos, mask, *kv) -> {name: tensor}` over keras-hub's
    `call_with_cache`, writing the chunk at `input_pos[0]`."""
    names = kv_names(num_layers)

    def step(tokens, input_pos, mask, *kv):
        keys, values = kv[:num_layers], kv[num_layers:]
        # num_layers x (1, C, KVH, D) -> (1, layers, 2, C, KVH, D)
        cache = tf.stack(
            [tf.stack([k, v], axis=1) for k, v in zip(keys, values)], axis=1)
        # Reading `mask` keeps it an input of the converted graph (see the
        # module docstring); it adds 0.
        start = input_pos[0] + tf.cast(0.0 * mask[0, 0, 0, 0], tf.int32)
        logits, cache = cached_causal_lm.call_with_cache(
            model, tokens, cache, start)
        outputs = {names[i]: cache[:, i, 0] for i in range(num_layers)}
        outputs.update(
            {names[num_layers + i]: cache[:, i, 1] for i in range(num_layers)})
        if with_logits:
            outputs["logits"] = logits  # (1, 1, vocabulary)
        return outputs

    return step


def contract_flatbuffer(model, cache_shape, prefill_lengths, quantize=None,
                        keep_float=(), lora_inputs=()):
    """The `.tflite` bytes of `model` (merged, float32) in the runtime's
    contract: one `prefill_<n>` signature per length, and `decode`.

    With `lora_inputs`, `[(input name, variable)]` of `model`'s LoRA
    factors (`litertlm_adapter.runtime_lora_model`): each signature takes
    those factors as inputs after the cache, under those names, instead of
    their values (the runtime's LoRA inputs).

    With `quantize="dynamic"`: int8 weights, activations quantized on the
    fly, the cache float32; layers whose op output names match a
    `keep_float` pattern stay float (`quantize_dynamic_range`).

    Raises:
        UnsupportedOpsError: the graphs need ops outside LiteRT's builtins.
    """
    layers = cache_shape[1]
    frozen = FrozenWeights(model, fed=[v for _, v in lora_inputs])
    factors = [tf.TensorSpec(v.shape, tf.float32, name=name)
               for name, v in lora_inputs]
    signatures = [
        frozen.signature(prefill_name(n), contract_step(model, layers, with_logits=False),
                         contract_signature(cache_shape, n) + factors)
        for n in prefill_lengths
    ]
    signatures.append(frozen.signature(
        DECODE, contract_step(model, layers, with_logits=True),
        contract_signature(cache_shape, 1) + factors))
    flatbuffer = convert_signatures(
        frozen, signatures, f"The LiteRT-LM graphs ({type(model).__name__})")
    if quantize == "dynamic":
        flatbuffer, _ = quantize_dynamic_range(flatbuffer, keep_float)
    return flatbuffer
