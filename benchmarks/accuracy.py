"""Child: MR test accuracy of one configuration after `epochs` epochs.

Every configuration sees the same token ids (padded to
`train_sequence_length`), batch size, epochs, shuffling seed and AdamW;
only the learning rate differs: `full_learning_rate` for full fine-tuning,
`lora_learning_rate` for the LoRA configurations (each its usual regime).
"""

import time

import numpy as np

from benchmarks import child
from benchmarks import keras_setup


def _split(dataset, limit, sequence_length):
    if limit is not None:
        dataset = dataset.take(limit)
    rows = list(dataset.as_numpy_iterator())
    texts = [text.decode("utf-8") for text, _ in rows]
    labels = np.array([label for _, label in rows], dtype="int32")
    return keras_setup.tokenize(texts, sequence_length), labels


def measure(settings, config, work):
    import keras

    from keras_lowrank.data import load_mr_polarity

    keras.utils.set_random_seed(settings.seed)
    data = load_mr_polarity(cache_dir=".cache")
    length = settings.train_sequence_length
    x_train, y_train = _split(data.train, settings.train_examples, length)
    x_test, y_test = _split(data.test, settings.test_examples, length)
    model = keras_setup.build_classifier(config, settings.rank)
    learning_rate = (
        settings.full_learning_rate if config == "full"
        else settings.lora_learning_rate
    )
    keras_setup.compile_for_training(
        model, learning_rate, settings.xla, metrics=["sparse_categorical_accuracy"]
    )
    start = time.perf_counter()
    history = model.fit(
        x_train, y_train, batch_size=settings.batch_size,
        epochs=settings.epochs, shuffle=True, verbose=0,
    )
    fit_s = time.perf_counter() - start
    logits = model.predict(x_test, batch_size=settings.batch_size, verbose=0)
    steps = settings.epochs * -(-len(y_train) // settings.batch_size)
    return {
        "config": config,
        "learning_rate": learning_rate,
        "epochs": settings.epochs,
        "train_examples": len(y_train),
        "test_examples": len(y_test),
        "sequence_length": length,
        "fit_s": fit_s,
        "fit_s_per_step": fit_s / steps,
        "train_accuracy_last_epoch": float(
            history.history["sparse_categorical_accuracy"][-1]
        ),
        "test_accuracy": float(np.mean(np.argmax(logits, axis=-1) == y_test)),
        "trainable_params": keras_setup.trainable_count(model),
    }


if __name__ == "__main__":
    child.main(measure)
