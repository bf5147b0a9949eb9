"""`export_litertlm`: a keras-hub causal LM as a LiteRT-LM `.litertlm` bundle.

The bundle holds the TFLite model in the runtime's CPU contract
(`litertlm_model`), the model's `tokenizer.json`, its start and stop
tokens, context length and chat template (`litertlm_bundle`), so that
`litert-lm run model.litertlm --prompt ...` and the engine's Conversation
API run it as the model was trained to be prompted. It is written
atomically and checked in the real engine (`litertlm_check`): greedy text
equal to Keras' (float), or next-token agreement of at least
`min_agreement` (dynamic int8).
"""

import contextlib
import importlib.metadata
import os
import tempfile

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.merge import merge_adapters
from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation import export_arguments as arguments
from keras_lowrank.generation import litertlm_inputs as inputs
from keras_lowrank.generation.generation_check import GenerationCheck
from keras_lowrank.generation.generation_verification import GenerationVerificationError
from keras_lowrank.generation.keras_reference import checked_reference
from keras_lowrank.generation.litertlm_adapter import runtime_lora_model
from keras_lowrank.generation.litertlm_adapter import write_litertlm_base_adapter
from keras_lowrank.generation.litertlm_adapter import runtime_rank
from keras_lowrank.generation.litertlm_bundle import BundleMetadata
from keras_lowrank.generation.litertlm_bundle import write_bundle
from keras_lowrank.generation.litertlm_check import CheckCase
from keras_lowrank.generation.litertlm_check import check_bundle
from keras_lowrank.generation.litertlm_check import open_engine
from keras_lowrank.generation.litertlm_model import check_family
from keras_lowrank.generation.litertlm_model import contract_flatbuffer
from keras_lowrank.generation.litertlm_model import variable_ops
from keras_lowrank.generation.litertlm_report import LitertlmReport
from keras_lowrank.generation.litertlm_template import runtime_template
from keras_lowrank.generation.runtime_tokenizer import load_tokenizer
from keras_lowrank.utils.atomic import atomic_path

# The quantization modes export_litertlm takes (every generation exporter's).
QUANTIZE_MODES = arguments.QUANTIZE_MODES


def export_litertlm(
    causal_lm, path, *, max_length=256, prefill_lengths=None, tokenizer=None,
    chat_template=None, start_token_id=None, stop_token_ids=None,
    prompts=None, max_new_tokens=32, verify=True, quantize=None,
    keep_float=(), min_agreement=arguments.DEFAULT_MIN_AGREEMENT, reference=None, runtime_adapters=False,
) -> LitertlmReport:
    """Writes `causal_lm` as a `.litertlm` bundle and checks it in LiteRT-LM.

    LoRA adapters are merged first. Keras' greedy tokens for the check are
    computed from the model as given, from `[start token] + ids of the
    prompt` (the runtime prepends the start token to the raw text itself),
    before anything is written; the bundle goes to a temporary sibling of
    `path` and is moved there only when the engine's greedy text equals
    Keras' on every prompt, and its Conversation API's reply to the first
    prompt equals Keras' reply to the template as `transformers` renders it.

    Args:
        causal_lm: a keras-hub causal LM of a family the contract is
            checked on (`litertlm_model.SUPPORTED_FAMILIES`: Llama 3 (SmolLM2
            is one), Gemma, Gemma 3, Qwen, Qwen 3, Mistral, GPT-2, Phi-3),
            float32.
        path: str. The `.litertlm` file to write.
        max_length: int. The context, prompt and new tokens together (the
            cache's positions).
        prefill_lengths: tuple of int. One `prefill_<n>` signature each;
            the runtime splits longer prompts. Default `(32, 128)` without
            those over `max_length`.
        tokenizer: str. The model's Hugging Face `tokenizer.json`; required.
        chat_template: str. The jinja chat template. Default: the
            `chat_template` of `tokenizer_config.json` beside `tokenizer`.
        start_token_id: int. Default: the preprocessor's start token, else
            `tokenizer_config.json`'s `bos_token`.
        stop_token_ids: tuple of int. Default: the preprocessor's end token
            and `tokenizer_config.json`'s `eos_token`.
        prompts: list of str. Raw text prompts of the check.
        max_new_tokens: int. Tokens generated per prompt in the check.
        verify: bool. Whether to run the check.
        quantize: None (float32) or `"dynamic"` (int8 weights, activations
            quantized on the fly, the cache float32).
        keep_float: patterns of op output names whose layers stay float32
            with `quantize="dynamic"` (e.g. `"token_embedding"`).
        min_agreement: float in [0, 1]. With `quantize`: the least share of
            Keras' next tokens the engine must pick when fed Keras' tokens.
        reference: a `GreedyReference` of `causal_lm` with the same
            `max_length`, to reuse across exports (its decode step is
            traced once). With `runtime_adapters`, only for a `causal_lm`
            without adapters (the base model the check runs).
        runtime_adapters: False, True, 16 or 32. Keep LoRA out of the
            weights: the signatures take LiteRT-LM's LoRA inputs for the
            attention projections of every layer at that rank (True: the
            smallest of 16, 32 that holds the model's adapters), the base
            weights frozen. The check runs it with the all-zero LoRA file
            (`write_litertlm_base_adapter`) against the base model. Adapter
            files come from `write_litertlm_adapter` (`litertlm_adapter`).
            With `quantize="dynamic"` the base weights are int8 and the
            LoRA inputs stay float32.

    Returns:
        A `LitertlmReport`.

    Raises:
        TypeError: not a keras-hub CausalLM, or a family the runtime's
            contract cannot express (named in the message).
        ValueError: a bad argument, a tokenizer that does not match the
            vocabulary, no chat template, no start or stop token.
        PromptTooLongError: a prompt that does not fit the context.
        GenerationVerificationError: the engine's generation differs from
            Keras'; nothing is left at `path`.

    Example:
    ```python
    report = export_litertlm(lm, "smollm2.litertlm", max_length=512,
                             tokenizer=folder + "/tokenizer.json")
    print(report)  # then: litert-lm run smollm2.litertlm --prompt "Hi"
    ```
    """
    path = arguments.check_file_path(path, "export_litertlm")
    max_length = arguments.check_positive_int("max_length", max_length)
    max_new_tokens = arguments.check_positive_int("max_new_tokens", max_new_tokens)
    prefill_lengths = arguments.check_prefill_lengths(prefill_lengths, max_length)
    _check_quantize(quantize, keep_float, min_agreement)
    cached_causal_lm.check_cached_causal_lm(causal_lm, "export_litertlm")
    check_family(causal_lm)
    cached_causal_lm.check_exportable(causal_lm, max_length, "export_litertlm")
    lora_inputs = ()
    # The model of Keras' tokens. With runtime adapters the base: the
    # traced model (its LoRA `B` zero), or the model as given, which has
    # no adapters when a `reference` comes with it.
    checked_lm = causal_lm
    if runtime_adapters is not False:
        _check_runtime_adapters(causal_lm, reference)
        causal_lm, lora_inputs = runtime_lora_model(
            causal_lm, runtime_rank(causal_lm, runtime_adapters))
        checked_lm = checked_lm if reference is not None else causal_lm
    if tokenizer is None:
        raise ValueError(
            "export_litertlm needs the model's Hugging Face tokenizer.json, "
            "which goes into the bundle. Received: tokenizer=None. Pass "
            "tokenizer='path/to/tokenizer.json'.")
    vocabulary = cached_causal_lm.vocabulary_size(causal_lm)
    text_tokenizer = load_tokenizer(tokenizer, vocabulary)
    template = inputs.chat_template_of(chat_template, tokenizer)
    start = inputs.start_token_of(
        start_token_id, causal_lm, text_tokenizer, tokenizer, vocabulary)
    stops = inputs.stop_tokens_of(
        stop_token_ids, causal_lm, text_tokenizer, tokenizer, vocabulary)
    prompts = arguments.check_text_prompts(prompts, inputs.DEFAULT_PROMPTS)
    ids = [inputs.prompt_ids(p, text_tokenizer, start, max_length, max_new_tokens)
           for p in prompts]
    chat, chat_new_tokens = inputs.chat_ids(
        template, prompts[0], text_tokenizer, start, max_length, max_new_tokens)
    shape = cached_causal_lm.cache_shape(causal_lm, max_length)
    metadata = BundleMetadata(start, stops, max_length, runtime_template(
        template, text_tokenizer.id_to_token(start)))
    cases = conversation = None
    if verify:
        reference = checked_reference(reference, checked_lm, shape)
        cases = [_case(reference, text, p, max_new_tokens, stops)
                 for text, p in zip(prompts, ids)]
        conversation = (prompts[0], _case(reference, prompts[0], chat,
                                          chat_new_tokens, stops),
                        chat_new_tokens)
    # With runtime adapters the LoRA factors are inputs: nothing to merge.
    merged = causal_lm if lora_inputs else merge_adapters(causal_lm)
    measured = {}
    with atomic_path(path) as tmp:
        flatbuffer = contract_flatbuffer(
            merged, shape, prefill_lengths, quantize, tuple(keep_float),
            lora_inputs)
        leftover = variable_ops(flatbuffer)
        if leftover:
            raise RuntimeError(
                f"The LiteRT-LM graphs kept resource variables ({leftover}); "
                f"the runtime would emit token 0. Nothing was written to {path!r}.")
        write_bundle(tmp, flatbuffer, tokenizer, metadata)
        del flatbuffer  # in the bundle now; not held while the engine runs
        if verify:
            try:
                with _base_adapter(tmp, lora_inputs) as lora_path, \
                        open_engine(tmp, max_length) as engine:
                    measured = check_bundle(
                        engine, cases, max_new_tokens,
                        min_agreement if quantize else None, conversation,
                        lora_path)
            except GenerationVerificationError as error:
                error.args = (f"{error.args[0]} Nothing was written to {path!r}.",)
                raise
    return LitertlmReport(
        path=path, size_bytes=os.path.getsize(path),
        model=type(causal_lm).__name__, metadata=metadata,
        prefill_lengths=prefill_lengths, quantize=quantize,
        runtime="LiteRT-LM " + importlib.metadata.version("litert-lm-api"),
        verified=verify,
        prompt_lengths=tuple(len(p) for p in ids) if verify else (),
        **measured)


def check_litertlm_adapter(adapted_lm, report, adapter_path, *, tokenizer,
                           prompts=None, max_new_tokens=32, min_agreement=None,
                           reference=None) -> GenerationCheck:
    """Runs the base bundle of `report` with the LoRA file `adapter_path` in
    LiteRT-LM against Keras' greedy generation of `adapted_lm`.

    `export_litertlm(..., runtime_adapters=True)` checks the base bundle
    with its all-zero LoRA file against the base model; this checks an
    adapter file (`write_litertlm_adapter(adapted_lm, bundle, path)`)
    against the model it came from, on raw text prompts, the start token
    first as the engine puts it.

    Args:
        adapted_lm: the causal LM whose adapters `adapter_path` holds.
        report: the `LitertlmReport` of the base bundle (its start and stop
            tokens and context are used).
        adapter_path: str. The LoRA file.
        tokenizer: str. The model's `tokenizer.json`.
        prompts: list of str. Raw text prompts; default the exporter's.
        max_new_tokens: int. Tokens generated per prompt.
        min_agreement: None: the engine's greedy text must equal Keras' on
            every prompt (a float32 base). A float in [0, 1] (an int8
            base): the least next-token agreement, teacher forced.
        reference: a `GreedyReference` of `adapted_lm` on the bundle's
            context, to share with other checks of the same model.

    Returns:
        A `GenerationCheck` (`agreement`, `next_token_agreement`, speeds).

    Raises:
        PromptTooLongError: a prompt that does not fit the context.
        GenerationVerificationError: the engine's generation differs from
            Keras'.

    Example:
    ```python
    base = export_litertlm(lm, "base.litertlm", tokenizer=tok,
                           runtime_adapters=True)
    write_litertlm_adapter(lm, "base.litertlm", "task.lora.tflite")
    check_litertlm_adapter(lm, base, "task.lora.tflite", tokenizer=tok)
    ```
    """
    max_new_tokens = arguments.check_positive_int("max_new_tokens", max_new_tokens)
    if min_agreement is not None:
        arguments.check_quantize("dynamic", min_agreement)
    meta = report.metadata
    text_tokenizer = load_tokenizer(
        tokenizer, cached_causal_lm.vocabulary_size(adapted_lm))
    prompts = arguments.check_text_prompts(prompts, inputs.DEFAULT_PROMPTS)
    ids = [inputs.prompt_ids(p, text_tokenizer, meta.start_token_id,
                             meta.max_num_tokens, max_new_tokens) for p in prompts]
    reference = checked_reference(
        reference, adapted_lm,
        cached_causal_lm.cache_shape(adapted_lm, meta.max_num_tokens))
    cases = [_case(reference, text, p, max_new_tokens, meta.stop_token_ids)
             for text, p in zip(prompts, ids)]
    with open_engine(report.path, meta.max_num_tokens) as engine:
        measured = check_bundle(engine, cases, max_new_tokens, min_agreement,
                                lora_path=adapter_path)
    return GenerationCheck(verified=True,
                           prompt_lengths=tuple(len(p) for p in ids), **measured)


def _case(reference, text, ids, max_new_tokens, stops):
    """Keras' greedy tokens after `ids`, cut before the first stop token
    (where the engine stops)."""
    run = reference(ids, max_new_tokens)
    end = next((i for i, t in enumerate(run.tokens) if t in stops), len(run.tokens))
    return CheckCase(text, tuple(ids), run.tokens[:end], run.margins[:end])


def _check_quantize(quantize, keep_float, min_agreement):
    arguments.check_quantize(quantize, min_agreement)
    if keep_float and (quantize is None or isinstance(keep_float, str)):
        raise ValueError(
            "`keep_float` takes a tuple of op-name patterns, with "
            f"quantize='dynamic'. Received: keep_float={keep_float!r}, "
            f"quantize={quantize!r}")


def _check_runtime_adapters(causal_lm, reference):
    """A `reference` runs the base model only when `causal_lm` has no
    adapters: the base is then `causal_lm` itself."""
    found = sorted(adapters(causal_lm))
    if reference is not None and found:
        raise ValueError(
            "With runtime_adapters the check runs the base model (its "
            "adapters removed), not `reference`'s. Received: a reference and "
            f"a model with {len(found)} adapters (first on '{found[0]}'); "
            "pass reference=None.")


@contextlib.contextmanager
def _base_adapter(bundle, lora_inputs):
    """The path of `bundle`'s all-zero LoRA file (None without LoRA inputs),
    deleted on exit."""
    if not lora_inputs:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="klr_litertlm_lora_") as folder:
        path = os.path.join(folder, "base.lora.tflite")
        write_litertlm_base_adapter(bundle, path)
        yield path
