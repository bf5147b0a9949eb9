"""`LitertlmReport`: what `export_litertlm` wrote and measured."""

import dataclasses

from keras_lowrank.generation.generation_check import GenerationCheck


@dataclasses.dataclass(frozen=True)
class LitertlmReport(GenerationCheck):
    """The outcome of `export_litertlm`; the check's fields are
    `GenerationCheck`'s (`prompt_lengths` count the start token,
    `tokens_compared` Keras' tokens cut at the first stop token).

    Args:
        path: str. The `.litertlm` bundle.
        size_bytes: int. Its size.
        model: str. The Keras class exported, e.g. `"Llama3CausalLM"`.
        metadata: BundleMetadata. Start and stop tokens, context length and
            chat template written into the bundle.
        prefill_lengths: tuple of int. Its `prefill_<n>` signatures.
        quantize: None (float32) or `"dynamic"` (int8 weights).
        runtime: str. The engine that ran the check, with its version.
        conversation_matching: bool or None. Whether the Conversation API's
            reply (the chat template applied by the runtime) equals Keras'
            greedy reply to the template as `transformers` renders it.
    """

    path: str
    size_bytes: int
    model: str
    metadata: object
    prefill_lengths: tuple
    quantize: str | None = None
    runtime: str = ""
    conversation_matching: bool | None = None

    def __str__(self):
        meta = self.metadata
        lines = [
            f"LiteRT-LM bundle ({self.model}"
            + (f", {self.quantize} int8" if self.quantize else ", float32")
            + f"): {self.path} ({self.size_bytes / 1e6:.1f} MB)",
            f"context {meta.max_num_tokens} tokens, prefill lengths "
            f"{list(self.prefill_lengths)}, start token {meta.start_token_id}, "
            f"stop tokens {list(meta.stop_token_ids)}, chat template "
            + ("yes" if meta.chat_template else "none"),
        ]
        if not self.verified:
            lines.append("not verified")
            return "\n".join(lines)
        lines.append(
            f"{self.runtime}: greedy tokens equal to Keras {self.matching_text()}"
            + (f"; next-token agreement {self.next_token_agreement:.3f}"
               if self.next_token_agreement is not None else "")
            + ("" if self.conversation_matching is None else
               f"; chat reply equal to Keras: {self.conversation_matching}"))
        lines.append(self.speed_text())
        return "\n".join(lines)
