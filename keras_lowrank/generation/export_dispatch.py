"""`dispatch_export`: the hook through which `klr.export` hands causal LMs
to the generation exporters.

`keras_lowrank.exporters.export` calls it first, with its `ExportOptions`.
A keras-hub causal LM that decodes with a KV cache, asked for `"tflite"` or
`"onnx"`, then gets a generation artifact of this project's runner
(`export_generator`: prefill and decode graphs with the cache) instead of
a one-shot logits graph; anything else in those formats returns None and
`export` goes on as before. `"litertlm"` (a LiteRT-LM bundle,
`export_litertlm`) and `"onnx_genai"` (an ONNX Runtime GenAI folder,
`export_onnx_genai`) are generation formats only: the model must be such
a causal LM, and `tokenizer` is required.
"""

import dataclasses
import os

from keras_lowrank.exporters.export_options import ExportOptions
from keras_lowrank.exporters.formats import FORMATS as GRAPH_FORMATS
from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation import litertlm_export
from keras_lowrank.generation.export_generator import DEFAULT_MAX_LENGTH
from keras_lowrank.generation.export_generator import export_generator
from keras_lowrank.generation.generator_spec import FORMATS as GENERATOR_FORMATS
from keras_lowrank.generation.onnx_genai_config import CONFIG_FILE
from keras_lowrank.generation.onnx_genai_export import export_onnx_genai
from keras_lowrank.generation.onnx_genai_model import MODEL_FILE
from keras_lowrank.generation.onnx_genai_quantize import QUANTIZE_MODES as GENAI_QUANTIZE_MODES
from keras_lowrank.utils.atomic import check_target
from keras_lowrank.utils.atomic import has_files

# The options of `klr.export` generation does not take: it is checked token
# for token (no sample inputs, no tolerance) and has its own graphs (no Flex
# ops, opset, metadata, labels, calibration or evaluation data).
NOT_FOR_GENERATION = (
    "sample_inputs", "allow_flex", "opset", "representative_data", "atol",
    "metadata", "labels", "calibration_data", "eval_data",
)


@dataclasses.dataclass(frozen=True)
class RuntimeFormat:
    """A generation-only format: an artifact another project's runtime runs.

    Args:
        name: str. The format name `klr.export` takes.
        title: str. What it writes, for messages and help.
        directory: bool. Whether the artifact is a folder.
        quantize_modes: tuple. The `quantize` values it takes.
        write: callable `(model, path, options, max_length) -> report`.
        replaceable: None, or a predicate of an existing folder that the
            artifact may replace (`utils.atomic.check_target`).
    """

    name: str
    title: str
    directory: bool
    quantize_modes: tuple
    write: object
    replaceable: object = None


def _write_litertlm(model, path, options, max_length):
    return litertlm_export.export_litertlm(
        model, path, max_length=max_length, tokenizer=options.tokenizer,
        quantize=options.quantize, verify=options.verify,
        runtime_adapters=options.runtime_adapters)


def _write_onnx_genai(model, path, options, max_length):
    return export_onnx_genai(model, path, max_length=max_length,
                             tokenizer=options.tokenizer, verify=options.verify,
                             runtime_adapters=bool(options.runtime_adapters),
                             quantize=options.quantize)


RUNTIME_FORMATS = {
    record.name: record
    for record in (
        RuntimeFormat("litertlm", "LiteRT-LM bundle", False,
                      litertlm_export.QUANTIZE_MODES, _write_litertlm),
        # A folder of an earlier export is replaced, as export_onnx_genai does.
        RuntimeFormat("onnx_genai", "ONNX Runtime GenAI folder", True,
                      GENAI_QUANTIZE_MODES, _write_onnx_genai,
                      has_files(CONFIG_FILE, MODEL_FILE)),
    )
}
# Every format a keras-hub causal LM with a KV cache is exported in.
GENERATION_FORMATS = (*GENERATOR_FORMATS, *RUNTIME_FORMATS)


def dispatch_export(model, path, format, options=None, **fields):
    """The generation export of `model` in `format`, or None.

    `"tflite"` / `"onnx"`: `export_generator(model, path, format, ...)` for
    a cached causal LM, None for any other model. `"litertlm"` /
    `"onnx_genai"`: `export_litertlm` / `export_onnx_genai`, for a cached
    causal LM only. The cache holds `DEFAULT_MAX_LENGTH` (256) positions,
    or the model's learned positions where fewer (GPT-2); `quantize` may be
    None or `"dynamic"` (`"onnx_genai"`: None, `"int4"` or `"int8"`,
    weight-only), a quantized artifact checked on next-token agreement.
    The exporters themselves take the other options (cache length,
    prefill lengths, prompts).

    Args:
        model: what `klr.export` was given.
        path: where to write.
        format: the format's name.
        options: the `ExportOptions` of `klr.export`; or, instead, its
            fields as keyword arguments (`**fields`).

    Returns:
        None, a `GenerationReport`, a `LitertlmReport` or an
        `OnnxGenAIReport`.

    Raises:
        ValueError: an option of `klr.export` that generation export does
            not take (`NOT_FOR_GENERATION`), naming it; a model that is not
            a cached causal LM in a generation-only format; a missing
            tokenizer (see `check_runtime_arguments`). Nothing is written.
        TypeError: keyword arguments that are not `ExportOptions` fields,
            or both `options` and keywords.
    """
    options = ExportOptions.from_arguments(options, fields, "dispatch_export")
    cached = cached_causal_lm.is_cached_causal_lm(model)
    if format in RUNTIME_FORMATS:
        if not cached:
            raise _not_a_causal_lm(model, format)
        check_runtime_arguments(path, format, options)
    elif format not in GENERATOR_FORMATS or not cached:
        return None
    _check_generation_options(f"{type(model).__name__} is exported", options)
    positions = cached_causal_lm.max_positions(model)
    max_length = min(DEFAULT_MAX_LENGTH, positions or DEFAULT_MAX_LENGTH)
    if format in RUNTIME_FORMATS:
        return RUNTIME_FORMATS[format].write(model, path, options, max_length)
    return export_generator(model, path, format, max_length=max_length,
                            tokenizer=options.tokenizer,
                            quantize=options.quantize, verify=options.verify,
                            runtime_adapters=bool(options.runtime_adapters))


def check_runtime_arguments(path, format, options=None, **fields):
    """Checks what a generation-only format needs, before the model loads.

    Args:
        path: where the artifact goes: a `.litertlm` file, a GenAI folder.
        format: `"litertlm"` or `"onnx_genai"`.
        options: `ExportOptions`, or its fields as keyword arguments.

    Returns:
        The format's `RuntimeFormat`.

    Raises:
        ValueError: an unknown format, a quantize mode the format does not
            take, an option of `NOT_FOR_GENERATION`, no `tokenizer`, or a
            `path` the artifact cannot replace.
        FileNotFoundError: `tokenizer` is not a file.
    """
    options = ExportOptions.from_arguments(options, fields, "check_runtime_arguments")
    record = RUNTIME_FORMATS.get(format)
    if record is None:
        raise ValueError(
            f"Unrecognized format={format!r}. Supported generation-only "
            f"formats are: {list(RUNTIME_FORMATS)}")
    if options.quantize not in record.quantize_modes:
        raise ValueError(
            f"format={format!r} supports quantize in "
            f"{list(record.quantize_modes)}. Received: "
            f"quantize={options.quantize!r}")
    _check_generation_options(f"format={format!r} exports a causal LM", options)
    if options.tokenizer is None:
        raise ValueError(
            f"format={format!r} writes the model's Hugging Face tokenizer.json "
            f"into the {record.title}, with the tokenizer_config.json beside "
            "it (chat template, start and stop tokens). Received: "
            "tokenizer=None. Pass tokenizer='path/to/tokenizer.json' (the "
            "model folder's).")
    if not os.path.isfile(options.tokenizer):
        raise FileNotFoundError(
            "`tokenizer` must be the path of a tokenizer.json file. Received: "
            f"tokenizer={options.tokenizer!r}, which is not a file.")
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`path` must be a non-empty path. Received: {path!r}")
    check_target(path, directory=record.directory, replaceable=record.replaceable)
    return record


def _check_generation_options(subject, options):
    """Refuses the `klr.export` options generation does not take; the
    message starts with `subject` ("Llama3CausalLM is exported")."""
    # allow_flex=False asks for nothing; every other option is None unless given.
    given = {name: getattr(options, name) for name in NOT_FOR_GENERATION}
    unused = [name for name, value in given.items()
              if value is not None and not (name == "allow_flex" and not value)]
    if unused:
        raise ValueError(
            f"{subject} for generation (prefill and "
            "decode with a KV cache, checked token for token against Keras), "
            f"which takes none of {unused}; call keras_lowrank.generation."
            "export_generator for its own options. Received: "
            + ", ".join(f"{name}={given[name]!r}" for name in unused)
        )


def _not_a_causal_lm(model, format):
    name = getattr(model, "name", None)
    shown = type(model).__name__ + (f" '{name}'" if isinstance(name, str) else "")
    return ValueError(
        f"format={format!r} ({RUNTIME_FORMATS[format].title}) is for "
        "generation only: it needs a keras-hub causal LM that decodes with a "
        "KV cache (a `call_with_cache` method and a backbone, e.g. "
        f"Llama3CausalLM, GemmaCausalLM, GPT2CausalLM). Received: {shown}. "
        f"Export this model in a graph format instead: one of "
        f"{list(GRAPH_FORMATS)} (e.g. format='tflite'). Nothing was written.")
