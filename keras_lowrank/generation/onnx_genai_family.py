"""`GenAIFamily`: the keras-hub causal LMs an ONNX Runtime GenAI folder
can hold, one record each, first match wins.

GenAI picks its model class from `genai_config.json`'s `model.type`; the
graph itself is keras-hub's own `call_with_cache`, so a family needs only
its GenAI type name and where its backbone keeps the number of query
heads. Families are matched by keras-hub class name along the model's
class hierarchy: `Llama3CausalLM` is a `LlamaCausalLM`, not the other way
round, so a Llama 2 model is refused rather than taken for a Llama 3.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class GenAIFamily:
    """A keras-hub causal LM class and what GenAI calls it.

    Args:
        class_name: str. The keras-hub `CausalLM` class.
        genai_type: str. `model.type` in `genai_config.json`.
        heads_attribute: str. The backbone attribute holding the number of
            query heads.
    """

    class_name: str
    genai_type: str
    heads_attribute: str

    def num_attention_heads(self, causal_lm) -> int:
        return int(getattr(causal_lm.backbone, self.heads_attribute))


FAMILIES = (
    GenAIFamily("Llama3CausalLM", "llama", "num_query_heads"),
    GenAIFamily("GemmaCausalLM", "gemma", "num_query_heads"),
    # GenAI's `gpt2` type is its legacy model, fed one combined `past_%d`
    # per layer; `decoder` is its generic decoder-only model, which takes
    # the IO of `onnx_genai_model` as the other types do.
    GenAIFamily("GPT2CausalLM", "decoder", "num_heads"),
    # GenAI's `gemma3` type is its image-and-text model package, which
    # refuses a folder ("Loading a model package from a directory path is
    # not supported"); `gemma3_text` is its decoder. Sliding windows and
    # QK-norm are in keras-hub's graph, so GenAI needs no window config.
    GenAIFamily("Gemma3CausalLM", "gemma3_text", "num_query_heads"),
    GenAIFamily("QwenCausalLM", "qwen2", "num_query_heads"),
    GenAIFamily("Qwen3CausalLM", "qwen3", "num_query_heads"),
    GenAIFamily("MistralCausalLM", "mistral", "num_query_heads"),
    GenAIFamily("Phi3CausalLM", "phi3", "num_query_heads"),
)


def genai_family(causal_lm) -> GenAIFamily:
    """The family of `causal_lm`.

    Raises:
        TypeError: naming the received class and the supported ones.
    """
    names = [cls.__name__ for cls in type(causal_lm).__mro__]
    for family in FAMILIES:
        if family.class_name in names:
            _check_family(causal_lm, family)
            return family
    supported = ", ".join(f.class_name for f in FAMILIES)
    raise TypeError(
        "export_onnx_genai writes ONNX Runtime GenAI folders for the "
        f"keras-hub families {supported}. Received: "
        f"{type(causal_lm).__name__}. Export another family with "
        "`export_generator(causal_lm, path, 'onnx')` (a plain ONNX "
        "generator run by `load_generator`)."
    )


def _check_family(causal_lm, family):
    # Gemma 2's sliding window and soft caps need GenAI's `gemma2` type and
    # per-layer windows in genai_config.json, which this exporter does not
    # write; refuse them rather than write a folder GenAI misreads.
    backbone = causal_lm.backbone
    if family.genai_type == "gemma" and (
        getattr(backbone, "use_sliding_window_attention", False)
        or getattr(backbone, "final_logit_soft_cap", None)
        or getattr(backbone, "attention_logit_soft_cap", None)
    ):
        raise TypeError(
            "export_onnx_genai writes Gemma (1) folders. Received: a "
            "GemmaCausalLM with Gemma 2's sliding-window attention or logit "
            "soft caps, which GenAI runs as type `gemma2`. Export it with "
            "`export_generator(causal_lm, path, 'onnx')` instead."
        )
