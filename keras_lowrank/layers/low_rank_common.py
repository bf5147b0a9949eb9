"""What LowRankDense and LowRankEinsumDense share: argument checks, the product."""

import numpy as np
from keras import ops


def check_positive_int(argument, value, layer="LowRankDense"):
    """Raises unless `value` is a positive integer (not a bool)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"{layer} expected `{argument}` to be a positive integer. "
            f"Received: {argument}={value!r}"
        )


def check_rank_fits(layer_class, name, rank, fan_in, fan_out):
    """Raises when factors of `rank` would hold more than the full kernel."""
    if rank > min(fan_in, fan_out):
        raise ValueError(
            f"{layer_class} '{name}' expected rank <= min(fan_in, fan_out) = "
            f"min({fan_in}, {fan_out}) = {min(fan_in, fan_out)}; a larger rank "
            f"holds more parameters than the full kernel. Received: rank={rank}"
        )


def check_built(layer, method):
    """Raises when `layer` has no weights yet for `method`."""
    if not layer.built:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' is not built; `{method}` "
            "needs its weights. Call it on an input or `build()` it first."
        )


def product(left, right):
    """`left @ right` in float64: the merged kernel as a `(fan_in, fan_out)` matrix."""
    left = np.asarray(ops.convert_to_numpy(left), dtype=np.float64)
    right = np.asarray(ops.convert_to_numpy(right), dtype=np.float64)
    return left @ right


def assign(variable, value):
    """Assigns a backend tensor or array to `variable`, in its dtype."""
    value = ops.convert_to_numpy(value)
    variable.assign(np.asarray(value, dtype=variable.dtype))
