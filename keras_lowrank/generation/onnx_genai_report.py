"""`OnnxGenAIReport`: what `export_onnx_genai` wrote and measured."""

import dataclasses

from keras_lowrank.generation.generation_check import GenerationCheck


@dataclasses.dataclass(frozen=True)
class OnnxGenAIReport(GenerationCheck):
    """The outcome of `export_onnx_genai`; the check's fields are
    `GenerationCheck`'s (`prompt_lengths` count the start token).

    Args:
        folder: str. The GenAI folder.
        files: tuple of str. The files in it.
        size_bytes: int. Their total size.
        genai_type: str. `model.type` of `genai_config.json`.
        context_length: int. Prompt plus generated tokens, at most.
        start_token_id: int or None. The token Keras puts before a prompt.
        stop_token_ids: tuple of int. GenAI's `eos_token_id`.
        genai_adds_start_token: bool or None. Whether GenAI's tokenizer
            puts the start token before a text itself (when False, prepend
            it to the ids you give GenAI); None when not checked.
        runtime: str. The runtime that ran the folder, with its version.
        quantize: None (float32), `"int4"` or `"int8"` (weight-only,
            MatMulNBits).
        model_bytes: int or None. The size of `model.onnx` (and its data
            file).
        float_model_bytes: int or None. Quantized: the float `model.onnx`
            (and its data file) it was made from, for the size ratio.
        quantized_matmuls: int. Quantized: the MatMulNBits nodes.
    """

    folder: str
    files: tuple
    size_bytes: int
    genai_type: str
    context_length: int
    start_token_id: int | None
    stop_token_ids: tuple
    genai_adds_start_token: bool | None = None
    runtime: str = ""
    quantize: str | None = None
    model_bytes: int | None = None
    float_model_bytes: int | None = None
    quantized_matmuls: int = 0

    def __str__(self):
        lines = [
            f"ONNX Runtime GenAI folder: {self.folder} ({self.size_bytes / 1e6:.1f} "
            f"MB: {', '.join(self.files)})",
            f"type {self.genai_type}, context {self.context_length} tokens, start "
            f"token {self.start_token_id}, stop tokens {list(self.stop_token_ids)}",
        ]
        if self.quantize:
            lines.append(
                f"{self.quantize} weights (MatMulNBits x{self.quantized_matmuls}): "
                f"model {self.model_bytes / 1e6:.1f} MB, "
                f"{self.model_bytes / self.float_model_bytes:.2f}x the float "
                f"one's {self.float_model_bytes / 1e6:.1f} MB"
                if self.model_bytes and self.float_model_bytes
                else f"{self.quantize} weights")
        if self.start_token_id is not None and self.genai_adds_start_token is False:
            lines.append(
                f"GenAI's tokenizer does not add the start token: prepend "
                f"{self.start_token_id} to the ids of a text")
        if not self.verified:
            lines.append("not verified")
            return "\n".join(lines)
        lines += [
            f"greedy tokens equal to Keras in {self.runtime}: "
            + self.matching_text()
            + (f"; next-token agreement {self.next_token_agreement:.3f}"
               if self.next_token_agreement is not None else ""),
            self.speed_text(),
        ]
        return "\n".join(lines)
