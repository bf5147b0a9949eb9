"""`keras-lowrank export` through `keras_lowrank.cli.main.main`."""

import os
import sys

import keras
import keras_hub
import numpy as np
import pytest

import keras_lowrank as klr
from keras_lowrank.cli.main import main
from tests import tiny_models as tiny
from tests.exporters.helpers import run_tflite


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
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank export: error: MODEL '{tmp_path / 'none.keras'}' does "
        "not exist. Give a .keras file or a model folder."
    ]


def test_a_quantize_mode_onnx_lacks_is_a_usage_error(saved_models, tmp_path, capsys):
    code = main(["export", saved_models["dense"], "--format", "onnx",
                 "--quantize", "float16", "--out", str(tmp_path / "m.onnx")])
    assert code == 2
    assert ("format='onnx' supports quantize in [None, 'dynamic', 'int8']. "
            "Received: quantize='float16'") in capsys.readouterr().err


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


# === A base preset folder plus --adapters FILE ===


@pytest.fixture(scope="module")
def preset_and_adapters(tmp_path_factory):
    """`(adapted model, base preset folder, adapter file)`, tiny BERT."""
    folder = tmp_path_factory.mktemp("preset_export")
    keras.utils.set_random_seed(3)
    base = tiny.bert_classifier()
    base.save_to_preset(str(folder / "base"))
    adapted = klr.add_adapters(base, rank=2)
    rng = np.random.default_rng(0)
    for weight in adapted.trainable_weights:  # adapters and the head
        weight.assign(rng.normal(0, 0.2, weight.shape).astype("float32"))
    klr.save_adapters(adapted, folder / "adapters.safetensors")
    return adapted, str(folder / "base"), str(folder / "adapters.safetensors")


def test_exports_a_preset_folder_with_an_adapter_file(preset_and_adapters,
                                                      tmp_path, capsys):
    adapted, base, adapters = preset_and_adapters
    out = tmp_path / "adapted.tflite"
    code = main(["export", base, "--adapters", adapters, "--format", "tflite",
                 "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.err == ""
    printed = captured.out.splitlines()
    assert printed[0] == "Export report: tflite"
    diff_line = next(line for line in printed if "max abs diff:" in line)
    reported = float(diff_line.split()[3])
    assert reported < 1e-4
    # The artifact computes the adapted model, which the adapters changed.
    x = tiny.bert_inputs(batch=4)
    expected = np.asarray(adapted(x, training=False))
    actual = next(iter(run_tflite(str(out), x).values()))
    assert np.abs(actual - expected).max() < 1e-4
    base_model = keras_hub.models.BertTextClassifier.from_preset(base)
    assert np.abs(np.asarray(base_model(x, training=False)) - expected).max() > 1e-2


def test_an_adapter_file_that_does_not_fit_is_one_line(preset_and_adapters,
                                                       tmp_path, capsys):
    _, base, _ = preset_and_adapters
    deeper = keras_hub.models.BertTextClassifier(
        keras_hub.models.BertBackbone(
            vocabulary_size=tiny.VOCAB, num_layers=3, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=tiny.SEQ,
        ),
        num_classes=2, preprocessor=None,
    )
    adapters = tmp_path / "deeper.safetensors"
    klr.save_adapters(klr.add_adapters(deeper, rank=2), adapters)
    out = tmp_path / "m.tflite"
    code = main(["export", base, "--adapters", str(adapters), "--format",
                 "tflite", "--out", str(out)])
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("keras-lowrank export: error: ")
    assert "'transformer_layer_2/self_attention_layer/query'" in err[0]
    assert not out.exists()


def test_a_non_safetensors_adapter_file_is_one_line(preset_and_adapters,
                                                    tmp_path, capsys):
    _, base, _ = preset_and_adapters
    adapters = tmp_path / "adapters.safetensors"
    adapters.write_text("not an adapter file at all\n")
    code = main(["export", base, "--adapters", str(adapters), "--format",
                 "tflite", "--out", str(tmp_path / "m.tflite")])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank export: error: '{adapters}' is not a safetensors "
        "adapter file (Error while deserializing header: header too large). "
        "Give a file written by save_adapters."
    ]
    assert os.listdir(tmp_path) == ["adapters.safetensors"]


def test_bad_quantize_is_one_line(preset_and_adapters, tmp_path, capsys):
    _, base, adapters = preset_and_adapters
    code = main(["export", base, "--adapters", adapters, "--format", "tflite",
                 "--quantize", "int2", "--out", str(tmp_path / "m.tflite")])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "keras-lowrank export: error: Unrecognized quantize='int2'. Supported "
        "values are: [None, 'float16', 'dynamic', 'int8', 'int16x8', 'int4']"
    ]
    assert os.listdir(tmp_path) == []


def test_a_saved_model_folder_holding_other_files_is_refused_first(
        occupied_folder, model_never_loaded, capsys):
    out = occupied_folder
    code = main(["export", "any.keras", "--format", "saved_model",
                 "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank export: error: '{out}' is an existing folder holding "
        "other files (notes.txt), not an earlier output of this kind (a folder "
        "with saved_model.pb); it was left as it is. Choose another path or "
        "remove the folder."
    ]
    assert os.listdir(out) == ["notes.txt"]


def test_a_missing_converter_is_one_line(saved_models, tmp_path, capsys,
                                         monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import fails
    out = tmp_path / "m.onnx"
    code = main(["export", saved_models["dense"], "--format", "onnx",
                 "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "keras-lowrank export: error: `tf2onnx` is required to export ONNX but "
        "is not installed. Install it with: pip install 'tf2onnx==1.17.0'"
    ]
    assert os.listdir(tmp_path) == []


def test_the_command_passes_one_options_object(saved_models, tmp_path, capsys,
                                               monkeypatch):
    from keras_lowrank import exporters

    calls = []
    monkeypatch.setattr(exporters, "export", lambda model, path, format, **kw:
                        calls.append((path, format, kw)) or "the report")
    rows = {"features": np.arange(12, dtype="float32").reshape(2, 6)}
    np.savez(tmp_path / "rows.npz", **rows)
    out = str(tmp_path / "m.onnx")
    code = main(["export", saved_models["dense"], "--format", "onnx", "--out",
                 out, "--quantize", "int8", "--representative-data",
                 str(tmp_path / "rows.npz"), "--sample-inputs",
                 str(tmp_path / "rows.npz"), "--opset", "17", "--no-verify"])
    assert code == 0 and capsys.readouterr().out == "the report\n"
    [(path, format, kwargs)] = calls
    assert (path, format, list(kwargs)) == (out, "onnx", ["options"])
    options = kwargs["options"]
    assert isinstance(options, exporters.ExportOptions)
    assert (options.quantize, options.opset, options.verify) == ("int8", 17, False)
    assert options.atol is None and options.allow_flex is False
    np.testing.assert_array_equal(options.sample_inputs["features"], rows["features"])
    # The calibration file becomes one batch per row.
    assert [batch["features"].shape for batch in options.representative_data] == [
        (1, 6), (1, 6)]
    assert os.listdir(tmp_path) == ["rows.npz"]
