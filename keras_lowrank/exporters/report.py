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
        input_shapes: dict. `{input name: shape}` as the runtime sees it,
            -1 for a dynamic dimension (batch, sequence length).
        sequence_lengths_checked: tuple of int. For a dynamic sequence
            length, the lengths run and compared with Keras.
        latency_by_length: dict. Batch-1 latency at the median token length
            of the sample texts (or inputs) and at the maximum:
            `{"median": {"tokens": n, "ms": t}, "max": {...}}`.
        precisions: dict. For quantized LiteRT artifacts, the op counts per
            precision: `{"int8": {op: n}, "float": {op: n}, ...}`.
        float_layers: tuple of str. Weight layers a quantize mode kept in
            float on purpose (see `tflite_quantization`).
        accuracy: float or None. With `eval_data`: the artifact's accuracy,
            run in its runtime.
        keras_accuracy: float or None. Keras' accuracy on the same examples.
        eval_examples: int. How many labelled examples were run.
        metadata: str or None. `"text_classifier"` for a MediaPipe artifact.
        labels: tuple of str. The label names stored in its metadata.
        label_agreement: float or None. The fraction of sample texts that
            MediaPipe and Keras give the same label.
        max_score_diff: float or None. The largest class-score difference
            between MediaPipe and Keras on those texts.
        token_agreement: float or None. The fraction of sample texts that
            MediaPipe's tokenizer turns into keras-hub's exact token ids.
        texts_checked: int. How many sample texts were classified.
        eval_label_agreement: float or None. With `eval_data`, the
            fraction of all `eval_examples` texts that MediaPipe and Keras
            give the same label.
        eval_max_score_diff: float or None. The largest class-score
            difference between MediaPipe and Keras on those texts.
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
    input_shapes: dict = dataclasses.field(default_factory=dict)
    sequence_lengths_checked: tuple[int, ...] = ()
    latency_by_length: dict = dataclasses.field(default_factory=dict)
    precisions: dict = dataclasses.field(default_factory=dict)
    float_layers: tuple[str, ...] = ()
    accuracy: float | None = None
    keras_accuracy: float | None = None
    eval_examples: int = 0
    metadata: str | None = None
    labels: tuple[str, ...] = ()
    label_agreement: float | None = None
    max_score_diff: float | None = None
    token_agreement: float | None = None
    texts_checked: int = 0
    eval_label_agreement: float | None = None
    eval_max_score_diff: float | None = None

    @property
    def eval_labels_equal(self) -> int | None:
        """How many eval texts MediaPipe gives Keras' label (None: not run)."""
        if self.eval_label_agreement is None:
            return None
        return round(self.eval_label_agreement * self.eval_examples)

    def to_dict(self):
        """A JSON-ready dict of every field."""
        return {
            field.name: _plain(getattr(self, field.name))
            for field in dataclasses.fields(self)
        }

    def __str__(self):
        diff = "not checked"
        if self.max_abs_diff is not None:
            bound = "not bounded" if self.tolerance is None else (
                f"tolerance {self.tolerance:.3g}")
            diff = f"{self.max_abs_diff:.3g} ({bound})"
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
        shapes = ", ".join(
            f"{name} {list(shape)}" for name, shape in self.input_shapes.items()
        )
        if shapes:
            lines.append(f"  input shapes:  {shapes} (-1: dynamic)")
        if self.sequence_lengths_checked:
            lengths = ", ".join(str(n) for n in self.sequence_lengths_checked)
            lines.append(f"  lengths run:   {lengths} tokens")
        for key, value in self.latency_by_length.items():
            lines.append(
                f"  latency {key + ':':<7}{value['ms']:.2f} ms at {value['tokens']} "
                "tokens (batch 1)"
            )
        if self.accuracy is not None:
            lines.append(
                f"  accuracy:      {self.accuracy:.4f} in the runtime, Keras "
                f"{self.keras_accuracy:.4f} ({100 * (self.accuracy - self.keras_accuracy):+.2f} "
                f"pt, {self.eval_examples} examples)"
            )
        if self.metadata:
            lines.append(f"  metadata:      {self.metadata}, labels {list(self.labels)}")
        if self.label_agreement is not None:
            lines.append(
                f"  MediaPipe:     label agreement {self.label_agreement:.4f}, max "
                f"score diff {self.max_score_diff:.3g} on {self.texts_checked} texts"
            )
        if self.eval_label_agreement is not None:
            lines.append(
                f"  eval texts:    labels equal Keras' on "
                f"{self.eval_labels_equal}/{self.eval_examples} "
                f"({self.eval_label_agreement:.4f}), max score diff "
                f"{self.eval_max_score_diff:.3g}"
            )
        if self.token_agreement is not None:
            lines.append(
                f"  tokenizer:     MediaPipe gives keras-hub's ids on "
                f"{100 * self.token_agreement:.1f}% of the texts"
            )
        for key, ops in self.precisions.items():
            described = ", ".join(f"{op} {count}" for op, count in ops.items())
            lines.append(f"  {key + ' ops:':<15}{described}")
        if self.float_layers:
            lines.append(
                f"  kept in float: {len(self.float_layers)} weight layers: "
                + ", ".join(self.float_layers)
            )
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
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
