"""Adapters trained on the phone: trainable LiteRT artifacts.

- `OnDeviceTraining` (`options`): batch size, optimizer and its settings,
  for `klr.export(model, "personal.tflite", "tflite",
  on_device_training=OnDeviceTraining(...))`.
- `export.export_trainable`: what that call runs (TensorFlow).
- `trainer.OnDeviceTrainer`: runs an artifact's `infer`, `train`, `save`
  and `restore` with LiteRT alone, as an app does; `export/train_on_device.py`
  trains one on a JSONL file with neither TensorFlow nor Keras.
- Back on the host, `klr.load_adapters(adapted_model, trainer.save())`.

This package imports only the TF-free record here; the rest is imported by
module.
"""

from keras_lowrank.on_device.options import OnDeviceTraining

__all__ = ["OnDeviceTraining"]
