"""Checks of option values, shared by every run's options (`RunOptions`),
and `finite_or_none`, the figures a report holds.

Each check raises `ValueError` naming the option and the value received.
"""

import math
import numbers
import os


def is_number(value):
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
    )


def check_text(value, name):
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{name} must be a non-empty string. Received: {name}={value!r}")


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer. Received: {name}={value!r}"
        )


def check_positive_number(value, name):
    if not is_number(value) or not value > 0:
        raise ValueError(f"{name} must be a number > 0. Received: {name}={value!r}")


def check_fraction(value, name):
    if not is_number(value) or not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1). Received: {name}={value!r}")


def as_tuple(value, name):
    """`value` as a tuple; a single str or path is a tuple of one."""
    if isinstance(value, (str, os.PathLike)):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a list. Received: {name}={value!r}"
        ) from None


def as_paths(value, name):
    """`value` (a path or a list of paths) as a tuple of non-empty str."""
    paths = tuple(os.fspath(path) for path in as_tuple(value, name))
    for path in paths:
        check_text(path, name)
    return paths


def finite_or_none(value):
    """`value` as a float, or None when it is missing or not finite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
