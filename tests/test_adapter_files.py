import json
import os
import struct

import numpy as np
import pytest

import keras_lowrank as klr
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


def test_load_refuses_a_model_with_adapters_anywhere(base, tmp_path):
    path = tmp_path / "a.safetensors"
    klr.save_adapters(klr.add_adapters(base, targets=["query"], rank=2), path)
    on_keys = klr.add_adapters(base, targets=["key"], rank=2)
    with pytest.raises(
        ValueError,
        match=r"already holds adapters at \['transformer_layer_0/self_attention_layer/key', "
        r"'transformer_layer_1/self_attention_layer/key'\]; adapter files load onto the base model",
    ):
        klr.load_adapters(on_keys, path)


def _rewrite_metadata(path, target, change):
    """Copies the adapter file at `path` to `target` with edited metadata."""
    from safetensors.numpy import load_file
    from safetensors.numpy import save_file

    metadata = klr.read_adapter_metadata(path)
    tensors = load_file(path)
    change(metadata, tensors)
    save_file(tensors, target, metadata={"keras_lowrank": json.dumps(metadata)})
    return target


def test_load_errors_leave_the_base_model_unchanged(base, trained, tmp_path):
    path = tmp_path / "a.safetensors"
    klr.save_adapters(trained, path)
    weights, flags = tiny.weights_of(base), tiny.flags_of(base)

    def kind(metadata, tensors):
        metadata["adapters"]["pooled_dense"]["kind"] = "LoRAEmbedding"

    def head_weight(metadata, tensors):
        del tensors["logits/bias"]

    def head_shape(metadata, tensors):
        tensors["logits/bias"] = np.zeros(3, "float32")

    def version(metadata, tensors):
        metadata["format"] = "keras_lowrank.adapters/99"

    cases = [
        (kind, r"Layer 'pooled_dense' is a Dense; the file has a LoRAEmbedding adapter for it"),
        (head_weight, r"The adapter file lacks weight 'logits/bias'"),
        (head_shape, r"Shape mismatch at layer 'logits' \(bias\): the file has \(3,\), the model has \(2,\)"),
        (version, r"has adapter format 'keras_lowrank.adapters/99'; this version of "
                  r"keras_lowrank reads 'keras_lowrank.adapters/1'"),
    ]
    for change, message in cases:
        edited = _rewrite_metadata(path, tmp_path / f"{change.__name__}.safetensors", change)
        with pytest.raises(ValueError, match=message):
            klr.load_adapters(base, edited)
    assert all(np.array_equal(a, b) for a, b in zip(tiny.weights_of(base), weights))
    assert tiny.flags_of(base) == flags
    assert klr.adapter_paths(base) == []


def test_safetensors_file_without_our_metadata(base, tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"x": np.zeros(2, "float32")}, path)
    with pytest.raises(ValueError, match=r"is a safetensors file but not a keras_lowrank adapter file"):
        klr.load_adapters(base, path)


def test_causal_lm_adapter_file_holds_only_the_adapters(tmp_path):
    lm = tiny.gpt2_causal_lm()
    adapted = klr.add_adapters(lm, targets="all-linear", rank=2)
    for w in adapted.trainable_weights:
        w.assign(np.random.default_rng(3).normal(size=w.shape).astype("float32") * 0.1)
    path = tmp_path / "lm.safetensors"
    klr.save_adapters(adapted, path)
    assert klr.read_adapter_metadata(path)["trainable_layers"] == []
    loaded = klr.load_adapters(lm, path)
    x = tiny.lm_inputs()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), adapted.predict(x, verbose=0))
