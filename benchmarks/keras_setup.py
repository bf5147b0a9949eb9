"""The same MiniLM classifier, batch and compile options for every Keras child."""

import os

import numpy as np

BATCH_FILE = "batch.npz"
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def build_classifier(config, rank):
    """MiniLM `BertTextClassifier` (no preprocessor) set up as `config`.

    Args:
        config: str. "base" / "full" (everything trainable), "klr_lora"
            (`klr.add_adapters`, query and value), "keras_lora"
            (`backbone.enable_lora`, query and value by default).
        rank: int. LoRA rank.
    """
    import keras_hub

    import keras_lowrank as klr

    model = keras_hub.models.BertTextClassifier.from_preset(
        klr.presets.minilm_path(), num_classes=2, preprocessor=None
    )
    if config in ("base", "full"):
        return model
    if config == "klr_lora":
        return klr.add_adapters(model, rank=rank)
    if config == "keras_lora":
        model.backbone.enable_lora(rank)
        return model
    raise ValueError(
        f"Unknown config={config!r}. Expected one of: base, full, klr_lora, "
        "keras_lora"
    )


def compile_for_training(model, learning_rate, xla, metrics=()):
    """AdamW + sparse cross-entropy, identical for every configuration."""
    import keras

    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=list(metrics),
        jit_compile=bool(xla),
    )


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def preprocessor(sequence_length):
    import keras_hub

    import keras_lowrank as klr

    return keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        klr.presets.minilm_path(), sequence_length=sequence_length
    )


def tokenize(texts, sequence_length):
    """`{name: int32 (n, sequence_length)}` for a list of strings."""
    import tensorflow as tf

    outputs = preprocessor(sequence_length)(tf.constant(texts))
    return {name: np.asarray(outputs[name]).astype("int32") for name in INPUT_NAMES}


def load_batch(work, rows=None):
    """The fixed batch `prepare` wrote: `({name: int32 array}, int labels)`."""
    with np.load(os.path.join(work, BATCH_FILE)) as data:
        inputs = {name: data[name][:rows] for name in INPUT_NAMES}
        return inputs, data["labels"][:rows]


def as_tensors(inputs, labels=None):
    import tensorflow as tf

    tensors = {name: tf.constant(value) for name, value in inputs.items()}
    if labels is None:
        return tensors
    return tensors, tf.constant(labels)
