"""Training adapters on several devices or machines, with Keras' own engines.

keras_lowrank has no distribution layer: adapters are Keras variables, so
the engines Keras runs distribute them like any other weight. What is here
is what those engines leave to the user: which process writes the adapter
file, a check that the adapters really are distributed, the layouts of the
LoRA factors under model parallelism, and one workaround.

TensorFlow backend (`tf.distribute`):
- one machine, several devices: `tf_strategy("mirrored", devices=...)`, a
  `tf.distribute.MirroredStrategy`;
- several machines: `tf_strategy("multi-worker")`, a
  `tf.distribute.MultiWorkerMirroredStrategy` configured by `TF_CONFIG`
  (an error that names it when it is missing or malformed). Every worker
  runs the same program.
Build or load the base model, call `klr.add_adapters` (or
`klr.load_adapters`) and `compile` inside `strategy.scope()`: the adapters
are then distributed variables (`check_distributed` says so), and `fit`
trains them with the global batch split over the replicas.

JAX backend (`keras.distribution`): `DataParallel` needs nothing more;
`ModelParallel` takes `lora_layout_map(layout_map, base_model)`, which
shards each factor along its kernel's sharding (`keras_lowrank.distribution.layouts`).
Call `add_adapters` inside the distribution's scope.

Adapter files are written once, by the chief (`is_chief`): every worker
calls `save_adapters` here, which on the chief is `klr.save_adapters`
(written atomically, so a crash of any process leaves the file of the last
complete save intact) and on the others writes the same file to a
worker-local temporary folder and removes it, as Keras' multi-worker guide
does for checkpoints: every worker reads and checks the same weights, so
an error (a NaN, say) stops every worker alike instead of leaving the
others waiting in the next step. Merge and export on the chief only,
outside the strategy's scope (`merge_adapters` copies the model; under a
multi-worker scope that copy would wait for the other workers).

Recovery after a worker dies: the others stop at their next collective
step (with `timeout_seconds`, after at most that long). Restart every
worker with the same `TF_CONFIG`; inside the scope load the base and
`klr.load_adapters(base, path)`: the file holds the adapters of the last
complete save. For an exact resume (optimizer state, epoch) add
`keras.callbacks.BackupAndRestore` to `fit`.

Example:
```python
strategy = klr.distribution.tf_strategy("multi-worker")   # reads TF_CONFIG
with strategy.scope():
    base = keras_hub.models.BertTextClassifier.from_preset(preset, num_classes=2)
    model = klr.add_adapters(base, rank=8)
    model.compile(optimizer="adam", loss=loss)
klr.distribution.check_distributed(model, strategy)
model.fit(dataset, epochs=2)               # the global batch, on every worker
klr.distribution.save_adapters(model, "adapters.safetensors")
if klr.distribution.is_chief():
    klr.export(model, "model.tflite", "tflite")
```
"""

from keras_lowrank.distribution.layouts import LoRALayoutMap
from keras_lowrank.distribution.layouts import lora_layout_map
from keras_lowrank.distribution.training import KINDS
from keras_lowrank.distribution.training import check_distributed
from keras_lowrank.distribution.training import is_chief
from keras_lowrank.distribution.training import save_adapters
from keras_lowrank.distribution.training import tf_config
from keras_lowrank.distribution.training import tf_strategy

__all__ = [
    "KINDS",
    "LoRALayoutMap",
    "check_distributed",
    "is_chief",
    "lora_layout_map",
    "save_adapters",
    "tf_config",
    "tf_strategy",
]
