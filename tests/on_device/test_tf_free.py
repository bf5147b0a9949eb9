"""The on-device runner's modules and script import neither TensorFlow nor Keras."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOAD = """
import importlib.util, sys
for name in ("standalone", "trainer", "text_batches", "adapter_writer"):
    spec = importlib.util.spec_from_file_location(
        "_klr_" + name, "keras_lowrank/on_device/" + name + ".py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "keras_lowrank")))
"""


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_modules_load_without_tensorflow_or_keras():
    result = run("-c", LOAD)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_script_bad_input_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "adapter.safetensors"
    result = run("export/train_on_device.py", str(tmp_path / "missing.tflite"),
                 "--train", str(tmp_path / "train.jsonl"), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr == f"train_on_device.py: error: No file at '{tmp_path / 'missing.tflite'}'.\n"
    not_artifact = tmp_path / "plain.tflite"
    not_artifact.write_bytes(b"TFL3 not a zip")
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": 0}\n')
    result = run("export/train_on_device.py", str(not_artifact),
                 "--train", str(tmp_path / "train.jsonl"), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "it is not a trainable artifact" in result.stderr
    assert not out.exists()
