import os

import numpy as np
import pytest
import safetensors.numpy

import keras_lowrank as klr
from keras_lowrank.on_device.adapter_writer import write_adapter_file
from tests import tiny_models as tiny


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny adapted classifier, its save_adapters file, and artifact-like metadata."""
    base = tiny.bert_classifier()
    model = tiny.randomize_adapter(klr.add_adapters(base, targets=["query"], rank=2), "default", 0)
    path = str(tmp_path_factory.mktemp("saved") / "keras.safetensors")
    klr.save_adapters(model, path)
    tensors = safetensors.numpy.load_file(path)
    metadata = {
        "factors": [{"key": k, "name": f"factor_{i}", "shape": list(v.shape)}
                    for i, (k, v) in enumerate(sorted(tensors.items()))],
        "adapter_metadata": klr.read_adapter_metadata(path),
    }
    return base, model, path, tensors, metadata


def test_file_equals_save_adapters_byte_for_byte(saved, tmp_path):
    base, model, path, tensors, metadata = saved
    out = str(tmp_path / "device.safetensors")
    size = write_adapter_file(tensors, metadata, out)
    with open(path, "rb") as a, open(out, "rb") as b:
        assert a.read() == b.read()
    assert size == os.path.getsize(out)
    loaded = klr.load_adapters(base, out)
    x = tiny.bert_inputs()
    assert np.max(np.abs(loaded.predict(x, verbose=0) - model.predict(x, verbose=0))) == 0.0
    assert sorted(os.listdir(tmp_path)) == ["device.safetensors"]


def test_failing_write_leaves_nothing_and_keeps_an_earlier_file(saved, tmp_path, monkeypatch):
    _, _, _, tensors, metadata = saved
    out = tmp_path / "device.safetensors"

    def broken(tensors, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        write_adapter_file(tensors, metadata, str(out))
    assert os.listdir(tmp_path) == []
    out.write_bytes(b"earlier")
    with pytest.raises(OSError, match="disk full"):
        write_adapter_file(tensors, metadata, str(out))
    assert os.listdir(tmp_path) == ["device.safetensors"] and out.read_bytes() == b"earlier"


def test_nan_is_refused_naming_the_tensor(saved, tmp_path):
    _, _, _, tensors, metadata = saved
    key = metadata["factors"][0]["key"]
    bad = {**tensors, key: np.full(tensors[key].shape, np.inf, "float32")}
    with pytest.raises(ValueError, match=rf"Factor '{key}' holds {bad[key].size} NaN or Inf"):
        write_adapter_file(bad, metadata, str(tmp_path / "device.safetensors"))
    assert os.listdir(tmp_path) == []
