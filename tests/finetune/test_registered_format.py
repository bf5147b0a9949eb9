"""A format added to the exporters' registry reaches finetune and the CLI.

Neither names the formats: they read the registry. The formats registered
here by the `register_format` fixture (tests/finetune/conftest.py) are
accepted, named, run, reported and listed with no change to their code.
"""

import os
import re

import numpy as np
import pytest

from keras_lowrank.cli.main import main
from keras_lowrank.exporters import formats
from keras_lowrank.finetune import evaluation
from keras_lowrank.finetune import pipeline
from keras_lowrank.finetune import report as report_lib
from keras_lowrank.runs import run_folder
from keras_lowrank.finetune.options import FinetuneOptions


def test_a_registered_format_is_accepted_by_finetune_options(register_format):
    before = run_folder.export_formats()
    with pytest.raises(ValueError, match=r"Unrecognized or repeated export "
                       r"format in export=\['dummy'\]\. Supported formats are: "
                       + re.escape(str(list(before))) + "$"):
        FinetuneOptions(export=["dummy"])
    register_format()
    assert FinetuneOptions(export=["tflite", "dummy"]).export == ("tflite", "dummy")
    assert run_folder.export_formats() == (*before, "dummy")
    assert run_folder.artifact_file("dummy") == "model.dummy"
    with pytest.raises(ValueError, match=r"Supported formats are: \[.*'dummy'\]$"):
        FinetuneOptions(export=["coreml"])
    # The default stays a choice of finetune.
    assert FinetuneOptions().export == ("tflite", "onnx")


def test_a_registered_folder_format_is_not_a_run_export(register_format):
    before = run_folder.export_formats()
    register_format(name="dummy_folder", directory=True, suffix="")
    assert run_folder.export_formats() == before
    with pytest.raises(ValueError, match=r"^export format 'dummy_folder' "
                       r"\(Dummy\) writes a folder, but a run folder holds one "
                       r"file per artifact\. Supported formats are: "
                       + re.escape(str(list(before))) + "$"):
        FinetuneOptions(export=["dummy_folder"])


def test_tflite_quantize_is_litert_s_only(register_format):
    # A registered format that takes quantize modes does not get LiteRT's.
    register_format(options=("quantize",), quantize_modes=(None, "float16"))
    options = FinetuneOptions(export=["tflite", "dummy"], tflite_quantize="dynamic")
    assert options.tflite_quantize == "dynamic"


class _ExportReport:
    def __init__(self, size, quantize):
        self.size, self.quantize = size, quantize

    def to_dict(self):
        return {"size_bytes": self.size, "quantize": self.quantize,
                "latency_ms": 0.5, "max_abs_diff": 0.0}


@pytest.fixture
def exports(monkeypatch):
    """`export` writes an artifact the dummy runner reads; calls are kept."""
    import keras_lowrank.exporters

    calls = []

    def export(model, path, format, quantize=None, sample_inputs=None):
        calls.append((format, quantize, os.path.basename(path)))
        with open(path, "wb") as file:
            file.write(b"dummy artifact")
        return _ExportReport(os.path.getsize(path), quantize)

    monkeypatch.setattr(keras_lowrank.exporters, "export", export)
    return calls


def _test_split():
    token_ids = np.array([[101, 7, 102, 0], [101, 8, 9, 102], [101, 3, 102, 0],
                          [101, 4, 5, 102], [101, 11, 102, 0], [101, 6, 102, 0]],
                         dtype="int32")  # (6, 4)
    labels = token_ids[:, 1] % 2
    labels[0] = 1 - labels[0]  # the dummy runner gets 5 of 6 right
    return {"token_ids": token_ids, "padding_mask": token_ids != 0}, labels


def test_the_pipeline_names_runs_and_reports_a_registered_format(
        register_format, exports, tmp_path):
    register_format()
    register_format(name="dummy_q", title="Dummy Q", suffix=".dq",
                    options=("quantize",), quantize_modes=(None, "dynamic"))
    options = FinetuneOptions(out=str(tmp_path / "run"), batch_size=4,
                              export=["dummy", "dummy_q"])
    build = tmp_path / "build"
    build.mkdir()
    test = _test_split()
    results = {format: pipeline._export_and_evaluate(None, format, test, options,
                                                     str(build))
               for format in options.export}
    # tflite_quantize is LiteRT's: a registered format taking quantize
    # modes is exported in float32 too.
    assert exports == [("dummy", None, "model.dummy"),
                       ("dummy_q", None, "model.dq")]
    assert results["dummy"]["path"] == str(tmp_path / "run" / "model.dummy")
    # Measured by the record's runner, on every test row.
    assert results["dummy"]["evaluation"]["accuracy"] == 5 / 6
    assert results["dummy_q"]["evaluation"]["examples"] == 6

    values = report_lib.format_values("dummy", results["dummy"], 1.0)
    assert values == {"dummy_test_accuracy": 5 / 6,
                      "dummy_accuracy_diff": pytest.approx(-1 / 6),
                      "dummy_bytes": 14, "dummy_latency_ms": 0.5,
                      "dummy_max_abs_diff": 0.0}
    assert "dummy_q_bytes" in report_lib.required_keys()
    report = {"test_accuracy": 1.0, "base_bytes": 1000, "adapter_bytes": 10,
              "trainable_params": 10, "total_params": 1000, "epochs_run": 1,
              "train_seconds": 1.0, "best_epoch": 1, "stage_seconds": {},
              "total_seconds": 1.0, "exports": results, **values,
              **report_lib.format_values("dummy_q", results["dummy_q"], 1.0)}
    table = report_lib.summary_table(report)
    assert table.splitlines()[4:6] == [
        "Dummy                 0.8333         14 B    0.5 ms",
        "Dummy Q               0.8333         14 B    0.5 ms",
    ]

    for name in ("report.json", "adapters.safetensors"):
        (build / name).write_text("{}")
    assert run_folder.is_run_folder(str(build))


def test_the_artifact_predictor_is_the_records_runner(register_format, tmp_path):
    register_format()
    path = tmp_path / "model.dummy"
    path.write_bytes(b"dummy artifact")
    inputs, labels = _test_split()
    accuracy = evaluation.artifact_accuracy("dummy", path, inputs, labels, 4)
    assert (accuracy["accuracy"], accuracy["examples"]) == (5 / 6, 6)
    with pytest.raises(ValueError, match=r"^Unrecognized format='coreml'\. "
                       r"Supported formats are: \['saved_model', 'tflite', "
                       r"'onnx'"):
        evaluation.artifact_predictor("coreml", path)


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_a_registered_format_appears_in_the_cli_help(register_format, capsys):
    register_format(options=("quantize",), quantize_modes=(None, "int4"))
    printed = _help(capsys, "export")
    assert re.search(r"--format FORMAT saved_model \(SavedModel\), .*, dummy "
                     r"\(Dummy\), litertlm .* --out", printed)
    assert re.search(r"--quantize QUANTIZE tflite, onnx or dummy only: "
                     r"float16, .* or int4; litertlm: dynamic; onnx_genai: int4 or int8 "
                     r"\(default: none\)", printed)
    assert re.search(r"formats among tflite, .*, dummy, or none \(default: "
                     r"tflite onnx; causal-lm: tflite\)", _help(capsys, "finetune"))
    assert re.search(r"exported to SavedModel, .* and Dummy\.", _help(capsys))


def test_the_help_without_a_registered_format(capsys):
    printed = _help(capsys, "export")
    assert ("--format FORMAT saved_model (SavedModel), tflite (LiteRT), onnx "
            "(ONNX), litertlm (LiteRT-LM bundle, causal LM only) or onnx_genai "
            "(ONNX Runtime GenAI folder, causal LM only)") in printed
    assert ("--quantize QUANTIZE tflite or onnx only: float16, dynamic, int8 "
            "or int16x8") in printed
    assert "--opset OPSET onnx only: the opset version" in printed
    assert ("--representative-data REPRESENTATIVE_DATA int8 or int16x8 "
            "only:") in printed
    printed = _help(capsys, "finetune")
    assert "export LiteRT and ONNX artifacts (by default)" in printed
    assert ("--tflite-quantize TFLITE_QUANTIZE LiteRT quantization, one of "
            "none, float16, dynamic (default: dynamic; --task causal-lm: "
            "none or dynamic, default none, for tflite and litertlm)") in printed


def test_the_fixture_removed_what_it_registered():
    # Runs after the tests above, in file order.
    assert formats.FORMATS == tuple(r.name for r in formats.all_formats())
