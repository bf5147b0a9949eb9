"""`GenerationReport`: what `export_generator` wrote and measured."""

import dataclasses

from keras_lowrank.generation.generation_check import GenerationCheck


@dataclasses.dataclass(frozen=True)
class GenerationReport(GenerationCheck):
    """The outcome of `export_generator`; the check's fields are
    `GenerationCheck`'s.

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
    """

    format: str
    path: str
    size_bytes: int
    spec: object
    ops: tuple
    runtime: str
    quantize: str | None = None

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
                f"greedy tokens equal to Keras: {self.matching_text()}"
                + (f"; next-token agreement {self.next_token_agreement:.3f}"
                   if self.quantize else "")
            )
            lines.append(self.speed_text())
        else:
            lines.append("not verified")
        return "\n".join(lines)
