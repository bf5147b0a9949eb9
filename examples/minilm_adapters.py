"""LoRA on the real all-MiniLM-L6-v2: adapt, train briefly, save, reload, export.

Run (after `make install fetch`): .venv/bin/python examples/minilm_adapters.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import keras_hub  # noqa: E402

import keras_lowrank as klr  # noqa: E402
from keras_lowrank.data import load_mr_polarity  # noqa: E402

data = load_mr_polarity(cache_dir=".cache")
train = data.train.take(512).batch(32)
classifier = keras_hub.models.BertTextClassifier.from_preset(klr.presets.minilm_path(), num_classes=2)
classifier.preprocessor.sequence_length = 64

config = klr.LoRAConfig(rank=8, alpha=16, targets=["query", "value"])
model = klr.add_adapters(classifier, config)
print(klr.trainable_summary(model))
model.compile(
    optimizer=keras.optimizers.AdamW(1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(train, epochs=1)

size = klr.save_adapters(model, "runs/example/adapters.safetensors")
print(f"adapter file: {size:,} bytes")
fresh = keras_hub.models.BertTextClassifier.from_preset(klr.presets.minilm_path(), num_classes=2)
reloaded = klr.load_adapters(fresh, "runs/example/adapters.safetensors")
print(reloaded.predict(["a gripping, beautifully shot film", "a dull mess"]))

from keras_lowrank.exporters import export  # noqa: E402

report = export(model, "runs/example/model.tflite", format="tflite", quantize="dynamic")
print(report)
