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

The same rule holds for ONNX `dynamic` and `int8`, and for LiteRT
`int16x8`. Since issue 9, `int8` keeps the ops that break accuracy in float
(`tflite_quantization`); the `int8` row below is the earlier all-int8
artifact, and the new one moves the demo's logits by about as much as
`dynamic` does. With `eval_data`, accuracy replaces this bound for the lossy
modes (`export_model.LOSSY_MODES`).

Measured max abs diffs (`docs/export.md`): all-MiniLM-L6-v2 with a new
2-class head (logits at most 0.06, so the floors apply), and `make demo`'s
fine-tuned classifier over its 800 test sentences (logits up to 1.92; "demo
bound" is the rule at that scale). `dynamic` (int8 weights) moves single
logits by up to 17% of the largest there, at a cost of 0.13 points, so a
quantized bound only catches a broken artifact, one that differs by about
the size of its outputs: measure accuracy before shipping. The demo's `int8`
artifact (18 points less accurate, median diff 0.60) is refused. An explicit
`atol=` replaces the rule with that absolute bound, for any mode.

No non-finite value is ever a match: a NaN or an infinity in Keras' outputs
is an error before any comparison (nothing can be verified against it), and
one in the artifact's outputs where Keras is finite is an infinite
difference, which no tolerance accepts.
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
    "int16x8": 5e-2,
}
# Fractions of the largest absolute Keras output, for quantized modes.
RELATIVE_TOLERANCES = {
    None: 0.0,
    "float16": 1e-2,
    "dynamic": 0.25,
    "int8": 0.25,
    "int16x8": 0.25,
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


def check_finite(outputs, batch_sizes, *, format):
    """Raises if Keras gave a non-finite value: no artifact can match it.

    Args:
        outputs: the Keras outputs, a list of `{name: array}`, one per batch.
        batch_sizes: the batch size of each, for the message.
        format: the export format, for the error.

    Raises:
        ExportVerificationError: naming each output holding NaN or infinite
            values, and how many of its values they are.
    """
    counts = {}
    for output in outputs:
        for name, value in output.items():
            value = np.asarray(value)
            if not np.issubdtype(value.dtype, np.inexact):
                continue
            total, nan, inf = counts.get(name, (0, 0, 0))
            counts[name] = (
                total + value.size,
                nan + int(np.count_nonzero(np.isnan(value))),
                inf + int(np.count_nonzero(np.isinf(value))),
            )
    bad = {name: c for name, c in counts.items() if c[1] or c[2]}
    if not bad:
        return
    described = "; ".join(
        f"output {name!r}: {nan + inf} of {total} values ({nan} NaN, {inf} inf)"
        for name, (total, nan, inf) in bad.items()
    )
    sizes = " and ".join(str(size) for size in batch_sizes)
    raise ExportVerificationError(
        f"Keras gives non-finite outputs, which no exported {format} model can "
        f"be verified against: {described} (batch sizes {sizes}). Fix the "
        "model (diverged weights?) or `sample_inputs`.",
        format=format,
        output_name=next(iter(bad)),
    )


def output_difference(expected, actual, *, format, batch_size):
    """Largest absolute difference between two `{name: array}` dicts.

    Returns:
        `(max_abs_diff, output_name)`; a non-finite value on either side
        counts as an infinite difference, never as a match.

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
        with np.errstate(invalid="ignore"):  # inf - inf, replaced below
            diff = np.abs(got64 - want64)
        # NaN - NaN and inf - inf are NaN: a mismatch, like NaN - 1.
        diff[~(np.isfinite(got64) & np.isfinite(want64))] = np.inf
        value = float(np.max(diff))
        if worst_name is None or value > worst:
            worst, worst_name = value, name
    return worst, worst_name


def verify(run, reference, batches, *, format, quantize=None, atol=None):
    """Runs every batch through `run` and compares it with `reference`.

    Args:
        run: callable `{name: array} -> {name: array}`, the runtime.
        reference: the Keras outputs: a callable with the same contract (the
            Keras model), or the list of its outputs on `batches`, computed
            beforehand.
        batches: list of `{name: array}`.
        format: format name, for messages.
        quantize: the quantize mode, which picks the default tolerance.
        atol: an explicit absolute tolerance, replacing the default.

    Returns:
        `(max_abs_diff, tolerance, batch_sizes)`.

    Raises:
        ExportVerificationError: if Keras gives non-finite values
            (`check_finite`), or if the difference exceeds the tolerance (the
            message gives both, and the rule that set the tolerance).
    """
    expected = reference
    if callable(reference):
        expected = [reference(batch) for batch in batches]
    batch_sizes = [int(next(iter(batch.values())).shape[0]) for batch in batches]
    check_finite(expected, batch_sizes, format=format)
    scale = output_scale(expected)
    tolerance = tolerance_for(quantize, atol, scale)
    results = []
    nonfinite = 0
    for batch, want, batch_size in zip(batches, expected, batch_sizes):
        got = run(batch)
        diff, name = output_difference(
            want, got, format=format, batch_size=batch_size
        )
        results.append((diff, name, batch_size))
        nonfinite += _count_nonfinite(got)
    worst, name, batch_size = max(results, key=lambda r: r[0])
    if nonfinite or not worst <= tolerance:
        per_batch = ", ".join(f"batch {b}: {d:.3g}" for d, _, b in results)
        if nonfinite:
            reason = (
                f": it gives {nonfinite} non-finite values (NaN or inf) where "
                "Keras is finite, which no tolerance accepts."
            )
        else:
            reason = (
                f" exceeds the tolerance {tolerance:.3g} "
                f"({_rule(quantize, atol, scale)}). Pass a larger `atol=` "
                "only if this difference is acceptable."
            )
        raise ExportVerificationError(
            f"The exported {format} model does not match Keras "
            f"(quantize={quantize!r}): max abs diff {worst:.3g} on output "
            f"{name!r} ({per_batch}){reason}",
            max_abs_diff=worst,
            tolerance=tolerance,
            format=format,
            output_name=name,
            batch_size=batch_size,
        )
    return worst, tolerance, tuple(r[2] for r in results)


def _count_nonfinite(outputs):
    return sum(
        int(np.count_nonzero(~np.isfinite(np.asarray(value, dtype="float64"))))
        for value in outputs.values()
    )


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
