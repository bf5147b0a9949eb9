"""`CompressionReport`: what `compress` did to each layer, and the totals."""

import dataclasses

from keras_lowrank.utils.tables import format_table

FACTORIZED = "factorized"


KEPT = "kept"


@dataclasses.dataclass(frozen=True)
class LayerCompression:
    """One targeted layer of a `CompressionReport`.

    Args:
        path: str. The layer's path (`layer_paths.layer_paths`).
        kernel_shape: tuple of int. The shape of the original kernel.
        rank: int or None. The rank chosen for it (None when it cannot be
            factorized at all).
        params_before: int. The layer's parameters (kernel and bias).
        params_after: int. Its parameters afterwards (`k·(fan_in + fan_out)`
            plus the bias when factorized, else `params_before`).
        relative_error: float or None. `‖W − left·right‖_F / ‖W‖_F` of the
            rank-`k` truncation, `sqrt(dropped σ² / sum σ²)`.
        energy: float or None. The share of `sum σ²` that rank `k` keeps.
        status: str. `"factorized"` or `"kept"`.
        reason: str. Why a kept layer was kept; empty when factorized.
    """

    path: str
    kernel_shape: tuple
    rank: int | None
    params_before: int
    params_after: int
    relative_error: float | None
    energy: float | None
    status: str
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class CompressionReport:
    """What `compress` did, layer by layer.

    Args:
        method: str. The criterion, e.g. `"param_ratio=0.5"`.
        layers: tuple of `LayerCompression`, in model order.
        total_params_before: int. Parameters of the input model.
        total_params_after: int. Parameters of the compressed model.

    Example:
    ```python
    compressed, report = klr.compress(model, energy=0.9)
    print(report)             # an aligned table
    report.ranks              # {path: k} of the factorized layers
    json.dumps(report.to_dict())
    ```
    """

    method: str
    layers: tuple
    total_params_before: int
    total_params_after: int

    @property
    def targeted_params_before(self) -> int:
        return sum(row.params_before for row in self.layers)

    @property
    def targeted_params_after(self) -> int:
        return sum(row.params_after for row in self.layers)

    @property
    def ranks(self) -> dict:
        """`{path: rank}` of the factorized layers."""
        return {r.path: r.rank for r in self.layers if r.status == FACTORIZED}

    def to_dict(self) -> dict:
        """A JSON-ready dict: the method, every row, and the totals."""
        rows = [dataclasses.asdict(r) | {"kernel_shape": list(r.kernel_shape)}
                for r in self.layers]
        return {
            "method": self.method,
            "layers": rows,
            "targeted_params_before": self.targeted_params_before,
            "targeted_params_after": self.targeted_params_after,
            "total_params_before": self.total_params_before,
            "total_params_after": self.total_params_after,
        }

    def __str__(self):
        header = ("path", "kernel", "rank", "params before", "params after",
                  "rel. error", "status")
        rows = [
            (r.path, "x".join(str(d) for d in r.kernel_shape),
             "-" if r.rank is None else str(r.rank), f"{r.params_before:,}",
             f"{r.params_after:,}",
             "-" if r.relative_error is None else f"{r.relative_error:.4f}",
             r.status if not r.reason else f"{r.status}: {r.reason}")
            for r in self.layers
        ]
        before, after = self.targeted_params_before, self.targeted_params_after
        return "\n".join([
            f"Compression ({self.method}): {len(self.ranks)} of "
            f"{len(self.layers)} targeted layers factorized",
            *format_table(header, rows, last_free=True),
            f"targeted layers: {_change(before, after)}",
            f"model:           "
            f"{_change(self.total_params_before, self.total_params_after)}",
        ])


def percent(share):
    return f"{100 * share:.3g}%"


def _change(before, after):
    share = 100.0 * after / before if before else 100.0
    return f"{before:,} -> {after:,} parameters ({share:.1f}%)"
