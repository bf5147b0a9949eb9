"""The real SmolLM2-135M-Instruct (large): the folder built by `make fetch`
against an independent numpy pass on the GGUF, then exported with a short
cache and generating in LiteRT and ONNX Runtime exactly as Keras."""

import json
import os

import numpy as np
import pytest

from keras_lowrank.generation import export_generator
from keras_lowrank.generation import load_generator
from keras_lowrank.models import presets
from tests.artifact_cache import FileDigest
from tests.artifact_cache import cached
from tests.generation import numpy_llama
from tests.generation.numpy_llama import run_single_threaded
from tests.generation.references import SharedReference
from tests.generation.test_generate_script import _run

pytestmark = pytest.mark.large

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
PROMPTS = [
    "The capital of France is",
    CHAT.format("Write a haiku about the sea."),
    "def fibonacci(n):",
    "Once upon a time",
    CHAT.format("What are the three primary colors?"),
    "Water boils at",
    CHAT.format("Name a fruit."),
    "List of fruits: apple, banana,",
]
MAX_LENGTH = 64
NEW_TOKENS = 32
# float32 keras-hub vs the float64 numpy pass: measured 2.9e-5 to 4.9e-5
# on the last position's logits (largest |logit| 20 to 31).
LOGIT_ATOL = 1e-3
# LiteRT, the phone's runtime, by default: each SmolLM2 export takes minutes
# on 2 cores. KERAS_LOWRANK_SMOLLM2_FORMATS=tflite,onnx checks ONNX too.
FORMATS = os.environ.get("KERAS_LOWRANK_SMOLLM2_FORMATS", "tflite").split(",")


@pytest.fixture(scope="module")
def prompt_ids(tokenizer_path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_path)
    return [tokenizer.encode(p).ids for p in PROMPTS]


@pytest.fixture(scope="module")
def numpy_reference(prompt_ids):
    """The numpy pass's last-position logits on 3 prompts and its greedy
    continuations (8 tokens) of 2 prompts.

    An independent reference, not what is tested: kept on disk
    (`tests/artifact_cache.py`) under the GGUF's bytes, the numpy pass's
    source and the prompts, so only a changed input computes it again."""
    gguf = presets.smollm2_gguf_path()
    arguments = (prompt_ids[:3], prompt_ids[:2], 8)

    def save(reference, folder):
        logits, tokens = reference
        np.save(os.path.join(folder, "logits.npy"), np.stack(logits))
        with open(os.path.join(folder, "tokens.json"), "w") as file:
            json.dump(tokens, file)

    def load(folder):
        logits = np.load(os.path.join(folder, "logits.npy"))
        with open(os.path.join(folder, "tokens.json")) as file:
            tokens = json.load(file)
        assert logits.shape == (3, 49152) and len(tokens) == 2
        return list(logits), tokens

    return cached(
        "smollm2-numpy-reference",
        [FileDigest(gguf), FileDigest(numpy_llama.__file__), *arguments],
        lambda: run_single_threaded(gguf, *arguments), save, load)


def test_next_token_logits_match_the_numpy_pass(smollm2, numpy_reference,
                                                prompt_ids):
    for prompt, expected in zip(prompt_ids[:3], numpy_reference[0]):
        backbone = smollm2.backbone
        hidden = backbone({"token_ids": np.array([prompt]),
                           "padding_mask": np.ones((1, len(prompt)), bool)})
        logits = np.asarray(backbone.token_embedding(hidden, reverse=True))[0, -1]
        diff = np.max(np.abs(logits - expected))
        print(f"SmolLM2 next-token logits, keras-hub vs numpy: max abs diff "
              f"{diff:.2e} (largest |logit| {np.max(np.abs(expected)):.1f})")
        assert diff < LOGIT_ATOL
        assert logits.argmax() == expected.argmax()


@pytest.fixture(scope="module")
def keras_greedy(smollm2):
    """Keras' greedy generation, traced once for the module; each prompt's
    `NEW_TOKENS` generated once, here and for the exports
    (`references.SharedReference`)."""
    return SharedReference(smollm2, MAX_LENGTH)


def test_greedy_continuations_match_the_numpy_pass(keras_greedy, numpy_reference,
                                                   prompt_ids):
    # Greedy tokens do not depend on how many follow: the first 8 of the
    # generation the export checks against.
    for prompt, expected in zip(prompt_ids[:2], numpy_reference[1]):
        assert list(keras_greedy(prompt, NEW_TOKENS).tokens[:8]) == expected


@pytest.fixture(scope="module")
def exported(smollm2, keras_greedy, tokenizer_path, prompt_ids,
             tmp_path_factory):
    folder = tmp_path_factory.mktemp("smollm2")
    reports = {}
    for format in FORMATS:
        options = {"prefill_lengths": (16,)} if format == "tflite" else {}
        reports[format] = export_generator(
            smollm2, folder / f"smollm2.{format}", format,
            max_length=MAX_LENGTH, tokenizer=tokenizer_path, prompts=PROMPTS,
            max_new_tokens=NEW_TOKENS, reference=keras_greedy, **options,
        )
        print(reports[format])
    # The export generated from the test's own prompt ids.
    assert keras_greedy.generated == sorted(
        (tuple(p), NEW_TOKENS) for p in prompt_ids)
    return reports


@pytest.mark.parametrize("format", FORMATS)
def test_generation_equals_keras(exported, prompt_ids, format):
    report = exported[format]
    assert report.prompt_lengths == tuple(len(p) for p in prompt_ids)
    assert max(report.prompt_lengths) > 16  # two prefill chunks in LiteRT
    assert report.tokens_compared == report.tokens_matching == 8 * NEW_TOKENS
    assert report.spec.stop_token_ids == (2,)  # <|im_end|>
    assert report.spec.cache_shape == (1, 30, 2, MAX_LENGTH, 3, 64)
    # fp32 weights, each once; LiteRT also keeps the output projection with
    # the final norm's scale folded in (113 MB).
    weights = 134_515_008 * 4
    extra = 49152 * 576 * 4 if format == "tflite" else 0
    assert weights + extra < report.size_bytes < (weights + extra) * 1.01


def test_generate_script_without_tensorflow(exported, keras_greedy,
                                            tokenizer_path, prompt_ids):
    path = exported["tflite"].path
    result = _run(path, "--tokenizer", tokenizer_path, "--prompt", PROMPTS[4],
                  "--max-new-tokens", 24)
    assert result.returncode == 0, result.stderr
    expected = keras_greedy(prompt_ids[4], NEW_TOKENS).tokens[:24]
    if 2 in expected:  # stops at <|im_end|>
        expected = expected[:expected.index(2)]
    from tokenizers import Tokenizer

    text = Tokenizer.from_file(tokenizer_path).decode(list(expected))
    assert result.stdout == text + "\n" and text.strip()
    too_long = _run(path, "--tokenizer", tokenizer_path,
                    "--prompt", "word " * 80)
    assert too_long.returncode == 2
    assert "cache of 64 positions" in too_long.stderr


def test_runtime_alone(exported, prompt_ids):
    generator = load_generator(exported[FORMATS[-1]].path)
    assert generator.greedy(prompt_ids[0], 4, stop_token_ids=(2,)).stopped in (
        "max_new_tokens", "stop_token")
