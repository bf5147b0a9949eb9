"""PEFT AdaLoRA factors <-> keras_lowrank AdaLoRA adapters.

PEFT's `SVDLinear` holds `lora_A` `(r, in)`, `lora_E` `(r, 1)`, `lora_B`
`(out, r)` and computes `x·(A⊙E)ᵀ·Bᵀ · lora_alpha / (ranknum + 1e-5)`, with
`ranknum` the config's `init_r` for every module (not saved). A saved
adapter holds only its surviving triplets (`rank_pattern` in the config
says which). keras_lowrank's AdaLoRA adapter (`layers/adalora.py`) is

    lora_a = Aᵀ,  lora_e = E[:, 0],  lora_b = Bᵀ,  lora_mask = 1,  lora_ranknum = init_r,

and the `1e-5` is left out (a relative difference under 1e-6).

A fused HF module (GPT-2's `c_attn`) is keras layers side by side: they
share `lora_a` and `lora_e`, each takes its columns of `lora_b`. Back to
PEFT, parts trained apart are stacked (`A` and `E` concatenated, `B` block
diagonal), which fits only while the stacked rank is at most `init_r`.
"""

import numpy as np


def from_peft(parts, lora_E, init_r):
    """Adds AdaLoRA's weights to the parts `factors.from_peft` gave.

    Args:
        parts: `[{"lora_a", "lora_b": array}]`, one per keras layer.
        lora_E: `(k, 1)`: the module's singular values.
        init_r: int. The config's `init_r` (the scale's denominator).
    """
    values = np.ascontiguousarray(np.asarray(lora_E, np.float32).reshape(-1))
    for part in parts:
        part["lora_e"] = values
        part["lora_mask"] = np.ones(values.shape, np.float32)
        part["lora_ranknum"] = np.array([init_r], np.float32)
    return parts


def to_peft(parts, widths, module_name, init_r):
    """The AdaLoRA parts of one HF module -> PEFT's `(A, B, E)` and scale.

    Args:
        parts: one `factors.Part` (with `singular_values`) or None per
            keras layer, in HF order.
        widths: the parts' `fan_out`s.
        module_name: str. For errors.
        init_r: int. The `init_r` the folder's config will have.

    Returns:
        `(lora_A (R, in), lora_B (out, R), lora_E (R, 1), scale)`.

    Raises:
        ValueError: the stacked rank `R` is above `init_r`.
    """
    present = [(k, p) for k, p in enumerate(parts) if p is not None]
    first = present[0][1]
    shared = all(
        p.scale == first.scale and p.lora_a.shape == first.lora_a.shape
        and np.array_equal(p.lora_a, first.lora_a)
        and np.array_equal(p.singular_values, first.singular_values)
        for _, p in present
    )
    chosen = [first] if shared else [p for _, p in present]
    lora_A = np.concatenate([p.lora_a.T for p in chosen])  # (R, in)
    lora_E = np.concatenate([p.singular_values for p in chosen])[:, None]  # (R, 1)
    if lora_A.shape[0] > init_r:
        raise ValueError(
            f"PEFT module '{module_name}': its keras layers hold AdaLoRA adapters "
            f"trained apart, {lora_A.shape[0]} triplets together, more than "
            f"init_r={init_r}; PEFT's AdaLoRA module cannot hold them. Save "
            "the merged model, or adapt the parts with one shared adapter."
        )
    starts = np.cumsum([0, *widths])
    lora_B = np.zeros((int(starts[-1]), lora_A.shape[0]), np.float32)
    row = 0
    for k, part in present:
        rank = 0 if shared else part.lora_a.shape[1]
        columns = slice(0, lora_A.shape[0]) if shared else slice(row, row + rank)
        lora_B[starts[k]:starts[k + 1], columns] = part.lora_b.T * (part.scale / first.scale)
        row += rank
    return (
        np.ascontiguousarray(lora_A, np.float32),
        lora_B,
        np.ascontiguousarray(lora_E, np.float32),
        first.scale,
    )


def rank_masks(ranks, init_r):
    """PEFT's `rank_pattern` for modules of ranks `{name: k}`: k kept of init_r."""
    return {f"{name}.lora_E": [True] * k + [False] * (init_r - k) for name, k in ranks.items()}
