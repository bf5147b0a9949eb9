"""`shrink_adapters`: the smallest rank each trained adapter really needs.

A LoRA delta `s·A·B` of rank `r` often uses fewer directions than it was given.
Its SVD never needs the `(fan_in, fan_out)` matrix: with `A = Q_a R_a` and
`Bᵀ = Q_b R_b` (thin QR), `s·A·B = Q_a (s·R_a·R_bᵀ) Q_bᵀ`, so the SVD of the
`r × r` core `U Σ Vᵀ` gives the delta's singular triplets `Q_a U, Σ, Q_b V`.
Keeping the top `k` of them is the best rank-`k` delta (Eckart–Young).

A DoRA adapter merges to `(W + s·A·B)·diag(c)`, `c = m / ‖W + s·A·B‖_c`.
Truncating `s·A·B` alone would change the norm and so every column's scale;
instead the delta the merged kernel sees, `s·A·B·diag(c)`, is truncated (the
same QR and SVD with `B·diag(c)`), and the new magnitude keeps `c`: the
shrunk kernel is the closest to the trained one of all
`(W + rank-k)·diag(c)`, within `σ_{k+1}` in spectral norm.
"""

import dataclasses
import math
import numbers

import keras
import numpy as np

from keras_lowrank.adapters.adapted_model import adapters
from keras_lowrank.layers.dora import DoRAVariant
from keras_lowrank.surgery import rewriting
from keras_lowrank.svd.factorization import balanced_factors
from keras_lowrank.svd.factorization import truncated_triplets
from keras_lowrank.svd.rank_selection import select_rank
from keras_lowrank.utils.tables import format_table


@dataclasses.dataclass(frozen=True)
class AdapterShrink:
    """One adapter of a `ShrinkReport`.

    Args:
        path: str. The adapter's layer path.
        rank_before: int. Its rank in the input model.
        rank_after: int. Its rank in the shrunk model.
        energy: float. The share of the delta's `sum σ²` the new rank keeps.
        relative_error: float. `‖Δ − Δ_k‖_F / ‖Δ‖_F` of the delta `Δ = s·A·B`.
        spectral_error: float. `σ_{k+1}` of the delta, `‖Δ − Δ_k‖_2`: the
            most the layer's output can move, for any input of norm 1 (0
            when the rank is kept). An input-free tolerance per layer. For
            DoRA, energy and errors are those of `s·A·B·diag(c)` (above).
        params_before: int. `rank_before · (fan_in + fan_out)`, plus
            `fan_out` for a DoRA adapter's magnitude.
        params_after: int. `rank_after · (fan_in + fan_out)`, plus
            `fan_out` for a DoRA adapter's magnitude.
    """

    path: str
    rank_before: int
    rank_after: int
    energy: float
    relative_error: float
    spectral_error: float
    params_before: int
    params_after: int


@dataclasses.dataclass(frozen=True)
class ShrinkReport:
    """What `shrink_adapters` did, adapter by adapter.

    Args:
        method: str. The criterion, e.g. `"energy=0.9, max_rank=4"`.
        adapters: tuple of `AdapterShrink`, in model order.
        max_abs_diff: float or None. The largest absolute difference between
            the outputs of the input and the shrunk model on `sample_inputs`
            (None when none were given; each row's `spectral_error` bounds
            its layer without inputs).

    Example:
    ```python
    shrunk, report = klr.shrink_adapters(model, energy=0.95, sample_inputs=x)
    print(report)
    report.max_abs_diff  # e.g. 3e-4
    ```
    """

    method: str
    adapters: tuple
    max_abs_diff: float | None = None

    @property
    def params_before(self) -> int:
        return sum(row.params_before for row in self.adapters)

    @property
    def params_after(self) -> int:
        return sum(row.params_after for row in self.adapters)

    @property
    def ranks(self) -> dict:
        """`{path: rank_after}`."""
        return {row.path: row.rank_after for row in self.adapters}

    def to_dict(self) -> dict:
        """A JSON-ready dict: the method, every row, and the totals."""
        return {
            "method": self.method,
            "adapters": [dataclasses.asdict(row) for row in self.adapters],
            "params_before": self.params_before,
            "params_after": self.params_after,
            "max_abs_diff": self.max_abs_diff,
        }

    def __str__(self):
        header = ("path", "rank before", "rank after", "energy", "rel. error",
                  "spectral error", "params before", "params after")
        rows = [
            (r.path, str(r.rank_before), str(r.rank_after), f"{r.energy:.4f}",
             f"{r.relative_error:.4f}", f"{r.spectral_error:.3g}",
             f"{r.params_before:,}",
             f"{r.params_after:,}")
            for r in self.adapters
        ]
        before, after = self.params_before, self.params_after
        share = 100.0 * after / before if before else 100.0
        lines = [
            f"Adapter shrinking ({self.method}): {len(self.adapters)} adapters",
            *format_table(header, rows),
            f"adapter params: {before:,} -> {after:,} ({share:.1f}%)",
        ]
        if self.max_abs_diff is not None:
            lines.append(f"max abs output difference: {self.max_abs_diff:.3g}")
        return "\n".join(lines)


def shrink_adapters(
    model,
    energy: float | None = None,
    max_rank: int | None = None,
    sample_inputs=None,
):
    """A new model whose adapters have the smallest rank that keeps `energy`.

    For each adapter the delta `s·A·B` is decomposed (via QR of `A` and `Bᵀ`
    and an `r × r` SVD) and truncated to the smallest rank `k` whose singular
    values keep `energy` of `sum σ²`, and at most `max_rank`. The new adapter
    wraps the same frozen layer with the same scale `s` (alpha is set to
    `s·k`, or `s·sqrt(k)` with rsLoRA) and `s·A'·B' = U_k Σ_k V_kᵀ`, split
    evenly between `A'` and `B'`; dropout and flags are kept. An adapter that
    keeps its rank is left exactly as it was. The input model is untouched.

    Args:
        model: keras.Model with LoRA adapters (from `add_adapters`).
        energy: float in (0, 1]. The share of each delta's `sum σ²` to keep.
        max_rank: int >= 1. The largest rank any adapter keeps.
        sample_inputs: optional inputs for `model.predict`. When given, the
            report holds the largest absolute difference of the outputs.

    Returns:
        `(shrunk_model, ShrinkReport)`.

    Raises:
        ValueError: neither `energy` nor `max_rank` given, one out of range,
            or the model holds no adapter.

    Example:
    ```python
    model.fit(train_data, epochs=3)                 # rank-16 adapters
    shrunk, report = klr.shrink_adapters(model, energy=0.9, max_rank=8,
                                         sample_inputs=sample_texts)
    print(report)
    klr.save_adapters(shrunk, "adapters.safetensors")
    ```
    """
    method = _check_arguments(energy, max_rank)
    found = adapters(model)
    if not found:
        raise ValueError(
            f"Model '{model.name}' holds no LoRA adapter to shrink. Add some "
            "with `klr.add_adapters` and train them first."
        )
    plans = {path: _shrink(path, adapter, energy, max_rank)
             for path, adapter in found.items()}

    def replace(path, layer):
        factors = plans[path][1] if path in plans else None
        if factors is None:
            return None
        a, b, rank = factors
        scale = layer.scale
        alpha = scale * (math.sqrt(rank) if layer.use_rslora else rank)
        new = type(layer).from_spec(
            layer.layer, layer.spec.replace(rank=rank, alpha=alpha),
            a_initializer=layer.a_initializer, b_initializer=layer.b_initializer,
        )
        new.lora_a.assign(a.astype(new.lora_a.dtype))
        new.lora_b.assign(b.astype(new.lora_b.dtype))
        if _is_dora(layer):
            DoRAVariant.set_column_scale(new, DoRAVariant.column_scale(layer))
        new.trainable = layer.trainable
        return new

    shrunk, _ = rewriting.rewrite_model(model, replace)
    diff = None
    if sample_inputs is not None:
        diff = _max_abs_diff(model, shrunk, sample_inputs)
    rows = tuple(row for row, _ in plans.values())
    return shrunk, ShrinkReport(method=method, adapters=rows, max_abs_diff=diff)


def _shrink(path, adapter, energy, max_rank):
    """`(AdapterShrink, (A', B', k) or None when the rank stays)`."""
    a = np.asarray(keras.ops.convert_to_numpy(adapter.lora_a), np.float64)  # (m, r)
    b = np.asarray(keras.ops.convert_to_numpy(adapter.lora_b), np.float64)  # (r, n)
    scale, rank = adapter.scale, adapter.rank
    columns = _column_scale(adapter)  # (n,): DoRA's c, ones otherwise
    q_a, r_a = np.linalg.qr(a)  # (m, r), (r, r)
    q_b, r_b = np.linalg.qr((b * columns).T)  # (n, r), (r, r)
    core = scale * (r_a @ r_b.T)  # s·A·B = q_a · core · q_bᵀ
    u, sigma, vt = truncated_triplets(core, rank=rank)
    k = select_rank(sigma, energy=energy) if energy is not None else rank
    k = min(k, max_rank) if max_rank is not None else k
    squares = sigma**2
    total, dropped = float(squares.sum()), float(squares[k:].sum())
    per_rank = a.shape[0] + b.shape[1]
    magnitude = b.shape[1] if _is_dora(adapter) else 0
    row = AdapterShrink(
        path=path, rank_before=rank, rank_after=k,
        energy=1.0 - dropped / total if total else 1.0,
        relative_error=math.sqrt(dropped / total) if total else 0.0,
        spectral_error=float(sigma[k]) if k < len(sigma) else 0.0,
        params_before=rank * per_rank + magnitude,
        params_after=k * per_rank + magnitude,
    )
    if k == rank:
        return row, None
    left = q_a @ u[:, :k]  # (m, k), orthonormal columns
    right = vt[:k] @ q_b.T  # (k, n), orthonormal rows
    new_a, new_b = balanced_factors(left, sigma[:k], right, scale=scale)
    # Undo the column scale; a column with c = 0 is zero in the merged kernel.
    new_b = np.divide(new_b, columns, out=np.zeros_like(new_b), where=columns != 0)
    return row, (new_a, new_b, k)


def _is_dora(adapter):
    return issubclass(adapter.variant, DoRAVariant)


def _column_scale(adapter):
    """DoRA's `c = m / ‖W + s·A·B‖_c` of `adapter`, ones for other variants."""
    if _is_dora(adapter):
        return np.asarray(DoRAVariant.column_scale(adapter), np.float64)
    return np.ones(adapter.lora_b.shape[1])


def _max_abs_diff(before, after, sample_inputs):
    outputs_before = keras.tree.flatten(before.predict(sample_inputs, verbose=0))
    outputs_after = keras.tree.flatten(after.predict(sample_inputs, verbose=0))
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(outputs_before, outputs_after)
    )


def _check_arguments(energy, max_rank):
    if energy is None and max_rank is None:
        raise ValueError(
            "shrink_adapters expected `energy`, `max_rank` or both. "
            "Received: energy=None, max_rank=None"
        )
    if energy is not None and not (
        isinstance(energy, numbers.Real) and not isinstance(energy, bool)
        and 0 < energy <= 1
    ):
        raise ValueError(
            f"shrink_adapters expected `energy` in (0, 1]. Received: energy={energy!r}"
        )
    if max_rank is not None and (
        not isinstance(max_rank, numbers.Integral) or isinstance(max_rank, bool)
        or max_rank < 1
    ):
        raise ValueError(
            "shrink_adapters expected `max_rank` to be a positive integer. "
            f"Received: max_rank={max_rank!r}"
        )
    given = [f"energy={energy}"] if energy is not None else []
    given += [f"max_rank={max_rank}"] if max_rank is not None else []
    return ", ".join(given)
