"""`GenerationReport`: what `export_generator` wrote and measured."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class GenerationReport:
    """The outcome of `export_generator`.

    Args:
        format: str. `"tflite"` or `"onnx"`.
        path: str. The artifact.
        size_bytes: int. Its size.
        spec: GeneratorSpec. Its interface (cache length, prefill lengths,
            vocabulary, stop tokens).
        ops: tuple of str. Its operators (LiteRT builtins, ONNX op types).
        runtime: str. The runtime that ran it, with its version.
        quantize: None (float32) or `"dynamic"` (int8 weights, activations
            quantized on the fly).
        verified: bool. Whether greedy generation was compared with Keras.
        prompt_lengths: tuple of int. The checked prompts' lengths.
        tokens_compared: int. New tokens compared, over all prompts.
        tokens_matching: int. Of those, equal to Keras' at the same place.
        prompts_matching: int. Prompts whose whole generation is equal.
        next_tokens_matching: int. Quantized: of the steps of Keras' own
            continuations (teacher forced), those where the artifact's next
            token equals Keras'.
        time_to_first_token_ms: float or None. Median over the checked
            prompts, from the start of prefill to the first token chosen,
            batch 1.
        decode_tokens_per_s: float or None. Decoded tokens after the first
            over the time they took, all prompts together, batch 1.
    """

    format: str
    path: str
    size_bytes: int
    spec: object
    ops: tuple
    runtime: str
    quantize: str | None = None
    verified: bool = False
    prompt_lengths: tuple = ()
    tokens_compared: int = 0
    tokens_matching: int = 0
    prompts_matching: int = 0
    next_tokens_matching: int = 0
    time_to_first_token_ms: float | None = None
    decode_tokens_per_s: float | None = None

    @property
    def agreement(self):
        """Free-running: the share of new greedy tokens equal to Keras' at
        the same place (1.0 for a verified float artifact), or None when
        not verified."""
        if not self.tokens_compared:
            return None
        return self.tokens_matching / self.tokens_compared

    @property
    def next_token_agreement(self):
        """Quantized: the share of steps of Keras' own continuations where
        the artifact's next token is Keras' (`min_agreement` applies to
        it); None otherwise."""
        if not (self.quantize and self.tokens_compared):
            return None
        return self.next_tokens_matching / self.tokens_compared

    def to_dict(self):
        values = dataclasses.asdict(self)
        values["spec"] = dataclasses.asdict(self.spec)
        values["agreement"] = self.agreement
        values["next_token_agreement"] = self.next_token_agreement
        return values

    def __str__(self):
        spec = self.spec
        lines = [
            f"{self.format} generator"
            + (f" ({self.quantize} int8)" if self.quantize else "")
            + f": {self.path} "
            f"({self.size_bytes / 1e6:.1f} MB), {self.runtime}",
            f"cache {spec.max_length} positions, prefill lengths "
            f"{list(spec.prefill_lengths) or 'any'}, vocabulary "
            f"{spec.vocabulary_size}, stop tokens {list(spec.stop_token_ids)}",
        ]
        if self.verified:
            lines.append(
                f"greedy tokens equal to Keras: {self.tokens_matching}/"
                f"{self.tokens_compared} ({self.prompts_matching}/"
                f"{len(self.prompt_lengths)} prompts, lengths "
                f"{list(self.prompt_lengths)})"
                + (f"; next-token agreement {self.next_token_agreement:.3f}"
                   if self.quantize else "")
            )
            speed = self.decode_tokens_per_s
            lines.append(
                f"time to first token {self.time_to_first_token_ms:.1f} ms "
                "(median), decode "
                + (f"{speed:.1f} tokens/s" if speed else "n/a (one token)")
                + " (batch 1)"
            )
        else:
            lines.append("not verified")
        return "\n".join(lines)
