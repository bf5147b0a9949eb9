"""The whole `keras-lowrank finetune` run on a slice of the real MR data
(`tests/minilm_run.py`, shared by the real-model files): every stage, its
report, files and numbers."""

import os

import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.finetune.report import required_keys
from tests.counts import examples
from tests.counts import examples_below
from tests.minilm_run import EPOCHS
from tests.minilm_run import EVAL_EXAMPLES
from tests.minilm_run import TRAIN_EXAMPLES

pytestmark = pytest.mark.large


@pytest.fixture(scope="module")
def run(minilm_finetune_run):
    return minilm_finetune_run


def test_exit_code_and_report_keys(run):
    code, _, report = run
    assert code == 0
    assert set(required_keys()) <= set(report)
    # MediaPipe's agreement figures are None for the LiteRT int8 artifact.
    assert [key for key in required_keys() if report[key] is None] == [
        "int8_label_agreement", "int8_test_label_agreement", "int8_token_agreement"]
    assert report["num_examples"] == {"train": TRAIN_EXAMPLES, "validation": EVAL_EXAMPLES,
                                      "test": EVAL_EXAMPLES}
    assert report["label_names"] == ["negative", "positive"]
    assert list(report["stage_seconds"]) == [
        "data", "model", "train", "evaluate", "export", "report"]
    assert report["total_seconds"] >= sum(report["stage_seconds"].values()) - 1e-6


def test_accuracies_agree_across_runtimes(run):
    _, _, report = run
    keras_accuracy = report["test_accuracy"]
    for key in ("test_accuracy", "tflite_test_accuracy", "onnx_test_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    # 60 steps on 960 sentences already learn something.
    assert keras_accuracy > 0.7  # measured: 0.775
    # tflite_quantize ("dynamic", int8 weights) is LiteRT's only: a few
    # near-ties may flip there; float32 ONNX: at most one of 200.
    assert report["exports"]["tflite"]["quantize"] == "dynamic"
    assert report["exports"]["onnx"].get("quantize") is None
    keras_right = examples(keras_accuracy, EVAL_EXAMPLES)
    assert abs(examples(report["tflite_test_accuracy"], EVAL_EXAMPLES) - keras_right) <= 4
    assert abs(examples(report["onnx_test_accuracy"], EVAL_EXAMPLES) - keras_right) <= 1
    assert report["onnx_max_abs_diff"] < 1e-4
    assert report["tflite_max_abs_diff"] < 5e-2
    for format in ("tflite", "onnx"):
        assert report["exports"][format]["evaluation"]["examples"] == EVAL_EXAMPLES
    # The phone artifacts, on the 200 raw test sentences: export refuses
    # more than 1.0 point (2 of 200) below Keras; float MediaPipe gives
    # Keras' label on each of the 64 sentences it compares, and on at least
    # 99.5% (199) of the 200 (else the export is refused).
    for name in ("text_classifier", "int8"):
        assert report["exports"][name]["eval_examples"] == EVAL_EXAMPLES
        assert examples_below(report[f"{name}_test_accuracy"], keras_accuracy,
                              EVAL_EXAMPLES) <= 2
    assert report["text_classifier_label_agreement"] == 1.0
    assert examples(report["text_classifier_test_label_agreement"], EVAL_EXAMPLES) >= 199


def test_parameter_counts_and_sizes(run):
    _, out, report = run
    # 2 factors x 6 layers x rank 8 x (384 + 384), plus the head 384 * 2 + 2.
    assert report["trainable_params"] == 74_498
    assert report["total_params"] == 22_787_714
    assert report["adapter_bytes"] == os.path.getsize(out / "adapters.safetensors")
    assert report["adapter_bytes"] < 0.01 * report["base_bytes"]
    assert report["tflite_bytes"] == os.path.getsize(out / "model.tflite")
    assert report["onnx_bytes"] == os.path.getsize(out / "model.onnx")
    # int8 weights: about a quarter of the float32 model; ONNX is float32.
    assert report["tflite_bytes"] < 0.4 * report["base_bytes"]
    assert report["onnx_bytes"] > 0.9 * report["base_bytes"]
    assert report["tflite_latency_ms"] > 0


def test_history_and_training_curves(run):
    _, out, report = run
    assert report["epochs_run"] == EPOCHS and report["best_epoch"] in (1, 2)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(report["history"][key]) == EPOCHS
    best = report["history"]["val_accuracy"][report["best_epoch"] - 1]
    assert report["best_val_accuracy"] == best == max(report["history"]["val_accuracy"])
    assert report["val_accuracy_per_epoch"] == report["history"]["val_accuracy"]
    png = (out / "training_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    image = matplotlib.image.imread(str(out / "training_curves.png"))
    assert image.shape[:2] == (400, 1000)
    assert float(np.std(image)) > 0.01  # something was drawn


def test_adapter_file_loads_on_a_fresh_base(run):
    _, out, report = run
    metadata = klr.read_adapter_metadata(out / "adapters.safetensors")
    assert len(metadata["adapters"]) == 12
    assert {spec["rank"] for spec in metadata["adapters"].values()} == {8}
    assert report["options"]["rank"] == 8
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
