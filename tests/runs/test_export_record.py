"""`record_export`: one export's result, or its error in one line."""

import pytest

from keras_lowrank.exporters import ExportVerificationError
from keras_lowrank.runs import record_export


def test_a_written_artifact_is_named_by_its_place_in_out():
    result = record_export(lambda: {"size_bytes": 3}, "/b/model.onnx",
                           "runs/x/model.onnx")
    assert result == {"size_bytes": 3, "path": "runs/x/model.onnx"}


def test_an_export_error_is_recorded_in_one_line_naming_out():
    def write():
        raise ExportVerificationError("/b/model.onnx differs\n  from Keras:  1e-2")

    result = record_export(write, "/b/model.onnx", "runs/x/model.onnx",
                           failed=lambda error: {"quantize": None})
    assert result == {"error": "runs/x/model.onnx differs from Keras: 1e-2",
                      "quantize": None}


def test_another_error_propagates():
    def write():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        record_export(write, "/b/m", "runs/x/m")
