"""TFLite op sets: Flex ops named and refused by default; quantize modes."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_lowrank.exporters import UnsupportedOpsError
from keras_lowrank.exporters import export
from tests.exporters.helpers import keras_call
from tests.exporters.helpers import max_abs_diff
from tests.exporters.helpers import run_tflite
from tests.exporters.helpers import runtime_inputs


def _model_with(op, name):
    # A determinant or an inverse error function: TensorFlow ops that LiteRT
    # has no builtin kernel for.
    inputs = keras.Input((3, 3), name="matrices")
    hidden = keras.layers.Dense(3)(inputs)
    return keras.Model(inputs, keras.layers.Lambda(op, name=name)(hidden))


@pytest.fixture(scope="module")
def determinant_model():
    return _model_with(lambda t: tf.linalg.det(t), "determinant")


def test_flex_op_is_named_and_nothing_is_written(determinant_model, tmp_path):
    with pytest.raises(UnsupportedOpsError, match=r"LiteRT builtins lack \(Flex "
                       r"ops\): MatrixDeterminant\. .*allow_flex=True") as info:
        export(determinant_model, tmp_path / "det.tflite", "tflite")
    assert info.value.ops == ("MatrixDeterminant",)
    assert info.value.flex
    assert os.listdir(tmp_path) == []


def test_allow_flex_writes_an_artifact_that_needs_the_flex_delegate(
    determinant_model, tmp_path
):
    # The Python LiteRT runtime has no Flex delegate: the artifact is written,
    # the report says it is unverified and why.
    with pytest.warns(UserWarning, match="no Flex delegate"):
        report = export(
            determinant_model, tmp_path / "det.tflite", "tflite", allow_flex=True
        )
    assert "FlexMatrixDeterminant" in report.ops
    assert "FULLY_CONNECTED" in report.ops
    assert not report.verified and report.max_abs_diff is None
    assert any("tensorflow-lite-select-tf-ops" in note for note in report.notes)
    assert "note: Flex ops FlexMatrixDeterminant" in str(report)
    assert os.path.getsize(tmp_path / "det.tflite") == report.size_bytes


def test_ops_without_any_kernel_fail_even_with_allow_flex(tmp_path):
    model = _model_with(lambda t: tf.math.erfinv(tf.tanh(t)), "erfinv")
    with pytest.raises(UnsupportedOpsError, match=r"neither LiteRT builtins nor "
                       r"the Flex delegate can run: Erfinv") as info:
        export(model, tmp_path / "e.tflite", "tflite", allow_flex=True)
    assert info.value.ops == ("Erfinv",) and not info.value.flex
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "quantize,bound,size_ratio",
    # Measured on this tiny BERT: float16 ~9e-6 and 0.70 of the size,
    # dynamic ~1e-4 and 0.58 (its embeddings stay float).
    [("float16", 1e-4, 0.75), ("dynamic", 2e-3, 0.65)],
)
def test_quantized_bert(models, exported, quantize, bound, size_ratio):
    report = exported("bert", "tflite", quantize=quantize)
    float_size = exported("bert", "tflite").size_bytes
    assert report.quantize == quantize
    assert report.tolerance == {"float16": 1e-2, "dynamic": 5e-2}[quantize]
    assert 0 < report.max_abs_diff <= bound
    assert report.size_bytes < size_ratio * float_size
    assert "DEQUANTIZE" in report.ops
    inputs = runtime_inputs("bert", 8)
    diff = max_abs_diff(keras_call(models["bert"], "bert", inputs),
                        run_tflite(report.path, inputs))
    assert diff <= bound


def test_int8_with_representative_data(models, tmp_path):
    rng = np.random.default_rng(3)
    samples = [
        {"token_ids": rng.integers(1, 120, (1, 16)).astype("int32"),
         "padding_mask": np.ones((1, 16), "int32"),
         "segment_ids": np.zeros((1, 16), "int32")}
        for _ in range(8)
    ]
    report = export(models["bert"], tmp_path / "int8.tflite", "tflite",
                    quantize="int8", representative_data=lambda: iter(samples))
    assert report.tolerance == 1e-1
    assert 0 < report.max_abs_diff <= 2e-2  # measured ~8e-4
    assert "QUANTIZE" in report.ops
