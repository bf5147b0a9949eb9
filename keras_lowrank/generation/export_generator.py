"""`export_generator`: a causal LM as a phone-ready generation artifact.

LiteRT: `prefill_<n>` signatures (fixed prompt chunks, right-padded) and a
`decode` signature (one token), each taking and returning the KV cache of a
fixed length, builtin ops only, weights frozen into the file. ONNX: one
graph with the same inputs and a dynamic chunk length, for prefill and
decode. The artifact is written atomically and checked: greedy generation
driven from it (prefill, then decode step by step) must equal Keras'
greedy generation token for token; with `quantize="dynamic"` (int8
weights) it must agree with Keras on at least `min_agreement` of the
tokens instead.
"""

import os

import numpy as np

from keras_lowrank._compat import litert as litert_compat
from keras_lowrank._compat import tensorflow as tensorflow_compat
from keras_lowrank.adapters.merge import merge_adapters
from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation import export_arguments as arguments
from keras_lowrank.generation import runtime
from keras_lowrank.generation import runtime_adapters as runtime_adapter_lib
from keras_lowrank.generation.generation_report import GenerationReport
from keras_lowrank.generation.generation_verification import verify_generation
from keras_lowrank.generation.generator_spec import FORMATS
from keras_lowrank.generation.generator_spec import GeneratorSpec
from keras_lowrank.generation.keras_reference import checked_reference
from keras_lowrank.generation.litert_generator import VARIABLE_OPS
from keras_lowrank.generation.litert_generator import write_litert_generator
from keras_lowrank.generation.onnx_generator import write_onnx_generator
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.optional import tensorflow

DEFAULT_MAX_LENGTH = 256
DEFAULT_PROMPTS = 8
DEFAULT_NEW_TOKENS = 32
DEFAULT_MIN_AGREEMENT = arguments.DEFAULT_MIN_AGREEMENT
_WRITERS = {"tflite": write_litert_generator, "onnx": write_onnx_generator}


@tensorflow_compat.custom_gradients_released()
def export_generator(
    causal_lm,
    path,
    format,
    *,
    max_length=DEFAULT_MAX_LENGTH,
    prefill_lengths=None,
    tokenizer=None,
    stop_token_ids=None,
    start_token_id=None,
    prompts=None,
    max_new_tokens=DEFAULT_NEW_TOKENS,
    verify=True,
    num_threads=None,
    quantize=None,
    keep_float=(),
    min_agreement=DEFAULT_MIN_AGREEMENT,
    runtime_adapters=False,
    reference=None,
) -> GenerationReport:
    """Exports `causal_lm` for generation, runs it in its runtime, checks it.

    LoRA adapters are merged first (`klr.merge_adapters`). Keras' greedy
    tokens for the check are computed before anything is written, from the
    model as given; the artifact goes to a temporary sibling of `path`, is
    loaded in LiteRT or ONNX Runtime, generates greedily from every prompt,
    and is moved to `path` only if every token equals Keras'.

    Args:
        causal_lm: a keras-hub `CausalLM` with `call_with_cache` (Llama,
            Llama3, Gemma, GPT-2, ...), float32, with or without adapters.
        path: str. The `.tflite` or `.onnx` file to write.
        format: str. `"tflite"` or `"onnx"`.
        max_length: int. Cache positions (prompt plus generated tokens);
            at most the backbone's `max_sequence_length` where it has one.
        prefill_lengths: tuple of int. TFLite only: the prompt chunk
            lengths, one `prefill_<n>` signature each. Default `(32, 128)`,
            without those longer than `max_length`. Longer prompts are
            written in several chunks.
        tokenizer: optional path of a `tokenizer.json` (`tokenizers`
            library). Checked against the model's vocabulary; needed for
            text prompts.
        stop_token_ids: tuple of int written into the artifact for runners
            to stop at. Default: the preprocessor tokenizer's `end_token_id`
            where the model has one, else none.
        start_token_id: int written into the artifact: the token a runner
            puts before a text prompt's ids, as Keras' `generate()` does.
            Default: the preprocessor tokenizer's `start_token_id` where the
            model's preprocessor adds it (`add_start_token`), else none.
        prompts: the check's prompts: strings (with `tokenizer`; run from
            the start token and the text's ids, as the runner and Keras'
            `generate()` run them) or lists of token ids (run as given). Default: 8 seeded random prompts of lengths spread
            from 1 to the longest that leaves room for `max_new_tokens`.
        max_new_tokens: int. Tokens generated per prompt in the check.
        verify: bool. Whether to run the check (and measure speed).
        num_threads: optional int. Runtime threads for the check.
        quantize: None (float32, tokens equal to Keras' required) or
            `"dynamic"`: int8 weights with activations quantized on the fly
            (LiteRT dynamic-range quantization; ONNX Runtime
            `quantize_dynamic`, per channel). Checked on token agreement.
        keep_float: regular expressions over the LiteRT graph's op output
            names (they hold the Keras layer paths, e.g.
            `"feedforward_output_dense"`, `"token_embedding"`): with
            `quantize="dynamic"`, the matching layers stay in float32.
            LiteRT only; each pattern must match a layer.
        min_agreement: float in [0, 1]. With `quantize`: the least
            next-token agreement, the share of steps of Keras' own greedy
            continuations where the artifact, fed the same tokens, picks
            Keras' next token; below it the export fails and nothing is
            written. The report also gives the free-running agreement.
        runtime_adapters: bool. Keep the LoRA adapters out of the weights:
            each adapted layer's factors become inputs of every signature
            (`runtime_adapters.py`; zeros give the base model), checked with
            `causal_lm`'s own adapters fed in. `write_runtime_adapter`
            writes any adapter of the same layers as the `.npz` an app
            loads (`Generator.load_adapter`). Plain LoRA only.
        reference: optional `GreedyReference` of `causal_lm` on this
            export's cache shape: Keras' greedy generation for the check,
            when the caller has one traced already (the decode step is
            traced once per `GreedyReference`). Default: one made here.

    Returns:
        A `GenerationReport`: agreement, time to first token, decode
        tokens/s.

    Raises:
        TypeError: `causal_lm` is not a keras-hub CausalLM whose attention
            layers take a cache (nothing is written).
        ValueError: a bad argument: unknown format, `max_length` shorter
            than the longest prefill length or longer than the model's
            positions, a tokenizer that does not match the vocabulary, a
            prompt too long (nothing is written).
        UnsupportedOpsError: the graphs need ops outside LiteRT builtins.
        GenerationVerificationError: the artifact's greedy tokens differ
            from Keras'; nothing is left at `path`.

    Example:
    ```python
    from keras_lowrank.generation import export_generator
    report = export_generator(lm, "lm.tflite", "tflite", max_length=512,
                              tokenizer="tokenizer.json")
    print(report)
    ```
    """
    path, max_length, max_new_tokens, prefill_lengths = _check_arguments(
        path, format, max_length, prefill_lengths, max_new_tokens
    )
    _check_quantize(quantize, min_agreement, keep_float, format)

    cached_causal_lm.check_cached_causal_lm(causal_lm)
    cached_causal_lm.check_exportable(causal_lm, max_length, "export_generator")
    adapters = ()
    if runtime_adapters:
        adapters = runtime_adapter_lib.adapter_entries(causal_lm)
    vocabulary = cached_causal_lm.vocabulary_size(causal_lm)
    text_tokenizer = None
    if tokenizer is not None:
        text_tokenizer = runtime.load_tokenizer(tokenizer, vocabulary)
    start = arguments.start_token(causal_lm, start_token_id, vocabulary)
    prompts = _prompt_ids(prompts, text_tokenizer, vocabulary, max_length,
                          max_new_tokens, start)
    tensorflow.load()
    spec = GeneratorSpec(
        format=format,
        max_length=max_length,
        prefill_lengths=prefill_lengths,
        cache_shape=cached_causal_lm.cache_shape(causal_lm, max_length),
        vocabulary_size=vocabulary,
        stop_token_ids=_stop_tokens(causal_lm, stop_token_ids, vocabulary),
        model=type(causal_lm).__name__,
        adapters=adapters,
        start_token_id=start,
    )
    # Runtime adapters: the factors stay in the graph, as inputs.
    merged = causal_lm if adapters else merge_adapters(causal_lm)
    expected = None
    if verify:
        reference = checked_reference(reference, causal_lm, spec.cache_shape)
        expected = [reference(p, max_new_tokens) for p in prompts]

    with atomic_path(path) as tmp:
        kwargs = {"keep_float": tuple(keep_float)} if keep_float else {}
        _WRITERS[format](merged, spec, tmp, quantize=quantize, **kwargs)
        generator = runtime.load_generator(tmp, num_threads, format)
        if adapters:
            generator.load_adapter(
                runtime_adapter_lib.runtime_adapter_arrays(causal_lm, spec))
        ops = _ops(tmp, format)
        leftover = sorted(set(ops) & set(VARIABLE_OPS))
        if leftover:
            raise RuntimeError(
                f"The LiteRT graphs kept resource variables ({leftover}); "
                f"nothing was written to {path!r}."
            )
        measured = {}
        if verify:
            try:
                measured = verify_generation(
                    generator, prompts, max_new_tokens, expected,
                    min_agreement=min_agreement if quantize else None,
                )
            except RuntimeError as error:
                error.args = (f"{error.args[0]} The artifact was removed; "
                              f"{path!r} is unchanged.",)
                raise
    return GenerationReport(
        format=format,
        path=path,
        size_bytes=os.path.getsize(path),
        spec=spec,
        ops=ops,
        runtime=generator.runtime,
        quantize=quantize,
        verified=verify,
        prompt_lengths=tuple(len(p) for p in prompts) if verify else (),
        **measured,
    )


def _check_arguments(path, format, max_length, prefill_lengths, max_new_tokens):
    """Checks what needs no model; returns the path as a str, `max_length`,
    `max_new_tokens` and the prefill lengths to use."""
    if format not in FORMATS:
        raise ValueError(
            f"Unrecognized format={format!r}. Supported formats are: "
            f"{list(FORMATS)}"
        )
    path = arguments.check_file_path(path, "export_generator")
    max_length = arguments.check_positive_int("max_length", max_length)
    max_new_tokens = arguments.check_positive_int("max_new_tokens", max_new_tokens)
    if format == "onnx":
        if prefill_lengths is not None:
            raise ValueError(
                "`prefill_lengths` only applies to format='tflite' (the ONNX "
                "graph takes any prompt length). Received: "
                f"prefill_lengths={prefill_lengths!r} with format='onnx'"
            )
        return path, max_length, max_new_tokens, ()
    return path, max_length, max_new_tokens, arguments.check_prefill_lengths(
        prefill_lengths, max_length)


def _check_quantize(quantize, min_agreement, keep_float=(), format="tflite"):
    arguments.check_quantize(quantize, min_agreement)
    if keep_float and (quantize is None or format != "tflite"
                       or isinstance(keep_float, str)):
        raise ValueError(
            "keep_float names layers a LiteRT dynamic-range export leaves in "
            "float: pass a tuple of patterns with format='tflite' and "
            f"quantize='dynamic'. Received: keep_float={keep_float!r}, "
            f"format={format!r}, quantize={quantize!r}")


def _prompt_ids(prompts, tokenizer, vocabulary, max_length, max_new_tokens,
                start=None):
    if prompts is None:
        longest = max(1, min(max_length - max_new_tokens + 1, max_length))
        lengths = np.unique(np.linspace(1, longest, DEFAULT_PROMPTS).astype(int))
        rng = np.random.default_rng(0)
        return [rng.integers(0, vocabulary, size=int(n)).tolist() for n in lengths]
    if isinstance(prompts, str) or not prompts:
        raise ValueError(
            "`prompts` must be a non-empty list of strings or token id lists. "
            f"Received: prompts={prompts!r}"
        )
    ids = []
    for prompt in prompts:
        if isinstance(prompt, str):
            if tokenizer is None:
                raise ValueError(
                    "Text prompts need `tokenizer` (a tokenizer.json path). "
                    f"Received: prompt {prompt!r} and tokenizer=None"
                )
            prompt = ([] if start is None else [start]) + tokenizer.encode(prompt).ids
        prompt = [int(t) for t in prompt]
        if not prompt or not all(0 <= t < vocabulary for t in prompt):
            raise ValueError(
                "Each prompt needs at least one token id in [0, "
                f"{vocabulary}). Received: {prompt!r}"
            )
        if len(prompt) > max_length:
            raise ValueError(
                f"A prompt of {len(prompt)} tokens does not fit the cache of "
                f"max_length={max_length}."
            )
        ids.append(prompt)
    return ids


def _stop_tokens(model, stop_token_ids, vocabulary):
    if stop_token_ids is None:
        end = cached_causal_lm.preprocessor_token(model, "end_token_id")
        return () if end is None else (int(end),)
    return arguments.check_token_ids("stop_token_ids", stop_token_ids, vocabulary)


def _ops(path, format):
    if format == "tflite":
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_litert.interpreter import OpResolverType

        interpreter = Interpreter(
            model_path=path,
            experimental_op_resolver_type=(
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES),
        )
        return tuple(sorted({op["op_name"] for op in litert_compat.ops_details(interpreter)}))
    import onnx

    model = onnx.load(path, load_external_data=False)
    return tuple(sorted({node.op_type for node in model.graph.node}))

