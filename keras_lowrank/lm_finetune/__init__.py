"""Fine-tuning causal LMs for generation: LoRA on completion tokens, measured
before and after, exported as an on-device generator.

Public API:
- `finetune_lm`: the whole run, as `keras-lowrank finetune --task causal-lm`.
- `LMFinetuneOptions`: its settings, validated in one place.
- `read_lm_file`, `LMExample`: JSONL (prompt/completion, chat messages,
  text) and plain-text readers.
- `ChatFormat`: a model folder's tokenizer and chat template.
- `load_causal_lm`: a Hugging Face causal-LM folder as a keras-hub model.
- `export_lm_run`: a finished run exported again (another format or
  quantization) from its adapter file, measured on its test prompts.

Example:
```python
from keras_lowrank.lm_finetune import LMFinetuneOptions, finetune_lm

before_and_after = {
    key: value for key, value
    in finetune_lm(LMFinetuneOptions(out="runs/demo-lm")).items()
    if key in ("test_accuracy_before", "test_accuracy", "tflite_test_accuracy")}
```
"""

from keras_lowrank.lm_finetune.causal_lm_loading import load_causal_lm
from keras_lowrank.lm_finetune.chat_format import ChatFormat
from keras_lowrank.lm_finetune.lm_examples import LMExample
from keras_lowrank.lm_finetune.lm_examples import read_lm_file
from keras_lowrank.lm_finetune.lm_finetune_options import LMFinetuneOptions
from keras_lowrank.lm_finetune.lm_pipeline import finetune_lm
from keras_lowrank.lm_finetune.lm_run_export import export_lm_run

__all__ = [
    "ChatFormat",
    "LMExample",
    "LMFinetuneOptions",
    "export_lm_run",
    "finetune_lm",
    "load_causal_lm",
    "read_lm_file",
]
