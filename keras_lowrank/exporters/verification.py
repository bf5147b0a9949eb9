"""Compares an artifact's outputs with Keras, and times it.

Default tolerances on the largest absolute difference of any output, per
TFLite `quantize` mode (measured on all-MiniLM-L6-v2 classifier logits, see
`export/README.md`):

| quantize    | default atol | measured on MiniLM |
|-------------|--------------|--------------------|
| None        | 1e-4         | ~5e-8              |
| "float16"   | 1e-2         | ~2e-5              |
| "dynamic"   | 5e-2         | ~4e-3              |
| "int8"      | 1e-1         | see README         |

The quantized bounds are absolute, so they are loose for outputs far below 1
and tight for outputs far above it: pass `atol=` when you know your scale.
"""

import statistics
import time

import numpy as np

DEFAULT_TOLERANCES = {
    None: 1e-4,
    "float16": 1e-2,
    "dynamic": 5e-2,
    "int8": 1e-1,
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


def tolerance_for(quantize, atol=None):
    """`atol` if given, else the documented default for `quantize`."""
    if atol is not None:
        return float(atol)
    return DEFAULT_TOLERANCES[quantize]


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


def verify(run, reference, batches, *, format, tolerance, quantize=None):
    """Runs every batch through `run` and `reference` and compares them.

    Args:
        run: callable `{name: array} -> {name: array}`, the runtime.
        reference: callable with the same contract, the Keras model.
        batches: list of `{name: array}`.
        format: format name, for messages.
        tolerance: largest allowed absolute difference.
        quantize: quantize mode, for messages.

    Returns:
        `(max_abs_diff, batch_sizes)`.

    Raises:
        ExportVerificationError: if the difference exceeds `tolerance`.
    """
    results = []
    for batch in batches:
        batch_size = int(next(iter(batch.values())).shape[0])
        diff, name = output_difference(
            reference(batch), run(batch), format=format, batch_size=batch_size
        )
        results.append((diff, name, batch_size))
    worst, name, batch_size = max(results, key=lambda r: r[0])
    if not worst <= tolerance:
        per_batch = ", ".join(f"batch {b}: {d:.3g}" for d, _, b in results)
        raise ExportVerificationError(
            f"The exported {format} model does not match Keras "
            f"(quantize={quantize!r}): max abs diff {worst:.3g} on output "
            f"{name!r} ({per_batch}) exceeds the tolerance {tolerance:.3g}. "
            "Pass a larger `atol=` only if this difference is acceptable.",
            max_abs_diff=worst,
            tolerance=tolerance,
            format=format,
            output_name=name,
            batch_size=batch_size,
        )
    return worst, tuple(r[2] for r in results)


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
