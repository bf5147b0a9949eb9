"""Module-wide fixtures: tiny models, their exports and a tokenizer."""

import os

import pytest

from keras_lowrank.generation import export_generator
from keras_lowrank.models import presets
from tests.generation import tiny_lms
from tests.generation.references import References

PREFILL_LENGTHS = (8, 16)


@pytest.fixture(scope="session")
def tiny_models():
    import keras

    keras.utils.set_random_seed(7)
    return {name: build() for name, build in tiny_lms.MODELS.items()}


@pytest.fixture(scope="session")
def tiny_references():
    """`tiny_references(model, max_length)`: Keras' greedy generation of a
    session model (`tiny_models`), each prompt computed once
    (`references.SharedReference`)."""
    return References()


@pytest.fixture(scope="module")
def references():
    """As `tiny_references`, for the models of one test module."""
    return References()


@pytest.fixture(scope="session")
def generators(tiny_models, tiny_references, tmp_path_factory):
    """`generators(name, format)`: (report, path), exported once a session.

    The LiteRT and ONNX exports of a model check against one Keras
    reference: the same greedy tokens, generated once."""
    folder = tmp_path_factory.mktemp("generators")
    done = {}

    def get(name, format):
        if (name, format) not in done:
            path = folder / f"{name}.{format}"
            options = {"prefill_lengths": PREFILL_LENGTHS} if format == "tflite" else {}
            model = tiny_models[name]
            report = export_generator(
                model, path, format, max_length=tiny_lms.MAX_LENGTH,
                reference=tiny_references(model, tiny_lms.MAX_LENGTH), **options,
            )
            done[name, format] = (report, str(path))
        return done[name, format]

    return get


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory):
    return tiny_lms.write_word_tokenizer(
        tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")


# The real SmolLM2-135M-Instruct (the large tests), loaded once per module.
@pytest.fixture(scope="module")
def smollm2():
    return presets.smollm2_causal_lm()


@pytest.fixture(scope="module")
def tokenizer_path():
    """SmolLM2's Hugging Face `tokenizer.json`."""
    return os.path.join(presets.smollm2_path(), "tokenizer.json")
