"""Failed verification: an error with the numbers, and no artifact left."""

import os

import numpy as np
import pytest

from keras_lowrank.exporters import DEFAULT_TOLERANCES
from keras_lowrank.exporters import ExportVerificationError
from keras_lowrank.exporters import export
from keras_lowrank.exporters import onnx as onnx_format
from keras_lowrank.exporters import saved_model as saved_model_format
from keras_lowrank.exporters.verification import output_difference
from keras_lowrank.exporters.verification import verify


def test_float16_with_zero_tolerance_fails_and_keeps_the_old_file(models, tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"an earlier artifact")
    with pytest.raises(ExportVerificationError) as info:
        export(models["bert"], path, "tflite", quantize="float16", atol=0)
    error = info.value
    assert error.tolerance == 0.0
    assert 1e-8 < error.max_abs_diff < 1e-2  # float16 weights: small, not zero
    assert error.format == "tflite"
    assert error.output_name == "output_0"
    assert f"max abs diff {error.max_abs_diff:.3g}" in str(error)
    assert "exceeds the tolerance 0" in str(error)
    assert "The artifact was removed" in str(error)
    assert path.read_bytes() == b"an earlier artifact"
    assert os.listdir(tmp_path) == ["model.tflite"]


def test_wrong_runtime_output_removes_a_new_onnx_file(models, tmp_path, monkeypatch):
    call = onnx_format.ONNXRunner.__call__

    def off_by_a_little(self, inputs):
        return {k: v + 1e-3 for k, v in call(self, inputs).items()}

    monkeypatch.setattr(onnx_format.ONNXRunner, "__call__", off_by_a_little)
    with pytest.raises(ExportVerificationError, match=r"max abs diff 0\.001 .*"
                       r"exceeds the tolerance 0\.0001") as info:
        export(models["dense"], tmp_path / "model.onnx", "onnx")
    assert info.value.max_abs_diff == pytest.approx(1e-3, rel=1e-3)
    assert os.listdir(tmp_path) == []


def test_nan_output_fails_and_keeps_an_earlier_saved_model(
    models, tmp_path, monkeypatch
):
    path = tmp_path / "model"
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"earlier")
    call = saved_model_format.SavedModelRunner.__call__

    def nan(self, inputs):
        return {k: np.full_like(v, np.nan) for k, v in call(self, inputs).items()}

    monkeypatch.setattr(saved_model_format.SavedModelRunner, "__call__", nan)
    with pytest.raises(ExportVerificationError, match="max abs diff inf"):
        export(models["gpt2"], path, "saved_model")
    assert os.listdir(tmp_path) == ["model"]
    assert os.listdir(path) == ["saved_model.pb"]


def test_atol_loosens_the_check(exported):
    report = exported("bert", "tflite", quantize="float16", atol=0.5)
    assert report.tolerance == 0.5
    assert report.max_abs_diff < 1e-3


def test_output_difference_numbers():
    expected = {"a": np.array([[1.0, 2.0]]), "b": np.array([0.5])}
    actual = {"a": np.array([[1.0, 2.25]]), "b": np.array([0.0])}
    assert output_difference(expected, actual, format="x", batch_size=1) == (0.5, "b")


def test_output_difference_rejects_other_names_and_shapes():
    with pytest.raises(ExportVerificationError, match=r"outputs \['c'\], Keras has"):
        output_difference({"a": np.zeros(1)}, {"c": np.zeros(1)}, format="x",
                          batch_size=1)
    with pytest.raises(ExportVerificationError, match=r"shape \(2,\); Keras gives"):
        output_difference({"a": np.zeros(1)}, {"a": np.zeros(2)}, format="x",
                          batch_size=1)


def test_verify_reports_the_worst_batch():
    batches = [{"x": np.zeros((1, 2))}, {"x": np.zeros((8, 2))}]

    def runtime(batch):
        return {"y": batch["x"] + (0.0 if len(batch["x"]) == 1 else 2e-5)}

    diff, sizes = verify(runtime, lambda b: {"y": b["x"]}, batches, format="x",
                         tolerance=1e-4)
    assert diff == pytest.approx(2e-5)
    assert sizes == (1, 8)
    with pytest.raises(ExportVerificationError, match=r"batch 1: 0, batch 8: 2e-05"):
        verify(runtime, lambda b: {"y": b["x"]}, batches, format="x",
               tolerance=1e-5)


def test_default_tolerances():
    assert DEFAULT_TOLERANCES == {
        None: 1e-4, "float16": 1e-2, "dynamic": 5e-2, "int8": 1e-1
    }
