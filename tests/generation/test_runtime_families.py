"""The keras-hub families beyond Llama 3, Gemma and GPT-2 (Gemma 3, Qwen,
Qwen 3, Mistral, Phi-3), exported to both on-device runtimes and run in
them for real: LiteRT-LM (`litert_lm`) and ONNX Runtime GenAI
(`onnxruntime_genai`). Each must generate Keras' greedy tokens, id for id.

One tiny one-layer model per family (`tiny_lms.FAMILY_MODELS`), its
`.litertlm` bundle and its GenAI folder are built once per module. The
LiteRT-LM bundles use the word tokenizer of `test_litertlm` (the engine's
text gives its ids), the GenAI folders the byte-level letters of
`test_onnx_genai` (GenAI reads only BPE).
"""

import functools
import os
import re

import keras
import pytest

from keras_lowrank.generation import cached_causal_lm
from keras_lowrank.generation.cached_causal_lm import cache_shape
from keras_lowrank.generation.litertlm_check import greedy_text
from keras_lowrank.generation.litertlm_check import open_engine
from keras_lowrank.generation.litertlm_export import export_litertlm
from keras_lowrank.generation.onnx_genai_check import GenAIGenerator
from keras_lowrank.generation.onnx_genai_export import export_onnx_genai
from tests.generation import tiny_lms
from tests.generation.litertlm_cases import MAX_LENGTH
from tests.generation.litertlm_cases import NEW_TOKENS
from tests.generation.litertlm_cases import PROMPTS as WORD_PROMPTS
from tests.generation.litertlm_cases import keras_tokens
from tests.generation.litertlm_cases import word_ids
from tests.generation.test_litertlm import _tokenizer_folder
from tests.generation.test_onnx_genai import PROMPTS as LETTER_PROMPTS
from tests.generation.test_onnx_genai import write_letter_tokenizer

PREFILL = (8,)
START, STOP = 1, 2
# The model of each family, built from `tiny_lms`. Gemma 3's and Qwen 3's
# one layer attends to a window of 8 positions (the second prompt is 12
# tokens), Qwen's output head is its own (not the embedding), Phi-3
# switches to its long RoPE factors past 16 positions.
SU_FACTORS = [1.0, 1.5, 2.0, 4.0]  # head_dim 8 -> 4 frequencies
BUILDERS = {
    "gemma3": lambda: tiny_lms.gemma3(sliding_window=8),
    "qwen": lambda: tiny_lms.qwen(tie_word_embeddings=False),
    "qwen3": lambda: tiny_lms.qwen3(sliding_window=8),
    "mistral": tiny_lms.mistral,
    "phi3": lambda: tiny_lms.phi3(
        rope_scaling_type="su", rope_scaling_short_factor=[1.0] * 4,
        rope_scaling_long_factor=SU_FACTORS, pretraining_sequence_length=16),
}
GENAI_TYPES = {"gemma3": "gemma3_text", "qwen": "qwen2", "qwen3": "qwen3",
               "mistral": "mistral", "phi3": "phi3"}
FAMILIES = list(BUILDERS)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(11)
    return {name: build() for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def keras_reference(models, references):
    """`keras_reference(name)`: Keras' greedy generation of the family's
    model on MAX_LENGTH positions, shared by its bundle's check, its GenAI
    folder's check and the tests (each prompt generated once)."""
    return lambda name: references(models[name], MAX_LENGTH)


@pytest.fixture(scope="module")
def bundles(models, keras_reference, tmp_path_factory):
    """`bundles(name)`: (report, path) of a float `.litertlm`, built once."""
    folder = tmp_path_factory.mktemp("bundles")
    tokenizer = _tokenizer_folder(folder, tiny_lms.VOCAB)

    @functools.cache
    def get(name):
        path = str(folder / f"{name}.litertlm")
        return export_litertlm(
            models[name], path, max_length=MAX_LENGTH,
            prefill_lengths=PREFILL, tokenizer=tokenizer,
            prompts=WORD_PROMPTS, max_new_tokens=NEW_TOKENS,
            reference=keras_reference(name)), path

    return get


@pytest.fixture(scope="module")
def letters(tmp_path_factory):
    return write_letter_tokenizer(str(tmp_path_factory.mktemp("letters")))


@pytest.fixture(scope="module")
def folders(models, letters, keras_reference, tmp_path_factory):
    """`folders(name)`: (report, folder) of a GenAI folder, built once."""
    root = tmp_path_factory.mktemp("genai")

    @functools.cache
    def get(name):
        folder = str(root / name)
        return export_onnx_genai(
            models[name], folder, max_length=MAX_LENGTH, tokenizer=letters,
            start_token_id=START, prompts=LETTER_PROMPTS,
            max_new_tokens=NEW_TOKENS, reference=keras_reference(name)), folder

    return get


def _letter_ids(tokenizer, text):
    from tokenizers import Tokenizer

    return [START] + Tokenizer.from_file(tokenizer).encode(text).ids


def _engine_ids(text):
    """The ids of the engine's text, its special tokens included:
    "w7 <bos>" -> [7, 1]."""
    return [tiny_lms.SPECIAL.index(word) if word in tiny_lms.SPECIAL
            else word_ids(word)[0] for word in text.split()]


def _until_stop(tokens):
    return tokens[:tokens.index(STOP) + 1] if STOP in tokens else tokens


# === Token for token with Keras, in each runtime ===

@pytest.mark.parametrize("name", FAMILIES)
def test_litertlm_bundle_generates_keras_tokens(name, models, bundles,
                                               keras_reference):
    report, path = bundles(name)
    with open_engine(path, MAX_LENGTH) as engine:
        for prompt in WORD_PROMPTS:
            text, _ = greedy_text(engine, prompt, NEW_TOKENS)
            expected = keras_tokens(models[name], prompt, keras_reference(name))
            assert _engine_ids(text) == expected and expected
    assert report.tokens_matching == report.tokens_compared > 0
    assert report.prompts_matching == 2 and report.prompt_lengths == (4, 12)
    assert report.conversation_matching is True
    assert report.size_bytes == os.path.getsize(path)


@pytest.mark.parametrize("name", FAMILIES)
def test_genai_folder_generates_keras_tokens(name, folders, letters,
                                            keras_reference):
    report, folder = folders(name)
    generator = GenAIGenerator(folder)
    for text in LETTER_PROMPTS:
        ids = _letter_ids(letters, text)
        new_tokens = min(NEW_TOKENS, MAX_LENGTH - len(ids))
        expected = keras_reference(name).tokens(ids, new_tokens)
        genai_tokens = generator.greedy(ids, new_tokens).tokens
        assert list(genai_tokens) == _until_stop(list(expected)) and genai_tokens
    assert report.tokens_matching == report.tokens_compared >= len(LETTER_PROMPTS)
    assert report.genai_type == GENAI_TYPES[name]
    config = tiny_lms.read_json(os.path.join(folder, "genai_config.json"))
    assert config["model"]["type"] == GENAI_TYPES[name]
    assert (config["model"]["decoder"]["num_attention_heads"],
            config["model"]["decoder"]["num_key_value_heads"]) == (2, 1)


def test_gemma3_pairs_are_one_cache_tensor_for_the_exports(models):
    import numpy as np

    model = models["gemma3"]
    assert cache_shape(model, 16) == (1, 1, 2, 16, 1, 8)  # 1 layer, KVH 1, D 8
    tokens = np.array([[1, 5, 9]], np.int32)
    zeros = np.zeros((1, 16, 1, 8), np.float32)
    logits, cache = cached_causal_lm.call_with_cache(
        model, tokens, np.zeros((1, 1, 2, 16, 1, 8), np.float32), 0)
    own_logits, _, ((key, value),) = model.call_with_cache(
        tokens, ((zeros, zeros),), 0)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(own_logits))
    np.testing.assert_array_equal(np.asarray(cache[:, 0, 0]), np.asarray(key))
    np.testing.assert_array_equal(np.asarray(cache[:, 0, 1]), np.asarray(value))
    assert np.abs(np.asarray(key)[0, :3]).sum() > 0  # the 3 positions written


# === Refused by name, nothing written ===

ALL_FAMILIES = (r"Llama3CausalLM.*GemmaCausalLM.*GPT2CausalLM.*Gemma3CausalLM"
                r".*QwenCausalLM.*Qwen3CausalLM.*MistralCausalLM.*Phi3CausalLM")


def _llama2():
    import keras_hub

    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=tiny_lms.VOCAB, num_layers=1, num_query_heads=2,
        num_key_value_heads=1, hidden_dim=8, intermediate_dim=16)
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)


def _export_both(model, folder, letters):
    """Raises the error of each runtime's export of `model`, in turn."""
    tokenizer = _tokenizer_folder(folder, tiny_lms.VOCAB)
    with pytest.raises(TypeError) as litertlm_error:
        export_litertlm(model, folder / "m.litertlm", max_length=MAX_LENGTH,
                        tokenizer=tokenizer, prompts=WORD_PROMPTS)
    with pytest.raises(TypeError) as genai_error:
        export_onnx_genai(model, str(folder / "genai"), max_length=MAX_LENGTH,
                          tokenizer=letters, start_token_id=START,
                          prompts=LETTER_PROMPTS)
    assert sorted(os.listdir(folder)) == ["tokenizer.json", "tokenizer_config.json"]
    return str(litertlm_error.value), str(genai_error.value)


def test_a_family_outside_both_lists_is_refused_by_name(letters, tmp_path):
    litertlm, genai = _export_both(_llama2(), tmp_path, letters)
    assert "does not export LlamaCausalLM" in litertlm
    assert "Received: LlamaCausalLM" in genai
    for message in (litertlm, genai):
        assert re.search(ALL_FAMILIES, message), message
        assert "export_generator" in message and "\n" not in message


def test_qwen_with_a_sliding_window_is_refused_in_both_runtimes(letters, tmp_path):
    # keras-hub 0.32's QwenAttention cannot be traced with a sliding window
    # (OperatorNotAllowedInGraphError: a symbolic tensor used as a bool).
    model = tiny_lms.qwen(use_sliding_window_attention=True,
                          sliding_window_size=8)
    litertlm, genai = _export_both(model, tmp_path, letters)
    for runtime, message in (("export_litertlm", litertlm),
                             ("export_onnx_genai", genai)):
        assert message.startswith(
            f"{runtime} does not export a QwenCausalLM with "
            "use_sliding_window_attention=True (sliding_window_size=8)")
        assert message.endswith("Rebuild it with use_sliding_window_attention="
                                "False: the same model whenever max_length <= 8.")
        assert "\n" not in message
