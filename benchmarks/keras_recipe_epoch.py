"""Child: one epoch of keras-hub's own LoRA recipe, on `finetune_epoch`'s data.

What a user would do instead of `keras-lowrank finetune`, as keras-hub's
docs show it: `BertTextClassifier.from_preset(..., num_classes=2)` with
the preset's `BertTextClassifierPreprocessor` (sequence length
`settings.train_sequence_length`, the finetune child's), then
`model.backbone.enable_lora(rank=settings.rank)` (query and value, the
backbone's default LoRA layers), `compile`, and `fit` on the raw texts and
labels for one epoch, `validation_data` the raw validation texts. The
preprocessor tokenizes inside `fit` (keras-hub maps it over the batches in
tf.data) and pads every row to the sequence length; the finetune child
tokenizes once beforehand and pads each batch to its longest row (length
buckets). That padding is the difference the comparison is about.

Like for like with `finetune_epoch.py`:
- the data: `training.load_data` with the finetune child's own
  `FinetuneOptions` (`finetune_epoch.options`): the same seeded split, the
  same capped train / validation / test rows, in the same order;
- the optimizer: AdamW, `training.learning_rate_schedule` over the same
  steps (linear warmup, cosine decay, the same peak), the same weight
  decay, batch size, loss and accuracy metric; Keras' default
  `jit_compile` in both;
- the seed: `keras.utils.set_random_seed(options.seed)` before the model
  is built, as `finetune` does;
- the seconds: `fit_seconds` is `model.compile` + `model.fit` (the steps,
  their tracing, the validation pass at the end of the epoch; here also
  the tokenizing of the training and validation texts, which overlaps the
  steps in tf.data), as the finetune child's `train_seconds` is
  `training.fit` (compile, optimizer build, the steps, their tracing,
  validation; its texts were tokenized before, in its `model` stage).
  `tokenize_seconds` is how long the same preprocessor takes over those
  texts alone, after training: an upper bound on what tokenizing adds.

Not the same, as each side's defaults have it: keras-hub's LoRA has
alpha = rank (scale 1) and no dropout on the LoRA path, `finetune` alpha 16
(scale 2) and LoRA dropout 0.1; keras-hub trains in the split's order
(it batches texts without shuffling; the split is already shuffled with the
seed), `finetune` in its own seeded length-bucketed order; `finetune`
builds the optimizer before `fit` (one trace of the step, not two) and
runs early stopping's callback; the finetune child applies
`allocator.keep_freed_memory` as its command line does, the recipe runs
with the default allocator as a user's script would. keras-hub's
`enable_lora` also leaves more weights trainable (`trainable_params`,
450,818 on MiniLM, against `finetune`'s 74,498).

`test_accuracy` is `model.predict` on the test texts (the same rows as
the finetune child's `test_accuracy`), argmax against the labels.
"""

import os
import time

import numpy as np

from benchmarks import child
from benchmarks import finetune_epoch
from benchmarks import keras_setup


def recipe_classifier(sequence_length, num_classes, rank):
    """MiniLM `BertTextClassifier` with its preprocessor, keras-hub LoRA on.

    Args:
        sequence_length: int. The preprocessor pads and truncates to it.
        num_classes: int.
        rank: int. `backbone.enable_lora(rank=rank)`: query and value.
    """
    import keras_hub

    import keras_lowrank as klr

    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(
        klr.presets.minilm_path(), sequence_length=sequence_length)
    model = keras_hub.models.BertTextClassifier.from_preset(
        klr.presets.minilm_path(), num_classes=num_classes, preprocessor=preprocessor)
    model.backbone.enable_lora(rank=rank)
    return model


def compile_as_finetune(model, run_options, train_examples):
    """Compiles `model` with `training.fit`'s optimizer, loss and metric."""
    import keras

    from keras_lowrank.finetune import training

    steps = training.training_steps(run_options, train_examples)
    model.compile(
        optimizer=keras.optimizers.AdamW(
            training.learning_rate_schedule(run_options, steps),
            weight_decay=run_options.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name=training.ACCURACY)],
    )


def token_lengths(preprocessor, data, run_options):
    """Real tokens per row of the train and validation splits, and the
    seconds the preprocessor takes over both, tokenizing alone."""
    from keras_lowrank.finetune import training

    start = time.perf_counter()
    lengths = {}
    for split, limit in (("train", run_options.max_train_examples),
                         ("validation", run_options.max_eval_examples)):
        inputs, _ = training.tokenize(preprocessor, getattr(data, split), limit)
        lengths[split] = inputs["padding_mask"].astype(bool).sum(axis=1)
    return lengths, time.perf_counter() - start


def measure(settings, config, work):
    import keras

    from keras_lowrank.finetune import training

    run_options = finetune_epoch.options(
        settings, os.path.join(work, "keras_recipe_epoch_run"))  # never written
    data = training.load_data(run_options)
    train = training.texts(data.train, run_options.max_train_examples)
    validation = training.texts(data.validation, run_options.max_eval_examples)
    test = training.texts(data.test, run_options.max_eval_examples)

    keras.utils.set_random_seed(run_options.seed)
    model = recipe_classifier(run_options.sequence_length, data.num_classes,
                              run_options.rank)
    start = time.perf_counter()
    compile_as_finetune(model, run_options, len(train[1]))
    compile_seconds = time.perf_counter() - start
    history = model.fit(
        train[0], train[1], batch_size=run_options.batch_size, epochs=1,
        validation_data=validation if len(validation[1]) else None, verbose=0)
    fit_seconds = time.perf_counter() - start

    start = time.perf_counter()
    logits = model.predict(test[0], batch_size=run_options.batch_size, verbose=0)
    test_seconds = time.perf_counter() - start
    lengths, tokenize_seconds = token_lengths(model.preprocessor, data, run_options)
    full, batch_size = run_options.sequence_length, run_options.batch_size
    return {
        "fit_seconds": fit_seconds,
        "compile_seconds": compile_seconds,
        "tokenize_seconds": tokenize_seconds,
        "test_seconds": test_seconds,
        "test_accuracy": float(np.mean(np.argmax(logits, axis=-1) == test[1])),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "steps": -(-len(train[1]) // batch_size),
        "padded_tokens": len(train[1]) * full,
        "real_tokens": int(lengths["train"].sum()),
        "validation_padded_tokens": len(validation[1]) * full,
        "examples": {"train": len(train[1]), "validation": len(validation[1]),
                     "test": len(test[1])},
        "sequence_length": full,
        "batch_size": batch_size,
        "lora": {"rank": run_options.rank, "alpha": run_options.rank,
                 "dropout": 0.0, "layers": list(
                     model.backbone.default_lora_layer_names())},
        "trainable_params": keras_setup.trainable_count(model),
    }


if __name__ == "__main__":
    child.main(measure)
