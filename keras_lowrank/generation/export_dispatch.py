"""`dispatch_export`: the hook through which `klr.export` hands causal LMs
to `export_generator`.

`keras_lowrank.exporters.export` calls it first, with its `ExportOptions`;
a keras-hub causal LM that decodes with a KV cache, asked for `"tflite"` or
`"onnx"`, then gets a generation artifact (prefill and decode graphs with
the cache) instead of a one-shot logits graph. Anything else returns None
and `export` goes on as before.
"""

from keras_lowrank.exporters.export_options import ExportOptions
from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.export_generator import DEFAULT_MAX_LENGTH
from keras_lowrank.generation.export_generator import export_generator
from keras_lowrank.generation.generator_spec import FORMATS

# The options of `klr.export` generation does not take: it is checked token
# for token (no sample inputs, no tolerance) and has its own graphs (no Flex
# ops, opset, metadata, labels, calibration or evaluation data).
NOT_FOR_GENERATION = (
    "sample_inputs", "allow_flex", "opset", "representative_data", "atol",
    "metadata", "labels", "calibration_data", "eval_data",
)


def dispatch_export(model, path, format, options=None, **fields):
    """`export_generator(model, path, format, ...)` for a cached causal LM
    in a generation format, else None.

    The cache holds `DEFAULT_MAX_LENGTH` (256) positions, or the model's
    learned positions where fewer (GPT-2); `quantize` may be None or
    `"dynamic"` (checked on token agreement, `export_generator`).
    `export_generator` itself takes the other options (cache length,
    prefill lengths, tokenizer, prompts).

    Args:
        model: what `klr.export` was given.
        path: where to write.
        format: the format's name.
        options: the `ExportOptions` of `klr.export`; or, instead, its
            fields as keyword arguments (`**fields`).

    Raises:
        ValueError: an option of `klr.export` that generation export does
            not take (`NOT_FOR_GENERATION`), naming it; nothing is written.
        TypeError: keyword arguments that are not `ExportOptions` fields,
            or both `options` and keywords.
    """
    options = ExportOptions.from_arguments(options, fields, "dispatch_export")
    if format not in FORMATS or not cached_causal_lm.is_cached_causal_lm(model):
        return None
    # allow_flex=False asks for nothing; every other option is None unless given.
    given = {name: getattr(options, name) for name in NOT_FOR_GENERATION}
    unused = [name for name, value in given.items()
              if value is not None and not (name == "allow_flex" and not value)]
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
                            quantize=options.quantize, verify=options.verify)
