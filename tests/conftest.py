"""Test setup: TensorFlow backend, quiet logs, seeded randomness."""

import gc
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The command lines the tests run in-process must not tune this process's
# malloc for the rest of the suite (keras_lowrank.finetune.allocator).
os.environ["KERAS_LOWRANK_KEEP_FREED_MEMORY"] = "0"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _release_each_module():
    """Drops Keras' global state and the module's garbage after each test
    file: one process runs hundreds of models."""
    yield
    keras.backend.clear_session()
    gc.collect()


@pytest.fixture(autouse=True)
def _seed_and_policy():
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def model_never_loaded(monkeypatch):
    """Fails the test if a CLI command loads its MODEL argument."""
    from keras_lowrank.cli import model_argument

    def never(*args):
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(model_argument, "load_model_argument", never)


@pytest.fixture
def occupied_folder(tmp_path):
    """A folder holding a file of the user's: never to be replaced."""
    folder = tmp_path / "mywork"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return folder
