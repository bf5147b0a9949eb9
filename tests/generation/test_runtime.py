"""The runtime's pieces without a model: prefill plans, specs, tokenizers."""

import os
import subprocess
import sys

import pytest

from keras_lowrank.generation import GeneratorSpec
from keras_lowrank.generation.generator_spec import METADATA_KEY
from keras_lowrank.generation.runtime import check_tokenizer
from keras_lowrank.generation.runtime import plan_prefill
from tests.generation.test_generate_script import NO_TENSORFLOW
from tests.generation.test_generate_script import ROOT


@pytest.mark.parametrize("length, expected", [
    (1, [(0, 1, 8)]),
    (8, [(0, 8, 8)]),
    (9, [(0, 9, 16)]),
    (16, [(0, 16, 16)]),
    (33, [(0, 16, 16), (16, 16, 16), (32, 1, 8)]),
    # Near the end of a 40-position cache only 8 fits, then one by one.
    (39, [(0, 16, 16), (16, 16, 16), (32, 7, 8)]),
    (40, [(0, 16, 16), (16, 16, 16), (32, 8, 8)]),
])
def test_plan_prefill(length, expected):
    plan = plan_prefill(length, (8, 16), 40)
    assert plan == expected
    assert sum(count for _, count, _ in plan) == length
    assert all(start + chunk <= 40 for start, _, chunk in plan)


def test_plan_prefill_falls_back_to_decode_steps():
    assert plan_prefill(13, (8,), 12 + 1) == [(0, 8, 8), (8, 1, 1), (9, 1, 1),
                                              (10, 1, 1), (11, 1, 1), (12, 1, 1)]


def _spec(**overrides):
    fields = dict(format="tflite", max_length=32, prefill_lengths=(8, 16),
                  cache_shape=(1, 2, 2, 32, 2, 4), vocabulary_size=64,
                  stop_token_ids=(2,), model="Llama3CausalLM")
    fields.update(overrides)
    return GeneratorSpec(**fields)


def test_spec_round_trip():
    spec = _spec()
    assert GeneratorSpec.from_json(spec.to_json()) == spec
    assert METADATA_KEY == "keras_lowrank.generation"


@pytest.mark.parametrize("overrides, pattern", [
    ({"format": "gguf"}, r"Unrecognized format='gguf'"),
    ({"prefill_lengths": (16, 8)}, r"ascending and distinct"),
    ({"max_length": 31}, r"does not hold max_length=31"),
])
def test_spec_validation(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        _spec(**overrides)


def test_spec_from_an_unknown_version():
    text = _spec().to_json().replace('"version": 1', '"version": 9')
    with pytest.raises(ValueError, match=r"lm.tflite has unreadable generation "
                       r"metadata \(version 9, expected 1\)"):
        GeneratorSpec.from_json(text, "lm.tflite")


class _Vocabulary:
    def __init__(self, size):
        self.size = size

    def get_vocab(self, with_added_tokens):
        return {f"t{i}": i for i in range(self.size)}


@pytest.mark.parametrize("tokenizer_size, model_size, fits", [
    (64, 64, True), (49152, 49152, True),
    (50257, 50304, True),     # padded to a multiple of 64
    (65, 64, False), (10, 1000, False), (100, 228, False), (100, 227, True),
])
def test_check_tokenizer(tokenizer_size, model_size, fits):
    if fits:
        check_tokenizer(_Vocabulary(tokenizer_size), model_size)
    else:
        with pytest.raises(ValueError, match=r"does not match the model"):
            check_tokenizer(_Vocabulary(tokenizer_size), model_size)


def test_runtime_module_imports_neither_tensorflow_nor_keras():
    runtime = os.path.join(ROOT, "keras_lowrank", "generation", "runtime.py")
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, runtime], capture_output=True,
        text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    check = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('rt', {runtime!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert module.GeneratorSpec.__module__ == '_klr_generator_spec'\n"
        "assert module.Generator.__module__ == '_klr_generator_loop'\n"
        "assert module.load_tokenizer.__module__ == '_klr_runtime_tokenizer'\n"
        "assert issubclass(module.LiteRTGenerator, module.Generator)\n"
        "assert module.plan_prefill(9, (8, 16), 40) == [(0, 9, 16)]\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'keras_lowrank', 'onnxruntime', 'ai_edge_litert')))\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_runtime_gives_the_names_of_the_modules_beside_it():
    from keras_lowrank import generation
    from keras_lowrank.generation import generator_loop
    from keras_lowrank.generation import runtime
    from keras_lowrank.generation import runtime_tokenizer

    assert runtime.Generator is generator_loop.Generator
    assert runtime.PromptTooLongError is generation.PromptTooLongError
    assert runtime.plan_prefill is generator_loop.plan_prefill is plan_prefill
    assert runtime.load_tokenizer is runtime_tokenizer.load_tokenizer
    assert runtime.check_tokenizer is check_tokenizer
    assert runtime.VOCABULARY_PADDING == runtime_tokenizer.VOCABULARY_PADDING == 128


def test_generation_modules_stay_under_400_lines():
    folder = os.path.join(ROOT, "keras_lowrank", "generation")
    for name in ("runtime.py", "generator_loop.py", "runtime_tokenizer.py"):
        with open(os.path.join(folder, name)) as file:
            assert len(file.readlines()) <= 400, name
