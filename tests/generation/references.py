"""Keras' greedy generation, computed once per model, cache and prompt.

Each `greedy_reference` call traces Keras' prompt-and-decode step again
(~0.7 s for a tiny model); an export with
`verify=True` runs its own. The exports and tests of one model on one cache
length compare against the same Keras tokens, so they can share one
`SharedReference`: passed as an export's `reference=` it is the export's
yardstick, called by a test it gives the same tokens `greedy_reference`
does (the same `GreedyReference` code; greedy decoding is deterministic).
`test_export_generator.test_reference_equals_keras_hub_generate` checks the
yardstick itself against keras-hub's `generate()`.
"""

from keras_lowrank.generation.cached_causal_lm import cache_shape
from keras_lowrank.generation.keras_reference import GreedyReference


class SharedReference(GreedyReference):
    """A `GreedyReference` of `model` on a cache of `max_length` that keeps
    each generation: the decode step is traced once, and each
    `(prompt, max_new_tokens)` generated once for every caller."""

    def __init__(self, model, max_length):
        super().__init__(model, cache_shape(model, max_length))
        self._generated = {}

    def __call__(self, prompt_ids, max_new_tokens):
        key = (tuple(int(t) for t in prompt_ids), int(max_new_tokens))
        if key not in self._generated:
            self._generated[key] = super().__call__(prompt_ids, max_new_tokens)
        return self._generated[key]

    @property
    def generated(self):
        """The `(prompt, max_new_tokens)` pairs generated so far."""
        return sorted(self._generated)

    def tokens(self, prompt_ids, max_new_tokens):
        """`greedy_reference(model, prompt_ids, max_new_tokens, max_length).tokens`."""
        return self(prompt_ids, max_new_tokens).tokens


class References:
    """`references(model, max_length)`: the `SharedReference` of that
    model object and cache length, made on first use."""

    def __init__(self):
        self._made = {}

    def __call__(self, model, max_length):
        # Keyed by identity: the model is kept alive with its reference,
        # so its id is not reused while this object lives.
        key = (id(model), max_length)
        if key not in self._made:
            self._made[key] = (model, SharedReference(model, max_length))
        return self._made[key][1]
