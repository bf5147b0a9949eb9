"""`dispatch_export`: the hook through which `klr.export` hands causal LMs
to `export_generator`.

`keras_lowrank.exporters.export` calls it first, with its own arguments; a
keras-hub causal LM that decodes with a KV cache, asked for `"tflite"` or
`"onnx"`, then gets a generation artifact (prefill and decode graphs with
the cache) instead of a one-shot logits graph. Anything else returns None
and `export` goes on as before.
"""

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.export_generator import DEFAULT_MAX_LENGTH
from keras_lowrank.generation.export_generator import export_generator
from keras_lowrank.generation.generator_spec import FORMATS


def dispatch_export(
    model,
    path,
    format,
    *,
    quantize=None,
    sample_inputs=None,
    verify=True,
    allow_flex=False,
    opset=None,
    representative_data=None,
    atol=None,
    metadata=None,
    labels=None,
    calibration_data=None,
    eval_data=None,
):
    """`export_generator(model, path, format, ...)` for a cached causal LM
    in a generation format, else None.

    The cache holds `DEFAULT_MAX_LENGTH` (256) positions, or the model's
    learned positions where fewer (GPT-2); `quantize` may be None or
    `"dynamic"` (checked on token agreement, `export_generator`).
    `export_generator` itself takes the other options (cache length,
    prefill lengths, tokenizer, prompts).

    Raises:
        ValueError: an argument of `klr.export` that generation export does
            not take (Flex ops, sample inputs, a tolerance: generation is
            checked token for token; metadata, labels, calibration or
            evaluation data), naming it; nothing is written.
    """
    if format not in FORMATS or not cached_causal_lm.is_cached_causal_lm(model):
        return None
    given = {
        "sample_inputs": sample_inputs,
        "allow_flex": allow_flex or None,
        "opset": opset,
        "representative_data": representative_data,
        "atol": atol,
        "metadata": metadata,
        "labels": labels,
        "calibration_data": calibration_data,
        "eval_data": eval_data,
    }
    unused = [name for name, value in given.items() if value is not None]
    if unused:
        raise ValueError(
            f"{type(model).__name__} is exported for generation (prefill and "
            "decode with a KV cache, checked token for token against Keras), "
            f"which takes none of {unused}; call keras_lowrank.generation."
            "export_generator for its own options. Received: "
            + ", ".join(f"{name}={given[name]!r}" for name in unused)
        )
    positions = cached_causal_lm.max_positions(model)
    max_length = min(DEFAULT_MAX_LENGTH, positions or DEFAULT_MAX_LENGTH)
    return export_generator(model, path, format, max_length=max_length,
                            quantize=quantize, verify=verify)
