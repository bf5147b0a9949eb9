"""The one training run every distributed test repeats, on any engine.

A tiny keras-hub BERT classifier without dropout (dropout draws differ
between one device and several, so runs could not match), LoRA rank 2 on
every Dense and EinsumDense, the head kept trainable; STEPS Adam steps of
the global batch BATCH, in order. Every run starts from the same weights
(`write_start` / `load_start`: the base's weights and the adapted model's,
so that the random init of `A` is shared too), so a distributed run
matches the one-device run up to float summation order.

Importable on every backend; TensorFlow is imported only by `dataset`.
"""

import keras
import keras_hub
import numpy as np

import keras_lowrank as klr
from tests import tiny_models as tiny

RANK = 2
BATCH = 8  # the global batch: split over the replicas
STEPS = 4
LEARNING_RATE = 1e-2
CONFIG = {"rank": RANK, "targets": "all-linear"}


def build_base():
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=tiny.VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=tiny.SEQ, dropout=0.0,
    )
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=2, preprocessor=None, dropout=0.0
    )


def data():
    """`(x, y)`: STEPS global batches of token ids and labels."""
    x = tiny.bert_inputs(batch=STEPS * BATCH, seed=1)
    y = np.random.default_rng(2).integers(0, 2, size=STEPS * BATCH).astype("int32")
    return x, y


def dataset():
    """`data()` as a tf.data.Dataset of global batches, sharded by data.

    In-memory data has no files to shard; with `DATA` each worker takes
    its replicas' slices of every global batch, so step k trains on batch k
    as one device does.
    """
    import tensorflow as tf

    x, y = data()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).with_options(options)


def write_start(path):
    """Writes the starting weights of every run to `path` (.npz)."""
    keras.utils.set_random_seed(1)
    base = build_base()
    adapted = klr.add_adapters(base, **CONFIG)
    np.savez(
        path,
        **{f"base_{i}": w for i, w in enumerate(base.get_weights())},
        **{f"adapted_{i}": w for i, w in enumerate(adapted.get_weights())},
    )


def load_start(path, base=None):
    """`(base, adapted)` with the weights of `write_start`, built in scope."""
    stored = np.load(path)
    base = build_base() if base is None else base
    base.set_weights([stored[f"base_{i}"] for i in range(len(base.weights))])
    adapted = klr.add_adapters(base, **CONFIG)
    adapted.set_weights([stored[f"adapted_{i}"] for i in range(len(adapted.weights))])
    return base, adapted


def compile_model(model, run_eagerly=False):
    """Adam at LEARNING_RATE, cross-entropy on logits. `run_eagerly`: for a
    one-device check in the test process, where tracing the step would cost
    more than the few steps it runs (see `conftest.reference`)."""
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=run_eagerly,
    )


def fit(model, inputs=None, **kwargs):
    """One epoch: STEPS steps of BATCH, in order."""
    if inputs is None:
        x, y = data()
        return model.fit(x, y, batch_size=BATCH, shuffle=False, verbose=0, **kwargs)
    return model.fit(inputs, shuffle=False, verbose=0, **kwargs)


def adapter_values(model):
    """`{path: array}` of the trainable weights (factors and head)."""
    return {
        w.path: np.asarray(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights
    }


def predict(model):
    """The model's `predict` on `data()`: what a distributed run predicts."""
    x, _ = data()
    # One compiled predict step: called eagerly, JAX compiles each op of a
    # sharded model on its own (measured: 13 s of the JAX run's 67 s).
    return np.asarray(model.predict(x, batch_size=STEPS * BATCH, verbose=0))


def save_values(path, values, **arrays):
    np.savez(path, **{f"w:{k}": v for k, v in values.items()}, **arrays)


def load_values(path):
    stored = np.load(path)
    values = {k[2:]: stored[k] for k in stored.files if k.startswith("w:")}
    return values, {k: stored[k] for k in stored.files if not k.startswith("w:")}


def max_abs_diff(a, b):
    """Largest difference between two `{path: array}` of the same paths."""
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
