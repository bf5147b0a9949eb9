"""`Generator`: the greedy loop every generation artifact is driven by.

A format's runner (`runtime.LiteRTGenerator`, `runtime.ONNXGenerator`)
runs the prefill and decode graphs; this module owns the loop around them
(prompt checks, prefill plan, argmax step by step, timings), so every
format is driven the same way. Needs only numpy: `runtime.py` loads this
file by path beside it on machines without Keras (`export/generate.py`).
"""

import dataclasses
import os
import time

import numpy as np


class PromptTooLongError(ValueError):
    """The prompt does not fit the artifact's cache."""


@dataclasses.dataclass(frozen=True)
class GreedyResult:
    """One greedy generation.

    Args:
        tokens: tuple of int. The generated tokens (a stop token included).
        stopped: str. `"max_new_tokens"`, `"stop_token"` or `"cache_full"`.
        time_to_first_token_s: float. From the start of prefill to the first
            token chosen.
        decode_seconds: float. The decoding steps after the first token.
    """

    tokens: tuple
    stopped: str
    time_to_first_token_s: float
    decode_seconds: float

    @property
    def decode_tokens_per_s(self):
        steps = len(self.tokens) - 1
        return steps / self.decode_seconds if steps and self.decode_seconds else None


class Generator:
    """A generation artifact in its runtime: prefill, decode, greedy loop.

    Subclasses run the graphs (`_prefill_chunks`, `_decode`); this class
    owns the loop, so every format is driven the same way.
    """

    runtime = ""

    def __init__(self, path, spec):
        self.path = path
        self.spec = spec
        # Runtime adapters' factor inputs; zeros give the base model.
        self.adapter = {name: np.zeros(shape, np.float32)
                        for name, shape in spec.adapter_shapes().items()}

    def load_adapter(self, adapter=None):
        """Generates with `adapter` from now on (runtime-adapter artifacts).

        Args:
            adapter: the `.npz` of `write_runtime_adapter`, or a dict of
                its arrays; None: zeros, the base model.

        Raises:
            ValueError: the artifact takes no adapters, or the arrays'
                names or shapes are not its factor inputs.
        """
        shapes = self.spec.adapter_shapes()
        if not shapes:
            raise ValueError(
                f"{self.path} was exported without runtime_adapters=True: it "
                "takes no adapter.")
        if adapter is None:
            self.adapter = {name: np.zeros(shape, np.float32)
                            for name, shape in shapes.items()}
            return
        if isinstance(adapter, (str, os.PathLike)):
            with np.load(adapter) as data:
                adapter = {name: data[name] for name in data.files}
        if sorted(adapter) != sorted(shapes):
            raise ValueError(
                f"The adapter's arrays {sorted(adapter)[:4]}... are not the "
                f"factor inputs of {self.path} ({len(shapes)} arrays, "
                f"{sorted(shapes)[:4]}...).")
        arrays = {}
        for name, shape in shapes.items():
            array = np.asarray(adapter[name], np.float32)
            if array.shape != tuple(shape) or not np.isfinite(array).all():
                raise ValueError(
                    f"Adapter input {name} must be finite float32 of shape "
                    f"{tuple(shape)}. Received: shape {array.shape}")
            arrays[name] = array
        self.adapter = arrays

    def new_cache(self):
        return np.zeros(self.spec.cache_shape, np.float32)

    def check_prompt(self, prompt_ids):
        """The prompt as int32 ids; raises for an empty or too long one."""
        prompt = np.asarray(prompt_ids, dtype=np.int64).reshape(-1)
        if prompt.size == 0:
            raise ValueError("The prompt has no tokens.")
        if prompt.size > self.spec.max_length:
            raise PromptTooLongError(
                f"The prompt has {prompt.size} tokens but {self.path} was "
                f"exported with a cache of {self.spec.max_length} positions; "
                "shorten it or export with a larger max_length."
            )
        bad = prompt[(prompt < 0) | (prompt >= self.spec.vocabulary_size)]
        if bad.size:
            raise ValueError(
                f"Token id {int(bad[0])} is outside the model's vocabulary "
                f"of {self.spec.vocabulary_size}."
            )
        return prompt.astype(np.int32)

    def prefill(self, prompt_ids, cache=None):
        """`(logits (vocabulary,), cache)` after writing the whole prompt."""
        prompt = self.check_prompt(prompt_ids)
        cache = self.new_cache() if cache is None else cache
        return self._prefill_chunks(prompt, cache)

    def decode(self, token_id, index, cache):
        """`(logits (vocabulary,), cache)` after token `token_id` at `index`."""
        return self._decode(np.array([[token_id]], np.int32), index, cache)

    def greedy(self, prompt_ids, max_new_tokens, stop_token_ids=(),
               on_token=None) -> GreedyResult:
        """Greedy generation: the argmax token, step by step.

        Args:
            prompt_ids: sequence of int. At most `spec.max_length` tokens.
            max_new_tokens: int. The most tokens to generate; fewer when a
                stop token comes or the cache is full.
            stop_token_ids: tokens that end generation (kept in the output).
            on_token: optional callable, called with each new token.
        """
        if max_new_tokens < 1:
            raise ValueError(
                f"`max_new_tokens` must be at least 1. Received: {max_new_tokens}")
        stop = set(int(t) for t in stop_token_ids)
        start = time.perf_counter()
        prompt = self.check_prompt(prompt_ids)
        logits, cache = self._prefill_chunks(prompt, self.new_cache())
        tokens = [int(np.argmax(logits))]
        first = time.perf_counter()
        if on_token:
            on_token(tokens[-1])
        index = prompt.size
        stopped = "max_new_tokens"
        while True:
            if tokens[-1] in stop:
                stopped = "stop_token"
                break
            if len(tokens) >= max_new_tokens:
                break
            if index >= self.spec.max_length:
                stopped = "cache_full"
                break
            logits, cache = self.decode(tokens[-1], index, cache)
            tokens.append(int(np.argmax(logits)))
            index += 1
            if on_token:
                on_token(tokens[-1])
        return GreedyResult(
            tokens=tuple(tokens),
            stopped=stopped,
            time_to_first_token_s=first - start,
            decode_seconds=time.perf_counter() - first,
        )


def plan_prefill(length, prefill_lengths, max_length):
    """How a prompt of `length` tokens is written with fixed-length chunks.

    Returns:
        list of `(start, count, chunk_length)`: `count` prompt tokens from
        `start`, right-padded to a prefill signature of `chunk_length`, or
        `chunk_length` 1 for the decode signature. A chunk never passes
        `max_length` (the cache update would be clamped and misplaced);
        near the end, where no prefill length fits, tokens go one by one.
    """
    plan, start = [], 0
    while start < length:
        remaining, room = length - start, max_length - start
        fitting = [n for n in prefill_lengths if n <= room]
        if not fitting:
            plan.append((start, 1, 1))
            start += 1
            continue
        chunk = next((n for n in fitting if n >= remaining), fitting[-1])
        count = min(remaining, chunk)
        plan.append((start, count, chunk))
        start += count
    return plan
