"""Fixtures of the fine-tuning tests: a tiny BERT preset and its data."""

import os

import pytest

from tests import tiny_models as tiny


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory):
    """A keras-hub preset folder of a tiny BERT classifier (sequence 12)."""
    folder = tmp_path_factory.mktemp("tiny") / "preset"
    tiny.bert_classifier_with_preprocessor().save_to_preset(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_train_csv(tmp_path_factory):
    """40 short reviews of two labels, in the tiny preset's vocabulary."""
    texts = ["a great movie", "the plot was good", "awful", "the movie was awful",
             "great plot", "a good movie", "awful plot", "the awful movie"]
    path = tmp_path_factory.mktemp("data") / "train.csv"
    path.write_text("text,label\n" + "".join(
        f"{texts[i % 8]} {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40)))
    return str(path)


@pytest.fixture(autouse=True)
def op_determinism_restored():
    """`finetune` turns TensorFlow op determinism on for the process (its
    default, `deterministic=True`); later tests get the state they had."""
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    yield
    if not before:
        tf_config.disable_op_determinism()


def snapshot(folder):
    """Every entry under `folder`: its bytes (None for a folder) and mode."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            content = None
            if os.path.isfile(path):
                with open(path, "rb") as file:
                    content = file.read()
            entries[os.path.relpath(path, folder)] = (content, os.stat(path).st_mode)
    return entries


class DummyRunner:
    """A runtime for the dummy format: logits say "the second token is odd"."""

    input_names = ("padding_mask", "token_ids")
    output_names = ("logits",)
    runtime = "dummy 1.0"

    def __init__(self, path):
        with open(path, "rb") as file:
            assert file.read() == b"dummy artifact"

    def __call__(self, inputs):
        import numpy as np

        odd = inputs["token_ids"][:, 1] % 2  # (batch,)
        return {"logits": np.stack([1 - odd, odd], axis=-1).astype("float32")}

    def ops(self):
        return ()


@pytest.fixture
def register_format(monkeypatch):
    """Registers an `ExportFormat` for one test; it is removed afterwards.

    Call it with the record's fields; `name="dummy"`, a one-file format with
    suffix ".dummy" and `DummyRunner` unless given.
    """
    from keras_lowrank.exporters import ExportFormat
    from keras_lowrank.exporters import formats

    def register(**fields):
        fields = {"name": "dummy", "title": "Dummy", "directory": False,
                  "suffix": ".dummy", "write": _never_written,
                  "runner": DummyRunner, **fields}
        record = ExportFormat(**fields)
        # The registry is the only list of formats; nothing else is patched.
        monkeypatch.setitem(formats._REGISTRY, record.name, record)
        return record

    return register


def _never_written(model, signature, path, **options):
    raise AssertionError("the dummy format is never written by `export`")
