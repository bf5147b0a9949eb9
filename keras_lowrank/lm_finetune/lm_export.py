"""`export_and_measure`: a causal-LM run's generator exported, then its test
answers generated in its runtime.

`tflite` and `onnx` are this project's generators (`export_generator`);
`litertlm` (a LiteRT-LM bundle) and `onnx_genai` (an ONNX Runtime GenAI
folder) hold the model folder's tokenizer and chat template and are
checked in those runtimes (`export_litertlm`, `export_onnx_genai`).
`litertlm_lora` is a folder of a LiteRT-LM base bundle, its LoRA inputs
empty (`export_litertlm(..., runtime_adapters=True)`), and the run's
adapters as the runtime's LoRA file (`write_litertlm_adapter`), each
checked in LiteRT-LM: the base with no adapter against the base model,
the base with the file against the fine-tuned one.
"""

import dataclasses
import json
import os
import shutil
import time

from keras_lowrank.generation import GenerationVerificationError
from keras_lowrank.generation import PromptTooLongError
from keras_lowrank.generation import export_generator
from keras_lowrank.generation import export_litertlm
from keras_lowrank.generation import export_onnx_genai
from keras_lowrank.generation import write_litertlm_adapter
from keras_lowrank.generation.cached_causal_lm import cache_shape
from keras_lowrank.generation.export_arguments import DEFAULT_MIN_AGREEMENT
from keras_lowrank.generation.keras_reference import GreedyReference
from keras_lowrank.generation.litertlm_adapter import checked_adapters
from keras_lowrank.generation.litertlm_adapter import runtime_rank
from keras_lowrank.generation.litertlm_check import conversation_text
from keras_lowrank.generation.litertlm_check import open_engine
from keras_lowrank.generation.litertlm_export import check_litertlm_adapter
from keras_lowrank.generation.onnx_genai_check import GenAIGenerator
from keras_lowrank.lm_finetune import lm_evaluation
from keras_lowrank.lm_finetune.chat_format import TOKENIZER_FILE
from keras_lowrank.lm_finetune.lm_evaluation import answer_tokens
from keras_lowrank.runs.export_record import EXPORT_ERRORS
from keras_lowrank.runs.export_record import record_export
from keras_lowrank.runs.run_folder import ADAPTER_BUNDLE
from keras_lowrank.runs.run_folder import ADAPTER_BUNDLE_FILES
from keras_lowrank.runs.run_folder import RUNTIME_ARTIFACTS
from keras_lowrank.runs.run_folder import artifact_file

# Test prompts the export check generates from, and how many tokens each.
VERIFY_PROMPTS = 4
VERIFY_NEW_TOKENS = 8
# The formats whose artifact LiteRT runs: `tflite_quantize` applies to them.
LITERT_FORMATS = ("tflite", "litertlm", ADAPTER_BUNDLE)


def lm_artifact(format) -> str:
    """The name of the `format` artifact in a causal-LM run folder:
    `model.tflite`, `model.onnx`, `model.litertlm`, `onnx_genai`."""
    return RUNTIME_ARTIFACTS.get(format) or artifact_file(format)


def check_adapter_bundle(model):
    """Raises ValueError, before training, when `model`'s adapters cannot
    go into a LiteRT-LM LoRA file (`litertlm_lora`): one plain LoRA
    adapter on attention projections only, rank at most 32."""
    try:
        checked_adapters(model)
        runtime_rank(model)
    except ValueError as error:
        raise ValueError(
            f"--export {ADAPTER_BUNDLE}: {error.args[0]} A run's LoRA goes "
            "into LiteRT-LM's LoRA file when it adapts only the attention "
            "projections: train with --targets query key value "
            "attention_output (rank up to 32), or export litertlm (the "
            "adapters merged into one bundle).") from None


def export_and_measure(model, format, folder, chat, test, scored, examples,
                       options, build, reference=None):
    """Exports a generator to `build`, then answers the test prompts with it
    in its runtime. Paths in the result name the artifact in `options.out`.

    `reference`: optional `keras_reference(model, options)`, shared by a
    run's formats: Keras' step is traced once for them all, not once per
    format (seconds each for SmolLM2's 30 blocks).

    A LiteRT-LM bundle's engine takes text, not the run's prompt ids: its
    test answers are measured by sending each test prompt's user message
    through its Conversation API (the bundle's chat template), as an app
    would; its check (greedy text equal to Keras' on the first test
    prompts, and through the chat template) gives its agreement, time to
    first token and decode speed.
    """
    path = os.path.join(build, lm_artifact(format))
    prompts = [test.prompts[i] for i in scored]
    longest = max((len(p) for p in prompts), default=0)
    new_tokens = answer_tokens(test, scored)
    if longest + new_tokens > options.export_max_length:
        raise ValueError(
            f"export_max_length must hold the longest test prompt and its "
            f"answer: {longest} + {new_tokens} tokens. Received: "
            f"export_max_length={options.export_max_length}")
    verify = prompts[:VERIFY_PROMPTS] or None
    tokenizer = options.tokenizer_file or os.path.join(folder, TOKENIZER_FILE)
    kwargs = {}
    if format in LITERT_FORMATS:
        kwargs["prefill_lengths"] = prefill_lengths(options.export_max_length)
        kwargs["quantize"] = options.tflite_quantize
        if options.tflite_quantize:
            kwargs["keep_float"] = options.tflite_keep_float
    final = os.path.join(options.out, lm_artifact(format))
    check = {"tokenizer": tokenizer, "stop_token_ids": chat.stop_token_ids or None,
             "max_new_tokens": min(VERIFY_NEW_TOKENS,
                                   options.export_max_length - longest)}

    def write():
        exported = export_generator(
            model, path, format, max_length=options.export_max_length,
            prompts=verify, reference=reference, **check, **kwargs)
        start = time.perf_counter()
        generated = lm_evaluation.runtime_greedy(path, prompts, new_tokens,
                                                 chat.stop_token_ids)
        texts = [chat.decode(tokens) for tokens in generated]
        references = [chat.decode(test.completions[i]) for i in scored]
        # As report.json will hold it (tuples as lists).
        result = json.loads(json.dumps(exported.to_dict()))
        result.update({
            "size_bytes": os.path.getsize(path),
            "test_accuracy": lm_evaluation.answer_accuracy(texts, references),
            "runtime_seconds": time.perf_counter() - start,
            "export_max_length": options.export_max_length,
            "keep_float": list(kwargs.get("keep_float", ())),
        })
        return result

    def write_runtime():
        texts = _user_texts(examples["test"], scored)[:VERIFY_PROMPTS] or None
        return _write_runtime(model, format, path, chat, test, scored,
                              examples["test"], options, kwargs, prompts=texts,
                              reference=reference, **check)

    # A failed export is recorded, as the classifier's runs do: the rest of
    # the report still stands.
    runtime = format in RUNTIME_ARTIFACTS
    return record_export(
        write_runtime if runtime else write, path, final,
        errors=(*EXPORT_ERRORS, GenerationVerificationError,
                *((PromptTooLongError,) if runtime else ())),
        failed=lambda error: {"test_accuracy": None, "size_bytes": None,
                              "path": None})


def _write_runtime(model, format, path, chat, test, scored, examples, options,
                   kwargs, **check):
    """A LiteRT-LM bundle or GenAI folder at `path`, checked in its runtime;
    then, in GenAI, the test prompts answered. Its result, JSON-ready."""
    if format == ADAPTER_BUNDLE:
        return _write_adapter_bundle(model, path, chat, test, scored, examples,
                                     options, kwargs, **check)
    if format == "litertlm":
        report = export_litertlm(model, path, max_length=options.export_max_length,
                                 **check, **kwargs)
    else:
        report = export_onnx_genai(model, path,
                                   max_length=options.export_max_length, **check)
    start = time.perf_counter()
    accuracy = None
    if format == "litertlm":
        accuracy = _litertlm_test_accuracy(path, None, chat, test, scored,
                                           examples, options)
    if format == "onnx_genai":
        generator = GenAIGenerator(path)
        generated = [
            _until(generator.greedy(test.prompts[i], answer_tokens(test, scored)).tokens,
                   chat.stop_token_ids)
            for i in scored]
        del generator  # it holds the folder's files open
        accuracy = lm_evaluation.answer_accuracy(
            [chat.decode(tokens) for tokens in generated],
            [chat.decode(test.completions[i]) for i in scored])
    # As report.json will hold it (tuples as lists).
    result = json.loads(json.dumps(dataclasses.asdict(report)))
    result.update({
        "format": format,
        "quantize": kwargs.get("quantize"),
        "agreement": report.agreement,
        "next_token_agreement": report.next_token_agreement,
        "test_accuracy": accuracy,
        "runtime_seconds": time.perf_counter() - start,
        "export_max_length": options.export_max_length,
        "keep_float": list(kwargs.get("keep_float", ())),
    })
    return result


def _write_adapter_bundle(model, path, chat, test, scored, examples, options,
                          kwargs, prompts, reference, **check):
    """The `litertlm_lora` folder at `path`: the base bundle, checked with
    no adapter against the base model, and the run's LoRA file, checked
    with it against `model`. Its result, JSON-ready."""
    os.makedirs(path)
    try:
        return _write_adapter_files(model, path, chat, test, scored, examples,
                                    options, kwargs, prompts, reference, **check)
    except BaseException:
        shutil.rmtree(path)  # nothing of a failed export stays
        raise


def _write_adapter_files(model, path, chat, test, scored, examples, options,
                         kwargs, prompts, reference, **check):
    base_file, adapter_file = (os.path.join(path, name)
                               for name in ADAPTER_BUNDLE_FILES)
    base = export_litertlm(model, base_file, max_length=options.export_max_length,
                           prompts=prompts, runtime_adapters=True, **check,
                           **kwargs)
    adapter_bytes = write_litertlm_adapter(model, base_file, adapter_file)
    start = time.perf_counter()
    forced = DEFAULT_MIN_AGREEMENT if kwargs.get("quantize") else None
    measured = check_litertlm_adapter(
        model, base, adapter_file, tokenizer=check["tokenizer"], prompts=prompts,
        max_new_tokens=check["max_new_tokens"], min_agreement=forced,
        reference=reference)
    # The base bundle's report, its check's figures those of the run's
    # adapter file (`base_*`: the base with no adapter).
    result = json.loads(json.dumps(dataclasses.asdict(base)))
    result.update(dataclasses.asdict(measured))
    result.update({
        "agreement": measured.agreement,
        "next_token_agreement": measured.next_token_agreement,
        "base_next_token_agreement": base.next_token_agreement,
        "format": ADAPTER_BUNDLE,
        "quantize": kwargs.get("quantize"),
        "size_bytes": base.size_bytes,
        "adapter_bytes": adapter_bytes,
        "base_agreement": base.agreement,
        "test_accuracy": _litertlm_test_accuracy(
            base_file, adapter_file, chat, test, scored, examples, options),
        "runtime_seconds": time.perf_counter() - start,
        "export_max_length": options.export_max_length,
        "keep_float": list(kwargs.get("keep_float", ())),
    })
    return result


def _litertlm_test_accuracy(bundle, lora_path, chat, test, scored, examples,
                            options):
    """The test answers of the bundle in LiteRT-LM, each test prompt sent
    as a phone app sends it: its user message through the Conversation API
    (the bundle's chat template, applied by the runtime). None when a test
    example is more than one user message (the runtime's template would
    be given only the last)."""
    if not scored or any(len(examples[i].messages) != 1
                         or examples[i].messages[0][0] != "user" for i in scored):
        return None
    new_tokens = answer_tokens(test, scored)
    with open_engine(bundle, options.export_max_length) as engine:
        texts = [conversation_text(engine, examples[i].messages[0][1], new_tokens,
                                   lora_path) for i in scored]
    return lm_evaluation.answer_accuracy(
        texts, [chat.decode(test.completions[i]) for i in scored])


def _user_texts(examples, scored):
    """The last turn of each scored test example, as raw text: the prompts
    the runtime check sends (its tokenizer and chat template apply)."""
    return [examples[i].messages[-1][1] for i in scored
            if examples[i].messages and examples[i].messages[-1][1]]


def _until(tokens, stop_token_ids):
    """`tokens` before the first stop token (GenAI includes it)."""
    end = next((i for i, t in enumerate(tokens) if t in stop_token_ids), len(tokens))
    return list(tokens[:end])


def keras_reference(model, options) -> GreedyReference:
    """Keras' greedy generation on the exports' cache (`export_max_length`
    positions): the yardstick every format of a run is checked against."""
    return GreedyReference(
        model, cache_shape(model, options.export_max_length))


def prefill_lengths(max_length):
    """Prompt chunks of 16, 32, 64, ... up to half the cache: a prompt is
    written in chunks that pad it little (75 tokens: 64 + 16, not 128),
    and each chunk length is one LiteRT signature more to convert."""
    lengths, n = [], 16
    while n <= max_length // 2:
        lengths.append(n)
        n *= 2
    return tuple(lengths) or (max_length,)
