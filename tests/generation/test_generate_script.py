"""export/generate.py and runtime.py where TensorFlow and Keras cannot be
imported, as on a phone-side test rig that only has the runtimes."""

import os
import subprocess
import sys

import pytest

from tests.generation import tiny_lms

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "export", "generate.py")
# Runs a script after making every import of TensorFlow or Keras fail.
NO_TENSORFLOW = """
import runpy, sys

class NoTensorFlow:
    BLOCKED = ("tensorflow", "keras", "tf_keras", "keras_hub", "tensorflow_text",
               "keras_lowrank")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(*args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, SCRIPT, *map(str, args)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )


def test_the_prelude_blocks_tensorflow_and_the_package(tmp_path):
    script = tmp_path / "uses.py"
    script.write_text("import keras_lowrank\n")
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, script], capture_output=True,
        text=True, cwd=ROOT, timeout=60)
    assert "ImportError: keras_lowrank is not installed here" in result.stderr


@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_text_in_greedy_text_out(generators, tiny_models, tiny_references,
                                 word_tokenizer, format):
    prompt = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]
    result = _run(generators("llama", format)[1], "--tokenizer", word_tokenizer,
                  "--prompt", tiny_lms.words(prompt), "--max-new-tokens", 12,
                  "--stats")
    assert result.returncode == 0, result.stderr
    # Keras' greedy tokens (`greedy_reference`), generated once for both formats.
    expected = tiny_references(tiny_models["llama"], tiny_lms.MAX_LENGTH).tokens(prompt, 12)
    # The word tokenizer's specials (ids 0-2) are dropped from the text.
    words = tiny_lms.words(t for t in expected if t > 2)
    assert result.stdout == words + "\n"
    assert "prompt 18 tokens, 12 generated (max_new_tokens); time to first " \
           "token " in result.stderr
    assert "tokens/s" in result.stderr


def test_text_starts_with_the_start_token(tiny_models, tiny_references, word_tokenizer,
                                         tmp_path):
    """Keras' generate() runs a text prompt from the preprocessor's start
    token: so do the artifact's check and the runner."""
    from keras_lowrank.generation import export_generator
    from keras_lowrank.generation import load_generator

    model, text = tiny_models["llama"], tiny_lms.words([7, 8, 9])
    path = tmp_path / "lm.onnx"
    # One Keras reference for the export's check and this test's tokens
    # (the session's, on 32 positions).
    reference = tiny_references(model, 32)
    report = export_generator(model, path, "onnx", max_length=32,
                              tokenizer=word_tokenizer, prompts=[text],
                              max_new_tokens=8, start_token_id=1,
                              reference=reference)
    assert report.prompt_lengths == (4,) and report.tokens_matching == 8
    assert load_generator(path).spec.start_token_id == 1
    result = _run(path, "--tokenizer", word_tokenizer, "--prompt", text,
                  "--max-new-tokens", 8, "--stats")
    assert result.returncode == 0, result.stderr
    expected = reference.tokens([1, 7, 8, 9], 8)
    assert expected != reference.tokens([7, 8, 9], 8)
    assert result.stdout == tiny_lms.words(t for t in expected if t > 2) + "\n"
    assert "prompt 4 tokens, 8 generated" in result.stderr


# The refusals read the artifact's spec, whatever the family: they run on
# the Llama generators the tests above use, so that this file needs two
# exports where it runs apart from test_export_generator (an xdist worker
# of its own), not five.
@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_refuses_a_prompt_longer_than_the_cache(generators, word_tokenizer, format):
    path = generators("llama", format)[1]
    result = _run(path, "--tokenizer", word_tokenizer,
                  "--prompt", tiny_lms.words([5] * 65))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        f"generate.py: error: The prompt has 65 tokens but {path} was exported "
        "with a cache of 64 positions; shorten it or export with a larger "
        "max_length.\n")


def test_refuses_a_tokenizer_of_another_model(generators, tmp_path):
    other = tiny_lms.write_word_tokenizer(tmp_path / "other.json", size=500)
    result = _run(generators("llama", "onnx")[1], "--tokenizer", other,
                  "--prompt", "w5")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "other.json does not match the model: its ids go up to 499" in result.stderr


def test_refuses_a_file_that_is_not_a_generator(tmp_path, word_tokenizer):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"not a model")
    result = _run(fake, "--tokenizer", word_tokenizer, "--prompt", "w5")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("generate.py: error: ")
