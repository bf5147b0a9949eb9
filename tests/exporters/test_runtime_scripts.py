"""export/run_tflite.py and export/run_onnx.py where TensorFlow and Keras
cannot be imported, as on a serving machine that only has the runtime."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.exporters.helpers import keras_call
from tests.exporters.helpers import runtime_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = {
    "tflite": os.path.join(ROOT, "export", "run_tflite.py"),
    "onnx": os.path.join(ROOT, "export", "run_onnx.py"),
}
# Runs a script after making every import of TensorFlow or Keras fail.
NO_TENSORFLOW = """
import runpy, sys

class NoTensorFlow:
    BLOCKED = ("tensorflow", "keras", "tf_keras", "keras_hub", "tensorflow_text")

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, NoTensorFlow())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run_without_tensorflow(*args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW, *map(str, args)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )


def test_the_prelude_blocks_tensorflow(tmp_path):
    script = tmp_path / "uses_tf.py"
    script.write_text("import tensorflow\n")
    result = _run_without_tensorflow(script)
    assert result.returncode != 0
    assert "ImportError: tensorflow is not installed here" in result.stderr


@pytest.mark.parametrize("input_format", ["npz", "json"])
@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_script_runs_an_artifact_without_tensorflow(
    models, exported, tmp_path, format, input_format
):
    inputs = runtime_inputs("bert", 3, length=12)
    path = tmp_path / f"inputs.{input_format}"
    if input_format == "npz":
        np.savez(path, **inputs)
    else:
        path.write_text(json.dumps({k: v.tolist() for k, v in inputs.items()}))
    saved = tmp_path / "outputs.npz"
    result = _run_without_tensorflow(
        SCRIPTS[format], exported("bert", format).path, "--inputs", path,
        "--repeats", 5, "--save-outputs", saved,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "output_0: shape=(3, 2) dtype=float32"
    assert lines[-1].startswith("latency: ")
    assert lines[-1].endswith(" ms (median of 5 runs, batch 3)")
    expected = keras_call(models["bert"], "bert", inputs)["output_0"]
    with np.load(saved) as outputs:
        assert float(np.max(np.abs(outputs["output_0"] - expected))) <= 1e-4


@pytest.mark.parametrize("format", ["tflite", "onnx"])
def test_script_names_the_missing_inputs(exported, tmp_path, format):
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"token_ids": [[1, 2]]}))
    result = _run_without_tensorflow(
        SCRIPTS[format], exported("gpt2", format).path, "--inputs", path
    )
    assert result.returncode != 0
    assert "ValueError: The model takes inputs ['padding_mask', 'token_ids']. " \
           "Missing: ['padding_mask']; unknown: []" in result.stderr
