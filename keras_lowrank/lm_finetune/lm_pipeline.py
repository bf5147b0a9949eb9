"""`finetune_lm`: a causal LM fine-tuned with LoRA for generation, measured
before and after, exported as a generator and measured in its runtime."""

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lowrank as klr
from keras_lowrank.finetune import report as report_lib
from keras_lowrank.finetune.progress import Progress
from keras_lowrank.finetune.run_folder import ADAPTERS_FILE
from keras_lowrank.finetune.run_folder import CURVES_FILE
from keras_lowrank.finetune.run_folder import REPORT_FILE
from keras_lowrank.finetune.run_folder import artifact_file
from keras_lowrank.finetune.run_folder import is_run_folder
from keras_lowrank.finetune.training import build_optimizer
from keras_lowrank.finetune.training import learning_rate_schedule
from keras_lowrank.lm_finetune import lm_batches
from keras_lowrank.lm_finetune import lm_evaluation
from keras_lowrank.lm_finetune.causal_lm_loading import load_causal_lm
from keras_lowrank.lm_finetune.causal_lm_loading import read_config
from keras_lowrank.lm_finetune.chat_format import TOKENIZER_FILE
from keras_lowrank.lm_finetune.chat_format import ChatFormat
from keras_lowrank.lm_finetune.lm_data import load_lm_data
from keras_lowrank.lm_finetune.lm_finetune_options import GENERATION_FORMATS
from keras_lowrank.lm_finetune.lm_finetune_options import LMFinetuneOptions
from keras_lowrank.utils.atomic import atomic_path
from keras_lowrank.utils.atomic import check_target

ACCURACY = "accuracy"
# Test prompts the export check generates from, and how many tokens each.
_VERIFY_PROMPTS = 4
_VERIFY_NEW_TOKENS = 8
# Tokens generated past the longest reference answer when scoring.
_ANSWER_SLACK = 2


def finetune_lm(options: LMFinetuneOptions | None = None, *, log=print) -> dict:
    """Fine-tunes a causal LM with LoRA for generation; measures it all.

    Stages, each announced as `[k/6] name ...` through `log`:
    1. data: the MR task, or the user's JSONL / text files, split with the
       seed.
    2. model: the LM with LoRA adapters; the splits tokenized with the
       model's chat template; the base model measured (held-out loss and
       perplexity, test answers by greedy generation, sample generations).
    3. train: AdamW (warmup, cosine decay) on completion tokens only,
       validation loss every `eval_every` steps, early stopping that keeps
       the best weights.
    4. evaluate: the adapters saved; the same measures as for the base.
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
    report = finetune_lm(LMFinetuneOptions(out="runs/lm"))
    print(report["test_accuracy_before"], report["test_accuracy"])
    ```
    """
    options = options or LMFinetuneOptions()
    # Before any slow work: the target folder, the model's config and a
    # tokenizer that fits its vocabulary.
    check_target(options.out, directory=True, replaceable=is_run_folder)
    folder = model_folder(options)
    vocabulary = _vocabulary_size(folder)
    chat = ChatFormat.from_folder(folder, vocabulary, options.tokenizer_file)
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    progress = Progress(log)
    start = time.perf_counter()
    with atomic_path(options.out, directory=True, replaceable=is_run_folder) as build:
        os.mkdir(build)
        report = _run(options, folder, chat, build, progress)
        report["stage_seconds"] = dict(progress.seconds)
        report["stage_cpu_seconds"] = dict(progress.cpu_seconds)
        report["total_seconds"] = time.perf_counter() - start
        report_lib.write_json(report, os.path.join(build, REPORT_FILE))
    log("")
    log(summary_table(report))
    return report


def model_folder(options) -> str:
    """The model folder of `options`: `options.model` or SmolLM2's."""
    if options.model is not None:
        return os.fspath(options.model)
    from keras_lowrank.models import presets

    return presets.smollm2_path()


def load_splits(options, chat):
    """`(examples, source, splits)`: the run's examples, capped as
    `options` says, and their token ids (`lm_batches.TokenizedSplit`)."""
    examples, source = load_lm_data(options)
    limits = {"train": options.max_train_examples,
              "validation": min(options.max_eval_examples or math.inf,
                                options.max_validation_examples or math.inf),
              "test": options.max_eval_examples}
    limits = {k: None if v == math.inf else v for k, v in limits.items()}
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
    if not len(splits["train"]):
        raise ValueError("Fine-tuning needs training examples. Received: "
                         f"{_counts({k: len(v) for k, v in splits.items()})}")
    scored = scored_rows(splits["test"])

    with progress.stage("model") as note:
        keras.utils.set_random_seed(options.seed)
        base = load_causal_lm(folder)
        model = klr.add_adapters(base, rank=options.rank, alpha=options.alpha,
                                 dropout=options.dropout,
                                 targets=options.targets_for_config)
        trainable, total = klr.parameter_counts(model)
        note(f"{os.path.basename(folder)} + LoRA rank {options.rank} on "
             f"{list(options.targets)}: {klr.trainable_summary(model)}")
        before = _measure(base, chat, splits, scored, examples, options)
        note("before: " + _measure_line(before))

    with progress.stage("train") as note:
        train_start = time.perf_counter()
        history = fit(model, splits["train"], splits["validation"], options)
        train_seconds = time.perf_counter() - train_start
        best = _best_evaluation(history)
        note(f"{len(history['loss'])} evaluations of {options.eval_every} steps, "
             f"best after step {best * options.eval_every}")

    with progress.stage("evaluate") as note:
        adapters_path = os.path.join(build, ADAPTERS_FILE)
        adapter_bytes = klr.save_adapters(model, adapters_path)
        after = _measure(model, chat, splits, scored, examples, options)
        note("after: " + _measure_line(after))
        note(f"{final(ADAPTERS_FILE)} ({adapter_bytes:,} bytes)")

    with progress.stage("export") as note:
        exports = {}
        for format in options.export:
            exports[format] = export_and_measure(
                model, format, folder, chat, splits["test"], scored, examples,
                options, build)
            note(_export_line(format, exports[format]))

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
            "best_step": best * options.eval_every,
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
        }
        for format in GENERATION_FORMATS:
            exported = exports.get(format, {})
            report[f"{format}_test_accuracy"] = exported.get("test_accuracy")
            report[f"{format}_bytes"] = exported.get("size_bytes")
        report["files"] = {"adapters": final(ADAPTERS_FILE)}
        for format, exported in exports.items():
            if "error" not in exported:
                report["files"][format] = exported["path"]
        report_lib.plot_training_curves(
            history, os.path.join(build, CURVES_FILE), best)
        report["files"]["training_curves"] = final(CURVES_FILE)
        report["files"]["report"] = final(REPORT_FILE)
        note(f"{report['files']['report']}, {final(CURVES_FILE)}")
    return report


def fit(model, train, validation, options) -> dict:
    """Trains on completion tokens; returns the per-evaluation history.

    Keras' `fit` runs `ceil(max_steps / eval_every)` rounds of `eval_every`
    steps; after each, the validation loss (completion tokens only) decides
    early stopping, which restores the best round's weights.

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
    callbacks, validation_data = [], None
    if len(validation):
        validation_data = lm_batches.evaluation_dataset(validation, options.batch_size)
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", mode="min", patience=options.patience,
            restore_best_weights=True, verbose=int(options.verbose > 0)))
    history = model.fit(
        lm_batches.training_dataset(train, options.batch_size, options.seed),
        steps_per_epoch=options.eval_every,
        epochs=rounds,
        validation_data=validation_data,
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


def scored_rows(split):
    """Test rows answered by generation: those with a prompt."""
    return [i for i, prompt in enumerate(split.prompts) if prompt]


def _answer_tokens(split, scored):
    longest = max((len(split.completions[i]) for i in scored), default=0)
    return longest + _ANSWER_SLACK


def _measure(model, chat, splits, scored, examples, options) -> dict:
    """Loss and perplexity on the validation split, test answers by greedy
    generation in Keras, and the sample generations."""
    test = splits["test"]
    prompts = [test.prompts[i] for i in scored]
    start = time.perf_counter()
    longest = max((len(p) for p in prompts), default=0)
    greedy = lm_evaluation.KerasGreedy(
        model, longest + max(_answer_tokens(test, scored), options.max_new_tokens))
    generated = greedy(prompts, _answer_tokens(test, scored),
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
            model, splits["validation"], options.batch_size),
        "answers": texts,
        "references": references,
        "sample_texts": [chat.decode(tokens) for tokens in samples],
    }


def _samples(test_examples, scored, before, after, options):
    return [{"prompt": test_examples[i].messages[-1][1],
             "reference": before["references"][k],
             "before": before["sample_texts"][k],
             "after": after["sample_texts"][k]}
            for k, i in enumerate(scored[:options.samples])]


def _without_texts(measured):
    return {k: v for k, v in measured.items()
            if k not in ("answers", "references", "sample_texts")}


def export_and_measure(model, format, folder, chat, test, scored, examples,
                       options, build):
    """Exports a generator to `build`, then answers the test prompts with it
    in its runtime. Paths in the result name the artifact in `options.out`."""
    from keras_lowrank.exporters import UnsupportedOpsError
    from keras_lowrank.generation import GenerationVerificationError
    from keras_lowrank.generation import export_generator

    path = os.path.join(build, artifact_file(format))
    prompts = [test.prompts[i] for i in scored]
    longest = max((len(p) for p in prompts), default=0)
    new_tokens = _answer_tokens(test, scored)
    if longest + new_tokens > options.export_max_length:
        raise ValueError(
            f"export_max_length must hold the longest test prompt and its "
            f"answer: {longest} + {new_tokens} tokens. Received: "
            f"export_max_length={options.export_max_length}")
    verify = prompts[:_VERIFY_PROMPTS] or None
    tokenizer = options.tokenizer_file or os.path.join(folder, TOKENIZER_FILE)
    kwargs = {}
    if format == "tflite":
        kwargs["prefill_lengths"] = _prefill_lengths(options.export_max_length)
        kwargs["quantize"] = options.tflite_quantize
        if options.tflite_quantize:
            kwargs["keep_float"] = options.tflite_keep_float
    try:
        exported = export_generator(
            model, path, format, max_length=options.export_max_length,
            tokenizer=tokenizer, stop_token_ids=chat.stop_token_ids or None,
            prompts=verify, max_new_tokens=min(
                _VERIFY_NEW_TOKENS, options.export_max_length - longest),
            **kwargs)
    except (GenerationVerificationError, UnsupportedOpsError) as error:
        # Recorded, as the classifier's runs do: the rest of the report
        # still stands.
        return {"error": " ".join(str(error).split()), "test_accuracy": None,
                "size_bytes": None, "path": None}
    start = time.perf_counter()
    generated = lm_evaluation.runtime_greedy(path, prompts, new_tokens,
                                             chat.stop_token_ids)
    texts = [chat.decode(tokens) for tokens in generated]
    references = [chat.decode(test.completions[i]) for i in scored]
    # As report.json will hold it (tuples as lists).
    result = json.loads(json.dumps(exported.to_dict()))
    result.update({
        "path": os.path.join(options.out, artifact_file(format)),
        "size_bytes": os.path.getsize(path),
        "test_accuracy": lm_evaluation.answer_accuracy(texts, references),
        "runtime_seconds": time.perf_counter() - start,
        "export_max_length": options.export_max_length,
        "keep_float": list(kwargs.get("keep_float", ())),
    })
    return result


def _prefill_lengths(max_length):
    """Prompt chunks of 16, 32, 64, ... up to half the cache: a prompt is
    written in chunks that pad it little (75 tokens: 64 + 16, not 128),
    and each chunk length is one LiteRT signature more to convert."""
    lengths, n = [], 16
    while n <= max_length // 2:
        lengths.append(n)
        n *= 2
    return tuple(lengths) or (max_length,)


def _vocabulary_size(folder):
    config = read_config(folder)
    value = config.get("vocab_size")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{os.path.join(folder, 'config.json')}: no "
                         f"vocab_size. Received: vocab_size={value!r}")
    return value


def _measure_line(measured):
    accuracy = measured["test_accuracy"]
    loss = measured["heldout_loss"]
    return (f"test accuracy {'-' if accuracy is None else f'{accuracy:.4f}'} "
            f"by greedy generation ({measured['generation_seconds']:.0f} s); "
            f"held-out loss {_number(loss['loss'])}, perplexity "
            f"{_number(loss['perplexity'])} on {loss['tokens']} completion tokens")


def _export_line(format, exported):
    if "error" in exported:
        return f"{format}: FAILED: {exported['error']}"
    accuracy = exported["test_accuracy"]
    quantized = ""
    if exported.get("quantize"):
        quantized = (f", {exported['quantize']}: next-token agreement with "
                     f"Keras {exported['next_token_agreement']:.3f}")
    return (f"{format}: {exported['path']} ({exported['size_bytes']:,} bytes"
            f"{quantized}), test accuracy "
            f"{'-' if accuracy is None else f'{accuracy:.4f}'} in its runtime "
            f"({exported['runtime_seconds']:.0f} s)")


def _number(value):
    return "-" if value is None else f"{value:.4f}"


def _counts(counts):
    return " / ".join(f"{counts[k]:,} {k}" for k in ("train", "validation", "test"))


def summary_table(report) -> str:
    """The lines printed at the end of a run: before and after."""
    rows = [("", "before", "after")]
    rows.append(("test accuracy (Keras, greedy)",
                 _number(report["test_accuracy_before"]),
                 _number(report["test_accuracy"])))
    rows.append(("held-out loss", _number(report["heldout_loss_before"]),
                 _number(report["heldout_loss"])))
    rows.append(("held-out perplexity", _number(report["heldout_perplexity_before"]),
                 _number(report["heldout_perplexity"])))
    for format, exported in report["exports"].items():
        quantized = f", {exported['quantize']}" if exported.get("quantize") else ""
        rows.append((f"test accuracy ({format} runtime{quantized})", "-",
                     _number(exported["test_accuracy"])))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    share = 100.0 * report["trainable_params"] / report["total_params"]
    lines += [
        "",
        f"trainable params: {report['trainable_params']:,} of "
        f"{report['total_params']:,} ({share:.2f}%); adapters "
        f"{report['adapter_bytes']:,} bytes",
        f"training: {report['steps_run']} steps in {report['train_seconds']:.0f} s, "
        f"best after step {report['best_step']}",
        "stages: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds
                               in report["stage_seconds"].items())
        + f"; total {report['total_seconds']:.0f} s",
        report_lib.cpu_line(report["stage_cpu_seconds"]),
    ]
    return "\n".join(lines)
