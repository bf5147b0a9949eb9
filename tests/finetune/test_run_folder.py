"""`--out` always holds exactly one run: built aside, moved in at the end.

A tiny BERT preset trains one epoch in seconds; failures and Ctrl-C are
injected, and the folder holding `--out` is compared byte for byte.
"""

import json
import os

import pytest

from keras_lowrank.cli.main import main
from keras_lowrank.finetune import training
from tests.finetune.conftest import snapshot


@pytest.fixture
def runs(tmp_path):
    """`runs/run`: an earlier run folder, with artifacts."""
    run = tmp_path / "runs" / "run"
    run.mkdir(parents=True)
    for name, content in [("adapters.safetensors", b"earlier adapters"),
                          ("report.json", b'{"test_accuracy": 0.5}\n'),
                          ("training_curves.png", b"earlier png"),
                          ("model.tflite", b"earlier tflite")]:
        (run / name).write_bytes(content)
    return tmp_path / "runs"


def _finetune(tiny_preset, tiny_train_csv, tmp_path, out, *args):
    return main([
        "finetune", "--quiet", "--model", tiny_preset, "--train", tiny_train_csv,
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out),
        "--epochs", "1", "--sequence-length", "8", "--targets", "query",
        # The cased tiny preset cannot ship to MediaPipe (refused up front).
        "--no-phone-artifacts", *args])


@pytest.fixture
def export_crashes(monkeypatch):
    """The exporter writes half an artifact, then fails."""
    import keras_lowrank.exporters

    def export(model, path, format, **kwargs):
        with open(path, "wb") as file:
            file.write(b"half an artifact")
        raise RuntimeError("export crashed")

    monkeypatch.setattr(keras_lowrank.exporters, "export", export)


def test_a_failed_export_leaves_the_earlier_run_folder_as_it_was(
        tiny_preset, tiny_train_csv, tmp_path, runs, export_crashes):
    before = snapshot(runs)
    with pytest.raises(RuntimeError, match="export crashed"):
        _finetune(tiny_preset, tiny_train_csv, tmp_path, runs / "run",
                  "--export", "onnx")
    assert snapshot(runs) == before  # no new adapters, no temporary folder


def test_a_failed_first_run_leaves_no_out_folder(
        tiny_preset, tiny_train_csv, tmp_path, export_crashes):
    with pytest.raises(RuntimeError, match="export crashed"):
        _finetune(tiny_preset, tiny_train_csv, tmp_path, tmp_path / "new" / "run",
                  "--export", "onnx")
    assert sorted(os.listdir(tmp_path)) == ["cache"]


def test_a_run_replaces_the_earlier_run_folder_whole(
        tiny_preset, tiny_train_csv, tmp_path, runs, capsys):
    umask = os.umask(0o022)
    try:
        assert _finetune(tiny_preset, tiny_train_csv, tmp_path, runs / "run",
                         "--export", "none") == 0
    finally:
        os.umask(umask)
    after = snapshot(runs)
    # The earlier model.tflite went with the earlier run.
    assert sorted(after) == ["run", "run/adapters.safetensors", "run/report.json",
                             "run/training_curves.png"]
    assert {name: mode & 0o777 for name, (_, mode) in after.items()} == {
        "run": 0o755, "run/adapters.safetensors": 0o644, "run/report.json": 0o644,
        "run/training_curves.png": 0o644}
    report = json.loads(after["run/report.json"][0])
    assert report["files"] == {
        name: str(runs / "run" / file) for name, file in [
            ("adapters", "adapters.safetensors"), ("report", "report.json"),
            ("training_curves", "training_curves.png")]}
    assert report["tflite_bytes"] is None
    assert f"{runs / 'run' / 'report.json'}" in capsys.readouterr().out


def test_an_out_folder_holding_other_files_is_refused_first(
        tmp_path, runs, monkeypatch, capsys):
    (runs / "run" / "notes.txt").write_text("mine")
    before = snapshot(runs)

    def never(options):
        raise AssertionError("the data must not be loaded")

    monkeypatch.setattr(training, "load_data", never)
    out = runs / "run"
    code = main(["finetune", "--train", "any.csv", "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank finetune: error: '{out}' is an existing folder holding "
        "other files (adapters.safetensors, model.tflite, notes.txt, ...), not "
        "an earlier output of this kind (a folder with report.json and "
        "adapters.safetensors, and no files but a run's); it was left as it "
        "is. Choose another path or remove the folder."
    ]
    assert snapshot(runs) == before


def test_ctrl_c_during_training_is_one_line_and_leaves_out_as_it_was(
        tiny_preset, tiny_train_csv, tmp_path, runs, monkeypatch, capsys):
    def fit(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "fit", fit)
    before = snapshot(runs)
    code = _finetune(tiny_preset, tiny_train_csv, tmp_path, runs / "run")
    assert code == 130
    assert capsys.readouterr().err.splitlines() == [
        f"keras-lowrank finetune: interrupted, nothing written: --out "
        f"'{runs / 'run'}' is as it was"
    ]
    assert snapshot(runs) == before
    assert sorted(os.listdir(tmp_path)) == ["cache", "runs"]
