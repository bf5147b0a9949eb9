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
from keras_lowrank import svd
from keras_lowrank.adapters.adapted_model import adapter_paths
from keras_lowrank.adapters.adapted_model import add_adapters
from keras_lowrank.adapters.config import LoRAConfig
from keras_lowrank.adapters.files import load_adapters
from keras_lowrank.adapters.files import read_adapter_metadata
from keras_lowrank.adapters.files import save_adapters
from keras_lowrank.adapters.merge import merge_adapters
from keras_lowrank.adapters.named import active_adapters
from keras_lowrank.adapters.named import adapter_names
from keras_lowrank.adapters.named import delete_adapter
from keras_lowrank.adapters.named import disable_adapters
from keras_lowrank.adapters.named import set_adapter
from keras_lowrank.adapters.routing import route_adapters
from keras_lowrank.adapters.shrinking import ShrinkReport
from keras_lowrank.adapters.shrinking import shrink_adapters
from keras_lowrank.adapters.summary import parameter_counts
from keras_lowrank.adapters.summary import trainable_summary
from keras_lowrank.adapters.summary import weight_bytes
from keras_lowrank.adapters.weighted import add_weighted_adapter
from keras_lowrank.adaptive import AdaLoRACallback
from keras_lowrank.adaptive import adapter_ranks
from keras_lowrank.compression.compress import compress
from keras_lowrank.compression.report import CompressionReport
from keras_lowrank.exporters import ExportReport
from keras_lowrank.exporters import ExportVerificationError
from keras_lowrank.exporters import UnsupportedOpsError
from keras_lowrank.exporters import export
from keras_lowrank.generation import write_runtime_adapter
from keras_lowrank.layers import AdaLoRA
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
from keras_lowrank.layers.adapter_spec import AdapterSpec
from keras_lowrank.models import presets
from keras_lowrank.on_device import OnDeviceTraining
from keras_lowrank.peft import load_peft_adapters
from keras_lowrank.peft import read_peft_config
from keras_lowrank.peft import save_peft_adapters
from keras_lowrank.version import __version__

__all__ = [
    "__version__",
    "AdaLoRA",
    "AdaLoRACallback",
    "adapter_ranks",
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
    "OnDeviceTraining",
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
    "weight_bytes",
    "write_runtime_adapter",
]
