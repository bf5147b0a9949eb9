"""`is_run_folder`: which earlier `--out` a run may replace."""

from keras_lowrank.runs import run_folder


def _earlier_run(tmp_path, *files, folders=()):
    for name in (run_folder.REPORT_FILE, run_folder.ADAPTERS_FILE, *files):
        (tmp_path / name).write_text("x")
    for name in folders:
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.onnx").write_text("x")
    return str(tmp_path)


def test_a_causal_lm_run_with_runtime_artifacts_is_a_run_folder(tmp_path):
    assert run_folder.RUNTIME_ARTIFACTS == {
        "litertlm": "model.litertlm", "onnx_genai": "onnx_genai",
        "litertlm_lora": "litertlm_lora"}
    folder = _earlier_run(tmp_path, "model.litertlm", "model.tflite",
                          folders=["onnx_genai", "litertlm_lora"])
    assert run_folder.is_run_folder(folder)


def test_the_runtime_names_as_the_wrong_kind_are_the_users(tmp_path):
    # A file named like the GenAI folder, or a folder named like the bundle.
    file, folder = tmp_path / "file", tmp_path / "folder"
    file.mkdir()
    folder.mkdir()
    assert not run_folder.is_run_folder(_earlier_run(file, "onnx_genai"))
    assert not run_folder.is_run_folder(_earlier_run(folder, folders=["model.litertlm"]))


def test_anything_else_is_the_users(tmp_path):
    assert not run_folder.is_run_folder(_earlier_run(tmp_path, "notes.txt"))
