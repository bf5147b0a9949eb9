"""Swapping one attribute of another library for the length of a context:
the one mechanism the `_compat` modules patch with."""

import contextlib


@contextlib.contextmanager
def attribute_replaced(owner, name, value):
    """`owner.name` is `value` within the context; the attribute as it was
    stored (a staticmethod kept as one) is put back after it, also when the
    context raises."""
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
