"""Generation export: causal LMs as LiteRT / ONNX artifacts that generate.

`export_generator(causal_lm, path, format)` merges LoRA adapters and writes
prefill and decode graphs with an explicit KV cache of fixed length,
weights frozen, builtin ops only; it then drives greedy generation from the
artifact in its runtime and requires it to equal Keras' token for token.
`load_generator(path)` runs such an artifact with the runtime alone
(`runtime.py`, with `generator_loop.py` and `runtime_tokenizer.py` beside
it, imports neither TensorFlow nor Keras; `export/generate.py` is its
command line).

Example:
```python
from keras_lowrank.models import presets
from keras_lowrank.generation import export_generator, load_generator

lm = presets.smollm2_causal_lm()
report = export_generator(lm, "smollm2.tflite", "tflite", max_length=256,
                          tokenizer=presets.smollm2_path() + "/tokenizer.json")
print(report)
tokens = load_generator("smollm2.tflite").greedy(prompt_ids, 32).tokens
```

Runtimes of other projects, with the model's tokenizer and chat template
inside: `export_litertlm(lm, "model.litertlm", tokenizer=...)` writes a
LiteRT-LM bundle, `export_onnx_genai(lm, "folder", tokenizer=...)` an ONNX
Runtime GenAI folder, each checked in that runtime against Keras. The
formats `klr.export` hands to these exporters are `GENERATION_FORMATS`:
`klr.export(lm, "model.litertlm", "litertlm", tokenizer=...)`.

Adapters swapped at run time: `export_generator(adapted, path, format,
runtime_adapters=True)` keeps each layer's LoRA factors as inputs;
`write_runtime_adapter(other_adapted, path, "task.npz")` writes another
adapter for it, and `load_generator(path).load_adapter("task.npz")` uses it.
"""

from keras_lowrank.generation.adapter_files import write_runtime_adapter
from keras_lowrank.generation.cached_causal_lm import is_cached_causal_lm
from keras_lowrank.generation.export_dispatch import GENERATION_FORMATS
from keras_lowrank.generation.export_dispatch import RUNTIME_FORMATS
from keras_lowrank.generation.export_dispatch import check_runtime_arguments
from keras_lowrank.generation.export_dispatch import dispatch_export
from keras_lowrank.generation.export_generator import export_generator
from keras_lowrank.generation.generation_report import GenerationReport
from keras_lowrank.generation.generation_verification import GenerationVerificationError
from keras_lowrank.generation.generator_loop import PromptTooLongError
from keras_lowrank.generation.generator_spec import GeneratorSpec
from keras_lowrank.generation.keras_reference import greedy_reference
from keras_lowrank.generation.litertlm_adapter import write_litertlm_adapter
from keras_lowrank.generation.litertlm_adapter import write_litertlm_base_adapter
from keras_lowrank.generation.litertlm_export import export_litertlm
from keras_lowrank.generation.litertlm_report import LitertlmReport
from keras_lowrank.generation.onnx_genai_adapter import write_onnx_genai_adapter
from keras_lowrank.generation.onnx_genai_export import export_onnx_genai
from keras_lowrank.generation.onnx_genai_report import OnnxGenAIReport
from keras_lowrank.generation.runtime import load_generator
from keras_lowrank.generation.runtime_tokenizer import load_tokenizer

__all__ = [
    "GENERATION_FORMATS",
    "GenerationReport",
    "GenerationVerificationError",
    "GeneratorSpec",
    "LitertlmReport",
    "OnnxGenAIReport",
    "PromptTooLongError",
    "RUNTIME_FORMATS",
    "check_runtime_arguments",
    "dispatch_export",
    "export_generator",
    "export_litertlm",
    "export_onnx_genai",
    "greedy_reference",
    "is_cached_causal_lm",
    "load_generator",
    "load_tokenizer",
    "write_litertlm_adapter",
    "write_litertlm_base_adapter",
    "write_onnx_genai_adapter",
    "write_runtime_adapter",
]
