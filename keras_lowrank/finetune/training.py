"""Data, model and training of a fine-tuning run.

Texts are tokenized once, through the classifier's own preprocessor mapped
over batches in tf.data; training then feeds the token-id tensors (shuffled
each epoch, batched, prefetched) with the preprocessor detached, so no epoch
tokenizes again. Batches are padded to their longest row (`batching`). The
same token ids feed evaluation and the exported models.
"""

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

import keras_lowrank as klr
from keras_lowrank._compat import keras as keras_compat
from keras_lowrank.finetune import batching
from keras_lowrank.finetune import distributed
from keras_lowrank.finetune import model_source
from keras_lowrank.finetune import precision as precision_lib
from keras_lowrank.finetune.options import FinetuneOptions
from keras_lowrank.runs import adapter_setup

ACCURACY = "accuracy"
_TOKENIZE_BATCH = 256


def load_data(options: FinetuneOptions):
    """The `TextClassificationData` the options name (MR by default)."""
    from keras_lowrank.data import load_mr_polarity
    from keras_lowrank.data import load_text_classification

    if not options.train_files:
        return load_mr_polarity(cache_dir=options.cache_dir, seed=options.seed)
    return load_text_classification(
        list(options.train_files),
        text_column=options.text_column,
        label_column=options.label_column,
        labels=options.labels,
        validation_files=list(options.validation_files) or None,
        test_files=list(options.test_files) or None,
        cache_dir=options.cache_dir,
        seed=options.seed,
    )


def build_classifier(options: FinetuneOptions, num_classes, precision=None,
                     total_steps=None, train=None):
    """A `BertTextClassifier` from `options.model` with LoRA adapters.

    Args:
        options: the run's options (LoRA, a quantized base, AdaLoRA:
            `runs.adapter_setup.adapter_arguments`).
        num_classes: int.
        precision: `precision.Precision` or None (float32). The model is
            built under its Keras dtype policy: a mixed policy computes in
            bfloat16 / float16 and keeps every variable float32.
        total_steps: int or None. The optimizer steps the run trains for
            (`training_steps`); needed with `options.adaptive_rank`.
        train: the training split (unbatched `(text, label)` dataset): an
            int4 base is fitted to its first `options.base_calibration`
            examples (`runs.adapter_setup.calibration_examples`).

    Returns:
        `(model, base_model)`: the adapted classifier, and the base it was
        made from (untouched, for its parameter count).

    Raises:
        FileNotFoundError: the default model is not installed.
        ValueError: the model folder cannot be loaded as a BERT classifier,
            its longest input is shorter than `options.sequence_length`, or
            a target pattern matches no layer.
    """
    policy = (precision_lib.dtype_policy(precision) if precision is not None
              else contextlib.nullcontext())
    with policy:
        base = load_base_classifier(options, num_classes)
        examples = adapter_setup.calibration_examples(options)
        calibration = (tokenize(base.preprocessor, train, examples)[0]
                       if examples and train is not None else None)
        model = klr.add_adapters(base, **adapter_setup.adapter_arguments(
            options, total_steps, calibration))
    return model, base


def training_steps(options: FinetuneOptions, train_examples) -> int:
    """The optimizer steps of a run on `train_examples` examples: every
    epoch's batches, the last one short."""
    return math.ceil(train_examples / options.batch_size) * options.epochs


def float32_classifier(options: FinetuneOptions, num_classes, adapters_path):
    """The trained classifier in float32: the base with the saved adapters.

    A run that trained under a mixed policy evaluates and exports this
    model: its variables are the trained ones (float32 in both), its
    products float32 like every exported runtime's.
    """
    return klr.load_adapters(load_base_classifier(options, num_classes), adapters_path)


def load_base_classifier(options: FinetuneOptions, num_classes):
    """The `BertTextClassifier` of `options.model`, its sequence length set.

    Raises:
        FileNotFoundError, ValueError: as `build_classifier`.
    """
    import keras_hub

    folder = model_source.model_source(options)
    try:
        base = keras_hub.models.BertTextClassifier.from_preset(
            folder, num_classes=num_classes
        )
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, OSError) as error:
        raise ValueError(
            f"Cannot load a BERT text classifier from model={folder!r}: "
            f"{error}. Pass a keras-hub BERT preset or a Hugging Face BERT "
            "folder (config.json, model.safetensors, vocab.txt)."
        ) from None
    # A preset name has no config.json to read before loading.
    model_source.check_sequence_length(options, base.backbone.max_sequence_length)
    base.preprocessor.sequence_length = options.sequence_length
    return base


def token_ids_function(preprocessor):
    """The classifier's preprocessor on a batch of texts, as one graph.

    `tokenize` of each split (train, validation, test) runs the same graph:
    the preprocessor is traced once, not once per split (each `map` of a
    plain function traces it again, ~1-2 s of string ops each).
    """
    return tf.function(lambda texts: preprocessor(texts),
                       input_signature=[tf.TensorSpec([None], tf.string)])


def tokenize(preprocessor, dataset, limit=None):
    """Token ids of an unbatched `(text, label)` dataset, as numpy arrays.

    Args:
        preprocessor: the classifier's preprocessor (sequence length set),
            or `token_ids_function(preprocessor)` to share its trace.
        dataset: tf.data.Dataset of `(text, label)` scalars.
        limit: int or None. Keep only the first `limit` examples.

    Returns:
        `(inputs, labels)`: `{"token_ids", "segment_ids", "padding_mask"}`
        int32 arrays of shape (n, sequence_length), and int64 labels (n,).
    """
    if limit is not None:
        dataset = dataset.take(limit)
    batches = dataset.batch(_TOKENIZE_BATCH).map(
        lambda texts, labels: (preprocessor(texts), labels),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    inputs, labels = {}, []
    for x, y in batches.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        for name, value in x.items():
            inputs.setdefault(name, []).append(np.asarray(value).astype("int32"))
        labels.append(y)
    if not labels:
        return {}, np.zeros((0,), "int64")
    return (
        {name: np.concatenate(parts) for name, parts in inputs.items()},
        np.concatenate(labels).astype("int64"),
    )


def texts(dataset, limit=None):
    """The raw texts and labels of an unbatched `(text, label)` dataset.

    Args:
        dataset: tf.data.Dataset of `(text, label)` scalars (a split of
            `load_data`).
        limit: int, float or None. Keep only the first `limit` examples.

    Returns:
        `(texts, labels)`: a list of str and int64 labels (n,), in the
        order `tokenize` reads the same split.
    """
    if limit is not None and math.isfinite(limit):
        dataset = dataset.take(int(limit))
    pairs = list(dataset.as_numpy_iterator())
    return ([text.decode("utf-8") for text, _ in pairs],
            np.asarray([label for _, label in pairs], dtype="int64"))


def fit(model, train, validation, options: FinetuneOptions,
        scope=contextlib.nullcontext, callbacks=()):
    """Trains `model` on token ids; early stopping keeps the best epoch.

    Args:
        model: the adapted classifier, preprocessor detached.
        train: `(inputs, labels)` from `tokenize`.
        validation: `(inputs, labels)`, possibly empty.
        options: the run's options.
        scope: callable returning a context manager: the model is compiled
            in it (a `tf.distribute` strategy's scope, for a distributed
            run, whose datasets are then sharded by data).
        callbacks: more Keras callbacks for `fit` (`AdaLoRACallback`
            under `options.adaptive_rank`, which also turns early stopping
            off: `adapter_setup.early_stopping`).

    Returns:
        The Keras `History.history` dict (`loss`, `accuracy`, `val_loss`,
        `val_accuracy` per epoch).
    """
    inputs, labels = train
    with scope():
        model.compile(
            optimizer=keras.optimizers.AdamW(
                learning_rate_schedule(options, training_steps(options, len(labels))),
                weight_decay=options.weight_decay,
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name=ACCURACY)],
        )
        build_optimizer(model)
    shard = distributed.shard_by_data if options.distribute else (lambda dataset: dataset)
    epoch = _EpochIndex()
    train_data = shard(batching.training_dataset(
        inputs, labels, options.batch_size, options.seed, epoch=epoch
    ))
    callbacks, validation_data = [epoch, *callbacks], None
    if len(validation[1]):
        validation_data = shard(
            batching.evaluation_dataset(*validation, options.batch_size))
    if validation_data is not None and adapter_setup.early_stopping(options):
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=f"val_{ACCURACY}",
                mode="max",
                patience=options.patience,
                restore_best_weights=True,
                verbose=int(options.verbose > 0),
            )
        )
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=options.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself
        verbose=options.verbose,
    )
    return {name: [float(v) for v in values] for name, values in history.history.items()}


class _EpochIndex(keras.callbacks.Callback):
    """The index of the epoch `fit` is in; calling it returns it."""

    def __init__(self):
        super().__init__()
        self.index = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.index = epoch

    def __call__(self):
        return self.index


def learning_rate_schedule(options, total_steps):
    """Linear warmup over `options.warmup_fraction` of `total_steps` to
    `options.learning_rate`, then cosine decay to 0 at the last step."""
    warmup = int(options.warmup_fraction * total_steps)
    # Linear warmup to the peak, then cosine decay to 0 at the last step.
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else options.learning_rate,
        decay_steps=max(total_steps - warmup, 1),
        warmup_target=options.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def build_optimizer(model):
    """Creates the compiled model's optimizer variables now, and has its
    weight decay compute the learning rate once per step.

    Keras creates the variables inside the first training step, and a
    `tf.function` that creates variables is traced twice; built before
    `fit`, the step is traced once (on MiniLM and SmolLM2 tracing is most of
    the first step). Keras' weight decay evaluates a learning-rate schedule
    once per variable: 420 times in each step of SmolLM2 with LoRA on every
    linear layer, 22% of the step's optimizer ops; once is the same value
    (`keras_compat.weight_decay_reading_learning_rate_once`). The variables
    and their values are the same.
    """
    model.optimizer.build(model.trainable_variables)
    keras_compat.weight_decay_reading_learning_rate_once(model.optimizer)
