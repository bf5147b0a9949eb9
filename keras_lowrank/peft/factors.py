"""PEFT factors <-> keras_lowrank factors: every transpose and split, here.

PEFT stores a module's LoRA as `lora_A` `(r, in)` and `lora_B` `(out, r)`
(delta `s·Bᵀ·Aᵀ` applied as `x·Aᵀ·Bᵀ`), whatever the base weight's
orientation (`fan_in_fan_out` only concerns the base weight), and DoRA's
`lora_magnitude_vector` `(out,)`. keras_lowrank stores `lora_a`
`(fan_in, r)` and `lora_b` `(r, fan_out)` on the kernel's matrix view, which
for the mapped families is HF's `(in, out)` matrix (see `name_map`). So:

    lora_a = lora_Aᵀ,   lora_b = lora_Bᵀ,   lora_magnitude = magnitude.

A fused HF module (GPT-2's `c_attn`) is several keras layers side by side
on the output axis: its parts share `lora_a`, and each takes its columns of
`lora_b` and of the magnitude. That is exact: the part's output columns of
`x·A·B` are `x·A·B[:, cols]`, and DoRA's norm is per output column.

Back to PEFT, parts sharing one `A` and one scale give the same rank-`r`
module. Parts trained apart (different `A`s, ranks or scales) become one
module of rank `sum(r_k)`: `A` stacks the parts' `A`s and `B` is
block-diagonal, each block scaled by `s_k / s`; still exact, larger. A part
without an adapter contributes zero columns (and, for DoRA, the base
kernel's column norm as magnitude, a factor of 1).
"""

import dataclasses

import numpy as np

MAGNITUDE = "lora_magnitude"  # keras_lowrank's DoRA weight


@dataclasses.dataclass(frozen=True)
class Part:
    """One keras layer's adapter, as numbers.

    Args:
        lora_a: `(fan_in, r)`.
        lora_b: `(r, width)`.
        scale: float. `alpha / r` (or `/ sqrt(r)`).
        magnitude: `(width,)` for DoRA, else None.
        singular_values: `(r,)` for AdaLoRA (`Λ`), else None.
        ranknum: float. For AdaLoRA, the rank its scale divides by.
    """

    lora_a: np.ndarray
    lora_b: np.ndarray
    scale: float
    magnitude: np.ndarray | None = None
    singular_values: np.ndarray | None = None
    ranknum: float | None = None


def from_peft(lora_A, lora_B, magnitude, widths):
    """One PEFT module's factors -> the factors of its keras parts.

    Args:
        lora_A: `(r, fan_in)`.
        lora_B: `(sum(widths), r)`.
        magnitude: `(sum(widths),)` or None.
        widths: the parts' `fan_out`s, in HF column order.

    Returns:
        A list with one `{weight name: array}` per part: `lora_a`
        `(fan_in, r)`, `lora_b` `(r, width)` and, for DoRA, `lora_magnitude`.
    """
    lora_a = np.ascontiguousarray(lora_A.T)  # (fan_in, r)
    bounds = np.cumsum([0, *widths])
    parts = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        weights = {"lora_a": lora_a, "lora_b": np.ascontiguousarray(lora_B[start:stop].T)}
        if magnitude is not None:
            weights[MAGNITUDE] = np.ascontiguousarray(magnitude[start:stop])
        parts.append(weights)
    return parts


def to_peft(parts, widths, base_norms=None):
    """The keras parts of one HF module -> PEFT factors of the module.

    Args:
        parts: one `Part` or None (no adapter) per keras layer, HF order.
        widths: the parts' `fan_out`s.
        base_norms: for DoRA, each part's base kernel column norms
            `(width,)` (the magnitude of a part without adapter).

    Returns:
        `(lora_A (R, fan_in), lora_B (sum(widths), R), magnitude or None,
        scale)`: `s·Bᵀ·Aᵀ`-equivalent factors of rank `R` and their scale.
    """
    present = [(k, p) for k, p in enumerate(parts) if p is not None]
    scale = present[0][1].scale
    shared = all(
        p.scale == scale and p.lora_a.shape == present[0][1].lora_a.shape
        and np.array_equal(p.lora_a, present[0][1].lora_a)
        for _, p in present
    )
    fan_out = int(sum(widths))
    starts = np.cumsum([0, *widths])
    if shared:
        lora_A = present[0][1].lora_a.T  # (r, fan_in)
        lora_B = np.zeros((fan_out, lora_A.shape[0]), np.float32)
        for k, part in present:
            lora_B[starts[k]:starts[k + 1]] = part.lora_b.T
    else:
        lora_A = np.concatenate([p.lora_a.T for _, p in present])  # (R, fan_in)
        lora_B = np.zeros((fan_out, lora_A.shape[0]), np.float32)
        row = 0
        for k, part in present:
            rank = part.lora_a.shape[1]
            # Block-diagonal, each block rescaled to the common scale.
            lora_B[starts[k]:starts[k + 1], row:row + rank] = part.lora_b.T * (part.scale / scale)
            row += rank
    magnitude = None
    if any(p.magnitude is not None for _, p in present):
        pieces = [
            parts[k].magnitude if parts[k] is not None else base_norms[k]
            for k in range(len(parts))
        ]
        magnitude = np.concatenate(pieces).astype(np.float32)
    return (
        np.ascontiguousarray(lora_A, np.float32),
        np.ascontiguousarray(lora_B, np.float32),
        magnitude,
        scale,
    )


def matrix_to_peft_weight(matrix):
    """A kernel's `(in, out)` matrix view -> the HF `Linear` weight `(out, in)`."""
    return np.ascontiguousarray(np.asarray(matrix).T, np.float32)


def peft_weight_to_matrix(weight):
    """An HF `Linear` weight `(out, in)` -> the `(in, out)` matrix view."""
    return np.ascontiguousarray(np.asarray(weight).T, np.float32)
