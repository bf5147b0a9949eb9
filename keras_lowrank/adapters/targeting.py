"""Which layers of a model `add_adapters` adapts, and which it keeps trainable."""

import warnings

import keras

from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.adapters.config import ALL_LINEAR
from keras_lowrank.layers import LoRAAdapter
from keras_lowrank.layers import adapter_class_for
from keras_lowrank.layers import supported_classes
from keras_lowrank.surgery import layer_paths
from keras_lowrank.surgery import layer_patterns

_LINEAR = (keras.layers.Dense, keras.layers.EinsumDense)


def freeze_all_but(model, keep_trainable):
    """Freezes every leaf layer except adapters and `keep_trainable` ones.

    Containers stay trainable so that their children's flags decide.
    """
    for path, layer in layer_paths.layer_paths(model).items():
        if isinstance(layer, LoRAAdapter):
            layer.trainable = True  # the adapter keeps its base frozen
        elif _is_leaf(layer) or layer_patterns.matches_any(keep_trainable, path):
            keep = is_kept_trainable(path, keep_trainable)
            layer.trainable = keep
        elif not is_kept_trainable(path, keep_trainable):
            # A container's own weights (a ViT's class token, say): freezing
            # the container would hide its children's weights too.
            for variable in keras_compat.own_trainable_weights(layer):
                variable.trainable = False


def targeted_paths(paths, config, keep_trainable):
    candidates = {
        path: layer
        for path, layer in paths.items()
        if adapter_class_for(layer) is not None or isinstance(layer, LoRAAdapter)
        if not is_kept_trainable(path, keep_trainable)
    }
    if config.targets == ALL_LINEAR:
        chosen = [p for p, layer in candidates.items() if isinstance(layer, _LINEAR)]
        unmatched = [] if chosen else [ALL_LINEAR]
    else:
        chosen = [
            p for p in candidates if layer_patterns.matches_any(config.targets, p)
        ]
        unmatched = [
            t
            for t in config.targets
            if not any(layer_patterns.matches(t, p) for p in candidates)
        ]
    if not chosen:
        kept = [
            p for p in paths
            if is_kept_trainable(p, keep_trainable) and layer_patterns.matches_any(
                () if config.targets == ALL_LINEAR else config.targets, p)
        ]
        if kept:
            raise ValueError(
                f"targets={_show(config.targets)} matched only layers kept "
                f"fully trainable: {kept} (trainable={list(keep_trainable)}, "
                "by default a task's head). To adapt them instead, pass "
                "`trainable=()` or patterns that leave them out."
            )
        raise ValueError(
            f"No layer matched targets={_show(config.targets)}: no layer of "
            f"a kind adapters exist for ({supported_classes()}) has a path, "
            "last path component, glob or 're:' match for them."
            f"{_unadaptable(config.targets, paths)} Layers of the model: "
            f"{_available(paths)}"
        )
    for target in unmatched:
        warnings.warn(
            f"Target pattern {target!r} matched no adaptable layer."
            f"{_unadaptable([target], paths)}",
            stacklevel=3,
        )
    excluded = [p for p in chosen if layer_patterns.matches_any(config.exclude, p)]
    for pattern in config.exclude:
        if not any(layer_patterns.matches(pattern, p) for p in paths):
            warnings.warn(
                f"Exclude pattern {pattern!r} matched no layer of the model.",
                stacklevel=3,
            )
    chosen = [p for p in chosen if p not in excluded]
    if not chosen:
        raise ValueError(
            f"Every layer that targets={_show(config.targets)} matched is "
            f"excluded by exclude={list(config.exclude)}: {excluded}"
        )
    return chosen


def check_patterns_match(field, patterns, chosen, paths):
    """A pattern of `field` that matches no layer at all is a typo: raise.

    One that matches layers, but none of `chosen`, changes nothing: warn.
    """
    for pattern in patterns:
        if any(layer_patterns.matches(pattern, p) for p in chosen):
            continue
        near = [p for p in paths if layer_patterns.matches(pattern, p)]
        if near:
            warnings.warn(
                f"{field} pattern {pattern!r} matched only layers that get no "
                f"adapter: {near[:5]}. It changes nothing.",
                stacklevel=4,
            )
            continue
        raise ValueError(
            f"{field} pattern {pattern!r} matched no layer of the model, so it "
            "would silently change nothing (a typo?). Patterns are layer "
            "paths, last path components, globs or 're:' regexes. Layers of "
            f"the model: {_available(paths)}"
        )


def trainable_patterns(model, config):
    """The layer patterns `add_adapters` keeps trainable: `config.trainable`,
    else a keras-hub task's head (what lies outside its backbone)."""
    if config.trainable is not None:
        return tuple(config.trainable)
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return ()
    # A keras-hub task: its head is what lies outside its backbone. A causal
    # LM lists the backbone's token embedding too (its tied output
    # projection): that is part of the backbone, and stays frozen.
    preprocessor = getattr(model, "preprocessor", None)
    inside = [backbone, preprocessor, *layer_paths.layer_paths(backbone).values()]
    return tuple(
        layer.name
        for layer in keras_compat.sublayers(model)
        if not any(layer is part for part in inside) and layer.weights
    )


def is_kept_trainable(path, keep_trainable):
    """Whether the layer at `path`, or a layer around it, is named by `keep_trainable`."""
    parts = path.split("/")
    ancestors = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(layer_patterns.matches_any(keep_trainable, p) for p in ancestors)


def _is_leaf(layer):
    return isinstance(layer, LoRAAdapter) or not keras_compat.has_sublayers(layer)


def _available(paths):
    shown = [
        f"{path} ({type(layer).__name__})"
        for path, layer in paths.items()
        if adapter_class_for(layer) is not None
    ]
    if len(shown) > 40:
        shown = shown[:40] + [f"... and {len(shown) - 40} more"]
    return ", ".join(shown) or f"(none: the model has no {supported_classes()} layer)"


def _unadaptable(targets, paths):
    """A note naming the layers `targets` match that no adapter exists for."""
    if targets == ALL_LINEAR:
        return ""
    found = [
        f"{path} ({type(layer).__name__})"
        for path, layer in paths.items()
        if layer.weights and adapter_class_for(layer) is None
        and not isinstance(layer, LoRAAdapter)
        and not keras_compat.has_sublayers(layer)
        and layer_patterns.matches_any(targets, path)
    ]
    if not found:
        return ""
    return (
        f" It matched only layers no adapter exists for: {', '.join(found[:10])}"
        " (transposed and separable convolutions, for instance, are not "
        "supported)."
    )


def _show(targets):
    return targets if isinstance(targets, str) else list(targets)
