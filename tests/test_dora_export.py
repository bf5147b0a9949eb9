"""A model with DoRA adapters, exported in every format through `klr.export`.

Random non-zero factors and magnitudes away from `‖W‖_c`, on every Dense and
EinsumDense of a small BERT (query `"abc,cde->abde"`, attention output
`"abcd,cde->abe"`, Dense feed-forward and pooler): export merges them, then
checks the artifact against Keras running the unmerged adapters.
"""

import keras
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import adapters
from tests.exporters.helpers import RUNTIMES
from tests.exporters.helpers import bert_classifier
from tests.exporters.helpers import keras_call
from tests.exporters.helpers import max_abs_diff
from tests.exporters.helpers import runtime_inputs

FORMATS = ("saved_model", "tflite", "onnx")
EXTENSIONS = {"saved_model": "", "tflite": ".tflite", "onnx": ".onnx"}
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(5)
    base = bert_classifier()
    model = klr.add_adapters(base, targets="all-linear", rank=4, use_dora=True)
    rng = np.random.default_rng(8)
    for adapter in adapters(model).values():
        adapter.lora_b.assign(rng.normal(0, 0.2, adapter.lora_b.shape).astype("float32"))
        m = adapter.lora_magnitude.numpy() * rng.uniform(0.5, 1.5, adapter.lora_magnitude.shape)
        adapter.lora_magnitude.assign(m.astype("float32"))
    return base, model


@pytest.fixture(scope="module")
def reports(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dora")
    return {
        format: klr.export(models[1], folder / f"dora{EXTENSIONS[format]}", format)
        for format in FORMATS
    }


@pytest.mark.parametrize("format", FORMATS)
def test_export_verifies_within_tolerance(reports, format):
    report = reports[format]
    assert report.verified
    assert report.batch_sizes_checked == (1, 8)
    assert report.max_abs_diff <= TOLERANCE


@pytest.mark.parametrize("format", FORMATS)
def test_artifact_holds_the_dora_adapters(models, reports, format):
    base, model = models
    assert len(klr.adapter_paths(model)) == 13
    inputs = runtime_inputs("bert", 8)
    actual = RUNTIMES[format](reports[format].path, inputs)
    assert max_abs_diff(keras_call(model, "bert", inputs), actual) <= TOLERANCE
    # The adapters move the logits far beyond the tolerance.
    assert max_abs_diff(keras_call(base, "bert", inputs), actual) > 100 * TOLERANCE
