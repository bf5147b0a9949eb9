"""`keras-lowrank export` through `keras_lowrank.cli.main.main`."""

import os

import pytest

from keras_lowrank.cli.main import main


@pytest.fixture(scope="module")
def saved_models(models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_models")
    paths = {}
    for name in ("dense", "bert"):
        paths[name] = str(folder / f"{name}.keras")
        models[name].save(paths[name])
    return paths


def test_bad_format_is_one_line_and_exit_2(saved_models, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    code = main(
        ["export", saved_models["dense"], "--format", "tfjs", "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.splitlines() == [
        "keras-lowrank export: error: Unrecognized format='tfjs'. Supported "
        "formats are: ['saved_model', 'tflite', 'onnx']"
    ]
    assert os.listdir(tmp_path) == []


def test_missing_model_file(tmp_path, capsys):
    code = main(["export", str(tmp_path / "none.keras"), "--format", "onnx",
                 "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("no such file: "
                                                    f"{tmp_path / 'none.keras'}")


def test_quantize_on_onnx_is_a_usage_error(saved_models, tmp_path, capsys):
    code = main(["export", saved_models["dense"], "--format", "onnx",
                 "--quantize", "dynamic", "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert "only applies to format='tflite'" in capsys.readouterr().err


def test_exports_a_saved_bert_classifier(saved_models, tmp_path, capsys):
    out = tmp_path / "bert.tflite"
    code = main(["export", saved_models["bert"], "--format", "tflite",
                 "--quantize", "dynamic", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.splitlines()[0] == "Export report: tflite (quantize=dynamic)"
    assert "inputs:        padding_mask, segment_ids, token_ids" in printed
    assert "batch sizes:   1, 8" in printed
    assert out.stat().st_size > 10_000


def test_failed_verification_exits_1_and_writes_nothing(saved_models, tmp_path,
                                                          capsys):
    code = main(["export", saved_models["bert"], "--format", "tflite",
                 "--quantize", "float16", "--atol", "0",
                 "--out", str(tmp_path / "bert.tflite")])
    err = capsys.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith("keras-lowrank export: verification failed: ")
    assert "exceeds the tolerance 0" in err
    assert os.listdir(tmp_path) == []
