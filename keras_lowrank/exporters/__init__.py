"""Verified export: SavedModel, LiteRT (TFLite) and ONNX.

`export(model, path, format)` merges LoRA adapters, writes the artifact
atomically, runs it in its own runtime at batch 1 and 8, compares it with
Keras and returns an `ExportReport`. One module per format: `saved_model`,
`tflite`, `onnx`.
"""

from keras_lowrank.exporters.export_model import FORMATS
from keras_lowrank.exporters.export_model import QUANTIZE_MODES
from keras_lowrank.exporters.export_model import export
from keras_lowrank.exporters.export_model import validate_export_arguments
from keras_lowrank.exporters.report import ExportReport
from keras_lowrank.exporters.sample_inputs import make_sample_inputs
from keras_lowrank.exporters.tflite import UnsupportedOpsError
from keras_lowrank.exporters.verification import DEFAULT_TOLERANCES
from keras_lowrank.exporters.verification import ExportVerificationError

__all__ = [
    "DEFAULT_TOLERANCES",
    "ExportReport",
    "ExportVerificationError",
    "FORMATS",
    "QUANTIZE_MODES",
    "UnsupportedOpsError",
    "export",
    "make_sample_inputs",
    "validate_export_arguments",
]
