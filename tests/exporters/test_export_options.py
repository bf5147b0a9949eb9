"""`ExportOptions`: checked when made, and passed whole by `export`."""

import dataclasses
import os
import re

import numpy as np
import pytest

from keras_lowrank import exporters
from keras_lowrank.exporters import ExportOptions
from keras_lowrank.exporters import export
from keras_lowrank.exporters import export_model
from keras_lowrank.exporters import get_format
from keras_lowrank.exporters import validate_export_arguments

FIELDS = (
    "quantize", "sample_inputs", "verify", "allow_flex", "opset",
    "representative_data", "atol", "metadata", "labels", "calibration_data",
    "eval_data", "tokenizer", "runtime_adapters", "on_device_training",
)


def test_fields_and_defaults():
    assert ExportOptions.names() == FIELDS
    options = ExportOptions()
    assert options.verify is True and options.allow_flex is False
    assert options.runtime_adapters is False
    assert [getattr(options, name) for name in FIELDS if name not in (
        "verify", "allow_flex", "runtime_adapters")] == [None] * 11
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.quantize = "dynamic"


def test_every_field_is_documented_once():
    doc = ExportOptions.__doc__
    for name in FIELDS:
        assert len(re.findall(rf"^        {name}: ", doc, re.MULTILINE)) == 1, name
    # `export` names them and points to the one place they are documented.
    for name in FIELDS:
        assert f"`{name}`" in export.__doc__
    assert "ExportOptions" in export.__doc__


@pytest.mark.parametrize("fields, message", [
    (dict(quantize="int2"), r"^Unrecognized quantize='int2'\. Supported values "
     r"are: \[None, 'float16', 'dynamic', 'int8', 'int16x8', 'int4'\]$"),
    (dict(calibration_data=["a"], representative_data=[{}]), r"^Pass "
     r"`calibration_data` \(or its earlier name `representative_data`\), not "
     r"both\. Received: both$"),
    (dict(labels=["neg", "pos"]), r"^`labels` are stored in the metadata, so "
     r"they need metadata='text_classifier'\. Received: labels=\['neg', 'pos'\] "
     r"with metadata=None$"),
    (dict(opset=0), r"^`opset` must be a positive integer\. Received: opset=0$"),
    (dict(opset=True), r"Received: opset=True$"),
    (dict(opset=15.0), r"Received: opset=15\.0$"),
    (dict(atol=-1e-3), r"^`atol` must be a finite number >= 0\. Received: "
     r"atol=-0\.001$"),
    (dict(atol=float("inf")), r"Received: atol=inf$"),
    (dict(atol="0.1"), r"Received: atol='0\.1'$"),
    (dict(tokenizer=""), r"^`tokenizer` must be the path of a tokenizer.json "
     r"file\. Received: tokenizer=''$"),
    (dict(tokenizer=3), r"Received: tokenizer=3$"),
    (dict(runtime_adapters=8), r"^`runtime_adapters` must be False, True, or a "
     r"LiteRT-LM LoRA rank \(16 or 32\)\. Received: runtime_adapters=8$"),
    (dict(runtime_adapters="yes"), r"Received: runtime_adapters='yes'$"),
])
def test_values_no_format_takes_fail_when_made(fields, message):
    with pytest.raises(ValueError, match=message):
        ExportOptions(**fields)


def test_replace_checks_again():
    options = ExportOptions(quantize="dynamic", atol=0.5)
    assert options.replace(atol=0.25) == ExportOptions(quantize="dynamic", atol=0.25)
    assert options.atol == 0.5
    with pytest.raises(ValueError, match=r"Received: atol=-1"):
        options.replace(atol=-1)


def test_calibration_under_either_name():
    rows = [{"x": np.zeros((1, 2))}]
    old = ExportOptions(quantize="int8", representative_data=rows)
    assert old.calibration is rows and old.calibration_name == "representative_data"
    new = ExportOptions(quantize="int8", calibration_data=rows)
    assert new.calibration is rows and new.calibration_name == "calibration_data"
    assert ExportOptions().calibration is None


@pytest.mark.parametrize("format, fields, message", [
    ("gguf", {}, r"^Unrecognized format='gguf'\. Supported formats are: "
     r"\['saved_model', 'tflite', 'onnx'\]$"),
    ("onnx", dict(quantize="int16x8"), r"^format='onnx' supports quantize in "
     r"\[None, 'dynamic', 'int8'\]\. Received: quantize='int16x8'$"),
    ("saved_model", dict(quantize="dynamic"), r"^`quantize` only applies to "
     r"format in \['tflite', 'onnx'\]\. Received: quantize='dynamic' with "
     r"format='saved_model'$"),
    ("tflite", dict(quantize="int16x8"), r"Received: calibration_data=None, "
     r"representative_data=None$"),
    ("tflite", dict(calibration_data=["a"]), r"^`calibration_data` is only used "
     r"with quantize in \['int8', 'int16x8'\]\. Received: quantize=None$"),
    ("onnx", dict(metadata="text_classifier"), r"^Unrecognized "
     r"metadata='text_classifier' for format='onnx'\. Supported: metadata in "
     r"\['text_classifier'\] with format='tflite'$"),
    ("saved_model", dict(allow_flex=True), r"^`allow_flex` only applies to "
     r"format='tflite'\. Received: allow_flex=True with format='saved_model'$"),
    ("saved_model", dict(opset=17), r"^`opset` only applies to format='onnx'\. "
     r"Received: opset=17 with format='saved_model'$"),
    # Generation export takes it before the format records are asked.
    ("onnx", dict(tokenizer="tokenizer.json"), r"^`tokenizer` \(a tokenizer"
     r"\.json\) only applies to a keras-hub causal LM with a KV cache, exported "
     r"for generation; format='onnx' exports this model as a graph, which "
     r"takes none\. Received: tokenizer='tokenizer\.json'\. Leave `tokenizer` "
     r"out\.$"),
    ("tflite", dict(runtime_adapters=True), r"^`runtime_adapters` only applies "
     r"to a keras-hub causal LM with a KV cache, exported for generation; "
     r"format='tflite' exports this model as a graph\. Received: "
     r"runtime_adapters=True\. Merge the adapters into the graph"),
])
def test_options_a_format_does_not_take(format, fields, message):
    with pytest.raises(ValueError, match=message):
        ExportOptions(**fields).check_format(format)


def test_a_tokenizer_path_is_kept_as_a_string(tmp_path):
    assert ExportOptions(tokenizer=tmp_path / "t.json").tokenizer == str(
        tmp_path / "t.json")


def test_check_format_returns_the_record():
    options = ExportOptions(quantize="int8", calibration_data=["a"], opset=17)
    assert options.check_format("onnx") is get_format("onnx")
    assert ExportOptions(allow_flex=True).check_format("tflite") is get_format("tflite")


def test_validate_export_arguments_takes_either_form(tmp_path):
    path = tmp_path / "m.tflite"
    assert validate_export_arguments(path, "tflite", quantize="dynamic") is (
        get_format("tflite"))
    assert validate_export_arguments(
        path, "tflite", ExportOptions(quantize="dynamic")) is get_format("tflite")
    with pytest.raises(TypeError, match=r"^validate_export_arguments\(\) got "
                       r"unexpected keyword arguments \['quantise'\]"):
        validate_export_arguments(path, "tflite", quantise="dynamic")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("call, message", [
    (lambda m, p: export(m, p, "tflite", quantise="dynamic"), r"^export\(\) got "
     r"unexpected keyword arguments \['quantise'\]\. Its options are: "
     r"\['quantize', 'sample_inputs', .*'eval_data', 'tokenizer', "
     r"'runtime_adapters', 'on_device_training'\]$"),
    (lambda m, p: export(m, p, "tflite", "dynamic"), r"^export\(\) takes "
     r"`options` as an ExportOptions\. Received: options='dynamic' of type str$"),
    (lambda m, p: export(m, p, "tflite", options=ExportOptions(), atol=0.1),
     r"not both: use `options\.replace\(\.\.\.\)` to change some\. Received: "
     r"options and \['atol'\]$"),
])
def test_export_refuses_options_it_cannot_read(models, tmp_path, call, message):
    with pytest.raises(TypeError, match=message):
        call(models["dense"], tmp_path / "m.tflite")
    assert os.listdir(tmp_path) == []


def test_options_object_gives_the_same_artifact_as_keywords(models, tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    by_keywords = export(models["dense"], tmp_path / "a.onnx", "onnx",
                         sample_inputs=x, opset=15, atol=1e-4)
    options = ExportOptions(sample_inputs=x, opset=15, atol=1e-4)
    by_options = export(models["dense"], tmp_path / "b.onnx", "onnx",
                        options=options)
    assert by_keywords.verified and by_options.verified
    assert by_options.max_abs_diff == by_keywords.max_abs_diff
    assert by_options.max_abs_diff <= 1e-4
    assert by_options.tolerance == by_keywords.tolerance == 1e-4
    assert by_options.batch_sizes_checked == by_keywords.batch_sizes_checked
    assert by_options.ops == by_keywords.ops
    assert by_options.input_names == by_keywords.input_names == ("features",)


def test_export_passes_the_options_whole(models, tmp_path, monkeypatch):
    seen = []

    def hook(model, path, format, options):
        seen.append(("dispatch_export", options))

    def text_classifier(model, path, options):
        seen.append(("export_text_classifier", options))
        return "report"

    monkeypatch.setattr(export_model, "dispatch_export", hook)
    monkeypatch.setattr(export_model, "export_text_classifier", text_classifier)
    options = ExportOptions(metadata="text_classifier", labels=["a", "b"])
    assert export(models["bert"], tmp_path / "m.tflite", "tflite",
                  options=options) == "report"
    assert seen == [("dispatch_export", options),
                    ("export_text_classifier", options)]
    assert all(passed is options for _, passed in seen)
    # Keyword arguments become one object, the same for both.
    seen.clear()
    export(models["bert"], tmp_path / "m.tflite", "tflite",
           metadata="text_classifier", labels=["a", "b"])
    assert seen[0][1] == options and seen[0][1] is seen[1][1]


def test_the_package_exports_it():
    assert exporters.ExportOptions is ExportOptions
    assert "ExportOptions" in exporters.__all__


def test_export_modules_stay_under_400_lines():
    folder = os.path.dirname(export_model.__file__)
    for name in ("export_model.py", "export_options.py"):
        with open(os.path.join(folder, name)) as file:
            assert len(file.readlines()) <= 400, name
