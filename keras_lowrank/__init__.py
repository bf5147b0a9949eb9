"""keras_lowrank: low-rank adaptation and SVD compression for Keras 3.

Example:
```python
import keras_lowrank as klr

model = klr.add_adapters(classifier, rank=8)   # LoRA on query and value
model.fit(train_data, epochs=3)
klr.save_adapters(model, "adapters.safetensors")
klr.export(model, "model.tflite", format="tflite", quantize="dynamic")
```
"""

from keras_lowrank import distribution
from keras_lowrank import layers
from keras_lowrank import presets
from keras_lowrank import svd
from keras_lowrank.adapted_model import adapter_paths
from keras_lowrank.adapter_routing import route_adapters
from keras_lowrank.adapter_spec import AdapterSpec
from keras_lowrank.adapted_model import add_adapters
from keras_lowrank.adapter_files import load_adapters
from keras_lowrank.adapter_files import read_adapter_metadata
from keras_lowrank.adapter_files import save_adapters
from keras_lowrank.adapter_shrinking import ShrinkReport
from keras_lowrank.adapter_shrinking import shrink_adapters
from keras_lowrank.compression import CompressionReport
from keras_lowrank.compression import compress
from keras_lowrank.exporters import ExportReport
from keras_lowrank.exporters import ExportVerificationError
from keras_lowrank.exporters import UnsupportedOpsError
from keras_lowrank.exporters import export
from keras_lowrank.layers import LoRAConv1D
from keras_lowrank.layers import LoRAConv2D
from keras_lowrank.layers import LoRAConv3D
from keras_lowrank.layers import LoRADense
from keras_lowrank.layers import LoRADepthwiseConv1D
from keras_lowrank.layers import LoRADepthwiseConv2D
from keras_lowrank.layers import LoRAEinsumDense
from keras_lowrank.layers import LoRAEmbedding
from keras_lowrank.layers import LowRankDense
from keras_lowrank.layers import LowRankEinsumDense
from keras_lowrank.lora_config import LoRAConfig
from keras_lowrank.merge import merge_adapters
from keras_lowrank.model_summary import parameter_counts
from keras_lowrank.peft import load_peft_adapters
from keras_lowrank.peft import read_peft_config
from keras_lowrank.peft import save_peft_adapters
from keras_lowrank.named_adapters import active_adapters
from keras_lowrank.named_adapters import adapter_names
from keras_lowrank.named_adapters import delete_adapter
from keras_lowrank.named_adapters import disable_adapters
from keras_lowrank.named_adapters import set_adapter
from keras_lowrank.weighted_adapter import add_weighted_adapter
from keras_lowrank.model_summary import trainable_summary

__version__ = "0.1.0"

__all__ = [
    "route_adapters",
    "active_adapters",
    "add_weighted_adapter",
    "adapter_names",
    "delete_adapter",
    "distribution",
    "disable_adapters",
    "set_adapter",
    "AdapterSpec",
    "adapter_paths",
    "add_adapters",
    "compress",
    "CompressionReport",
    "export",
    "ExportReport",
    "ExportVerificationError",
    "layers",
    "load_adapters",
    "load_peft_adapters",
    "LoRAConfig",
    "LoRAConv1D",
    "LoRAConv2D",
    "LoRAConv3D",
    "LoRADense",
    "LoRADepthwiseConv1D",
    "LoRADepthwiseConv2D",
    "LoRAEinsumDense",
    "LoRAEmbedding",
    "LowRankDense",
    "LowRankEinsumDense",
    "merge_adapters",
    "parameter_counts",
    "presets",
    "read_adapter_metadata",
    "read_peft_config",
    "save_adapters",
    "save_peft_adapters",
    "shrink_adapters",
    "ShrinkReport",
    "svd",
    "trainable_summary",
    "UnsupportedOpsError",
]
