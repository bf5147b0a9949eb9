"""PEFT adapters in, PEFT adapters out.

Hugging Face PEFT LoRA folders (`adapter_config.json` +
`adapter_model.safetensors`) load onto keras-hub models converted from the
same HF checkpoint (`load_peft_adapters`), and keras_lowrank adapters save as
folders PEFT's `PeftModel.from_pretrained` loads (`save_peft_adapters`).
Modules: `peft_config` (the config, validated), `peft_weights` (the
tensors), `factors` (every transpose and split), `name_map` and one module
per family (`bert`, `llama`, `gpt2`) behind `families`, `loading`,
`saving`, and `folders` (inspecting a folder, loading a base model for it).
"""

from keras_lowrank.peft.families import FAMILIES
from keras_lowrank.peft.families import family_of
from keras_lowrank.peft.folders import describe_peft_folder
from keras_lowrank.peft.folders import is_peft_folder
from keras_lowrank.peft.folders import load_peft_base_model
from keras_lowrank.peft.folders import load_peft_model
from keras_lowrank.peft.loading import load_peft_adapters
from keras_lowrank.peft.peft_config import PeftAdapterConfig
from keras_lowrank.peft.peft_config import read_peft_config
from keras_lowrank.peft.saving import save_peft_adapters

__all__ = [
    "FAMILIES",
    "PeftAdapterConfig",
    "describe_peft_folder",
    "family_of",
    "is_peft_folder",
    "load_peft_adapters",
    "load_peft_base_model",
    "load_peft_model",
    "read_peft_config",
    "save_peft_adapters",
]
