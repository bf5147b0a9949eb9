"""`import keras_lowrank` on the JAX and PyTorch backends loads no TensorFlow.

Each case runs in a fresh interpreter: this test process already holds
TensorFlow, and `KERAS_BACKEND` is read once, when Keras is imported. On
PyTorch one interpreter does both cases, in order: the import check, then
the export refusal (which loads TensorFlow after the check is printed).
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Loaded only by export, where it is used.
EXPORT_ONLY = ("tensorflow", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert")

IMPORT = """
import json, sys
import keras
import keras_lowrank as klr

print(json.dumps({
    "backend": keras.backend.backend(),
    "loaded": [name for name in %r if name in sys.modules],
    "names": [name for name in ("export", "ExportReport",
              "ExportVerificationError", "UnsupportedOpsError")
              if callable(getattr(klr, name, None))],
    "errors": [issubclass(klr.ExportVerificationError, RuntimeError),
               issubclass(klr.UnsupportedOpsError, ValueError)],
}))
""" % (EXPORT_ONLY,)

# Export where TensorFlow cannot be imported, as where it is not installed.
EXPORT_WITHOUT_TENSORFLOW = """
import sys

class NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf2onnx", "tensorflow_text"):
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, NoTensorFlow())
import keras
import keras_lowrank as klr

inputs = keras.Input((4,), name="features")
model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
try:
    klr.export(model, sys.argv[1], "tflite")
except ImportError as error:
    print(type(error).__name__, error, sep=": ")
"""

EXPORT_ON_THIS_BACKEND = """
import sys
import keras
import keras_lowrank as klr

inputs = keras.Input((4,), name="features")
model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
try:
    klr.export(model, sys.argv[1], "onnx")
except ValueError as error:
    print(type(error).__name__, error, sep=": ")
"""


def _python(backend, code, *args, lines=1):
    """The last `lines` lines `code` printed (one: as a str)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip().splitlines()[-lines:]
    return printed[0] if lines == 1 else printed


@pytest.fixture(scope="module")
def torch_lines(tmp_path_factory):
    """`(import line, export line, export's folder)` of one PyTorch run."""
    folder = tmp_path_factory.mktemp("torch")
    import_line, export_line = _python(
        "torch", IMPORT + EXPORT_ON_THIS_BACKEND, str(folder / "m.onnx"), lines=2)
    return import_line, export_line, folder


# torch is in the dev extra (setup.cfg), so both backends always run.
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_import_loads_no_tensorflow(backend, request):
    if backend == "torch":
        line = request.getfixturevalue("torch_lines")[0]
    else:
        line = _python(backend, IMPORT)
    result = json.loads(line)
    assert result["backend"] == backend
    assert "tensorflow" not in result["loaded"] and "tf2onnx" not in result["loaded"]
    assert result["loaded"] == []
    assert result["names"] == [
        "export", "ExportReport", "ExportVerificationError", "UnsupportedOpsError"
    ]
    assert result["errors"] == [True, True]


def test_export_without_tensorflow_names_the_pip_command(tmp_path):
    line = _python("jax", EXPORT_WITHOUT_TENSORFLOW, str(tmp_path / "m.tflite"))
    assert line == (
        "MissingDependencyError: `tensorflow` is required for export but is "
        "not installed. Install it with: pip install 'tensorflow==2.21.0'"
    )
    assert os.listdir(tmp_path) == []


def test_export_on_another_backend_names_the_backend(torch_lines):
    _, line, folder = torch_lines
    assert line == (
        "ValueError: Export traces the model with TensorFlow and needs the "
        "TensorFlow backend: set KERAS_BACKEND=tensorflow before Keras is "
        "imported. Received: backend='torch'"
    )
    assert os.listdir(folder) == []
