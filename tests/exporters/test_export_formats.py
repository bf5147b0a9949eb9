"""Each format on a Dense model, a BERT classifier and a GPT-2 backbone."""

import os

import pytest

from tests.exporters.helpers import RUNNERS
from tests.exporters.helpers import keras_call
from tests.exporters.helpers import max_abs_diff
from tests.exporters.helpers import runtime_inputs

FORMATS = ("saved_model", "tflite", "onnx")
MODELS = ("dense", "bert", "gpt2")
CASES = [(name, format) for name in MODELS for format in FORMATS]

INPUT_NAMES = {
    "dense": ("features",),
    "bert": ("padding_mask", "segment_ids", "token_ids"),
    "gpt2": ("padding_mask", "token_ids"),
}
OUTPUT_NAMES = {
    "dense": ("scores", "value"),
    "bert": ("output_0",),
    "gpt2": ("output_0",),
}
# Each artifact must hold the matrix product of its Dense layers.
MATMUL_OPS = {
    "saved_model": {"MatMul", "BatchMatMulV2"},
    "tflite": {"FULLY_CONNECTED", "BATCH_MATMUL"},
    "onnx": {"MatMul", "Gemm"},
}


@pytest.mark.parametrize("name,format", CASES)
def test_report_of_float_export(exported, name, format):
    report = exported(name, format)
    assert report.format == format
    assert report.verified
    assert report.batch_sizes_checked == (1, 8)
    assert report.max_abs_diff <= 1e-4
    assert report.tolerance == 1e-4
    assert report.input_names == INPUT_NAMES[name]
    assert report.output_names == OUTPUT_NAMES[name]
    assert report.latency_ms > 0
    assert report.size_bytes > 1000
    assert os.path.exists(report.path)
    assert list(report.ops) == sorted(set(report.ops))
    assert MATMUL_OPS[format] & set(report.ops)
    assert "DELEGATE" not in report.ops


@pytest.mark.parametrize("name,format", CASES)
def test_artifact_matches_keras_in_its_runtime(models, exported, name, format):
    # Another sequence length (20) than the export checked (32): the
    # sequence dimension is dynamic too. One load runs both batch sizes.
    run = RUNNERS[format](exported(name, format).path)
    for batch_size in (1, 8):
        inputs = runtime_inputs(name, batch_size)
        expected = keras_call(models[name], name, inputs)
        actual = run(inputs)
        assert {k: v.shape for k, v in actual.items()} == {
            k: v.shape for k, v in expected.items()
        }
        assert max_abs_diff(expected, actual) <= 1e-4


def test_tflite_inputs_have_a_dynamic_batch(exported):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=exported("bert", "tflite").path)
    details = interpreter.get_signature_runner().get_input_details()
    assert {k: list(v["shape_signature"]) for k, v in details.items()} == {
        "padding_mask": [-1, -1],
        "segment_ids": [-1, -1],
        "token_ids": [-1, -1],
    }


def test_onnx_inputs_have_a_dynamic_batch_and_the_default_opset(exported):
    import onnx

    model = onnx.load(exported("gpt2", "onnx").path)
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert dims[0].dim_param and not dims[0].dim_value
    assert {o.domain: o.version for o in model.opset_import}[""] == 15


def test_onnx_opset_argument(models, tmp_path):
    import onnx

    from keras_lowrank.exporters import export

    report = export(models["dense"], tmp_path / "d.onnx", "onnx", opset=13)
    model = onnx.load(report.path)
    assert {o.domain: o.version for o in model.opset_import}[""] == 13
    assert report.max_abs_diff <= 1e-6


def test_saved_model_holds_each_weight_once(models, exported):
    # ExportArchive would store the BERT weights twice.
    report = exported("bert", "saved_model")
    weight_bytes = sum(int(w.numpy().nbytes) for w in models["bert"].weights)
    variables = os.path.join(report.path, "variables")
    stored = sum(
        os.path.getsize(os.path.join(variables, f)) for f in os.listdir(variables)
    )
    assert weight_bytes <= stored < 1.2 * weight_bytes


def test_file_artifacts_are_readable_by_others(exported):
    for format in ("tflite", "onnx"):
        assert os.stat(exported("dense", format).path).st_mode & 0o777 == 0o644
