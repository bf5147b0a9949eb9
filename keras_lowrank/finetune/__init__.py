"""Fine-tuning runs: data to LoRA adapters to verified LiteRT / ONNX artifacts.

Public API:
- `finetune`: the whole run, as `keras-lowrank finetune` does it.
- `FinetuneOptions`: its settings, validated in one place.

Example:
```python
from keras_lowrank.finetune import FinetuneOptions, finetune

report = finetune(FinetuneOptions(out="runs/demo"))
print(report["test_accuracy"], report["tflite_test_accuracy"])
```
"""

from keras_lowrank.finetune.options import FinetuneOptions
from keras_lowrank.finetune.pipeline import finetune

__all__ = ["FinetuneOptions", "finetune"]
