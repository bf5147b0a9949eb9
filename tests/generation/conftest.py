"""Module-wide fixtures: tiny models, their exports and a tokenizer."""

import pytest

from keras_lowrank.generation import export_generator
from tests.generation import tiny_lms

PREFILL_LENGTHS = (8, 16)


@pytest.fixture(scope="session")
def tiny_models():
    import keras

    keras.utils.set_random_seed(7)
    return {name: build() for name, build in tiny_lms.MODELS.items()}


@pytest.fixture(scope="session")
def generators(tiny_models, tmp_path_factory):
    """`generators(name, format)`: (report, path), exported once a session."""
    folder = tmp_path_factory.mktemp("generators")
    done = {}

    def get(name, format):
        if (name, format) not in done:
            path = folder / f"{name}.{format}"
            options = {"prefill_lengths": PREFILL_LENGTHS} if format == "tflite" else {}
            report = export_generator(
                tiny_models[name], path, format,
                max_length=tiny_lms.MAX_LENGTH, **options,
            )
            done[name, format] = (report, str(path))
        return done[name, format]

    return get


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory):
    return tiny_lms.write_word_tokenizer(
        tmp_path_factory.mktemp("tokenizer") / "tokenizer.json")
