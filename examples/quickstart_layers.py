"""Wrap a Dense and an attention projection, fit, merge.

Run: .venv/bin/python examples/quickstart_layers.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_lowrank as klr  # noqa: E402

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 10, 32)).astype("float32")
y = rng.normal(size=(256, 8)).astype("float32")

# A "pretrained" model: attention then a dense head.
inputs = keras.Input((10, 32))
attention = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8, name="attention")
hidden = attention(inputs, inputs)
pooled = keras.layers.GlobalAveragePooling1D()(hidden)
outputs = keras.layers.Dense(8, name="head")(pooled)
pretrained = keras.Model(inputs, outputs)

# LoRA on the attention's query/value and on the head; everything else frozen.
model = klr.add_adapters(pretrained, targets=["attention/query", "attention/value", "head"], rank=4)
print(klr.trainable_summary(model))
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
model.fit(x, y, epochs=3, batch_size=32, verbose=2)

merged = klr.merge_adapters(model)
diff = np.abs(merged.predict(x, verbose=0) - model.predict(x, verbose=0)).max()
print(f"merged model: {type(merged).__name__}, max abs diff vs adapted {diff:.2e}")
