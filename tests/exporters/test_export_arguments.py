"""Argument checks: each fails before anything is written."""

import os

import numpy as np
import pytest

from keras_lowrank.exporters import export
from keras_lowrank.exporters import validate_export_arguments


def _assert_nothing_written(folder):
    assert os.listdir(folder) == []


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(format="tf_lite"), r"Unrecognized format='tf_lite'\. Supported "
         r"formats are: \['saved_model', 'tflite', 'onnx'\]"),
        (dict(format=None), r"Unrecognized format=None"),
        (dict(format="tflite", quantize="int2"), r"Unrecognized quantize='int2'\. "
         r"Supported values are: \[None, 'float16', 'dynamic', 'int8', 'int16x8', "
         r"'int4'\]"),
        (dict(format="tflite", quantize="int4"), r"format='tflite' supports "
         r"quantize in \[None, 'float16', 'dynamic', 'int8', 'int16x8'\]\. "
         r"Received: quantize='int4'"),
        (dict(format="onnx", quantize="float16"), r"format='onnx' supports "
         r"quantize in \[None, 'dynamic', 'int8'\]\. Received: quantize='float16'"),
        (dict(format="saved_model", quantize="float16"), r"`quantize` only applies "
         r"to format in \['tflite', 'onnx'\]\. Received: quantize='float16' with "
         r"format='saved_model'"),
        (dict(format="tflite", quantize="int8"), r"Received: "
         r"calibration_data=None, representative_data=None"),
        (dict(format="onnx", quantize="int8"), r"calibrates activations on "
         r"`calibration_data`"),
        (dict(format="tflite", representative_data=[{}]), r"`representative_data` "
         r"is only used with quantize in \['int8', 'int16x8'\]\. Received: "
         r"quantize=None"),
        (dict(format="onnx", calibration_data=["a"], quantize="dynamic"),
         r"`calibration_data` is only used with quantize='int8'\. Received: "
         r"quantize='dynamic'"),
        (dict(format="onnx", allow_flex=True), r"`allow_flex` only applies to "
         r"format='tflite'"),
        (dict(format="tflite", opset=13), r"`opset` only applies to "
         r"format='onnx'\. Received: opset=13 with format='tflite'"),
        (dict(format="onnx", opset=0), r"positive integer\. Received: opset=0"),
        (dict(format="onnx", opset="15"), r"Received: opset='15'"),
        (dict(format="onnx", atol=-1.0), r"finite number >= 0\. Received: "
         r"atol=-1\.0"),
        (dict(format="onnx", atol=float("nan")), r"Received: atol=nan"),
    ],
)
def test_invalid_arguments_raise_and_write_nothing(models, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export(models["dense"], tmp_path / "model.out", **kwargs)
    _assert_nothing_written(tmp_path)


@pytest.mark.parametrize("model, received", [
    (None, r"model=NoneType None"),
    ("model.keras", r"model=str 'model\.keras'"),
])
def test_export_needs_a_keras_model(tmp_path, model, received):
    with pytest.raises(TypeError, match=r"^export expected a keras\.Model "
                       r"\(Functional, Sequential, or a keras-hub Backbone or "
                       r"Task\)\. Received: " + received + r"\. Pass the model "
                       r"itself \(a saved one: keras\.saving\.load_model\(path\)\)\.$"):
        export(model, tmp_path / "model.tflite", "tflite")
    _assert_nothing_written(tmp_path)


def test_a_layer_is_not_a_model(tmp_path):
    import keras

    layer = keras.layers.Dense(2, name="head")
    with pytest.raises(TypeError, match=r"Received: model=Dense 'head'\."):
        export(layer, tmp_path / "m.onnx", "onnx")
    _assert_nothing_written(tmp_path)


def test_validation_needs_no_model(tmp_path):
    with pytest.raises(ValueError, match="Unrecognized format='pt'"):
        validate_export_arguments(tmp_path / "x", "pt")
    validate_export_arguments(tmp_path / "x.tflite", "tflite", quantize="dynamic")


def test_saved_model_path_must_not_be_a_file(models, tmp_path):
    path = tmp_path / "model"
    path.write_text("keep me")
    with pytest.raises(ValueError, match="writes a folder, but .* existing file"):
        export(models["dense"], path, "saved_model")
    assert path.read_text() == "keep me"


def test_file_format_path_must_not_be_a_folder(models, tmp_path):
    with pytest.raises(ValueError, match="writes a file, but .* existing folder"):
        export(models["dense"], tmp_path, "onnx")


def test_sample_inputs_with_wrong_names(models, tmp_path):
    with pytest.raises(ValueError, match=r"exactly the model's inputs \['features'\]"
                       r"\. Received: keys=\['x'\]"):
        export(models["dense"], tmp_path / "m.onnx", "onnx",
               sample_inputs={"x": np.zeros((2, 6))})
    _assert_nothing_written(tmp_path)


def test_sample_inputs_with_wrong_shape(models, tmp_path):
    with pytest.raises(ValueError, match=r"sample_inputs\['features'\]` does not "
                       r"fit the input shape \(None, 6\)\. Received: shape=\(2, 5\)"):
        export(models["dense"], tmp_path / "m.onnx", "onnx",
               sample_inputs=np.zeros((2, 5)))
    _assert_nothing_written(tmp_path)


def test_representative_data_is_checked_before_converting(models, tmp_path):
    with pytest.raises(ValueError, match=r"representative_data\['token_ids'\]"):
        export(models["bert"], tmp_path / "m.tflite", "tflite", quantize="int8",
               representative_data=[{"token_ids": np.zeros((1, 4, 2)),
                                     "padding_mask": np.ones((1, 4)),
                                     "segment_ids": np.zeros((1, 4))}])
    _assert_nothing_written(tmp_path)


def test_verify_false_writes_without_running(models, tmp_path):
    report = export(models["dense"], tmp_path / "m.tflite", "tflite", verify=False)
    assert not report.verified
    assert report.max_abs_diff is None and report.latency_ms is None
    assert report.batch_sizes_checked == ()
    assert report.size_bytes == os.path.getsize(tmp_path / "m.tflite")
    assert "max abs diff:  not checked" in str(report)


def test_missing_converter_names_the_pip_command(models, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import now fails
    with pytest.raises(ImportError, match=r"`tf2onnx` is required to export ONNX "
                       r"but is not installed\. Install it with: pip install "
                       r"'tf2onnx==1\.17\.0'"):
        export(models["dense"], tmp_path / "m.onnx", "onnx")
    assert os.listdir(tmp_path) == []


# === Sample inputs the model cannot take: refused before Keras runs ===


def _bert_rows(length=16, **overrides):
    rows = {
        "token_ids": np.ones((2, length), "int32"),
        "padding_mask": np.ones((2, length), "int32"),
        "segment_ids": np.zeros((2, length), "int32"),
    }
    return {**rows, **overrides}


def test_token_ids_beyond_the_vocabulary(models, tmp_path):
    ids = np.ones((2, 16), "int32")
    ids[1, 3] = 500
    with pytest.raises(ValueError, match=r"^`sample_inputs\['token_ids'\]` holds "
                       r"ids outside the vocabulary: the model's vocabulary_size "
                       r"is 120, so ids must be in \[0, 119\]\. Received: largest "
                       r"id 500$"):
        export(models["bert"], tmp_path / "m.onnx", "onnx",
               sample_inputs=_bert_rows(token_ids=ids))
    _assert_nothing_written(tmp_path)


def test_the_first_id_past_the_vocabulary_is_refused(models, tmp_path):
    # A keras-hub backbone as the model: its own vocabulary_size.
    ids = np.full((1, 8), 120, "int32")
    with pytest.raises(ValueError, match=r"ids must be in \[0, 119\]\. Received: "
                       r"largest id 120$"):
        export(models["gpt2"], tmp_path / "m.tflite", "tflite", sample_inputs={
            "token_ids": ids, "padding_mask": np.ones((1, 8), "int32")})
    _assert_nothing_written(tmp_path)


def test_negative_token_ids(models, tmp_path):
    ids = np.ones((2, 16), "int32")
    ids[0, 0] = -3
    with pytest.raises(ValueError, match=r"^`sample_inputs\['token_ids'\]` holds "
                       r"negative ids: the model's vocabulary_size is 120, so ids "
                       r"must be in \[0, 119\]\. Received: smallest id -3$"):
        export(models["bert"], tmp_path / "m.onnx", "onnx",
               sample_inputs=_bert_rows(token_ids=ids))
    _assert_nothing_written(tmp_path)


def test_sequences_longer_than_the_model_takes(models, tmp_path):
    with pytest.raises(ValueError, match=r"^`sample_inputs\['token_ids'\]` holds "
                       r"sequences longer than the model's max_sequence_length="
                       r"32: the length must be 1 to 32\. Received: length 40 "
                       r"\(shape=\(2, 40\)\)$"):
        export(models["bert"], tmp_path / "m.tflite", "tflite",
               sample_inputs=_bert_rows(length=40))
    _assert_nothing_written(tmp_path)


def test_representative_data_beyond_the_vocabulary(models, tmp_path):
    rows = _bert_rows(length=8, token_ids=np.full((2, 8), 121, "int32"))
    with pytest.raises(ValueError, match=r"^`representative_data\['token_ids'\]` "
                       r"holds ids outside the vocabulary: .* Received: largest "
                       r"id 121$"):
        export(models["bert"], tmp_path / "m.tflite", "tflite", quantize="int8",
               representative_data=[rows])
    _assert_nothing_written(tmp_path)


def test_ids_and_lengths_within_range_pass(models, tmp_path):
    ids = np.full((2, 32), 119, "int32")
    ids[:, 0] = 0
    report = export(models["bert"], tmp_path / "m.onnx", "onnx",
                    sample_inputs=_bert_rows(length=32, token_ids=ids))
    assert report.verified and report.max_abs_diff <= 1e-4
