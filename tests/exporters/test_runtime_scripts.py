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
        if name.split(".")[0] in self.BLOCKED:  # as for a missing package
            raise ModuleNotFoundError(f"{name} is not installed here")
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
    assert "ModuleNotFoundError: tensorflow is not installed here" in result.stderr


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
    # The BERT artifacts of the test above: no export of its own.
    result = _run_without_tensorflow(
        SCRIPTS[format], exported("bert", format).path, "--inputs", path
    )
    assert result.returncode != 0
    assert "ValueError: The model takes inputs ['padding_mask', 'segment_ids', " \
           "'token_ids']. Missing: ['padding_mask', 'segment_ids']; unknown: []" \
           in result.stderr


def test_text_classifier_script_takes_raw_text_without_tensorflow(text_model, tmp_path):
    """export/run_text_classifier.py: MediaPipe only, strings in, labels out."""
    import keras_lowrank as klr
    from tests.exporters.text_models import TEXTS

    path = tmp_path / "classifier.tflite"
    klr.export(text_model, path, "tflite", metadata="text_classifier",
               labels=["negative", "positive"], sample_inputs=TEXTS)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[2:]) + "\n")
    script = os.path.join(ROOT, "export", "run_text_classifier.py")
    result = _run_without_tensorflow(
        script, path, TEXTS[0], TEXTS[1], "--texts", texts, "--repeats", 2, "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == TEXTS
    logits = np.asarray(text_model.predict(TEXTS, verbose=0), dtype="float64")
    expected = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    scores = np.array([[row["scores"]["negative"], row["scores"]["positive"]]
                       for row in rows])
    assert np.max(np.abs(scores - expected)) < 1e-5
    assert [row["label"] for row in rows] == [
        ["negative", "positive"][i] for i in expected.argmax(-1)
    ]
    assert all(row["latency_ms"] > 0 for row in rows)
