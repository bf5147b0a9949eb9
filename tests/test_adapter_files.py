import json
import os
import struct

import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank import adapter_files
from tests import tiny_models as tiny


@pytest.fixture
def base():
    return tiny.bert_classifier()


@pytest.fixture
def trained(base):
    model = klr.add_adapters(base, targets="all-linear", rank=2)
    rng = np.random.default_rng(1)
    for w in model.trainable_weights:
        w.assign(rng.normal(size=w.shape).astype("float32") * 0.2)
    return model


def test_round_trip_is_bit_identical(base, trained, tmp_path):
    path = tmp_path / "adapters.safetensors"
    size = klr.save_adapters(trained, path)
    assert size == os.path.getsize(path)
    loaded = klr.load_adapters(base, path)
    x = tiny.bert_inputs()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trained.predict(x, verbose=0))
    assert klr.adapter_paths(loaded) == klr.adapter_paths(trained)
    assert klr.parameter_counts(loaded) == klr.parameter_counts(trained)
    assert {w.path for w in loaded.trainable_weights} == {w.path for w in trained.trainable_weights}


def test_file_holds_only_adapters_and_head_keyed_by_path(trained, tmp_path):
    path = tmp_path / "a.safetensors"
    klr.save_adapters(trained, path)
    from safetensors.numpy import load_file

    keys = set(load_file(path))
    assert "transformer_layer_1/self_attention_layer/value/lora_a" in keys
    assert "pooled_dense/lora_b" in keys
    assert {"logits/kernel", "logits/bias"} <= keys
    assert not any(k.endswith("/kernel") and "logits" not in k for k in keys)
    # 13 adapters x 2 factors + the head's 2 weights.
    assert len(keys) == 13 * 2 + 2
    meta = klr.read_adapter_metadata(path)
    assert meta["adapters"]["pooled_dense"]["rank"] == 2
    assert meta["trainable_layers"] == ["logits"]
    assert meta["config"]["targets"] == "all-linear"


def test_file_is_plain_safetensors_not_pickle(trained, tmp_path):
    path = tmp_path / "a.safetensors"
    klr.save_adapters(trained, path)
    raw = path.read_bytes()
    (header_size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_size])
    assert "keras_lowrank" in header["__metadata__"]
    assert b"\x80\x04" not in raw[:2]  # no pickle protocol marker


def test_interrupted_save_keeps_the_earlier_file(trained, tmp_path, monkeypatch):
    path = tmp_path / "a.safetensors"
    klr.save_adapters(trained, path)
    before = path.read_bytes()
    import safetensors.numpy

    def broken(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", broken)
    with pytest.raises(KeyboardInterrupt):
        klr.save_adapters(trained, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors"]


def test_shape_mismatch_names_layer_and_both_shapes(trained, tmp_path):
    path = tmp_path / "a.safetensors"
    klr.save_adapters(trained, path)
    other = tiny.bert_classifier()
    wider = type(other)(
        backbone=type(other.backbone)(
            vocabulary_size=tiny.VOCAB, num_layers=2, num_heads=2, hidden_dim=24,
            intermediate_dim=32, max_sequence_length=tiny.SEQ),
        num_classes=2, preprocessor=None)
    with pytest.raises(ValueError, match=r"Shape mismatch at layer 'transformer_layer_0/self_attention_layer/query' \(lora_a\): the file has \(16, 2\), the model's layer needs \(24, 2\)"):
        klr.load_adapters(wider, path)


def test_missing_layer_and_missing_file(trained, tmp_path):
    path = tmp_path / "a.safetensors"
    klr.save_adapters(trained, path)
    one_layer = trained.__class__.__mro__[1](
        backbone=tiny.bert_classifier().backbone.__class__(
            vocabulary_size=tiny.VOCAB, num_layers=1, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=tiny.SEQ),
        num_classes=2, preprocessor=None)
    with pytest.raises(ValueError, match=r"adapter for layer 'transformer_layer_1/self_attention_layer/query', which model '.*' does not have"):
        klr.load_adapters(one_layer, path)
    with pytest.raises(FileNotFoundError, match=r"No adapter file at '.*nope.safetensors'"):
        klr.load_adapters(one_layer, tmp_path / "nope.safetensors")


def test_saving_a_model_without_adapters_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"holds no LoRA adapter to save"):
        klr.save_adapters(tiny.bert_classifier(), tmp_path / "a.safetensors")
    assert not (tmp_path / "a.safetensors").exists()


def test_load_refuses_an_adapted_model(trained, tmp_path):
    path = tmp_path / "a.safetensors"
    klr.save_adapters(trained, path)
    with pytest.raises(ValueError, match=r"already holds an adapter. Load adapters on the base model"):
        klr.load_adapters(trained, path)
