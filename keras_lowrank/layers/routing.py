"""Per-example adapter choice: which named adapter each row of a batch uses.

`AdapterRouter` (`keras_lowrank.adapters.routing`) calls a model inside
`routing(index, names)`; every adapter layer called within reads the index
and adds, to each row `i`, the delta of adapter `names[index[i]]` (none for
an index outside `names`: that row gets the base model). The index is a
tensor of the same trace, so the choice is part of the graph: it traces,
compiles and exports like any input.
"""

import contextlib

_STACK = []


@contextlib.contextmanager
def routing(index, names):
    """Within the block, adapter layers route rows by `index` over `names`.

    Args:
        index: int tensor `(batch,)`.
        names: the adapter names that index values 0, 1, ... stand for.
    """
    _STACK.append((index, tuple(names)))
    try:
        yield
    finally:
        _STACK.pop()


def current_routing():
    """`(index, names)` of the innermost `routing` block, or None."""
    return _STACK[-1] if _STACK else None
