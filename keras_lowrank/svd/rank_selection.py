"""How many singular values to keep: by retained energy or by error budget.

Both criteria read the same number, the energy dropped past rank `k`,
`tail_k = sum_{i > k} σ_i²`: keeping `k` values retains `1 − tail_k / total`
of the energy and leaves a relative Frobenius error `sqrt(tail_k / total)`.
"""

import numpy as np

# Targets within this share of the total energy count as reached, so that
# float64 rounding in the sums (or the ~1e-16 "zero" singular values of a
# rank-deficient matrix) never costs an extra rank, e.g. for energy=1.0.
_ENERGY_RTOL = 1e-12


def select_rank(
    singular_values,
    energy: float | None = None,
    max_rel_error: float | None = None,
) -> int:
    """The smallest rank that meets an energy or relative-error target.

    Args:
        singular_values: 1-D array of non-negative singular values, in any
            order (they are sorted here).
        energy: float in (0, 1]. The share of `sum σ²` the kept values must
            hold; 1.0 keeps every non-zero singular value.
        max_rel_error: float in [0, 1). The largest allowed relative
            Frobenius error `sqrt(sum of dropped σ² / sum σ²)` of the
            truncated matrix.

    Returns:
        int in `[1, len(singular_values)]`. 1 for an all-zero spectrum.

    Raises:
        ValueError: when not exactly one of `energy` and `max_rel_error` is
            given, when either is out of range, or when `singular_values` is
            empty, not 1-D, negative or not finite.

    Example:
    ```python
    select_rank([3.0, 2.0, 1.0, 1.0, 1.0], energy=0.8)  # 2: 13/16 >= 0.8
    select_rank([3.0, 2.0, 1.0, 1.0, 1.0], max_rel_error=0.5)  # 2: sqrt(3/16)
    ```
    """
    if (energy is None) == (max_rel_error is None):
        raise ValueError(
            "Expected exactly one of `energy` or `max_rel_error`. "
            f"Received: energy={energy}, max_rel_error={max_rel_error}"
        )
    if energy is not None and not (_is_real(energy) and 0.0 < energy <= 1.0):
        raise ValueError(
            "Expected `energy` to be a float in (0, 1]. "
            f"Received: energy={energy!r}"
        )
    if max_rel_error is not None and not (
        _is_real(max_rel_error) and 0.0 <= max_rel_error < 1.0
    ):
        raise ValueError(
            "Expected `max_rel_error` to be a float in [0, 1). "
            f"Received: max_rel_error={max_rel_error!r}"
        )
    tail, total = _tail_energies(singular_values)
    if total == 0.0:
        return 1
    if energy is not None:
        budget = (1.0 - energy) * total  # energy that may be dropped
    else:
        budget = max_rel_error**2 * total
    # tail[k - 1] is what rank k drops; it never rises with k and tail[-1] == 0.
    fits = tail <= budget + _ENERGY_RTOL * total
    return int(np.argmax(fits)) + 1


def cumulative_energy(singular_values) -> np.ndarray:
    """The share of `sum σ²` kept by each rank `k = 1..n`.

    Args:
        singular_values: 1-D array of non-negative singular values, in any
            order.

    Returns:
        float64 array of length n, non-decreasing, ending at 1.0 (all zeros
        for an all-zero spectrum).

    Raises:
        ValueError: when `singular_values` is empty, not 1-D, negative or not
            finite.

    Example:
    ```python
    cumulative_energy([3.0, 2.0, 1.0, 1.0, 1.0])
    # array([0.5625, 0.8125, 0.875, 0.9375, 1.0])
    ```
    """
    tail, total = _tail_energies(singular_values)
    if total == 0.0:
        return np.zeros_like(tail)
    return 1.0 - tail / total


def _tail_energies(singular_values):
    """`(tail, total)`: `tail[k - 1]` is the energy dropped by keeping `k`."""
    s = np.asarray(singular_values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(
            "Expected a non-empty 1-D array of singular values. "
            f"Received: shape {s.shape}"
        )
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(
            "Expected finite, non-negative singular values. "
            f"Received: min={s.min()}, max={s.max()}"
        )
    squares = np.sort(s)[::-1] ** 2
    # Summed from the smallest up, so that a run of zeros drops exactly 0.
    from_small = np.cumsum(squares[::-1])[::-1]  # from_small[i] = sum_{j>=i}
    tail = np.append(from_small[1:], 0.0)
    return tail, float(from_small[0])


def _is_real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, bool)
    )
