"""Every private attribute of another library that keras_lowrank relies on.

One module per library: `keras`, `keras_hub`, `litert` (`ai_edge_litert`),
`mediapipe`, `tensorflow`, `tf2onnx`, `tfds` (tensorflow-datasets). Outside this
package, keras_lowrank uses only public APIs
(`tests/compat/test_no_private_access_outside.py` checks it). Each function
has a test of its own in `tests/compat/test_<module>.py` that fails when the
library changes the private thing it relies on, so an upgrade breaks a named
test, not the package somewhere unknown.

Import the module of the library: `from keras_lowrank._compat import keras
as keras_compat`, then `keras_compat.sublayers(layer)`.
"""

# The path used before the split into one module per library, kept for
# `keras_lowrank.lm_finetune`, which names it.
from keras_lowrank._compat.keras_hub import restore_dropped_config  # noqa: F401
