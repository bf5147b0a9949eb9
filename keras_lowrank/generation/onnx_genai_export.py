"""`export_onnx_genai`: a keras-hub causal LM as an ONNX Runtime GenAI folder.

The folder holds `model.onnx` (`onnx_genai_model`), `genai_config.json`
(`onnx_genai_config`) and the model's `tokenizer.json` and
`tokenizer_config.json`, copied. It is built in a temporary sibling of the
target, loaded in `onnxruntime_genai`, checked there against Keras' greedy
generation token for token, and only then moved into place. With
`quantize` (`"int4"`, `"int8"`: weight-only, onnxruntime's MatMulNBits,
`onnx_genai_quantize`) it is judged on next-token agreement instead.
"""

import os
import shutil
import tempfile

import keras
import numpy as np

from keras_lowrank.adapters.merge import merge_adapters
from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation import export_arguments as arguments
from keras_lowrank.generation import onnx_genai_tokenizer as tokenizer_lib
from keras_lowrank.generation.generation_verification import verify_generation
from keras_lowrank.generation.generator_loop import PromptTooLongError
from keras_lowrank.generation.keras_reference import GreedyReference
from keras_lowrank.generation.onnx_genai_adapter import ADAPTER_INPUTS_FILE
from keras_lowrank.generation.onnx_genai_adapter import ADAPTER_SUFFIX
from keras_lowrank.generation.onnx_genai_adapter import GenAIAdapterInputs
from keras_lowrank.generation.onnx_genai_adapter import write_onnx_genai_adapter
from keras_lowrank.generation.onnx_genai_check import GenAIGenerator
from keras_lowrank.generation.onnx_genai_check import GenAITokenizer
from keras_lowrank.generation.onnx_genai_check import check_chat_template
from keras_lowrank.generation.onnx_genai_check import genai_prompt_ids
from keras_lowrank.generation.onnx_genai_check import import_genai
from keras_lowrank.generation.onnx_genai_config import CONFIG_FILE
from keras_lowrank.generation.onnx_genai_config import genai_config
from keras_lowrank.generation.onnx_genai_config import write_genai_config
from keras_lowrank.generation.onnx_genai_family import genai_family
from keras_lowrank.generation.onnx_genai_model import MODEL_FILE
from keras_lowrank.generation.onnx_genai_model import write_genai_model
from keras_lowrank.generation.onnx_genai_quantize import GenAITeacherForcing
from keras_lowrank.generation.onnx_genai_quantize import check_quantize
from keras_lowrank.generation.onnx_genai_quantize import quantize_genai_model
from keras_lowrank.generation.onnx_genai_report import OnnxGenAIReport
from keras_lowrank.generation.runtime_adapters import adapter_entries
from keras_lowrank.generation.runtime_adapters import runtime_factors
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target
from keras_lowrank.utils.atomic import has_files
from keras_lowrank.utils.optional import tensorflow

DEFAULT_MAX_LENGTH = 256
DEFAULT_NEW_TOKENS = 32
# Letters and spaces only: every byte-level BPE vocabulary has them.
DEFAULT_PROMPTS = ("The capital of France is", "Once upon a time there was",
                   "My favourite colours are red and")
_REPLACEABLE = has_files(CONFIG_FILE, MODEL_FILE)


def export_onnx_genai(causal_lm, folder, *, max_length=DEFAULT_MAX_LENGTH,
                      tokenizer=None, tokenizer_config=None,
                      start_token_id=None, stop_token_ids=None, prompts=None,
                      max_new_tokens=DEFAULT_NEW_TOKENS, verify=True,
                      reference=None, runtime_adapters=False, quantize=None,
                      min_agreement=arguments.DEFAULT_MIN_AGREEMENT) -> OnnxGenAIReport:
    """Writes `causal_lm` as a folder ONNX Runtime GenAI runs, and checks it.

    LoRA adapters are merged first, unless `runtime_adapters`. Keras'
    greedy tokens for the check come from the model as given, on
    `[start] + tokenizer.encode(prompt)`; GenAI must generate the same
    tokens from the same ids, and its own tokenizer must encode each prompt
    to those ids (with or without the start token, which the report says).
    Nothing is left at `folder` when a check fails. The graph reads
    positions from the past length, not from `position_ids` or
    `attention_mask`: generate with batch 1, or with prompts of equal
    length (no padding).

    With `quantize`, the float `model.onnx` is written, then replaced by its
    weight-only quantized version, and the check is the one of LiteRT's
    int8 artifacts: GenAI's greedy tokens need not equal Keras', but fed
    Keras' own greedy continuation one token at a time (teacher forced,
    GenAI's `append_tokens` and `get_logits`), GenAI's next token must be
    Keras' at `min_agreement` of the steps at least.

    Args:
        causal_lm: a keras-hub `Llama3CausalLM` (SmolLM2 is one),
            `GemmaCausalLM` (Gemma 1) or `GPT2CausalLM`, float32.
        folder: str. The folder to write; an earlier GenAI folder there is
            replaced, any other non-empty folder refused.
        max_length: int. GenAI's context length: prompt plus generated
            tokens; at most the backbone's `max_sequence_length` (GPT-2).
        tokenizer: str. The model's Hugging Face `tokenizer.json`.
        tokenizer_config: str. Its `tokenizer_config.json`, which holds
            the chat template; default: the one beside `tokenizer`.
        start_token_id: int. The token put before every prompt; default:
            the preprocessor's start token where it adds one, else none.
        stop_token_ids: tuple of int. GenAI's `eos_token_id`; default: the
            preprocessor's end token, else `tokenizer_config.json`'s
            `eos_token`.
        prompts: list of str. The check's prompts, raw text.
        max_new_tokens: int. Tokens generated per prompt in the check (fewer
            where the context is full).
        verify: bool. Whether to run the folder in GenAI and compare.
        reference: a callable `(prompt_ids, max_new_tokens) ->
            ReferenceGeneration` giving Keras' tokens; default a
            `GreedyReference` of `causal_lm` with `max_length` positions.
        runtime_adapters: bool. Keep every adapted layer's LoRA factors as
            graph inputs with zero defaults (`onnx_genai_adapter`), for
            `.onnx_adapter` files switched in at run time. The check then
            runs GenAI twice: with no adapter against the base model (the
            factors' `B` zero in Keras) and with the model's own adapters,
            written by `write_onnx_genai_adapter`, against `reference`.
        quantize: None (float32), `"int4"` or `"int8"`: the weights of every
            linear layer (attention, feed-forward, output head) as
            MatMulNBits blocks of 32 values with a scale and zero point
            each; the token embedding, the norms and the cache float32.
            With `runtime_adapters` the LoRA factor inputs stay float32
            and both checks are teacher forced.
        min_agreement: float in [0, 1]. With `quantize`: the least share of
            Keras' next tokens GenAI must pick when fed Keras' tokens.

    Returns:
        An `OnnxGenAIReport`: size, tokens equal to Keras', time to first
        token, decode tokens/s; quantized, the next-token agreement too.

    Raises:
        TypeError: a model of another family (named).
        ValueError: a model not computing in float32, a bad argument,
            runtime adapters on a model without plain LoRA adapters, a
            tokenizer that does not fit the vocabulary, a
            tokenizer_config.json without a chat template, a prompt longer
            than the context (`PromptTooLongError`).
        FileNotFoundError: a tokenizer file is missing.
        GenerationVerificationError: GenAI's tokens differ from Keras'
            (quantized: next-token agreement below `min_agreement`);
            nothing is left at `folder`.

    Example:
    ```python
    from keras_lowrank.models import presets
    lm = presets.smollm2_causal_lm()
    report = export_onnx_genai(
        lm, "smollm2-genai", max_length=512,
        tokenizer=presets.smollm2_path() + "/tokenizer.json")
    print(report)
    ```
    """
    folder = os.fspath(folder)
    max_length = arguments.check_positive_int("max_length", max_length)
    max_new_tokens = arguments.check_positive_int("max_new_tokens", max_new_tokens)
    check_quantize(quantize, min_agreement)
    if reference is not None and not callable(reference):
        raise TypeError(
            "`reference` must be a callable (prompt_ids, max_new_tokens) -> "
            f"ReferenceGeneration. Received: {type(reference).__name__}")
    check_target(folder, directory=True, replaceable=_REPLACEABLE)
    family = genai_family(causal_lm)
    adapter_inputs = None
    if runtime_adapters:
        adapter_inputs = GenAIAdapterInputs(adapter_entries(causal_lm),
                                            type(causal_lm).__name__)
    cached_causal_lm.check_cached_causal_lm(causal_lm, "export_onnx_genai")
    cached_causal_lm.check_exportable(causal_lm, max_length, "export_onnx_genai")
    if verify:
        import_genai()
    vocabulary = cached_causal_lm.vocabulary_size(causal_lm)
    files = tokenizer_lib.read_tokenizer_files(tokenizer, tokenizer_config, vocabulary)
    start = arguments.start_token(causal_lm, start_token_id, vocabulary)
    stop = tokenizer_lib.stop_tokens(causal_lm, stop_token_ids, files, vocabulary)
    texts = list(arguments.check_text_prompts(prompts, DEFAULT_PROMPTS))
    prompt_ids = [([] if start is None else [start]) + files.encode(t) for t in texts]
    _check_lengths(texts, prompt_ids, max_length)
    new_tokens = min(max_new_tokens, max_length - max(len(p) for p in prompt_ids))

    tensorflow.load()
    cache_shape = cached_causal_lm.cache_shape(causal_lm, max_length)
    expected = base_expected = None
    if verify:
        reference = reference or GreedyReference(causal_lm, cache_shape)
        expected = [_until_stop(reference(p, new_tokens), stop) for p in prompt_ids]
        if adapter_inputs is not None:
            base_expected = [_until_stop(g, stop) for g in _base_generations(
                causal_lm, cache_shape, prompt_ids, new_tokens)]
    # Runtime adapters: the factors stay in the graph, as inputs.
    merged = causal_lm if adapter_inputs is not None else merge_adapters(causal_lm)
    bos = start if start is not None else files.special_token_id("bos_token")
    pad = files.special_token_id("pad_token")
    config = genai_config(
        genai_type=family.genai_type, context_length=max_length,
        vocabulary_size=vocabulary, cache_shape=cache_shape,
        num_attention_heads=family.num_attention_heads(causal_lm),
        hidden_size=int(causal_lm.backbone.hidden_dim),
        bos_token_id=stop[0] if bos is None else bos, eos_token_ids=stop,
        pad_token_id=stop[0] if pad is None else pad,
    )
    measured, adds_start, runtime, sizes = {}, None, "", {}
    with atomic_path(folder, directory=True, replaceable=_REPLACEABLE) as tmp:
        os.makedirs(tmp)
        write_genai_config(config, os.path.join(tmp, CONFIG_FILE))
        shutil.copyfile(files.tokenizer_path, os.path.join(tmp, tokenizer_lib.TOKENIZER_FILE))
        shutil.copyfile(files.config_path, os.path.join(tmp, tokenizer_lib.TOKENIZER_CONFIG_FILE))
        try:
            if verify:  # the tokenizer first: it needs no model
                genai_tokenizer = GenAITokenizer(tmp)
                adds_start = genai_prompt_ids(genai_tokenizer, texts, prompt_ids, start)
                check_chat_template(genai_tokenizer, texts[0])
            names = list(write_genai_model(merged, tmp, cache_shape, adapter_inputs))
            if quantize is not None:
                sizes["float_model_bytes"] = _size(tmp, names)
                names, sizes["quantized_matmuls"] = quantize_genai_model(
                    tmp, quantize)
            sizes["model_bytes"] = _size(tmp, names)
            names = [*names, CONFIG_FILE, tokenizer_lib.TOKENIZER_FILE,
                     tokenizer_lib.TOKENIZER_CONFIG_FILE]
            if adapter_inputs is not None:
                adapter_inputs.write(tmp)
                names.append(ADAPTER_INPUTS_FILE)
            if verify:
                generator = GenAIGenerator(tmp)
                runtime = generator.runtime
                if adapter_inputs is not None:
                    measured = _verify_with_adapters(
                        generator, causal_lm, tmp, prompt_ids, new_tokens,
                        base_expected, expected,
                        None if quantize is None else (max_length, min_agreement))
                elif quantize is not None:
                    measured = verify_generation(
                        GenAITeacherForcing(generator, max_length), prompt_ids,
                        new_tokens, expected, min_agreement)
                else:
                    measured = verify_generation(
                        generator, prompt_ids, new_tokens, expected)
                del generator
        except (RuntimeError, ValueError) as error:  # verification errors too
            error.args = (f"{error} Nothing was written at {folder!r}.",)
            raise
    return OnnxGenAIReport(
        folder=folder, files=tuple(names),
        size_bytes=_size(folder, names), quantize=quantize, **sizes,
        genai_type=family.genai_type, context_length=max_length,
        start_token_id=start, stop_token_ids=stop,
        genai_adds_start_token=adds_start, runtime=runtime, verified=verify,
        prompt_lengths=tuple(len(p) for p in prompt_ids) if verify else (),
        **measured,
    )


def _size(folder, names):
    return sum(os.path.getsize(os.path.join(folder, n)) for n in names)


def _check_lengths(texts, prompt_ids, max_length):
    for text, ids in zip(texts, prompt_ids):
        if len(ids) >= max_length:
            raise PromptTooLongError(
                f"The prompt {text[:40]!r} is {len(ids)} tokens (start token "
                f"included), which leaves no room for a new token in the "
                f"context of max_length={max_length}: at most "
                f"{max_length - 1} tokens are allowed. Shorten the prompt or "
                "raise max_length.")


def _base_generations(causal_lm, cache_shape, prompt_ids, new_tokens):
    """Keras' greedy tokens of the base model: every adapter's `B` read as
    zeros (a stateless scope: the user's model is not touched)."""
    zeros = [(layer.lora_b, np.zeros(layer.lora_b.shape, "float32"))
             for _, layer in runtime_factors(causal_lm)]
    with keras.StatelessScope(state_mapping=zeros):
        reference = GreedyReference(causal_lm, cache_shape)
        return [reference(p, new_tokens) for p in prompt_ids]


def _verify_with_adapters(generator, causal_lm, folder, prompt_ids, new_tokens,
                          base_expected, expected, forced=None):
    """GenAI without an adapter against the base model, then with the
    model's own adapters (written as a file, loaded as GenAI loads any).

    `forced`: None (float: equal tokens), or `(context_length,
    min_agreement)` for a quantized base, judged on next-token agreement
    teacher forced on Keras' tokens, as a quantized folder without
    adapters is."""
    def verify(expected_tokens):
        if forced is None:
            return verify_generation(generator, prompt_ids, new_tokens, expected_tokens)
        context_length, min_agreement = forced
        return verify_generation(GenAITeacherForcing(generator, context_length),
                                 prompt_ids, new_tokens, expected_tokens, min_agreement)

    verify(base_expected)
    with tempfile.TemporaryDirectory(prefix="klr_genai_adapter_") as scratch:
        path = os.path.join(scratch, "exported" + ADAPTER_SUFFIX)
        write_onnx_genai_adapter(causal_lm, folder, path)
        generator.load_adapter(path, "exported")
        return verify(expected)


def _until_stop(generation, stop):
    """Keras' tokens up to the first stop token, included: GenAI ends there."""
    tokens = generation.tokens
    end = next((i + 1 for i, t in enumerate(tokens) if t in stop), len(tokens))
    return type(generation)(tokens[:end], generation.margins[:end])
