"""Int4 kernels fitted to a layer's inputs: GPTQ in Keras' grouped int4 form.

Rounding each weight to its nearest int4 step (Keras' `layer.quantize`)
ignores what the layer computes. GPTQ (Frantar et al., 2022, "Accurate
Post-Training Quantization for Generative Pre-trained Transformers") rounds
the kernel one input row at a time and moves each row's rounding error onto
the rows not yet rounded, weighted by the inputs' second moments
`H = XᵀX`, so that `X·W` changes as little as it can. The result is stored
exactly as Keras stores its own int4 kernels (values in [-8, 7], a scale
and a zero point per group of `block_size` input rows and output column,
`(q - zero) · scale`), so a layer quantized this way computes, merges,
saves and exports as any other Keras int4 layer.
"""

import numpy as np

# GPTQ's `percdamp`: a share of the mean diagonal added to H, so that rows
# the calibration inputs barely reach stay well conditioned.
DAMPING = 0.01
QMIN, QMAX = -8, 7
EPSILON = 1e-7  # keras.backend.epsilon(), as Keras' own int4 scales add it


def gptq_int4(kernel, hessian, block_size, damping=DAMPING):
    """Keras' grouped int4 form of `kernel`, rounded by GPTQ.

    Groups and their parameters are Keras' own: the scale and zero point of
    a group come from the min and max of its rows (as they stand when the
    group is reached, the earlier groups' errors included, as GPTQ does).
    With a diagonal `hessian` no error moves and the result equals Keras'
    round-to-nearest (tested).

    Args:
        kernel: float (rows, columns). The kernel as a 2D matrix, input
            rows first (the layout Keras quantizes).
        hessian: float (rows, rows). `XᵀX` of the layer's inputs, rows in
            the kernel's order.
        block_size: int. Input rows per group.
        damping: float. Share of the mean diagonal added to `hessian`.

    Returns:
        `(values, scale, zero)`: int8 (rows, columns) in [-8, 7], float32
        (groups, columns), int8 (groups, columns).
    """
    weights = np.array(kernel, dtype="float32")
    rows, columns = weights.shape
    if hessian.shape != (rows, rows):
        raise ValueError(
            f"gptq_int4 expected a ({rows}, {rows}) hessian for a kernel of "
            f"{rows} input rows. Received: shape {hessian.shape}")
    inverse_root = _inverse_cholesky(hessian, damping)
    groups = -(-rows // block_size)
    values = np.empty((rows, columns), "int8")
    scale = np.empty((groups, columns), "float32")
    zero = np.empty((groups, columns), "float32")
    for group in range(groups):
        start, stop = group * block_size, min((group + 1) * block_size, rows)
        block = weights[start:stop]
        low, high = block.min(0), block.max(0)
        if stop - start < block_size:  # Keras pads the last group with zeros
            low, high = np.minimum(low, 0), np.maximum(high, 0)
        scale[group] = (high - low + EPSILON) / (QMAX - QMIN)
        zero[group] = np.clip(np.round(-low / scale[group]) + QMIN, QMIN, QMAX)
        errors = np.empty_like(block)
        root = inverse_root[start:stop, start:stop]
        for row in range(stop - start):
            # The row with the errors of the rows above it moved onto it.
            current = block[row] - root[:row, row] @ errors[:row]
            value = np.clip(np.round(current / scale[group]) + zero[group], QMIN, QMAX)
            values[start + row] = value
            errors[row] = (current - (value - zero[group]) * scale[group]) / root[row, row]
        weights[stop:] -= inverse_root[start:stop, stop:].T @ errors
    return values, scale, zero.astype("int8")


def _inverse_cholesky(hessian, damping):
    """The upper Cholesky factor `U` of `(H + damping·mean(diag H)·I)⁻¹`
    (`H⁻¹ = UᵀU`).

    With the order of the rows reversed (`R`), `RHR = LLᵀ` gives
    `H⁻¹ = (R L⁻¹ R)ᵀ (R L⁻¹ R)`, and `R L⁻¹ R` is upper triangular: one
    factorization and one inverse. An input row no calibration input
    reached (a zero diagonal) gets a diagonal of 1, so that its weights
    round to nearest."""
    h = np.array(hessian, dtype="float64")
    dead = np.diag(h) <= 0
    h[dead, :] = 0
    h[:, dead] = 0
    h[dead, dead] = 1
    h[np.diag_indices_from(h)] += damping * np.mean(np.diag(h))
    lower = np.linalg.cholesky(h[::-1, ::-1])
    return np.linalg.inv(lower)[::-1, ::-1].astype("float32")
