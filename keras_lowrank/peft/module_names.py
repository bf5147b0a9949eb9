"""PEFT's rules for module names in a LoRA config: which modules a config
targets or excludes, a module's layer index, and which `rank_pattern` /
`alpha_pattern` key applies to it (as `peft.tuners.tuners_utils`)."""

import re

# PEFT's target for every linear layer but the output layer; a saved config
# holds the names it resolved to, but a hand-written one may hold this.
ALL_LINEAR = "all-linear"


def target_names(value, field, regex=True):
    """A config field of module names: None, a regular expression (checked),
    or a tuple of names."""
    if value is None:
        return None
    if isinstance(value, str):
        if not regex:
            return (value,)
        if value != ALL_LINEAR:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(
                    f"PEFT config field `{field}` is an invalid regular "
                    f"expression {value!r}: {error}"
                ) from None
        return value
    if not isinstance(value, (list, tuple, set)) or not all(isinstance(v, str) for v in value):
        raise ValueError(
            f"PEFT config field `{field}` must be a list of module names or "
            f"a regular expression. Received: {field}={value!r}"
        )
    return tuple(sorted(value)) if isinstance(value, set) else tuple(value)


def excluded(names, key):
    """PEFT's `exclude_modules` test."""
    if not names:
        return False
    if isinstance(names, str):
        return re.fullmatch(names, key) is not None
    return key in names or any(key.endswith(f".{n}") for n in names)


def layer_index(key, layers_pattern):
    # The first numbered segment is the layer index (not an expert index).
    if not layers_pattern:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
    else:
        match = None
        for pattern in layers_pattern:
            match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
            if match is not None:
                break
    return int(match["idx"]) if match else None


def pattern_key(patterns, key):
    """PEFT's `get_pattern_key`: the first pattern ending `key` after a `.`."""
    for pattern in patterns:
        if re.match(rf"(.*\.)?({pattern})$", key):
            return pattern
    return key
