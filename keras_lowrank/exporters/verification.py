"""Compares an artifact's outputs with Keras, and times it.

The default tolerance bounds the largest absolute difference of any output,
over every checked batch. Float32 artifacts get a fixed absolute bound. A
quantized artifact's error grows with its outputs, so its bound scales with
them: for `quantize=q`, with `scale` the largest absolute Keras output
(finite values, every output, every checked batch),

    tolerance = max(DEFAULT_TOLERANCES[q], RELATIVE_TOLERANCES[q] * scale)

| quantize  | floor | relative | MiniLM, new head | demo, fine-tuned | demo bound |
|-----------|-------|----------|------------------|------------------|------------|
| None      | 1e-4  | -        | 5.0e-8           | 4.6e-6           | 1e-4       |
| "float16" | 1e-2  | 1e-2     | 3.5e-5           | 2.5e-3           | 1.9e-2     |
| "dynamic" | 5e-2  | 0.25     | 1.7e-3           | 0.32             | 0.48       |
| "int8"    | 1e-1  | 0.25     | 4.5e-2           | 3.0              | 0.48       |

Measured max abs diffs (`export/README.md`): all-MiniLM-L6-v2 with a new
2-class head (logits at most 0.06, so the floors apply), and `make demo`'s
fine-tuned classifier over its 800 test sentences (logits up to 1.92; "demo
bound" is the rule at that scale). `dynamic` (int8 weights) moves single
logits by up to 17% of the largest there, at a cost of 0.13 points, so a
quantized bound only catches a broken artifact, one that differs by about
the size of its outputs: measure accuracy before shipping. The demo's `int8`
artifact (18 points less accurate, median diff 0.60) is refused. An explicit
`atol=` replaces the rule with that absolute bound, for any mode.
"""

import statistics
import time

import numpy as np

# Absolute bounds; for quantized modes, the floor of the scaled bound.
DEFAULT_TOLERANCES = {
    None: 1e-4,
    "float16": 1e-2,
    "dynamic": 5e-2,
    "int8": 1e-1,
}
# Fractions of the largest absolute Keras output, for quantized modes.
RELATIVE_TOLERANCES = {
    None: 0.0,
    "float16": 1e-2,
    "dynamic": 0.25,
    "int8": 0.25,
}
LATENCY_REPEATS = 10


class ExportVerificationError(RuntimeError):
    """An exported artifact gave outputs that differ from Keras.

    Attributes:
        max_abs_diff: the largest absolute difference measured.
        tolerance: the bound it exceeded.
        format: the export format.
        output_name: the output where the largest difference was measured.
        batch_size: the batch size where it was measured.
    """

    def __init__(
        self,
        message,
        *,
        max_abs_diff=None,
        tolerance=None,
        format=None,
        output_name=None,
        batch_size=None,
    ):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.tolerance = tolerance
        self.format = format
        self.output_name = output_name
        self.batch_size = batch_size


def tolerance_for(quantize, atol=None, scale=0.0):
    """The bound on the max abs diff (the rule in the module docstring).

    Args:
        quantize: the quantize mode, a key of `DEFAULT_TOLERANCES`.
        atol: an explicit absolute bound; when given, it is the result.
        scale: the largest absolute Keras output on the checked batches.

    Returns:
        `atol`, or `max(DEFAULT_TOLERANCES[quantize],
        RELATIVE_TOLERANCES[quantize] * scale)`.
    """
    if atol is not None:
        return float(atol)
    return max(DEFAULT_TOLERANCES[quantize], RELATIVE_TOLERANCES[quantize] * scale)


def output_scale(outputs):
    """The largest absolute finite value in a list of `{name: array}` dicts."""
    scale = 0.0
    for output in outputs:
        for value in output.values():
            value = np.abs(np.asarray(value, dtype="float64"))
            value = value[np.isfinite(value)]
            if value.size:
                scale = max(scale, float(np.max(value)))
    return scale


def output_difference(expected, actual, *, format, batch_size):
    """Largest absolute difference between two `{name: array}` dicts.

    Returns:
        `(max_abs_diff, output_name)`; a non-finite runtime value where Keras
        is finite counts as an infinite difference.

    Raises:
        ExportVerificationError: if the output names or shapes differ.
    """
    if sorted(expected) != sorted(actual):
        raise ExportVerificationError(
            f"The exported {format} model has outputs {sorted(actual)}, "
            f"Keras has {sorted(expected)} (batch {batch_size}).",
            format=format,
            batch_size=batch_size,
        )
    worst, worst_name = 0.0, None
    for name, want in expected.items():
        got = np.asarray(actual[name])
        if got.shape != want.shape:
            raise ExportVerificationError(
                f"The exported {format} model's output {name!r} has shape "
                f"{got.shape}; Keras gives {want.shape} (batch {batch_size}).",
                format=format,
                output_name=name,
                batch_size=batch_size,
            )
        if got.size == 0:
            continue
        got64, want64 = got.astype("float64"), want.astype("float64")
        diff = np.abs(got64 - want64)
        diff[np.isnan(got64) & np.isnan(want64)] = 0.0
        # NaN where only one side is NaN is a mismatch, never a pass.
        value = float(np.max(np.nan_to_num(diff, nan=np.inf)))
        if worst_name is None or value > worst:
            worst, worst_name = value, name
    return worst, worst_name


def verify(run, reference, batches, *, format, quantize=None, atol=None):
    """Runs every batch through `run` and `reference` and compares them.

    Args:
        run: callable `{name: array} -> {name: array}`, the runtime.
        reference: callable with the same contract, the Keras model.
        batches: list of `{name: array}`.
        format: format name, for messages.
        quantize: the quantize mode, which picks the default tolerance.
        atol: an explicit absolute tolerance, replacing the default.

    Returns:
        `(max_abs_diff, tolerance, batch_sizes)`.

    Raises:
        ExportVerificationError: if the difference exceeds the tolerance
            (the message gives both, and the rule that set the tolerance).
    """
    expected = [reference(batch) for batch in batches]
    scale = output_scale(expected)
    tolerance = tolerance_for(quantize, atol, scale)
    results = []
    for batch, want in zip(batches, expected):
        batch_size = int(next(iter(batch.values())).shape[0])
        diff, name = output_difference(
            want, run(batch), format=format, batch_size=batch_size
        )
        results.append((diff, name, batch_size))
    worst, name, batch_size = max(results, key=lambda r: r[0])
    if not worst <= tolerance:
        per_batch = ", ".join(f"batch {b}: {d:.3g}" for d, _, b in results)
        raise ExportVerificationError(
            f"The exported {format} model does not match Keras "
            f"(quantize={quantize!r}): max abs diff {worst:.3g} on output "
            f"{name!r} ({per_batch}) exceeds the tolerance {tolerance:.3g} "
            f"({_rule(quantize, atol, scale)}). Pass a larger `atol=` only "
            "if this difference is acceptable.",
            max_abs_diff=worst,
            tolerance=tolerance,
            format=format,
            output_name=name,
            batch_size=batch_size,
        )
    return worst, tolerance, tuple(r[2] for r in results)


def _rule(quantize, atol, scale):
    if atol is not None:
        return "the given atol"
    floor = DEFAULT_TOLERANCES[quantize]
    relative = RELATIVE_TOLERANCES[quantize]
    if not relative:
        return f"the default for quantize={quantize!r}"
    return (
        f"the default for quantize={quantize!r}: max({floor:g}, {relative:g} "
        f"x largest |Keras output| {scale:.3g})"
    )


def median_latency_ms(run, inputs, repeats=LATENCY_REPEATS, warmup=2):
    """Median wall time of `run(inputs)` in milliseconds."""
    for _ in range(warmup):
        run(inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(inputs)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)
