"""report.json, the summary table and the training-curves PNG."""

import json

import pytest

from keras_lowrank.finetune import report as report_lib
from keras_lowrank.runs import report_files

HISTORY = {"loss": [0.6, 0.4, 0.3], "accuracy": [0.6, 0.8, 0.88],
           "val_loss": [0.5, 0.45, 0.5], "val_accuracy": [0.77, 0.8, 0.79]}


def _report(**overrides):
    report = {
        "test_accuracy": 0.8163, "tflite_test_accuracy": 0.815,
        "onnx_test_accuracy": 0.8163, "trainable_params": 74_498,
        "total_params": 22_787_714, "base_bytes": 90_850_000,
        "adapter_bytes": 303_744, "tflite_bytes": 23_400_000,
        "onnx_bytes": 101_689_995, "tflite_latency_ms": 9.87,
        "onnx_latency_ms": 7.8, "train_seconds": 273.0, "epochs_run": 3,
        "best_epoch": 2, "best_val_accuracy": 0.8,
        "stage_seconds": {"data": 0.4, "train": 273.0}, "total_seconds": 334.0,
        "exports": {"tflite": {"quantize": "dynamic"}, "onnx": {"quantize": None}},
    }
    report.update(overrides)
    return report


def test_summary_table_lists_every_model_with_numbers():
    table = report_lib.summary_table(_report())
    lines = table.splitlines()
    assert lines[0].split() == ["model", "test", "accuracy", "size", "latency", "(batch", "1)"]
    assert "Keras (LoRA)          0.8163" in table
    assert "LiteRT (dynamic)" in table and "0.8150" in table and "23.4 MB" in table
    assert "9.9 ms" in table and "303.7 KB" in table and "101.7 MB" in table
    assert "trainable params: 74,498 of 22,787,714 (0.33%)" in table
    assert "3 epochs in 273 s, best epoch 2 (validation accuracy 0.8000)" in table
    assert "total 334 s" in table


def test_summary_table_shows_a_failed_or_skipped_export():
    failed = _report(exports={"tflite": {"error": "max abs diff 0.2", "quantize": "dynamic"}},
                     tflite_test_accuracy=None, onnx_test_accuracy=None)
    table = report_lib.summary_table(failed)
    assert "LiteRT                failed" in table
    assert "tflite export failed: max abs diff 0.2" in table
    assert "ONNX" not in table


def test_summary_table_warns_when_an_artifact_loses_accuracy():
    assert "warning" not in report_lib.summary_table(_report())  # -0.13 point
    table = report_lib.summary_table(_report(tflite_test_accuracy=0.80))
    assert ("warning: tflite test accuracy differs from Keras by -1.63 points "
            "(more than 0.5)") in table
    assert "warning: onnx" not in table


def test_required_keys_name_each_format_a_run_can_export():
    assert report_lib.required_keys() == (
        "test_accuracy", "trainable_params", "total_params", "adapter_bytes",
        "train_seconds", "tflite_test_accuracy", "tflite_accuracy_diff",
        "tflite_bytes", "tflite_latency_ms", "tflite_max_abs_diff",
        "onnx_test_accuracy", "onnx_accuracy_diff", "onnx_bytes",
        "onnx_latency_ms", "onnx_max_abs_diff",
        *(f"{name}_{key}" for name in ("text_classifier", "int8") for key in (
            "test_accuracy", "accuracy_diff", "bytes", "latency_ms",
            "latency_max_ms", "max_abs_diff", "label_agreement",
            "test_label_agreement", "token_agreement")))


def _phone_report(**exported):
    from keras_lowrank.runs import phone_artifacts

    exported = {"metadata": "text_classifier", "size_bytes": 90_500_000,
                "accuracy": 0.8263, "label_agreement": 1.0, "texts_checked": 64,
                "max_abs_diff": 3e-7, "token_agreement": 0.984375,
                "eval_examples": 800, "eval_label_agreement": 0.99875,
                "eval_max_score_diff": 4.2e-7, "latency_by_length": {
                    "median": {"tokens": 64, "ms": 17.1}}, **exported}
    return _report(
        exports={"text_classifier": exported},
        **phone_artifacts.report_values("text_classifier", exported, 0.8263))


def test_the_mediapipe_line_counts_test_strings_with_keras_labels():
    report = _phone_report()
    assert report["text_classifier_test_label_agreement"] == 0.99875
    assert report["text_classifier_label_agreement"] == 1.0
    line = next(line for line in report_lib.summary_table(report).splitlines()
                if line.startswith("text_classifier:"))
    assert line == (
        "text_classifier: raw text, in MediaPipe's TextClassifier, accuracy "
        "0.8263 on 800 raw test strings; batch 1 17.10 ms at 64 tokens; labels "
        "equal Keras' on 799/800 test strings, max score diff 4.2e-07; token ids "
        "as keras-hub's on 98.4%")
    # Without eval_data, the sample strings' figure.
    report = _phone_report(eval_examples=0, eval_label_agreement=None)
    assert report["text_classifier_test_label_agreement"] is None
    assert "labels agree with Keras on 100.0% of 64 strings, max score diff 3e-07" in (
        report_lib.summary_table(report))


def test_format_values_of_an_exported_a_failed_and_a_skipped_format():
    exported = {"size_bytes": 100, "latency_ms": float("inf"),
                "max_abs_diff": 1e-6, "evaluation": {"accuracy": 0.75}}
    assert report_lib.format_values("onnx", exported, 0.8) == {
        "onnx_test_accuracy": 0.75, "onnx_accuracy_diff": pytest.approx(-0.05),
        "onnx_bytes": 100, "onnx_latency_ms": None, "onnx_max_abs_diff": 1e-6}
    for result in ({"error": "max abs diff 0.2", "quantize": None}, {}):
        values = report_lib.format_values("onnx", result, 0.8)
        assert set(values.values()) == {None}


def test_write_json_is_atomic_and_rejects_nan(tmp_path):
    path = tmp_path / "report.json"
    report_files.write_json({"test_accuracy": 0.5}, path)
    assert json.loads(path.read_text()) == {"test_accuracy": 0.5}
    with pytest.raises(ValueError):
        report_files.write_json({"test_accuracy": float("nan")}, path)
    assert json.loads(path.read_text()) == {"test_accuracy": 0.5}  # unchanged
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_training_curves_png(tmp_path):
    import matplotlib.image

    path = tmp_path / "curves.png"
    report_files.plot_training_curves(HISTORY, path, best_epoch=2)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert matplotlib.image.imread(str(path)).shape[:2] == (400, 1000)
    report_files.plot_training_curves({"loss": [0.5], "accuracy": [0.7]}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_summary_table_shows_cpu_times_and_precision():
    table = report_lib.summary_table(_report(
        stage_cpu_seconds={"data": {"user": 1.5, "system": 0.25},
                           "train": {"user": 400.0, "system": 38.25}},
        precision={"requested": "auto", "train": "bfloat16",
                   "reason": "auto: bfloat16 on the CPU with AVX512_BF16",
                   "evaluate_and_export": "float32"}))
    lines = table.splitlines()
    # 401.5 s user, 38.5 s system: 38.5 / 440 = 8.75%.
    assert "cpu: user 401.5 s, system 38.5 s (8.8% system)" in lines
    assert ("precision: trained in bfloat16 (auto: bfloat16 on the CPU with "
            "AVX512_BF16); evaluated and exported in float32") in lines
    assert report_files.cpu_line({"x": {"user": 0.0, "system": 0.0}}) == (
        "cpu: user 0.0 s, system 0.0 s (- system)")
