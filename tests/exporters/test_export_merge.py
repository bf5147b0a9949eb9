"""`export` merges adapters first and verifies against the model as given."""

import keras
import numpy as np
import pytest

from keras_lowrank.exporters import ExportVerificationError
from keras_lowrank.exporters import export
from keras_lowrank.exporters import artifact_checks
from tests.exporters.helpers import dense_model


def _fake_merge(monkeypatch, merge_adapters):
    monkeypatch.setattr(artifact_checks, "merge_adapters", merge_adapters)


def _copy(model, scale=1.0):
    clone = keras.models.clone_model(model)
    clone.set_weights([w * scale for w in model.get_weights()])
    return clone


def test_the_merged_model_is_exported(monkeypatch, tmp_path):
    model = dense_model()
    calls = []

    def merge_adapters(given):
        calls.append(given)
        return _copy(given)  # what merging a model without adapters gives

    _fake_merge(monkeypatch, merge_adapters)
    report = export(model, tmp_path / "m.onnx", "onnx")
    assert calls == [model]
    assert report.max_abs_diff <= 1e-6


def test_a_wrong_merge_fails_verification(monkeypatch, tmp_path):
    # A merge that changes the function is caught: the reference is the
    # model as given, not the merged one.
    _fake_merge(monkeypatch, lambda given: _copy(given, scale=1.01))
    with pytest.raises(ExportVerificationError, match="exceeds the tolerance"):
        export(dense_model(), tmp_path / "m.tflite", "tflite")
    assert list(tmp_path.iterdir()) == []


def test_the_models_weights_are_not_changed(tmp_path):
    model = dense_model()
    before = [np.copy(w) for w in model.get_weights()]
    export(model, tmp_path / "m.tflite", "tflite", quantize="dynamic")
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
