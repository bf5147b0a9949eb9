"""`finetune`: data to adapters to verified LiteRT / ONNX artifacts."""

import contextlib
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

import keras_lowrank as klr
from keras_lowrank import exporters
from keras_lowrank.finetune import batching
from keras_lowrank.finetune import distributed
from keras_lowrank.finetune import evaluation
from keras_lowrank.finetune import model_source
from keras_lowrank.finetune import precision as precision_lib
from keras_lowrank.finetune import report as report_lib
from keras_lowrank.finetune import training
from keras_lowrank.finetune.options import FinetuneOptions
from keras_lowrank.runs import adapter_setup
from keras_lowrank.runs import phone_artifacts as phone_lib
from keras_lowrank.runs.adapter_report import adapter_values
from keras_lowrank.runs.adapter_report import add_rank_plot
from keras_lowrank.runs.build_folder import check_out
from keras_lowrank.runs.build_folder import run_in_build_folder
from keras_lowrank.runs.export_record import record_export
from keras_lowrank.runs.progress import Progress
from keras_lowrank.runs.report_files import add_files
from keras_lowrank.runs.report_files import export_line
from keras_lowrank.runs.run_folder import ADAPTERS_FILE
from keras_lowrank.runs.run_folder import artifact_file
from keras_lowrank.runs.run_folder import export_formats
from keras_lowrank.runs.run_options import QUANTIZED_FORMAT

# Rows of the test split that export runs through Keras and its runtime.
_VERIFY_ROWS = 8


def finetune(options: FinetuneOptions | None = None, *, log=print) -> dict:
    """Fine-tunes a BERT classifier with LoRA, exports it, measures it all.

    Stages, each announced as `[k/6] name ...` through `log`:
    1. data: the MR polarity data, or the user's files, split with the seed.
    2. model: the classifier from `options.model` with LoRA adapters, built
       in `options.precision` (and in the scope of `options.distribute`'s
       strategy) right after seeding every global generator with
       `options.seed`; every split tokenized once by the classifier's
       preprocessor.
    3. train: AdamW (warmup, cosine decay), validation accuracy each epoch,
       early stopping that keeps the best epoch's weights.
    4. evaluate: the adapters saved to `<out>/adapters.safetensors`; test
       accuracy in Keras, in float32 (after bfloat16 / float16 training, on
       the saved adapters loaded into a float32 model, which export uses).
    5. export, in one `exporters.export_session` (one merge, SavedModel and
       Keras run shared): LiteRT and / or ONNX written and verified against
       Keras (`keras_lowrank.exporters.export`), then each artifact's test
       accuracy measured in its own runtime on the whole test split;
       then the phone artifacts (`phone_artifacts`: raw text in MediaPipe,
       full-integer LiteRT), each measured on the raw test strings.
    6. report: `<out>/report.json`, `<out>/training_curves.png` and a
       summary table.

    The run folder is built beside `options.out` and moved into place at
    the end, replacing an earlier run folder whole (see `run_folder`): an
    error or an interrupt at any stage leaves `options.out` as it was.
    With `options.distribute`, the chief does so; any other worker trains,
    saves the adapters to a scratch file, and returns a short report
    without touching `options.out` (`keras_lowrank.finetune.distributed`).

    Args:
        options: FinetuneOptions. Defaults to `FinetuneOptions()`.
        log: callable taking one str. Where stage lines go.

    Returns:
        The report (a JSON-ready dict, as written to report.json).

    Raises:
        DataError: bad data files (the message names the file and line).
        ValueError: before any slow work, "multi-worker" without a valid
            `TF_CONFIG`, an `out` holding other files than
            an earlier run's, a `sequence_length` above the model's
            maximum, or a `precision` this machine cannot run; later, a
            model that cannot be loaded, a target that matches no layer.
        FileNotFoundError: the model folder is missing, or the default model
            package is not installed.
        distributed.WorkerLostError: on "multi-worker", another worker died
            or hung (one line naming it; `out` keeps the earlier run).

    On "multi-worker", a worker that has not registered within
    `options.startup_timeout` (it never started) is a `WorkerLostError`.
    If the workers then have not all finished the first training step
    within that time (one hung before training, and TensorFlow waits for
    it without a limit), this process writes one line to stderr and exits
    with status 3; `out` keeps the earlier run (`startup_watchdog`).

    Example:
    ```python
    report = finetune(FinetuneOptions(out="runs/demo"))
    print(report["test_accuracy"], report["tflite_test_accuracy"])
    ```
    """
    options = options or FinetuneOptions()
    # First: TensorFlow sets a strategy's devices up before it runs any op.
    # On "multi-worker" this waits for every worker to register.
    with distributed.worker_loss_reported(options):
        strategy = distributed.make_strategy(options)
    with distributed.startup_watchdog(options) as watchdog:
        return _finetune(options, log, strategy, watchdog)


def _finetune(options, log, strategy, watchdog):
    chief = distributed.is_chief(strategy)
    # Before any slow work: an `out` that holds something else, a model that
    # is missing or cannot take `sequence_length` tokens.
    if chief:
        check_out(options.out)
    source = model_source.model_source(options)
    model_source.check_sequence_length(
        options, model_source.config_max_sequence_length(source))
    precision = precision_lib.resolve_precision(options.precision)
    if options.deterministic:
        tf.config.experimental.enable_op_determinism()
    if not chief:
        with distributed.worker_loss_reported(options), \
                distributed.worker_folder() as build:
            _remove_on_expiry(watchdog, build)
            report = _run(options, precision, build, Progress(log), strategy,
                          watchdog)
        log(f"worker {report['distribute']['task']}: trained; the chief writes "
            f"{options.out}")
        return report

    def stages(build, progress):
        # The hidden folder beside `out` that holds `build`.
        _remove_on_expiry(watchdog, os.path.dirname(build))
        return _run(options, precision, build, progress, strategy, watchdog)

    with distributed.worker_loss_reported(options):
        return run_in_build_folder(options.out, stages, log=log,
                                   summary=report_lib.summary_table)


def _remove_on_expiry(watchdog, folder):
    if watchdog is not None:
        watchdog.remove_on_expiry(folder)


def _run(options, precision, build, progress, strategy=None, watchdog=None):
    """The six stages; files go to `build`, the report names `options.out`.

    A worker other than the chief stops after saving the adapters;
    `watchdog` (multi-worker) is disarmed after the first training step.
    """
    def final(name):
        return os.path.join(options.out, name)

    with progress.stage("data") as note:
        data = training.load_data(options)
        note(f"{_source(options)}, labels {data.label_names}, "
             f"{_counts(data.num_examples)}")

    with progress.stage("model") as note:
        # Seeded here, right before the first draw: Keras takes its default
        # seeds (initializers, dropout) from Python's global generator, so
        # anything that drew from it earlier would shift the run.
        keras.utils.set_random_seed(options.seed)
        total_steps = training.training_steps(options, _train_examples(data, options))
        with distributed.scope(strategy):
            model, base = training.build_classifier(
                options, data.num_classes, precision, total_steps, data.train)
        # What the phone artifacts need of the model, known now: refused
        # before training rather than after it.
        phone_lib.check_phone_artifacts(model, options.phone_artifacts, data.label_names)
        to_ids = training.token_ids_function(model.preprocessor)
        splits = {
            "train": training.tokenize(to_ids, data.train, options.max_train_examples),
            "validation": training.tokenize(
                to_ids, data.validation, options.max_eval_examples),
            "test": training.tokenize(to_ids, data.test, options.max_eval_examples),
        }
        _check_training_steps(options, splits["train"], total_steps)
        trainable, total = klr.parameter_counts(model)
        base_sizes = report_lib.base_sizes(base)  # the adapted copy holds its own
        del base
        note(f"{options.model or 'all-MiniLM-L6-v2'} + {adapter_setup.adapters_note(options)} on "
             f"{list(options.targets)}: {klr.trainable_summary(model)}; "
             f"tokenized {_counts({k: len(v[1]) for k, v in splits.items()})} "
             f"at sequence length {options.sequence_length}; training in "
             f"{precision.name} ({precision.reason})"
             + _distribute_note(options, strategy))
    if not len(splits["train"][1]) or not len(splits["test"][1]):
        raise ValueError(
            "Fine-tuning needs training and test examples. Received: "
            f"{_counts({k: len(v[1]) for k, v in splits.items()})}"
        )

    with _detached(model):
        with progress.stage("train") as note:
            train_start = time.perf_counter()
            history = training.fit(
                model, splits["train"], splits["validation"], options,
                scope=lambda: distributed.scope(strategy),
                callbacks=adapter_setup.training_callbacks(options) + (
                    [] if watchdog is None else [watchdog.disarm_after_first_step()]))
            train_seconds = time.perf_counter() - train_start
            best_epoch = _best_epoch(history, options)
            note(f"{len(history['loss'])} epochs, best epoch {best_epoch}")

    with progress.stage("evaluate") as note:
        adapters_path = os.path.join(build, ADAPTERS_FILE)
        adapter_bytes = distributed.save_adapters(model, adapters_path, strategy)
        if not distributed.is_chief(strategy):
            return {"distribute": distributed.describe(options, strategy),
                    "history": history, "best_epoch": best_epoch,
                    "train_seconds": train_seconds, "exports": {}}
        if precision.name != "float32" or strategy is not None:
            # One device, outside the scope: the chief alone evaluates and
            # exports, from the adapter file it wrote.
            model = training.float32_classifier(options, data.num_classes, adapters_path)
        with _detached(model):
            keras_result = evaluation.keras_accuracy(
                model, *splits["test"], options.batch_size)
        note(f"test accuracy {keras_result['accuracy']:.4f} on "
             f"{keras_result['examples']} examples (float32); "
             f"{final(ADAPTERS_FILE)} ({adapter_bytes:,} bytes)")

    with progress.stage("export") as note, exporters.export_session():
        exports = {}
        with _detached(model):
            for format in options.export:
                exports[format] = _export_and_evaluate(
                    model, format, splits["test"], options, build)
                note(export_line(format, exports[format], _describe_export))
        if options.phone_artifacts:
            test_texts = training.texts(data.test, options.max_eval_examples)
            calibration, _ = training.texts(
                data.train, min(phone_lib.CALIBRATION_EXAMPLES,
                                options.max_train_examples or math.inf))
        for name in options.phone_artifacts:
            exports[name] = _export_phone_artifact(
                model, name, test_texts, calibration, data.label_names, options, build)
            note(export_line(name, exports[name], _describe_phone_artifact))

    with progress.stage("report") as note:
        report = _report(options, data, splits, base_sizes, (trainable, total), history,
                         best_epoch, train_seconds, keras_result, adapter_bytes, exports)
        report["precision"] = precision.to_dict()
        report["distribute"] = distributed.describe(options, strategy)
        report["deterministic"] = options.deterministic
        report.update(adapter_values(
            model, base_sizes["weight_bytes"], options,
            adapter_setup.adalora_schedule(options, total_steps)))
        add_files(report, history, best_epoch, build, options.out)
        add_rank_plot(report, build, options.out)
        note(", ".join(report["files"][key] for key in
                       ("report", "training_curves", "rank_allocation")
                       if key in report["files"]))
    return report


def _export_and_evaluate(model, format, test, options, build):
    """Exports to `format` in `build`, then measures the artifact's accuracy.

    Paths in the result name the artifact's place in `options.out`.
    """
    inputs, labels = test
    rows = np.arange(min(_VERIFY_ROWS, len(labels)))
    sample = batching.trim(inputs, rows, inputs["token_ids"].shape[1])
    path = os.path.join(build, artifact_file(format))
    # `tflite_quantize` is LiteRT's, as its name says; every other format
    # (ONNX takes quantize modes too) is exported in float32.
    quantize = options.tflite_quantize if format == QUANTIZED_FORMAT else None

    def write():
        result = exporters.export(model, path, format, quantize=quantize,
                                  sample_inputs=sample).to_dict()
        result["evaluation"] = evaluation.artifact_accuracy(
            format, path, inputs, labels, options.batch_size)
        return result

    return record_export(write, path, os.path.join(options.out, artifact_file(format)),
                         failed=lambda error: {"quantize": quantize})


def _export_phone_artifact(model, name, test, calibration, label_names, options, build):
    """Writes phone artifact `name` in `build`; paths name `options.out`."""
    file = phone_lib.get_artifact(name).file
    return phone_lib.export_phone_artifact(
        model, name, os.path.join(build, file), os.path.join(options.out, file),
        test, calibration, label_names)


def _report(options, data, splits, base_sizes, counts, history, best_epoch,
            train_seconds, keras_result, adapter_bytes, exports):
    trainable, total = counts
    base_bytes = base_sizes["bytes"]
    report = {
        "test_accuracy": keras_result["accuracy"],
        "trainable_params": int(trainable),
        "total_params": int(total),
        "base_params": base_sizes["params"],
        "base_bytes": base_bytes,
        "adapter_bytes": int(adapter_bytes),
        "adapter_share_of_base": adapter_bytes / base_bytes,
        "train_seconds": train_seconds,
        "epochs_run": len(history["loss"]),
        "best_epoch": best_epoch,
        "best_val_accuracy": (history["val_accuracy"][best_epoch - 1]
                              if history.get("val_accuracy") else None),
        "val_accuracy_per_epoch": history.get("val_accuracy", []),
        "history": history,
        "keras_eval_seconds": keras_result["seconds"],
        "label_names": list(data.label_names),
        "num_examples": {k: int(len(v[1])) for k, v in splits.items()},
        "data": _source(options),
        "model": options.model or klr.presets.minilm_path(),
        "options": options.to_dict(),
        "versions": {"keras": keras.__version__, "keras_lowrank": klr.__version__},
        "exports": exports,
    }
    for format in export_formats():
        report.update(report_lib.format_values(
            format, exports.get(format, {}), keras_result["accuracy"]))
    for name in phone_lib.NAMES:
        report.update(phone_lib.report_values(
            name, exports.get(name, {}), keras_result["accuracy"]))
    return report


def _best_epoch(history, options):
    """1-based epoch whose weights were kept: of the best validation
    accuracy (the first if tied), or the last without early stopping."""
    values = history.get("val_accuracy")
    if not values or not adapter_setup.early_stopping(options):
        return len(history["loss"])
    return int(np.argmax(values)) + 1


@contextlib.contextmanager
def _detached(model):
    """Runs with the model's preprocessor detached: it is fed token ids."""
    preprocessor = model.preprocessor
    model.preprocessor = None
    try:
        yield model
    finally:
        model.preprocessor = preprocessor


def _describe_export(exported):
    return (f"{exported['path']} ({exported['size_bytes']:,} bytes), "
            f"max abs diff {exported['max_abs_diff']:.2g} vs Keras, test "
            f"accuracy {exported['evaluation']['accuracy']:.4f} "
            f"({exported['evaluation']['seconds']:.1f} s)")


def _describe_phone_artifact(exported):
    by_length = exported["latency_by_length"]
    return (f"{exported['path']} ({exported['size_bytes']:,} bytes), "
            f"{phone_lib.get_artifact(exported['artifact']).runs_on}: test accuracy "
            f"{exported['accuracy']:.4f} (Keras {exported['keras_accuracy']:.4f}) "
            f"on {exported['eval_examples']} raw test strings; batch 1 "
            + ", ".join(f"{v['ms']:.2f} ms at {v['tokens']} tokens"
                        for v in by_length.values()))


def _train_examples(data, options):
    """Training examples the run tokenizes: the split, capped."""
    return min(data.num_examples["train"], options.max_train_examples or math.inf)


def _check_training_steps(options, train, total_steps):
    """Refuses an AdaLoRA schedule built for other steps than `fit` runs
    (the data's declared count differed from the examples read)."""
    steps = training.training_steps(options, len(train[1]))
    if options.adaptive_rank is not None and steps != total_steps:
        raise RuntimeError(
            f"AdaLoRA's schedule spans {total_steps} steps, but training runs "
            f"{steps}: the training split declared another number of "
            f"examples than it holds ({len(train[1])}).")


def _distribute_note(options, strategy):
    if strategy is None:
        return ""
    return (f"; distributed: {options.distribute}, "
            f"{strategy.num_replicas_in_sync} replicas")


def _source(options):
    if not options.train_files:
        return "MR sentence polarity"
    return "files " + ", ".join(
        options.train_files + options.validation_files + options.test_files)


def _counts(num_examples):
    return " / ".join(f"{num_examples[k]:,} {k}" for k in ("train", "validation", "test"))
