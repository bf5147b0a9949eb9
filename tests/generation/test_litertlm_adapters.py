"""Runtime LoRA in LiteRT-LM: one base bundle, adapter files, the real engine.

The base bundle is exported once per module from a tiny Llama wide enough
for rank 16 (`tiny_lms.quantizable_llama`); two adapters of rank 4 and 8
with non-zero `B` are written as LoRA files and run in the engine, each
against Keras' greedy tokens of its own adapted model. The word-level
tokenizer maps `w17` to id 17, so the engine's text gives its token ids.
"""

import os

import keras
import numpy as np
import pytest

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.adapters.adapted_model import add_adapters
from keras_lowrank.generation import write_runtime_adapter
from keras_lowrank.generation.litertlm_adapter import bundle_lora_inputs
from keras_lowrank.generation.litertlm_adapter import write_litertlm_adapter
from keras_lowrank.generation.litertlm_adapter import write_litertlm_base_adapter
from keras_lowrank.generation.litertlm_check import CheckCase
from keras_lowrank.generation.litertlm_check import check_bundle
from keras_lowrank.generation.litertlm_check import greedy_text
from keras_lowrank.generation.litertlm_check import open_engine
from keras_lowrank.generation.litertlm_export import export_litertlm
from tests.generation import tiny_lms
from tests.generation.litertlm_cases import MAX_LENGTH
from tests.generation.litertlm_cases import NEW_TOKENS
from tests.generation.litertlm_cases import PROMPTS
from tests.generation.litertlm_cases import keras_tokens
from tests.generation.litertlm_cases import word_ids

VOCAB = 256
ATTENTION = ("query", "key", "value", "attention_output")
TEMPLATE = ("{{ bos_token }}{% for message in messages %}"
            "{{ message['content'] }}{% endfor %}")


def _adapted(model, seed, **config):
    adapted = add_adapters(model, **config)
    rng = np.random.default_rng(seed)
    for layer in adapters(adapted).values():
        layer.lora_a.assign(rng.normal(0, 0.5, layer.lora_a.shape))
        layer.lora_b.assign(rng.normal(0, 0.5, layer.lora_b.shape))
    return adapted


@pytest.fixture(scope="module")
def base_lm():
    return tiny_lms.quantizable_llama(seed=7)


@pytest.fixture(scope="module")
def adapted(base_lm):
    """Two adapters: rank 4 (scale 2) on q/k/v/o, rank 8 (scale 0.5) on q/v."""
    keras.utils.set_random_seed(3)
    return {
        "r4": _adapted(base_lm, 1, targets=ATTENTION, rank=4, alpha=8),
        "r8": _adapted(base_lm, 2, targets=("query", "value"), rank=8, alpha=4),
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("litertlm_lora")


@pytest.fixture(scope="module")
def bundle(adapted, folder):
    """`(report, path)` of the base bundle, exported from an adapted model."""
    tokenizer = tiny_lms.write_word_tokenizer(folder / "tokenizer.json", VOCAB)
    path = str(folder / "base.litertlm")
    report = export_litertlm(
        adapted["r4"], path, max_length=MAX_LENGTH, prefill_lengths=(8,),
        tokenizer=tokenizer, chat_template=TEMPLATE, start_token_id=1,
        stop_token_ids=(2,), prompts=PROMPTS, max_new_tokens=NEW_TOKENS,
        runtime_adapters=True)
    return report, path


def _engine_tokens(path, lora_path):
    with open_engine(path, MAX_LENGTH) as engine:
        return [word_ids(greedy_text(engine, p, NEW_TOKENS, lora_path)[0])
                for p in PROMPTS]


def test_base_bundle_takes_the_runtime_lora_inputs(bundle):
    report, path = bundle
    inputs = bundle_lora_inputs(path)
    assert len(inputs) == 2 * 4 * 2  # layers x projections x (A, B)
    assert inputs["lora_atten_q_a_prime_weight_0"] == (64, 16)
    assert inputs["lora_atten_k_b_prime_weight_1"] == (16, 32)
    assert inputs["lora_atten_o_b_prime_weight_1"] == (16, 64)
    # The export's own check: the base model, with the all-zero LoRA file.
    assert report.tokens_matching == report.tokens_compared > 0
    assert report.prompts_matching == 2


def test_zero_adapter_gives_the_base_model(base_lm, bundle, folder, references):
    _, path = bundle
    lora = str(folder / "zero.lora.tflite")
    size = write_litertlm_base_adapter(path, lora)
    assert size % 4096 == 0
    # Keras' tokens of each model from its shared reference (`references`).
    expected = [keras_tokens(base_lm, p, references(base_lm, MAX_LENGTH))
                for p in PROMPTS]
    assert _engine_tokens(path, lora) == expected


@pytest.mark.parametrize("name", ["r4", "r8"])
def test_adapter_file_equals_its_adapted_model(name, adapted, base_lm, bundle, folder,
                                               references):
    _, path = bundle
    lora = str(folder / f"{name}.lora.tflite")
    size = write_litertlm_adapter(adapted[name], path, lora)
    assert size % 4096 == 0
    model = adapted[name]
    expected = [keras_tokens(model, p, references(model, MAX_LENGTH)) for p in PROMPTS]
    assert expected != [keras_tokens(base_lm, p, references(base_lm, MAX_LENGTH))
                        for p in PROMPTS]
    assert _engine_tokens(path, lora) == expected


def test_write_runtime_adapter_dispatches_on_litertlm(adapted, bundle, folder):
    _, path = bundle
    direct, dispatched = folder / "direct.tflite", folder / "dispatched.tflite"
    write_litertlm_adapter(adapted["r8"], path, str(direct))
    size = write_runtime_adapter(adapted["r8"], path, str(dispatched))
    assert size == os.path.getsize(direct)
    assert dispatched.read_bytes() == direct.read_bytes()


def _refused(model, bundle, folder, pattern):
    target = folder / "refused.tflite"
    with pytest.raises(ValueError, match=pattern):
        write_litertlm_adapter(model, bundle[1], str(target))
    assert not target.exists()


def test_refuses_an_adapter_outside_attention(base_lm, bundle, folder):
    model = add_adapters(base_lm, targets=("query", "feedforward_gate_dense"),
                         rank=4)
    _refused(model, bundle, folder,
             r"'transformer_layer_0/feedforward_gate_dense'.*klr\.merge_adapters")


def test_refuses_a_rank_above_the_bundle(base_lm, bundle, folder):
    model = add_adapters(base_lm, targets=("query",), rank=40)
    _refused(model, bundle, folder, r"rank 40 is above the bundle's 16")


def test_refuses_an_adapter_of_another_base(bundle, folder):
    keras.utils.set_random_seed(5)
    other = tiny_lms.llama()  # hidden 16, not 64
    model = add_adapters(other, targets=("query",), rank=4)
    _refused(model, bundle, folder, r"\(16, 4\) x \(4, 16\) do not fit.*another base")


def test_refuses_dora(base_lm, bundle, folder):
    model = add_adapters(base_lm, targets=("query",), rank=4, use_dora=True)
    _refused(model, bundle, folder, r"plain LoRA.*variant=")


def test_export_refuses_a_model_narrower_than_the_runtime_rank(folder):
    keras.utils.set_random_seed(5)
    narrow = add_adapters(tiny_lms.llama(), targets=("query",), rank=4)  # 16 wide
    with pytest.raises(ValueError, match=(
            r"LiteRT-LM's runtime LoRA takes rank \[16, 32\] inputs on every "
            r"attention projection, and rank 16 does not fit one of this model's: "
            r"Layer 'transformer_layer_0/self_attention/key'.*min\(16, 8\) = 8.*"
            r"Export it without runtime_adapters")) as info:
        export_litertlm(narrow, str(folder / "narrow.litertlm"), max_length=MAX_LENGTH,
                        tokenizer=str(folder / "tokenizer.json"),
                        runtime_adapters=True)
    assert "Use a rank" not in str(info.value)
    assert not (folder / "narrow.litertlm").exists()


def test_export_refuses_runtime_rank_above_32(base_lm, folder):
    model = add_adapters(base_lm, targets=("query",), rank=40)
    with pytest.raises(ValueError, match=r"rank \[16, 32\] only"):
        export_litertlm(model, str(folder / "x.litertlm"), max_length=MAX_LENGTH,
                        tokenizer=str(folder / "tokenizer.json"),
                        runtime_adapters=True)
    assert not (folder / "x.litertlm").exists()


@pytest.fixture(scope="module")
def int8_bundle(adapted, bundle, folder):
    """`(report, path)` of the base bundle with int8 weights (dynamic range),
    from the same adapted model as `bundle` (whose tokenizer it reuses)."""
    path = str(folder / "base_int8.litertlm")
    report = export_litertlm(
        adapted["r4"], path, max_length=MAX_LENGTH, prefill_lengths=(8,),
        tokenizer=str(folder / "tokenizer.json"), chat_template=TEMPLATE,
        start_token_id=1, stop_token_ids=(2,), prompts=PROMPTS,
        max_new_tokens=NEW_TOKENS, quantize="dynamic", runtime_adapters=True)
    return report, path


def test_int8_base_bundle_keeps_the_float_lora_inputs(bundle, int8_bundle):
    (float_report, float_path), (report, path) = bundle, int8_bundle
    assert bundle_lora_inputs(path) == bundle_lora_inputs(float_path)
    assert report.quantize == "dynamic"
    # The export's own check: the base model (all-zero LoRA file), teacher
    # forced on Keras' tokens, at least min_agreement=0.8 of them (measured
    # 11/12; 234,448 bytes against 497,748 in float32).
    assert 0.8 * report.tokens_compared <= report.next_tokens_matching
    # A word-level tokenizer reads every step's text back as Keras' ids.
    assert report.next_tokens_compared == report.tokens_compared
    assert report.tokens_compared == float_report.tokens_compared
    assert report.size_bytes < 0.5 * float_report.size_bytes


def test_adapter_file_on_the_int8_base_follows_its_adapted_model(
        adapted, base_lm, int8_bundle, folder, references):
    _, path = int8_bundle
    lora = str(folder / "r8_on_int8.lora.tflite")
    write_litertlm_adapter(adapted["r8"], path, lora)
    model = adapted["r8"]
    cases = []
    for prompt in PROMPTS:
        ids = [1] + word_ids(prompt)
        cases.append(CheckCase(prompt, tuple(ids), tuple(
            keras_tokens(model, prompt, references(model, MAX_LENGTH)))))
    base = [keras_tokens(base_lm, p, references(base_lm, MAX_LENGTH)) for p in PROMPTS]
    assert [list(c.expected) for c in cases] != base
    with open_engine(path, MAX_LENGTH) as engine:
        measured = check_bundle(engine, cases, NEW_TOKENS, min_agreement=0.8,
                                lora_path=lora)
    # Measured: 12/12 next tokens, and both prompts' greedy text equal.
    assert measured["tokens_compared"] == sum(len(c.expected) for c in cases) > 0
    assert measured["next_tokens_matching"] >= measured["tokens_compared"] - 1
    assert measured["next_tokens_compared"] == measured["tokens_compared"]


def test_runtime_adapters_take_a_reference_of_the_base_only(base_lm, adapted, folder):
    # A reference is of the model it was made from; with runtime adapters
    # the check runs the base, so a model with adapters cannot bring one
    # (an adapter-free model can: tests/generation/test_smollm2_runtimes.py).
    from keras_lowrank.generation.keras_reference import GreedyReference

    model = adapted["r4"]
    path = folder / "refused.litertlm"
    with pytest.raises(ValueError, match=(
            r"not `reference`'s\. Received: a reference and a model with "
            rf"{len(adapters(model))} adapters \(first on '.+'\); pass reference=None")):
        export_litertlm(model, str(path), max_length=MAX_LENGTH,
                        tokenizer=str(folder / "tokenizer.json"), runtime_adapters=True,
                        reference=GreedyReference(model, (1, 2, 2, MAX_LENGTH, 2, 16)))
    assert not path.exists()
