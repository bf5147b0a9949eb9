"""Tiny models and runs shared by the AdaLoRA tests."""

import keras
import numpy as np

import keras_lowrank as klr


def mlp(width=16, depth=3, seed=0):
    """A functional MLP of `depth` Dense layers `width` wide, and a head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((width,))
    x = inputs
    for i in range(depth):
        x = keras.layers.Dense(width, activation="tanh", name=f"dense_{i}")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="mlp")


def data(n=16, width=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def adalora_config(rank=6, **options):
    options = {"target_rank": 3, "total_steps": 12, "warmup_steps": 2,
               "final_steps": 3, "interval": 2, **options}
    return klr.LoRAConfig(rank=rank, targets="re:dense_.*", trainable=(),
                          adaptive=klr.AdaLoRA(**options))


def compiled(model, optimizer=None):
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(5e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def trained(steps=12, seed=0, **options):
    """An AdaLoRA MLP trained `steps` steps (batch = the whole data)."""
    model = compiled(klr.add_adapters(mlp(seed=seed), adalora_config(**options)))
    x, y = data(seed=seed)
    model.fit(x, y, epochs=steps, batch_size=len(x), verbose=0,
              callbacks=[klr.AdaLoRACallback()])
    return model


def max_diff(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
