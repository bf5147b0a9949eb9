"""`write_adapter_file`: the factors trained on a device, as an adapter file.

The file is the one `klr.save_adapters` writes for the same model: the same
tensor keys (the artifact's factor keys are adapter-file keys) and the same
`keras_lowrank` metadata (the artifact carries it whole), so
`klr.load_adapters(base_model, path)` reads it. Needs `numpy` and
`safetensors` only: `export/train_on_device.py` loads this file by path
(and it loads `trainer.py` and `../utils/atomic.py` the same way).
"""

import json
import os
import sys

if __package__:
    from keras_lowrank.on_device import trainer
    from keras_lowrank.utils import atomic
else:  # loaded by path, without the package (and Keras): standalone.py
    trainer = sys.modules["_klr_standalone"].load("trainer")
    atomic = sys.modules["_klr_standalone"].load("../utils/atomic")

check_target = atomic.check_target


def write_adapter_file(factors, metadata, path) -> int:
    """Writes `factors` (as `OnDeviceTrainer.save` returns) to `path`.

    The write is atomic (`keras_lowrank.utils.atomic.atomic_path`): on any
    error nothing is left beside `path`, and an earlier file there is kept.

    Args:
        factors: `{adapter-file key: array}`, every factor of the artifact.
        metadata: dict. The artifact's metadata (`OnDeviceTrainer.metadata`).
        path: str. The `.safetensors` file to write.

    Returns:
        The number of bytes written.

    Raises:
        ValueError: a factor missing, unknown, of another shape, or holding
            a NaN or Inf (naming its key); nothing is written.
    """
    from safetensors.numpy import save_file

    by_name = trainer.check_factors(metadata, factors)
    tensors = {f["key"]: by_name[f["name"]] for f in metadata["factors"]}
    with atomic.atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"keras_lowrank": json.dumps(metadata["adapter_metadata"])})
    return os.path.getsize(path)
