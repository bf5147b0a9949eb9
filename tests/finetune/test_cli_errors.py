"""`keras-lowrank finetune` on bad input: one stderr line, exit code 2.

Every case fails in the data stage or before it, so no model is loaded.
"""

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
        (["--export", "coreml"], "Unrecognized or repeated export format"),
        (["--tflite-quantize", "int4"], "Unrecognized tflite_quantize='int4'"),
        (["--learning-rate", "-1"], "learning_rate must be a number > 0"),
    ],
)
def test_bad_options(capsys, tmp_path, args, fragment):
    code, err = _run(capsys, tmp_path, *args)
    _assert_one_line(code, err, fragment)


def test_missing_model_folder(capsys, tmp_path):
    train = _write(tmp_path / "train.csv",
                   "text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))
    missing = str(tmp_path / "no_model")
    code, err = _run(capsys, tmp_path, "--train", train, "--model", missing)
    _assert_one_line(code, err, missing)
