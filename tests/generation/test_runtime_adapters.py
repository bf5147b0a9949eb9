"""Adapters swapped at run time: one base artifact with the LoRA factors as
inputs; two adapters written as `.npz` files and switched in one loaded
artifact each give their own adapted model's Keras logits and greedy
tokens."""

import os

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.generation import export_generator
from keras_lowrank.generation import load_generator
from keras_lowrank.generation import write_runtime_adapter
from keras_lowrank.generation.cached_causal_lm import cache_shape
from keras_lowrank.generation.cached_causal_lm import call_with_cache
from tests.generation import tiny_lms
from tests.tiny_models import random_factors

MAX_LENGTH = 32
PROMPTS = ([3, 9, 27, 11], [5], list(range(4, 20)))
NEW_TOKENS = 16


def _adapted(base, seed, rank, alpha, **kwargs):
    model = klr.add_adapters(base, rank=rank, alpha=alpha, **kwargs)
    return random_factors(model, seed, factors=("lora_",))


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(3)
    base = tiny_lms.llama()
    # Two tasks: different factors, ranks and alphas (scales 2.0 and 1.0).
    return base, _adapted(base, 1, 4, 8.0), _adapted(base, 2, 2, 2.0)


def _options(format):
    options = {"max_length": MAX_LENGTH, "max_new_tokens": NEW_TOKENS}
    return {**options, "prefill_lengths": (8,)} if format == "tflite" else options


@pytest.fixture(scope="module")
def artifacts(models, references, tmp_path_factory):
    """`artifacts(format)`: `(report, path)` of the verified base artifact
    of task a (runtime adapters), exported once and shared by the tests."""
    base, task_a, task_b = models
    folder = tmp_path_factory.mktemp("runtime_adapters")
    done = {}

    def get(format):
        if format not in done:
            path = folder / f"base.{format}"
            report = export_generator(
                task_a, path, format, runtime_adapters=True,
                reference=references(task_a, MAX_LENGTH), **_options(format))
            done[format] = report, path
        return done[format]

    return get


@pytest.fixture(scope="module")
def merged(models, tmp_path_factory):
    """Task a's merged export (no runtime adapters), for the refusals."""
    path = tmp_path_factory.mktemp("merged") / "merged_a.onnx"
    export_generator(models[1], path, "onnx", verify=False, **_options("onnx"))
    return path


def _keras_logits(model, prompt):
    """Keras' logits of the token after `prompt` (keras-hub's
    `call_with_cache` on the artifact's cache length): (vocabulary,)."""
    cache = np.zeros(cache_shape(model, MAX_LENGTH), "float32")
    logits, _ = call_with_cache(model, np.array([prompt], "int32"), cache, 0)
    return np.asarray(logits)[0, -1]


@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_two_adapters_switched_in_one_artifact(models, artifacts, references,
                                               tmp_path, format):
    base, task_a, task_b = models
    report, path = artifacts(format)
    assert report.tokens_compared == report.tokens_matching == 8 * NEW_TOKENS
    assert [entry[0] for entry in report.spec.adapters] == klr.adapter_paths(task_a)
    assert report.spec.adapters[0][1:] == (16, 4, 16, 2.0)
    tasks = {"a": task_a, "b": task_b}
    sizes = {name: write_runtime_adapter(model, path, tmp_path / f"{name}.npz")
             for name, model in tasks.items()}
    generator = load_generator(path)  # loaded once, adapters switched
    # Each adapter against its own adapted model in Keras (unmerged), the
    # yardstick every merged export is checked against.
    for name in ("a", "b", "a"):
        generator.load_adapter(tmp_path / f"{name}.npz")
        for prompt in PROMPTS:
            logits, _ = generator.prefill(prompt)
            want = _keras_logits(tasks[name], prompt)
            assert np.abs(np.reshape(logits, -1) - want).max() < 1e-4
            assert (generator.greedy(prompt, NEW_TOKENS).tokens
                    == references(tasks[name], MAX_LENGTH).tokens(prompt, NEW_TOKENS))
    generator.load_adapter(None)  # zeros: the base model
    for prompt in PROMPTS:
        assert (generator.greedy(prompt, NEW_TOKENS).tokens
                == references(base, MAX_LENGTH).tokens(prompt, NEW_TOKENS))
    # What an app downloads per task: 4 layers x (16x4 + 4x16) float32 =
    # 2,048 bytes of factors (task b's rank 2 padded to 4), plus the .npz
    # headers; measured 3,798 bytes against the merged model's size.
    for size in sizes.values():
        assert 2048 < size < 2048 + 8 * 300
        assert size == os.path.getsize(tmp_path / "a.npz")
    assert report.size_bytes > 20 * sizes["a"]


def test_generate_script_feeds_an_adapter_without_tensorflow(models, artifacts,
                                                            references, tmp_path,
                                                            word_tokenizer):
    from tests.generation.test_generate_script import _run

    base, task_a, task_b = models
    _, path = artifacts("tflite")
    write_runtime_adapter(task_b, path, tmp_path / "b.npz")
    prompt = [7, 8, 9, 10]
    for adapter, model in ((["--adapter", tmp_path / "b.npz"], task_b), ([], base)):
        result = _run(path, "--tokenizer", word_tokenizer, "--prompt",
                      tiny_lms.words(prompt), "--max-new-tokens", 10, *adapter)
        assert result.returncode == 0, result.stderr
        expected = references(model, MAX_LENGTH).tokens(prompt, 10)
        assert result.stdout == tiny_lms.words(t for t in expected if t > 2) + "\n"


def test_refusals(models, artifacts, merged, tmp_path):
    base, task_a, _ = models
    with pytest.raises(ValueError, match=r"runtime_adapters=True needs a model "
                       r"with LoRA adapters .*Llama3CausalLM has none"):
        export_generator(base, tmp_path / "x.tflite", "tflite",
                         runtime_adapters=True, max_length=MAX_LENGTH)
    dora = _adapted(base, 4, 2, 2.0, use_dora=True)
    with pytest.raises(ValueError, match=r"one plain LoRA adapter per layer. "
                       r"Received: layer 'transformer_layer_0/self_attention/"
                       r"query' with variant='dora'"):
        export_generator(dora, tmp_path / "x.tflite", "tflite",
                         runtime_adapters=True, max_length=MAX_LENGTH)
    assert not os.listdir(tmp_path)
    _, path = artifacts("onnx")
    wide = _adapted(base, 5, 8, 8.0)
    with pytest.raises(ValueError, match=r"adapter's rank 8 is above the "
                       r"artifact's 4"):
        write_runtime_adapter(wide, path, tmp_path / "wide.npz")
    more = _adapted(base, 6, 2, 2.0, targets="all-linear")
    with pytest.raises(ValueError, match=r"adapts layers the artifact takes no "
                       r"factors for: \['transformer_layer_0/feedforward"):
        write_runtime_adapter(more, path, tmp_path / "more.npz")
    generator = load_generator(path)
    with pytest.raises(ValueError, match=r"Adapter input lora_a_0 must be "
                       r"finite float32 of shape \(16, 4\)"):
        generator.load_adapter({**generator.adapter,
                                "lora_a_0": np.zeros((16, 2), np.float32)})
    with pytest.raises(ValueError, match=r"exported without runtime_adapters="
                       r"True: it takes no adapter"):
        load_generator(merged).load_adapter(None)
    with pytest.raises(ValueError, match=r"without runtime_adapters=True"):
        write_runtime_adapter(task_a, merged, tmp_path / "a.npz")
    assert not os.listdir(tmp_path)
