"""Loading this package's TF-free modules by path, without the package.

`export/train_on_device.py` runs on a machine with LiteRT and no TensorFlow
or Keras, so it cannot import `keras_lowrank` (whose `__init__` imports
Keras). It loads this file by path as `_klr_standalone` first; the modules it
then loads (`trainer`, `text_batches`, `adapter_writer`) find their own
dependencies through `load`, and under the package import them normally.
"""

import importlib.util
import os
import sys

NAME = "_klr_standalone"


def load(relative):
    """`keras_lowrank/<relative>.py` (relative to this folder, e.g.
    `"artifact_files"` or `"../utils/atomic"`), loaded once by path and
    kept in `sys.modules` as `_klr_<basename>`."""
    name = "_klr_" + os.path.basename(relative)
    if name not in sys.modules:
        here = os.path.dirname(os.path.abspath(__file__))
        spec = importlib.util.spec_from_file_location(name, os.path.join(here, f"{relative}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
