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


@pytest.fixture(scope="session")
def uncased_preset(tmp_path_factory):
    """A keras-hub preset of a tiny BERT classifier MediaPipe can tokenize for.

    The uncased WordPiece vocabulary of `tests/exporters/text_models.py`
    (sequence length 16), pretrained here for 6 epochs on its toy sentences
    (a frozen random backbone gives LoRA nothing to learn from), and no
    dropout anywhere (in the backbone or the head), so a run on several
    replicas draws nothing a one-device run would draw differently.
    """
    import keras
    import keras_hub
    import numpy as np

    from tests.exporters import text_models

    keras.utils.set_random_seed(3)
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=text_models.VOCABULARY, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=text_models.SEQUENCE_LENGTH)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(text_models.VOCABULARY), num_layers=2, num_heads=2,
        hidden_dim=32, intermediate_dim=64,
        max_sequence_length=text_models.SEQUENCE_LENGTH, dropout=0.0)
    model = keras_hub.models.BertTextClassifier(
        backbone, num_classes=2, preprocessor=preprocessor, dropout=0.0)
    texts, labels = text_models.toy_data(160)
    inputs = {k: np.asarray(v) for k, v in preprocessor(texts).items()}
    model.preprocessor = None
    model.compile(
        optimizer=keras.optimizers.Adam(5e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,  # tracing a train step takes longer than 30 steps
    )
    model.fit(inputs, labels, epochs=6, batch_size=32, verbose=0)
    model.preprocessor = preprocessor
    folder = tmp_path_factory.mktemp("uncased") / "preset"
    model.save_to_preset(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory):
    """120 toy reviews (`text_models.toy_data`), labels negative / positive."""
    from tests.exporters import text_models

    texts, labels = text_models.toy_data(120, seed=7)
    path = tmp_path_factory.mktemp("toy") / "toy.csv"
    path.write_text("text,label\n" + "".join(
        f"{text},{text_models.LABELS[label]}\n" for text, label in zip(texts, labels)))
    return str(path)
