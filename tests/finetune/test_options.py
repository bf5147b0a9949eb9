"""FinetuneOptions: defaults, and one error per precondition."""

import pytest

from keras_lowrank.finetune.options import FinetuneOptions


def test_defaults_are_the_demo():
    options = FinetuneOptions()
    assert options.out == "runs/demo"
    assert options.model is None and options.train_files == ()
    assert (options.rank, options.targets) == (8, ("query", "value"))
    assert options.export == ("tflite", "onnx")
    assert options.tflite_quantize == "dynamic"
    assert options.sequence_length == 64
    # The demo's published figures are float32, reproducible bit for bit.
    assert (options.precision, options.deterministic) == ("float32", True)
    # Issue 9: the demo ships the MediaPipe and the full-integer artifacts.
    assert options.phone_artifacts == ("text_classifier", "int8")
    assert options.distribute is None


def test_formats_and_quantize_modes_come_from_the_registry():
    from keras_lowrank.finetune import options
    from keras_lowrank.runs import run_folder

    assert options.TFLITE_QUANTIZE_MODES == (None, "float16", "dynamic")
    assert run_folder.export_formats() == ("tflite", "onnx")
    assert [run_folder.artifact_file(f) for f in ("tflite", "onnx")] == [
        "model.tflite", "model.onnx"]
    assert run_folder.run_files() == (
        "adapters.safetensors", "report.json", "training_curves.png",
        "rank_allocation.png", "model.tflite", "model.onnx", "model.litertlm", "onnx_genai",
        "litertlm_lora",
        "model_text_classifier.tflite", "model_int8.tflite")


def test_lists_become_tuples_and_to_dict_is_json_ready(tmp_path):
    import json

    options = FinetuneOptions(
        train_files=[str(tmp_path / "a.csv")], labels=[0, 1],
        targets=["query"], export=["onnx"],
    )
    assert options.train_files == (str(tmp_path / "a.csv"),)
    assert options.labels == ("0", "1")
    assert options.targets == ("query",) and options.export == ("onnx",)
    data = json.loads(json.dumps(options.to_dict()))
    assert data["export"] == ["onnx"] and data["rank"] == 8


def test_all_linear_target_is_unwrapped_for_lora_config():
    assert FinetuneOptions(targets=["all-linear"]).targets_for_config == "all-linear"
    assert FinetuneOptions().targets_for_config == ("query", "value")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("rank", 0, "rank must be a positive integer. Received: rank=0"),
        ("rank", 2.5, "rank must be a positive integer"),
        ("epochs", True, "epochs must be a positive integer"),
        ("batch_size", -1, "batch_size must be a positive integer"),
        ("sequence_length", 0, "sequence_length must be a positive integer"),
        ("sequence_length", 2, r"^sequence_length must be at least 3: BERT packs "
         r"\[CLS\] and \[SEP\] around each text, so a shorter one holds no "
         r"text\. Received: sequence_length=2$"),
        ("patience", 0, "patience must be a positive integer"),
        ("max_train_examples", 0, "max_train_examples must be a positive integer"),
        ("max_eval_examples", -3, "max_eval_examples must be a positive integer"),
        ("learning_rate", 0.0, "learning_rate must be a number > 0"),
        ("learning_rate", float("nan"), "learning_rate must be a number > 0"),
        ("alpha", -1.0, "alpha must be a number > 0"),
        ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
        ("warmup_fraction", -0.1, r"warmup_fraction must be in \[0, 1\)"),
        ("weight_decay", -0.5, "weight_decay must be a number >= 0"),
        ("targets", [], "targets must hold at least one non-empty layer pattern"),
        ("targets", ["query", ""], "targets must hold at least one non-empty"),
        ("export", ["tflite", "coreml"], r"Unrecognized or repeated export format.*coreml.*\['tflite', 'onnx'\]"),
        ("export", ["onnx", "onnx"], "Unrecognized or repeated export format"),
        ("export", ["saved_model"], r"^export format 'saved_model' \(SavedModel\) "
         r"writes a folder, but a run folder holds one file per artifact\. "
         r"Supported formats are: \['tflite', 'onnx'\]$"),
        ("tflite_quantize", "int4", r"Unrecognized tflite_quantize='int4'"),
        ("labels", ["a"], "labels must hold at least two distinct names"),
        ("labels", ["a", "a"], "labels must hold at least two distinct names"),
        ("seed", "1", "seed must be an integer"),
        ("verbose", 3, "verbose must be 0, 1 or 2"),
        ("precision", "int8", r"^Unrecognized precision='int8'\. Supported "
         r"values are: \['auto', 'float32', 'bfloat16', 'float16'\]$"),
        ("deterministic", 1, r"^deterministic must be True or False\. "
         r"Received: deterministic=1$"),
        ("out", "", "out must be a non-empty string"),
        ("text_column", "", "text_column must be a non-empty string"),
        ("model", "", "model must be a non-empty string"),
        ("phone_artifacts", ["int4"], r"^Unrecognized phone artifact 'int4'\. "
         r"Supported phone artifacts are: \['text_classifier', 'int8'\]$"),
        ("phone_artifacts", ["int8", "int8"], r"^phone_artifacts must not "
         r"repeat a name\. Received: phone_artifacts=\['int8', 'int8'\]$"),
        ("distribute", "horovod", r"^Unrecognized distribute='horovod'\. "
         r"Supported values are: \[None, 'mirrored', 'multi-worker'\]$"),
        ("startup_timeout", 0, r"^startup_timeout must be a number > 0\. "
         r"Received: startup_timeout=0$"),
        ("startup_timeout", 60, r"^startup_timeout is for distribute="
         r"'multi-worker' \(a one-machine run has no other worker to wait "
         r"for\)\. Received: startup_timeout=60 with distribute=None$"),
    ],
)
def test_invalid_option_raises(field, value, message):
    with pytest.raises(ValueError, match=message):
        FinetuneOptions(**{field: value})


def test_validation_or_test_files_need_train_files():
    with pytest.raises(ValueError, match="validation_files and test_files need train_files"):
        FinetuneOptions(test_files=["test.csv"])


def test_out_must_not_be_a_file(tmp_path):
    path = tmp_path / "report"
    path.write_text("x")
    with pytest.raises(ValueError, match="out must be a folder, but .* is an existing file"):
        FinetuneOptions(out=str(path))
