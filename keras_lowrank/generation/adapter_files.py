"""`write_runtime_adapter`: an adapter file for a base artifact exported
with `runtime_adapters=True`, in the form that artifact's runtime loads.

- this project's generators (`.tflite`, `.onnx`, `export_generator`): an
  `.npz` of the factor inputs (`runtime_adapters.write_npz_adapter`);
- a LiteRT-LM bundle (`.litertlm`): the engine's own LoRA file
  (`litertlm_adapter.write_litertlm_adapter`);
- an ONNX Runtime GenAI folder: onnxruntime's `.onnx_adapter`
  (`onnx_genai_adapter.write_onnx_genai_adapter`).
"""

import os

from keras_lowrank.generation.litertlm_adapter import write_litertlm_adapter
from keras_lowrank.generation.onnx_genai_adapter import write_onnx_genai_adapter
from keras_lowrank.generation.runtime_adapters import write_npz_adapter


def write_runtime_adapter(model, artifact, path) -> int:
    """Writes `model`'s current adapters for the base `artifact`.

    Args:
        model: the adapted causal LM (plain LoRA on the artifact's layers
            or a subset, rank at most the artifact's; PEFT folders come in
            through `klr.load_peft_adapters`).
        artifact: the base artifact written with `runtime_adapters=True`:
            a `.tflite` / `.onnx` generator (or its `GeneratorSpec`), a
            `.litertlm` bundle, or an ONNX Runtime GenAI folder.
        path: str. The file to write (atomically): `.npz` for a generator,
            the LoRA file for a bundle, `.onnx_adapter` for GenAI.

    Returns:
        int. The bytes written: what an app downloads per task.

    Raises:
        ValueError: an adapter the artifact cannot take (another layer, a
            larger rank, another base's shapes, not plain LoRA), naming it;
            nothing is written.

    Example:
    ```python
    klr.export(task_a_lm, "base.litertlm", "litertlm", tokenizer=tokenizer,
               runtime_adapters=True)
    write_runtime_adapter(task_b_lm, "base.litertlm", "task_b.lora")
    ```
    """
    if isinstance(artifact, (str, os.PathLike)):
        if os.fspath(artifact).endswith(".litertlm"):
            return write_litertlm_adapter(model, artifact, path)
        if os.path.isdir(artifact):
            return write_onnx_genai_adapter(model, artifact, path)
    return write_npz_adapter(model, artifact, path)
