"""`finetune_lm`: a causal LM fine-tuned with LoRA for generation, measured
before and after, exported as a generator and measured in its runtime."""

import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lowrank as klr
from keras_lowrank._compat import tensorflow as tensorflow_compat
from keras_lowrank.finetune.training import build_optimizer
from keras_lowrank.finetune.training import learning_rate_schedule
from keras_lowrank.lm_finetune import lm_batches
from keras_lowrank.lm_finetune import lm_evaluation
from keras_lowrank.lm_finetune.causal_lm_loading import load_causal_lm
from keras_lowrank.lm_finetune.causal_lm_loading import read_config
from keras_lowrank.lm_finetune.chat_format import ChatFormat
from keras_lowrank.lm_finetune.lm_data import load_lm_data
from keras_lowrank.lm_finetune.lm_data import split_limits
from keras_lowrank.lm_finetune.lm_evaluation import answer_tokens
from keras_lowrank.lm_finetune.lm_evaluation import scored_rows
from keras_lowrank.lm_finetune.lm_export import check_adapter_bundle
from keras_lowrank.lm_finetune.lm_export import export_and_measure
from keras_lowrank.lm_finetune.lm_export import keras_reference
from keras_lowrank.lm_finetune.lm_finetune_options import GENERATION_FORMATS
from keras_lowrank.lm_finetune.lm_finetune_options import LMFinetuneOptions
from keras_lowrank.lm_finetune.lm_report import describe_export
from keras_lowrank.lm_finetune.lm_report import measure_line
from keras_lowrank.lm_finetune.lm_report import summary_table
from keras_lowrank.models import presets
from keras_lowrank.runs import adapter_setup
from keras_lowrank.runs.adapter_report import adapter_values
from keras_lowrank.runs.adapter_report import add_rank_plot
from keras_lowrank.runs.build_folder import check_out
from keras_lowrank.runs.build_folder import run_in_build_folder
from keras_lowrank.runs.report_files import add_files
from keras_lowrank.runs.report_files import export_line
from keras_lowrank.runs.run_folder import ADAPTER_BUNDLE
from keras_lowrank.runs.run_folder import ADAPTERS_FILE

ACCURACY = "accuracy"


@tensorflow_compat.custom_gradients_released()
def finetune_lm(options: LMFinetuneOptions | None = None, *, log=print) -> dict:
    """Fine-tunes a causal LM with LoRA for generation; measures it all.

    Stages, each announced as `[k/6] name ...` through `log`:
    1. data: the MR task, or the user's JSONL / text files, split with the
       seed.
    2. model: the LM with LoRA adapters; the splits tokenized with the
       model's chat template; the model measured at the adapters' init
       (with LoRA's `B = 0`, the base model's outputs): held-out loss and
       perplexity, test answers by greedy generation, sample generations.
    3. train: AdamW (warmup, cosine decay) on completion tokens only,
       validation loss every `eval_every` steps, early stopping that keeps
       the best weights.
    4. evaluate: the adapters saved; the same measures, by the same graphs.
    5. export: a generator artifact per format (`export_generator`, checked
       token for token against Keras), its test answers generated in its
       runtime.
    6. report: `<out>/report.json`, `<out>/training_curves.png`, a summary.

    The run folder is built beside `options.out` and moved into place at the
    end: an error at any stage leaves `options.out` as it was.

    Args:
        options: LMFinetuneOptions. Defaults to `LMFinetuneOptions()`.
        log: callable taking one str.

    Returns:
        The report (a JSON-ready dict, as written to report.json).

    Raises:
        DataError: a bad data file (the message names the file and line).
        ValueError: before any slow work, an `out` holding other files, a
            tokenizer that does not fit the model's vocabulary, a folder
            that is not a causal LM.
        FileNotFoundError: the model folder or its tokenizer is missing.

    Example:
    ```python
    options = LMFinetuneOptions(out="runs/lm", max_steps=100)
    for sample in finetune_lm(options)["samples"]:
        print(sample["prompt"], "->", sample["after"])
    ```
    """
    options = options or LMFinetuneOptions()
    # Before any slow work: the target folder, the model's config and a
    # tokenizer that fits its vocabulary.
    check_out(options.out)
    folder = model_folder(options)
    chat = ChatFormat.from_folder(folder, vocabulary_size(folder),
                                  options.tokenizer_file)
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    return run_in_build_folder(
        options.out, lambda build, progress: _run(options, folder, chat, build, progress),
        log=log, summary=summary_table)


def model_folder(options) -> str:
    """The model folder of `options`: `options.model` or SmolLM2's."""
    if options.model is not None:
        return os.fspath(options.model)
    return presets.smollm2_path()


def load_splits(options, chat):
    """`(examples, source, splits)`: the run's examples, capped as
    `options` says, and their token ids (`lm_batches.TokenizedSplit`)."""
    examples, source = load_lm_data(options)
    limits = split_limits(options)
    examples = {k: v[:limits[k]] for k, v in examples.items()}
    splits = {k: lm_batches.encode_split(chat, v, options.sequence_length)
              for k, v in examples.items()}
    return examples, source, splits


def _run(options, folder, chat, build, progress):
    def final(name):
        return os.path.join(options.out, name)

    with progress.stage("data") as note:
        examples, source, splits = load_splits(options, chat)
        note(f"{source}: {_counts({k: len(v) for k, v in splits.items()})} "
             f"examples, at most {options.sequence_length} tokens "
             f"({sum(s.truncated for s in splits.values())} truncated, "
             f"{sum(s.dropped for s in splits.values())} dropped)")
    _check_train_examples(splits, options)
    scored = scored_rows(splits["test"])

    with progress.stage("model") as note:
        keras.utils.set_random_seed(options.seed)
        base = load_causal_lm(folder)
        train = splits["train"]
        model = klr.add_adapters(base, **adapter_setup.adapter_arguments(
            options, options.training_steps, calibration={
                "token_ids": train.token_ids, "padding_mask": train.padding_mask}))
        # The adapted copy holds its own weights: the float base goes (538 MB
        # for SmolLM2), once the report has its size.
        base_bytes = klr.weight_bytes(base)
        del base
        if ADAPTER_BUNDLE in options.export:
            check_adapter_bundle(model)
        trainable, total = klr.parameter_counts(model)
        note(f"{os.path.basename(folder)} + {adapter_setup.adapters_note(options)} on "
             f"{list(options.targets)}: {klr.trainable_summary(model)}")
        # One traced forward pass for the run: held-out loss before and
        # after training, and validation during it.
        forward = lm_evaluation.forward_function(model)
        measure = _measurer(model, chat, splits, scored, examples, options, forward)
        before = measure()
        note("before: " + measure_line(before))

    with progress.stage("train") as note:
        train_start = time.perf_counter()
        history = fit(model, splits["train"], splits["validation"], options, forward)
        train_seconds = time.perf_counter() - train_start
        best = _best_evaluation(history)
        note(f"{len(history['loss'])} evaluations of {options.eval_every} steps, "
             f"best after step {best * options.eval_every}")

    with progress.stage("evaluate") as note:
        adapters_path = os.path.join(build, ADAPTERS_FILE)
        adapter_bytes = klr.save_adapters(model, adapters_path)
        after = measure()
        note("after: " + measure_line(after))
        note(f"{final(ADAPTERS_FILE)} ({adapter_bytes:,} bytes)")

    with progress.stage("export") as note:
        exports = {}
        reference = keras_reference(model, options) if options.export else None
        for format in options.export:
            exports[format] = export_and_measure(
                model, format, folder, chat, splits["test"], scored, examples,
                options, build, reference)
            note(export_line(format, exports[format], describe_export))

    with progress.stage("report") as note:
        report = {
            "task": "causal-lm",
            "data": source,
            "model": folder,
            "test_accuracy_before": before["test_accuracy"],
            "test_accuracy": after["test_accuracy"],
            "heldout_loss_before": before["heldout_loss"]["loss"],
            "heldout_perplexity_before": before["heldout_loss"]["perplexity"],
            "heldout_loss": after["heldout_loss"]["loss"],
            "heldout_perplexity": after["heldout_loss"]["perplexity"],
            "trainable_params": int(trainable),
            "total_params": int(total),
            "adapter_bytes": int(adapter_bytes),
            "train_seconds": train_seconds,
            "steps_run": len(history["loss"]) * options.eval_every,
            # Without early stopping (AdaLoRA) the last step's weights are kept.
            "best_step": (best if adapter_setup.early_stopping(options)
                          else len(history["loss"])) * options.eval_every,
            "history": history,
            "num_examples": {k: len(v) for k, v in splits.items()},
            "scored_test_examples": len(scored),
            "samples": _samples(examples["test"], scored, before, after, options),
            "before": _without_texts(before),
            "after": _without_texts(after),
            "exports": exports,
            "options": options.to_dict(),
            "versions": {"keras": keras.__version__,
                         "keras_lowrank": klr.__version__},
            **adapter_values(model, base_bytes, options, adapter_setup.adalora_schedule(
                options, options.training_steps)),
        }
        for format in GENERATION_FORMATS:
            exported = exports.get(format, {})
            report[f"{format}_test_accuracy"] = exported.get("test_accuracy")
            report[f"{format}_bytes"] = exported.get("size_bytes")
        add_files(report, history, report["best_step"] // options.eval_every,
                  build, options.out)
        add_rank_plot(report, build, options.out)
        note(", ".join(report["files"][key] for key in
                       ("report", "training_curves", "rank_allocation")
                       if key in report["files"]))
    return report


def fit(model, train, validation, options, forward=None) -> dict:
    """Trains on completion tokens; returns the per-evaluation history.

    Keras' `fit` runs `ceil(max_steps / eval_every)` rounds of `eval_every`
    steps; after each, the validation loss (per completion token,
    `lm_evaluation.HeldOutValidation` through `forward`, the run's traced
    forward pass) decides early stopping, which restores the best round's
    weights.

    Returns:
        `{"loss", "accuracy", "val_loss", "val_accuracy"}` lists, one value
        per round (accuracy: next-token accuracy on completion tokens).
    """
    rounds = math.ceil(options.max_steps / options.eval_every)
    model.compile(
        optimizer=keras.optimizers.AdamW(
            learning_rate_schedule(options, rounds * options.eval_every),
            weight_decay=options.weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name=ACCURACY)],
    )
    build_optimizer(model)
    # AdaLoRA's callback under `adaptive_rank`, which spans every step: no
    # early stopping then (`adapter_setup.early_stopping`).
    callbacks = adapter_setup.training_callbacks(options)
    if len(validation):
        callbacks.insert(0, lm_evaluation.HeldOutValidation(
            validation, options.batch_size,
            forward or lm_evaluation.forward_function(model)))
    if len(validation) and adapter_setup.early_stopping(options):
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", mode="min", patience=options.patience,
            restore_best_weights=True, verbose=int(options.verbose > 0)))
    history = model.fit(
        lm_batches.training_dataset(train, options.batch_size, options.seed),
        steps_per_epoch=options.eval_every,
        epochs=rounds,
        callbacks=callbacks,
        verbose=options.verbose,
    )
    return {name: [float(v) for v in values] for name, values in history.history.items()}


def _best_evaluation(history):
    """1-based round of the lowest validation loss (the first if tied)."""
    values = history.get("val_loss")
    if not values:
        return len(history["loss"])
    return int(np.argmin(values)) + 1


def _measurer(model, chat, splits, scored, examples, options, forward):
    """`measure()`: loss and perplexity on the validation split, test
    answers by greedy generation in Keras, and the sample generations, of
    `model` as it is at the call.

    Its graphs (a cached greedy step, a forward pass) are traced once, at
    the first call, and read the variables: the run measures before
    training, the adapters at their init (LoRA's `B = 0`: the base model's
    outputs, bit for bit; a quantized base: that base), and after it,
    without tracing the model twice more (seconds each for SmolLM2's 30
    blocks).
    """
    test = splits["test"]
    prompts = [test.prompts[i] for i in scored]
    longest = max((len(p) for p in prompts), default=0)
    greedy = lm_evaluation.KerasGreedy(
        model, longest + max(answer_tokens(test, scored), options.max_new_tokens))

    def measure() -> dict:
        start = time.perf_counter()
        generated = greedy(prompts, answer_tokens(test, scored),
                           chat.stop_token_ids, options.batch_size)
        texts = [chat.decode(tokens) for tokens in generated]
        references = [chat.decode(test.completions[i]) for i in scored]
        samples = greedy(prompts[:options.samples], options.max_new_tokens,
                         chat.stop_token_ids, options.batch_size)
        return {
            "test_accuracy": lm_evaluation.answer_accuracy(texts, references),
            "generation_seconds": time.perf_counter() - start,
            # On the validation split: held out from training, and a few
            # hundred sentences cost less than the test split once more.
            "heldout_loss": lm_evaluation.heldout_loss(
                model, splits["validation"], options.batch_size, forward),
            "answers": texts,
            "references": references,
            "sample_texts": [chat.decode(tokens) for tokens in samples],
        }

    return measure


def _samples(test_examples, scored, before, after, options):
    return [{"prompt": test_examples[i].messages[-1][1],
             "reference": before["references"][k],
             "before": before["sample_texts"][k],
             "after": after["sample_texts"][k]}
            for k, i in enumerate(scored[:options.samples])]


def _without_texts(measured):
    return {k: v for k, v in measured.items()
            if k not in ("answers", "references", "sample_texts")}


def vocabulary_size(folder) -> int:
    """The `vocab_size` of the model folder's config.json.

    Raises:
        ValueError: the config has no positive integer `vocab_size`.
    """
    config = read_config(folder)
    value = config.get("vocab_size")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{os.path.join(folder, 'config.json')}: no "
                         f"vocab_size. Received: vocab_size={value!r}")
    return value


def _check_train_examples(splits, options):
    """Refuses a run left with no training example, saying why."""
    train = splits["train"]
    if len(train):
        return
    counts = _counts({k: len(v) for k, v in splits.items()})
    if train.dropped:
        raise ValueError(
            f"Fine-tuning needs training examples, but all {train.dropped} were "
            "dropped: none keeps a completion token within sequence_length="
            f"{options.sequence_length} (the longest holds {train.longest} "
            "tokens, the chat template's included). Raise --sequence-length "
            f"(sequence_length=) to at least {train.longest}. Received: {counts}")
    raise ValueError(f"Fine-tuning needs training examples. Received: {counts}")


def _counts(counts):
    return " / ".join(f"{counts[k]:,} {k}" for k in ("train", "validation", "test"))


