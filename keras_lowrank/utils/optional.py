"""Lazy imports of TensorFlow, the optional runtimes and the converters.

Nothing here imports at module level: `import keras_lowrank` on the JAX or
PyTorch backend loads neither TensorFlow nor tf2onnx. A module that needs
TensorFlow takes `tensorflow` from here (`from ... import tensorflow as tf`),
a `LazyModule` that imports it on the first attribute access.
"""

import importlib

# The versions of `setup.cfg`, known to work with each other.
_PIP_SPECS = {
    "ai_edge_litert": "ai-edge-litert==2.3.0",
    "onnx": "onnx==1.23.2",
    "onnxruntime": "onnxruntime==1.32.0",
    "tensorflow": "tensorflow==2.21.0",
    "tf2onnx": "tf2onnx==1.17.0",
}


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message gives the pip command."""


def import_optional(name, purpose):
    """Imports module `name`, or fails with the pip command that installs it.

    Args:
        name: the module, one of `ai_edge_litert`, `onnx`, `onnxruntime`,
            `tensorflow`, `tf2onnx` (or a submodule of one).
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


class LazyModule:
    """A module imported on first use (as Keras' own LazyModule).

    Args:
        name: the module, a key of the pip commands above.
        purpose: what it is needed for, for the error when it is missing.

    Example:
    ```python
    tf = LazyModule("tensorflow", "for export")
    tf.TensorSpec((None, 4))   # imports TensorFlow here, or names pip
    ```
    """

    def __init__(self, name, purpose):
        self._name = name
        self._purpose = purpose
        self._module = None

    def load(self):
        """The module; raises `MissingDependencyError` when it is missing."""
        if self._module is None:
            self._module = import_optional(self._name, self._purpose)
        return self._module

    def __getattr__(self, attribute):
        if "_name" not in self.__dict__:  # half-built, as by copy.copy
            raise AttributeError(attribute)
        return getattr(self.load(), attribute)


tensorflow = LazyModule("tensorflow", "for export")
