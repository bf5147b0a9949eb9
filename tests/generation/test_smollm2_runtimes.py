"""The real SmolLM2-135M-Instruct (large) in the two phone LLM runtimes, with
runtime LoRA: a LiteRT-LM bundle and an ONNX Runtime GenAI folder, each
generating Keras' greedy tokens of the base model and, with an adapter file,
of the adapted model.

One adapted model for both runtimes: a seeded rank-8 LoRA (scale 2) on the
attention projections, `B` non-zero, so that the adapter changes the
greedy tokens. Keras' tokens of the base and the adapted model come from one
`SharedReference` each (`references`: the decode step traced once per
model, 22-30 s on 2 cores). LiteRT-LM's export checks its base bundle itself (raw text and
the Conversation API) against the base model's, passed as its `reference`; the
GenAI folder is checked by the test alone.
"""

import os

import keras
import pytest

import keras_lowrank as klr
from keras_lowrank.generation import export_litertlm
from keras_lowrank.generation import export_onnx_genai
from keras_lowrank.generation.litertlm_adapter import bundle_lora_inputs
from keras_lowrank.generation.litertlm_check import CheckCase
from keras_lowrank.generation.litertlm_check import check_bundle
from keras_lowrank.generation.litertlm_check import open_engine
from keras_lowrank.generation.onnx_genai_adapter import ADAPTER_INPUTS_FILE
from keras_lowrank.generation.onnx_genai_check import GenAIGenerator
from keras_lowrank.generation.onnx_genai_check import GenAITokenizer
from tests.tiny_models import random_factors

pytestmark = pytest.mark.large

MAX_LENGTH = 64
NEW_TOKENS = 16
# <|im_start|>, tokenizer_config.json's bos_token: export_litertlm's start
# token for SmolLM2, which the LiteRT-LM engine puts before every raw text.
# SmolLM2's preprocessor adds none (add_bos_token false), so the GenAI export
# is given it: both runtimes then read the same ids, and one Keras reference
# per model serves both.
START = 1
# 6 and 20 tokens with the start token: the second spans two prefill chunks
# of 16 in LiteRT-LM. The first is also the Conversation API's check.
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived an old "
    "fisherman who",
]
ATTENTION = ("query", "key", "value", "attention_output")


@pytest.fixture(scope="module")
def prompt_ids(tokenizer_path):
    """Keras' input for each raw text: the start token, then its ids (as
    LiteRT-LM's engine reads the text; GenAI is given these ids)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_path)
    return [[START] + tokenizer.encode(p).ids for p in PROMPTS]


@pytest.fixture(scope="module")
def adapted(smollm2):
    """SmolLM2 with a seeded LoRA of rank 8, alpha 16 on q/k/v/o, `B` drawn
    from N(0, 0.025): the greedy tokens change after a few words and stay
    fluent (Keras' smallest top-2 logit gap on the prompts: 0.04)."""
    keras.utils.set_random_seed(3)
    model = klr.add_adapters(smollm2, targets=ATTENTION, rank=8, alpha=16)
    return random_factors(model, 1, spread=0.025)


@pytest.fixture(scope="module")
def greedy(smollm2, adapted, references):
    """`greedy(name, ids)`: Keras' `NEW_TOKENS` greedy tokens after `ids`
    on a cache of `MAX_LENGTH`, of the "base" or the "adapted" model, from
    the module's `SharedReference` of each (`references`)."""
    models = {"base": smollm2, "adapted": adapted}

    def tokens(name, ids):
        return list(references(models[name], MAX_LENGTH).tokens(ids, NEW_TOKENS))

    return tokens


def _until(tokens, stops, included):
    """`tokens` up to the first stop token (kept where `included`): where
    LiteRT-LM (excluded) and GenAI (included) stop."""
    end = next((i for i, t in enumerate(tokens) if t in stops), None)
    return tokens if end is None else tokens[:end + included]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("smollm2_runtimes")


@pytest.fixture(scope="module")
def bundle(smollm2, tokenizer_path, folder, references):
    """`(report, path)` of SmolLM2's base bundle with LiteRT-LM's LoRA
    inputs (rank 16), checked by the export in the engine with the
    all-zero LoRA file against Keras' base model: the module's reference
    of `smollm2` (no adapters), whose tokens `greedy("base", ...)` gives
    too."""
    path = str(folder / "smollm2.litertlm")
    report = export_litertlm(
        smollm2, path, tokenizer=tokenizer_path, runtime_adapters=True,
        max_length=MAX_LENGTH, prefill_lengths=(16,), prompts=PROMPTS,
        max_new_tokens=NEW_TOKENS, reference=references(smollm2, MAX_LENGTH))
    print(report)
    return report, path


def test_litertlm_base_bundle_equals_keras(bundle, prompt_ids):
    report, path = bundle
    inputs = bundle_lora_inputs(path)
    assert len(inputs) == 30 * 4 * 2  # layers x projections x (A, B)
    assert inputs["lora_atten_q_a_prime_weight_0"] == (576, 16)
    assert inputs["lora_atten_k_b_prime_weight_29"] == (16, 192)
    assert report.metadata.start_token_id == START
    assert report.prompt_lengths == tuple(len(p) for p in prompt_ids) == (6, 20)
    # The export's own check (raw text in the engine, the all-zero LoRA
    # file): every token of both prompts, and the Conversation API's reply.
    assert report.tokens_matching == report.tokens_compared == 2 * NEW_TOKENS
    assert report.prompts_matching == len(PROMPTS)
    assert report.conversation_matching is True


def test_litertlm_lora_file_equals_the_adapted_model(bundle, adapted, greedy,
                                                     prompt_ids, folder):
    report, path = bundle
    lora = str(folder / "task.lora.tflite")
    size = klr.write_runtime_adapter(adapted, path, lora)
    assert size == os.path.getsize(lora) and size % 4096 == 0
    stops = report.metadata.stop_token_ids
    cases = [CheckCase(text, tuple(ids), tuple(_until(
        greedy("adapted", ids), stops, included=False)))
        for text, ids in zip(PROMPTS, prompt_ids)]
    base = [_until(greedy("base", ids), stops, False) for ids in prompt_ids]
    # The adapter changes the tokens, so the engine must have applied it.
    assert [list(c.expected) for c in cases] != base
    with open_engine(path, MAX_LENGTH) as engine:
        # Raises unless the engine's greedy text (with the LoRA file)
        # equals Keras' tokens detokenized, prompt by prompt.
        measured = check_bundle(engine, cases, NEW_TOKENS, lora_path=lora)
    print(f"LiteRT-LM with the LoRA file: {measured}")
    compared = sum(len(c.expected) for c in cases)
    assert measured["tokens_matching"] == measured["tokens_compared"] == compared
    assert compared == 2 * NEW_TOKENS
    assert measured["prompts_matching"] == len(PROMPTS)


@pytest.fixture(scope="module")
def genai(adapted, tokenizer_path, folder):
    """`(report, folder)` of the adapted model as a GenAI folder whose LoRA
    factors are inputs with zero defaults. Its own check is left out
    (`verify=False`): it would trace Keras' base model once more and run
    GenAI on the same comparisons as the test below."""
    path = str(folder / "smollm2-genai")
    report = export_onnx_genai(
        adapted, path, tokenizer=tokenizer_path, runtime_adapters=True,
        max_length=MAX_LENGTH, start_token_id=START, verify=False)
    print(report)
    return report, path


def test_onnx_genai_adapter_file_and_base_equal_keras(genai, adapted, greedy,
                                                      prompt_ids, folder):
    report, path = genai
    assert report.start_token_id == START and ADAPTER_INPUTS_FILE in report.files
    # GenAI's own tokenizer reads each text as `tokenizers` does (Keras'
    # ids without the start token, which GenAI does not add).
    tokenizer = GenAITokenizer(path)
    assert [[START] + tokenizer.encode(t) for t in PROMPTS] == prompt_ids
    lora = str(folder / "task.onnx_adapter")
    assert klr.write_runtime_adapter(adapted, path, lora) == os.path.getsize(lora)
    stops = report.stop_token_ids
    expected = {name: [_until(greedy(name, ids), stops, True) for ids in prompt_ids]
                for name in ("adapted", "base")}
    assert expected["adapted"] != expected["base"]
    generator = GenAIGenerator(path)
    generator.load_adapter(lora, "task")
    measured = {}
    for adapter, name in (("task", "adapted"), (None, "base")):
        generator.use_adapter(adapter)
        measured[name] = [list(generator.greedy(ids, NEW_TOKENS).tokens)
                          for ids in prompt_ids]
    print(f"GenAI tokens: {measured}")
    assert measured == expected
    assert sum(map(len, measured["adapted"] + measured["base"])) == 4 * NEW_TOKENS
