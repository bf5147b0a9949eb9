"""`keras-lowrank finetune` on bad input: one stderr line, exit code 2.

Every case fails in the data stage or before it, so no model is loaded
(but one: the maximum sequence length of a model known only once loaded).
"""

import json
import os

import pytest

from keras_lowrank.cli.main import main


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _run(capsys, tmp_path, *args):
    code = main(["finetune", "--quiet", "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "out"), *args])
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines()


def _assert_one_line(code, err, *fragments):
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith("keras-lowrank finetune: error: ")
    assert "Traceback" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


def test_missing_train_file(capsys, tmp_path):
    missing = str(tmp_path / "missing.csv")
    code, err = _run(capsys, tmp_path, "--train", missing)
    _assert_one_line(code, err, f"{missing}: no such file")


def test_empty_train_file(capsys, tmp_path):
    empty = _write(tmp_path / "empty.csv", "")
    code, err = _run(capsys, tmp_path, "--train", empty)
    _assert_one_line(code, err, f"{empty}: the file is empty")


def test_unknown_label_names_file_and_line(capsys, tmp_path):
    train = _write(tmp_path / "train.csv",
                   "text,label\ngreat film,pos\nawful,neg\nso-so,meh\n")
    code, err = _run(capsys, tmp_path, "--train", train, "--labels", "neg", "pos")
    _assert_one_line(code, err, f"{train}:4:", "unknown label 'meh'")


def test_label_missing_from_training_data(capsys, tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\n" + "".join(
        f"review {i},{'pos' if i % 2 else 'neg'}\n" for i in range(20)))
    test = _write(tmp_path / "test.csv", "text,label\nfine,pos\nso-so,meh\n")
    code, err = _run(capsys, tmp_path, "--train", train, "--test", test)
    _assert_one_line(code, err, f"{test}:3:", "unknown label 'meh'")


def test_training_data_of_one_class(capsys, tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\n" + "".join(
        f"review {i},pos\n" for i in range(20)))
    code, err = _run(capsys, tmp_path, "--train", train)
    assert (code, err) == (2, [
        f"keras-lowrank finetune: error: {train}: the training data holds one "
        "class, ['pos']; a classifier needs at least two. Add training "
        "examples of another class"])
    assert sorted(os.listdir(tmp_path)) == ["cache", "train.csv"]


def test_missing_label_column_names_file_and_line(capsys, tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\ngreat film,pos\n")
    code, err = _run(capsys, tmp_path, "--train", train, "--label-column", "sentiment")
    _assert_one_line(code, err, f"{train}:1:", "no column 'sentiment'")


def test_malformed_jsonl_line_in_test_file(capsys, tmp_path):
    train = _write(tmp_path / "train.jsonl",
                   '{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n')
    test = _write(tmp_path / "test.jsonl", '{"text": "fine", "label": 1}\n{oops\n')
    code, err = _run(capsys, tmp_path, "--train", train, "--test", test)
    _assert_one_line(code, err, f"{test}:2:", "malformed JSON")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--rank", "0"], "rank must be a positive integer. Received: rank=0"),
        (["--export", "none", "onnx"], "--export none cannot be combined"),
        (["--export", "coreml"], "Unrecognized or repeated export format in "
         "--export coreml. Supported formats are: ['tflite', 'onnx', 'none'] "
         "(none: export nothing)"),
        (["--tflite-quantize", "int4"], "Unrecognized tflite_quantize='int4'"),
        (["--learning-rate", "-1"], "learning_rate must be a number > 0"),
    ],
)
def test_bad_options(capsys, tmp_path, args, fragment):
    code, err = _run(capsys, tmp_path, *args)
    _assert_one_line(code, err, fragment)
    assert os.listdir(tmp_path) == []  # nothing written


def test_missing_model_folder(capsys, tmp_path):
    train = _write(tmp_path / "train.csv",
                   "text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))
    missing = str(tmp_path / "no_model")
    code, err = _run(capsys, tmp_path, "--train", train, "--model", missing)
    _assert_one_line(code, err, missing)


@pytest.fixture
def data_never_loaded(monkeypatch):
    from keras_lowrank.finetune import training

    def never(options):
        raise AssertionError("the data must not be loaded")

    monkeypatch.setattr(training, "load_data", never)


def _config_folder(tmp_path, config):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize(
    "config, length, maximum",
    [
        ({"model_type": "bert", "max_position_embeddings": 512}, 513, 512),
        ({"class_name": "BertBackbone", "config": {"max_sequence_length": 12}},
         64, 12),
    ],
    ids=["hugging_face_folder", "keras_hub_preset"],
)
def test_sequence_length_above_the_models_maximum_fails_first(
        capsys, tmp_path, data_never_loaded, config, length, maximum):
    model = _config_folder(tmp_path, config)
    code, err = _run(capsys, tmp_path, "--train", "any.csv", "--model", model,
                     "--sequence-length", str(length))
    assert (code, err) == (2, [
        f"keras-lowrank finetune: error: sequence_length must be at most "
        f"{maximum}, the longest input of model '{model}' (its "
        f"max_sequence_length). Received: sequence_length={length}"])
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_sequence_length_above_the_default_models_maximum(
        capsys, tmp_path, data_never_loaded):
    code, err = _run(capsys, tmp_path, "--sequence-length", "513")
    assert (code, err) == (2, [
        "keras-lowrank finetune: error: sequence_length must be at most 512, "
        "the longest input of model 'all-MiniLM-L6-v2' (its "
        "max_sequence_length). Received: sequence_length=513"])


def test_a_model_without_config_is_checked_once_loaded(
        capsys, tmp_path, tiny_preset, tiny_train_csv, monkeypatch):
    # A preset name has no config.json to read first: the loaded backbone's
    # maximum is checked before tokenizing.
    from keras_lowrank.finetune import model_source
    from keras_lowrank.finetune import training

    def never(*args):
        raise AssertionError("the data must not be tokenized")

    monkeypatch.setattr(model_source, "config_max_sequence_length", lambda source: None)
    monkeypatch.setattr(training, "tokenize", never)
    code, err = _run(capsys, tmp_path, "--train", tiny_train_csv, "--model",
                     tiny_preset, "--sequence-length", "13")
    assert (code, err) == (2, [
        "keras-lowrank finetune: error: sequence_length must be at most 12, "
        f"the longest input of model '{tiny_preset}' (its max_sequence_length). "
        "Received: sequence_length=13"])
    assert sorted(os.listdir(tmp_path)) == ["cache"]


@pytest.mark.parametrize("length", ["1", "2"])
def test_sequence_length_too_short_for_any_text(capsys, tmp_path, length):
    code, err = _run(capsys, tmp_path, "--sequence-length", length)
    assert (code, err) == (2, [
        "keras-lowrank finetune: error: sequence_length must be at least 3: "
        "BERT packs [CLS] and [SEP] around each text, so a shorter one holds "
        f"no text. Received: sequence_length={length}"])
    assert os.listdir(tmp_path) == []
