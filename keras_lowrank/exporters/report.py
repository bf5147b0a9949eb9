"""`ExportReport`: what was written, and how it compared with Keras."""

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """The result of `keras_lowrank.exporters.export`.

    Args:
        format: str. `"saved_model"`, `"tflite"` or `"onnx"`.
        path: str. Where the artifact was written.
        size_bytes: int. Size of the file (or of the SavedModel folder).
        max_abs_diff: float or None. Largest absolute difference between the
            runtime's outputs and Keras' outputs over every output and every
            batch checked; `None` when the numbers were not compared.
        tolerance: float or None. The bound `max_abs_diff` had to stay under.
        latency_ms: float or None. Median time of one batch-1 call in the
            runtime, in milliseconds.
        ops: tuple of str. Sorted operator names in the artifact.
        quantize: str or None. The TFLite quantization mode.
        batch_sizes_checked: tuple of int. Batch sizes run in the runtime.
        input_names: tuple of str. The artifact's input names.
        output_names: tuple of str. The artifact's output names.
        verified: bool. Whether the outputs were compared with Keras.
        runtime: str. The runtime that loaded the artifact.
        notes: tuple of str. Anything a deployer must know (e.g. Flex ops).
    """

    format: str
    path: str
    size_bytes: int
    max_abs_diff: float | None
    tolerance: float | None
    latency_ms: float | None
    ops: tuple[str, ...]
    quantize: str | None = None
    batch_sizes_checked: tuple[int, ...] = ()
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    verified: bool = False
    runtime: str = ""
    notes: tuple[str, ...] = ()

    def to_dict(self):
        """A JSON-ready dict of every field."""
        return {
            field.name: _plain(getattr(self, field.name))
            for field in dataclasses.fields(self)
        }

    def __str__(self):
        diff = "not checked"
        if self.max_abs_diff is not None:
            diff = f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g})"
        latency = "-" if self.latency_ms is None else f"{self.latency_ms:.2f} ms"
        batches = ", ".join(str(b) for b in self.batch_sizes_checked) or "-"
        lines = [
            f"Export report: {self.format}"
            + (f" (quantize={self.quantize})" if self.quantize else ""),
            f"  path:          {self.path}",
            f"  size:          {_human_size(self.size_bytes)}"
            f" ({self.size_bytes:,} bytes)",
            f"  verified:      {'yes' if self.verified else 'no'}"
            + (f" with {self.runtime}" if self.runtime else ""),
            f"  max abs diff:  {diff}",
            f"  batch sizes:   {batches}",
            f"  latency:       {latency} (median, batch 1)",
            f"  inputs:        {', '.join(self.input_names)}",
            f"  outputs:       {', '.join(self.output_names)}",
            f"  ops:           {len(self.ops)}: {', '.join(self.ops)}",
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def artifact_size(path):
    """Bytes of a file, or of every file under a folder."""
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(path)
            for name in names
        )
    return os.path.getsize(path)


def _human_size(size):
    if size < 1000:
        return f"{size} B"
    for unit in ("KB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}"


def _plain(value):
    if isinstance(value, tuple):
        return list(value)
    return value
