"""Lazy imports of the optional runtimes and converters."""

import importlib

# The versions of `setup.cfg`, known to work with the pinned TensorFlow.
_PIP_SPECS = {
    "ai_edge_litert": "ai-edge-litert==2.3.0",
    "onnx": "onnx==1.23.2",
    "onnxruntime": "onnxruntime==1.32.0",
    "tf2onnx": "tf2onnx==1.17.0",
}


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message gives the pip command."""


def import_optional(name, purpose):
    """Imports module `name`, or fails with the pip command that installs it.

    Args:
        name: the module, one of `ai_edge_litert`, `onnx`, `onnxruntime`,
            `tf2onnx`.
        purpose: what it is needed for, e.g. `"to verify TFLite artifacts"`.

    Raises:
        MissingDependencyError: `name` cannot be imported.
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        spec = _PIP_SPECS[name.split(".")[0]]
        raise MissingDependencyError(
            f"`{name}` is required {purpose} but is not installed. "
            f"Install it with: pip install '{spec}'",
            name=name,
        ) from error
