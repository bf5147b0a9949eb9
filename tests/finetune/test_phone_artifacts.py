"""The phone artifacts of a run (issue 9, part 4): written, measured, reported.

Two whole `keras-lowrank finetune` runs on tiny presets, each in real
runtimes (MediaPipe's TextClassifier, the LiteRT interpreter):
- the uncased preset (`conftest.uncased_preset`, MediaPipe can tokenize for
  it) on 120 toy reviews: both artifacts written, their accuracy on the
  raw test strings within the bounds export enforces;
- the cased tiny preset (`conftest.tiny_preset`, `lowercase=False`), which
  MediaPipe refuses: refused once the model is loaded, before training, in
  one line on stderr (exit code 2, nothing written); with `--export none`
  no phone artifact is made, so it is not checked.
"""

import json
import os

import pytest

from keras_lowrank.cli.main import main
from keras_lowrank.finetune import training
from keras_lowrank.finetune.report import required_keys
from tests.counts import examples_below

TEST_EXAMPLES = 24  # the seeded 20% of 120


def _run(tmp_path_factory, preset, train_csv, sequence_length):
    out = tmp_path_factory.mktemp("phone") / "run"
    code = main([
        "finetune", "--quiet", "--model", preset, "--train", train_csv,
        "--cache-dir", str(out.parent / "cache"), "--out", str(out),
        "--sequence-length", str(sequence_length), "--batch-size", "8",
        "--epochs", "3", "--learning-rate", "1e-2", "--export", "tflite",
    ])
    with open(out / "report.json", encoding="utf-8") as file:
        return code, out, json.load(file)


@pytest.fixture(scope="module")
def run(tmp_path_factory, uncased_preset, toy_csv):
    return _run(tmp_path_factory, uncased_preset, toy_csv, 16)


def test_both_artifacts_are_written_and_reported(run):
    code, out, report = run
    assert code == 0
    assert set(required_keys()) <= set(report)
    # MediaPipe's agreement figures are None for the LiteRT int8 artifact;
    # ONNX was not exported.
    assert [key for key in required_keys() if report[key] is None
            and not key.startswith("onnx_")] == [
        "int8_label_agreement", "int8_test_label_agreement",
        "int8_token_agreement"]
    for name, file in [("text_classifier", "model_text_classifier.tflite"),
                       ("int8", "model_int8.tflite")]:
        assert report["files"][name] == str(out / file)
        assert report[f"{name}_bytes"] == os.path.getsize(out / file) > 0
        exported = report["exports"][name]
        assert exported["artifact"] == name
        # Every raw test string, run in the artifact's runtime.
        assert exported["eval_examples"] == TEST_EXAMPLES
        assert exported["keras_accuracy"] == report["test_accuracy"]
        assert report[f"{name}_latency_ms"] > 0
        assert report[f"{name}_latency_max_ms"] > 0
    assert report["exports"]["text_classifier"]["metadata"] == "text_classifier"
    assert report["exports"]["text_classifier"]["labels"] == ["negative", "positive"]
    assert report["exports"]["int8"]["quantize"] == "int8"
    assert sorted(os.listdir(out)) == [
        "adapters.safetensors", "model.tflite", "model_int8.tflite",
        "model_text_classifier.tflite", "report.json", "training_curves.png"]


def test_accuracies_on_the_raw_test_strings(run):
    _, _, report = run
    keras_accuracy = report["test_accuracy"]
    assert keras_accuracy >= 0.9  # measured: 1.0 (a pretrained tiny base)
    # Float32 in MediaPipe: every label as Keras', on the 24 test strings
    # export classified, and MediaPipe's tokenizer gives keras-hub's ids.
    assert report["text_classifier_label_agreement"] == 1.0
    assert report["text_classifier_test_label_agreement"] == 1.0
    assert report["exports"]["text_classifier"]["eval_max_score_diff"] < 1e-4
    assert report["text_classifier_token_agreement"] == 1.0
    assert report["text_classifier_max_abs_diff"] < 1e-4  # measured 8e-8
    assert report["text_classifier_test_accuracy"] == keras_accuracy
    assert report["text_classifier_accuracy_diff"] == 0.0
    # Full integer: export refuses more than 1.0 point below Keras, which on
    # 24 strings is any string fewer.
    assert examples_below(report["int8_test_accuracy"], keras_accuracy, TEST_EXAMPLES) <= 0
    assert report["int8_test_accuracy"] == pytest.approx(
        keras_accuracy + report["int8_accuracy_diff"])
    assert report["int8_label_agreement"] is None  # a MediaPipe figure only
    assert report["int8_test_label_agreement"] is None
    assert report["exports"]["int8"]["float_layers"]  # kept in float, named
    assert report["exports"]["int8"]["precisions"]["int8"]


def test_the_summary_names_them(run):
    from keras_lowrank.finetune.report import summary_table

    _, _, report = run
    table = summary_table(report)
    lines = table.splitlines()
    rows = {line.split("  ")[0]: line.split() for line in lines[2:7]}
    assert rows["LiteRT + metadata (MediaPipe)"][4] == (
        f"{report['text_classifier_test_accuracy']:.4f}")
    assert rows["LiteRT (int8, full integer)"][4] == (
        f"{report['int8_test_accuracy']:.4f}")
    text_line = next(line for line in lines if line.startswith("text_classifier:"))
    assert text_line.startswith(
        "text_classifier: raw text, in MediaPipe's TextClassifier, accuracy "
        f"{report['text_classifier_test_accuracy']:.4f} on {TEST_EXAMPLES} raw "
        "test strings; batch 1 ")
    assert f"labels equal Keras' on {TEST_EXAMPLES}/{TEST_EXAMPLES} test strings" in (
        text_line)
    int8_line = next(line for line in lines if line.startswith("int8:"))
    assert f"accuracy {report['int8_test_accuracy']:.4f}" in int8_line


def test_no_phone_artifacts(tmp_path):
    from keras_lowrank.cli import finetune_command
    from keras_lowrank.cli.main import build_parser
    from keras_lowrank.finetune.options import FinetuneOptions

    def phone_artifacts(*argv):
        args = build_parser()[0].parse_args(
            ["finetune", "--out", str(tmp_path / "run"), *argv])
        return finetune_command.options_from_args(args).phone_artifacts

    assert phone_artifacts("--no-phone-artifacts") == ()
    assert phone_artifacts() == ("text_classifier", "int8")
    # Nothing exported: no phone artifact either, unless asked for.
    assert phone_artifacts("--export", "none") == ()
    assert phone_artifacts("--export", "none", "--phone-artifacts") == (
        "text_classifier", "int8")
    assert FinetuneOptions(phone_artifacts=["int8"]).phone_artifacts == ("int8",)
    assert FinetuneOptions(export=()).phone_artifacts == ()


def _cased_run(tmp_path, preset, train_csv, *argv):
    return main([
        "finetune", "--quiet", "--model", preset, "--train", train_csv,
        "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
        "--sequence-length", "12", "--batch-size", "8", "--epochs", "1", *argv])


def test_a_tokenizer_mediapipe_cannot_run_is_refused_before_training(
        tmp_path, tiny_preset, tiny_train_csv, capsys, monkeypatch):
    def fit(*args, **kwargs):
        raise AssertionError("trained before the phone artifacts were checked")

    monkeypatch.setattr(training, "fit", fit)
    code = _cased_run(tmp_path, tiny_preset, tiny_train_csv)
    out, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines() == [
        "keras-lowrank finetune: error: phone artifact 'text_classifier' (raw "
        "text in MediaPipe) cannot be made from this model: MediaPipe's "
        "WordPiece tokenizer cannot reproduce this BertTokenizer: "
        "lowercase=False (MediaPipe lowercases ASCII letters; needs True). "
        "Supported: a model whose tokenizer MediaPipe reproduces (uncased "
        "WordPiece, or uncased SentencePiece). To train this model, leave the "
        "artifact out: --no-phone-artifacts, or "
        "FinetuneOptions(phone_artifacts=('int8',))"]
    assert "[3/6] train" not in out
    assert sorted(os.listdir(tmp_path)) == ["cache"]  # nothing written


def test_export_none_makes_no_phone_artifact_and_checks_none(
        tmp_path, tiny_preset, tiny_train_csv, capsys):
    assert _cased_run(tmp_path, tiny_preset, tiny_train_csv, "--export", "none") == 0
    assert sorted(os.listdir(tmp_path / "run")) == [
        "adapters.safetensors", "report.json", "training_curves.png"]
    with open(tmp_path / "run" / "report.json", encoding="utf-8") as file:
        report = json.load(file)
    assert report["options"]["phone_artifacts"] == []
    assert report["exports"] == {}
    assert capsys.readouterr().err == ""
