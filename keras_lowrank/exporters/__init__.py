"""Verified export: SavedModel, LiteRT (TFLite) and ONNX.

`export(model, path, format)` merges LoRA adapters, writes the artifact
atomically, runs it in its own runtime at batch 1 and 8, compares it with
Keras and returns an `ExportReport`. Its options are one `ExportOptions`
(`export_options`), given as keyword arguments or whole
(`export(model, path, format, options=ExportOptions(...))`). One module
per format (`saved_model`, `tflite`, `onnx`), each defining its
`ExportFormat` record; `formats` is the registry that lists them
(`get_format(name)`).

`export(..., metadata="text_classifier")` writes a LiteRT model that takes
raw text in MediaPipe's `TextClassifier` (tokenizer and labels inside:
`text_classifier`, `export_text_classifier`). `quantize="int8"` /
`"int16x8"` (LiteRT) and `"int8"` (ONNX) calibrate on `calibration_data`
and keep the ops that break accuracy in float (`tflite_quantization`,
`onnx_quantization`); with `eval_data` an artifact is judged on its task
accuracy in its runtime (`accuracy`). Within `export_session()`, exports of
one model share its merge, SavedModel and Keras' outputs (`session`).

Importing this package imports neither TensorFlow nor a converter or
runtime: each is imported where it is first used, and a missing one fails
with the pip command that installs it.
"""

from keras_lowrank.exporters.accuracy import AccuracyDropError
from keras_lowrank.exporters.export_format import ExportFormat
from keras_lowrank.exporters.export_model import export
from keras_lowrank.exporters.export_model import validate_export_arguments
from keras_lowrank.exporters.export_options import ExportOptions
from keras_lowrank.exporters.formats import FORMATS
from keras_lowrank.exporters.formats import QUANTIZE_MODES
from keras_lowrank.exporters.formats import all_formats
from keras_lowrank.exporters.formats import get_format
from keras_lowrank.exporters.report import ExportReport
from keras_lowrank.exporters.sample_inputs import make_sample_inputs
from keras_lowrank.exporters.session import export_session
from keras_lowrank.exporters.tflite import UnsupportedOpsError
from keras_lowrank.exporters.verification import DEFAULT_TOLERANCES
from keras_lowrank.exporters.verification import ExportVerificationError

__all__ = [
    "AccuracyDropError",
    "DEFAULT_TOLERANCES",
    "ExportFormat",
    "ExportOptions",
    "ExportReport",
    "ExportVerificationError",
    "FORMATS",
    "QUANTIZE_MODES",
    "UnsupportedOpsError",
    "all_formats",
    "export",
    "export_session",
    "get_format",
    "make_sample_inputs",
    "validate_export_arguments",
]
