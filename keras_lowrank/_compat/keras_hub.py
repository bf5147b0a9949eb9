"""Every private keras-hub attribute, and every keras-hub defect worked
around, that keras_lowrank relies on.

Each function below has a test of its own in `tests/compat/test_keras_hub.py`,
so a keras-hub upgrade that changes one breaks a named test. Pinned:
keras-hub==0.32.0.
"""

import inspect
import types

from keras_lowrank._compat import keras as keras_compat

# === Cached decoding ===


def cache_builder(model):
    """keras-hub's `model._build_cache`, or None where `model` has none.

    A `CausalLM` that decodes with a KV cache builds its empty cache with
    `_build_cache(token_ids) -> (hidden_states, cache)`; there is no public
    way to learn the cache's shape. Only traced, never run for its values.
    """
    builder = getattr(model, "_build_cache", None)
    return builder if callable(builder) else None


def empty_cache_builder(model):
    """keras-hub's `_build_cache` without its seeding pass, or None where
    `model`'s has no `cache` to leave unseeded.

    Every keras-hub 0.32 `_build_cache` allocates the empty cache at its
    final shape (`ops.zeros`, or Gemma 3's tuple of per-layer pairs), then
    seeds it with `self.call_with_cache(..., cache, ...)` over the prompt,
    which returns a cache of the shape it was given (`generate()` carries
    it through a while loop). Here that call returns the allocated cache
    as it is: tracing the builder learns the shape in milliseconds, where
    `cache_builder`'s traces the whole forward pass (8.7 s for SmolLM2's 30
    blocks). The model is not touched: `_build_cache` runs on a stand-in
    that passes every other attribute through to it.

    Returns:
        `build(token_ids, *other_inputs) -> (None, empty cache)`, or None.
    """
    builder = cache_builder(model)
    function = getattr(builder, "__func__", None)
    call = getattr(model, "call_with_cache", None)
    if function is None or not callable(call):
        return None
    signature = inspect.signature(call)
    if "cache" not in signature.parameters:
        return None
    return types.MethodType(function, _Unseeded(model, signature))


class _Unseeded:
    """`model`, but `call_with_cache` returns `(None, None, cache)`."""

    def __init__(self, model, signature):
        self._model = model
        self._signature = signature

    def __getattr__(self, name):
        return getattr(self._model, name)

    def call_with_cache(self, *args, **kwargs):
        return None, None, self._signature.bind(*args, **kwargs).arguments["cache"]


# === Serialization ===

# Constructor arguments that a keras-hub class keeps as an attribute but
# leaves out of `get_config()` (keras-hub 0.32: `LlamaBackbone` and its
# subclasses drop `tie_word_embeddings`, so a tied SmolLM2 rebuilt from its
# config grows an untied output head: one weight more than the model).
_DROPPED_CONFIG_KEYS = ("tie_word_embeddings",)


def restore_dropped_config(model, config):
    """Adds to the serialized `config` of `model` what its layers' `get_config`
    left out (see `_DROPPED_CONFIG_KEYS`), in place; returns `config`."""
    dropped = {}
    for layer in keras_compat.flatten_layers(model):
        for key in _DROPPED_CONFIG_KEYS:
            if hasattr(layer, key) and key not in layer.get_config():
                dropped.setdefault(layer.name, {})[key] = getattr(layer, key)
    if dropped:
        _restore_keys(config, dropped)
    return config


def _restore_keys(node, dropped):
    if isinstance(node, dict):
        inner = node.get("config")
        if "class_name" in node and isinstance(inner, dict):
            for key, value in dropped.get(inner.get("name"), {}).items():
                inner.setdefault(key, value)
        for value in node.values():
            _restore_keys(value, dropped)
    elif isinstance(node, list):
        for value in node:
            _restore_keys(value, dropped)
