"""Runtime LoRA on the families beyond Llama 3 (Gemma 3, Qwen, Qwen 3,
Mistral, Phi-3), in both on-device runtimes for real.

Per family, a tiny model with LoRA on query and value (rank 4, random
non-zero `B`) is exported with `runtime_adapters=True`:
- as a `.litertlm` base bundle, whose export checks the all-zero LoRA file
  against the base model; the adapter's own LiteRT-LM LoRA file then
  generates the adapted model's Keras tokens in the engine;
- as a GenAI folder, whose export checks GenAI without an adapter against
  the base model and with the model's `.onnx_adapter` against the adapted
  one, token for token.
GenAI runs the models of `test_runtime_families`; LiteRT-LM, whose LoRA
inputs are rank 16 at least, 64-wide ones of the same families.
"""

import functools

import keras
import pytest

from keras_lowrank.adapters.adapted_model import add_adapters
from keras_lowrank.generation.litertlm_adapter import write_litertlm_adapter
from keras_lowrank.generation.litertlm_check import greedy_text
from keras_lowrank.generation.litertlm_check import open_engine
from keras_lowrank.generation.litertlm_export import export_litertlm
from keras_lowrank.generation.onnx_genai_export import export_onnx_genai
from tests.generation.litertlm_cases import MAX_LENGTH
from tests.generation.litertlm_cases import NEW_TOKENS
from tests.generation.litertlm_cases import PROMPTS as WORD_PROMPTS
from tests.generation.litertlm_cases import keras_tokens
from tests.generation.test_litertlm import _tokenizer_folder
from tests.generation.test_onnx_genai import PROMPTS as LETTER_PROMPTS
from tests.generation.test_onnx_genai import write_letter_tokenizer
from tests.generation.test_runtime_families import BUILDERS
from tests.generation.test_runtime_families import FAMILIES
from tests.generation.test_runtime_families import PREFILL
from tests.generation.test_runtime_families import START
from tests.generation.test_runtime_families import _engine_ids
from tests.generation import tiny_lms
from tests.tiny_models import random_factors


def _wide(name):
    """The family's tiny model, 64 wide with 2 key/value heads of 16: wide
    enough for LiteRT-LM's LoRA inputs, which are rank 16 at least (the
    models of `test_runtime_families` have 8-wide keys and values)."""
    import keras_hub

    options = dict(vocabulary_size=tiny_lms.VOCAB, num_layers=1,
                   num_query_heads=4, num_key_value_heads=2, hidden_dim=64,
                   intermediate_dim=64)
    if name == "gemma3":
        backbone = keras_hub.models.Gemma3Backbone(
            image_size=None, head_dim=16, **options)
        return keras_hub.models.Gemma3CausalLM(backbone=backbone, preprocessor=None)
    family = {"qwen": "Qwen", "qwen3": "Qwen3", "mistral": "Mistral", "phi3": "Phi3"}[name]
    if name == "qwen3":
        options["head_dim"] = 16
    if name == "phi3":
        options["max_sequence_length"] = MAX_LENGTH
    backbone = getattr(keras_hub.models, f"{family}Backbone")(**options)
    return getattr(keras_hub.models, f"{family}CausalLM")(
        backbone=backbone, preprocessor=None)


def _adapted(base, seed):
    return random_factors(add_adapters(base, rank=4, alpha=8.0), seed, spread=0.8)


@pytest.fixture(scope="module")
def models():
    """`{family: (base, adapted)}`: the models of `test_runtime_families`."""
    keras.utils.set_random_seed(13)
    built = {}
    for seed, (name, build) in enumerate(BUILDERS.items()):
        base = build()
        built[name] = base, _adapted(base, seed)
    return built


@pytest.fixture(scope="module")
def wide_models():
    """`{family: (base, adapted)}`, 64 wide (`_wide`)."""
    keras.utils.set_random_seed(17)
    built = {}
    for seed, name in enumerate(FAMILIES):
        base = _wide(name)
        built[name] = base, _adapted(base, seed)
    return built


@pytest.fixture(scope="module")
def bundles(wide_models, references, tmp_path_factory):
    """`bundles(name)`: (report, base bundle, LoRA file of the adapter)."""
    folder = tmp_path_factory.mktemp("bundles")
    tokenizer = _tokenizer_folder(folder, tiny_lms.VOCAB)

    @functools.cache
    def get(name):
        _, adapted = wide_models[name]
        path, lora = str(folder / f"{name}.litertlm"), str(folder / f"{name}.lora")
        report = export_litertlm(
            adapted, path, max_length=MAX_LENGTH, prefill_lengths=PREFILL,
            tokenizer=tokenizer, prompts=WORD_PROMPTS, max_new_tokens=NEW_TOKENS,
            runtime_adapters=True)
        write_litertlm_adapter(adapted, path, lora)
        return report, path, lora

    return get


@pytest.mark.parametrize("name", FAMILIES)
def test_litertlm_adapter_file_generates_the_adapted_tokens(name, wide_models,
                                                            bundles, references):
    base, adapted = wide_models[name]
    report, path, lora = bundles(name)
    # The export's own check: the all-zero LoRA file gives the base model.
    assert report.tokens_matching == report.tokens_compared > 0
    expected = [keras_tokens(adapted, p, references(adapted, MAX_LENGTH))
                for p in WORD_PROMPTS]
    assert expected != [keras_tokens(base, p, references(base, MAX_LENGTH))
                        for p in WORD_PROMPTS]
    with open_engine(path, MAX_LENGTH) as engine:
        engine_tokens = [_engine_ids(greedy_text(engine, p, NEW_TOKENS, lora)[0])
                         for p in WORD_PROMPTS]
    assert engine_tokens == expected


@pytest.mark.parametrize("name", FAMILIES)
def test_genai_adapter_generates_the_adapted_tokens(name, models, references,
                                                    tmp_path):
    """The export checks GenAI with no adapter against the base model and
    with the model's own `.onnx_adapter` against the adapted model."""
    _, adapted = models[name]
    letters = write_letter_tokenizer(str(tmp_path))
    report = export_onnx_genai(
        adapted, str(tmp_path / name), max_length=MAX_LENGTH, tokenizer=letters,
        start_token_id=START, prompts=LETTER_PROMPTS, max_new_tokens=NEW_TOKENS,
        reference=references(adapted, MAX_LENGTH), runtime_adapters=True)
    assert report.verified
    assert report.tokens_matching == report.tokens_compared >= len(LETTER_PROMPTS)
