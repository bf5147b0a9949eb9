"""`ExportFormat`: everything the library knows about one export format."""

import dataclasses
from collections.abc import Callable

# The export arguments a format may take besides the model and the path.
FORMAT_OPTIONS = ("quantize", "allow_flex", "representative_data", "opset")


def _no_notes(ops):
    return ()


def _never_unverifiable(error):
    return None


@dataclasses.dataclass(frozen=True)
class ExportFormat:
    """One export format: what it writes, what it takes, how it runs.

    Each format module (`saved_model.py`, `tflite.py`, `onnx.py`) defines
    its record as `FORMAT`; `keras_lowrank.exporters.formats` lists them.
    `export`, its argument checks and the evaluation of artifacts read the
    record instead of checking format names.

    Args:
        name: str. The `format=` value, e.g. `"tflite"`.
        title: str. The name people know it by, e.g. `"LiteRT"`.
        directory: bool. Whether the artifact is a folder (else one file).
        suffix: str. The usual ending of the artifact's name, e.g.
            `".tflite"`; `""` for a folder.
        write: callable `(model, signature, path, **options) -> None`. Writes
            the merged Keras model at `path` (a folder that does not exist
            yet, or an empty file). `options` are the format's own `options`,
            by name.
        runner: callable `(path) -> runner`. Loads the artifact in its
            runtime. A runner maps `{input name: array}` to `{output name:
            array}` when called, and has `input_names`, `output_names`,
            `runtime` (a description with the version) and `ops()`. Export
            verifies with it; evaluation measures with it.
        options: tuple of str. The export arguments only this format takes,
            among `FORMAT_OPTIONS`.
        quantize_modes: tuple. The accepted `quantize=` values, `None`
            (no quantization) first.
        calibrated_modes: tuple of str. The quantize modes that calibrate on
            `representative_data` (which is then required).
        notes: callable `(ops) -> tuple of str`. What a deployer must know
            about an artifact holding `ops` (the report's notes).
        unverifiable: callable `(error) -> str or None`. For an error raised
            while running the artifact, the reason it cannot run on this
            machine though it may on the target (export then warns and
            reports it unverified), or None: the error stands.
        replaceable: callable `(folder) -> bool` or None. For a folder
            format: whether an existing folder is an earlier artifact that
            a new export may replace.
        metadata_kinds: tuple of str. The `metadata=` values the format can
            write (`"text_classifier"`: a raw-text MediaPipe model,
            `keras_lowrank.exporters.text_classifier`).
    """

    name: str
    title: str
    directory: bool
    suffix: str
    write: Callable
    runner: Callable
    options: tuple = ()
    quantize_modes: tuple = (None,)
    calibrated_modes: tuple = ()
    notes: Callable = _no_notes
    unverifiable: Callable = _never_unverifiable
    replaceable: Callable | None = None
    metadata_kinds: tuple = ()

    def __post_init__(self):
        unknown = [o for o in self.options if o not in FORMAT_OPTIONS]
        if unknown:
            raise ValueError(
                f"Unrecognized options {unknown} for format {self.name!r}. "
                f"Supported options are: {list(FORMAT_OPTIONS)}"
            )
        if not self.quantize_modes or self.quantize_modes[0] is not None:
            raise ValueError(
                f"`quantize_modes` of format {self.name!r} must start with "
                f"None. Received: {self.quantize_modes!r}"
            )
        if len(self.quantize_modes) > 1 and "quantize" not in self.options:
            raise ValueError(
                f"Format {self.name!r} has quantize modes, so 'quantize' must "
                f"be among its options. Received: options={self.options!r}"
            )
        stray = [m for m in self.calibrated_modes if m not in self.quantize_modes]
        if stray:
            raise ValueError(
                f"`calibrated_modes` of format {self.name!r} must be quantize "
                f"modes {list(self.quantize_modes)}. Received: {stray}"
            )

    @property
    def quantize_modes_without_calibration(self):
        """The quantize modes that need no `representative_data`."""
        return tuple(
            m for m in self.quantize_modes if m not in self.calibrated_modes
        )

    def artifact_name(self, stem):
        """The artifact's name for `stem`: `"model"` -> `"model.tflite"`."""
        return f"{stem}{self.suffix}"
