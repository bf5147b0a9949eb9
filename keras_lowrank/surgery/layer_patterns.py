"""Which layers a pattern names.

A pattern matches a layer path (`transformer_layer_3/self_attention_layer/query`)
when it is:
- the exact path;
- the last path component (`query`);
- a glob over the whole path (`*/self_attention_layer/value`,
  `transformer_layer_[0-2]/*/query`), or over the last component when it has
  no `/` (`feedforward_*`);
- a regular expression matching the whole path, after the prefix `re:`
  (`re:transformer_layer_\\d+/self_attention_layer/(query|value)`).
"""

import fnmatch
import re

_GLOB_CHARS = set("*?[")


def check_pattern(pattern, argument):
    """Raises ValueError when `pattern` cannot be used for `argument`."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(
            f"`{argument}` expected non-empty strings (layer paths, names, "
            f"globs or 're:' regular expressions). Received: {pattern!r}"
        )
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as error:
            raise ValueError(
                f"`{argument}` has an invalid regular expression "
                f"{pattern!r}: {error}"
            ) from None


def matches(pattern, path):
    """Whether `pattern` names the layer at `path`."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], path) is not None
    if pattern == path:
        return True
    last = path.rsplit("/", 1)[-1]
    if _GLOB_CHARS & set(pattern):
        if fnmatch.fnmatchcase(path, pattern):
            return True
        return "/" not in pattern and fnmatch.fnmatchcase(last, pattern)
    return "/" not in pattern and pattern == last


def matches_any(patterns, path):
    return any(matches(p, path) for p in patterns)


def first_match(patterns, path):
    """The first pattern in `patterns` (an iterable) that names `path`."""
    return next((p for p in patterns if matches(p, path)), None)
