"""The export formats: one `ExportFormat` record each, in one registry.

Each format module defines its record as `FORMAT` (`saved_model.py`,
`tflite.py`, `onnx.py`); this list is the only place that names them all.
A new format is one module with its record, one line here, and its tests.

Example:
```python
from keras_lowrank.exporters.formats import get_format

tflite = get_format("tflite")
tflite.quantize_modes                      # (None, 'float16', 'dynamic', 'int8')
runner = tflite.runner("model.tflite")     # the LiteRT interpreter
logits = runner({"token_ids": ids, "padding_mask": mask})["output_0"]
```
"""

from keras_lowrank.exporters import onnx as onnx_format
from keras_lowrank.exporters import saved_model as saved_model_format
from keras_lowrank.exporters import tflite as tflite_format
from keras_lowrank.exporters.export_format import ExportFormat

_REGISTRY = {
    record.name: record
    for record in (
        saved_model_format.FORMAT,
        tflite_format.FORMAT,
        onnx_format.FORMAT,
    )
}

# Every format name, in registry order.
FORMATS = tuple(_REGISTRY)
# Every quantize mode of any format, None first.
QUANTIZE_MODES = tuple(
    dict.fromkeys(m for record in _REGISTRY.values() for m in record.quantize_modes)
)
# Quantize modes that only a generation-only format takes (ONNX Runtime
# GenAI's weight-only int4, MatMulNBits); which format takes which is in
# `keras_lowrank.generation.export_dispatch`.
RUNTIME_ONLY_QUANTIZE_MODES = ("int4",)


def get_format(name) -> ExportFormat:
    """The record of format `name`.

    Raises:
        ValueError: for a name that is not a registered format, listing the
            supported ones.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"Unrecognized format={name!r}. Supported formats are: {list(FORMATS)}"
        )
    return _REGISTRY[name]


def all_formats() -> tuple[ExportFormat, ...]:
    """Every record, in registry order."""
    return tuple(_REGISTRY.values())


def formats_with_option(option) -> tuple[str, ...]:
    """The names of the formats that take the export argument `option`."""
    return tuple(r.name for r in _REGISTRY.values() if option in r.options)


def calibrated_modes() -> tuple[str, ...]:
    """The quantize modes of any format that need `representative_data`."""
    return tuple(
        dict.fromkeys(m for r in _REGISTRY.values() for m in r.calibrated_modes)
    )
