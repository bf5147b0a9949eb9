"""Verification: the tolerance rule, and failures that say the numbers and
leave no artifact."""

import os

import keras
import numpy as np
import pytest

from keras_lowrank.exporters import DEFAULT_TOLERANCES
from keras_lowrank.exporters import ExportVerificationError
from keras_lowrank.exporters import export
from keras_lowrank.exporters import artifact_checks
from keras_lowrank.exporters import onnx as onnx_format
from keras_lowrank.exporters import saved_model as saved_model_format
from keras_lowrank.exporters.verification import RELATIVE_TOLERANCES
from keras_lowrank.exporters.verification import check_finite
from keras_lowrank.exporters.verification import output_difference
from keras_lowrank.exporters.verification import output_scale
from keras_lowrank.exporters.verification import tolerance_for
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

    diff, tolerance, sizes = verify(runtime, lambda b: {"y": b["x"]}, batches,
                                    format="x")
    assert diff == pytest.approx(2e-5)
    assert tolerance == 1e-4
    assert sizes == (1, 8)
    with pytest.raises(ExportVerificationError, match=r"batch 1: 0, batch 8: 2e-05"):
        verify(runtime, lambda b: {"y": b["x"]}, batches, format="x", atol=1e-5)


def test_default_tolerances():
    assert DEFAULT_TOLERANCES == {
        None: 1e-4, "float16": 1e-2, "dynamic": 5e-2, "int8": 1e-1, "int16x8": 5e-2
    }
    assert RELATIVE_TOLERANCES == {
        None: 0.0, "float16": 1e-2, "dynamic": 0.25, "int8": 0.25, "int16x8": 0.25
    }
    # Every quantize mode of every format has a tolerance.
    from keras_lowrank.exporters import QUANTIZE_MODES

    assert set(DEFAULT_TOLERANCES) == set(RELATIVE_TOLERANCES) == set(QUANTIZE_MODES)


@pytest.mark.parametrize("quantize,scale,atol,expected", [
    (None, 1000.0, None, 1e-4),  # float32: absolute, whatever the scale
    ("float16", 0.5, None, 1e-2),  # the floor under small outputs
    ("float16", 30.0, None, 0.3),
    ("dynamic", 0.1, None, 5e-2),
    ("dynamic", 1.92, None, 0.48),  # the fine-tuned demo classifier
    ("int8", 0.2, None, 1e-1),
    ("int8", 10.0, None, 2.5),
    ("dynamic", 1.92, 0.01, 0.01),  # a given atol is used as is
    (None, 0.0, 0, 0.0),
])
def test_tolerance_rule(quantize, scale, atol, expected):
    assert tolerance_for(quantize, atol, scale) == pytest.approx(expected)


def test_output_scale_is_the_largest_finite_absolute_output():
    outputs = [{"a": np.array([[1.0, -3.0]]), "b": np.array([np.nan])},
               {"a": np.array([[2.0, np.inf]]), "b": np.array([-0.5])}]
    assert output_scale(outputs) == 3.0
    assert output_scale([{"a": np.zeros((0, 2))}]) == 0.0


def _scaled_outputs(scale, error):
    batches = [{"x": np.ones((1, 2))}, {"x": np.ones((8, 2))}]
    return batches, (lambda b: {"y": scale * b["x"]}), (
        lambda b: {"y": scale * b["x"] + error})


def test_quantized_tolerance_scales_with_the_keras_outputs():
    batches, keras_model, runtime = _scaled_outputs(scale=-100.0, error=10.0)
    diff, tolerance, _ = verify(runtime, keras_model, batches, format="tflite",
                                quantize="dynamic")
    assert (diff, tolerance) == (pytest.approx(10.0), pytest.approx(25.0))
    with pytest.raises(ExportVerificationError, match=r"exceeds the tolerance "
                       r"0\.0001 \(the default for quantize=None\)"):
        verify(runtime, keras_model, batches, format="tflite")


def test_failed_scaled_check_names_the_diff_the_tolerance_and_the_rule():
    batches, keras_model, runtime = _scaled_outputs(scale=100.0, error=30.0)
    with pytest.raises(ExportVerificationError) as info:
        verify(runtime, keras_model, batches, format="tflite", quantize="dynamic")
    assert info.value.max_abs_diff == pytest.approx(30.0)
    assert info.value.tolerance == pytest.approx(25.0)
    assert ("max abs diff 30 on output 'y' (batch 1: 30, batch 8: 30) exceeds "
            "the tolerance 25 (the default for quantize='dynamic': max(0.05, "
            "0.25 x largest |Keras output| 100))") in str(info.value)


def _large_output_model():
    """Logits up to ~100: dynamic range quantization moves them by ~0.6."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((32,), name="features")
    hidden = keras.layers.Dense(32, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(4, name="scores")(hidden)
    model = keras.Model(inputs, outputs)
    kernel, bias = model.get_layer("scores").get_weights()
    model.get_layer("scores").set_weights([40.0 * kernel, bias])
    rows = np.random.default_rng(0).standard_normal((8, 32)).astype("float32")
    return model, rows


def test_dynamic_export_of_large_outputs_passes_with_a_scaled_tolerance(tmp_path):
    model, rows = _large_output_model()
    scale = float(np.max(np.abs(model(rows))))
    report = export(model, tmp_path / "m.tflite", "tflite", quantize="dynamic",
                    sample_inputs=rows)
    assert scale > 50
    assert report.tolerance == pytest.approx(0.25 * scale)
    # The absolute floor alone would refuse this artifact.
    assert DEFAULT_TOLERANCES["dynamic"] < report.max_abs_diff < 0.02 * scale


def test_a_corrupted_artifact_fails_the_scaled_tolerance(tmp_path, monkeypatch):
    model, rows = _large_output_model()

    def transposed_hidden_kernel(given):
        # A layout bug: the square hidden kernel written transposed.
        clone = keras.models.clone_model(given)
        clone.set_weights(given.get_weights())
        kernel, bias = clone.get_layer("hidden").get_weights()
        clone.get_layer("hidden").set_weights([kernel.T, bias])
        return clone

    monkeypatch.setattr(artifact_checks, "merge_adapters", transposed_hidden_kernel)
    with pytest.raises(ExportVerificationError, match=r"quantize='dynamic'") as info:
        export(model, tmp_path / "m.tflite", "tflite", quantize="dynamic",
               sample_inputs=rows)
    assert info.value.max_abs_diff > 2 * info.value.tolerance
    assert os.listdir(tmp_path) == []


# === Non-finite values are never a match ===


def _nan_model(*nan_outputs):
    """Finite weights; the named outputs are log(-1 - |x|), NaN everywhere.

    (NaN weights are refused earlier, by `merge_adapters`.)
    """
    keras.utils.set_random_seed(11)
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    outputs = {}
    for name, units in (("scores", 3), ("value", 1)):
        output = keras.layers.Dense(units, name=name)(hidden)
        if name in nan_outputs:
            output = keras.layers.Lambda(
                lambda t: keras.ops.log(-1.0 - keras.ops.abs(t)), name=f"nan_{name}"
            )(output)
        outputs[name] = output
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("format,filename", [("tflite", "m.tflite"),
                                             ("onnx", "m.onnx")])
def test_all_nan_keras_outputs_fail_before_anything_is_written(
    tmp_path, format, filename
):
    # Every output is NaN: NaN == NaN must not pass.
    model = _nan_model("scores", "value")
    path = tmp_path / filename
    path.write_bytes(b"an earlier artifact")
    with pytest.raises(ExportVerificationError) as info:
        export(model, path, format)
    message = str(info.value)
    assert (
        f"Keras gives non-finite outputs, which no exported {format} model "
        "can be verified against: output 'scores': 27 of 27 values (27 NaN, "
        "0 inf); output 'value': 9 of 9 values (9 NaN, 0 inf) (batch sizes 1 "
        "and 8)."
    ) in message
    assert message.endswith(f"Nothing was written to {str(path)!r}.")
    assert info.value.output_name == "scores"
    assert info.value.max_abs_diff is None
    assert path.read_bytes() == b"an earlier artifact"
    assert os.listdir(tmp_path) == [filename]


def test_one_non_finite_keras_output_is_named_with_its_count(tmp_path):
    model = _nan_model("value")
    with pytest.raises(ExportVerificationError, match=r"non-finite outputs, "
                       r"which no exported onnx model can be verified "
                       r"against: output 'value': 9 of 9 values \(9 NaN, "
                       r"0 inf\) \(batch sizes 1 and 8\)") as info:
        export(model, tmp_path / "m.onnx", "onnx")
    assert "'scores'" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_artifact_nan_where_keras_is_finite_fails(models, tmp_path, monkeypatch):
    from keras_lowrank.exporters import tflite as tflite_format

    call = tflite_format.TFLiteRunner.__call__

    def one_nan(self, inputs):
        outputs = call(self, inputs)
        outputs["value"] = outputs["value"].copy()
        outputs["value"][0, 0] = np.nan
        return outputs

    monkeypatch.setattr(tflite_format.TFLiteRunner, "__call__", one_nan)
    with pytest.raises(ExportVerificationError) as info:
        export(models["dense"], tmp_path / "m.tflite", "tflite", atol=1e9)
    assert ("max abs diff inf on output 'value' (batch 1: inf, batch 8: inf): "
            "it gives 2 non-finite values (NaN or inf) where Keras is finite, "
            "which no tolerance accepts.") in str(info.value)
    assert info.value.max_abs_diff == np.inf
    assert os.listdir(tmp_path) == []


def test_matching_non_finite_values_are_not_a_match():
    for value in (np.nan, np.inf, -np.inf):
        expected = {"a": np.array([1.0, value])}
        actual = {"a": np.array([1.0, value])}
        assert output_difference(expected, actual, format="x",
                                 batch_size=1) == (np.inf, "a")


def test_verify_refuses_non_finite_keras_outputs():
    batches = [{"x": np.zeros((1, 2))}, {"x": np.zeros((8, 2))}]

    def keras_model(batch):
        y = np.zeros_like(batch["x"])
        y[0, 0], y[0, 1] = np.inf, np.nan
        return {"y": y, "z": batch["x"]}

    with pytest.raises(ExportVerificationError, match=r"output 'y': 4 of 18 "
                       r"values \(2 NaN, 2 inf\) \(batch sizes 1 and 8\)\. "
                       r"Fix the model") as info:
        verify(keras_model, keras_model, batches, format="x")
    assert "'z'" not in str(info.value)
    with pytest.raises(ExportVerificationError, match=r"output 'y': 4 of 18"):
        check_finite([keras_model(b) for b in batches], [1, 8], format="x")
