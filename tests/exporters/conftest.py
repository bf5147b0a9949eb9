"""Session fixtures: the small models, and their artifacts exported once."""

import os

import keras
import pytest

from keras_lowrank.exporters import export
from tests.exporters.helpers import BUILDERS

EXTENSIONS = {"saved_model": "", "tflite": ".tflite", "onnx": ".onnx"}


@pytest.fixture(scope="session")
def models():
    """`{"dense": ..., "bert": ..., "gpt2": ...}`, built once, seeded."""
    keras.utils.set_random_seed(7)
    return {name: build() for name, build in BUILDERS.items()}


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def exported(models, artifacts_dir):
    """`exported(model_name, format, **kwargs) -> ExportReport`, cached."""
    cache = {}

    def get(name, format, **kwargs):
        key = (name, format, tuple(sorted(kwargs.items())))
        if key not in cache:
            suffix = "".join(f"_{k}-{v}" for k, v in sorted(kwargs.items()))
            path = os.path.join(
                artifacts_dir, f"{name}_{format}{suffix}{EXTENSIONS[format]}"
            )
            cache[key] = export(models[name], path, format, **kwargs)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def text_model():
    """The tiny raw-text BERT classifier of `text_models`, trained once."""
    from tests.exporters.text_models import text_classifier

    return text_classifier()
