"""The format registry: one record per format, read by export and its users."""

import dataclasses

import numpy as np
import pytest

from keras_lowrank import exporters
from keras_lowrank.exporters import ExportFormat
from keras_lowrank.exporters import export_model
from keras_lowrank.exporters import formats
from keras_lowrank.exporters import get_format
from keras_lowrank.exporters import onnx as onnx_format
from keras_lowrank.exporters import saved_model as saved_model_format
from keras_lowrank.exporters import tflite as tflite_format
from tests.exporters.helpers import keras_call
from tests.exporters.helpers import max_abs_diff
from tests.exporters.helpers import runtime_inputs


def test_each_format_module_defines_its_record():
    assert formats.all_formats() == (
        saved_model_format.FORMAT, tflite_format.FORMAT, onnx_format.FORMAT
    )
    assert [get_format(name) for name in formats.FORMATS] == list(
        formats.all_formats()
    )


def test_the_public_lists_come_from_the_registry():
    assert exporters.FORMATS == export_model.FORMATS == (
        "saved_model", "tflite", "onnx"
    )
    assert exporters.QUANTIZE_MODES == export_model.QUANTIZE_MODES == (
        None, "float16", "dynamic", "int8", "int16x8"
    )
    assert tflite_format.QUANTIZE_MODES == exporters.QUANTIZE_MODES


def test_records():
    saved_model, tflite, onnx = formats.all_formats()
    assert (saved_model.directory, saved_model.suffix) == (True, "")
    assert (tflite.directory, tflite.artifact_name("model")) == (False, "model.tflite")
    assert (onnx.directory, onnx.artifact_name("model")) == (False, "model.onnx")
    assert [r.title for r in formats.all_formats()] == ["SavedModel", "LiteRT", "ONNX"]
    assert tflite.options == ("quantize", "allow_flex", "representative_data")
    assert onnx.options == ("opset", "quantize", "representative_data")
    assert saved_model.options == ()
    assert tflite.calibrated_modes == ("int8", "int16x8")
    assert tflite.quantize_modes_without_calibration == (None, "float16", "dynamic")
    assert onnx.quantize_modes == (None, "dynamic", "int8")
    assert onnx.calibrated_modes == ("int8",)
    assert onnx.quantize_modes_without_calibration == (None, "dynamic")
    assert saved_model.quantize_modes == (None,)
    assert tflite.metadata_kinds == ("text_classifier",)
    assert onnx.metadata_kinds == saved_model.metadata_kinds == ()
    assert formats.formats_with_option("opset") == ("onnx",)
    assert formats.formats_with_option("quantize") == ("tflite", "onnx")
    assert formats.calibrated_modes() == ("int8", "int16x8")
    assert tflite.runner is tflite_format.TFLiteRunner
    assert onnx.runner is onnx_format.ONNXRunner
    assert saved_model.runner is saved_model_format.SavedModelRunner
    with pytest.raises(dataclasses.FrozenInstanceError):
        tflite.suffix = ".lite"


@pytest.mark.parametrize("name", ["tf_lite", None, "", ["onnx"]])
def test_unknown_name_lists_the_supported_ones(name):
    with pytest.raises(ValueError, match=r"^Unrecognized format=.*\. Supported "
                       r"formats are: \['saved_model', 'tflite', 'onnx'\]$"):
        get_format(name)


def test_the_replaceable_folder_is_an_earlier_saved_model(tmp_path):
    replaceable = get_format("saved_model").replaceable
    assert not replaceable(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert replaceable(str(tmp_path))
    assert get_format("onnx").replaceable is None


def test_tflite_notes_name_flex_ops():
    notes = get_format("tflite").notes(("FULLY_CONNECTED", "FlexErf"))
    assert notes == ("Flex ops FlexErf: the artifact needs the Flex delegate: "
                     "link org.tensorflow:tensorflow-lite-select-tf-ops (Android)"
                     " or TensorFlowLiteSelectTfOps (iOS).",)
    assert get_format("onnx").notes(("MatMul",)) == ()
    assert get_format("tflite").unverifiable(RuntimeError("no Flex delegate"))
    assert get_format("tflite").unverifiable(RuntimeError("other")) is None


@pytest.mark.parametrize("format", ["saved_model", "tflite", "onnx"])
def test_a_records_runner_runs_an_exported_artifact(models, exported, format):
    # What evaluation uses: the artifact, in its runtime, by format name.
    runner = get_format(format).runner(exported("bert", format).path)
    inputs = runtime_inputs("bert", 4)
    assert max_abs_diff(keras_call(models["bert"], "bert", inputs),
                        runner(inputs)) <= 1e-4
    assert runner.output_names == ("output_0",)
    assert runner.runtime


@pytest.mark.parametrize("kwargs,message", [
    (dict(options=("precision",)), r"Unrecognized options \['precision'\]"),
    (dict(quantize_modes=("float16",)), r"must start with None"),
    (dict(quantize_modes=(None, "float16")), r"'quantize' must be among its "
     r"options"),
    (dict(options=("quantize",), quantize_modes=(None, "float16"),
          calibrated_modes=("int8",)), r"must be quantize modes \[None, "
     r"'float16'\]\. Received: \['int8'\]"),
])
def test_a_record_is_checked_when_made(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExportFormat(name="x", title="X", directory=False, suffix=".x",
                     write=np.save, runner=np.load, **kwargs)
