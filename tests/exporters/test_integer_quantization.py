"""Integer artifacts that keep their accuracy, on the tiny raw-text classifier.

LiteRT `int8` (per-channel int8 weights, int8 activations where measured
harmless, float elsewhere), LiteRT `int16x8`, ONNX static int8 (QDQ) and
ONNX dynamic, all calibrated on real (toy) sentences and checked on task
accuracy with `eval_data`. The same paths on MiniLM: `test_minilm_integer.py`.
"""

import os

import numpy as np
import onnx
import pytest
import tensorflow as tf

import keras_lowrank as klr
from keras_lowrank.exporters import AccuracyDropError
from keras_lowrank.exporters.calibration import calibration_rows
from keras_lowrank.exporters.signature import input_signature
from tests.counts import examples_below
from tests.exporters.text_models import TEXTS
from tests.exporters.text_models import toy_data

CALIBRATION = toy_data(64, seed=21)[0]
EVAL = toy_data(96, seed=22)


@pytest.fixture(scope="module")
def keras_accuracy(text_model):
    texts, labels = EVAL
    return float(np.mean(text_model.predict(texts, verbose=0).argmax(-1) == labels))


def _export(model, tmp_path, format, quantize, **kwargs):
    suffix = ".tflite" if format == "tflite" else ".onnx"
    kwargs.setdefault("calibration_data", CALIBRATION)
    return klr.export(
        model, tmp_path / f"m_{quantize}{suffix}", format, quantize=quantize,
        sample_inputs=TEXTS, eval_data=EVAL, **kwargs,
    )


@pytest.fixture(scope="module")
def int8_litert(text_model, tmp_path_factory):
    """The LiteRT int8 artifact's report: two tests read the one artifact."""
    return _export(text_model, tmp_path_factory.mktemp("int8"), "tflite", "int8")


def test_int8_litert_keeps_accuracy_and_says_what_stayed_float(
    int8_litert, keras_accuracy
):
    report = int8_litert
    assert report.keras_accuracy == pytest.approx(keras_accuracy)
    assert examples_below(report.accuracy, keras_accuracy, len(EVAL[1])) <= 0  # 1 of 96 > 1 point
    # 2 layers x (q, k, v, attention output, FFN in) + pooler + logits in
    # int8; the 2 FFN output projections, fed by GELU, in float.
    assert report.precisions["int8"]["FULLY_CONNECTED"] == 12
    assert report.precisions["float"]["FULLY_CONNECTED"] == 2
    assert len(report.float_layers) == 2
    assert all("feedforward_output" in name for name in report.float_layers)
    for op in ("SOFTMAX", "GELU", "BATCH_MATMUL", "MEAN", "RSQRT"):
        assert op in report.precisions["float"]
    assert report.precisions["int8"]["GATHER"] >= 2  # word, segment embeddings
    # Measured: max abs logit diff 3e-3 (logits up to 4).
    assert report.max_abs_diff < 0.1 and report.tolerance is None


def test_int8_weights_are_per_channel(int8_litert):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=int8_litert.path)
    weights = [
        t for t in interpreter.get_tensor_details()
        if t["dtype"] == np.int8 and len(t["shape"]) == 2
        and len(t["quantization_parameters"]["scales"]) > 1
    ]
    # Every int8 FULLY_CONNECTED kernel has one scale per output unit.
    assert len(weights) >= 12
    assert all(
        len(w["quantization_parameters"]["scales"]) == w["shape"][0] for w in weights
    )


def test_int16x8_litert_keeps_accuracy(text_model, keras_accuracy, tmp_path):
    report = _export(text_model, tmp_path, "tflite", "int16x8")
    assert examples_below(report.accuracy, keras_accuracy, len(EVAL[1])) <= 0  # 1 of 96 > 1 point
    assert report.precisions["int16"]["FULLY_CONNECTED"] >= 12
    assert report.max_abs_diff < 0.05


def test_onnx_static_int8_keeps_accuracy(text_model, keras_accuracy, tmp_path):
    report = _export(text_model, tmp_path, "onnx", "int8")
    assert examples_below(report.accuracy, keras_accuracy, len(EVAL[1])) <= 0  # 1 of 96 > 1 point
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(report.ops)
    # The FFN output projections (fed by GELU) stay float, and so do
    # attention's activation-by-activation products (2 per layer).
    assert len(report.float_layers) == 2
    assert all("feedforward_output" in name for name in report.float_layers)
    graph = onnx.load(report.path).graph
    producers = {out: n.op_type for n in graph.node for out in n.output}
    attention = [n for n in graph.node if n.op_type == "MatMul" and not any(
        producers.get(i) == "DequantizeLinear" for i in n.input)]
    assert len(attention) == 2 * 2 + 2
    weights = {i.name: i for i in graph.initializer}
    per_channel = [
        n for n in graph.node if n.op_type == "DequantizeLinear"
        and n.input[0] in weights and len(weights[n.input[1]].dims) == 1
    ]
    assert per_channel  # one scale per output column
    assert report.max_abs_diff < 0.1


def test_onnx_dynamic_needs_no_calibration(text_model, keras_accuracy, tmp_path):
    report = _export(text_model, tmp_path, "onnx", "dynamic", calibration_data=None)
    assert examples_below(report.accuracy, keras_accuracy, len(EVAL[1])) <= 0  # 1 of 96 > 1 point
    assert "DynamicQuantizeLinear" in report.ops or "MatMulInteger" in report.ops


def test_an_accuracy_drop_fails_with_the_figures_and_writes_nothing(
    text_model, tmp_path
):
    """A head whose first row is 1000 in both columns: in float it adds the
    same to both logits, but per-channel int8 then rounds every other
    weight to 0 (scale 1000/127), and the predictions become ties."""
    head = text_model.output_dense
    kernel = head.kernel.numpy()
    spoiled = kernel.copy()
    spoiled[0, :] = 1000.0
    head.kernel.assign(spoiled)
    try:
        with pytest.raises(AccuracyDropError, match=r"\(quantize='int8'\) reaches "
                           r"accuracy 0\.\d+ on the 96 eval_data examples, \d+\.\d+ "
                           r"points below Keras \(1\.0000\); at most 1\.0 point "
                           r"is allowed\. The artifact was removed") as error:
            _export(text_model, tmp_path, "tflite", "int8")
    finally:
        head.kernel.assign(kernel)
    assert error.value.accuracy < error.value.keras_accuracy - 0.1
    assert os.listdir(tmp_path) == []


def test_token_id_artifacts_keep_a_dynamic_sequence_length(text_model, tmp_path):
    report = klr.export(text_model, tmp_path / "m.tflite", "tflite", sample_inputs=TEXTS)
    assert report.input_shapes["token_ids"] == [-1, -1]
    # Run at the padded length and at the median text's own length.
    assert report.sequence_lengths_checked == (16, 7)
    timings = report.latency_by_length
    assert timings["median"]["tokens"] == 7 and timings["max"]["tokens"] == 16
    assert report.max_abs_diff < 1e-4


@pytest.mark.parametrize("data", [
    CALIBRATION,
    lambda: [{"token_ids": np.ones((2, 16), "int32"),
              "padding_mask": np.ones((2, 16), "int32"),
              "segment_ids": np.zeros((2, 16), "int32")}],
    tf.data.Dataset.from_tensor_slices((CALIBRATION, np.zeros(64))).batch(8),
    tf.data.Dataset.from_tensor_slices(CALIBRATION),
])
def test_calibration_data_forms_become_rows(text_model, data):
    rows = calibration_rows(text_model, input_signature(text_model), data)
    assert all(row["token_ids"].shape == (1, 16) for row in rows)
    assert len(rows) in (2, 64)


def test_calibration_arguments_are_checked(text_model, tmp_path):
    with pytest.raises(ValueError, match=r"Received: calibration_data=None"):
        klr.export(text_model, tmp_path / "m.onnx", "onnx", quantize="int8")
    with pytest.raises(ValueError, match=r"`calibration_data` is only used with "
                       r"quantize='int8'\. Received: quantize='dynamic'"):
        klr.export(text_model, tmp_path / "m.onnx", "onnx", quantize="dynamic",
                   calibration_data=CALIBRATION)
    with pytest.raises(ValueError, match=r"not both"):
        klr.export(text_model, tmp_path / "m.tflite", "tflite", quantize="int8",
                   calibration_data=CALIBRATION, representative_data=CALIBRATION)
    with pytest.raises(ValueError, match=r"`eval_data` labels must be integer class "
                       r"ids, one per example\. Received: labels of shape \(2,\)"):
        klr.export(text_model, tmp_path / "m.tflite", "tflite",
                   eval_data=(CALIBRATION, [0, 1]))
    assert os.listdir(tmp_path) == []
