"""Accuracies and agreements as counts of examples, which are integers.

A rate such as 0.775 or 0.765 is `n / total` in float arithmetic, and the
difference of two rates is not exactly `k / total`: `0.765 - 0.775` is
`-0.010000000000000009`, just past a "1 point" boundary. Tests compare the
counts behind the rates instead: "at most 2 of 200 below Keras".
"""


def examples(rate, total):
    """The number of examples behind `rate` of `total`, as an exact integer.

    Raises:
        ValueError: if `rate * total` is not (within float error) a whole
            number, i.e. `rate` is not a share of `total` examples.
    """
    count = round(rate * total)
    if abs(count - rate * total) > 1e-6 * max(total, 1):
        raise ValueError(
            f"rate={rate!r} is not a whole number of examples out of total={total}")
    return count


def examples_below(rate, reference_rate, total):
    """How many more of `total` examples `reference_rate` got right than `rate`."""
    return examples(reference_rate, total) - examples(rate, total)
